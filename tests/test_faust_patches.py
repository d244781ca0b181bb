"""The faust-streaming patches a restart without loss depends on (streams/faust_patches.py)
apply to the pinned release only, and a worker refuses any other."""

from __future__ import annotations

import inspect
import tomllib
from pathlib import Path

import pytest

from urbanbrain.streams import faust_patches

ROOT = Path(__file__).resolve().parent.parent


def test_pyproject_pins_the_verified_release() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"faust-streaming=={faust_patches.VERIFIED_VERSION}" in deps


def test_the_installed_release_is_verified_and_the_patches_apply() -> None:
    from faust.tables.recovery import Recovery
    from faust.transport.consumer import Consumer

    assert faust_patches.mismatches() == []
    assert faust_patches.apply() is True
    assert Recovery.on_recovery_completed is faust_patches._on_recovery_completed
    assert Consumer._new_offset is faust_patches._new_offset
    assert Consumer.wait_empty is faust_patches._wait_empty_bounded
    assert Consumer.perform_seek is faust_patches._perform_seek
    assert faust_patches.apply() is True  # idempotent


def test_a_changed_upstream_method_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    real = inspect.getsource

    def changed(fn):  # noqa: ANN001, ANN202 - stands for a new faust release's source
        src = real(fn)
        return src + "\n# changed upstream\n" if fn.__name__ == "_new_offset" else src

    monkeypatch.setattr(inspect, "getsource", changed)
    monkeypatch.setattr(faust_patches, "_applied", False)
    assert faust_patches.mismatches() == ["Consumer._new_offset"]
    with pytest.raises(faust_patches.FaustPatchError, match="Consumer._new_offset") as exc:
        faust_patches.apply()
    assert exc.value.exit_code == 78


def _sought_consumer(broker: dict):  # noqa: ANN202
    """Faust's offset bookkeeping of a worker whose revocation commit failed (the member
    was expelled): it believes partition 1 committed at 120, the broker has no commit."""
    from collections import defaultdict
    from types import SimpleNamespace

    from aiokafka.structs import TopicPartition as ATP
    from faust.types import TP

    async def seek_to_committed():  # noqa: ANN202 - aiokafka's answer, keyed by its type
        return {ATP(*tp): off for tp, off in broker.items()}

    c = SimpleNamespace(seek_to_committed=seek_to_committed,
                        _read_offset=defaultdict(lambda: None),
                        _committed_offset=defaultdict(lambda: None),
                        _acked=defaultdict(list), _acked_index=defaultdict(set),
                        _gap=defaultdict(list))
    one, two = TP("readings.power", 1), TP("readings.power", 3)
    c._committed_offset.update({one: 120, two: 10})
    c._read_offset.update({one: 119, two: 30})
    c._acked[one] = [118, 119]
    c._acked_index[one] = {118, 119}
    return c, one, two


def test_after_a_seek_faust_believes_what_the_broker_has_committed() -> None:
    """Patch 4: a partition without a commit at the broker is read from its start; Faust
    must not go on believing it committed at 120, or it ignores every ack below 120 and
    the partition never commits again (the CI kill test's hang)."""
    import asyncio

    from faust.transport.consumer import Consumer

    key = ("faust.transport.consumer", "Consumer", "perform_seek")
    upstream = faust_patches._originals.get(key) or Consumer.perform_seek
    assert upstream is not faust_patches._perform_seek
    c, one, two = _sought_consumer({("readings.power", 1): None, ("readings.power", 3): 40})
    asyncio.run(upstream(c))
    assert c._committed_offset[one] == 120  # the bug: the failed commit's belief survives

    c, one, two = _sought_consumer({("readings.power", 1): None, ("readings.power", 3): 40})
    asyncio.run(faust_patches._perform_seek(c))
    assert c._committed_offset[one] is None and c._committed_offset[two] == 40
    assert c._read_offset[one] is None and c._read_offset[two] == 40
    assert one not in c._acked and one not in c._acked_index  # counted before the seek
    assert all(type(tp).__name__ == "TP" for tp in c._committed_offset)
