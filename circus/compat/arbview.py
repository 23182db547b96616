"""0.19's ``Arbiter`` and ``CircusSocket`` as hooks see them (``arbiter``, ``arbiter.sockets``,
``watcher.sockets``), read live from our arbiter and its bound sockets; see
:mod:`circus.compat.views` for the watcher and its processes.
"""
from __future__ import annotations

import os
import socket
from typing import Any

from circus.compat.views import WatcherView, snapshot

__all__ = ["ArbiterView", "SocketView", "CircusSockets"]


class SocketView:
    """0.19's ``CircusSocket`` attributes of a socket circusd bound."""

    _bound: Any = None
    _own_cfg: Any = None

    def __init__(self, bound: Any) -> None:
        self._bound = bound

    @property
    def _cfg(self) -> Any:
        return self._bound.cfg if self._bound is not None else self._own_cfg

    @property
    def name(self) -> str:
        return self._cfg.name

    @property
    def path(self) -> str | None:
        return self._cfg.path

    def _address(self) -> Any:
        sock = getattr(self._bound, "sock", None)
        if sock is None or sock.fileno() < 0:
            return None
        try:
            return sock.getsockname()
        except OSError:
            return None

    @property
    def host(self) -> str:
        address = self._address()
        return address[0] if isinstance(address, tuple) else self._cfg.host

    @property
    def port(self) -> int:
        address = self._address()
        return address[1] if isinstance(address, tuple) else self._cfg.port

    @property
    def family(self) -> int:
        return int(getattr(socket, "AF_UNIX" if self._cfg.path else self._cfg.family))

    @property
    def type(self) -> int:
        return int(getattr(socket, self._cfg.type))

    @property
    def proto(self) -> int:
        return socket.getprotobyname(self._cfg.proto) if self._cfg.proto else 0

    def __getattr__(self, name: str) -> Any:
        if name in ("backlog", "so_reuseport", "umask", "replace", "blocking", "interface"):
            return getattr(self._cfg, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def fileno(self) -> int:
        """The listening socket's fd (as ``$(circus.sockets.NAME)``); -1 when not bound."""
        sock = getattr(self._bound, "sock", None)
        return sock.fileno() if sock is not None else -1

    def getsockname(self) -> Any:
        address = self._address()
        if address is None:
            raise OSError(f"socket {self.name!r} is not bound")
        return address

    def __repr__(self) -> str:
        where = self.path or f"{self.host}:{self.port}"
        return f"<circus.sockets.CircusSocket {self.name!r} fd={self.fileno()} at {where}>"


class CircusSockets(dict):
    """0.19's ``arbiter.sockets``: {name: socket}; iterating gives the names, ``.values()`` the
    sockets."""

    def __init__(self, sockets: Any = ()) -> None:
        super().__init__((s.name, s) for s in sockets)


class ArbiterView:
    """0.19's ``Arbiter`` attributes, read from our arbiter."""

    def __init__(self, core: Any, loop: Any = None) -> None:
        self._core = core
        self._loop = loop            # the arbiter's event loop (views made in a hook's thread)

    @property
    def _opts(self) -> Any:
        return self._core.config.circus

    @property
    def watchers(self) -> list[WatcherView]:
        """Every watcher (plugins' and circusd-stats' included), sorted by name."""
        cores = snapshot(lambda: list(self._core.watchers.values()))
        return [WatcherView(w, self) for w in sorted(cores, key=lambda w: w.name.lower())]

    def iter_watchers(self, reverse: bool = True) -> list[WatcherView]:
        return sorted(self.watchers, key=lambda w: w.priority, reverse=reverse)

    def get_watcher(self, name: str) -> WatcherView:
        """The watcher called ``name`` (any case); KeyError if there is none (as 0.19)."""
        core = self._core.watchers.get(name.lower())
        if core is None:
            raise KeyError(name)
        return WatcherView(core, self)

    def numwatchers(self) -> int:
        return len(self._core.watchers)

    def numprocesses(self) -> int:
        return sum(len(w.processes) for w in self.watchers)

    def statuses(self) -> dict[str, str]:
        return {w.name: w.status() for w in self.watchers}

    @property
    def sockets(self) -> CircusSockets:
        return CircusSockets(SocketView(b) for b in self._core.sockets.bound())

    def get_socket(self, name: str) -> SocketView | None:
        return self.sockets.get(name)

    @property
    def running(self) -> bool:
        return not self._core.quitting

    @property
    def pid(self) -> int:
        return os.getpid()

    @property
    def node(self) -> str:
        return self._core.node

    @property
    def multicast_endpoint(self) -> str:
        return self._opts.multicast_endpoint or ""

    proc_name = "circusd"
    ssh_server = None

    def __getattr__(self, name: str) -> Any:
        if name in _ARBITER_OPTIONS:
            return getattr(self._opts, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"<circus.Arbiter of node {self.node!r}>"


#: [circus] options that read unchanged as 0.19 arbiter attributes
_ARBITER_OPTIONS = frozenset({
    "endpoint", "pubsub_endpoint", "stats_endpoint", "check_delay", "warmup_delay", "statsd",
    "debug", "umask", "endpoint_owner", "pidfile", "loglevel", "logoutput", "loggerconfig",
    "httpd", "httpd_host", "httpd_port", "fqdn_prefix"})


