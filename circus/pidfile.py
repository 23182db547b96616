"""Circus 0.19's ``circus.pidfile.Pidfile(path)`` (``create(pid)``, ``validate()``,
``unlink()``, ``rename(path)``), over circusd's own locked pidfile
(:mod:`circus.cli.pidfile`): a second program on the same file is refused while the first runs.
"""
from __future__ import annotations

import os

from circus.cli.pidfile import Pidfile as _Locked
from circus.cli.pidfile import PidfileError

__all__ = ["Pidfile"]


class Pidfile:
    def __init__(self, fname: str) -> None:
        self.fname = fname
        self.pid = os.getpid()
        self._held: _Locked | None = None

    def create(self, pid: int) -> None:
        """Write ``pid`` (this process, normally) and hold the file; RuntimeError if another
        live process holds it."""
        pid = int(pid)
        if self._held is None:
            held = _Locked(self.fname)
            try:
                held.acquire()
            except PidfileError as exc:
                raise RuntimeError(str(exc)) from None
            self._held = held
        if pid != os.getpid():
            assert self._held._fd is not None
            os.ftruncate(self._held._fd, 0)
            os.pwrite(self._held._fd, f"{pid}\n".encode(), 0)
        self.pid = pid

    def validate(self) -> int | None:
        """The pid in the file if that process is alive, else None."""
        try:
            with open(self.fname) as fh:
                pid = int(fh.read().strip() or 0)
        except (OSError, ValueError):
            return None
        if pid <= 0:
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid

    def unlink(self) -> None:
        """Remove the file (if it still names our pid) and let it go."""
        if self._held is not None:
            if self.pid != os.getpid() and self._held._fd is not None:
                os.pwrite(self._held._fd, f"{os.getpid()}\n".encode(), 0)
            self._held.release()
            self._held = None

    def rename(self, path: str) -> None:
        self.unlink()
        self.fname = path
        self.create(self.pid)
