"""The helpers of Circus 0.19's ``circus.util`` that plugins, hooks, stream classes and tools in
the wild import, written anew with 0.19's behaviour (see ``circus.util`` for the list and the
names that are gone).
"""
from __future__ import annotations

import asyncio
import importlib
import json
import logging
import logging.config
import os
import signal
import sys
from typing import Any

from circus.client.wire import (DEFAULT_ENDPOINT_DEALER, DEFAULT_ENDPOINT_STATS,
                                DEFAULT_ENDPOINT_SUB)
from circus.client.wire import connect as _connect

__all__ = [
    "DEFAULT_ENDPOINT_DEALER", "DEFAULT_ENDPOINT_SUB", "DEFAULT_ENDPOINT_STATS",
    "DEFAULT_ENDPOINT_MULTICAST", "MAXFD", "REDIRECT_TO", "IS_WINDOWS", "LOG_LEVELS", "LOG_FMT",
    "LOG_DATE_FMT", "LOG_DATE_SYSLOG_FMT", "human2bytes", "bytes2human", "to_bool", "to_str",
    "to_bytes", "to_signum", "to_uid", "to_gid", "get_connection", "configure_logger",
    "check_future_exception_and_log", "tornado_sleep", "resolve_name", "ImportStringError",
    "get_python_version", "get_working_dir", "debuglog", "parse_env_str", "parse_env_dict",
]

#: 0.19's discovery address (our circusd has discovery off unless configured)
DEFAULT_ENDPOINT_MULTICAST = "udp://237.219.251.97:12027"
MAXFD = 1024
REDIRECT_TO = getattr(os, "devnull", "/dev/null")
IS_WINDOWS = os.name == "nt"
LOG_LEVELS = {"critical": logging.CRITICAL, "error": logging.ERROR,
              "warning": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG}
LOG_FMT = r"%(asctime)s %(name)s[%(process)d] [%(levelname)s] %(message)s"
LOG_DATE_FMT = r"%Y-%m-%d %H:%M:%S"
LOG_DATE_SYSLOG_FMT = r"%b %d %H:%M:%S"

_UNITS = ("K", "M", "G", "T", "P", "E", "Z", "Y")


def bytes2human(n: int) -> str:
    """``10000`` -> ``'9.77K'`` (powers of 1024, two decimals; below 1024: the number)."""
    if not isinstance(n, int):
        raise TypeError(n)
    for power, unit in reversed(list(enumerate(_UNITS, 1))):
        if n >= 1 << (10 * power):
            return f"{n / (1 << (10 * power)):.2f}{unit}"
    return f"{n}B"


#: the unit spellings 0.19 read: each tuple is bytes, then powers of 1024
_UNIT_SETS = (("B", *_UNITS), ("Bi", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"),
              ("byte", "kilo", "mega", "giga", "tera", "peta", "exa", "zetta", "iotta"),
              ("byte", "kibi", "mebi", "gibi", "tebi", "pebi", "exbi", "zebi", "yobi"))


def human2bytes(s: str) -> int:
    """``'10M'`` -> ``10485760``: a number and a unit (B, K or k, M, G... ; Ki, Mi...; kilo,
    mega...; powers of 1024), as 0.19 read them. A number without a unit is a ValueError (0.19's
    plugins rely on it: a bare number is a percentage there)."""
    text = str(s)
    digits = len(text) - len(text.lstrip("0123456789."))
    number, unit = text[:digits], text[digits:].strip()
    if unit == "k":
        unit = "K"
    for units in _UNIT_SETS:
        if unit in units:
            try:
                return int(float(number) * (1 << (10 * units.index(unit))))
            except ValueError:
                break
    raise ValueError(f"can't interpret {s!r} as a size (a number and a unit: 512B, 10K, 1.5G)")


_TRUE = ("yes", "true", "on", "1")
_FALSE = ("no", "false", "off", "0")


def to_bool(s: Any) -> bool:
    """A boolean from a bool or 0.19's words (yes/no, true/false, on/off, 1/0, any case)."""
    if isinstance(s, bool):
        return s
    text = str(s).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{s!r} is not a boolean")


def to_str(s: Any, encoding: str = "utf8", errors: str = "replace") -> str:
    return s.decode(encoding, errors) if isinstance(s, (bytes, bytearray)) else str(s)


def to_bytes(s: Any, encoding: str = "utf8") -> bytes:
    return bytes(s) if isinstance(s, (bytes, bytearray)) else str(s).encode(encoding)


def to_signum(signum: int | str) -> int:
    """A signal number from a number, ``'15'``, ``'TERM'``, ``'SIGTERM'`` or ``'SIGRTMIN+1'``."""
    if isinstance(signum, int):
        return signum
    text = str(signum).strip().upper()
    if text.isdigit():
        return int(text)
    name, _, offset = text.partition("+")
    if not name.startswith("SIG"):
        name = "SIG" + name
    number = getattr(signal, name, None)
    if not isinstance(number, int) or (offset and not offset.isdigit()):
        raise ValueError(f"signal invalid: {signum!r}")
    return int(number) + (int(offset) if offset else 0)


def to_uid(name: int | str) -> int:
    import pwd
    if isinstance(name, int) or str(name).isdigit():
        return int(name)
    try:
        return pwd.getpwnam(str(name)).pw_uid
    except KeyError:
        raise ValueError(f"{name!r} is not a known user") from None


def to_gid(name: int | str) -> int:
    import grp
    if isinstance(name, int) or str(name).isdigit():
        return int(name)
    try:
        return grp.getgrnam(str(name)).gr_gid
    except KeyError:
        raise ValueError(f"{name!r} is not a known group") from None


def get_connection(socket: Any, endpoint: str, ssh_server: str | None = None,
                   ssh_keyfile: str | None = None) -> None:
    """Connect a ZeroMQ socket to ``endpoint`` (through an ssh tunnel if ``ssh_server``)."""
    _connect(socket, endpoint, ssh_server, ssh_keyfile)


def configure_logger(logger: logging.Logger, level: str = "INFO", output: str = "-",
                     loggerconfig: str | None = None, name: str | None = None) -> None:
    """0.19's logging set-up: ``loggerconfig`` (an INI, JSON or YAML logging configuration
    file) if given, else one handler on the root logger for ``output`` (``-``/``stdout``,
    ``stderr``, a file, ``syslog://...``) at ``level``, in 0.19's line format."""
    if loggerconfig and loggerconfig.lower() != "default":
        _apply_logger_config(loggerconfig)
        return
    from circus.cli import logsetup
    logsetup.configure(str(level).lower(), output)


def _apply_logger_config(path: str) -> None:
    lower = path.lower()
    if lower.endswith((".ini", ".cfg", ".conf")):
        logging.config.fileConfig(path, disable_existing_loggers=False)
        return
    with open(path, encoding="utf-8") as fh:
        if lower.endswith((".yaml", ".yml")):
            try:
                import yaml
            except ImportError:
                raise ImportError(f"{path}: a YAML logger configuration needs PyYAML "
                                  "(pip install pyyaml)") from None
            config = yaml.safe_load(fh)
        else:
            config = json.load(fh)
    logging.config.dictConfig(config)


def check_future_exception_and_log(future: Any) -> BaseException | None:
    """The exception of a done future (logged), or None."""
    exception = getattr(future, "exception", None)
    if exception is None or not getattr(future, "done", lambda: True)():
        return None
    error = exception()
    if error is not None:
        logging.getLogger("circus").error("exception %s caught", error)
    return error


def tornado_sleep(duration: float) -> Any:
    """An awaitable that sleeps (``await tornado_sleep(1)``, or ``yield`` in a coroutine)."""
    return asyncio.ensure_future(asyncio.sleep(duration))


class ImportStringError(ImportError):
    """``resolve_name`` could not import a dotted name."""

    def __init__(self, import_name: str, exception: BaseException) -> None:
        self.import_name, self.exception = import_name, exception
        super().__init__(f"cannot import {import_name!r}: {exception}")


def resolve_name(import_name: str, silent: bool = False, reload: bool = False) -> Any:
    """The object at ``pkg.mod.obj`` or ``pkg.mod:obj``; ImportStringError (or None if
    ``silent``) when it cannot be imported."""
    module_name, sep, attr = import_name.partition(":")
    try:
        if sep:
            obj: Any = importlib.import_module(module_name)
            if reload:
                obj = importlib.reload(obj)
            for part in attr.split("."):
                obj = getattr(obj, part)
            return obj
        try:
            module = importlib.import_module(import_name)
            return importlib.reload(module) if reload else module
        except ImportError:
            if "." not in import_name:
                raise
        module_name, _, attr = import_name.rpartition(".")
        module = importlib.import_module(module_name)
        if reload:
            module = importlib.reload(module)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        if silent:
            return None
        raise ImportStringError(import_name, exc) from None


def get_python_version() -> tuple[int, int, int]:
    return sys.version_info[:3]


def get_working_dir() -> str:
    """The working directory, as ``$PWD`` when that names the same directory (0.19)."""
    cwd = os.getcwd()
    pwd = os.environ.get("PWD")
    try:
        if pwd and os.path.samefile(pwd, cwd):
            return pwd
    except OSError:
        pass
    return cwd


def debuglog(func: Any) -> Any:
    """0.19 logged calls of the decorated function at debug level; here it changes nothing."""
    return func


def parse_env_str(env_str: str) -> dict[str, str]:
    """``'A=1,B=2'`` -> ``{'A': '1', 'B': '2'}`` (values with ``$VAR`` expanded)."""
    items = (part.split("=", 1) for part in env_str.split(",") if "=" in part)
    return parse_env_dict({k.strip(): v.strip() for k, v in items})


def parse_env_dict(env: dict[str, str]) -> dict[str, str]:
    """Values with ``$VAR`` expanded from circusd's environment."""
    return {key: os.path.expandvars(value) for key, value in env.items()}
