"""Process and watcher state machines: states, events, one transition table each.

Rules of this module:

* A *process* here is a worker slot (``wid``) of a watcher. It lives across respawns: the pid
  changes, the slot and its failure history stay. This is what lets backoff and ``fatal`` be
  decided per slot.
* Every state change goes through :func:`apply`, which looks the move up in the table and raises
  :class:`~circus.errors.IllegalTransition` when the table has no entry. No code assigns a state
  directly.
* Which event to apply (for instance whether an exit means "retry" or "give up") is decided by
  :mod:`circus.core.policy`; this module only knows which moves are legal.

The table is the single source of the state diagram in ``docs/states.rst``
(``python -m circus.core.states`` prints it as Graphviz).
"""
from __future__ import annotations

import enum
from typing import Mapping, TypeVar

from circus.errors import IllegalTransition

__all__ = [
    "ProcessState",
    "ProcessEvent",
    "WatcherState",
    "WatcherEvent",
    "PROCESS_TRANSITIONS",
    "WATCHER_TRANSITIONS",
    "apply",
    "LIVE_STATES",
]


class ProcessState(enum.Enum):
    STOPPED = "stopped"      # no process; not yet spawned, or stopped on purpose
    STARTING = "starting"    # forked/exec'd, not yet ready
    RUNNING = "running"      # ready and serving
    BACKOFF = "backoff"      # exited or failed to spawn; respawn scheduled after a delay
    STOPPING = "stopping"    # stop signal sent, waiting for the exit
    EXITED = "exited"        # exited and the restart policy says not to respawn
    FATAL = "fatal"          # gave up after too many failed starts

    def __str__(self) -> str:
        return self.value


class ProcessEvent(enum.Enum):
    SPAWN = "spawn"              # a new process was forked
    READY = "ready"              # the process is ready (immediately, without a readiness probe)
    RETRY = "retry"              # exited / failed to spawn; will be respawned after a delay
    FINISH = "finish"            # exited; the restart policy says it is done
    GIVE_UP = "give_up"          # too many failed starts
    STOP = "stop"                # stop signal sent
    REAPED = "reaped"            # the stopped process was collected
    DISCARD = "discard"          # stop a slot that has no live process

    def __str__(self) -> str:
        return self.value


P, PE = ProcessState, ProcessEvent

PROCESS_TRANSITIONS: Mapping[tuple[ProcessState, ProcessEvent], ProcessState] = {
    (P.STOPPED, PE.SPAWN): P.STARTING,
    (P.BACKOFF, PE.SPAWN): P.STARTING,
    (P.STOPPED, PE.RETRY): P.BACKOFF,        # the spawn itself failed (no pid)
    (P.BACKOFF, PE.RETRY): P.BACKOFF,
    (P.STOPPED, PE.GIVE_UP): P.FATAL,
    (P.BACKOFF, PE.GIVE_UP): P.FATAL,
    (P.STARTING, PE.READY): P.RUNNING,
    (P.STARTING, PE.RETRY): P.BACKOFF,
    (P.RUNNING, PE.RETRY): P.BACKOFF,
    (P.STARTING, PE.FINISH): P.EXITED,
    (P.RUNNING, PE.FINISH): P.EXITED,
    (P.STARTING, PE.GIVE_UP): P.FATAL,
    (P.RUNNING, PE.GIVE_UP): P.FATAL,
    (P.STARTING, PE.STOP): P.STOPPING,
    (P.RUNNING, PE.STOP): P.STOPPING,
    (P.STOPPING, PE.STOP): P.STOPPING,       # escalation (SIGKILL) keeps the state
    (P.STOPPING, PE.REAPED): P.STOPPED,
    (P.STOPPED, PE.DISCARD): P.STOPPED,
    (P.BACKOFF, PE.DISCARD): P.STOPPED,
    (P.EXITED, PE.DISCARD): P.STOPPED,
    (P.FATAL, PE.DISCARD): P.STOPPED,
}

#: states in which a slot has a live OS process
LIVE_STATES = frozenset({P.STARTING, P.RUNNING, P.STOPPING})


class WatcherState(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    ACTIVE = "active"
    STOPPING = "stopping"
    FATAL = "fatal"

    def __str__(self) -> str:
        return self.value


class WatcherEvent(enum.Enum):
    START = "start"          # start requested
    STARTED = "started"      # every process spawned
    STOP = "stop"            # stop requested (or the watcher is failing)
    STOPPED = "stopped"      # every process gone
    FAILED = "failed"        # every process gone after a give-up: the watcher is fatal
    CLEAR = "clear"          # an operator stops a fatal watcher: back to stopped

    def __str__(self) -> str:
        return self.value


W, WE = WatcherState, WatcherEvent

WATCHER_TRANSITIONS: Mapping[tuple[WatcherState, WatcherEvent], WatcherState] = {
    (W.STOPPED, WE.START): W.STARTING,
    (W.FATAL, WE.START): W.STARTING,
    (W.STARTING, WE.STARTED): W.ACTIVE,
    (W.STARTING, WE.STOP): W.STOPPING,
    (W.ACTIVE, WE.STOP): W.STOPPING,
    (W.STOPPING, WE.STOPPED): W.STOPPED,
    (W.STOPPING, WE.FAILED): W.FATAL,
    (W.FATAL, WE.CLEAR): W.STOPPED,
}

S = TypeVar("S", ProcessState, WatcherState)


def apply(table: Mapping[tuple[S, object], S], state: S, event: object, machine: str = "") -> S:
    """Return the state ``event`` leads to from ``state``, or raise IllegalTransition."""
    try:
        return table[(state, event)]
    except KeyError:
        raise IllegalTransition(machine or type(state).__name__, state, event) from None


def to_dot(table: Mapping[tuple[S, object], S], title: str) -> str:
    """Graphviz source of a transition table (used to generate the docs' diagrams)."""
    lines = [f'digraph "{title}" {{', "  rankdir=LR;"]
    for (src, event), dst in table.items():
        lines.append(f'  "{src}" -> "{dst}" [label="{event}"];')
    lines.append("}")
    return "\n".join(lines)


def to_rst_table(table: Mapping[tuple[S, object], S]) -> str:
    """The table as an RST list table (for docs/states.rst)."""
    rows = ["   * - from", "     - event", "     - to"]
    for (src, event), dst in table.items():
        rows += [f"   * - {src}", f"     - {event}", f"     - {dst}"]
    return ".. list-table::\n   :header-rows: 1\n\n" + "\n".join(rows) + "\n"


if __name__ == "__main__":  # pragma: no cover - docs helper
    print(to_dot(PROCESS_TRANSITIONS, "process"))
    print(to_dot(WATCHER_TRANSITIONS, "watcher"))
