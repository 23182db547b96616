"""The files circushttpd trusts (the users file, the cookie secret, the logout revocations):
read only when nobody else could have written them, written privately and atomically.

A file is trusted when it is a regular file owned by circushttpd's user or by root and not
writable by group or others; anything else is refused with the reason (whoever can write the
users file can give themselves the admin role, whoever can write the secret can forge sessions).
"""
from __future__ import annotations

import os
import secrets
import stat

__all__ = ["FileProblem", "trust_problem", "read_trusted", "write_private"]


class FileProblem(OSError):
    """A trusted file cannot be read, is not to be trusted, or cannot be written: the message
    names the file and says why."""


def trust_problem(st: os.stat_result) -> str | None:
    """Why a file with this ``stat`` may not be trusted (None: it may)."""
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_uid not in (0, os.geteuid()):
        return (f"owned by uid {st.st_uid}, not by circushttpd's user (uid {os.geteuid()}) "
                "or root")
    if st.st_mode & 0o022:
        return f"writable by group or others (mode {stat.S_IMODE(st.st_mode):03o}): chmod go-w it"
    return None


def read_trusted(path: str, limit: int, *, follow: bool = True) -> tuple[bytes, os.stat_result]:
    """The content of ``path`` (at most ``limit`` bytes) and its ``stat``, read from the same
    open file that was checked. ``FileNotFoundError`` when it does not exist; FileProblem when
    it is not to be trusted, too large or cannot be read. ``follow=False``: a symbolic link is
    refused (``O_NOFOLLOW``)."""
    # O_NONBLOCK: a FIFO put in the file's place must not hang the open (it is then refused)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | \
        (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if not follow and os.path.islink(path):
            raise FileProblem(f"{path}: is a symbolic link (not followed)") from None
        raise FileProblem(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        problem = trust_problem(st)
        if problem:
            raise FileProblem(f"{path}: not trusted: {problem}")
        if st.st_size > limit:
            raise FileProblem(f"{path}: larger than {limit} bytes ({st.st_size})")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise FileProblem(f"{path}: larger than {limit} bytes")
        return b"".join(chunks), st
    except OSError as exc:
        if isinstance(exc, FileProblem):
            raise
        raise FileProblem(f"{path}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def write_private(path: str, data: bytes, *, sync: bool = False) -> None:
    """Write ``data`` to ``path`` with mode 0600, atomically (a reader never sees half): a new
    file beside it (``O_EXCL|O_NOFOLLOW``), renamed over ``path``. ``sync``: flushed to disk
    first. FileProblem naming the file when it cannot be written."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                     getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise FileProblem(f"{path}: cannot write: {exc.strerror or exc}") from None
