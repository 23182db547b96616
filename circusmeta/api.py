"""``circusmeta.Pool``: the pool's operations for Python code, a result per node.

::

    async with Pool.from_file("pool.ini") as pool:
        results = await pool.call("status", nodes=pool.select(tag="web"))
        for name, r in results.items():
            print(name, r.state, r.reply)

Nothing is stored: the pool file is the only state. Connections live for the ``async with``
(or until :meth:`Pool.close`): one ZeroMQ socket for the whole pool (``router.py``), a
connection per distinct endpoint. :meth:`Pool.call_blocking` is the same fan-out without an
event loop (the command line's plain commands use it: no asyncio to import).
"""
from __future__ import annotations

import os
import random
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from circus.records import Factory, Record, record

from .errors import SelectionError, TooManyNodes, UsageError
from .fanout import ACTIVE, NodeResult
from .pool import PoolConfig, load_pool, locate_pool, node_keys
from .router import Batch, Link, Router

if TYPE_CHECKING:
    from .placement import Choice

__all__ = ["Pool", "SelectionError", "UsageError", "AddResult", "TooManyNodes",
           "ensure_open_files"]

#: file descriptors kept free besides one per connection (ZeroMQ's own, stdio, key files...)
FD_MARGIN = 64
#: from this many CURVE nodes on, libzmq gets a second I/O thread
CURVE_IO_THREAD = 64


def ensure_open_files(needed: int, nodes: int) -> None:
    """Make room for ``needed`` more file descriptors (one per connection): the soft
    RLIMIT_NOFILE is raised to the hard limit as circusd does when it is too low; TooManyNodes
    when even the hard limit is."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    infinite = resource.RLIM_INFINITY
    try:
        used = len(os.listdir("/proc/self/fd"))
    except OSError:
        used = 16
    want = used + needed + FD_MARGIN
    if soft == infinite or want <= soft:
        return
    if hard != infinite and want > hard:
        raise TooManyNodes(
            f"{nodes} nodes need about {want} open files (a connection each), and this process "
            f"may open {hard} (its RLIMIT_NOFILE hard limit): raise it (ulimit -n, LimitNOFILE= "
            f"in a systemd unit) or select fewer nodes (--node, --tag)")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        raise TooManyNodes(f"{nodes} nodes need about {want} open files, and this process "
                           f"may open {soft}: raising the limit failed: {exc}") from None


@record(frozen=False)
class AddResult(Record):
    """Where ``add`` put a watcher and why; ``results`` holds each node's ``add`` reply."""

    name: str
    choices: list[Choice]
    results: dict[str, NodeResult] = Factory(dict)
    refused: str | None = None              # why nothing was placed
    existing: list[str] = Factory(list)
    unchecked: list[str] = Factory(list)


class Pool:
    def __init__(self, config: PoolConfig, *, rng: random.Random | None = None,
                 handshake_ivl: float | None = None) -> None:
        """Raises ConfigError when a key file the pool names is missing or malformed.
        ``handshake_ivl``: seconds ZeroMQ gives a connection's handshake (its default: 30)."""
        self.config = config
        self.rng = rng or random.Random()
        self.keys = node_keys(config)        # node -> ClientKeys, or None: no CURVE
        self.handshake_ivl = handshake_ivl
        self._router: Router | None = None
        self._links: dict[str, Link] = {}

    @classmethod
    def from_file(cls, path: str | None = None, environ: Mapping[str, str] | None = None,
                  **kwargs: Any) -> "Pool":
        return cls(load_pool(locate_pool(path, os.environ if environ is None else environ)),
                   **kwargs)

    # -- connections -------------------------------------------------------------------------------

    async def __aenter__(self) -> "Pool":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self, exiting: bool = False) -> None:
        """Close the connections; ``exiting``: the process ends right after (the command
        line), so libzmq's taking them down is not waited for."""
        self._links.clear()
        if self._router is not None:
            self._router.close(exiting)
            self._router = None

    def _links_of(self, names: list[str]) -> dict[str, Link]:
        """Each node's link, connected now when new (room for their file descriptors first)."""
        new = [n for n in names if n not in self._links]
        if new:
            if self._router is None:
                # CURVE handshakes cost CPU in libzmq's I/O thread: a second one for a large
                # CURVE pool (they run in parallel on two cores)
                keyed = sum(1 for n in self.config.nodes if self.keys.get(n) is not None)
                self._router = Router(handshake_ivl=self.handshake_ivl,
                                      io_threads=2 if keyed >= CURVE_IO_THREAD else 1)
            router = self._router
            import resource
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            if soft != resource.RLIM_INFINITY and len(new) + 2 * FD_MARGIN > soft:
                fresh = {router.link_key(self.config.nodes[n].endpoint, self.keys.get(n))
                         for n in new} - router.link_keys()
                ensure_open_files(len(fresh), len(names))
            for n in new:
                self._links[n] = self._router.link(self.config.nodes[n].endpoint,
                                                   self.keys.get(n))
        return {n: self._links[n] for n in names}

    def connected(self, node: str) -> bool:
        """Whether the node's connection is up now (False: not asked yet, or lost)."""
        link = self._links.get(node)
        if link is not None and self._router is not None:
            self._router.pump()
        return link is not None and link.connected

    # -- selecting ---------------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return list(self.config.nodes)

    def select(self, node: str | Sequence[str] | None = None,
               tag: str | Sequence[str] | None = None) -> list[str]:
        """Nodes named (``node``) and/or carrying every tag in ``tag``; all without either."""
        names = self.names
        if node:
            wanted = [node] if isinstance(node, str) else list(node)
            unknown = [n for n in wanted if n not in self.config.nodes]
            if unknown:
                raise SelectionError(f"no node {unknown[0]!r} in {self.config.file} (nodes: "
                                     f"{', '.join(names)})")
            names = [n for n in names if n in wanted]
        if tag:
            tags = [tag] if isinstance(tag, str) else list(tag)
            names = [n for n in names if all(t in self.config.nodes[n].tags for t in tags)]
            if not names:
                raise SelectionError(f"no node has tag {', '.join(tags)!r} in {self.config.file}")
        return names

    # -- calling -----------------------------------------------------------------------------------

    def _submit(self, command: str, nodes: Iterable[str] | None, deadline: float | None,
                props: dict[str, Any]) -> Batch:
        names = self.names if nodes is None else list(dict.fromkeys(nodes))
        links = self._links_of(names)
        specs, config = self.config.nodes, self.config
        targets = []
        for n in names:
            connect = config.deadline(specs[n])      # a connection is waited for this long
            targets.append((n, links[n], connect if deadline is None else deadline, connect))
        assert self._router is not None or not names
        if not names:
            return Batch()
        return self._router.submit(targets, command, props)

    async def call(self, command: str, *, nodes: Iterable[str] | None = None,
                   deadline: float | None = None, **props: Any) -> dict[str, NodeResult]:
        """``command`` with ``props`` on each node in parallel, each with its deadline
        (``deadline``, else the node's ``timeout``, else ``[meta] timeout``). ``props`` may
        hold the protocol's own ``timeout`` property. Results in the order of ``nodes``."""
        batch = self._submit(command, nodes, deadline, props)
        if not batch.calls:
            return {}
        assert self._router is not None
        return await self._router.run_async(batch)

    def call_blocking(self, command: str, *, nodes: Iterable[str] | None = None,
                      deadline: float | None = None, **props: Any) -> dict[str, NodeResult]:
        """:meth:`call` without an event loop: blocks until every node has its result."""
        return self.calls_blocking([(command, props)], nodes=nodes, deadline=deadline)[0]

    def calls_blocking(self, requests: Sequence[tuple[str, Mapping[str, Any]]], *,
                       nodes: Iterable[str] | None = None, deadline: float | None = None
                       ) -> list[dict[str, NodeResult]]:
        """Several commands (``(command, props)``) sent together to each node, blocking until
        all are answered: a node costs one round trip (an unreachable one its timeout once)."""
        names = self.names if nodes is None else list(nodes)
        batches = [self._submit(command, names, deadline, dict(props))
                   for command, props in requests]
        if self._router is not None:
            self._router.run(*batches)
        return [b.results() for b in batches]

    async def call_one(self, node: str, command: str, *, deadline: float | None = None,
                       **props: Any) -> NodeResult:
        return (await self.call(command, nodes=[node], deadline=deadline, **props))[node]

    async def nodes(self, nodes: Iterable[str] | None = None) -> dict[str, NodeResult]:
        """Each node's ``nodeinfo`` (state, load, memory, watchers, processes, rtt)."""
        return await self.call("nodeinfo", nodes=nodes)

    async def where(self, watcher: str, nodes: Iterable[str] | None = None) -> list[str]:
        """The reachable nodes that have a watcher called ``watcher`` (case-insensitive)."""
        results = await self.call("list", nodes=nodes)
        key = watcher.lower()
        return [n for n, r in results.items() if r.ok and
                key in (str(w).lower() for w in r.reply.get("watchers", ()))]

    # -- placing -----------------------------------------------------------------------------------

    async def add(self, name: str, cmd: str, *, node: str | None = None,
                  strategy: str | None = None, tag: str | None = None, spread: int = 1,
                  numprocesses: int | None = None, start: bool = False,
                  options: Mapping[str, Any] | None = None) -> AddResult:
        """Place watcher ``name`` (``--node`` explicit, else by ``strategy``); refused when a
        watcher of that name exists anywhere in the pool (or a node cannot be asked)."""
        from .placement import Choice, NodeView, PlacementError, place

        strategy = strategy or self.config.meta.strategy
        infos = await self.nodes()
        unreachable = [n for n, r in infos.items() if not r.ok]
        listed = await self.call("list", nodes=[n for n in infos if n not in unreachable])
        existing = [n for n, r in listed.items() if r.ok and name.lower() in
                    (str(w).lower() for w in r.reply.get("watchers", ()))]
        result = AddResult(name, [], existing=existing)
        if existing:
            result.refused = f"a watcher {name!r} already exists on {', '.join(existing)}"
            return result
        try:
            if node is not None:
                self.select(node)
                if node in unreachable:
                    raise PlacementError(f"node {node!r} is {infos[node].state}: "
                                         f"{infos[node].reason}")
                result.choices = [Choice(node, "given with --node")]
            else:
                views = [NodeView.from_nodeinfo(n, self.config.nodes[n].tags, r.reply)
                         for n, r in infos.items() if r.ok]
                result.choices = place(strategy, views, tag=tag, spread=spread, rng=self.rng)
        except (PlacementError, SelectionError) as exc:
            result.refused = str(exc)
            return result
        result.unchecked = unreachable         # could not be asked whether they have it
        props: dict[str, Any] = {"name": name, "cmd": cmd, "start": start}
        opts = dict(options or {})
        if numprocesses is not None:
            opts["numprocesses"] = numprocesses
        if opts:
            props["options"] = opts
        result.results = await self.call("add", nodes=[c.node for c in result.choices],
                                         **props)
        return result


def active(results: Mapping[str, NodeResult]) -> list[str]:
    return [n for n, r in results.items() if r.state == ACTIVE]
