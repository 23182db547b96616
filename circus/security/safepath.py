"""Opening and creating files when circusd runs as root, without being led elsewhere by a link.

A path given to a root circusd (a stream's ``filename``, ``--log-output``, the pidfile, the state
file) may cross directories that other users can write. Whoever can write a directory can put a
symbolic link (or a hard link) there, and a root ``open()`` would follow it anywhere: append a
process's output to ``/etc/cron.d/x``, truncate ``/etc/shadow``. The rules here:

* **Walk**: a path is resolved one component at a time from ``/`` (or the working directory). A
  symbolic link is followed only when nobody but root (or circusd's own user) could have put it
  there: its directory belongs to root or circusd's user and is writable by nobody else (group
  root excepted), or the directory is sticky and the link itself is root's (or circusd's user's).
  Any other link on the way is refused with :class:`UnsafePath`. ``/dev/stdout`` and
  ``/proc/self/fd/N`` (kernel links, followed by the kernel) and a link an administrator made in
  ``/var/log`` keep working.
* **The file itself**: opened ``O_NOFOLLOW`` in the directory the walk reached (``*at`` calls on
  its descriptor, so nothing can be swapped in between), ``O_NONBLOCK`` (a FIFO without a reader
  does not block), ``O_NOCTTY`` (a terminal never becomes circusd's). Then ``fstat``: a regular
  file must have one link and belong to root, circusd's user or the user circusd writes it for;
  a FIFO or a character device (``/dev/null``, a terminal) is accepted; anything else refused.
* Files created here are created ``O_CREAT | O_EXCL`` (never through an existing name) with an
  explicit mode, then given to their owner with ``fchown``.

The functions work for any euid: run as another user (:mod:`circus.security.asuser`), "trusted"
means root or that user.
"""
from __future__ import annotations

import errno
import os
import stat
from collections import deque

__all__ = ["UnsafePath", "walk", "open_append", "open_private", "read_private", "replace_private",
           "is_unsafe_file", "dir_fd_flags", "MAX_LINKS"]

#: symbolic links followed while resolving one path (the kernel's limit)
MAX_LINKS = 40

_PATH = getattr(os, "O_PATH", 0)
_DIR = (_PATH or os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC


def dir_fd_flags() -> int:
    """Flags of the directory descriptors :func:`walk` returns (``O_PATH`` where available)."""
    return _DIR


class UnsafePath(OSError):
    """A path circusd will not use: a link others could have placed, a file of another user..."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(errno.EPERM, reason, path)


def _trusted(uid: int) -> bool:
    return uid == 0 or uid == os.geteuid()


def _locked_dir(st: os.stat_result) -> bool:
    """Only root or our user can change the entries of this directory."""
    if not _trusted(st.st_uid):
        return False
    return not (st.st_mode & 0o002 or (st.st_mode & 0o020 and st.st_gid != 0))


def _link_trusted(dir_st: os.stat_result, link_st: os.stat_result) -> bool:
    if _locked_dir(dir_st):
        return True
    # in a sticky directory an entry can be replaced only by its owner or the directory's
    return bool(dir_st.st_mode & stat.S_ISVTX) and _trusted(dir_st.st_uid) \
        and _trusted(link_st.st_uid)


_PROC_DEV: int | None = None


def _on_proc(st: os.stat_result) -> bool:
    global _PROC_DEV
    if _PROC_DEV is None:
        try:
            _PROC_DEV = os.stat("/proc").st_dev
        except OSError:
            _PROC_DEV = -1
    return st.st_dev == _PROC_DEV


def _components(text: str) -> list[str]:
    return [part for part in text.split("/") if part not in ("", ".")]


def walk(path: str, *, follow_last: bool) -> tuple[int, str, bool]:
    """``(directory fd, name, kernel_link)``: the directory that holds ``path``'s last component
    and that component's name, following only trusted links (see the module docstring). With
    ``follow_last``, a trusted link in last place is followed too; ``kernel_link`` is then true
    when it is a /proc link the kernel must follow itself (``/proc/self/fd/1``). The caller closes
    the descriptor. Raises OSError (ENOENT, ENOTDIR...) or :class:`UnsafePath`."""
    if not path:
        raise FileNotFoundError(errno.ENOENT, "empty path", path)
    todo = deque(_components(path))
    if not todo or todo[-1] == "..":
        raise IsADirectoryError(errno.EISDIR, "names a directory, not a file", path)
    fd = os.open("/" if path.startswith("/") else ".", _DIR)
    links = 0
    try:
        while True:
            name = todo.popleft()
            last = not todo
            if last and not follow_last:
                return fd, name, False
            if name == "..":
                step = os.open("..", _DIR, dir_fd=fd)
                os.close(fd)
                fd = step
                continue
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                if last:
                    return fd, name, False
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path) from None
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                dir_st = os.fstat(fd)
                if not _link_trusted(dir_st, st):
                    raise UnsafePath(path, f"{name!r} is a symbolic link in a directory that "
                                           "other users can change: not followed")
                if _on_proc(dir_st):
                    if last:
                        return fd, name, True
                    step = os.open(name, _DIR, dir_fd=fd)      # /proc/self, /proc/PID/cwd
                    os.close(fd)
                    fd = step
                    continue
                target = os.readlink(name, dir_fd=fd)
                parts = _components(target)
                if target.startswith("/"):
                    os.close(fd)
                    fd = os.open("/", _DIR)
                if last and (not parts or parts[-1] == ".."):
                    raise IsADirectoryError(errno.EISDIR, "names a directory, not a file", path)
                todo.extendleft(reversed(parts))
                if not todo:
                    raise IsADirectoryError(errno.EISDIR, "names a directory, not a file", path)
                continue
            if last:
                return fd, name, False
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
            try:
                step = os.open(name, _DIR | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):     # replaced since the stat
                    raise UnsafePath(path, f"{name!r} changed while circusd opened it") from None
                raise OSError(exc.errno, exc.strerror, path) from None
            os.close(fd)
            fd = step
    except UnsafePath:
        os.close(fd)
        raise
    except OSError as exc:
        os.close(fd)
        if exc.filename == path:
            raise
        raise type(exc)(exc.errno, exc.strerror, path) from None   # the path, not a component
    except BaseException:
        os.close(fd)
        raise


def is_unsafe_file(st: os.stat_result, owners: tuple[int, ...] = ()) -> str:
    """Why circusd must not write to the file of ``st`` ("" when it may): a regular file with
    one link belonging to root, circusd's user or one of ``owners``; a FIFO; a character device."""
    mode = st.st_mode
    if stat.S_ISREG(mode):
        if st.st_nlink > 1:
            return f"it has {st.st_nlink} hard links (one may be another user's file)"
        if not _trusted(st.st_uid) and st.st_uid not in owners:
            return f"it belongs to uid {st.st_uid}, not to circusd's user or the watcher's"
        return ""
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        return ""
    return "not a regular file, FIFO or character device"


def _is_link(name: str, dfd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _clear_nonblock(fd: int) -> None:
    os.set_blocking(fd, True)


def open_append(path: str, *, mode: int = 0o640, owner: tuple[int, int] | None = None,
                owners: tuple[int, ...] = ()) -> tuple[int, bool]:
    """``(fd, created)``: ``path`` opened for appending, created with ``mode`` when missing
    (then ``fchown`` to ``owner``, ``(uid, gid)``, -1 keeping one). ``owners``: uids besides
    root and circusd's whose existing files may be appended to. Raises OSError/UnsafePath."""
    dfd, name, kernel = walk(path, follow_last=True)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
    created = False
    try:
        try:
            if kernel:
                fd = os.open(name, flags, dir_fd=dfd)
            else:
                try:
                    fd = os.open(name, flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode,
                                 dir_fd=dfd)
                    created = True
                except FileExistsError:
                    fd = os.open(name, flags | os.O_NOFOLLOW, dir_fd=dfd)
        except OSError as exc:
            if exc.errno == errno.ELOOP or (not kernel and _is_link(name, dfd)):
                raise UnsafePath(path, "it became a symbolic link while circusd opened it") from None
            if exc.errno == errno.ENXIO:
                raise OSError(exc.errno, "a FIFO nobody reads", path) from None
            raise OSError(exc.errno, exc.strerror, path) from None
    finally:
        os.close(dfd)
    try:
        st = os.fstat(fd)
        problem = "" if created else is_unsafe_file(st, owners)
        if problem:
            raise UnsafePath(path, problem)
        if created and owner is not None and owner != (-1, -1):
            os.fchown(fd, *owner)
        _clear_nonblock(fd)
        return fd, created
    except BaseException:
        os.close(fd)
        raise


def _private_problem(st: os.stat_result) -> str:
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_nlink > 1:
        return f"it has {st.st_nlink} hard links"
    if not _trusted(st.st_uid):
        return f"owned by uid {st.st_uid}, not by circusd's user"
    if st.st_mode & 0o022:
        return f"writable by others (mode {st.st_mode & 0o777:o})"
    return ""


def open_private(path: str, flags: int, mode: int) -> int:
    """Open (``flags`` may hold ``O_CREAT``, never ``O_EXCL``) a file circusd keeps for itself
    and others trust (the pidfile): never through a link, a regular file with one link, owned
    by root or circusd's user, writable by nobody else. Raises OSError/UnsafePath."""
    dfd, name, _ = walk(path, follow_last=False)
    try:
        try:
            fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK,
                         mode, dir_fd=dfd)
        except OSError as exc:
            # O_CREAT on a link in a sticky directory may be EACCES rather than ELOOP
            if exc.errno == errno.ELOOP or _is_link(name, dfd):
                raise UnsafePath(path, "it is a symbolic link") from None
            raise OSError(exc.errno, exc.strerror, path) from None
    finally:
        os.close(dfd)
    try:
        problem = _private_problem(os.fstat(fd))
        if problem:
            raise UnsafePath(path, problem)
        _clear_nonblock(fd)
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_private(path: str, limit: int) -> bytes:
    """The content (at most ``limit`` bytes) of a file circusd trusts (the state file), with the
    checks of :func:`open_private`. FileNotFoundError when there is none."""
    fd = open_private(path, os.O_RDONLY, 0)
    try:
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes", path)
        return b"".join(chunks)
    finally:
        os.close(fd)


def replace_private(path: str, data: bytes, mode: int = 0o600, *, prefix: str = ".circus.",
                    sync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically: a new file (``O_EXCL``, ``mode``, named ``prefix``
    and random letters) in the same directory, fsync, renamed over ``path`` (a link at ``path``
    is replaced, never followed), then the directory fsync'ed."""
    dfd, name, _ = walk(path, follow_last=False)
    try:
        tmp = f"{prefix}{os.urandom(6).hex()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     mode, dir_fd=dfd)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass
            raise
        if sync:
            _sync_dir(dfd)
    finally:
        os.close(dfd)


def _sync_dir(dfd: int) -> None:
    try:
        real = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dfd)
    except OSError:
        return
    try:
        os.fsync(real)
    except OSError:
        pass
    finally:
        os.close(real)
