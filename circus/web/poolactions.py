"""The dashboard's pool-wide operations, run with circusmeta's public API as jobs
(:mod:`.jobs`):

- a rolling ``restart`` (or ``reload``) of a watcher over the nodes that have it:
  :func:`circusmeta.run_rolling` (steps of ``batch`` nodes, each item answered when its new
  processes are ready, stopping at the first failed step), its progress into the job;
- an ``add`` with placement: :meth:`circusmeta.Pool.add` (strategy, tag, spread, or a node
  given; refused when the name exists anywhere in the pool), the watcher added stopped, then
  started on each chosen node with ``waiting`` (so a command that cannot run is a failed node,
  with circusd's reason and last lines, not a green "added").

The mutating commands carry the web user's name as ``on_behalf_of`` (the node's audit trail)
where the call is made here or through the pool as :class:`ForUser` hands it to
``run_rolling``; :meth:`Pool.add` sends its ``add`` itself, without it.

:func:`rolling_request` and :func:`add_request` read and check what a form or the API asks
for (a :class:`BadRequest` says why not).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from circus.protocol import COMMANDS
from circus.protocol.limits import name_problem
from circus.security.audit import ON_BEHALF_OF
from circusmeta import SelectionError, UnknownTarget, run_rolling
from circusmeta.pool import STRATEGIES

from .banners import summary
from .jobs import RUNNING, Job, Jobs
from .nodes import ACTION_DEADLINE

__all__ = ["ForUser", "BadRequest", "RollingRequest", "AddRequest", "Runner", "rolling_request",
           "add_request", "required_role", "ROLLING_ACTIONS", "STATE_EVERY", "MAX_BATCH"]

log = logging.getLogger("circus.web")

#: what a rolling operation from the dashboard may run
ROLLING_ACTIONS = ("restart", "reload")
#: seconds between two looks at a step's items while it runs (how soon a node shows done)
STATE_EVERY = 0.25
MAX_BATCH = 10_000
MAX_STEP_TIMEOUT = 3600.0
MAX_CMD = 4096


class BadRequest(ValueError):
    """What was asked cannot be run; the message says why (400)."""


class ForUser:
    """The pool, as ``run_rolling`` gets it, for one web user: every mutating command sent
    through it carries ``on_behalf_of`` = the user (any such property given is replaced)."""

    def __init__(self, pool: Any, user: str) -> None:
        self._pool, self._user = pool, user

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def _props(self, command: str, props: dict[str, Any]) -> dict[str, Any]:
        props.pop(ON_BEHALF_OF, None)
        spec = COMMANDS.get(command)
        if spec is not None and not spec.readonly:
            props[ON_BEHALF_OF] = self._user
        return props

    async def call(self, command: str, **kwargs: Any) -> Any:
        return await self._pool.call(command, **self._props(command, kwargs))

    async def call_one(self, node: str, command: str, **kwargs: Any) -> Any:
        return await self._pool.call_one(node, command, **self._props(command, kwargs))


# -- what is asked -------------------------------------------------------------------------------

@dataclass(frozen=True)
class RollingRequest:
    watcher: str
    action: str = "restart"
    batch: int = 1
    step_timeout: float | None = None
    tag: str | None = None
    nodes: tuple[str, ...] = ()

    def params(self) -> dict[str, Any]:
        return {"batch": self.batch, "step_timeout": self.step_timeout, "tag": self.tag,
                "nodes": list(self.nodes)}


@dataclass(frozen=True)
class AddRequest:
    name: str
    cmd: str
    numprocesses: int = 1
    strategy: str | None = None
    tag: str | None = None
    spread: int = 1
    node: str | None = None
    start: bool = True

    def params(self) -> dict[str, Any]:
        return {"cmd": self.cmd, "numprocesses": self.numprocesses, "strategy": self.strategy,
                "tag": self.tag, "spread": self.spread, "node": self.node, "start": self.start}


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"{what} must be a string")
    return value.strip()


def _int(value: Any, what: str, low: int, high: int, default: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"{what} must be a whole number from {low} to {high}, got {value!r}")
    return value


def _bool(value: Any, what: str, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false",
                                                    "no", "off"):
        return value.lower() in ("1", "true", "yes", "on")
    raise BadRequest(f"{what} must be true or false, got {value!r}")


def _tag(config: Any, value: Any) -> str | None:
    tag = _text(value, "tag")
    if not tag:
        return None
    if not any(tag in spec.tags for spec in config.nodes.values()):
        raise BadRequest(f"no node has tag {tag!r} in this pool")
    return tag


def _nodes(config: Any, value: Any) -> tuple[str, ...]:
    if value is None or value == "" or value == []:
        return ()
    names = [n.strip() for n in value.split(",")] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BadRequest("nodes must be a list of node names")
    names = [n for n in names if n]
    unknown = [n for n in names if n not in config.nodes]
    if unknown:
        raise BadRequest(f"no node {unknown[0]!r} in this pool")
    return tuple(dict.fromkeys(names))


def rolling_request(get: Callable[[str], Any], config: Any) -> RollingRequest:
    """``get(field)`` gives what was sent (None: nothing): watcher, action, batch,
    step_timeout, tag, nodes (a list, or names separated by commas)."""
    watcher = _text(get("watcher"), "watcher")
    problem = name_problem(watcher, "the watcher name")
    if problem:
        raise BadRequest(problem)
    action = _text(get("action"), "action") or "restart"
    if action not in ROLLING_ACTIONS:
        raise BadRequest(f"a rolling operation is one of {', '.join(ROLLING_ACTIONS)}, not "
                         f"{action!r}")
    batch = _int(get("batch"), "batch", 1, MAX_BATCH, 1)
    raw = get("step_timeout")
    step_timeout = None
    if raw not in (None, ""):
        try:
            step_timeout = float(raw) if not isinstance(raw, bool) else -1.0
        except (TypeError, ValueError):
            step_timeout = -1.0
        if not 0 < step_timeout <= MAX_STEP_TIMEOUT:
            raise BadRequest(f"step_timeout is seconds, > 0 and at most "
                             f"{MAX_STEP_TIMEOUT:g}, got {raw!r}")
    return RollingRequest(watcher, action, batch, step_timeout, _tag(config, get("tag")),
                          _nodes(config, get("nodes")))


def add_request(get: Callable[[str], Any], config: Any) -> AddRequest:
    """name, cmd (the whole command line), numprocesses, strategy, tag, spread, node, start."""
    name = _text(get("name"), "name")
    problem = name_problem(name, "the watcher name")
    if problem:
        raise BadRequest(problem)
    cmd = _text(get("cmd"), "cmd")
    if not cmd:
        raise BadRequest("a watcher needs a command")
    if len(cmd) > MAX_CMD:
        raise BadRequest(f"the command is longer than {MAX_CMD} characters")
    count = _int(get("numprocesses"), "numprocesses", 0, 1000, 1)
    strategy = _text(get("strategy"), "strategy") or None
    if strategy is not None and strategy not in STRATEGIES:
        raise BadRequest(f"unknown strategy {strategy!r}; one of {', '.join(STRATEGIES)}")
    spread = _int(get("spread"), "spread", 1, max(1, len(config.nodes)), 1)
    node = _text(get("node"), "node") or None
    if node is not None:
        if node not in config.nodes:
            raise BadRequest(f"no node {node!r} in this pool")
        if strategy is not None or spread != 1:
            raise BadRequest("a node given places the watcher itself: no strategy or spread "
                             "with it")
    return AddRequest(name, cmd, count, strategy, _tag(config, get("tag")), spread, node,
                      _bool(get("start"), "start", True))


def required_role(command: str) -> Any:
    return COMMANDS[command].role


# -- running ------------------------------------------------------------------------------------

def _why(result: Any) -> str:
    """Why an item failed, in a sentence (its first line), and what followed (its last
    lines)."""
    if result.unconfirmed:
        return str(result.unconfirmed)
    if result.refused:
        return result.reason or "an error reply"
    why = f"{result.state.replace('_', ' ')}: {result.reason}" if result.reason and \
        result.reason != result.state else result.state.replace("_", " ")
    if result.state == "unresponsive":
        why += " (sent: the node may still be doing it)"
    return why


def _note(command: str, result: Any) -> str:
    said, _ = summary(command, result.reply or {})
    return said


async def _roll(jobs: Jobs, job: Job, pool: Any, req: RollingRequest,
                planned: asyncio.Future[None]) -> None:
    def on_progress(p: Any) -> None:
        report, step = p.report, p.step
        if p.kind == "plan":
            warnings = [f"{n}: {r.state.replace('_', ' ')}: {r.reason}: cannot tell whether it "
                        f"has {req.watcher}; it is tried in its turn"
                        for n, r in report.unchecked.items()]
            job.plan([(i, i.partition(":")[0]) for i in report.items], report.total_steps,
                     warnings)
            job.params["batch"] = report.batch
            if not planned.done():
                planned.set_result(None)
        elif p.kind == "start" and step is not None:
            job.running(step.items, step.index)
        elif step is not None:
            for item, r in step.results.items():
                if item in job.items and job.items[item].state == RUNNING:
                    job.finished_item(item, r.ok, _why(r), _note(req.action, r) if r.ok else "")
                    if r.name_mismatch:
                        job.warnings.append(f"{r.node}: the circusd there calls itself "
                                            f"{r.reported_name!r}")
        jobs.publish(job)

    nodes = list(req.nodes) or None
    try:
        if req.tag:
            tagged = pool.select(tag=req.tag)
            nodes = [n for n in (nodes or tagged) if n in tagged]
            if not nodes:
                raise SelectionError(f"none of the nodes given has tag {req.tag!r}")
        await run_rolling(ForUser(pool, job.user), req.action, req.watcher, batch=req.batch,
                          nodes=nodes, step_timeout=req.step_timeout, on_progress=on_progress,
                          state_every=STATE_EVERY)
    except (UnknownTarget, SelectionError, ValueError) as exc:
        job.refuse(str(exc), time.time())
    except asyncio.CancelledError:
        job.warnings.append("circushttpd stopped during the run: the nodes of the step in "
                            "progress may still be at it")
        job.end(time.time())
        jobs.publish(job)
        raise
    except Exception as exc:                   # reported on the page, never lost
        log.exception("rolling %s of %s failed", req.action, req.watcher)
        job.warnings.append(f"the run broke off: {exc}")
        job.end(time.time())
    else:
        job.end(time.time())
    finally:
        if not planned.done():
            planned.set_result(None)
    jobs.publish(job)
    log.info("rolling %s of %s by %s: %s: %s", req.action, req.watcher, job.user, job.state,
             (job.banner or {}).get("summary") or (job.banner or {}).get("reason", ""))


async def _add(jobs: Jobs, job: Job, pool: Any, req: AddRequest,
               planned: asyncio.Future[None]) -> None:
    try:
        result = await pool.add(req.name, req.cmd, node=req.node, strategy=req.strategy,
                                tag=req.tag, spread=req.spread, numprocesses=req.numprocesses,
                                start=False)
        if result.refused:
            job.refuse(result.refused, time.time())
            return
        job.plan([], 1, [f"{n} could not be asked whether it already has {req.name!r}"
                         for n in result.unchecked])
        started = []
        for choice in result.choices:
            job.add_item(choice.node, choice.node, note=choice.reason)
            r = result.results.get(choice.node)
            if r is None or not r.ok:
                job.finished_item(choice.node, False, _why(r) if r is not None else "no answer")
            elif req.start:
                started.append(choice.node)
            else:
                job.finished_item(choice.node, True)
        job.running(started, 1)
        jobs.publish(job)
        if not planned.done():
            planned.set_result(None)

        async def start_one(node: str) -> None:
            r = await pool.call_one(node, "start", deadline=ACTION_DEADLINE, name=req.name,
                                    match="simple", waiting=True, **{ON_BEHALF_OF: job.user})
            reason = f"added, but it failed to start: {_why(r)}"
            placed = job.items[node].note
            said = _note("start", r) if r.ok else ""
            job.finished_item(node, r.ok, reason, f"{placed}; {said}" if said else placed)
            jobs.publish(job)
        await asyncio.gather(*(start_one(n) for n in started))
        job.end(time.time())
    except asyncio.CancelledError:
        job.warnings.append("circushttpd stopped during the add")
        job.end(time.time())
        jobs.publish(job)
        raise
    except Exception as exc:
        log.exception("add %s failed", req.name)
        job.warnings.append(f"the add broke off: {exc}")
        job.end(time.time())
    finally:
        if not planned.done():
            planned.set_result(None)
        jobs.publish(job)
        log.info("add %s by %s: %s: %s", req.name, job.user, job.state,
                 (job.banner or {}).get("title", ""))


class Runner:
    """Starts the jobs and owns their tasks (cancelled when circushttpd stops)."""

    def __init__(self, jobs: Jobs, pool: Any) -> None:
        self.jobs, self.pool = jobs, pool
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def _spawn(self, job: Job, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks[job.id] = task
        task.add_done_callback(lambda _t, i=job.id: self.tasks.pop(i, None))

    async def rolling(self, req: RollingRequest, user: str,
                      wait: float) -> Job:
        """Start it; return once it has its plan (or was refused), at most ``wait`` s."""
        job = self.jobs.new("rolling", req.action, req.watcher, user, time.time(), req.params())
        planned: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        log.info("rolling %s of %s by %s: batch %d%s%s", req.action, req.watcher, user,
                 req.batch, f", tag {req.tag}" if req.tag else "",
                 f", nodes {', '.join(req.nodes)}" if req.nodes else "")
        self._spawn(job, _roll(self.jobs, job, self.pool, req, planned))
        await asyncio.wait([planned], timeout=wait)
        return job

    async def add(self, req: AddRequest, user: str, wait: float) -> Job:
        job = self.jobs.new("add", "add", req.name, user, time.time(), req.params())
        planned: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        log.info("add %s by %s: %s", req.name, user, req.params())
        self._spawn(job, _add(self.jobs, job, self.pool, req, planned))
        await asyncio.wait([planned], timeout=wait)
        return job

    async def aclose(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

