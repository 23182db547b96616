"""Sockets bound by circusd once and handed to children (``[socket:NAME]``).

Each socket is bound before any watcher starts and stays open for circusd's life, so restarting
workers never closes the listening socket. A socket that cannot be bound (address in use,
permission) is kept with its error: the watchers that use it fail with that reason, the others
run. Sockets inherited from systemd socket activation (``LISTEN_FDS``) whose address matches a
``[socket]`` section are used instead of binding a new one.
"""
from __future__ import annotations

import logging
import os
import socket
import stat
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from circus.config import SocketConfig, WatcherConfig
from circus.errors import SpawnError

__all__ = ["BoundSocket", "SocketRegistry", "bind", "inherited_sockets", "sockets_used"]

log = logging.getLogger("circus")

SD_LISTEN_FDS_START = 3


@dataclass(eq=False)
class BoundSocket:
    cfg: SocketConfig
    sock: socket.socket | None = None
    error: str | None = None
    inherited: bool = False
    address: tuple | str | None = field(default=None)

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def fd(self) -> int:
        assert self.sock is not None
        return self.sock.fileno()

    def info(self) -> dict:
        """``listsockets`` entry: 0.19's fields, plus ``error`` when the bind failed."""
        out: dict = {"name": self.name, "backlog": self.cfg.backlog}
        if self.sock is not None:
            out["fd"] = self.fd
        if isinstance(self.address, str):
            out["path"] = self.address
        elif self.address is not None:
            out["host"], out["port"] = self.address[0], self.address[1]
        else:
            out.update(host=self.cfg.host, port=self.cfg.port)
        if self.error:
            out["error"] = self.error
        return out

    def close(self) -> None:
        if self.sock is None:
            return
        self.sock.close()
        self.sock = None
        if isinstance(self.address, str) and not self.inherited:
            try:
                os.unlink(self.address)
            except OSError:
                pass


def _family(cfg: SocketConfig) -> int:
    return getattr(socket, "AF_UNIX" if cfg.path else cfg.family)


def _resolve(cfg: SocketConfig) -> tuple[int, tuple | str]:
    family, kind = _family(cfg), getattr(socket, cfg.type)
    if family == socket.AF_UNIX:
        return family, str(cfg.path)
    infos = socket.getaddrinfo(cfg.host, cfg.port, family, kind)
    if not infos:
        raise OSError(f"cannot resolve {cfg.host!r}")
    return family, infos[0][4]


def _matches(sock: socket.socket, family: int, kind: int, address: tuple | str, port: int) -> bool:
    """Is ``sock`` (kept by the keeper of an earlier circusd) the socket this section binds?"""
    if sock.family != family or sock.type != kind:
        return False
    if isinstance(address, tuple) and port == 0:       # an ephemeral port: any one is it
        return _norm(sock.getsockname())[0] == _norm(address)[0]
    return _norm(sock.getsockname()) == _norm(address)


def bind(cfg: SocketConfig, inherited: Mapping[tuple, socket.socket] | None = None,
         held: socket.socket | None = None) -> BoundSocket:
    """Bind and listen (never raises: a failure is recorded in ``error``). ``held``: the socket
    of this name an earlier circusd bound (handed over by its keeper), used if it still matches."""
    bound = BoundSocket(cfg)
    try:
        try:
            family, address = _resolve(cfg)
        except BaseException:
            if held is not None:
                held.close()
            raise
        key = (family, getattr(socket, cfg.type), _norm(address))
        if held is not None and _matches(held, family, key[1], address, cfg.port or 0):
            bound.sock = held
            log.info("socket %s: kept from the previous circusd", cfg.name)
        elif inherited and key in inherited:
            bound.sock, bound.inherited = inherited[key], True
        else:
            if held is not None:
                held.close()
            bound.sock = _new_socket(cfg, family, address)
        bound.sock.set_inheritable(True)
        bound.sock.setblocking(cfg.blocking)
        name = bound.sock.getsockname()
        bound.address = name if isinstance(name, str) else tuple(name[:2])
    except (OSError, UnicodeError) as exc:
        where = cfg.path or f"{cfg.host}:{cfg.port}"
        bound.error = f"cannot bind socket {cfg.name!r} on {where}: {getattr(exc, 'strerror', None) or exc}"
        log.error("%s", bound.error)
        if bound.sock is not None:
            bound.sock.close()
            bound.sock = None
    return bound


def _new_socket(cfg: SocketConfig, family: int, address: tuple | str) -> socket.socket:
    proto = socket.getprotobyname(cfg.proto) if cfg.proto else 0
    kind = getattr(socket, cfg.type)
    sock = socket.socket(family, kind, proto)
    try:
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if cfg.so_reuseport and hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if cfg.interface:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, cfg.interface.encode() + b"\0")
        if family == socket.AF_UNIX:
            path = str(address)
            if os.path.exists(path):
                if not cfg.replace:
                    raise OSError(f"{path} exists (set replace = true to remove it)")
                if not stat.S_ISSOCK(os.stat(path).st_mode):
                    raise OSError(f"{path} exists and is not a socket")
                os.unlink(path)
            old = os.umask(cfg.umask)
            try:
                sock.bind(path)
            finally:
                os.umask(old)
        else:
            sock.bind(address)
        if kind in (socket.SOCK_STREAM, socket.SOCK_SEQPACKET):
            sock.listen(cfg.backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def _norm(address: tuple | str) -> tuple | str:
    return address if isinstance(address, str) else tuple(address[:2])


def inherited_sockets(environ: Mapping[str, str], pid: int) -> dict[tuple, socket.socket]:
    """Sockets passed by systemd socket activation (``LISTEN_FDS`` for this pid), by address."""
    if environ.get("LISTEN_PID") != str(pid):
        return {}
    try:
        count = int(environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return {}
    found: dict[tuple, socket.socket] = {}
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
        try:
            sock = socket.socket(fileno=fd)
            name = sock.getsockname()
        except OSError as exc:
            log.warning("inherited fd %d is not a usable socket: %s", fd, exc)
            continue
        found[(sock.family, sock.type, _norm(name))] = sock
    return found


def sockets_used(cfg: WatcherConfig, available: Iterable[str]) -> list[str]:
    """Names of the sockets a watcher's processes get: its ``sockets`` list, else all of them
    when ``use_sockets``, plus any named in ``$(circus.sockets.NAME)`` or ``stdin_socket``."""
    names = {n.lower() for n in available}
    used: set[str] = set()
    if cfg.use_sockets:
        used |= {s.lower() for s in cfg.sockets} if cfg.sockets else names
    text = " ".join([cfg.cmd, cfg.args if isinstance(cfg.args, str) else " ".join(cfg.args),
                     cfg.shell_args or ""]).lower()
    used |= {n for n in names if f"circus.sockets.{n})" in text}
    if cfg.stdin_socket:
        used.add(cfg.stdin_socket.lower())
    return sorted(used)


class SocketRegistry:
    """The sockets of one arbiter, by name."""

    def __init__(self) -> None:
        self.sockets: dict[str, BoundSocket] = {}
        #: told ``(name, fd)`` when a socket is bound, ``(name, None)`` when it is closed
        self.listeners: list[Callable[[str, int | None], None]] = []

    def _tell(self, name: str, bound: BoundSocket | None) -> None:
        fd = bound.fd if bound is not None and bound.sock is not None else None
        for listener in self.listeners:
            listener(name, fd)

    def bind_all(self, configs: Iterable[SocketConfig], inherited: Mapping | None = None,
                 held: Mapping[str, socket.socket] | None = None) -> None:
        held = {k.lower(): v for k, v in (held or {}).items()}
        for cfg in configs:
            self.sockets[cfg.name.lower()] = bind(cfg, inherited, held.pop(cfg.name.lower(), None))
        for sock in held.values():            # sections that no longer exist
            sock.close()

    def bound(self) -> list[BoundSocket]:
        return [b for b in self.sockets.values() if b.sock is not None]

    def fds_for(self, cfg: WatcherConfig) -> dict[str, int]:
        """``{name: fd}`` of the sockets ``cfg``'s processes get; SpawnError if one is unusable."""
        out: dict[str, int] = {}
        for name in sockets_used(cfg, self.sockets):
            bound = self.sockets.get(name)
            if bound is None:
                raise SpawnError(f"socket {name!r} is not defined")
            if bound.sock is None:
                raise SpawnError(bound.error or f"socket {name!r} is closed")
            out[name] = bound.fd
        return out

    def info(self) -> list[dict]:
        return sorted((b.info() for b in self.sockets.values()), key=lambda i: (i.get("fd", 1 << 30), i["name"]))

    def replace(self, cfg: SocketConfig) -> None:
        old = self.sockets.pop(cfg.name.lower(), None)
        if old is not None:
            self._tell(old.name, None)
            old.close()
        self.sockets[cfg.name.lower()] = bound = bind(cfg)
        self._tell(cfg.name, bound)

    def remove(self, name: str) -> None:
        old = self.sockets.pop(name.lower(), None)
        if old is not None:
            self._tell(old.name, None)
            old.close()

    def close_all(self) -> None:
        for bound in self.sockets.values():
            bound.close()
        self.sockets.clear()
