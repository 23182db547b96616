"""The thread that does a stream's blocking work, so that the event loop never waits on a disk.

Each stream that writes somewhere (a file, a custom stream object) gets one :class:`StreamWriter`:
a thread of its own and a queue. The loop only appends a batch of lines to the queue (one lock, no
system call); the thread formats the lines, writes them in bulk, rotates files, reopens them, and
closes them, strictly in the order it was asked to.

The queue is bounded in bytes. What happens when it is full depends on the destination:

* ``overflow="wait"`` (files, custom streams): the writer is *full* and the output pump stops
  reading the pipes that feed it until it drained below a low-water mark; the children then block
  on their own writes. Nothing is lost and the loop goes on serving everything else.
* ``overflow="drop"`` (circusd's own stdout/stderr, which in a container may be a pipe nobody
  reads): a line that does not fit is dropped and counted; the count is logged when output flows
  again. A stalled console never stops the services.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Protocol

__all__ = ["StreamWriter", "Target", "HIGH_WATER", "LOW_WATER"]

log = logging.getLogger("circus")

#: bytes queued for one writer before it is full (pipes paused, or console lines dropped)
HIGH_WATER = 4 * 1024 * 1024
#: a full writer resumes its pipes once its queue is below this
LOW_WATER = 1024 * 1024
#: at most one error message per writer per this many seconds
ERROR_INTERVAL = 10.0


class Target(Protocol):
    """What a writer drives, in its thread: write a list of queued items, reopen, close."""

    def write(self, items: list[Any]) -> None: ...
    def reopen(self) -> None: ...
    def close(self) -> None: ...


class _Call:
    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.future: Future[Any] = Future()


class StreamWriter:
    def __init__(self, target: Target, label: str, loop: asyncio.AbstractEventLoop, *,
                 overflow: str = "wait", high: int = HIGH_WATER, low: int = LOW_WATER,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.target = target
        self.label = label
        self.loop = loop
        self.overflow = overflow
        self.high, self.low = high, low
        self.on_error = on_error
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[Any] = deque()
        self._pending = 0                   # bytes queued, not yet written
        self._drain_waiters: list[Callable[[], None]] = []
        self._closing = False
        self.dropped = 0                    # lines dropped (overflow="drop"), since last report
        self._dropping_since = 0.0
        self.lost = 0                       # lines whose write failed
        self._last_error = 0.0
        self._thread = threading.Thread(target=self._run, name=f"circus-stream {label}", daemon=True)
        self._thread.start()

    # -- loop side --------------------------------------------------------------------------------

    def put(self, item: Any, size: int, lines: int = 1) -> bool:
        """Queue ``item`` (``size`` bytes, ``lines`` lines); False if it was dropped."""
        with self._cond:
            if self._closing:
                return False
            if self.overflow == "drop" and self._pending + size > self.high and self._pending:
                if not self.dropped:
                    self._dropping_since = time.monotonic()
                self.dropped += lines
                return False
            self._queue.append((item, size))
            self._pending += size
            self._cond.notify()
        return True

    def full(self) -> bool:
        return self._pending > self.high

    def when_drained(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the loop once the queue is below the low-water mark."""
        with self._cond:
            if self._pending > self.low:
                self._drain_waiters.append(callback)
                return
        self.loop.call_soon(callback)

    def call(self, fn: Callable[[], Any]) -> "asyncio.Future[Any]":
        """Run ``fn`` in the writer's thread after everything queued so far; await the result."""
        call = _Call(fn)
        with self._cond:
            if self._closing:
                call.future.set_exception(RuntimeError(f"{self.label} is closed"))
            else:
                self._queue.append((call, 0))
                self._cond.notify()
        return asyncio.wrap_future(call.future, loop=self.loop)

    async def close(self, timeout: float) -> bool:
        """Write everything queued, close the target, end the thread; False if that took longer
        than ``timeout`` (the thread is then left to finish on its own)."""
        done = self.call(self.target.close)
        with self._cond:
            self._closing = True
            self._cond.notify()
        try:
            await asyncio.wait_for(done, timeout)
        except TimeoutError:
            log.error("%s: still writing after %.0f s; giving up on it", self.label, timeout)
            return False
        except Exception as exc:  # the target's close failed: reported, nothing else to do
            log.error("%s: close failed: %s", self.label, exc)
        self.report_dropped()
        return True

    def stop(self) -> None:
        """Let the thread end once what is queued is written, without waiting for it."""
        with self._cond:
            self._closing = True
            self._cond.notify()

    def report_dropped(self) -> None:
        if self.dropped:
            log.warning("%s: %d line(s) of output dropped in %.1f s: nobody was reading it",
                        self.label, self.dropped, time.monotonic() - self._dropping_since)
            self.dropped = 0

    # -- thread side ------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not (self._closing and not self._pending):
                    self._cond.wait()
                if not self._queue:
                    return                              # closed and everything written
                batch = list(self._queue)
                self._queue.clear()
            items: list[Any] = []
            size = 0
            for item, item_size in batch:
                if isinstance(item, _Call):
                    self._write(items, size)
                    items, size = [], 0
                    self._run_call(item)
                else:
                    items.append(item)
                    size += item_size
            self._write(items, size)

    def _run_call(self, call: _Call) -> None:
        try:
            result = call.fn()
        except BaseException as exc:  # handed to whoever awaits it
            call.future.set_exception(exc)
        else:
            call.future.set_result(result)

    def _write(self, items: list[Any], size: int) -> None:
        if items:
            try:
                self.target.write(items)
            except Exception as exc:   # a failing stream costs its own lines only
                self._failed(exc, items)
        with self._cond:
            self._pending -= size
            waiters: list[Callable[[], None]] = []
            if self._pending <= self.low and self._drain_waiters:
                waiters, self._drain_waiters = self._drain_waiters, []
            report = bool(self.dropped) and self._pending <= self.low
            self._cond.notify_all()
        if report:
            self._to_loop(self.report_dropped)
        for callback in waiters:
            self._to_loop(callback)

    def _to_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:      # the loop is closed: circusd is exiting, nobody is waiting
            pass

    def _failed(self, exc: Exception, items: list[Any]) -> None:
        self.lost += sum(_count(item) for item in items)
        now = time.monotonic()
        if now - self._last_error < ERROR_INTERVAL:
            return
        self._last_error = now
        message = f"{self.label}: write failed, {self.lost} line(s) lost so far: {exc}"
        log.error("%s", message)
        if self.on_error is not None:
            self._to_loop(self.on_error, message)


def _count(item: Any) -> int:
    lines = item[-1] if isinstance(item, tuple) and item else None
    return len(lines) if isinstance(lines, list) else 1
