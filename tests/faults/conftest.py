"""Fixtures of the fault suite: a private stack whose Kafka clients go through a proxy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import make_stack
from faults.tcpproxy import TcpProxy
from urbanbrain.localstack import LocalStack


@pytest.fixture
def proxied_stack(tmp_path: Path) -> Iterator[tuple[LocalStack, TcpProxy]]:
    """Servers of this test alone (it stops InfluxDB and cuts broker connections), with
    every Kafka client connection relayed by a :class:`TcpProxy` the test can cut.

    The proxy starts first, because tansu must advertise its port; ``stack.env()`` then
    points clients at the proxy too."""
    proxy = TcpProxy().start()
    stack = make_stack(tmp_path / "stack", kafka_advertised_port=proxy.port)
    try:
        stack.start()
        assert stack.kafka is not None
        proxy.upstream_port = stack.kafka.port
        yield stack, proxy
    finally:
        stack.stop()
        proxy.stop()
