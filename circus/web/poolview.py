"""The pool's watchers, kept on the server while somebody looks at them.

:class:`PoolView` holds each node's last ``processes`` reply (circusd answers it from a view it
keeps, so asking is cheap for the node). While at least one page watches (:meth:`watch`), it
asks every node again every :data:`REFRESH_EVERY` seconds (a node that stopped answering shows
so), and, sooner, asks again only the node whose events (``watcher.*``, from the stats and
events subscriptions of :mod:`.live`) say something changed there, :data:`SETTLE` seconds after
the first of them (a burst of events costs one question). What changed is handed to the
listeners (the pages' WebSockets) as ``{watcher key: nodes whose part changed}``, gathered over
:data:`FLUSH_EVERY` seconds; each listener turns it into the rows it shows
(:func:`.watchers.row_changes`). Nobody watching: nothing is asked, a page load asks when
what is kept is older than :data:`PAGE_MAX_AGE`.

The browser never asks a node: it gets the rows, already summed, from here.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .watchers import entry

__all__ = ["PoolView", "Change", "RefreshStats", "REFRESH_EVERY", "SETTLE", "FLUSH_EVERY",
           "PAGE_MAX_AGE", "nodes_with_tag", "pool_tags"]

log = logging.getLogger("circus.web")

#: seconds between two full rounds of questions while a page watches
REFRESH_EVERY = 10.0
#: seconds after a node's first event before it is asked (its other events meanwhile count too)
SETTLE = 0.05
#: seconds over which changes are gathered before the listeners hear of them
FLUSH_EVERY = 0.02
#: a page load without a watcher asks again when what is kept is older than this
PAGE_MAX_AGE = 2.0


@dataclass(frozen=True)
class Change:
    """What the listeners hear: ``watchers``: ``{key: nodes}`` whose part changed;
    ``answers``: whether a node started or stopped answering."""

    watchers: Mapping[str, frozenset[str]]
    answers: bool


@dataclass
class RefreshStats:
    """The full rounds so far: how many, and the last one's wall and CPU time (the CPU is this
    process's during the round: an upper bound of the round's own)."""

    count: int = 0
    took: float | None = None
    cpu: float | None = None
    at: float | None = None             # wall-clock time of the last round's end
    nodes_asked: int = 0                # questions to single nodes after their events

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "took": None if self.took is None else round(self.took, 4),
                "cpu": None if self.cpu is None else round(self.cpu, 4), "at": self.at,
                "nodes_asked": self.nodes_asked}


Listener = Callable[[Change], None]


class PoolView:
    def __init__(self, pool: Any, *, refresh_every: float = REFRESH_EVERY,
                 settle: float = SETTLE, flush_every: float = FLUSH_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pool = pool
        self.refresh_every, self.settle, self.flush_every = refresh_every, settle, flush_every
        self.clock = clock
        #: node -> {watcher: its processes record}, for the nodes that answered last time
        self.records: dict[str, dict[str, Mapping[str, Any]]] = {}
        #: node -> (state, reason) of its last answer (or of its lack of one)
        self.answers: dict[str, tuple[str, str]] = {}
        self.fresh_at: float | None = None          # clock time of the last full round
        self.stats = RefreshStats()
        self.listeners: set[Listener] = set()
        self._watching = 0
        self._loop: asyncio.Task[None] | None = None
        self._round: asyncio.Task[None] | None = None
        self._asking: asyncio.Task[None] | None = None
        self._dirty: set[str] = set()               # nodes to ask again
        self._changed: dict[str, set[str]] = {}
        self._answers_changed = False
        self._flush: asyncio.TimerHandle | None = None

    # -- what is kept ------------------------------------------------------------------------------

    @property
    def nodes(self) -> list[str]:
        return self.pool.names

    def unanswered(self) -> dict[str, tuple[str, str]]:
        """Nodes whose last question got no ``processes`` reply: ``{node: (state, reason)}``."""
        return {n: a for n, a in self.answers.items() if n not in self.records}

    def age(self) -> float | None:
        return None if self.fresh_at is None else self.clock() - self.fresh_at

    # -- asking ------------------------------------------------------------------------------------

    async def fresh(self, max_age: float | None = None) -> None:
        """A full round unless the last one is at most ``max_age`` seconds old (default: the
        refresh interval while watched, else :data:`PAGE_MAX_AGE`). Concurrent callers share
        one round."""
        if max_age is None:
            max_age = self.refresh_every if self._watching else PAGE_MAX_AGE
        age = self.age()
        if age is not None and age <= max_age:
            return
        await self.refresh()

    async def refresh(self) -> None:
        """Ask every node (one round at a time; a caller during a round waits for it)."""
        if self._round is None or self._round.done():
            self._round = asyncio.ensure_future(self._full_round())
        await asyncio.shield(self._round)

    async def _full_round(self) -> None:
        start, cpu = self.clock(), time.process_time()
        results = await self.pool.call("processes")
        self._apply(results)
        self.fresh_at = self.clock()
        self.stats.count += 1
        self.stats.took = self.fresh_at - start
        self.stats.cpu = time.process_time() - cpu
        self.stats.at = time.time()

    def _apply(self, results: Mapping[str, Any]) -> None:
        for node, result in results.items():
            reply = result.reply if result.ok and result.reply else None
            watchers = reply.get("watchers") if reply else None
            answer = ("active", "") if isinstance(watchers, Mapping) else \
                (result.state, result.reason or "no processes in its reply")
            if self.answers.get(node) != answer:
                self._answers_changed = True
                self.answers[node] = answer
            self._diff(node, dict(watchers) if isinstance(watchers, Mapping) else None)
        self._schedule_flush()

    def _diff(self, node: str, new: dict[str, Mapping[str, Any]] | None) -> None:
        old = self.records.get(node)
        if new is None:
            self.records.pop(node, None)
        else:
            self.records[node] = new
        before = {str(k).lower(): entry(node, r) for k, r in (old or {}).items()
                  if isinstance(r, Mapping)}
        after = {str(k).lower(): entry(node, r) for k, r in (new or {}).items()
                 if isinstance(r, Mapping)}
        for key in before.keys() | after.keys():
            if before.get(key) != after.get(key):
                self._changed.setdefault(key, set()).add(node)

    # -- events ------------------------------------------------------------------------------------

    def node_event(self, node: str) -> None:
        """Something happened on ``node`` (one of its ``watcher.*`` events): ask it again soon,
        if a page watches; else what is kept is older than it says (a page load asks)."""
        if node not in self.pool.config.nodes:
            return
        if not self._watching:
            self.fresh_at = None
            return
        self._dirty.add(node)
        if self._asking is None or self._asking.done():
            self._asking = asyncio.ensure_future(self._ask_dirty())

    async def _ask_dirty(self) -> None:
        while self._dirty:
            await asyncio.sleep(self.settle)
            nodes, self._dirty = sorted(self._dirty), set()
            try:
                results = await self.pool.call("processes", nodes=nodes)
            except Exception:                       # a pool closed under us: the next round
                log.exception("asking %s again failed", ", ".join(nodes))
                return
            self.stats.nodes_asked += len(nodes)
            self._apply(results)

    def listen(self, message: Mapping[str, Any]) -> None:
        """A :class:`.live.Live` listener: a watcher event makes its node be asked again."""
        if message.get("type") == "event" and isinstance(message.get("node"), str):
            self.node_event(message["node"])

    # -- telling the pages -------------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        if self._flush is None and (self._changed or self._answers_changed) and self.listeners:
            self._flush = asyncio.get_running_loop().call_later(self.flush_every, self._tell)
        elif not self.listeners:
            self._changed.clear()
            self._answers_changed = False

    def _tell(self) -> None:
        self._flush = None
        change = Change({k: frozenset(v) for k, v in self._changed.items()},
                        self._answers_changed)
        self._changed, self._answers_changed = {}, False
        for listener in list(self.listeners):
            try:
                listener(change)
            except Exception:                       # one broken page must not stop the others
                log.exception("pool view listener failed")
                self.listeners.discard(listener)

    # -- watching ----------------------------------------------------------------------------------

    @property
    def watching(self) -> int:
        return self._watching

    def watch(self, listener: Listener) -> None:
        """A page looks: ``listener`` hears of changes; the rounds run while anyone looks."""
        self.listeners.add(listener)
        self._watching += 1
        if self._loop is None or self._loop.done():
            self._loop = asyncio.ensure_future(self._rounds())

    def unwatch(self, listener: Listener) -> None:
        if listener not in self.listeners:
            return
        self.listeners.discard(listener)
        self._watching -= 1
        if not self._watching and self._loop is not None:
            self._loop.cancel()
            self._loop = None

    async def _rounds(self) -> None:
        try:
            while True:
                try:
                    await self.fresh(self.refresh_every / 2)
                except Exception:
                    log.exception("a round of processes questions failed")
                age = self.age() or 0.0
                await asyncio.sleep(max(0.05, self.refresh_every - age))
        except asyncio.CancelledError:
            return

    async def aclose(self) -> None:
        tasks = [t for t in (self._loop, self._round, self._asking) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self.listeners.clear()
        self._watching = 0


def nodes_with_tag(config: Any, tag: str | None) -> list[str]:
    """The pool's nodes (in pool-file order) that carry ``tag`` (all without one)."""
    return [n for n, spec in config.nodes.items() if not tag or tag in spec.tags]


def pool_tags(config: Any) -> list[str]:
    seen: dict[str, None] = {}
    for spec in config.nodes.values():
        for tag in spec.tags:
            seen.setdefault(tag, None)
    return sorted(seen)

