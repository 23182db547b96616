"""circusd's own logging: levels, outputs (stdout, file, syslog) and reopening for logrotate.

A log file is opened as circusd opens every file as root (:mod:`circus.security.safepath`): not
through a link others could have placed, an existing one only if it is root's or circusd's user's
with one link; a new one is created mode 0640. An existing log file others may write to (the
audit lines are in it) is made ``go-w`` and circusd says so.

With a *console* file (``circusd --daemon``, :mod:`circus.cli.daemonlog`), circusd's own stdout
and stderr are that file: the output of watchers without a stream goes there. Each time the log
file is (re)opened, on ``SIGUSR1`` or when logrotate moved it, stdout and stderr follow it.
"""
from __future__ import annotations

import logging
import logging.handlers
import os
import stat
import sys
from typing import IO
from urllib.parse import parse_qs, urlparse

from circus.security.safepath import open_append

__all__ = ["configure", "reopen", "LOG_FORMAT", "LEVELS", "LOG_MODE", "SafeFileHandler",
           "describe"]

#: mode of a new log file (before the umask)
LOG_MODE = 0o640


class SafeFileHandler(logging.handlers.WatchedFileHandler):
    """A WatchedFileHandler whose file is opened with circusd's rules for files it opens as root."""

    #: (path, old mode) of a file whose group/other write bit was removed, to be logged
    fixed: tuple[str, int] | None = None

    def __init__(self, filename: str, console: bool = False) -> None:
        #: circusd's stdout and stderr are this file too, reopened with it
        self.console = console
        # a name sent by a client may hold anything; a line is never lost for one character
        super().__init__(filename, encoding="utf-8", errors="backslashreplace")

    def _open(self) -> IO[str]:
        fd, created = open_append(self.baseFilename, mode=LOG_MODE)
        try:
            st = os.fstat(fd)
            if not created and stat.S_ISREG(st.st_mode) and st.st_mode & 0o022:
                os.fchmod(fd, stat.S_IMODE(st.st_mode) & ~0o022)
                self.fixed = (self.baseFilename, stat.S_IMODE(st.st_mode))
            if self.console:
                _console_onto(fd)
            return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)
        except BaseException:
            os.close(fd)
            raise

    def report_fixed(self) -> None:
        if self.fixed is not None:
            path, mode = self.fixed
            self.fixed = None
            logging.getLogger("circus").warning(
                "log file %s was writable by others (mode %o): group/other write removed",
                path, mode)

def _console_onto(fd: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)


#: the console file when it is not the log file (the log goes to syslog)
_console: str | None = None


def _open_console(path: str) -> None:
    fd, _ = open_append(path, mode=LOG_MODE)
    try:
        _console_onto(fd)
    finally:
        os.close(fd)


LOG_FORMAT = "%(asctime)s %(name)s[%(process)d] [%(levelname)s] %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
LEVELS = ("critical", "error", "warning", "info", "debug")


def _handler(output: str, console: str | None) -> logging.Handler:
    if output in ("-", "stdout"):
        return logging.StreamHandler(sys.stdout)
    if output == "stderr":
        return logging.StreamHandler(sys.stderr)
    if output.startswith("syslog://"):
        url = urlparse(output)
        facility = next(iter(parse_qs(url.query, keep_blank_values=True)), "user") or "user"
        fac = logging.handlers.SysLogHandler.facility_names.get(facility.lower())
        if fac is None:
            raise ValueError(f"unknown syslog facility {facility!r}")
        if url.path and not url.netloc:
            address: str | tuple[str, int] = url.path
        else:
            address = (url.hostname or "localhost", url.port or 514)
        return logging.handlers.SysLogHandler(address=address, facility=fac)
    return SafeFileHandler(output, console=console is not None and
                           os.path.abspath(console) == os.path.abspath(output))


def configure(level: str = "info", output: str = "-", console: str | None = None) -> logging.Handler:
    """Route the ``circus`` loggers to ``output`` at ``level``; returns the handler. With
    ``console``, circusd's stdout and stderr become that file (OSError when it cannot be
    opened)."""
    global _console
    if level.lower() not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (one of {', '.join(LEVELS)})")
    handler = _handler(output, console)
    _console = None
    if console is not None and not getattr(handler, "console", False):
        _open_console(console)
        _console = console
    handler.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    if isinstance(handler, SafeFileHandler):
        handler.report_fixed()
    return handler


def reopen() -> None:
    """Reopen file handlers (SIGUSR1 / the ``reopen`` command), e.g. after logrotate."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.acquire()
            try:
                handler.close()
                handler.stream = handler._open()
            finally:
                handler.release()
            if isinstance(handler, SafeFileHandler):
                handler.report_fixed()
    if _console is not None:
        try:
            _open_console(_console)
        except OSError as exc:
            logging.getLogger("circus").error("cannot reopen %s for stdout and stderr: %s",
                                              _console, exc.strerror or exc)


def describe(output: str, console: str | None) -> str:
    """Where the log goes, for circusd's first lines (and the daemon's note)."""
    where = "stdout" if output == "-" else output
    if console is None:
        return f"log: {where}"
    if os.path.abspath(console) == os.path.abspath(output):
        return f"log: {where} (with the output of watchers that have no stream)"
    return f"log: {where}; the output of watchers that have no stream: {console}"
