"""An sd_notify-compatible receiver: the ``NOTIFY_SOCKET`` a process sends ``READY=1``,
``STATUS=...`` and friends to, as under systemd (``Type=notify``).

One `NotifySocket` per process: a datagram unix socket in the Linux abstract namespace (nothing
on disk to clean up), with ``SO_PASSCRED`` so the kernel attaches each sender's pid. Datagrams
from pids the owner does not accept (`allowed`) are dropped and counted.
"""

from __future__ import annotations

import array
import asyncio
import logging
import os
import socket
import struct
from collections.abc import Callable

__all__ = ["NotifySocket", "notify", "parse_message", "MAX_DATAGRAM"]

log = logging.getLogger(__name__)

MAX_DATAGRAM = 4096
_UCRED = struct.Struct("iII")  # struct ucred: pid_t pid, uid_t uid, gid_t gid
_MAX_FDS = 16  # FDSTORE=1 may come with descriptors; they are received and closed
_ANCILLARY = socket.CMSG_SPACE(_UCRED.size) + socket.CMSG_SPACE(_MAX_FDS * 4)
_BATCH = 64  # datagrams read per wake-up, so a flood cannot starve the loop


def parse_message(data: bytes) -> dict[str, str]:
    """The ``KEY=VALUE`` fields of one datagram (newline-separated; lines without ``=`` are
    ignored; a later key wins)."""
    fields: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").split("\n"):
        key, eq, value = line.partition("=")
        if eq and key:
            fields[key] = value
    return fields


def _sockaddr(address: str) -> str | bytes:
    if address.startswith("@"):
        return b"\0" + address[1:].encode()
    if address.startswith("/"):
        return address
    raise ValueError(f"NOTIFY_SOCKET must be an absolute path or start with '@', got {address!r}")


def notify(address: str, message: str) -> None:
    """Send `message` (e.g. ``"READY=1\\nSTATUS=serving"``) to `address` like ``sd_notify``
    does: ``@name`` is an abstract socket name, ``/path`` a socket file."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.sendto(message.encode(), _sockaddr(address))


class NotifySocket:
    """Receives sd_notify datagrams for one process.

    ``on_message(fields, sender_pid)`` is called for each datagram whose sender is accepted by
    ``allowed(pid)``; others are dropped and counted in `dropped`. The socket is bound at
    construction (so `address` can go into the child's environment); `start` begins reading.
    """

    def __init__(
        self,
        on_message: Callable[[dict[str, str], int], None],
        allowed: Callable[[int], bool],
    ) -> None:
        self._on_message = on_message
        self._allowed = allowed
        self._name = "circus/" + os.urandom(8).hex()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.received = 0
        self.dropped = 0
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            sock.bind(b"\0" + self._name.encode())
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock: socket.socket | None = sock

    @property
    def address(self) -> str:
        """The ``NOTIFY_SOCKET`` value for the child: ``@circus/<hex>``."""
        return "@" + self._name

    @property
    def closed(self) -> bool:
        return self._sock is None

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if self._sock is None:
            raise RuntimeError("NotifySocket is closed")
        if self._loop is not None:
            raise RuntimeError("NotifySocket already started")
        self._loop = loop or asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._read)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(sock.fileno())
        sock.close()

    def __enter__(self) -> NotifySocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._sock is None else "open"
        return (f"<NotifySocket {self.address} {state} received={self.received} "
                f"dropped={self.dropped}>")

    def _read(self) -> None:
        for _ in range(_BATCH):
            if self._sock is None:  # closed by on_message
                return
            try:
                data, ancdata, flags, _ = self._sock.recvmsg(
                    MAX_DATAGRAM, _ANCILLARY, socket.MSG_CMSG_CLOEXEC
                )
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("notify socket %s: receive failed: %s", self.address, exc)
                return
            pid = self._credentials(ancdata)
            if flags & socket.MSG_TRUNC or pid <= 0 or not self._allowed(pid):
                self.dropped += 1
                log.debug("notify socket %s: dropped a datagram from pid %d", self.address, pid)
                continue
            self.received += 1
            try:
                self._on_message(parse_message(data), pid)
            except Exception:
                log.exception("notify socket %s: message handler failed", self.address)

    @staticmethod
    def _credentials(ancdata: list[tuple[int, int, bytes]]) -> int:
        """The sender pid from SCM_CREDENTIALS (0 if absent); closes any passed descriptors."""
        pid = 0
        for level, kind, payload in ancdata:
            if level != socket.SOL_SOCKET:
                continue
            if kind == socket.SCM_CREDENTIALS and len(payload) >= _UCRED.size:
                pid = _UCRED.unpack_from(payload)[0]
            elif kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
                for fd in fds:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
        return pid
