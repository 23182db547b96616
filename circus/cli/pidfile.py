"""A locked pidfile: two daemons on one pidfile cannot both run; stale files are replaced.

The lock (``flock``) is held for the daemon's whole life. A pidfile nobody holds the lock on is
stale whatever pid it contains, except when that pid is alive and is a circusd that did not lock
it (an older version): then we refuse rather than run twice.
"""
from __future__ import annotations

import fcntl
import os

__all__ = ["Pidfile", "PidfileError"]


class PidfileError(Exception):
    pass


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
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
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
        if self._fd is None:
            return
        try:
            with open(self.path, "rb") as fh:
                mine = fh.read().strip() == str(os.getpid()).encode()
            if mine:
                os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None
