"""circusd's log file handler: the file opened as circusd opens every file as root.

See :mod:`circus.cli.logsetup`; imported only when circusd logs to a file (it needs
``logging.handlers``).
"""
from __future__ import annotations

import logging
import logging.handlers
import os
import stat
from typing import IO

from circus.cli.logsetup import LOG_MODE, _console_onto
from circus.security.safepath import open_append

__all__ = ["SafeFileHandler"]


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
