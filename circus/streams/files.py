"""File streams: FileStream (size rotation), WatchedFileStream (follows external rotation), and
the file handling they share with TimedRotatingFileStream.

These objects are driven by a :class:`~circus.streams.writer.StreamWriter`: ``open`` runs when the
watcher starts (so that a file that cannot be opened fails the start with the reason); ``write``,
``reopen`` and ``close`` run in the writer's thread. Writes are ``os.write`` on an ``O_APPEND``
descriptor, whole batches at a time; a rotation only ever happens between two lines.

Files circusd creates (the log file, each new file after a rotation, compressed backups) belong
to the watcher's ``uid``/``gid`` when circusd runs as root.
"""
from __future__ import annotations

import gzip
import os
import shutil
import stat
from circus.streams.formats import Batch, Format

__all__ = ["FileTarget", "FileStream", "WatchedFileStream", "open_log", "gzip_file"]

Owner = tuple[int, int] | None       # (uid, gid) for files circusd creates; -1 keeps one as is


def open_log(path: str, owner: Owner) -> tuple[int, os.stat_result]:
    """Open ``path`` for appending (created if missing, then given to ``owner``)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o666)
        created = True
    except FileExistsError:
        fd = os.open(path, flags)
        created = False
    try:
        if created and owner is not None:
            os.fchown(fd, *owner)
        return fd, os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise


def gzip_file(src: str, dst: str, level: int = 6) -> None:
    """Compress ``src`` into ``dst`` (same mode and owner), then remove ``src``."""
    st = os.stat(src)
    tmp = dst + ".tmp"
    with open(src, "rb") as fin, open(tmp, "wb") as raw:
        os.fchmod(raw.fileno(), stat.S_IMODE(st.st_mode))
        if os.geteuid() == 0:
            os.fchown(raw.fileno(), st.st_uid, st.st_gid)
        with gzip.GzipFile(filename=os.path.basename(src), mode="wb", fileobj=raw,
                           compresslevel=level, mtime=int(st.st_mtime)) as out:
            shutil.copyfileobj(fin, out, 1024 * 1024)
    os.replace(tmp, dst)
    os.remove(src)


class FileTarget:
    """Appends formatted lines to one file; ``reopen`` closes it and opens the path again."""

    def __init__(self, filename: str, fmt: Format, owner: Owner = None) -> None:
        self.path = filename
        self.fmt = fmt
        self.owner = owner
        self.fd = -1
        self.size = 0
        self.ident: tuple[int, int] = (0, 0)
        self.regular = True

    def open(self) -> None:
        self.fd, st = open_log(self.path, self.owner)
        self.regular = stat.S_ISREG(st.st_mode)
        self.size = st.st_size if self.regular else 0
        self.ident = (st.st_dev, st.st_ino)

    def write(self, items: list[Batch]) -> None:
        blob = self.fmt.blob
        self._write_bytes(b"".join([blob(batch) for batch in items]))

    def _write_bytes(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        self.size += len(data)

    def reopen(self) -> None:
        self._close_fd()
        self.open()

    def close(self) -> None:
        self._close_fd()

    def _close_fd(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


class FileStream(FileTarget):
    """Appends to ``filename``; with ``max_bytes``, rotates before a line would make the file
    larger: ``filename`` → ``filename.1`` → … → ``filename.<backup_count>`` (the oldest is
    dropped), ``.N.gz`` with ``compress``. With ``backup_count = 0`` the file is emptied instead."""

    def __init__(self, filename: str, fmt: Format, owner: Owner = None, *, max_bytes: int = 0,
                 backup_count: int = 0, compress: bool = False) -> None:
        super().__init__(filename, fmt, owner)
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self.compress = compress

    def write(self, items: list[Batch]) -> None:
        if not self.max_bytes or not self.regular:
            super().write(items)
            return
        limit = self.max_bytes
        out: list[bytes] = []
        pending = 0
        for batch in items:
            data = self.fmt.blob(batch)
            if self.size + pending + len(data) <= limit:
                out.append(data)
                pending += len(data)
                continue
            for line in self.fmt.lines(batch):       # split only the batch that crosses the limit
                if self.size + pending + len(line) > limit and self.size + pending > 0:
                    self._write_bytes(b"".join(out))
                    out, pending = [], 0
                    self.rollover()
                out.append(line)
                pending += len(line)
        self._write_bytes(b"".join(out))

    def rollover(self) -> None:
        if self.backup_count <= 0:
            os.ftruncate(self.fd, 0)
            self.size = 0
            return
        self._close_fd()
        ext = ".gz" if self.compress else ""
        for index in range(self.backup_count - 1, 0, -1):
            older = f"{self.path}.{index}{ext}"
            if os.path.exists(older):
                os.replace(older, f"{self.path}.{index + 1}{ext}")
        first = f"{self.path}.1"
        if os.path.exists(self.path):
            os.replace(self.path, first)
            if self.compress:
                gzip_file(first, first + ".gz")
        self.open()


class WatchedFileStream(FileTarget):
    """Appends to ``filename`` and checks the path before each write: if the file was moved or
    removed (an external logrotate), it opens the path again — a new file."""

    def write(self, items: list[Batch]) -> None:
        try:
            st = os.stat(self.path)
            moved = (st.st_dev, st.st_ino) != self.ident
        except FileNotFoundError:
            moved = True
        if moved:
            self.reopen()
        super().write(items)
