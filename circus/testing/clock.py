"""An asyncio event loop with a virtual clock.

Time only moves when the loop has nothing ready to run: then it jumps straight to the next timer
instead of sleeping. Backoff, graceful timeouts and max_age can be tested in milliseconds, and
deterministically. A loop with nothing scheduled and nothing ready is a deadlock and raises.
"""
from __future__ import annotations

import asyncio
import selectors
from typing import Any, Coroutine, TypeVar

__all__ = ["VirtualClockLoop", "run_virtual", "Deadlock"]

T = TypeVar("T")


class Deadlock(RuntimeError):
    pass


class _VirtualSelector(selectors.DefaultSelector):
    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualClockLoop | None = None

    def select(self, timeout: float | None = None):  # type: ignore[override]
        events = super().select(0)
        if events or timeout == 0:
            return events
        if timeout is None:
            raise Deadlock("nothing is scheduled and nothing can happen: the test would hang")
        assert self.loop is not None
        self.loop.now += timeout
        return events


class VirtualClockLoop(asyncio.SelectorEventLoop):
    def __init__(self, start: float = 1000.0) -> None:
        selector = _VirtualSelector()
        super().__init__(selector)
        selector.loop = self
        self.now = start

    def time(self) -> float:
        return self.now


def run_virtual(coro: Coroutine[Any, Any, T], *, limit: float = 3600.0) -> T:
    """Run ``coro`` on a fresh virtual-clock loop; fail if it needs more than ``limit`` virtual s."""
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, limit))
    finally:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()
