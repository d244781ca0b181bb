"""Where a long batch waits: a batch still running after ``after_s`` logs the chain of
awaits it is suspended in, again every ``after_s``, until it ends.

Why: a worker that stops storing with no error leaves an operator (and a failing CI run)
nothing to go on. The pipeline rule ``NothingStored`` says *that* it stopped; the stack of
the suspended batch says *where*: a producer flush, an InfluxDB write, the worker lock. A
healthy batch of a full catch-up takes a few seconds, so the default (30 s) only speaks
when something is wrong; it costs one sleeping task per batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
import io
import logging
import time

log = logging.getLogger(__name__)


@asynccontextmanager
async def watched(what: str, after_s: float) -> AsyncIterator[None]:
    """Run the body; if it is still running after ``after_s`` seconds, log where it waits."""
    task = asyncio.current_task()
    if task is None or after_s <= 0:
        yield
        return
    t0 = time.monotonic()

    async def watch() -> None:
        while True:
            await asyncio.sleep(after_s)
            stack = io.StringIO()
            task.print_stack(limit=30, file=stack)
            log.warning("%s still running after %.0f s, waiting in:\n%s", what,
                        time.monotonic() - t0, stack.getvalue().rstrip())

    watcher = asyncio.ensure_future(watch())
    try:
        yield
    finally:
        watcher.cancel()
