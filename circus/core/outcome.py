"""What an operation on a watcher achieved, and what is wrong with a watcher: the truth a reply
tells, so that ``ok`` is only said of what is done.

* :func:`trouble` names what is wrong with a watcher whose 0.19 state word hides it: ``fatal``,
  ``backoff`` (an ``active`` watcher with processes that exited or failed to start and wait to be
  respawned: a crash loop), ``exited`` (processes that ended with an error and are not
  respawned, or a job that stopped when its processes ended, not all with exit 0). ``None``:
  nothing is wrong (a job that completed, every process with exit 0, is ``stopped`` and
  ``completed``).
* :func:`last_lines` gives the output that explains it: the last lines of stderr (of stdout when
  there is no stderr), as a watcher keeps them (``recent_lines``).
* :func:`start_failure` says why a start did not start everything it should have: a process
  that could not be spawned (command not found, a socket that cannot be bound...).
* :func:`settle` waits, after a start, until each new process without a readiness probe has
  been up ``min_uptime`` (the watcher's own measure of a failed start), and fails with the
  reason and the last stderr lines when one exits first. A process with a probe proved itself.
"""
from __future__ import annotations

import asyncio
from typing import Any, Iterable

from circus.core.policy import RestartPolicy, describe_exit
from circus.core.states import ProcessState, WatcherState
from circus.errors import NotReady, SpawnError

__all__ = ["trouble", "last_lines", "start_failure", "settle", "SETTLE_MAX", "LAST_LINES"]

PS, WS = ProcessState, WatcherState

#: the longest a waiting start watches its new processes (whatever ``min_uptime`` says)
SETTLE_MAX = 5.0
#: output lines a status of a watcher in trouble shows
LAST_LINES = 10


def trouble(w: Any) -> str | None:
    """What is wrong with watcher ``w`` (``fatal``, ``backoff``, ``exited``), or None."""
    if w.state is WS.FATAL:
        return "fatal"
    if w.state is WS.STOPPED and w.completed_ok is False:
        return "exited"                  # a job whose processes ended, not all with exit 0
    if w.state is not WS.ACTIVE:
        return None
    slots = [p for p in w.slots.values() if not p.retiring]
    if any(p.state is PS.BACKOFF for p in slots):
        return "backoff"
    if any(p.state is PS.EXITED and p.last_exit not in (0, None) for p in slots):
        return "exited"
    return None


def last_lines(w: Any, n: int = LAST_LINES) -> list[dict]:
    """The last ``n`` lines of ``w``'s stderr, else of its stdout (``[]``: none kept), each
    with its watcher's name."""
    lines = w.output.last(n, ("stderr",)) or w.output.last(n, ("stdout",))
    return [{**line, "watcher": w.name} for line in lines]


def lines_text(lines: Iterable[dict], limit: int = LAST_LINES) -> str:
    shown = [f"  {line['line']}" for line in list(lines)[-limit:]]
    return "\n".join(shown)


def start_failure(w: Any, among: Iterable[Any] | None = None) -> str | None:
    """Why the start that just ran left some of ``w``'s processes (of the slots ``among``, all
    by default) unstarted, or None."""
    slots = list(w.slots.values()) if among is None else list(among)
    failed = [p for p in slots if p.spawn_error and not p.retiring]
    if not failed:
        return None
    wanted = max(w.numprocesses, len(failed))
    what = failed[0].spawn_error
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    state = "it gave up" if w.state is WS.FATAL or failed[0].state is PS.FATAL else \
        "circusd retries it, see its status"
    return (f"{w.name}: {len(failed)} of {wanted} process(es) could not be started: process "
            f"{failed[0].wid}: {what}{more}; {state}")


async def settle(w: Any, pids: Iterable[int]) -> None:
    """Until each of ``pids`` (new processes of ``w``) without a probe has been up
    ``min_uptime`` (at most :data:`SETTLE_MAX`); NotReady with the reason if one exits first
    (not when circusd stopped it: a stop, a resize)."""
    loop = asyncio.get_running_loop()
    window = min(w.cfg.min_uptime, SETTLE_MAX)
    if window <= 0:
        return                               # min_uptime = 0: no exit is a failed start
    watched = []
    for pid in pids:
        p = w._by_pid.get(pid)
        if p is None or p.exited is None or (p.io is not None and p.io.probe is not None):
            continue                         # gone already, or ready by its probe
        watched.append((pid, p, p.started_at, p.exited))
    for pid, p, started, exited in watched:
        if not exited.done():
            try:
                await asyncio.wait_for(asyncio.shield(exited), max(0.0, started + window - loop.time()))
            except TimeoutError:
                continue
        completed = exited.result() == 0 and w.policy is not RestartPolicy.ALWAYS
        if p.planned_exit or completed:
            continue                         # stopped by circusd, or a job that completed (its
            #                                  slot may be put away already: not its state)
        uptime = p.last_uptime if p.last_uptime is not None else loop.time() - started
        text = lines_text(line for line in last_lines(w) if line["pid"] == pid) or \
            lines_text(last_lines(w))
        tail = f"; last output lines:\n{text}" if text else ""
        raise NotReady(f"{w.name}: process {pid} {describe_exit(exited.result())} {uptime:.2f} s "
                       f"after it started (a failed start: it ran less than min_uptime = "
                       f"{w.cfg.min_uptime:g} s){tail}")


def check_started(w: Any, among: Iterable[Any] | None = None) -> None:
    """Raise SpawnError if the start that just ran could not start every process."""
    problem = start_failure(w, among)
    if problem:
        raise SpawnError(problem)
