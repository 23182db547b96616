"""Wire error codes: Circus 0.19's ``errno`` values kept, plus a stable ``code`` naming the condition.

A client written for 0.19 keeps reading ``errno`` (0-6); new clients read ``code``. Every error
reply has ``status: "error"``, ``reason`` (human text), ``errno``, ``code`` and ``tb: null`` (no
traceback ever goes on the wire).
"""
from __future__ import annotations

import enum

from circus.errors import CircusError

__all__ = ["Errno", "ErrorCode", "ProtocolError"]


class Errno(enum.IntEnum):
    NOT_SPECIFIED = 0
    INVALID_JSON = 1
    UNKNOWN_COMMAND = 2
    MESSAGE_ERROR = 3
    OS_ERROR = 4
    COMMAND_ERROR = 5
    BAD_MSG_DATA_ERROR = 6


class ErrorCode(enum.Enum):
    """Stable condition names, each with the 0.19 errno a 0.19 client expects for it."""

    INVALID_JSON = ("invalid_json", Errno.INVALID_JSON)
    OVERSIZE = ("oversize", Errno.INVALID_JSON)
    INVALID_MESSAGE = ("invalid_message", Errno.MESSAGE_ERROR)
    UNKNOWN_COMMAND = ("unknown_command", Errno.UNKNOWN_COMMAND)
    MISSING_PROPERTY = ("missing_property", Errno.MESSAGE_ERROR)
    INVALID_PROPERTY = ("invalid_property", Errno.MESSAGE_ERROR)
    UNKNOWN_WATCHER = ("unknown_watcher", Errno.MESSAGE_ERROR)
    UNKNOWN_PROCESS = ("unknown_process", Errno.MESSAGE_ERROR)
    UNKNOWN_OPTION = ("unknown_option", Errno.MESSAGE_ERROR)
    UNKNOWN_TOOL = ("unknown_tool", Errno.MESSAGE_ERROR)
    INVALID_OPTION = ("invalid_option", Errno.MESSAGE_ERROR)
    ALREADY_EXISTS = ("already_exists", Errno.COMMAND_ERROR)
    NOT_SUPPORTED = ("not_supported", Errno.COMMAND_ERROR)
    INTERRUPTED = ("interrupted", Errno.COMMAND_ERROR)
    TIMEOUT = ("timeout", Errno.COMMAND_ERROR)
    SPAWN_FAILED = ("spawn_failed", Errno.BAD_MSG_DATA_ERROR)
    NOT_READY = ("not_ready", Errno.BAD_MSG_DATA_ERROR)
    FAILED = ("failed", Errno.BAD_MSG_DATA_ERROR)
    OS_ERROR = ("os_error", Errno.OS_ERROR)
    CONFIG_ERROR = ("config_error", Errno.COMMAND_ERROR)
    FORBIDDEN = ("forbidden", Errno.COMMAND_ERROR)
    INTERNAL = ("internal_error", Errno.COMMAND_ERROR)

    def __init__(self, text: str, errno: Errno) -> None:
        self.text = text
        self.errno = errno

    def __str__(self) -> str:
        return self.text


class ProtocolError(CircusError):
    """An error that becomes an error reply: a condition code and a human reason."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
