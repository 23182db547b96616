"""Password checks off the tornado loop: a small thread pool, and a bound on logins in progress.

scrypt costs tens of milliseconds of CPU and 16 MiB of memory per check on purpose; run on the
loop, a few anonymous clients posting logins would stall every page. Here at most
:data:`WORKERS` checks run at once, in threads (``hashlib.scrypt`` releases the GIL), while the
loop keeps serving. Logins waiting for a thread are bounded too: at most :data:`PENDING` in
progress in all, and :data:`PER_ADDRESS` from one client address; beyond that a login is
answered at once with "busy" (it costs nothing and counts as no failure).
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

__all__ = ["HashPool", "Busy", "WORKERS", "PENDING", "PER_ADDRESS"]

WORKERS = 2             # password checks running at once (threads; 16 MiB each)
PENDING = 64            # logins in progress (running or waiting), all clients together
PER_ADDRESS = 4         # logins in progress from one client address

T = TypeVar("T")


class Busy(Exception):
    """Too many logins in progress (all together, or from this address): try again later."""


class HashPool:
    def __init__(self, workers: int = WORKERS, pending: int = PENDING,
                 per_address: int = PER_ADDRESS) -> None:
        self.workers, self.pending, self.per_address = workers, pending, per_address
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="circushttpd-hash")
        self._slots: asyncio.Semaphore | None = None
        self._by_address: dict[str, int] = {}
        self.in_progress = 0

    async def run(self, address: str, fn: Callable[..., T], *args: Any,
                  delay: float = 0.0) -> T:
        """``fn(*args)`` in a worker thread, once one is free (and ``delay`` seconds have
        passed: a throttled name's wait counts as a login in progress); :class:`Busy` at once
        when too many logins (or too many from ``address``) are in progress."""
        if self.in_progress >= self.pending:
            raise Busy("too many logins in progress")
        if self._by_address.get(address, 0) >= self.per_address:
            raise Busy("too many logins in progress from this address")
        if self._slots is None:                 # created in the running loop
            self._slots = asyncio.Semaphore(self.workers)
        self.in_progress += 1
        self._by_address[address] = self._by_address.get(address, 0) + 1
        try:
            if delay > 0:
                await asyncio.sleep(delay)
            async with self._slots:
                return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self.in_progress -= 1
            left = self._by_address[address] - 1
            if left:
                self._by_address[address] = left
            else:
                del self._by_address[address]

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
