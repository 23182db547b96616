"""The read-only commands: answered from circusd's own records, in the same loop iteration as
the request arrived (no waiting, no lock). ``stats`` and ``dstats`` sample processes in a thread.
Registered in :data:`circus.core.handlers.HANDLERS` when that module is imported."""
from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from circus.config.view import watcher_options
from circus.core import outcome
from circus.core.handlers import _one, _pid, handler, select
from circus.core.states import ProcessState
from circus.core.watcher import Watcher
from circus.protocol import ErrorCode, ProtocolError, output_topic
from circus.protocol.limits import MAX_OPTIONS, MAX_TAIL

__all__: list[str] = []


@handler("get")
def _get(arbiter, ops, p):
    w = _one(arbiter, p["name"])
    view = watcher_options(w.cfg)
    view["numprocesses"] = w.numprocesses
    out = {}
    if len(p["keys"]) > MAX_OPTIONS:
        raise ProtocolError(ErrorCode.INVALID_PROPERTY, f"{len(p['keys'])} keys: at most "
                            f"{MAX_OPTIONS} in one request")
    for key in p["keys"]:
        if not isinstance(key, str) or key not in view:
            raise ProtocolError(ErrorCode.UNKNOWN_OPTION, f"{key!r} option not found")
        out[key] = view[key]
    return {"options": out}


@handler("options")
def _options(arbiter, ops, p):
    w = _one(arbiter, p["name"])
    view = watcher_options(w.cfg)
    view["numprocesses"] = w.numprocesses
    return {"options": view}


@handler("globaloptions")
def _globaloptions(arbiter, ops, p):
    c = arbiter.config.circus
    opts = {"endpoint": c.endpoint, "pubsub_endpoint": c.pubsub_endpoint,
            "stats_endpoint": c.stats_endpoint, "check_delay": c.check_delay,
            "multicast_endpoint": c.multicast_endpoint, "name": arbiter.node}
    if p["option"] is not None:
        if p["option"] not in opts:
            raise ProtocolError(ErrorCode.UNKNOWN_OPTION, f"{p['option']!r} not an existing option")
        opts = {p["option"]: opts[p["option"]]}
    return {"options": opts}


@handler("list")
def _list(arbiter, ops, p):
    if p["name"] is None:
        return {"watchers": sorted(arbiter.watchers)}
    return {"pids": _one(arbiter, p["name"]).pids()}


@handler("listsockets")
def _listsockets(arbiter, ops, p):
    return {"sockets": arbiter.list_sockets()}


@handler("numprocesses")
def _numprocesses(arbiter, ops, p):
    if p["name"] is None:
        return {"numprocesses": sum(len(w.pids()) for w in arbiter.watchers.values())}
    w = _one(arbiter, p["name"])
    return {"numprocesses": len(w.pids()), "watcher_name": w.name}


def _process_view(p: Any) -> dict:
    live = p.live
    started = p.create_time if live else None
    return {"wid": p.wid, "pid": p.pid if live else None, "state": str(p.state),
            "ready": p.state is ProcessState.RUNNING, "started": started,
            "restarts": max(0, p.spawns - 1), "last_exit": p.last_exit,
            **({"reason": p.reason} if p.reason else {}),
            **({"retry_at": _wall(p.retry_at)} if p.state is ProcessState.BACKOFF and p.retry_at
               else {})}


def _wall(when: float) -> float:
    """A time of the loop's clock as wall-clock time (epoch): when a backoff retries."""
    return round(time.time() + when - asyncio.get_running_loop().time(), 3)


def _processes_view(w: Watcher) -> dict:
    return {"state": w.compat_status(), "numprocesses": w.numprocesses, "restarts": w.restarts,
            "exits": {str(code): n for code, n in sorted(w.exits.items())},
            "reason": w.describe_reason(), "trouble": outcome.trouble(w),
            "processes": [_process_view(p) for _, p in sorted(w.slots.items())]}


@handler("processes")
def _processes(arbiter, ops, p):
    if p["name"] is not None:
        w = _one(arbiter, p["name"])
        return {"watchers": {w.name: _processes_view(w)}}
    cached = arbiter.views.get("processes")
    if cached is None:
        cached = arbiter.views["processes"] = {
            "watchers": {w.name: _processes_view(w) for w in arbiter.watchers.values()}}
    return cached




def _meminfo() -> tuple[int, int]:
    """(total, available) bytes from /proc/meminfo (no psutil in circusd)."""
    values: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("MemTotal", "MemAvailable"):
                    values[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return values.get("MemTotal", 0), values.get("MemAvailable", 0)


@handler("nodeinfo")
def _nodeinfo(arbiter, ops, p):
    from circus import __version__
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = [0.0, 0.0, 0.0]
    total, available = _meminfo()
    return {"name": arbiter.node, "version": __version__, "pid": os.getpid(),
            "uptime": round(time.time() - arbiter.started_at, 3), "load": load,
            "cpu_count": os.cpu_count() or 1, "mem_total": total, "mem_available": available,
            "watchers": len(arbiter.watchers),
            "processes": sum(len(w.pids()) for w in arbiter.watchers.values()),
            "time": time.time()}


@handler("numwatchers")
def _numwatchers(arbiter, ops, p):
    return {"numwatchers": len(arbiter.watchers)}


def _trouble_fields(w: Watcher) -> dict:
    """What is wrong with ``w`` (``trouble``: fatal, backoff, exited, or null) and, when
    something is, the output lines that tell why (``last_lines``)."""
    kind = outcome.trouble(w)
    fields: dict[str, Any] = {"trouble": kind}
    if w.completed_ok is not None and w.compat_status() == "stopped":
        fields["completed"] = w.completed_ok     # a job whose processes all ended
    if kind is not None:
        fields["last_lines"] = outcome.last_lines(w)
    return fields


def _one_status(w: Watcher) -> dict:
    state = w.compat_status()
    return {"status": state, "state": state, "reason": w.describe_reason(),
            "numprocesses": w.numprocesses, **_trouble_fields(w),
            "processes": [_process_view(p) for _, p in sorted(w.slots.items())]}


@handler("status")
def _status(arbiter, ops, p):
    name = p["name"]
    if name is not None and (p["match"] != "glob" or not any(c in name for c in "*?[")):
        return _one_status(select(arbiter, name, p["match"])[0] if p["match"] == "regex"
                           else _one(arbiter, name))
    matched = select(arbiter, name, p["match"]) if name is not None else None
    cached = arbiter.views.get("status") if matched is None else None
    if cached is None:
        statuses, details = {}, {}
        for w in matched if matched is not None else arbiter.watchers.values():
            state = statuses[w.name] = w.compat_status()
            reason, kind = w.describe_reason(), outcome.trouble(w)
            if reason or kind:         # only watchers with something to say (keeps replies small)
                details[w.name] = {"state": state, "reason": reason, "trouble": kind}
                if w.completed_ok is not None and state == "stopped":
                    details[w.name]["completed"] = w.completed_ok
        cached = {"statuses": statuses, "details": details}
        if matched is None:
            arbiter.views["status"] = cached
    return cached


@handler("tail")
def _tail(arbiter, ops, p):
    if p["lines"] < 0:
        raise ProtocolError(ErrorCode.INVALID_PROPERTY, "property 'lines' must be >= 0")
    count = min(p["lines"], MAX_TAIL)
    wanted = (p["stream"],) if p["stream"] else ("stdout", "stderr")
    if p["name"] is None:                # every watcher, merged by time
        lines = []
        for w in arbiter.watchers.values():
            for line in w.output.last(count, wanted):
                lines.append({**line, "watcher": w.name})
        lines.sort(key=lambda line: line["time"])
        return {"lines": lines[-count:] if count else [], "streams": list(wanted),
                "topic": "output."}
    w = _one(arbiter, p["name"])
    captured = [name for name in wanted if name in w.captured()]
    if not captured:
        what = f"{p['stream']} is" if p["stream"] else "stdout and stderr are"
        raise ProtocolError(ErrorCode.NOT_SUPPORTED,
                            f"{w.name}'s {what} not read by circusd: it has recent_lines = 0 "
                            f"and no {wanted[0]}_stream (set recent_lines, or give it a stream)")
    lines = [{**line, "watcher": w.name} for line in w.output.last(count, captured)]
    return {"lines": lines, "streams": captured, "topic": output_topic(w.name, p["stream"] or "")}


def _stringify(info: dict) -> dict:
    return {str(pid): value for pid, value in info.items()}


def _slot_keys(w: Watcher, samples: dict) -> dict:
    """0.19's ``wid`` and ``started`` (wall-clock time of the spawn) in each process's info."""
    for slot in w.slots.values():
        info = samples.get(slot.pid) if slot.pid is not None else None
        if isinstance(info, dict):
            info["wid"], info["started"] = slot.wid, slot.create_time
    return samples


@handler("stats")
async def _stats(arbiter, ops, p):
    if p["name"] is None:
        watchers = list(arbiter.watchers.values())
        samples = await ops.stats([pid for w in watchers for pid in w.pids()])
        return {"infos": {w.name: _stringify(_slot_keys(w, {pid: samples[pid] for pid in w.pids()
                                                           if pid in samples}))
                          for w in watchers}}
    w = _one(arbiter, p["name"])
    if p["process"] is not None:
        pid = _pid(p["process"])
        if pid not in w.pids():
            raise ProtocolError(ErrorCode.UNKNOWN_PROCESS, f"process {pid} not found in {w.name!r}")
        samples = _slot_keys(w, await ops.stats([pid]))
        await _extended(w, samples, p["extended"])
        return {"process": pid, "info": samples[pid]}
    samples = _slot_keys(w, await ops.stats(w.pids()))
    await _extended(w, samples, p["extended"])
    return {"name": w.name, "info": _stringify(samples)}


async def _extended(w: Watcher, samples: dict, extended: bool) -> None:
    """``extended``: the watcher's ``extended_stats`` hook may add keys to each process's stats."""
    if extended:
        for pid, info in samples.items():
            if isinstance(info, dict):
                await w._hook("extended_stats", pid=pid, stats=info)


@handler("dstats")
async def _dstats(arbiter, ops, p):
    info = (await ops.stats([os.getpid()]))[os.getpid()]
    if isinstance(info, dict):
        info["children"] = []
    return {"info": info}


@handler("tools")
def _tools(arbiter, ops, p):
    return {"tools": arbiter.tools.describe()}
