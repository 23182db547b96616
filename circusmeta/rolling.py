"""Rolling operations: ``restart``, ``reload``, ``stop`` or ``start`` of a watcher node after
node, each step waiting until the nodes say the work is done (the new processes are *ready*),
stopping at the first failure.

::

    async with Pool.from_file("pool.ini") as pool:
        report = await rolling(pool, "restart", "web")        # web1:web, then web2:web, ...
        print(report.done, report.failed, report.not_done, report.exit_code)

A *target* is a watcher name (every selected node that has it, in pool-file order), a
``[collection:NAME]`` of the pool file (its members, nested collections expanded in place) or
one ``NODE:WATCHER``. Its *items* (``node:watcher``) go in *steps* of ``batch`` items; the items
of a step go at once, and the next step starts when every item of this one answered. Default
batch: 1, or every item for a collection with ``mode = parallel``.

Each item is one control command, sent with ``waiting: true`` (the node replies when the work
is done — for restart/reload when the replacements are ready, see readiness.rst), ``match:
simple`` (the name, not a pattern) and, where the command has it, ``graceful: true``
(replacements first: the node keeps serving). An item is done when the node answered ``ok``
*and* a look at the node right after bears it out (``confirm.py``: the watcher is still there,
still the one the command ran on, and stopped after a stop). A step fails when one of its items
gets an error reply, an ``ok`` the look afterwards contradicts (the watcher was removed or
replaced meanwhile), no answer within the step's deadline (unresponsive) or no connection
(not_available); nothing after that step is sent. A node that could not be asked whether it has
the watcher stays in the list: its turn fails, so a node that is down is never skipped
silently. An item is tried once per run, however often the target names it.

Exit codes: 0 all done; 1 nothing reached (no node of the first step answered); 3 the first
step failed on a node that answered (an error reply, or an ok not borne out); 4 partial (some
done, then a failure).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import zmq

from circus.records import replace

from .confirm import confirm
from .errors import SelectionError
from .report import LAST_LINES_MARK
from .fanout import (ACTIVE, EXIT_OK, EXIT_PARTIAL, EXIT_REFUSED, EXIT_UNREACHABLE, NOT_AVAILABLE,
                     UNRESPONSIVE, NodeResult)

__all__ = ["rolling", "RollingReport", "Step", "Progress", "Item", "UnknownTarget",
           "ACTIONS", "DEFAULT_STEP_TIMEOUT", "STATE_EVERY", "plan_steps", "resolve"]

ACTIONS = ("restart", "reload", "stop", "start")
#: seconds a step may take unless told: a restart waits for readiness, which takes its time
DEFAULT_STEP_TIMEOUT = 120.0
#: seconds between two "still running" lines of a long step
STATE_EVERY = 5.0


class UnknownTarget(SelectionError):
    """No selected node has that watcher and the pool has no such collection (exit 2)."""


@dataclass(frozen=True)
class Item:
    node: str
    watcher: str

    def __str__(self) -> str:
        return f"{self.node}:{self.watcher}"


@dataclass
class Step:
    """One step: its items (``node:watcher``), what each node answered, how long it took."""

    index: int                                   # 1-based
    items: tuple[str, ...]
    results: dict[str, NodeResult] = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return all(item in self.results and self.results[item].ok for item in self.items)

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.index, "items": list(self.items), "ok": self.ok,
                "elapsed": round(self.elapsed, 3),
                "results": {i: r.to_dict() for i, r in self.results.items()}}


@dataclass(frozen=True)
class Progress:
    """What ``on_progress`` gets: ``plan`` (once, before the first step), then per step
    ``start``, ``running`` (every ``state_every`` seconds while it runs) and ``done``."""

    kind: str
    report: "RollingReport"
    step: Step | None = None
    elapsed: float = 0.0
    running: tuple[str, ...] = ()            # items of the step not answered yet


@dataclass
class RollingReport:
    action: str
    target: str
    kind: str                                    # watcher, collection or item
    batch: int
    items: list[str]
    mode: str = "sequential"
    steps: list[Step] = field(default_factory=list)
    #: nodes that could not be asked whether they have the watcher (kept in ``items``)
    unchecked: dict[str, NodeResult] = field(default_factory=dict)
    #: sent, but the run was cancelled before they answered (their nodes may still be at it)
    interrupted: list[str] = field(default_factory=list)
    #: nodes whose circusd calls itself otherwise (their items fail without being sent)
    misnamed: dict[str, NodeResult] = field(default_factory=dict)
    #: the plan's items before ``start_at`` (a resumed run), not part of this run
    skipped: list[str] = field(default_factory=list)

    @property
    def total_steps(self) -> int:
        return len(plan_steps(self.items, self.batch))

    @property
    def results(self) -> dict[str, NodeResult]:
        """Every item tried, in order, with its node's answer."""
        return {i: r for s in self.steps for i, r in s.results.items()}

    @property
    def done(self) -> list[str]:
        return [i for i, r in self.results.items() if r.ok]

    @property
    def failed(self) -> dict[str, NodeResult]:
        return {i: r for i, r in self.results.items() if not r.ok}

    @property
    def not_done(self) -> list[str]:
        tried = self.results
        return [i for i in self.items if i not in tried and i not in self.interrupted]

    @property
    def exit_code(self) -> int:
        """0 all done; nothing done: 1 if no node of the first step answered, else 3; 4 some
        done, then a failure."""
        if not self.failed and not self.not_done and not self.interrupted:
            return EXIT_OK
        if self.done:
            return EXIT_PARTIAL
        if any(r.state == ACTIVE for r in self.failed.values()):
            return EXIT_REFUSED
        return EXIT_UNREACHABLE

    def summary(self) -> str:
        """``done: a, b; failed: c (reason); not done: d`` (a long list of done or not done
        items is shortened to its count, first and last: the JSON report has them all)."""
        parts = []
        if self.done:
            parts.append("done: " + _items_text(self.done))
        if self.failed:
            parts.append("failed: " + ", ".join(f"{i} ({_first_line(_why(r))})"
                                                for i, r in self.failed.items()))
        if self.interrupted:
            parts.append("interrupted: " + ", ".join(self.interrupted)
                         + " (sent; the node may still be doing it)")
        if self.not_done:
            parts.append("not done: " + _items_text(self.not_done))
        return "; ".join(parts) or "nothing to do"

    @property
    def resume_at(self) -> str | None:
        """The first item not done, in the plan's order (None: all done)."""
        done = set(self.done)
        return next((i for i in self.items if i not in done), None)

    def to_dict(self) -> dict[str, Any]:
        return {"command": self.action, "rolling": True, "target": self.target, "kind": self.kind,
                "mode": self.mode, "batch": self.batch, "items": list(self.items),
                "exit": self.exit_code, "done": self.done,
                "failed": {i: {"state": r.state, "reason": _why(r)}
                           for i, r in self.failed.items()},
                "not_done": self.not_done, "interrupted": self.interrupted,
                "skipped": self.skipped, "resume_at": self.resume_at,
                "misnamed": {n: r.reported_name for n, r in self.misnamed.items()},
                "steps": [s.to_dict() for s in self.steps],
                "unchecked": {n: {"state": r.state, "reason": _why(r)}
                              for n, r in self.unchecked.items()}}


#: lists longer than this are shortened in the text (count, first, last)
LONG_LIST = 8


def _items_text(items: Sequence[str], noun: str = "items") -> str:
    if len(items) <= LONG_LIST:
        return ", ".join(items)
    return f"{len(items)} {noun} ({items[0]} ... {items[-1]})"


def _first_line(text: str) -> str:
    """The reason's first line, without the announcement of the output lines that follow it."""
    return (text.split(LAST_LINES_MARK)[0].splitlines() or [""])[0]


def _why(r: NodeResult) -> str:
    if r.unconfirmed:
        return r.unconfirmed
    if r.refused:
        return r.reason or "error reply"
    why = f"{r.state}: {r.reason}" if r.reason and r.reason != r.state else r.state
    # the request went out: the node may finish it after we stopped waiting
    return why + " (sent; the node may still be doing it)" if r.state == UNRESPONSIVE and \
        r.sent else why


# -- pure: the plan --------------------------------------------------------------------------------

def plan_steps(items: Sequence[Any], batch: int) -> list[list[Any]]:
    """``items`` cut in steps of ``batch``, in order."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    return [list(items[i:i + batch]) for i in range(0, len(items), batch)]


def misnamed(node: str, r: NodeResult) -> str:
    """Why an item on a node whose circusd calls itself otherwise is not sent (pure)."""
    return (f"the circusd at {r.endpoint} calls itself {r.reported_name!r}, not {node!r} (a "
            f"wrong address in the pool file, or a renamed node?): not sent")


async def resolve(pool: Any, target: str, nodes: Iterable[str] | None = None
                  ) -> tuple[str, list[Item], str, dict[str, NodeResult], dict[str, NodeResult]]:
    """(kind, items, mode, unchecked, misnamed) for ``target``; raises UnknownTarget.
    ``misnamed``: the nodes whose circusd answered ``list`` with another name than the pool's
    (their items fail in their turn, without being sent)."""
    config = pool.config
    wanted = None if nodes is None else list(nodes)
    if wanted:                                   # each node once, in pool-file order
        wanted = pool.select(wanted)
    if target in config.collections or ":" in target:
        if target in config.collections:
            members = config.expand(target)
            items = [Item(m.node, m.watcher) for m in members
                     if wanted is None or m.node in wanted]
            if not items:
                raise UnknownTarget(f"collection {target!r} has no member on the selected "
                                    f"nodes ({', '.join(wanted or ())})")
            kind, mode = "collection", config.collections[target].mode
        else:
            node, _, watcher = target.partition(":")
            if node not in config.nodes or not watcher:
                raise UnknownTarget(f"{target!r}: no node {node!r} in {config.file}")
            if wanted is not None and node not in wanted:
                raise UnknownTarget(f"{target!r}: node {node!r} is not among the selected "
                                    f"nodes")
            items, kind, mode = [Item(node, watcher)], "item", "sequential"
        # one look at the nodes first: is each the circusd the pool file means? (a node that
        # does not answer fails in its turn)
        listed = await pool.call("list", nodes=list(dict.fromkeys(i.node for i in items)))
        wrong = {n: r for n, r in listed.items() if r.ok and r.name_mismatch}
        return kind, items, mode, {}, wrong
    names = pool.names if wanted is None else wanted
    listed = await pool.call("list", nodes=names)
    key = target.lower()
    items, unchecked, wrong = [], {}, {}
    for name in names:
        r = listed[name]
        if not r.ok:
            unchecked[name] = r
            items.append(Item(name, target))
        elif r.name_mismatch:                    # not the node meant: fails in its turn
            wrong[name] = r
            items.append(Item(name, target))
        else:                                    # the name as the node spells it
            found = [str(w) for w in r.reply.get("watchers", ()) if str(w).lower() == key]
            if found:
                items.append(Item(name, found[0]))
    if not items:                                # every node answered, none has it
        collections = ", ".join(config.collections) or "none"
        raise UnknownTarget(f"no watcher or collection called {target!r}: no node of "
                            f"{_items_text(names, 'nodes')} has such a watcher, and the pool's "
                            f"collections are: {collections}")
    return "watcher", items, "sequential", unchecked, wrong


# -- running ---------------------------------------------------------------------------------------

def command_props(action: str) -> dict[str, Any]:
    """The properties each item's command is sent with (only those the command has)."""
    from circus.protocol import COMMANDS

    if action not in ACTIONS:
        raise ValueError(f"a rolling operation is one of {', '.join(ACTIONS)}, not {action!r}")
    known = {p.name for p in COMMANDS[action].props}
    props: dict[str, Any] = {"waiting": True}
    if "match" in known:
        props["match"] = "simple"                 # the name itself, no pattern
    if "graceful" in known:
        props["graceful"] = True
    # The protocol's ``timeout`` (give up an operation that cannot start in time) is not sent:
    # the step's deadline bounds the wait on our side, and a node busy past it reports
    # ``unresponsive``, which stops the rolling operation.
    return props


async def _call_item(pool: Any, item: Item, action: str, deadline: float,
                     props: Mapping[str, Any], wrong: NodeResult | None = None) -> NodeResult:
    """The node's answer, and when it is ok, whether a look at the node bears it out.
    ``wrong``: the node's ``list`` answer naming another circusd: the item is not sent."""
    if wrong is not None:
        return replace(wrong, unconfirmed=misnamed(item.node, wrong))
    try:
        result = await pool.call_one(item.node, action, deadline=deadline, name=item.watcher,
                                     **props)
    except (zmq.ZMQError, OSError) as exc:
        return NodeResult(item.node, NOT_AVAILABLE, error=str(exc),
                          endpoint=pool.config.nodes[item.node].endpoint)
    return await confirm(pool, item.watcher, action, result)


async def _run_step(pool: Any, report: RollingReport, step: Step, items: list[Item],
                    props: Mapping[str, Any], step_timeout: float, state_every: float,
                    emit: Callable[..., None]) -> None:
    start = time.monotonic()
    tasks = {str(item): asyncio.ensure_future(_call_item(pool, item, report.action, step_timeout,
                                                         props, report.misnamed.get(item.node)))
             for item in items}
    emit("start", step)
    try:
        pending = set(tasks.values())
        while pending:
            _, pending = await asyncio.wait(pending, timeout=state_every)
            for name, task in tasks.items():
                if task.done() and name not in step.results:
                    step.results[name] = task.result()
            step.elapsed = time.monotonic() - start
            if pending:
                emit("running", step, tuple(n for n, t in tasks.items() if not t.done()))
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    step.results = {name: step.results[name] for name in tasks}    # in the step's order
    step.elapsed = time.monotonic() - start
    emit("done", step)


async def rolling(pool: Any, action: str, target: str, *, batch: int | None = None,
                  nodes: Iterable[str] | None = None, step_timeout: float | None = None,
                  on_progress: Callable[[Progress], None] | None = None,
                  state_every: float = STATE_EVERY, start_at: str | None = None
                  ) -> RollingReport:
    """Run ``action`` on ``target``'s items step by step, stopping at the first failed step.

    ``nodes``: only items on these nodes (None: the whole pool). ``step_timeout``: how long a
    step may take (default: the larger of ``[meta] timeout`` and 120 s). ``start_at``: a
    ``NODE`` or ``NODE:WATCHER`` of the plan: the run starts at its first item (the items
    before it are left out: a resumed run). Raises UnknownTarget when nothing is called
    ``target`` (or ``start_at`` is not in the plan), ValueError for a bad action or batch < 1.
    """
    if step_timeout is None:
        step_timeout = max(pool.config.meta.timeout, DEFAULT_STEP_TIMEOUT)
    props = command_props(action)
    if batch is not None and batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    kind, items, mode, unchecked, wrong = await resolve(pool, target, nodes)
    skipped: list[str] = []
    if start_at is not None:
        first = next((k for k, i in enumerate(items) if start_at in (str(i), i.node)), None)
        if first is None:
            plan = _items_text([str(i) for i in items])
            raise UnknownTarget(f"--from {start_at}: no item of the plan ({plan}) is on "
                                f"{start_at!r}")
        skipped, items = [str(i) for i in items[:first]], items[first:]
    if batch is None:
        batch = len(items) if mode == "parallel" else 1
    report = RollingReport(action, target, kind, batch, [str(i) for i in items], mode,
                           unchecked=unchecked, misnamed=wrong, skipped=skipped)

    def emit(kind: str, step: Step | None = None, running: tuple[str, ...] = ()) -> None:
        if on_progress is not None:
            on_progress(Progress(kind, report, step, step.elapsed if step else 0.0, running))

    emit("plan")
    for index, group in enumerate(plan_steps(items, batch), 1):
        step = Step(index, tuple(str(i) for i in group))
        report.steps.append(step)
        try:
            await _run_step(pool, report, step, group, props, step_timeout, state_every, emit)
        except asyncio.CancelledError:
            report.interrupted = [i for i in step.items if i not in step.results]
            raise
        if not step.ok:
            break
    return report
