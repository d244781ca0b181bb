"""A batch that hangs says where (streams/batch_watch.py)."""

from __future__ import annotations

import asyncio
import logging

from urbanbrain.streams.batch_watch import watched


async def _stuck_in_a_flush(gate: asyncio.Event) -> None:
    await gate.wait()


def test_a_batch_running_too_long_logs_the_await_it_is_stuck_in(caplog) -> None:
    async def main() -> None:
        gate = asyncio.Event()
        asyncio.get_running_loop().call_later(0.35, gate.set)
        async with watched("readings batch of 3 records", 0.1):
            await _stuck_in_a_flush(gate)
        await asyncio.sleep(0.25)  # ended: the watcher is gone and says nothing more

    with caplog.at_level(logging.WARNING, logger="urbanbrain.streams.batch_watch"):
        asyncio.run(main())
    warnings = [r.getMessage() for r in caplog.records]
    assert 2 <= len(warnings) <= 4, warnings
    assert all(w.startswith("readings batch of 3 records still running after") for w in warnings)
    # the whole chain of awaits, down to the innermost frame and the future it waits on
    assert "in main" in warnings[0] and "in _stuck_in_a_flush" in warnings[0]
    assert "in wait" in warnings[0] and warnings[0].endswith("awaiting a future")


def test_a_quick_batch_says_nothing(caplog) -> None:
    async def main() -> None:
        async with watched("readings batch", 0.2):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)

    with caplog.at_level(logging.WARNING, logger="urbanbrain.streams.batch_watch"):
        asyncio.run(main())
    assert not caplog.records
