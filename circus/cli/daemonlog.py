"""Where ``circusd --daemon`` writes: a daemon's log is never thrown away.

A daemon has no terminal, so "log to stdout" (``-``, ``stdout``, ``stderr``: the default) would
mean ``/dev/null``. Instead, with ``--daemon``:

* the log goes to the **default log file** unless ``--log-output`` / ``[circus] logoutput`` names
  a file or ``syslog://``. The default is ``NAME.log``, ``NAME`` being the configuration file's
  name without its extension (``circus.ini`` → ``circus.log``): in ``/var/log/circus/`` when
  circusd runs as root (the directory is created, mode 0750), else next to the configuration
  file. When that file cannot be created or opened (a read-only or foreign directory), the
  fallback is next to the configuration file for root, ``$XDG_STATE_HOME/circus/`` (default
  ``~/.local/state/circus/``) for other users. When neither works, circusd does not start (exit
  1) and says why. A file refused for safety (a link others could have placed, another user's
  file: :mod:`circus.security.safepath`) is never skipped over: circusd does not start.
* circusd's own stdout and stderr, where the processes of watchers without an output stream
  write (and where Python would print a last traceback), are the log file too (the default log
  file when the log goes to syslog).

:func:`candidates` is pure; :func:`choose` creates and opens.
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Mapping

from circus.security.safepath import UnsafePath, open_append

__all__ = ["candidates", "choose", "resolve", "DaemonOutput", "NoLogFile", "ROOT_LOG_DIR",
           "LOG_DIR_MODE", "TERMINAL_OUTPUTS"]

#: where root's default log file goes
ROOT_LOG_DIR = "/var/log/circus"
#: mode of a log directory circusd creates (before the umask)
LOG_DIR_MODE = 0o750
#: log outputs that mean "the terminal": with --daemon, the default log file instead
TERMINAL_OUTPUTS = ("-", "stdout", "stderr")
#: errors that make circusd try the next place rather than stop
_TRY_NEXT = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR, errno.ENOSPC,
             errno.EDQUOT)


class NoLogFile(Exception):
    """No default log file could be opened, or one was refused for safety."""


@dataclass(frozen=True)
class DaemonOutput:
    """What a daemon logs to (``log``, for :func:`circus.cli.logsetup.configure`) and the file
    its stdout and stderr are (``console``)."""

    log: str
    console: str
    default: bool                      # the log file is the default one, not one given


def candidates(config_path: str, euid: int, environ: Mapping[str, str]) -> list[str]:
    """The default log file and its fallback, in the order tried (pure)."""
    config_path = os.path.abspath(config_path)
    name = os.path.splitext(os.path.basename(config_path))[0] or "circusd"
    beside = os.path.join(os.path.dirname(config_path), f"{name}.log")
    if euid == 0:
        return [os.path.join(ROOT_LOG_DIR, f"{name}.log"), beside]
    state = environ.get("XDG_STATE_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".local", "state")
    return [beside, os.path.join(state, "circus", f"{name}.log")]


def _open(path: str) -> None:
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        try:
            if directory == ROOT_LOG_DIR:
                os.mkdir(directory, LOG_DIR_MODE)      # /var/log must exist already
            else:
                os.makedirs(directory, 0o700)          # ~/.local/state/circus
        except FileExistsError:
            pass
    fd, _ = open_append(path)
    os.close(fd)


def choose(paths: list[str]) -> str:
    """The first of ``paths`` that can be created or opened for appending (the file is created
    when missing); :class:`NoLogFile` saying why each failed, or why one was refused."""
    problems = []
    for path in paths:
        try:
            _open(path)
            return path
        except UnsafePath as exc:
            raise NoLogFile(f"default log file {path}: {exc.strerror}: give --log-output") from None
        except OSError as exc:
            if exc.errno not in _TRY_NEXT:
                raise NoLogFile(f"default log file {path}: {exc.strerror or exc}") from None
            problems.append(f"{path}: {exc.strerror or exc}")
    raise NoLogFile("no default log file could be opened (" + "; ".join(problems) +
                    "): give --log-output FILE or syslog://")


def resolve(output: str, config_path: str, environ: Mapping[str, str],
            euid: int | None = None) -> DaemonOutput:
    """The daemon's log and console for the log output given (``-`` when none was)."""
    euid = os.geteuid() if euid is None else euid
    if output in TERMINAL_OUTPUTS:
        path = choose(candidates(config_path, euid, environ))
        return DaemonOutput(path, path, True)
    if output.startswith("syslog://"):
        return DaemonOutput(output, choose(candidates(config_path, euid, environ)), False)
    return DaemonOutput(output, output, False)
