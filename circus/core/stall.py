"""The last resort of a stop signal: when circusd's event loop is stuck, end circusd anyway.

SIGTERM, SIGINT and SIGQUIT are commands (``quit``) that the event loop runs. A loop stuck in
one long computation (a bug, a custom stream class that never returns) would never run them,
and only SIGKILL would end circusd. So the signal handler, which Python runs in the main thread
even in the middle of such a computation, also arms a timer in a thread of the C runtime
(:func:`faulthandler.dump_traceback_later`), which needs neither the loop nor the GIL. The loop
disarms it as soon as it takes the command. If it has not within :data:`STALL_LIMIT` seconds,
the timer writes the stack of every thread to circusd's log and ends the process
(``_exit(1)``). Its children are then handled as after a SIGKILL of circusd: the keeper ends
them (or, with ``[circus] state_file``, keeps them for the next circusd to re-adopt).
"""
from __future__ import annotations

import faulthandler
import logging
import sys
from typing import IO, Any

__all__ = ["STALL_LIMIT", "arm", "disarm"]

#: seconds the event loop has to take a stop signal before circusd is ended without it
STALL_LIMIT = 3.0


def _log_stream() -> IO[Any]:
    """The stream of circusd's log (a file or stdout), else stderr."""
    for handler in logging.getLogger().handlers:
        stream = getattr(handler, "stream", None)
        try:
            if stream is not None and stream.fileno() >= 0:
                return stream
        except (OSError, ValueError, AttributeError):
            continue
    return sys.stderr


def arm() -> None:
    """From a signal handler: end circusd in STALL_LIMIT seconds unless :func:`disarm` runs."""
    try:
        faulthandler.dump_traceback_later(STALL_LIMIT, exit=True, file=_log_stream())
    except (OSError, ValueError, RuntimeError):    # no usable stream: nothing better to do
        pass


def disarm() -> None:
    faulthandler.cancel_dump_traceback_later()
