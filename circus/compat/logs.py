"""Circus 0.19's logging helpers (``circus.util``): its level names and line formats,
``configure_logger`` and ``debuglog``."""
from __future__ import annotations

import logging
from typing import Any

__all__ = ["LOG_LEVELS", "LOG_FMT", "LOG_DATE_FMT", "LOG_DATE_SYSLOG_FMT", "configure_logger",
           "debuglog"]

LOG_LEVELS = {"critical": logging.CRITICAL, "error": logging.ERROR,
              "warning": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG}
LOG_FMT = r"%(asctime)s %(name)s[%(process)d] [%(levelname)s] %(message)s"
LOG_DATE_FMT = r"%Y-%m-%d %H:%M:%S"
LOG_DATE_SYSLOG_FMT = r"%b %d %H:%M:%S"


def configure_logger(logger: logging.Logger, level: str = "INFO", output: str = "-",
                     loggerconfig: str | None = None, name: str | None = None) -> None:
    """0.19's logging set-up: ``loggerconfig`` (an INI, JSON or YAML logging configuration
    file, as circusd reads one: :mod:`circus.config.loggerconfig`) if given, else one handler on
    the root logger for ``output`` (``-``/``stdout``, ``stderr``, a file, ``syslog://...``) at
    ``level``, in 0.19's line format."""
    from circus.cli import logsetup
    from circus.config.loggerconfig import logger_config_path

    path = logger_config_path(loggerconfig)
    if path is not None:
        logsetup.apply_config(path, disable_existing_loggers=False)
        return
    logsetup.configure(str(level).lower(), output)


def debuglog(func: Any) -> Any:
    """0.19 logged calls of the decorated function at debug level; here it changes nothing."""
    return func
