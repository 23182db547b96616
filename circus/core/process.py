"""A process slot of a watcher, and the one stop policy.

:class:`Process` is a worker slot (``wid``): the current pid, its state (changed only through the
transition table) and its failure history, which survives respawns.

:func:`terminate` is the only way a process is stopped: stop signal to its process group (and to
its descendants when ``stop_children``), wait ``graceful_timeout`` for the exit, then SIGKILL the
group and every descendant seen, and wait until the exit has been reaped. Leftover members of the
group (a grandchild that ignored the stop signal) get the same treatment.
"""
from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from typing import Any, Callable

from circus.core.spawner import OSLayer
from circus.core.states import PROCESS_TRANSITIONS, ProcessEvent, ProcessState, apply

__all__ = ["Process", "terminate", "KILL_WAIT"]

log = logging.getLogger("circus")

#: how long to wait for a SIGKILLed process to be reaped before giving up waiting (D state...)
KILL_WAIT = 10.0
#: how often a leftover process group is checked while it drains (rare path only)
GROUP_POLL = 0.02


@dataclass(eq=False, slots=True)
class Process:
    """One worker slot of a watcher."""

    wid: int
    state: ProcessState = ProcessState.STOPPED
    pid: int | None = None
    started_at: float = 0.0            # loop (monotonic) time of the last spawn
    create_time: float = 0.0           # wall-clock time of the last spawn (for events/stats)
    failures: int = 0                  # consecutive failed starts
    streak_started: float | None = None
    retry_at: float | None = None      # BACKOFF: when to respawn
    expires_at: float | None = None    # max_age deadline
    retiring: bool = False             # being replaced: no longer counts toward numprocesses
    stop_deadline: float | None = None
    last_exit: int | None = None
    spawns: int = 0                    # spawns of this slot: every one after the first is a restart
    reason: str = ""                   # why the slot is in its state (backoff / fatal)
    abort_reason: str = ""             # why circusd stopped a starting process (probe failed...)
    exited: asyncio.Future[int] | None = field(default=None, repr=False)
    ready_waiter: asyncio.Future[str] | None = field(default=None, repr=False)  # None: no probe
    io: Any = field(default=None, repr=False)          # readiness.ProcessIO when captured
    start_ticks: int | None = None     # start time in clock ticks since boot (its identity)
    adopted: bool = False              # started by an earlier circusd, re-adopted
    adopted_pipes: dict[str, int] | None = field(default=None, repr=False)  # to reattach
    spawn_error: str = ""              # why the last spawn of this slot failed ("": it did not)
    planned_exit: bool = False         # the last exit was circusd's doing (a stop, a retirement)
    last_uptime: float | None = None   # how long the last process of this slot ran

    def apply(self, event: ProcessEvent) -> ProcessState:
        self.state = apply(PROCESS_TRANSITIONS, self.state, event, f"process {self.wid}")
        return self.state

    @property
    def live(self) -> bool:
        return self.state in (ProcessState.STARTING, ProcessState.RUNNING, ProcessState.STOPPING)


def _signal_tree(os_: OSLayer, pid: int, sig: int, extra: list[int]) -> None:
    if not os_.killpg(pid, sig):        # its group is gone: it may have moved to another one
        os_.kill(pid, sig)
    for child in extra:
        os_.kill(child, sig)


async def terminate(
    os_: OSLayer,
    proc: Process,
    *,
    sig: int,
    timeout: float,
    stop_children: bool,
    on_kill: Callable[[int], None],
) -> int | None:
    """Stop ``proc`` (which must be STOPPING with a live pid); return its exit code.

    Idempotent: a second caller for the same process just joins the wait (and the escalation).
    """
    assert proc.pid is not None and proc.exited is not None
    loop = asyncio.get_running_loop()
    pid, exited = proc.pid, proc.exited
    if proc.stop_deadline is None:
        proc.stop_deadline = loop.time() + max(0.0, timeout)
        extra = os_.descendants(pid) if stop_children else []
        _signal_tree(os_, pid, sig, extra)
        on_kill(pid)
    code: int | None
    try:
        code = await asyncio.wait_for(asyncio.shield(exited), max(0.0, proc.stop_deadline - loop.time()))
    except TimeoutError:
        victims = os_.descendants(pid)
        _signal_tree(os_, pid, signal.SIGKILL, victims)
        on_kill(pid)
        try:
            code = await asyncio.wait_for(asyncio.shield(exited), KILL_WAIT)
        except TimeoutError:
            log.error("process %d did not die %.0f s after SIGKILL; no longer waiting", pid, KILL_WAIT)
            return None
    await drain_group(os_, pid, proc.stop_deadline)
    return code


async def drain_group(os_: OSLayer, pgid: int, deadline: float) -> None:
    """Wait until process group ``pgid`` is empty; SIGKILL what is left at ``deadline``."""
    loop = asyncio.get_running_loop()
    while os_.group_alive(pgid):
        if loop.time() >= deadline:
            os_.killpg(pgid, signal.SIGKILL)
            return
        await asyncio.sleep(GROUP_POLL)
