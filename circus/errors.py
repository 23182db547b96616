"""The one error hierarchy of Circus.

::

    CircusError                      anything Circus raises on purpose
     ├── ConfigError                 a config file or option is wrong (circus.config)
     ├── IllegalTransition           a state machine was asked for a move its table forbids (a bug)
     ├── SpawnError                  a process could not be started (missing binary, user, dir...)
     ├── WatcherError                an operation on a watcher cannot be done
     │    ├── UnknownWatcher         no watcher by that name
     │    ├── Interrupted            preempted by a stop or quit before it finished
     │    ├── NotReady               a new process exited or failed its probe before it was ready
     │    ├── StreamError            an output stream could not be opened (file, custom class)
     │    └── Removed                the watcher was removed: it takes no more operations
     ├── LimitExceeded               a request asks for more than a documented limit allows
     └── OperationTimeout            an operation did not finish before its deadline

Each error names who is at fault in its message; wire codes are attached by the protocol layer.
"""
from __future__ import annotations

__all__ = [
    "CircusError",
    "IllegalTransition",
    "SpawnError",
    "WatcherError",
    "UnknownWatcher",
    "Interrupted",
    "NotReady",
    "StreamError",
    "Removed",
    "LimitExceeded",
    "OperationTimeout",
]


class CircusError(Exception):
    """Base class of every error Circus raises on purpose."""


class IllegalTransition(CircusError):
    """A state machine was asked for a transition its table does not allow."""

    def __init__(self, machine: str, state: object, event: object) -> None:
        super().__init__(f"{machine}: event {event!s} is not allowed in state {state!s}")
        self.machine = machine
        self.state = state
        self.event = event


class SpawnError(CircusError):
    """A process could not be started; the message says why (binary, user, directory...)."""


class WatcherError(CircusError):
    """An operation on a watcher cannot be done as asked."""


class UnknownWatcher(WatcherError):
    def __init__(self, name: str) -> None:
        super().__init__(f"program {name} not found")
        self.name = name


class Interrupted(WatcherError):
    """An operation was preempted (by ``stop`` or ``quit``) before it finished."""


class NotReady(WatcherError):
    """A new process exited, or failed its readiness probe, before it was ready."""


class StreamError(WatcherError):
    """A watcher's stdout/stderr stream could not be opened: its file or its class."""


class Removed(WatcherError):
    """The watcher was removed (``rm``, ``reloadconfig``, ``quit``): nothing more runs on it."""


class LimitExceeded(CircusError):
    """A request asks for more than a documented limit (``circus.protocol.limits``) allows."""


class OperationTimeout(CircusError):
    """An operation did not complete before its deadline."""
