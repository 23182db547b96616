"""``circusmeta.Pool``: the pool's operations for Python code, a result per node.

::

    async with Pool.from_file("pool.ini") as pool:
        results = await pool.call("status", nodes=pool.select(tag="web"))
        for name, r in results.items():
            print(name, r.state, r.reply)

Nothing is stored: the pool file is the only state. Connections live for the ``async with``.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import zmq
import zmq.asyncio

from .fanout import ACTIVE, NodeClient, NodeResult, fan_out
from .placement import Choice, NodeView, PlacementError, place
from .pool import PoolConfig, load_pool, locate_pool, node_keys

__all__ = ["Pool", "SelectionError", "UsageError", "AddResult"]


class UsageError(ValueError):
    """The command line (or call) is wrong: exit 2, with the message."""


class SelectionError(UsageError):
    """``--node``/``--tag`` name nothing in the pool (a usage error: exit 2)."""


@dataclass
class AddResult:
    """Where ``add`` put a watcher and why; ``results`` holds each node's ``add`` reply."""

    name: str
    choices: list[Choice]
    results: dict[str, NodeResult] = field(default_factory=dict)
    refused: str | None = None              # why nothing was placed
    existing: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)


class Pool:
    def __init__(self, config: PoolConfig, *, rng: random.Random | None = None) -> None:
        """Raises ConfigError when a key file the pool names is missing or malformed."""
        self.config = config
        self.rng = rng or random.Random()
        self.keys = node_keys(config)        # node -> ClientKeys, or None: no CURVE
        self._context: zmq.asyncio.Context | None = None
        self._clients: dict[str, NodeClient] = {}

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

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        if self._context is not None:
            self._context.term()
            self._context = None

    def client(self, node: str) -> NodeClient:
        if node not in self._clients:
            if self._context is None:
                self._context = zmq.asyncio.Context()
            spec = self.config.nodes[node]
            self._clients[node] = NodeClient(spec, self._context, self.config.deadline(spec),
                                             curve=self.keys.get(node))
        return self._clients[node]

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

    async def call(self, command: str, *, nodes: Iterable[str] | None = None,
                   deadline: float | None = None, **props: Any) -> dict[str, NodeResult]:
        """``command`` with ``props`` on each node in parallel, each with its deadline
        (``deadline``, else the node's ``timeout``, else ``[meta] timeout``). ``props`` may
        hold the protocol's own ``timeout`` property."""
        names = self.names if nodes is None else list(nodes)
        clients = {n: self.client(n) for n in names}
        deadlines = {n: deadline if deadline is not None
                     else self.config.deadline(self.config.nodes[n]) for n in names}
        return await fan_out(clients, command, deadlines, **props)

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
