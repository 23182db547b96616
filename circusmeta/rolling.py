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

from .api import SelectionError
from .confirm import confirm, note
from .report import LAST_LINES_MARK
from .fanout import (ACTIVE, EXIT_OK, EXIT_PARTIAL, EXIT_REFUSED, EXIT_UNREACHABLE, NOT_AVAILABLE,
                     UNRESPONSIVE, NodeResult)

__all__ = ["rolling", "rolling_cli", "RollingReport", "Step", "Progress", "Item", "UnknownTarget",
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
        """``done: a, b; failed: c (reason); not done: d``."""
        parts = []
        if self.done:
            parts.append("done: " + ", ".join(self.done))
        if self.failed:
            parts.append("failed: " + ", ".join(f"{i} ({_first_line(_why(r))})"
                                                for i, r in self.failed.items()))
        if self.interrupted:
            parts.append("interrupted: " + ", ".join(self.interrupted)
                         + " (sent; the node may still be doing it)")
        if self.not_done:
            parts.append("not done: " + ", ".join(self.not_done))
        return "; ".join(parts) or "nothing to do"

    def to_dict(self) -> dict[str, Any]:
        return {"command": self.action, "rolling": True, "target": self.target, "kind": self.kind,
                "mode": self.mode, "batch": self.batch, "items": list(self.items),
                "exit": self.exit_code, "done": self.done,
                "failed": {i: {"state": r.state, "reason": _why(r)}
                           for i, r in self.failed.items()},
                "not_done": self.not_done, "interrupted": self.interrupted,
                "steps": [s.to_dict() for s in self.steps],
                "unchecked": {n: {"state": r.state, "reason": _why(r)}
                              for n, r in self.unchecked.items()}}


def _first_line(text: str) -> str:
    """The reason's first line, without the announcement of the output lines that follow it."""
    return text.split(LAST_LINES_MARK)[0].splitlines()[0] if text else ""


def _why(r: NodeResult) -> str:
    if r.unconfirmed:
        return r.unconfirmed
    if r.refused:
        return r.reason or "error reply"
    why = f"{r.state}: {r.reason}" if r.reason and r.reason != r.state else r.state
    # the request went out: the node may finish it after we stopped waiting
    return why + " (sent; the node may still be doing it)" if r.state == UNRESPONSIVE else why


# -- pure: the plan --------------------------------------------------------------------------------

def plan_steps(items: Sequence[Any], batch: int) -> list[list[Any]]:
    """``items`` cut in steps of ``batch``, in order."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    return [list(items[i:i + batch]) for i in range(0, len(items), batch)]


async def resolve(pool: Any, target: str, nodes: Iterable[str] | None = None
                  ) -> tuple[str, list[Item], str, dict[str, NodeResult]]:
    """(kind, items, mode, unchecked) for ``target``; raises UnknownTarget."""
    config = pool.config
    wanted = None if nodes is None else list(nodes)
    if wanted:                                   # each node once, in pool-file order
        wanted = pool.select(wanted)
    if target in config.collections:
        members = config.expand(target)
        items = [Item(m.node, m.watcher) for m in members
                 if wanted is None or m.node in wanted]
        if not items:
            raise UnknownTarget(f"collection {target!r} has no member on the selected nodes "
                                f"({', '.join(wanted or ())})")
        return "collection", items, config.collections[target].mode, {}
    if ":" in target:
        node, _, watcher = target.partition(":")
        if node not in config.nodes or not watcher:
            raise UnknownTarget(f"{target!r}: no node {node!r} in {config.file}")
        if wanted is not None and node not in wanted:
            raise UnknownTarget(f"{target!r}: node {node!r} is not among the selected nodes")
        return "item", [Item(node, watcher)], "sequential", {}
    names = pool.names if wanted is None else wanted
    listed = await pool.call("list", nodes=names)
    key = target.lower()
    items, unchecked = [], {}
    for name in names:
        r = listed[name]
        if not r.ok:
            unchecked[name] = r
            items.append(Item(name, target))
        else:                                    # the name as the node spells it
            found = [str(w) for w in r.reply.get("watchers", ()) if str(w).lower() == key]
            if found:
                items.append(Item(name, found[0]))
    if not items:                                # every node answered, none has it
        collections = ", ".join(config.collections) or "none"
        raise UnknownTarget(f"no watcher or collection called {target!r}: no node of "
                            f"{', '.join(names)} has such a watcher, and the pool's "
                            f"collections are: {collections}")
    return "watcher", items, "sequential", unchecked


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
                     props: Mapping[str, Any]) -> NodeResult:
    """The node's answer, and when it is ok, whether a look at the node bears it out."""
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
                                                         props)) for item in items}
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
                  state_every: float = STATE_EVERY) -> RollingReport:
    """Run ``action`` on ``target``'s items step by step, stopping at the first failed step.

    ``nodes``: only items on these nodes (None: the whole pool). ``step_timeout``: how long a
    step may take (default: the larger of ``[meta] timeout`` and 120 s). Raises UnknownTarget
    when nothing is called ``target``, ValueError for a bad action or batch < 1.
    """
    if step_timeout is None:
        step_timeout = max(pool.config.meta.timeout, DEFAULT_STEP_TIMEOUT)
    props = command_props(action)
    if batch is not None and batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    kind, items, mode, unchecked = await resolve(pool, target, nodes)
    if batch is None:
        batch = len(items) if mode == "parallel" else 1
    report = RollingReport(action, target, kind, batch, [str(i) for i in items], mode,
                           unchecked=unchecked)

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


# -- the command line ------------------------------------------------------------------------------

EXIT_INTERRUPTED = 130                  # as the shell reports SIGINT; cli.main returns it too
_USAGE = ("circusmeta {restart|reload|stop|start} --rolling [--batch N] [--step-timeout S] "
          "[--state-every S] TARGET [--node N | --tag T | --all]")
_HELP = """
Run the command on TARGET step by step, each step waiting until its nodes say the work is done
(restart/reload: the replacements are ready; the old processes served meanwhile).

TARGET   a watcher (every selected node that has it, in pool-file order), a collection of the
         pool file (its members in order, nested collections in place), or NODE:WATCHER

  --batch N           items per step, at once (default 1; a parallel collection: all)
  --step-timeout S    how long a step may take (default: --timeout or [meta] timeout, at least
                      120 s)
  --state-every S     a "still running" line every S seconds of a long step (default 5)
  --node/--tag/--all  only the items on these nodes

A progress line per step, then "done: ...; failed: ... (why); not done: ...". An item is done
when its node answered ok and a look at the node right after bears it out (the watcher is still
there and still the one the command ran on). It stops at the first failed step (error reply, an
ok not borne out, unresponsive, not_available). Exit: 0 all done, 1 nothing reached, 2 usage,
3 the first step failed on a node that answered, 4 partial, 130 interrupted.
"""


def _parse(words: list[str]) -> Any:
    import argparse

    from .cli import Usage

    p = argparse.ArgumentParser(prog="circusmeta", usage=_USAGE, add_help=False)
    p.add_argument("--batch", type=int)
    p.add_argument("--step-timeout", dest="step_timeout", type=float)
    p.add_argument("--state-every", dest="state_every", type=float, default=STATE_EVERY)
    p.add_argument("--help", "-h", action="store_true")
    p.add_argument("target", nargs="?")

    def error(message: str) -> Any:
        raise Usage(message)
    p.error = error  # type: ignore[method-assign]
    return p.parse_args(words)


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 60 else f"{int(s // 60)} min {s % 60:.0f} s"


def _progress_printer(ctx: Any) -> Callable[[Progress], None]:
    out = ctx.warn if ctx.json else ctx.print          # with --json, stdout is the report

    def show(p: Progress) -> None:
        report, step = p.report, p.step
        if p.kind == "plan":
            for node, r in report.unchecked.items():
                ctx.warn(f"{node}: {r.state}: {r.reason or r.error}: cannot tell whether it has "
                         f"{report.target!r}; it is tried in its turn")
            out(f"rolling {report.action} of {report.target}: {len(report.items)} item"
                f"{'s' if len(report.items) != 1 else ''} in {report.total_steps} step"
                f"{'s' if report.total_steps != 1 else ''} (batch {report.batch})")
            return
        assert step is not None
        head = f"[{step.index}/{report.total_steps}] {', '.join(step.items)} {report.action}"
        if p.kind == "running":
            finished = [f"{i} {'ok' if r.ok else 'failed'}" for i, r in step.results.items()]
            out(f"{head} ... still running: {', '.join(p.running)} ({_seconds(p.elapsed)})"
                + (f"; finished: {', '.join(finished)}" if finished else ""))
        elif p.kind == "done":
            if step.ok:
                out(f"{head} ... ok ({_seconds(step.elapsed)})")
                for item, r in step.results.items():
                    if (said := note(report.action, r.reply)) is not None:
                        out(f"  {item}: {said}")
            else:
                good = [i for i, r in step.results.items() if r.ok]
                out(f"{head} ... failed ({_seconds(step.elapsed)})"
                    + (f"; ok: {', '.join(good)}" if good else ""))
                for item, r in step.results.items():
                    if not r.ok:                # the reason may carry the child's last lines
                        first, *more = _why(r).splitlines() or [""]
                        out(f"  {item}: {first}")
                        for line in more:
                            out(f"    {line}")
            for r in step.results.values():
                if r.name_mismatch:
                    ctx.warn(f"{r.node}: the circusd there calls itself {r.reported_name!r}")
    return show


async def rolling_cli(ctx: Any, pool: Any, command: str, words: list[str],
                      selected: list[str] | None) -> int:
    """``circusmeta COMMAND --rolling ...``: progress on stdout, the report, the audit file."""
    import json

    from .cli import Usage

    ns = _parse(words)
    if ns.help:
        ctx.print(f"usage: {_USAGE}\n{_HELP.rstrip()}")
        return EXIT_OK
    if command not in ACTIONS:
        raise Usage(f"--rolling works with {', '.join(ACTIONS)}, not {command!r}")
    if not ns.target:
        raise Usage(f"which watcher or collection? usage: {_USAGE}")
    if ns.batch is not None and ns.batch < 1:
        raise Usage(f"--batch must be at least 1, got {ns.batch}")
    if ns.state_every <= 0 or (ns.step_timeout is not None and ns.step_timeout <= 0):
        raise Usage("--step-timeout and --state-every are seconds > 0")
    step_timeout = ns.step_timeout
    if step_timeout is None:
        step_timeout = max(ctx.timeout or pool.config.meta.timeout, DEFAULT_STEP_TIMEOUT)
    show, seen = _progress_printer(ctx), []

    def on_progress(p: Progress) -> None:
        if not seen:
            seen.append(p.report)
        show(p)
    try:
        report = await rolling(pool, command, ns.target, batch=ns.batch, nodes=selected,
                               step_timeout=step_timeout, on_progress=on_progress,
                               state_every=ns.state_every)
    except UnknownTarget as exc:
        raise Usage(str(exc)) from None
    except asyncio.CancelledError:          # Ctrl-C: say how far it got, then stop
        if seen:
            ctx.warn(f"interrupted: {seen[0].summary()}")
            _audit(ctx, pool, command, seen[0], EXIT_INTERRUPTED, step_timeout)
        raise
    code = report.exit_code
    if ctx.json:
        ctx.print(json.dumps(report.to_dict()))
    else:
        ctx.print(report.summary())
    _audit(ctx, pool, command, report, code, step_timeout)
    return code


def _audit(ctx: Any, pool: Any, command: str, report: RollingReport, code: int,
           step_timeout: float) -> None:
    """The audit file: a line per item tried (keyed ``node:watcher``), the plan and outcome."""
    results = {item: {**r.to_dict(), "item": item, "watcher": item.partition(":")[2]}
               for item, r in report.results.items()}
    extra = {k: v for k, v in report.to_dict().items() if k not in ("command", "exit", "steps")}
    extra["steps"] = [{"step": s.index, "items": list(s.items), "ok": s.ok,
                       "elapsed": round(s.elapsed, 3)} for s in report.steps]
    extra["step_timeout"] = step_timeout
    ctx.audit(pool, command, results, code, extra)
