"""A locked pidfile: two daemons on one pidfile cannot both run; stale files are replaced.

The lock (``flock``) is held for the daemon's whole life. A pidfile nobody holds the lock on is
stale whatever pid it contains, except when that pid is alive and is a circusd that did not lock
it (an older version): then we refuse rather than run twice.

Scripts (and root) trust what a pidfile says (``kill $(cat circusd.pid)``), and a root circusd
truncates it: it is never opened through a symbolic link (nor through a link in a directory
others can change), and an existing one must be a regular file with one link, owned by root or
circusd's user and writable by nobody else. Otherwise :class:`UnsafePidfile` says why and
circusd does not start (exit 1, as for a pidfile held by a running circusd).
"""
from __future__ import annotations

import fcntl
import os

from circus.security.safepath import UnsafePath, open_private

__all__ = ["Pidfile", "PidfileError", "UnsafePidfile"]

#: mode of a new pidfile (before the umask)
PIDFILE_MODE = 0o644


class PidfileError(Exception):
    pass


class UnsafePidfile(PidfileError):
    """The pidfile's path cannot be used safely (a link, another user's file...)."""


def _is_circusd(pid: int) -> bool:
    """Whether ``pid`` runs circusd (its program, or ``python -m circus.cli.circusd``)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return False
    return any(os.path.basename(a) == "circusd" or a == "circus.cli.circusd" for a in argv[:3])


class Pidfile:
    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = open_private(self.path, os.O_RDWR | os.O_CREAT, PIDFILE_MODE)
        except UnsafePath as exc:
            raise UnsafePidfile(f"pidfile {self.path}: {exc.strerror}: refusing to use it") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise PidfileError(f"pidfile {self.path} is locked: circusd {other or '?'} is running") from None
        old = os.read(fd, 32).decode(errors="replace").strip()
        if old.isdigit() and int(old) != os.getpid() and _is_circusd(int(old)):
            os.close(fd)
            raise PidfileError(f"pidfile {self.path}: pid {old} is a running circusd")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Remove the pidfile if the path still names the file we hold (and it says our pid)."""
        if self._fd is None:
            return
        try:
            held = os.fstat(self._fd)
            now = os.stat(self.path, follow_symlinks=False)
            mine = (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino) and \
                os.pread(self._fd, 32, 0).strip() == str(os.getpid()).encode()
            if mine:
                os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None
