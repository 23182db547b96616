"""circusd's own logging: levels, outputs (stdout, file, syslog) and reopening for logrotate.

A log file is opened as circusd opens every file as root (:mod:`circus.security.safepath`): not
through a link others could have placed, an existing one only if it is root's or circusd's user's
with one link; a new one is created mode 0640. An existing log file others may write to (the
audit lines are in it) is made ``go-w`` and circusd says so. The file handler
(:mod:`circus.cli.logfile`) and ``logging.handlers`` are imported only for a file or syslog.

With a *console* file (``circusd --daemon``, :mod:`circus.cli.daemonlog`), circusd's own stdout
and stderr are that file: the output of watchers without a stream goes there. Each time the log
file is (re)opened, on ``SIGUSR1`` or when logrotate moved it, stdout and stderr follow it.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Any

from circus.security.safepath import open_append

__all__ = ["configure", "apply_config", "reopen", "LOG_FORMAT", "LEVELS", "LOG_MODE",
           "SafeFileHandler", "describe"]

#: mode of a new log file (before the umask)
LOG_MODE = 0o640


def __getattr__(name: str) -> Any:
    if name == "SafeFileHandler":                # loaded with its module, for a log file only
        from circus.cli.logfile import SafeFileHandler
        return SafeFileHandler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        from logging.handlers import SysLogHandler
        from urllib.parse import parse_qs, urlparse

        url = urlparse(output)
        facility = next(iter(parse_qs(url.query, keep_blank_values=True)), "user") or "user"
        fac = SysLogHandler.facility_names.get(facility.lower())
        if fac is None:
            raise ValueError(f"unknown syslog facility {facility!r}")
        if url.path and not url.netloc:
            address: str | tuple[str, int] = url.path
        else:
            address = (url.hostname or "localhost", url.port or 514)
        return SysLogHandler(address=address, facility=fac)
    from circus.cli.logfile import SafeFileHandler

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
    _report_fixed(handler)
    return handler


def apply_config(path: str, disable_existing_loggers: bool = True) -> None:
    """Apply the logger configuration file at ``path`` (*.ini: ``fileConfig``, *.json/*.yaml:
    ``dictConfig``, read by :func:`circus.config.loggerconfig.read_logger_config`): ValueError
    saying what is wrong with the file; what ``logging.config`` raises for its contents."""
    # logging.config (with configparser, socketserver, logging.handlers, pickle) is for a
    # logger configuration file only
    import logging.config

    from circus.config.loggerconfig import read_logger_config

    kind, data = read_logger_config(path)
    if kind == "ini":
        logging.config.fileConfig(data, disable_existing_loggers=disable_existing_loggers)
    else:
        logging.config.dictConfig(data)


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
            _report_fixed(handler)
    if _console is not None:
        try:
            _open_console(_console)
        except OSError as exc:
            logging.getLogger("circus").error("cannot reopen %s for stdout and stderr: %s",
                                              _console, exc.strerror or exc)


def _report_fixed(handler: logging.Handler) -> None:
    """A log file opened with circusd's rules says whether it had to fix the file's mode."""
    report = getattr(handler, "report_fixed", None)
    if report is not None:
        report()


def describe(output: str, console: str | None) -> str:
    """Where the log goes, for circusd's first lines (and the daemon's note)."""
    where = "stdout" if output == "-" else output
    if console is None:
        return f"log: {where}"
    if os.path.abspath(console) == os.path.abspath(output):
        return f"log: {where} (with the output of watchers that have no stream)"
    return f"log: {where}; the output of watchers that have no stream: {console}"
