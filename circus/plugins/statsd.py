"""Statsd plugins: one counter per event (``StatsdEmitter``), process gauges (``FullStats``),
and :class:`BaseObserver`, the base of the plugins that look after something periodically.

They send plain statsd lines over UDP to ``host:port`` (default ``localhost:8125``), every metric
under ``circus.<application_name>.watcher.``, as 0.19 did (``application_name`` defaults to the
class's ``default_app_name``: ``app``, or the observer's name):

* ``StatsdEmitter``: ``circus.<app>.watcher.<watcher>.<event>:1|c`` for each event circusd
  publishes (``spawn``, ``reap``, ``kill``, ``start``, ``stop``...), sampled at ``sample_rate``;
* ``FullStats``: every ``loop_rate`` seconds (default 60), from one ``stats`` call, per watcher
  except the plugins' (``plugin:NAME``) the gauges ``circus.<app>.watcher._stats.<watcher>.``
  ``watchers_num`` (processes) and, when it has processes, ``cpu_max``/``cpu_sum`` (%),
  ``mem_pct_max``/``mem_pct_sum`` (% of RAM), ``mem_max``/``mem_sum`` (RSS, bytes); the counter
  ``_stats.error`` when the call fails. No event counters: 0.19's sent none either.

Metrics are best effort: a statsd server that is down or unreachable loses datagrams, it never
stops the plugin. A metric name's ``:``, ``|``, ``@`` and white space (``plugin:NAME`` watchers)
become ``_``: statsd would otherwise misread the line.
"""
from __future__ import annotations

import logging
import random
import re
import socket
from typing import Any, Callable, Mapping

from circus.plugins.base import CircusPlugin
from circus.plugins.options import PluginConfigError, get_float, get_period, get_int, get_str

__all__ = ["StatsdClient", "StatsdEmitter", "FullStats", "BaseStatsdPlugin", "BaseObserver",
           "watcher_gauges"]

log = logging.getLogger("circus")

_UNSAFE = re.compile(r"[:|@\s]")


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.3f}".rstrip("0").rstrip(".")


class StatsdClient:
    """A statsd sender over UDP; ``prefix`` is put before every metric name."""

    def __init__(self, host: str = "localhost", port: int = 8125, prefix: str = "",
                 sample_rate: float = 1.0, rng: Callable[[], float] = random.random) -> None:
        try:
            family, kind, proto, _, address = socket.getaddrinfo(host, port,
                                                                 type=socket.SOCK_DGRAM)[0]
        except (OSError, UnicodeError) as exc:
            raise PluginConfigError(f"statsd server {host}:{port}: cannot resolve: {exc}") from None
        self.address = address
        self.prefix = prefix.rstrip(".")
        self.sample_rate = sample_rate
        self._rng = rng
        self._kind = (family, kind, proto)
        self._sock: socket.socket | None = None      # opened on the first send

    def _socket(self) -> socket.socket:
        if self._sock is None:
            self._sock = socket.socket(*self._kind)
            self._sock.setblocking(False)
        return self._sock

    def line(self, name: str, value: float, kind: str, rate: float = 1.0) -> str:
        """The statsd line for one metric (``prefix.name:value|kind[|@rate]``)."""
        metric = _UNSAFE.sub("_", f"{self.prefix}.{name}" if self.prefix else name)
        text = f"{metric}:{_number(value)}|{kind}"
        return text + f"|@{rate:g}" if rate < 1 else text

    def send(self, name: str, value: float, kind: str, rate: float | None = None) -> None:
        rate = self.sample_rate if rate is None else rate
        if rate < 1 and self._rng() >= rate:
            return
        try:
            self._socket().sendto(self.line(name, value, kind, rate).encode(), self.address)
        except OSError as exc:      # best effort: a lost metric is not worth a failure
            log.debug("statsd: cannot send %s to %s: %s", name, self.address, exc)

    def increment(self, name: str, value: int = 1, sample_rate: float | None = None) -> None:
        self.send(name, value, "c", sample_rate)

    def decrement(self, name: str, value: int = 1, sample_rate: float | None = None) -> None:
        self.send(name, -value, "c", sample_rate)

    def gauge(self, name: str, value: float) -> None:
        self.send(name, value, "g", 1.0)

    def timing(self, name: str, milliseconds: float) -> None:
        self.send(name, milliseconds, "ms", 1.0)

    timed = timing          # 0.19's name

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    close = stop


class BaseStatsdPlugin(CircusPlugin):
    """A plugin with a :class:`StatsdClient` in ``self.statsd`` built from 0.19's options
    ``host``, ``port``, ``sample_rate`` and ``application_name``; every metric's name starts
    with ``circus.<application_name>.watcher.`` (0.19's prefix)."""

    name = "statsd"
    #: ``application_name`` when the config gives none
    default_app_name = "app"

    def __init__(self, endpoint: str, pubsub_endpoint: str, check_delay: float | str,
                 ssh_server: str | None = None, **config: Any) -> None:
        super().__init__(endpoint, pubsub_endpoint, check_delay, ssh_server, **config)
        self.app = get_str(self.config, "application_name", "") or self.default_app_name
        self.prefix = f"circus.{self.app}.watcher"
        rate = get_float(self.config, "sample_rate", 1.0, self.name, minimum=0.0)
        assert rate is not None
        if rate > 1:
            raise PluginConfigError(f"plugin {self.name}: option 'sample_rate': expected a "
                                    f"number from 0 to 1, got {self.config['sample_rate']!r}")
        self.statsd = StatsdClient(get_str(self.config, "host", "localhost") or "localhost",
                                   get_int(self.config, "port", 8125, self.name, minimum=1),
                                   prefix=self.prefix, sample_rate=rate)

    def handle_recv(self, data: tuple[bytes, bytes]) -> Any:
        """Events are not this base class's business."""

    def handle_stop(self) -> Any:
        self.statsd.stop()


class StatsdEmitter(BaseStatsdPlugin):
    """``circus.<app>.watcher.<watcher>.<event>`` +1 for every event."""

    name = "statsd"

    def handle_recv(self, data: tuple[bytes, bytes]) -> Any:
        watcher, action, _ = self.split_data(data)
        self.statsd.increment(f"{watcher}.{action}")


class BaseObserver(BaseStatsdPlugin):
    """0.19's base of the periodic plugins: :meth:`look_after` every ``loop_rate`` seconds
    (default 60; a plain method or a coroutine), statsd in ``self.statsd``, events ignored."""

    name = "observer"

    def __init__(self, endpoint: str, pubsub_endpoint: str, check_delay: float | str,
                 ssh_server: str | None = None, **config: Any) -> None:
        super().__init__(endpoint, pubsub_endpoint, check_delay, ssh_server, **config)
        self.loop_rate = get_period(self.config, "loop_rate", 60.0, self.name)

    def handle_init(self) -> Any:
        self.period = self.every(self.loop_rate, self.look_after)

    def look_after(self) -> Any:
        raise NotImplementedError("an observer must override look_after()")


def _numbers(values: list[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]


def watcher_gauges(processes: Mapping[str, Any]) -> dict[str, float]:
    """The gauges of one watcher from its ``stats`` info (``{pid: info}``): ``watchers_num``
    always, the others only when it has processes (as 0.19). Processes that vanished (a
    string instead of a dict) and "N/A" values are left out."""
    infos = [info for info in processes.values() if isinstance(info, dict)]
    if not infos:
        return {"watchers_num": 0}
    cpu = _numbers([i.get("cpu") for i in infos])
    mem = _numbers([i.get("mem") for i in infos])
    rss = _numbers([i.get("rss") for i in infos])
    return {"watchers_num": len(infos),
            "cpu_max": max(cpu, default=0.0), "cpu_sum": sum(cpu),
            "mem_pct_max": max(mem, default=0.0), "mem_pct_sum": sum(mem),
            "mem_max": max(rss, default=0.0), "mem_sum": sum(rss)}


class FullStats(BaseObserver):
    """Every ``loop_rate`` seconds the ``_stats.<watcher>.*`` gauges of every watcher but the
    plugins' (0.19's names and set)."""

    name = "full_stats"

    async def look_after(self) -> None:
        reply = await self.run_command("stats")
        infos = reply.get("infos") if reply is not None else None
        if not isinstance(infos, dict):
            if reply is not None:
                log.error("plugin %s: stats reply without infos: %r", self.name, reply)
            self.statsd.increment("_stats.error")
            return
        for watcher, processes in sorted(infos.items()):
            if watcher.startswith("plugin:") or not isinstance(processes, dict):
                continue
            for key, value in watcher_gauges(processes).items():
                self.statsd.gauge(f"_stats.{watcher}.{key}", value)

    send_gauges = look_after
