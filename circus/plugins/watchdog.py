"""``WatchDog``: kill the processes that stop sending heartbeats.

Processes of the watched watchers send UDP datagrams ``"<pid>;<timestamp>"`` to ``ip:port``
(default ``127.0.0.1:1664``; ``port = 0`` picks a free port, which the plugin logs). Every
``loop_rate`` seconds (default 60) each watched pid not heard from for ``loop_rate × max_count``
seconds (default 3) — counted from its spawn, or from when the plugin started — gets ``kill``
(with ``watchers_stop_signal`` / ``watchers_graceful_timeout`` when set); circusd then replaces
it as usual.

* ``watchers_regex`` (default ``.*``) picks the watchers, matched at the start of the name; the
  plugins' own watchers (``plugin:...``) and ``circusd-stats`` are never watched: they send no
  heartbeats.
* ``msg_regex`` (default ``^(?P<pid>.*);(?P<timestamp>.*)$``) parses a datagram; it must have a
  ``pid`` group. A heartbeat counts when it *arrives* (the timestamp is not trusted: clocks
  differ); datagrams from unknown pids are ignored.

Fixed from 0.19: every silent pid is handled in the same round (0.19 deleted from the dict it
was iterating over, so at most one per round, with an error logged), and a kill that circusd
refuses is logged.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from circus.plugins.base import CircusPlugin
from circus.plugins.options import (PluginConfigError, PluginError, get_float, get_period, get_int,
                                    get_regex, get_signal, get_str)

__all__ = ["WatchDog", "DEFAULT_MSG_REGEX", "is_exempt"]

log = logging.getLogger("circus")

DEFAULT_MSG_REGEX = r"^(?P<pid>.*);(?P<timestamp>.*)$"


def is_exempt(watcher: str) -> bool:
    """Watchers that never send heartbeats: plugins and circusd-stats."""
    return watcher.lower().startswith("plugin:") or watcher.lower() == "circusd-stats"


@dataclass
class _Tracked:
    watcher: str
    last_seen: float


class _Heartbeats(asyncio.DatagramProtocol):
    def __init__(self, plugin: "WatchDog") -> None:
        self.plugin = plugin

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.plugin.heartbeat(data)

    def error_received(self, exc: Exception) -> None:
        log.debug("plugin %s: UDP error: %s", self.plugin.name, exc)


class WatchDog(CircusPlugin):
    name = "watchdog"

    def __init__(self, endpoint: str, pubsub_endpoint: str, check_delay: float | str,
                 ssh_server: str | None = None, **config: Any) -> None:
        super().__init__(endpoint, pubsub_endpoint, check_delay, ssh_server, **config)
        self.loop_rate = get_period(self.config, "loop_rate", 60.0, self.name)
        self.max_count = get_int(self.config, "max_count", 3, self.name, minimum=1)
        self.watchers_regex = get_regex(self.config, "watchers_regex", ".*", self.name)
        self.msg_regex = get_regex(self.config, "msg_regex", DEFAULT_MSG_REGEX, self.name)
        if "pid" not in self.msg_regex.groupindex:
            raise PluginConfigError(f"plugin {self.name}: option 'msg_regex' needs a (?P<pid>...) "
                                    f"group, got {self.msg_regex.pattern!r}")
        self.ip = get_str(self.config, "ip", "127.0.0.1") or "127.0.0.1"
        self.port = get_int(self.config, "port", 1664, self.name, minimum=0)
        if self.port > 65535:
            raise PluginConfigError(f"plugin {self.name}: option 'port': expected 0 to 65535, "
                                    f"got {self.port}")
        self.stop_signal = get_signal(self.config, "watchers_stop_signal", None, self.name)
        self.graceful_timeout = get_float(self.config, "watchers_graceful_timeout", None,
                                          self.name, minimum=0.0)
        self.pids: dict[int, _Tracked] = {}
        self.address: tuple[str, int] | None = None
        self._transport: asyncio.DatagramTransport | None = None

    @property
    def silence_limit(self) -> float:
        return self.loop_rate * self.max_count

    def watches(self, watcher: str) -> bool:
        return not is_exempt(watcher) and self.watchers_regex.match(watcher) is not None

    async def handle_init(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Heartbeats(self), local_addr=(self.ip, self.port))
        except OSError as exc:
            raise PluginError(f"plugin {self.name}: cannot listen for heartbeats on "
                              f"{self.ip}:{self.port}: {exc}") from None
        self._transport = transport
        self.address = transport.get_extra_info("sockname")[:2]
        log.info("plugin %s: listening for heartbeats on %s:%d", self.name, *self.address)
        await self._discover()
        self.every(self.loop_rate, self.look_after)

    async def _discover(self) -> None:
        reply = await self.run_command("list")
        now = asyncio.get_running_loop().time()
        for watcher in (reply or {}).get("watchers", []):
            if not self.watches(watcher):
                continue
            pids = await self.run_command("list", name=watcher)
            for pid in (pids or {}).get("pids", []):
                self.pids.setdefault(int(pid), _Tracked(watcher, now))
        log.info("plugin %s: watching %d process(es)", self.name, len(self.pids))

    def handle_recv(self, data: tuple[bytes, bytes]) -> None:
        watcher, action, msg = self.split_data(data)
        pid = msg.get("process_pid")
        if not isinstance(pid, int) or not self.watches(watcher):
            return
        if action == "spawn":
            self.pids[pid] = _Tracked(watcher, asyncio.get_running_loop().time())
        elif action in ("reap", "kill"):
            self.pids.pop(pid, None)

    def heartbeat(self, data: bytes) -> None:
        match = self.msg_regex.search(data.decode(errors="replace").strip())
        if match is None:
            log.debug("plugin %s: heartbeat not understood: %r", self.name, data[:100])
            return
        try:
            pid = int(match.group("pid"))
        except ValueError:
            log.debug("plugin %s: heartbeat with a bad pid: %r", self.name, data[:100])
            return
        tracked = self.pids.get(pid)
        if tracked is not None:
            tracked.last_seen = asyncio.get_running_loop().time()

    async def look_after(self) -> None:
        now = asyncio.get_running_loop().time()
        silent = [(pid, t) for pid, t in self.pids.items() if now - t.last_seen > self.silence_limit]
        for pid, tracked in silent:
            del self.pids[pid]
            log.warning("plugin %s: %s's process %d sent no heartbeat for %.1f s: killing it",
                        self.name, tracked.watcher, pid, now - tracked.last_seen)
            props: dict[str, Any] = {"name": tracked.watcher, "pid": pid}
            if self.stop_signal is not None:
                props["signum"] = self.stop_signal
            if self.graceful_timeout is not None:
                props["graceful_timeout"] = self.graceful_timeout
            await self.run_command("kill", **props)

    def handle_stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
