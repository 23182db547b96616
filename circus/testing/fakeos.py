"""A scripted OS layer with the interface of :class:`circus.core.spawner.RealOS`.

Processes are records; nothing is forked. A test decides how each command behaves through
``FakeOS.behaviour``: a callable that receives the new :class:`FakeProcess` and may schedule its
exit (``proc.exit_after(seconds, code)``), make it ignore the stop signal (``proc.stubborn``), or
raise :class:`~circus.errors.SpawnError` to fail the spawn. The default: runs until signalled, and
dies of the signal it gets.
"""
from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass, field
from typing import Callable

from circus.core.spawner import ExitHandler, SpawnSpec

__all__ = ["FakeOS", "FakeProcess"]

#: signals a fake process handles (records) instead of dying of them
HANDLED = frozenset({signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD, signal.SIGWINCH})


@dataclass(eq=False)
class FakeProcess:
    os: "FakeOS"
    pid: int
    spec: SpawnSpec
    spawned_at: float
    alive: bool = True
    stubborn: bool = False                  # ignores every signal but SIGKILL
    signals: list[int] = field(default_factory=list)
    exit_code: int | None = None
    children: list[int] = field(default_factory=list)

    def exit(self, code: int) -> None:
        """The process exits now with ``code`` (negative: killed by that signal)."""
        if not self.alive:
            return
        self.alive = False
        self.exit_code = code
        loop = asyncio.get_running_loop()
        loop.call_soon(self.os._deliver, self.pid, code)

    def exit_after(self, seconds: float, code: int) -> None:
        asyncio.get_running_loop().call_later(seconds, self.exit, code)


class FakeOS:
    def __init__(self) -> None:
        self.processes: dict[int, FakeProcess] = {}
        self.spawned: list[FakeProcess] = []
        self.behaviour: Callable[[FakeProcess], None] = lambda proc: None
        self._next_pid = 1000
        self._on_exit: ExitHandler | None = None

    # -- OSLayer ----------------------------------------------------------------------------------

    def spawn(self, spec: SpawnSpec) -> int:
        loop = asyncio.get_running_loop()
        self._next_pid += 1
        proc = FakeProcess(self, self._next_pid, spec, loop.time())
        self.behaviour(proc)          # may raise SpawnError before the process "exists"
        self.processes[proc.pid] = proc
        self.spawned.append(proc)
        return proc.pid

    def kill(self, pid: int, sig: int) -> bool:
        proc = self.processes.get(pid)
        if proc is None or not proc.alive:
            return False
        proc.signals.append(sig)
        if sig == 0:
            return True
        if sig == signal.SIGKILL or (not proc.stubborn and sig not in HANDLED):
            proc.exit(-sig)
        return True

    def killpg(self, pgid: int, sig: int) -> bool:
        return self.kill(pgid, sig)

    def group_alive(self, pgid: int) -> bool:
        proc = self.processes.get(pgid)
        return proc is not None and proc.alive

    def descendants(self, pid: int) -> list[int]:
        proc = self.processes.get(pid)
        return list(proc.children) if proc is not None else []

    def start_reaping(self, loop: asyncio.AbstractEventLoop, on_exit: ExitHandler) -> None:
        self._on_exit = on_exit

    def stop_reaping(self, loop: asyncio.AbstractEventLoop) -> None:
        self._on_exit = None

    # -- helpers for tests ------------------------------------------------------------------------

    def _deliver(self, pid: int, code: int) -> None:
        if self._on_exit is not None:
            self._on_exit(pid, code)

    def alive(self) -> list[FakeProcess]:
        return [p for p in self.processes.values() if p.alive]
