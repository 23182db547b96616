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
from dataclasses import dataclass
from typing import Any, Mapping

from circus.config import ConfigError, load_config
from circus.config.stats_watcher import stats_wanted
from circus.records import replace
from circus.security.audit import ON_BEHALF_OF
from circusmeta.api import Pool
from circusmeta.fanout import ACTIVE, NodeResult
from circusmeta.pool import MetaOptions, NodeSpec, PoolConfig, load_pool, proxy_client_keys

from .badges import Health, node_health
from .live import LiveState, Source
from .watchers import trouble_of

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
#: lines of output on a watcher's page; last lines of a watcher in trouble in its node's row
OUTPUT_LINES = 30
ROW_LINES = 3
#: watchers in trouble whose last lines a node page asks for (one ``status`` call each)
MAX_TROUBLED = 20


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


def _health_view(health: Health | None) -> dict[str, Any] | None:
    if health is None:
        return None
    return {"tone": health.tone, "summary": health.summary, "counts": health.counts,
            "troubled": [{"name": n, "trouble": t, "reason": r} for n, t, r in health.troubled]}


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
        infos, statuses = await asyncio.gather(self.pool.nodes(), self.pool.call("status"))
        rows = []
        for name, result in infos.items():
            reply = result.reply if result.ok and result.reply else {}
            load = reply.get("load") or [None]
            total, avail = reply.get("mem_total"), reply.get("mem_available")
            used = total - avail if isinstance(total, int) and isinstance(avail, int) else None
            status = statuses.get(name)
            health = node_health(status.reply.get("details"), status.reply.get("statuses")) \
                if status is not None and status.ok and status.reply else None
            rows.append({"name": name, "state": result.state, "reason": result.reason,
                         "load": load[0], "mem_used": used, "mem_total": total,
                         "mem_percent": round(100.0 * used / total, 1) if used is not None
                         and total else None,
                         "watchers": reply.get("watchers"), "processes": reply.get("processes"),
                         "cpu_count": reply.get("cpu_count"), "uptime": reply.get("uptime"),
                         "version": reply.get("version"), "rtt": result.rtt,
                         "reported_name": result.reported_name if result.name_mismatch
                         else None, "endpoint": result.endpoint,
                         "health": _health_view(health)})
        return rows

    async def status(self) -> dict[str, Any]:
        """The API's status: each node's state and its watchers' states."""
        results = await self.pool.call("status")
        nodes: dict[str, Any] = {}
        for name, result in results.items():
            reply = result.reply if result.ok and result.reply else {}
            entry: dict[str, Any] = {"state": result.state,
                                     "watchers": dict(reply.get("statuses", {}))}
            if result.ok:
                # the 0.19 state word stays "active" for a crash loop: what is wrong, apart
                entry["trouble"] = {n: t for n, t, _ in node_health(
                    reply.get("details"), reply.get("statuses")).troubled}
            else:
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
        troubled = [w for w, rec in records.items() if trouble_of(rec, details.get(w))]
        last = await self._last_lines(name, troubled[:MAX_TROUBLED])
        for watcher, rec in sorted(records.items(), key=lambda kv: kv[0].lower()):
            alive = [p for p in rec.get("processes", ()) if p.get("pid")]
            latest = self.live.latest(name, watcher)
            detail = details.get(watcher) or {}
            trouble = trouble_of(rec, detail)
            view["watchers"].append({
                "name": watcher, "state": rec.get("state", "unknown"), "trouble": trouble,
                "reason": detail.get("reason") or rec.get("reason") or "",
                "numprocesses": rec.get("numprocesses"), "alive": len(alive),
                "restarts": rec.get("restarts", 0),
                "last_lines": last.get(watcher, [])[-ROW_LINES:],
                "cpu": latest[0] if latest else None, "mem": latest[1] if latest else None,
                "series": self.live.watcher_series(name, watcher)})
        view["health"] = _health_view(node_health(
            {w["name"]: {"state": w["state"], "trouble": w["trouble"], "reason": w["reason"]}
             for w in view["watchers"]}) if procs.ok else None)
        view["processes"] = sum(w["alive"] for w in view["watchers"])
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

    async def _last_lines(self, node: str, watchers: list[str]) -> dict[str, list[dict]]:
        """``status NAME``'s ``last_lines`` (what a watcher in trouble last wrote) of each."""
        results = await asyncio.gather(*(self.call(node, "status", name=w, match="simple")
                                         for w in watchers))
        return {w: [line for line in r.reply.get("last_lines") or () if isinstance(line, dict)]
                for w, r in zip(watchers, results) if r.ok and r.reply}

    async def watcher(self, node: str, watcher: str) -> dict[str, Any]:
        now = time.time()
        procs, tail, stats, status = await asyncio.gather(
            self.call(node, "processes", name=watcher),
            self.call(node, "tail", name=watcher, lines=OUTPUT_LINES),
            self.call(node, "stats", name=watcher),
            self.call(node, "status", name=watcher, match="simple"))
        view: dict[str, Any] = {"node": node, "name": watcher, "state": procs.state,
                                "reason": procs.reason, "found": False, "processes": [],
                                "output": [], "output_note": None, "output_off": False,
                                "last_lines": [],
                                "events": self.live.recent_events(node, watcher)}
        records = procs.reply.get("watchers", {}) if procs.ok and procs.reply else {}
        rec = next((r for w, r in records.items() if w.lower() == watcher.lower()), None)
        if rec is None:
            return view
        one = status.reply if status.ok and status.reply else {}
        trouble = trouble_of(rec, one)
        view.update(found=True, watcher_state=rec.get("state"), trouble=trouble,
                    watcher_reason=one.get("reason") or rec.get("reason") or "",
                    numprocesses=rec.get("numprocesses"), restarts=rec.get("restarts", 0),
                    exits=rec.get("exits", {}),
                    series=self.live.watcher_series(node, watcher))
        if trouble:
            view["last_lines"] = [line for line in one.get("last_lines") or ()
                                  if isinstance(line, dict)]
        latest = self.live.latest(node, watcher)
        view["cpu"], view["mem"] = (latest if latest else (None, None))
        samples = self.live.process_samples(node, watcher, now)
        sampled = stats.reply.get("info", {}) if stats.ok and stats.reply else {}
        for p in rec.get("processes", ()):
            pid = p.get("pid")
            sample = (samples.get(pid) or sampled.get(str(pid)) or {}) if pid else {}
            view["processes"].append({"pid": pid, "wid": p.get("wid"), "state": p.get("state"),
                                      "ready": p.get("ready"), "restarts": p.get("restarts", 0),
                                      "last_exit": p.get("last_exit"),
                                      "reason": p.get("reason") or "",
                                      "age": _age(p.get("started"), now) if pid else None,
                                      "cpu": sample.get("cpu"), "mem": sample.get("mem"),
                                      "rss": sample.get("rss")})
        view["alive"] = sum(1 for p in view["processes"] if p["pid"])
        if tail.ok and tail.reply:
            view["output"] = [line for line in tail.reply.get("lines", [])
                              if isinstance(line, dict)]
        elif tail.refused:
            code = tail.reply.get("code") if tail.reply else None
            # only a watcher whose output circusd really does not keep (recent_lines = 0 and
            # no stream) says so; another refusal is said as it is
            view["output_note"] = tail.reason if code == "not_supported" else \
                f"its last lines could not be read: {tail.reason}"
            view["output_off"] = code == "not_supported"
        elif tail.reply is None:
            view["output_note"] = f"its last lines could not be read: {tail.reason}"
        return view

    async def records(self) -> dict[str, Mapping[str, Any]]:
        """Each active node's ``processes`` reply (for /metrics)."""
        results = await self.pool.call("processes")
        return {n: r.reply.get("watchers", {}) for n, r in results.items()
                if r.state == ACTIVE and r.ok and r.reply}

    def close(self) -> None:
        self.pool.close()
