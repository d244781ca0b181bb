"""Where a long batch waits: a batch still running after ``after_s`` logs the chain of
awaits it is suspended in, again every ``after_s``, until it ends.

Why: a worker that stops storing with no error leaves an operator (and a failing CI run)
nothing to go on. The pipeline rule ``NothingStored`` says *that* it stopped; the stack of
the suspended batch says *where*: a producer flush, an InfluxDB write, the worker lock. A
full batch of a week's catch-up took up to 67 s on the 2-core test machine (200 records
of up to 500 readings, beside the servers), so the default (90 s) speaks when something
is wrong; it costs one sleeping task per batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
import linecache
import logging
import time
from typing import Any

log = logging.getLogger(__name__)


def await_chain(task: asyncio.Task, limit: int = 40) -> str:
    """Where a suspended task waits: every coroutine frame down its chain of awaits.

    ``Task.print_stack`` shows one frame for a suspended coroutine, the outermost (for an
    agent, Faust's ``await coro``): useless. The chain is followed through ``cr_await``
    (and async generators, and tasks awaited in turn) down to the future at its end."""
    lines: list[str] = []
    obj: Any = task.get_coro()
    for _ in range(limit):
        if isinstance(obj, asyncio.Task):
            obj = obj.get_coro()
        frame = (getattr(obj, "cr_frame", None) or getattr(obj, "ag_frame", None)
                 or getattr(obj, "gi_frame", None))
        if frame is None:
            if type(obj).__name__ == "FutureIter":  # ``await future``: no way to the future
                lines.append("  awaiting a future")
            elif obj is not None:
                lines.append(f"  awaiting {obj!r:.200}")
            break
        code = frame.f_code
        lines.append(f'  File "{code.co_filename}", line {frame.f_lineno}, in {code.co_name}')
        source = linecache.getline(code.co_filename, frame.f_lineno).strip()
        if source:
            lines.append(f"    {source}")
        obj = (getattr(obj, "cr_await", None) or getattr(obj, "ag_await", None)
               or getattr(obj, "gi_yieldfrom", None))
    return "\n".join(lines)


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
            log.warning("%s still running after %.0f s, waiting in:\n%s", what,
                        time.monotonic() - t0, await_chain(task))

    watcher = asyncio.ensure_future(watch())
    try:
        yield
    finally:
        watcher.cancel()
