"""The operating system seen by an arbiter that runs inside another program.

circusd reaps with ``waitpid(-1)`` on SIGCHLD and is a child subreaper: it owns every process
below it. Inside a Python program neither is right: ``waitpid(-1)`` would collect the exit
status of the program's own children (its ``subprocess.run`` would lose them), SIGCHLD handlers
exist only in the main thread, and at the end the arbiter must not end processes it did not
start. :class:`EmbeddedOS` reaps only the processes it spawned, each through a pidfd watched by
the event loop, from any thread; where pidfds do not exist it polls those pids. It reports no
descendants of the program itself, so nothing else is swept at shutdown.
"""
from __future__ import annotations

import asyncio
import os
from typing import Callable

from circus.core.spawner import RealOS, SpawnSpec

__all__ = ["EmbeddedOS", "POLL_INTERVAL"]

#: how often exits are polled where pidfds are not available
POLL_INTERVAL = 0.05


class EmbeddedOS(RealOS):
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_exit: Callable[[int, int], None] | None = None
        self._fds: dict[int, int] = {}           # pid -> its pidfd
        self._polled: set[int] = set()           # pids without a pidfd
        self._poller: asyncio.TimerHandle | None = None

    def spawn(self, spec: SpawnSpec) -> int:
        pid = super().spawn(spec)
        self._watch(pid)
        return pid

    def descendants(self, pid: int) -> list[int]:
        if pid == os.getpid():       # the program's other children are not the arbiter's
            return []
        return super().descendants(pid)

    def start_reaping(self, loop: asyncio.AbstractEventLoop, on_exit: Callable[[int, int], None]) -> None:
        self._loop, self._on_exit = loop, on_exit
        for pid, fd in self._fds.items():
            loop.add_reader(fd, self._collect, pid)
        if self._polled:
            self._poll()

    def stop_reaping(self, loop: asyncio.AbstractEventLoop) -> None:
        for pid, fd in list(self._fds.items()):
            loop.remove_reader(fd)
            os.close(fd)
        self._fds.clear()
        if self._poller is not None:
            self._poller.cancel()
        self._loop = None

    def _watch(self, pid: int) -> None:
        try:
            fd = os.pidfd_open(pid)         # also works on a child that already exited
        except (AttributeError, OSError):
            self._polled.add(pid)
            if self._loop is not None and self._poller is None:
                self._poll()
            return
        self._fds[pid] = fd
        if self._loop is not None:
            self._loop.add_reader(fd, self._collect, pid)

    def _collect(self, pid: int) -> None:
        fd = self._fds.pop(pid, None)
        if fd is not None and self._loop is not None:
            self._loop.remove_reader(fd)
            os.close(fd)
        self._reap(pid)

    def _reap(self, pid: int) -> bool:
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:           # somebody else collected it: its status is lost
            got, status = pid, 0
        if got == 0:
            return False
        if self._on_exit is not None:
            self._on_exit(pid, os.waitstatus_to_exitcode(status))
        return True

    def _poll(self) -> None:
        self._poller = None
        for pid in list(self._polled):
            if self._reap(pid):
                self._polled.discard(pid)
        if self._polled and self._loop is not None:
            self._poller = self._loop.call_later(POLL_INTERVAL, self._poll)
