"""Binding ZeroMQ sockets on ``ipc://`` endpoints: the socket file is its owner's only.

Every ``ipc://`` endpoint bound by circusd, circusd-stats or ``circusmeta proxy`` goes through
:func:`bind_private`: the bind happens under umask 0177, so the socket file never exists with a
looser mode than 0600; then the file is checked and, when needed, changed through a descriptor of
*that* file (opened ``O_PATH | O_NOFOLLOW``): a name swapped for a link in between is refused, never
followed (``chmod`` or ``chown`` of a path would follow it, with root's rights).

An abstract socket (``ipc://@name``) has no file and no mode: anyone on the machine may connect
to it (use CURVE, or a path).
"""
from __future__ import annotations

import errno
import os
import stat
from typing import Any

import zmq

__all__ = ["ipc_path", "bind_private", "secure_ipc", "IPC_MODE", "socket_file", "remove_socket_file"]

#: mode of an ipc:// socket file
IPC_MODE = 0o600

_PATH = getattr(os, "O_PATH", os.O_RDONLY)


def ipc_path(endpoint: str) -> str | None:
    """The socket file of an ``ipc://`` endpoint (None for other transports)."""
    return endpoint[len("ipc://"):] if endpoint.startswith("ipc://") else None


def secure_ipc(path: str, owner: tuple[int, int] | None = None) -> None:
    """Make the socket file just bound at ``path`` mode 0600 (and ``owner``'s, ``(uid, gid)``).
    Raises OSError when ``path`` is no longer a socket file of circusd's user."""
    try:
        fd = os.open(path, _PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise OSError(exc.errno, f"the socket file cannot be opened: {exc.strerror}", path) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid():
            raise OSError(errno.EPERM, "replaced by another file right after the bind", path)
        here = f"/proc/self/fd/{fd}"         # this very inode, whatever the name is now
        if stat.S_IMODE(st.st_mode) != IPC_MODE:
            os.chmod(here, IPC_MODE)
        if owner is not None and (st.st_uid, st.st_gid) != owner:
            os.chown(here, *owner)
    finally:
        os.close(fd)


def bind_private(sock: Any, endpoint: str, owner: tuple[int, int] | None = None) -> None:
    """``sock.bind(endpoint)``; for ``ipc://``, under umask 0177 then :func:`secure_ipc` (the
    socket is closed and OSError raised when that fails). ZMQError as ``bind`` raises it."""
    path = ipc_path(endpoint)
    if path is None or path.startswith("@"):
        sock.bind(endpoint)
        return
    old = os.umask(0o177)
    try:
        sock.bind(endpoint)
    finally:
        os.umask(old)
    if path == "*":                      # a name libzmq picked
        path = ipc_path(sock.getsockopt_string(zmq.LAST_ENDPOINT)) or path
    try:
        secure_ipc(path, owner)
    except OSError:
        sock.close(linger=0)
        raise


def socket_file(endpoint: str) -> tuple[str, int, int] | None:
    """``(path, device, inode)`` of the socket file an ``ipc://`` endpoint just bound, to remove
    it at close (libzmq leaves it behind); None for other transports and abstract sockets."""
    path = ipc_path(endpoint)
    if path is None or path.startswith("@") or path == "*":
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (path, st.st_dev, st.st_ino) if stat.S_ISSOCK(st.st_mode) else None


def remove_socket_file(record: tuple[str, int, int] | None) -> None:
    """Remove a socket file recorded by :func:`socket_file` if it is still that very file (not
    one another process bound at the same path since)."""
    if record is None:
        return
    path, dev, ino = record
    try:
        st = os.lstat(path)
        if stat.S_ISSOCK(st.st_mode) and (st.st_dev, st.st_ino) == (dev, ino):
            os.unlink(path)
    except OSError:
        pass
