"""File streams: FileStream (size rotation), WatchedFileStream (follows external rotation), and
the file handling they share with TimedRotatingFileStream.

These objects are driven by a :class:`~circus.streams.writer.StreamWriter`: ``open`` runs when the
watcher starts (so that a file that cannot be opened fails the start with the reason); ``write``,
``reopen`` and ``close`` run in the writer's thread. Writes are ``os.write`` on an ``O_APPEND``
descriptor, whole batches at a time; a rotation only ever happens between two lines.

Every operation on the file system (open, create, the renames of a rotation, compression,
pruning) is a *job*: a function of plain values returning ``(result, descriptors)``, run through
the stream's :class:`Access`. As circusd it runs in place, with the rules of
:mod:`circus.security.safepath` (links others could have placed are not followed; the renames
happen in the directory the walk reached); for a watcher of an ``endpoint_owner`` it runs in a
child with the owner's credentials (:mod:`circus.security.asuser`), so that the owner's files are
only ever what the owner could open.

Files circusd creates (the log file, each new file after a rotation, compressed backups) are
created mode 0640 and belong to the watcher's ``uid``/``gid`` when circusd runs as root.
"""
from __future__ import annotations

import errno
import os
import stat
from typing import Any, Callable

from circus.security.asuser import Creds, run_as
from circus.security.safepath import UnsafePath, is_unsafe_file, open_append, walk
from circus.streams.formats import Batch, Format

__all__ = ["Access", "DIRECT", "FileTarget", "FileStream", "WatchedFileStream", "open_log",
           "gzip_at", "exists_at", "FILE_MODE"]

Owner = tuple[int, int] | None       # (uid, gid) for files circusd creates; -1 keeps one as is
Job = Callable[..., "tuple[Any, list[int]]"]

#: mode of the files a stream creates (before the umask)
FILE_MODE = 0o640


class Access:
    """Whose credentials a stream's file jobs run with: circusd's (``creds`` None) or a user's."""

    def __init__(self, creds: Creds | None = None) -> None:
        self.creds = creds

    @property
    def chown(self) -> bool:
        """Whether created files must be given to their owner (a user's job creates them as
        that user already)."""
        return self.creds is None

    def run(self, job: Job, *args: Any) -> tuple[Any, list[int]]:
        if self.creds is None:
            return job(*args)
        try:
            return run_as(self.creds, job, *args)
        except UnsafePath as exc:
            raise UnsafePath(str(exc.filename), f"{exc.strerror} (as {self.creds.name!r})") from None
        except OSError as exc:
            raise OSError(exc.errno, f"{exc.strerror or exc} (as {self.creds.name!r})",
                          *(() if exc.filename is None else (exc.filename,))) from None

    def __repr__(self) -> str:
        return "<Access as circusd>" if self.creds is None else f"<Access as {self.creds.name!r}>"


DIRECT = Access()


def _owners(owner: Owner) -> tuple[int, ...]:
    return (owner[0],) if owner is not None and owner[0] != -1 else ()


def open_log(path: str, owner: Owner) -> tuple[Any, list[int]]:
    """Job: ``path`` opened for appending, created (mode :data:`FILE_MODE`, then given to
    ``owner``) when missing; appending to an existing file of root, circusd's user or
    ``owner``'s uid only."""
    fd, created = open_append(path, mode=FILE_MODE, owner=owner, owners=_owners(owner))
    return created, [fd]


def temporary(prefix: str, owner: Owner) -> tuple[Any, list[int]]:
    """Job: a new temporary file (``mkstemp``: mode 0600, a name nobody could guess)."""
    import tempfile

    fd, path = tempfile.mkstemp(prefix=prefix, suffix=".log")
    if owner is not None:
        try:
            os.fchown(fd, *owner)
        except BaseException:
            os.close(fd)
            raise
    return path, [fd]


def exists_at(name: str, dfd: int) -> bool:
    """Whether ``name`` (a link included) is in the directory ``dfd``."""
    try:
        os.stat(name, dir_fd=dfd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


def gzip_at(dfd: int, src: str, dst: str, owners: tuple[int, ...] = (), level: int = 6) -> None:
    """Compress ``src`` into ``dst`` (names in the directory ``dfd``; same mode and owner), then
    remove ``src``. ``src`` is never read through a link nor when it is another user's file."""
    import gzip
    import shutil

    try:
        fin = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(src, "a symbolic link: not compressed") from None
        raise
    with os.fdopen(fin, "rb") as source:
        st = os.fstat(fin)
        problem = is_unsafe_file(st, owners) or ("" if stat.S_ISREG(st.st_mode) else "not a file")
        if problem:
            raise UnsafePath(src, f"{problem}: not compressed")
        tmp = f".{dst}.{os.urandom(6).hex()}.tmp"
        fout = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                       stat.S_IMODE(st.st_mode) & 0o777, dir_fd=dfd)
        try:
            with os.fdopen(fout, "wb") as raw:
                if os.geteuid() == 0:
                    os.fchown(raw.fileno(), st.st_uid, st.st_gid)
                with gzip.GzipFile(filename=src, mode="wb", fileobj=raw, compresslevel=level,
                                   mtime=int(st.st_mtime)) as out:
                    shutil.copyfileobj(source, out, 1024 * 1024)
            os.replace(tmp, dst, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass
            raise
    os.unlink(src, dir_fd=dfd)


def rotate_numbered(path: str, backup_count: int, compress: bool,
                    owners: tuple[int, ...]) -> tuple[Any, list[int]]:
    """Job: ``path`` → ``path.1`` → … → ``path.<backup_count>`` (``.gz`` with ``compress``), the
    renames done on names in the directory ``path``'s walk reached."""
    dfd, name, _ = walk(path, follow_last=False)
    try:
        ext = ".gz" if compress else ""
        for index in range(backup_count - 1, 0, -1):
            older = f"{name}.{index}{ext}"
            if exists_at(older, dfd):
                os.replace(older, f"{name}.{index + 1}{ext}", src_dir_fd=dfd, dst_dir_fd=dfd)
        first = f"{name}.1"
        if exists_at(name, dfd):
            os.replace(name, first, src_dir_fd=dfd, dst_dir_fd=dfd)
            if compress:
                gzip_at(dfd, first, first + ".gz", owners)
    finally:
        os.close(dfd)
    return None, []


class FileTarget:
    """Appends formatted lines to one file; ``reopen`` closes it and opens the path again."""

    def __init__(self, filename: str, fmt: Format, owner: Owner = None, *,
                 access: Access = DIRECT) -> None:
        self.path = filename
        self.fmt = fmt
        self.owner = owner
        self.access = access
        self.fd = -1
        self.size = 0
        self.ident: tuple[int, int] = (0, 0)
        self.regular = True

    @property
    def owners(self) -> tuple[int, ...]:
        return _owners(self.owner)

    @property
    def chown_to(self) -> Owner:
        return self.owner if self.access.chown else None

    def open(self) -> None:
        _, fds = self.access.run(open_log, self.path, self.chown_to)
        self.fd = fds[0]
        st = os.fstat(self.fd)
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
                 backup_count: int = 0, compress: bool = False, access: Access = DIRECT) -> None:
        super().__init__(filename, fmt, owner, access=access)
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
        self.access.run(rotate_numbered, self.path, self.backup_count, self.compress, self.owners)
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
