"""Signals are commands: which signal means what, and how they reach the event loop.

SIGHUP is ``reload``, SIGTERM/SIGINT/SIGQUIT are ``quit``, SIGUSR1 is ``reopen`` (0.19's
meanings, plus SIGUSR1). asyncio hands a signal to the loop as one byte in its self-pipe; a burst
of SIGCHLD (hundreds of exits at once) fills it, and a TERM arriving then would be dropped with
its byte. So the command signals are taken by Python-level handlers, which run whatever became
of the byte, and scheduled on the loop from there.

The last resort of a stop signal: when circusd's event loop is stuck, end circusd anyway. A loop
stuck in one long computation (a bug, a custom stream class that never returns) would never run
the ``quit``, and only SIGKILL would end circusd. So the handler, which Python runs in the main
thread even in the middle of such a computation, also arms a timer in a thread of the C runtime
(:func:`faulthandler.dump_traceback_later`), which needs neither the loop nor the GIL. The loop
disarms it as soon as it takes the command. If it has not within :data:`STALL_LIMIT` seconds, the
timer writes the stack of every thread to circusd's log and ends the process (``_exit(1)``). Its
children are then handled as after a SIGKILL of circusd: the keeper ends them (or, with
``[circus] state_file``, keeps them for the next circusd to re-adopt).
"""
from __future__ import annotations

import asyncio
import faulthandler
import logging
import signal
import sys
from typing import IO, Any, Callable, Mapping

__all__ = ["SIGNAL_COMMANDS", "STALL_LIMIT", "SignalCatcher"]

#: what each signal means to circusd
SIGNAL_COMMANDS: Mapping[int, str] = {
    signal.SIGHUP: "reload",
    signal.SIGTERM: "quit",
    signal.SIGINT: "quit",
    signal.SIGQUIT: "quit",
    signal.SIGUSR1: "reopen",
}

#: seconds the event loop has to take a stop signal before circusd is ended without it
STALL_LIMIT = 3.0


class SignalCatcher:
    """Routes the command signals to ``on_signal(signum)`` on the loop, from :meth:`catch` on."""

    def __init__(self, on_signal: Callable[[int], None]) -> None:
        self._on_signal = on_signal
        self._loop: asyncio.AbstractEventLoop | None = None

    def catch(self) -> None:
        if self._loop is not None:
            return
        loop = self._loop = asyncio.get_running_loop()

        def handler(signum: int, _frame: object) -> None:
            if SIGNAL_COMMANDS[signum] == "quit":
                _arm()                   # ends circusd if the loop cannot take the quit
            loop.call_soon_threadsafe(self._deliver, signum)

        for signum in SIGNAL_COMMANDS:
            signal.signal(signum, handler)
        loop.add_signal_handler(signal.SIGWINCH, lambda: None)   # also keeps the wakeup fd set

    def _deliver(self, signum: int) -> None:
        faulthandler.cancel_dump_traceback_later()   # the loop runs: the ordinary way
        self._on_signal(signum)

    def release(self) -> None:
        if self._loop is None:
            return
        for signum in SIGNAL_COMMANDS:
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT
                          else signal.SIG_DFL)
        self._loop.remove_signal_handler(signal.SIGWINCH)
        self._loop = None


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


def _arm() -> None:
    """From a signal handler: end circusd in STALL_LIMIT seconds unless the loop takes it."""
    try:
        faulthandler.dump_traceback_later(STALL_LIMIT, exit=True, file=_log_stream())
    except (OSError, ValueError, RuntimeError):    # no usable stream: nothing better to do
        pass
