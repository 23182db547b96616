"""Server side of every control command: validated properties in, reply fields out.

Each handler takes the arbiter, the :class:`Ops` runner and the checked properties, and returns
the fields of the reply (or raises a :class:`~circus.protocol.ProtocolError` / CircusError).
Read-only handlers that need no waiting are plain functions: the controller answers them inline,
in the same loop iteration as the request arrived.
Commands honouring ``waiting`` reply at once when it is false, and the operation goes on as a task
the controller owns (its failure is logged, as in 0.19).
"""
from __future__ import annotations

import asyncio
import fnmatch
import logging
import re
from typing import Any, Awaitable, Callable, Mapping

from circus.config import ConfigError, watcher_from_options
from circus.config.errors import did_you_mean
from circus.config.view import watcher_options
from circus.config.convert import parse_signal
from circus.core import outcome
from circus.core.command import resolve_ids
from circus.core.policy import batch_size
from circus.core.watcher import Watcher
from circus.errors import SpawnError
from circus.protocol import ErrorCode, ProtocolError
from circus.protocol.limits import (MAX_ARGS, MAX_ISSUES, MAX_OPTIONS, MAX_VALUE,
                                    MAX_WATCHERS, check_glob, check_name, check_numprocesses,
                                    compile_match)
from circus.security.owner import check_owner, check_owner_tool

__all__ = ["HANDLERS", "Ops", "select"]

log = logging.getLogger("circus")

Handler = Callable[["Any", "Ops", dict], "Awaitable[dict] | dict"]
HANDLERS: dict[str, Handler] = {}


def handler(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn
    return register


class Ops:
    """Runs operations for the controller: now (waiting) or in the background (not waiting)."""

    def __init__(self, stats: Callable[[list[int]], Awaitable[dict]]) -> None:
        self.tasks: set[asyncio.Task] = set()
        self.stats = stats

    async def run(self, props: Mapping[str, Any], op: Awaitable[Any], what: str) -> Any:
        if props.get("waiting"):
            return await op
        task = asyncio.ensure_future(op)
        self.tasks.add(task)
        task.add_done_callback(lambda t: self._done(t, what))
        return None

    def _done(self, task: asyncio.Task, what: str) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed: %s", what, task.exception())


def select(arbiter: Any, name: str | None, match: str = "glob") -> list[Watcher]:
    """Watchers matching ``name`` (case-insensitive) by ``match``: glob, simple or regex."""
    watchers = arbiter.watchers
    if name is None:
        return list(watchers.values())
    key = name.lower()
    if match == "simple" or (match == "glob" and not any(c in name for c in "*?[")):
        found = [watchers[key]] if key in watchers else []
    elif match == "glob":
        check_glob(name)
        found = [w for k, w in watchers.items() if fnmatch.fnmatchcase(k, key)]
    else:
        pattern = compile_match(name)
        found = [w for k, w in watchers.items() if pattern.match(k)]
    if not found:
        raise ProtocolError(ErrorCode.UNKNOWN_WATCHER, unknown_watcher(name, watchers, match))
    return sorted(found, key=lambda w: (-w.cfg.priority, w.name.lower()))


#: watcher names an unknown-watcher error lists at most
NAMES_LISTED = 20


def unknown_watcher(name: str, watchers: Mapping[str, Watcher], match: str = "simple") -> str:
    """0.19's ``program NAME not found``, and what the caller may have meant: the closest name,
    else the names there are."""
    names = sorted(w.name for w in watchers.values())
    exact = match == "simple" or (match == "glob" and not any(c in name for c in "*?["))
    close = did_you_mean(name, [n.lower() for n in names]) if exact else ""
    if close:
        hint = close.replace(" (", ": ", 1).rstrip(")")
    elif names:
        more = f", and {len(names) - NAMES_LISTED} more" if len(names) > NAMES_LISTED else ""
        hint = f": the watchers are {', '.join(names[:NAMES_LISTED])}{more}"
    else:
        hint = ": this node has no watchers"
    what = "" if exact else f" (no watcher matches this {match} pattern)"
    return f"program {name} not found{what}{hint}"


def _check_batch(batch: int | str | None) -> int | str | None:
    try:
        batch_size(batch, 100)
    except ValueError as exc:
        raise ProtocolError(ErrorCode.INVALID_PROPERTY, str(exc)) from None
    return batch


def _one(arbiter: Any, name: str) -> Watcher:
    return select(arbiter, name, "simple")[0]


async def _each(watchers: list[Watcher], fn: Callable[[Watcher], Awaitable[Any]]) -> list[Any]:
    return list(await asyncio.gather(*(fn(w) for w in watchers)))


async def _settled(w: Watcher, op: Awaitable[dict]) -> dict:
    """``op`` (a start, restart or reload of ``w``), then the new processes watched until they
    have been up ``min_uptime``: one that exits first makes the reply an error (``ok`` is said
    only of a start that took)."""
    info = await op
    await outcome.settle(w, info.get("started", ()) if isinstance(info, dict) else ())
    return info


@handler("start")
async def _start(arbiter, ops, p):
    if p["name"] is None:
        await ops.run(p, arbiter.start_watchers(), "start")
        return {}
    watchers = select(arbiter, p["name"], p["match"])
    result = await ops.run(p, _each(watchers, lambda w: _settled(w, w.start())), "start")
    return {"info": result[0]} if result is not None and len(watchers) == 1 else {}


@handler("stop")
async def _stop(arbiter, ops, p):
    if p["name"] is None:
        await ops.run(p, arbiter.stop_watchers(), "stop")
        return {}
    watchers = select(arbiter, p["name"], p["match"])
    await ops.run(p, _each(watchers, lambda w: w.stop()), "stop")
    return {"info": None} if p["waiting"] and len(watchers) == 1 else {}


@handler("restart")
async def _restart(arbiter, ops, p):
    if p["name"] is None:
        await ops.run(p, arbiter.restart_all(), "restart")
        return {}
    watchers = select(arbiter, p["name"], p["match"])
    batch = _check_batch(p["batch"])
    result = await ops.run(p, _each(watchers, lambda w: _settled(w, w.restart(p["graceful"], batch))),
                           "restart")
    return {"info": result[0]} if result is not None and len(watchers) == 1 else {}


@handler("reload")
async def _reload(arbiter, ops, p):
    graceful, sequential, batch = p["graceful"], p["sequential"], _check_batch(p["batch"])
    if p["name"] is None:
        await ops.run(p, arbiter.reload(graceful=graceful, sequential=sequential, batch=batch), "reload")
        return {}
    watchers = select(arbiter, p["name"], p["match"])
    result = await ops.run(p, _each(watchers, lambda w: _settled(w, w.reload(graceful, sequential,
                                                                          batch))), "reload")
    return {"info": result[0]} if result is not None and len(watchers) == 1 else {}


@handler("reloadconfig")
async def _reloadconfig(arbiter, ops, p):
    new = await arbiter.read_config_async()    # a wrong file is an error reply, waiting or not
    if p["dry_run"]:
        plan = arbiter.plan_for(new)
        return {"plan": plan.to_dict(), "changes": plan.describe()}
    result = await ops.run(p, arbiter.reload_config(new), "reloadconfig")
    return {"plan": result.to_dict(), "changes": result.describe()} if result is not None else {}


@handler("quit")
async def _quit(arbiter, ops, p):
    if p["keep"] and arbiter.state is None:
        raise ProtocolError(ErrorCode.INVALID_PROPERTY,
                            "keep: needs [circus] state_file (where the next circusd finds them)")
    if p["keep"] and (arbiter.keeper is None or not arbiter.keeper.alive):
        raise ProtocolError(ErrorCode.INVALID_PROPERTY, "keep: the keeper process is gone: "
                            "nobody would hold the processes' pipes and sockets")
    await ops.run(p, arbiter.quit(keep=p["keep"]), "quit")
    return {}


async def _resize(arbiter, ops, p, sign: int):
    w = _one(arbiter, p["name"])
    if p["nb"] < 0:
        raise ProtocolError(ErrorCode.INVALID_PROPERTY, "property 'nb' must be positive")
    if w.cfg.singleton:
        return {"numprocesses": w.numprocesses, "singleton": True,
                "warning": f"{w.name} is a singleton: it runs at most one process, nothing changed"}
    if sign > 0:        # refused now, doing nothing (with waiting, checked again when it runs)
        check_numprocesses(w.numprocesses + p["nb"], arbiter.max_numprocesses)
    before = w.numprocesses
    fields: dict[str, Any] = {}
    if sign < 0 and p["nb"] > before:   # a documented clamp, said in the reply
        fields["warning"] = (f"{w.name} had numprocesses = {before}: decr {p['nb']} leaves 0, "
                             "not a negative number")
    if not p.get("waiting"):            # 0.19 replies ok at once: the target changes now
        w.retarget(before + sign * p["nb"])
        return fields
    pids = set(w.pids())
    fields["numprocesses"] = await ops.run(p, w.set_numprocesses(delta=sign * p["nb"]), "resize")
    await outcome.settle(w, set(w.pids()) - pids)
    return fields


@handler("incr")
async def _incr(arbiter, ops, p):
    return await _resize(arbiter, ops, p, +1)


@handler("decr")
async def _decr(arbiter, ops, p):
    return await _resize(arbiter, ops, p, -1)


@handler("add")
async def _add(arbiter, ops, p):
    options = dict(p["options"] or {})
    check_name(p["name"], "watcher name")
    try:
        cfg = watcher_from_options(p["name"], p["cmd"], p["args"], options, arbiter.environ)
    except ConfigError as exc:
        raise ProtocolError(ErrorCode.INVALID_OPTION, _issues_text(exc)) from None
    check_numprocesses(cfg.numprocesses, arbiter.max_numprocesses)
    if len(arbiter.watchers) >= MAX_WATCHERS:
        raise ProtocolError(ErrorCode.INVALID_PROPERTY, f"this node has {len(arbiter.watchers)} "
                            f"watchers: at most {MAX_WATCHERS}")
    check_owner(arbiter.config.circus, cfg, "add", raw=options)
    _check_ids(cfg)
    watcher = arbiter.add_watcher(cfg)
    if p["start"]:
        info = await ops.run(p, _settled(watcher, watcher.start()), "add")
        if info is not None:
            return {"info": info}
    return {}


def _issues_text(exc: ConfigError) -> str:
    """The problems of ``exc`` for an error reply: the first MAX_ISSUES, then how many more."""
    shown = [f"{i.key}: {i.reason}" if i.key else i.reason for i in exc.issues[:MAX_ISSUES]]
    more = len(exc.issues) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def _check_ids(cfg: Any) -> None:
    """An unknown user or group given to add or set is an error reply, not an ok followed by
    spawn failures in backoff (a configuration file's are reported when its watcher spawns)."""
    try:
        resolve_ids(cfg.uid, cfg.gid)
    except SpawnError as exc:
        key = "uid" if "user" in str(exc) else "gid"
        raise ProtocolError(ErrorCode.INVALID_OPTION, f"{key}: {exc}") from None


@handler("rm")
async def _rm(arbiter, ops, p):
    watcher = _one(arbiter, p["name"])
    arbiter.detach_watcher(watcher)      # gone from now on, waiting or not; then it stops
    await ops.run(p, arbiter.remove_watcher(watcher, stop=not p["nostop"]), "rm")
    return {}


@handler("set")
async def _set(arbiter, ops, p):
    w = _one(arbiter, p["name"])
    changes = p["options"]
    if not changes:
        raise ProtocolError(ErrorCode.INVALID_PROPERTY, "property 'options' is empty")
    if len(changes) > MAX_OPTIONS:
        raise ProtocolError(ErrorCode.INVALID_PROPERTY, f"{len(changes)} options: at most "
                            f"{MAX_OPTIONS} in one request")
    merged = {k: v for k, v in watcher_options(w.cfg).items() if v is not None}
    if "respawn" in changes and "restart_policy" not in changes:
        merged.pop("restart_policy", None)
    for key in changes:
        lower = key.lower()
        if lower.startswith("rlimit_"):
            merged.setdefault("rlimits", {}).pop(lower[len("rlimit_"):], None)
        elif lower.startswith("hooks."):
            merged.setdefault("hooks", {}).pop(lower[len("hooks."):], None)
        elif lower.split(".")[0] in ("stdout_stream", "stderr_stream") and "." in lower:
            stream = merged.get(lower.split(".")[0]) or {}
            merged[lower.split(".")[0]] = {**stream, lower.split(".", 1)[1]: changes[key]}
            continue
    spelled = {k.lower() for k in changes}      # NumProcesses replaces numprocesses (keys are
    merged = {k: v for k, v in merged.items()   # case-insensitive: the first one would win)
              if k.lower() not in spelled or k in changes}
    merged.update({k: v for k, v in changes.items()
                   if not (k.lower().split(".")[0] in ("stdout_stream", "stderr_stream") and "." in k)})
    cmd, args = merged.pop("cmd"), merged.pop("args", None)
    try:
        cfg = watcher_from_options(w.name, cmd, args, merged, arbiter.environ)
    except ConfigError as exc:
        raise ProtocolError(ErrorCode.INVALID_OPTION, _issues_text(exc)) from None
    check_numprocesses(cfg.numprocesses, arbiter.max_numprocesses)
    check_owner(arbiter.config.circus, cfg, "set", changes, raw=changes)
    _check_ids(cfg)
    await ops.run(p, w.update(cfg, tuple(changes)), "set")
    return {}


_NODE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@handler("rename")
def _rename(arbiter, ops, p):
    name = p["name"]
    if not _NODE_NAME.fullmatch(name):
        raise ProtocolError(ErrorCode.INVALID_PROPERTY, "a node name has 1 to 64 letters, "
                            "digits, '.', '_' or '-'")
    old = arbiter.rename(name)
    return {"old": old, "name": name}


def _pid(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ProtocolError(ErrorCode.INVALID_PROPERTY, f"invalid pid {value!r}") from None


def _signum(value: Any) -> int:
    try:
        return parse_signal(value)
    except ValueError as exc:
        raise ProtocolError(ErrorCode.INVALID_PROPERTY, str(exc)) from None


@handler("kill")
async def _kill(arbiter, ops, p):
    w = _one(arbiter, p["name"])
    pid = _pid(p["pid"]) if p["pid"] is not None else None
    if pid is not None and pid not in w.pids():
        raise ProtocolError(ErrorCode.UNKNOWN_PROCESS, f"process {pid} not found in {w.name!r}")
    sig = _signum(p["signum"]) if p["signum"] is not None else None
    await ops.run(p, w.kill(pid, sig, p["graceful_timeout"]), "kill")
    return {}


#: processes whose descendants are looked up (in /proc) before the signal handler yields
SIGNAL_BATCH = 64


@handler("signal")
async def _signal(arbiter, ops, p):
    w = _one(arbiter, p["name"])
    sig = _signum(p["signum"])
    pids = w.pids()
    if p["pid"] is not None:
        pid = _pid(p["pid"])
        if pid not in pids:
            raise ProtocolError(ErrorCode.UNKNOWN_PROCESS, f"process {pid} not found in {w.name!r}")
        pids = [pid]
    elif p["childpid"] is not None:
        raise ProtocolError(ErrorCode.MISSING_PROPERTY, "'childpid' needs 'pid'")
    targets: list[int] = []
    for done, pid in enumerate(pids, start=1):
        if done % SIGNAL_BATCH == 0:
            await asyncio.sleep(0)         # up to max_numprocesses walks of /proc: in steps
        children = arbiter.os.descendants(pid) if p["recursive"] else \
            [c for c in arbiter.os.descendants(pid) if _parent(c) == pid]
        if p["childpid"] is not None:
            child = _pid(p["childpid"])
            if child not in children:
                raise ProtocolError(ErrorCode.UNKNOWN_PROCESS, f"{child} is not a child of {pid}")
            targets.append(child)
        elif p["children"]:
            targets.extend(children)
        else:
            targets.append(pid)
            if p["recursive"]:
                targets.extend(children)
    for pid in targets:
        arbiter.os.kill(pid, sig)
    return {}


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


@handler("reopen")
async def _reopen(arbiter, ops, p):
    await arbiter.cmd_reopen()
    return {}


@handler("tool")
async def _tool(arbiter, ops, p):
    tool = arbiter.tools.get(p["name"])
    check_owner_tool(arbiter.config.circus, tool)
    args = p["args"]
    if not all(isinstance(a, str) for a in args):
        raise ProtocolError(ErrorCode.INVALID_PROPERTY, "property 'args' must be a list of strings")
    if len(args) > MAX_ARGS or any(len(a) > MAX_VALUE for a in args):
        raise ProtocolError(ErrorCode.INVALID_PROPERTY, f"property 'args': at most {MAX_ARGS} "
                            f"arguments of at most {MAX_VALUE} characters")
    run_id = arbiter.tools.new_run_id(p["run_id"])
    result = await ops.run(p, arbiter.tools.run(tool, list(args), run_id), f"tool {tool.name}")
    return result.to_reply() if result is not None else {"tool": tool.name, "run_id": run_id}


@handler("ipython")
async def _ipython(arbiter, ops, p):
    raise ProtocolError(ErrorCode.NOT_SUPPORTED, "the ipython command is not supported")


from circus.core import queries  # noqa: E402,F401  (registers the read-only commands)
