"""``RedisObserver``: ask a Redis server for its ``INFO`` every ``loop_rate`` seconds, send some of
it to statsd, restart a watcher when the server does not answer.

0.19's plugin, with its options and metric names, written over :mod:`circus.plugins.redis_info`
(no redis-py needed):

* ``redis_url`` (default ``redis://localhost:6379/0``; ``rediss://`` and ``unix://`` too),
  ``timeout`` (5 s: connecting and the answer), ``restart_on_timeout`` (a watcher's name;
  ``restart_on_error`` is accepted too), ``loop_rate`` (60) and the statsd options
  (``application_name`` defaults to ``redis_observer``);
* per look, the gauges ``circus.<app>.watcher.redis_stats.<key>`` for the keys of
  :data:`OBSERVED` this server reports (a key a newer Redis renamed is skipped: 0.19 raised);
* when the server cannot be asked: the counter ``redis_stats.error``, and with
  ``restart_on_timeout`` a ``restart`` of that watcher and the counter
  ``redis_stats.restart_on_error``.
"""
from __future__ import annotations

import logging
from typing import Any

from circus.plugins.options import PluginConfigError, get_float, get_str
from circus.plugins.redis_info import RedisUnavailable, fetch_info, parse_url
from circus.plugins.statsd import BaseObserver

__all__ = ["RedisObserver", "OBSERVED"]

log = logging.getLogger("circus")

#: the INFO fields 0.19 sent as gauges (Redis 5 renamed client_biggest_input_buf and
#: client_longest_output_list: a server that lacks a field just does not get its gauge)
OBSERVED = (
    "blocked_clients", "client_biggest_input_buf", "client_longest_output_list",
    "connected_clients", "connected_slaves", "evicted_keys", "expired_keys", "keyspace_hits",
    "keyspace_misses", "lru_clock", "mem_fragmentation_ratio", "pubsub_channels",
    "pubsub_patterns", "total_commands_processed", "total_connections_received",
    "uptime_in_seconds", "used_cpu_sys", "used_cpu_sys_children", "used_cpu_user",
    "used_memory", "used_memory_peak", "used_memory_rss",
)


class RedisObserver(BaseObserver):
    name = "redis_observer"
    default_app_name = "redis_observer"

    def __init__(self, endpoint: str, pubsub_endpoint: str, check_delay: float | str,
                 ssh_server: str | None = None, **config: Any) -> None:
        super().__init__(endpoint, pubsub_endpoint, check_delay, ssh_server, **config)
        url = get_str(self.config, "redis_url", "") or "redis://localhost:6379/0"
        try:
            self.target = parse_url(url)
        except ValueError as exc:
            raise PluginConfigError(f"plugin {self.name}: option 'redis_url': {exc}") from None
        timeout = get_float(self.config, "timeout", 5.0, self.name, minimum=0.0)
        if not timeout:
            raise PluginConfigError(f"plugin {self.name}: option 'timeout': expected a number "
                                    f"> 0, got {self.config.get('timeout')!r}")
        self.redis_timeout = timeout
        self.restart_on_timeout = (get_str(self.config, "restart_on_timeout")
                                   or get_str(self.config, "restart_on_error") or None)
        self.missing: set[str] = set()

    async def look_after(self) -> None:
        try:
            info = await fetch_info(self.target, self.redis_timeout)
        except RedisUnavailable as exc:
            log.warning("plugin %s: redis at %s: %s", self.name, self.target, exc)
            self.statsd.increment("redis_stats.error")
            if self.restart_on_timeout:
                log.warning("plugin %s: restarting %s", self.name, self.restart_on_timeout)
                if await self.run_command("restart", name=self.restart_on_timeout) is not None:
                    self.statsd.increment("redis_stats.restart_on_error")
            return
        for key in OBSERVED:
            value = info.get(key)
            if isinstance(value, (int, float)):
                self.statsd.gauge(f"redis_stats.{key}", value)
            elif key not in self.missing:
                self.missing.add(key)
                log.info("plugin %s: redis at %s does not report %s (no gauge for it)",
                         self.name, self.target, key)
