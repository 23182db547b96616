"""What circushttpd talks to: a pool of nodes (a pool file), or one node seen as a pool of one.

Calls go through :class:`circusmeta.Pool` (parallel, a deadline per node, a result per node
whatever happened: ``active``, ``unresponsive``, ``not_available``). The page views are built
here from the replies and the live state, as plain dicts for the templates and the JSON API.
"""
from __future__ import annotations

import asyncio
import os
import socket
import time
from dataclasses import dataclass, replace
from typing import Any, Mapping

from circus.config import ConfigError, load_config
from circus.config.stats_watcher import stats_wanted
from circus.security.audit import ON_BEHALF_OF
from circusmeta.api import Pool
from circusmeta.fanout import ACTIVE, NodeResult
from circusmeta.pool import MetaOptions, NodeSpec, PoolConfig, load_pool, proxy_client_keys

from .live import LiveState, Source

__all__ = ["Backend", "SetupError", "pool_from_file", "pool_from_endpoint", "pool_from_circus",
           "name_single_node", "open_pool", "sources", "ACTION_COMMANDS", "ACTION_DEADLINE"]

#: the page's action buttons and the command each runs (with ``waiting``)
ACTION_COMMANDS: Mapping[str, tuple[str, dict[str, Any]]] = {
    "start": ("start", {}),
    "stop": ("stop", {}),
    "restart": ("restart", {"graceful": True}),
    "reload": ("reload", {}),
    "incr": ("incr", {"nb": 1}),
    "decr": ("decr", {"nb": 1}),
    "kill": ("kill", {}),
    "reloadconfig": ("reloadconfig", {}),
}
#: seconds a waiting action may take (a graceful restart waits for readiness)
ACTION_DEADLINE = 120.0


class SetupError(ValueError):
    """What circushttpd was pointed at cannot be used (exit 2); the message says why."""


# -- what the pool is ----------------------------------------------------------------------------

def pool_from_file(path: str) -> PoolConfig:
    try:
        return load_pool(path)
    except ConfigError as exc:
        raise SetupError(str(exc)) from None


def pool_from_endpoint(endpoint: str, pubsub: str | None, stats: str | None,
                       client_key: str | None = None, server_key: str | None = None,
                       timeout: float = 3.0, name: str = "node") -> PoolConfig:
    if bool(client_key) != bool(server_key):
        raise SetupError("--curve-key and --server-key go together (the client's .key_secret and "
                         "the node's public .key)")
    for flag, value in (("--endpoint", endpoint), ("--pubsub", pubsub), ("--stats", stats)):
        if value is not None and not value.startswith(("tcp://", "ipc://")):
            raise SetupError(f"{flag}: expected tcp://HOST:PORT or ipc://PATH, got {value!r}")
    spec = NodeSpec(name, endpoint, pubsub, stats, server_key=server_key, client_key=client_key)
    return PoolConfig(MetaOptions(timeout=timeout, client_key=client_key), {name: spec},
                      file=endpoint)


def pool_from_circus(path: str) -> PoolConfig:
    """One node described by its circusd configuration: endpoints, name, CURVE keys (the
    node's own .key_secret as client and server key, as circusd's helper processes do)."""
    try:
        config = load_config(path, os.environ)
    except ConfigError as exc:
        raise SetupError(str(exc)) from None
    circus = config.circus
    key = circus.curve_secret_key
    pool = pool_from_endpoint(circus.endpoint, circus.pubsub_endpoint,
                              circus.stats_endpoint if stats_wanted(circus) else None,
                              key, key, name=circus.name or socket.gethostname())
    return replace(pool, file=path)


async def name_single_node(pool: PoolConfig) -> tuple[PoolConfig, str | None]:
    """A pool of one named after the node (its ``nodeinfo``); the reason when it did not
    answer (then the name given stays)."""
    (spec,) = pool.nodes.values()
    async with open_pool(pool) as probe:
        result = await probe.call_one(spec.name, "nodeinfo")
    reported = result.reply.get("name") if result.ok and result.reply else None
    if not isinstance(reported, str) or not reported:
        return pool, result.reason or result.state
    return replace(pool, nodes={reported: replace(spec, name=reported)}), None


# -- calling -------------------------------------------------------------------------------------

def open_pool(config: PoolConfig) -> Pool:
    """A :class:`Pool` on ``config`` (its CURVE keys loaded: a node with ``server_key`` is
    reached with its client key pair); SetupError naming a bad key file."""
    try:
        return Pool(config)
    except ConfigError as exc:
        raise SetupError(str(exc)) from None


def proxy_keys(config: PoolConfig) -> Any:
    try:
        return proxy_client_keys(config)
    except ConfigError as exc:
        raise SetupError(str(exc)) from None


def sources(config: PoolConfig, keys: Mapping[str, Any], proxy: bool = False) -> list[Source]:
    """The streams to follow: each node's stats and events, or the pool's proxy."""
    if proxy:
        curve = proxy_keys(config)
        return [Source("stats", config.meta.stats_endpoint, curve=curve),
                Source("events", config.meta.pubsub_endpoint, curve=curve)]
    out = []
    for name, spec in config.nodes.items():
        if spec.stats_endpoint:
            out.append(Source("stats", spec.stats_endpoint, name, keys.get(name)))
        if spec.pubsub_endpoint:
            out.append(Source("events", spec.pubsub_endpoint, name, keys.get(name)))
    return out


def _age(started: Any, now: float) -> float | None:
    return max(0.0, now - started) if isinstance(started, (int, float)) else None


@dataclass
class Backend:
    """The pool and the live state, and the views the pages and the API show."""

    pool: Pool
    live: LiveState

    @property
    def names(self) -> list[str]:
        return self.pool.names

    def has(self, node: str) -> bool:
        return node in self.pool.config.nodes

    async def call(self, node: str, command: str, deadline: float | None = None,
                   user: str | None = None, **props: Any) -> NodeResult:
        """``command`` on ``node``; ``user``: the web user it is run for, sent as the
        ``on_behalf_of`` property (it replaces any such property given), which a node records
        in its audit trail when circushttpd holds the node's own key."""
        props.pop(ON_BEHALF_OF, None)
        if user is not None:
            props[ON_BEHALF_OF] = user
        return await self.pool.call_one(node, command, deadline=deadline, **props)

    async def overview(self) -> list[dict[str, Any]]:
        infos = await self.pool.nodes()
        rows = []
        for name, result in infos.items():
            reply = result.reply if result.ok and result.reply else {}
            load = reply.get("load") or [None]
            total, avail = reply.get("mem_total"), reply.get("mem_available")
            used = total - avail if isinstance(total, int) and isinstance(avail, int) else None
            rows.append({"name": name, "state": result.state, "reason": result.reason,
                         "load": load[0], "mem_used": used, "mem_total": total,
                         "mem_percent": round(100.0 * used / total, 1) if used is not None
                         and total else None,
                         "watchers": reply.get("watchers"), "processes": reply.get("processes"),
                         "cpu_count": reply.get("cpu_count"), "uptime": reply.get("uptime"),
                         "version": reply.get("version"), "rtt": result.rtt,
                         "reported_name": result.reported_name if result.name_mismatch
                         else None, "endpoint": result.endpoint})
        return rows

    async def status(self) -> dict[str, Any]:
        """The API's status: each node's state and its watchers' states."""
        results = await self.pool.call("status")
        nodes: dict[str, Any] = {}
        for name, result in results.items():
            entry: dict[str, Any] = {"state": result.state,
                                     "watchers": dict(result.reply.get("statuses", {}))
                                     if result.ok and result.reply else {}}
            if not result.ok:
                entry["reason"] = result.reason
            nodes[name] = entry
        return {"nodes": nodes}

    async def node(self, name: str) -> dict[str, Any]:
        now = time.time()
        info, procs, socks, status = await asyncio.gather(
            self.call(name, "nodeinfo"), self.call(name, "processes"),
            self.call(name, "listsockets"), self.call(name, "status"))
        view: dict[str, Any] = {"name": name, "state": info.state, "reason": info.reason,
                                "info": info.reply if info.ok else {}, "watchers": [],
                                "sockets": []}
        details = status.reply.get("details", {}) if status.ok and status.reply else {}
        records = procs.reply.get("watchers", {}) if procs.ok and procs.reply else {}
        for watcher, rec in sorted(records.items(), key=lambda kv: kv[0].lower()):
            alive = [p for p in rec.get("processes", ()) if p.get("pid")]
            latest = self.live.latest(name, watcher)
            view["watchers"].append({
                "name": watcher, "state": rec.get("state", "unknown"),
                "reason": (details.get(watcher) or {}).get("reason"),
                "numprocesses": rec.get("numprocesses"), "alive": len(alive),
                "restarts": rec.get("restarts", 0),
                "cpu": latest[0] if latest else None, "mem": latest[1] if latest else None,
                "series": self.live.watcher_series(name, watcher)})
        live_sockets = {s.get("name"): s for s in self.live.node_sockets(name).values()}
        for sock in (socks.reply.get("sockets", []) if socks.ok and socks.reply else []):
            address = f"{sock.get('host')}:{sock.get('port')}" if sock.get("host") is not None \
                else sock.get("path", "")
            activity = live_sockets.get(sock.get("name"), {})
            view["sockets"].append({"name": sock.get("name"), "fd": sock.get("fd"),
                                    "address": address, "backlog": sock.get("backlog"),
                                    "queue": activity.get("queue"),
                                    "connections": activity.get("connections"),
                                    "accepted": activity.get("accepted")})
        view["has_stats"] = name in self.live.last_stats
        view["time"] = now
        return view

    async def watcher(self, node: str, watcher: str) -> dict[str, Any]:
        now = time.time()
        procs, tail, stats = await asyncio.gather(
            self.call(node, "processes", name=watcher),
            self.call(node, "tail", name=watcher, lines=30),
            self.call(node, "stats", name=watcher))
        view: dict[str, Any] = {"node": node, "name": watcher, "state": procs.state,
                                "reason": procs.reason, "found": False, "processes": [],
                                "output": [], "output_note": None,
                                "events": self.live.recent_events(node, watcher)}
        records = procs.reply.get("watchers", {}) if procs.ok and procs.reply else {}
        rec = next((r for w, r in records.items() if w.lower() == watcher.lower()), None)
        if rec is None:
            return view
        view.update(found=True, watcher_state=rec.get("state"),
                    numprocesses=rec.get("numprocesses"), restarts=rec.get("restarts", 0),
                    exits=rec.get("exits", {}),
                    series=self.live.watcher_series(node, watcher))
        latest = self.live.latest(node, watcher)
        view["cpu"], view["mem"] = (latest if latest else (None, None))
        samples = self.live.process_samples(node, watcher, now)
        sampled = stats.reply.get("info", {}) if stats.ok and stats.reply else {}
        for p in rec.get("processes", ()):
            pid = p.get("pid")
            if not pid:
                continue
            sample = samples.get(pid) or sampled.get(str(pid)) or {}
            view["processes"].append({"pid": pid, "wid": p.get("wid"), "state": p.get("state"),
                                      "ready": p.get("ready"), "restarts": p.get("restarts", 0),
                                      "age": _age(p.get("started"), now),
                                      "cpu": sample.get("cpu"), "mem": sample.get("mem"),
                                      "rss": sample.get("rss")})
        if tail.ok and tail.reply:
            view["output"] = [line for line in tail.reply.get("lines", [])
                              if isinstance(line, dict)]
            if not tail.reply.get("streams"):
                view["output_note"] = "circusd keeps no output for this watcher (give it a " \
                                      "stdout_stream or stderr_stream to see its last lines)"
        elif tail.refused:
            view["output_note"] = tail.reason
        return view

    async def records(self) -> dict[str, Mapping[str, Any]]:
        """Each active node's ``processes`` reply (for /metrics)."""
        results = await self.pool.call("processes")
        return {n: r.reply.get("watchers", {}) for n, r in results.items()
                if r.state == ACTIVE and r.ok and r.reply}

    def close(self) -> None:
        self.pool.close()
