"""circusd's own logging: levels, outputs (stdout, file, syslog) and reopening for logrotate."""
from __future__ import annotations

import logging
import logging.handlers
import sys
from urllib.parse import parse_qs, urlparse

__all__ = ["configure", "reopen", "LOG_FORMAT", "LEVELS"]

LOG_FORMAT = "%(asctime)s %(name)s[%(process)d] [%(levelname)s] %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
LEVELS = ("critical", "error", "warning", "info", "debug")


def _handler(output: str) -> logging.Handler:
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
    return logging.handlers.WatchedFileHandler(output)


def configure(level: str = "info", output: str = "-") -> logging.Handler:
    """Route the ``circus`` loggers to ``output`` at ``level``; returns the handler."""
    if level.lower() not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (one of {', '.join(LEVELS)})")
    handler = _handler(output)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
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
