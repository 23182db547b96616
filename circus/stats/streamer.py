"""circusd-stats: samples the arbiter's processes and publishes them on the stats endpoint.

It is only a client of circusd: it learns the watchers and their pids with ``list``, circusd's
own pid and the node name with ``nodeinfo``, the sockets with ``listsockets``, then follows the
events (``spawn`` adds a pid, ``reap`` removes it; anything else that may change the set of
watchers or sockets — ``add``, ``rm``, ``reloadconfig``, an unknown watcher — makes it ask again
before the next sample, and so does a timer every 30 samples, in case an event was missed).

Every ``interval`` seconds (on a fixed schedule, not drifting with the sampling time) it samples
in a worker thread, so events and ``/metrics`` scrapes keep being served meanwhile, and publishes
the topics of :mod:`circus.stats.payloads`. The PUB socket never blocks: a subscriber that does
not read loses samples (ZeroMQ's high-water mark), circusd-stats does not grow.

Two forms of topics, each published only while somebody is subscribed to it: the stats socket is
an XPUB, so circusd-stats sees the subscriptions (libzmq passes on the first subscription to a
topic and the last unsubscription, a disconnect included). ``<node>/stat....`` goes to
subscribers of ``""`` (everything) or of a prefix of the node's topics (circusmeta, the
dashboard, circus-top); 0.19's ``stat....`` to subscribers of ``stat.`` or a prefix of it
(circus-top 0.19, circus-web), or always with ``legacy`` (``legacy_stats_topics``). See
:func:`circus.stats.payloads.wanted_forms`.

CURVE: with ``curve`` (its :class:`~circus.security.keys.ClientKeys`) it talks to a CURVE-protected
circusd; with ``server`` and ``keyring`` its PUB is a CURVE server of its own, a
:class:`~circus.security.zap.Gate` on its own context admitting the keys of the clients
directory (any role may read the stats). The directory is re-read, once per sample round, when
the modification time of it or of one of its role subdirectories changed; when a key was removed
the PUB socket is bound anew, so that every subscriber shakes hands again and the removed one is
cut off at once (the others reconnect by themselves and miss about one round).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import zmq
import zmq.asyncio

from circus.client.aio import AsyncClient, AsyncConsumer
from circus.config.stats_watcher import STATS_WATCHER
from circus.protocol import topic_name
from circus.security.ipcbind import bind_private
from circus.stats import payloads as pl
from circus.stats.nodestats import NodeSampler
from circus.stats.procinfo import Sampler
from circus.stats.sockstats import SocketSampler

__all__ = ["Streamer", "Snapshot", "ClientsDirectory"]

log = logging.getLogger("circus.stats")

#: a full re-read of watchers, pids and sockets every this many samples (missed events)
RESYNC_EVERY = 30
#: samples at start-up that each re-read everything (the subscription takes effect late)
STARTUP_RESYNCS = 3
#: events that cannot change which pids or sockets exist
_QUIET = frozenset({"state", "ready", "unhealthy", "healthy", "backoff", "respawn", "start",
                    "stop", "kill", "exhausted", "progress", "hook_success", "hook_failure",
                    "output"})
SNDHWM = 20_000
#: how long re-binding the stats endpoint (after a revoked key) may take before giving up
REBIND_DEADLINE = 2.0


class Snapshot:
    """One sample of the whole node, immutable once published (read by the /metrics thread)."""

    def __init__(self, node: str, processes: dict[str, dict[int, dict]], circus: dict[int, dict],
                 node_view: dict, sockets: list[dict], records: dict) -> None:
        self.node = node
        self.processes = processes          # watcher -> pid -> info
        self.circus = circus                # pid -> info (name: circusd / circusd-stats)
        self.node_view = node_view
        self.sockets = sockets
        self.records = records              # the ``processes`` reply: states, restarts, exits


class Streamer:
    def __init__(self, endpoint: str, pubsub: str, statspoint: str, *, interval: float = 1.0,
                 legacy: bool = False, timeout: float = 5.0,
                 on_snapshot: Callable[[Snapshot], None] | None = None, curve: Any = None,
                 server: Any = None, keyring: Any = None) -> None:
        """``curve``: ClientKeys for circusd's sockets; ``server`` (a KeyPair) and ``keyring``
        (a Keyring): the stats PUB is a CURVE server admitting the keyring's keys."""
        self.endpoint, self.pubsub, self.statspoint = endpoint, pubsub, statspoint
        self.interval = max(0.05, float(interval))
        self.legacy = legacy
        self.timeout = timeout
        self.on_snapshot = on_snapshot
        self.node = "?"
        self.watchers: dict[str, set[int]] = {}     # real watcher name -> pids
        self._by_topic: dict[str, str] = {}
        self.circusd_pid: int | None = None
        self.sockets: list[dict] = []
        self._dirty = True
        self._samples = 0
        self._sampler = Sampler()
        self._node_sampler: NodeSampler | None = None
        self._socket_sampler = SocketSampler()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="circusd-stats")
        self._context = zmq.asyncio.Context()
        self._pub: zmq.asyncio.Socket | None = None
        #: topics somebody is subscribed to on the stats socket (as the XPUB reports them)
        self.subscriptions: set[str] = set()
        self._client: AsyncClient | None = None
        self.curve = curve
        self.server = server if keyring is not None else None
        self._clients = ClientsDirectory(keyring, server.public) \
            if keyring is not None and server is not None else None
        self._gate: Any = None

    # -- what exists ------------------------------------------------------------------------------

    async def _call(self, command: str, **props: Any) -> dict:
        assert self._client is not None
        reply = await self._client.call(command, timeout=self.timeout, **props)
        if reply.get("status") != "ok":
            raise RuntimeError(f"{command}: {reply.get('reason', reply)}")
        return reply

    async def refresh(self) -> None:
        """Ask circusd for everything again (watchers, pids, circusd's pid, sockets)."""
        names = (await self._call("list"))["watchers"]
        lists = await asyncio.gather(*(self._call("list", name=n) for n in names),
                                     return_exceptions=True)
        watchers = {}
        for name, reply in zip(names, lists):
            if isinstance(reply, BaseException):
                continue                     # removed meanwhile
            watchers[name] = set(reply.get("pids", ()))
        self.node, self.circusd_pid = await self._circusd()
        self.sockets = list((await self._call("listsockets")).get("sockets", ()))
        self.watchers = watchers
        self._by_topic = {topic_name(n): n for n in watchers}
        self._dirty = False

    async def _circusd(self) -> tuple[str, int | None]:
        """The node's name and circusd's pid, from ``nodeinfo``: ``dstats`` says it too but
        makes circusd sample itself with psutil, which circusd would load for that alone (and
        keep); ``dstats`` for a circusd that has no ``nodeinfo`` (Circus 0.19)."""
        try:
            info = await self._call("nodeinfo")
        except RuntimeError:
            dstats = await self._call("dstats")
            stats = dstats.get("info")
            return (str(dstats.get("node") or self.node),
                    stats.get("pid") if isinstance(stats, dict) else None)
        pid = info.get("pid")
        return str(info.get("node") or info.get("name") or self.node), \
            pid if isinstance(pid, int) else None

    def on_event(self, topic: str, payload: dict) -> None:
        parts = topic.split(".")
        if parts[0] != "watcher" or len(parts) < 3:
            self._dirty = True               # arbiter.* (reload, reloadconfig...)
            return
        event = parts[-1]
        name = self._by_topic.get(".".join(parts[1:-1]))
        if name is None:
            self._dirty = True
            return
        pid = payload.get("process_pid")
        if event == "spawn" and isinstance(pid, int):
            self.watchers[name].add(pid)
        elif event == "reap" and isinstance(pid, int):
            self.watchers[name].discard(pid)
        elif event not in _QUIET:
            self._dirty = True

    # -- sampling ---------------------------------------------------------------------------------

    def _sample(self, watchers: dict[str, list[int]], circus: dict[int, str],
                sockets: list[dict]) -> tuple[dict, dict, dict, list]:
        """In the worker thread: psutil and /proc reads only."""
        every = [pid for pids in watchers.values() for pid in pids] + list(circus)
        infos = self._sampler.collect(every, children="total")
        processes = {w: {pid: infos[pid] for pid in pids if isinstance(infos.get(pid), dict)}
                     for w, pids in watchers.items()}
        own = {pid: {**infos[pid], "name": name} for pid, name in circus.items()
               if isinstance(infos.get(pid), dict)}
        if self._node_sampler is None:
            self._node_sampler = NodeSampler()
        node_view = self._node_sampler.sample(self.node, every, len(watchers))
        return processes, own, node_view, self._socket_sampler.sample(sockets)

    async def tick(self) -> Snapshot:
        # the first samples re-read everything too: a process spawned before our subscription
        # to the events reached circusd has no spawn event for us
        if self._dirty or self._samples % RESYNC_EVERY == 0 or self._samples < STARTUP_RESYNCS:
            await self.refresh()
        self._samples += 1
        records = await self._call("processes")
        watchers = {w: sorted(pids) for w, pids in self.watchers.items() if w != STATS_WATCHER}
        circus = {os.getpid(): STATS_WATCHER}
        if self.circusd_pid:
            circus[self.circusd_pid] = "circusd"
        loop = asyncio.get_running_loop()
        processes, own, node_view, sockets = await loop.run_in_executor(
            self._executor, self._sample, watchers, circus, self.sockets)
        watcher_records = records.get("watchers", {})
        node_view.update(pl.node_counts(watchers, watcher_records, STATS_WATCHER))
        snap = Snapshot(self.node, processes, own, node_view, sockets, watcher_records)
        await self.publish(snap)
        if self.on_snapshot is not None:
            self.on_snapshot(snap)
        return snap

    def read_subscriptions(self) -> None:
        """Take in the (un)subscriptions the XPUB received since last time (never blocks)."""
        assert self._pub is not None
        sock = zmq.Socket.shadow(self._pub.underlying)
        while True:
            try:
                frame = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if not frame:
                continue
            topic = frame[1:].decode(errors="replace")
            if frame[0] == 1:
                self.subscriptions.add(topic)
            elif frame[0] == 0:
                self.subscriptions.discard(topic)

    async def publish(self, snap: Snapshot) -> None:
        self.read_subscriptions()
        prefixed, legacy = pl.wanted_forms(self.subscriptions, snap.node)
        legacy = legacy or self.legacy
        if not (prefixed or legacy):
            return                        # nobody listens: nothing to encode or send
        node = snap.node
        out: list[tuple[str, dict]] = []
        states = pl.process_states(snap.records)
        for watcher, infos in snap.processes.items():
            for pid, info in infos.items():
                out.append((pl.process_topic(node, watcher, pid),
                            pl.process_payload(node, watcher, info, state=states.get(pid))))
            out.append((pl.watcher_topic(node, watcher),
                        {**pl.aggregate(node, watcher, infos.values()),
                         **pl.watcher_state(snap.records.get(watcher))}))
        for pid, info in snap.circus.items():
            out.append((pl.process_topic(node, "circus", pid),
                        pl.process_payload(node, "circus", info, name=info["name"])))
        out.append((pl.watcher_topic(node, "circus"), pl.aggregate(node, "circus", snap.circus.values())))
        for sock in snap.sockets:
            out.append((pl.socket_topic(node, sock["fd"]),
                        {**sock, "node": node, "subtopic": sock["fd"]}))
        out.append((pl.socket_topic(node), pl.sockets_aggregate(node, snap.sockets)))
        out.append((pl.node_topic(node), snap.node_view))
        assert self._pub is not None
        for topic, payload in out:
            old = pl.legacy_topic(topic) if legacy else None
            if not prefixed and old is None:
                continue
            body = json.dumps(payload).encode()
            if prefixed:
                await self._pub.send_multipart([topic.encode(), body])
            if old is not None:
                await self._pub.send_multipart([old.encode(), body])

    # -- running ----------------------------------------------------------------------------------

    async def _follow(self, consumer: AsyncConsumer) -> None:
        async for topic, payload in consumer:
            if isinstance(payload, dict):
                self.on_event(topic, payload)

    # -- the stats socket ---------------------------------------------------------------------------

    def _open_pub(self) -> zmq.asyncio.Socket:
        pub = self._context.socket(zmq.XPUB)     # a PUB that sees the subscriptions
        pub.setsockopt(zmq.SNDHWM, SNDHWM)
        pub.setsockopt(zmq.LINGER, 0)
        if self.server is not None:
            from circus.security.keys import configure_server
            configure_server(pub, self.server)
        try:
            bind_private(pub, self.statspoint)    # an ipc:// socket file: mode 0600, as circusd's
        except zmq.ZMQError:
            pub.close(linger=0)
            raise
        return pub

    async def _rebind(self) -> None:
        """A new PUB on the same endpoint: every subscriber's connection is dropped and it
        shakes hands again (the old socket's port may take a moment to be free)."""
        assert self._pub is not None
        self._pub.close(linger=0)
        self._pub = None
        self.subscriptions.clear()           # the subscribers subscribe again to the new one
        deadline = asyncio.get_running_loop().time() + REBIND_DEADLINE
        while True:
            try:
                self._pub = self._open_pub()
                return
            except zmq.ZMQError:
                if asyncio.get_running_loop().time() >= deadline:
                    raise
                await asyncio.sleep(0.01)

    async def check_clients(self) -> None:
        """Re-read the clients directory if it changed (once per round)."""
        if self._clients is None or self._gate is None:
            return
        removed = self._clients.reread()
        if removed is None:
            return
        self._gate.replace(self._clients.keyring)
        if removed:
            await self._rebind()

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set. An arbiter that does not answer is waited for."""
        if self._clients is not None:
            from circus.security.zap import Gate
            self._gate = Gate(self._context, self._clients.keyring)   # before any handshake
        try:
            self._pub = self._open_pub()
        except zmq.ZMQError:
            self._close_gate()
            raise
        self._client = AsyncClient(self.endpoint, timeout=self.timeout, context=self._context,
                                   curve=self.curve)
        consumer = AsyncConsumer(["watcher.", "arbiter."], endpoint=self.pubsub,
                                 context=self._context, curve=self.curve)
        follower = asyncio.ensure_future(self._follow(consumer))
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            while not stop.is_set():
                try:
                    await self.tick()
                except (TimeoutError, RuntimeError, zmq.ZMQError) as exc:
                    self._dirty = True
                    log.warning("circusd-stats: no sample this time: %s", exc)
                await self.check_clients()
                next_at = start + self.interval * (int((loop.time() - start) / self.interval) + 1)
                try:
                    await asyncio.wait_for(stop.wait(), max(0.0, next_at - loop.time()))
                except TimeoutError:
                    pass
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            consumer.close()
            self._client.close()
            if self._pub is not None:
                self._pub.close(linger=0)
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._close_gate()
            self._context.term()

    def _close_gate(self) -> None:
        if self._gate is not None:
            self._gate.close()
            self._gate = None


class ClientsDirectory:
    """The clients directory behind a keyring, and the modification times it was read at."""

    def __init__(self, keyring: Any, server_public: bytes | None) -> None:
        self.keyring = keyring
        self.server_public = server_public          # always admitted (the node's own helpers)
        self.stamp = self._stamp()

    def _stamp(self) -> tuple[tuple[str, int], ...]:
        from circus.security.keyring import ROLE_DIRS
        out = []
        for path in [self.keyring.directory,
                     *(os.path.join(self.keyring.directory, role) for role in ROLE_DIRS)]:
            try:
                out.append((path, os.stat(path).st_mtime_ns))
            except OSError:
                out.append((path, -1))
        return tuple(out)

    def reread(self) -> set[str] | None:
        """``None`` when nothing changed (or the directory cannot be read: the keys in force
        are kept, and that is logged); else the keys removed (maybe none)."""
        stamp = self._stamp()
        if stamp == self.stamp:
            return None
        self.stamp = stamp
        from circus.security.keyring import Keyring
        from circus.security.keys import KeyFileError
        try:
            keyring = Keyring.load(self.keyring.directory, self.server_public)
        except (KeyFileError, OSError) as exc:
            log.error("circusd-stats: curve_clients not re-read, the keys in force are kept: %s",
                      exc)
            return None
        for text in keyring.warnings:
            log.warning("circusd-stats: curve_clients: %s", text)
        removed = set(self.keyring.keys) - set(keyring.keys)
        self.keyring = keyring
        log.info("circusd-stats: curve_clients re-read: %s%s", keyring.summary(),
                 f"; {len(removed)} key(s) revoked, subscribers reconnect" if removed else "")
        return removed
