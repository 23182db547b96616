"""Circus 0.19's exception module, kept so that existing scripts importing from it still work
(``from circus.exc import CallError``). New code imports from ``circus.client`` and
``circus.errors``. Only ``CallError`` is raised by the client; the others exist for imports."""
from circus.client.errors import CallError
from circus.errors import CircusError

__all__ = ["CallError", "ConflictError", "MessageError", "AlreadyExist", "ArgumentError"]


class ConflictError(CircusError):
    """0.19's "arbiter is already running X" refusal, which this version never makes."""


class MessageError(CircusError):
    """0.19's invalid-message error (now an error reply with a ``code``)."""


class AlreadyExist(CircusError):
    """0.19's duplicate-watcher error (now an ``already_exists`` error reply)."""


class ArgumentError(CircusError):
    """0.19's circusctl argument error."""
