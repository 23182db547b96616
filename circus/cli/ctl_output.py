"""What circusctl prints for a reply: the same text as circusctl 0.19, plus our richer fields.

``render(command, reply)`` returns the text and whether it is an error (printed on stderr, exit
code 3). Formats kept from 0.19 (scripts parse them): ``list`` comma-joined, ``status`` as
``name: state`` lines, ``options``/``get`` as ``key: value`` lines, ``stats`` as
``pid: pid  cmd user nice rss vms cpu mem ctime``, ``listsockets`` as ``fd:socket 'name' at addr``,
everything else ``ok``.

Where the reply carries more than 0.19's did, we show it: ``status`` prints the rich state and
its reason (``web: fatal (exited 3 times in 2.1 s: exit code 1)``), ``reloadconfig`` prints the
plan's lines. Two 0.19 defects are not kept: ``status`` no longer drops the error's reason, and
``globaloptions`` errors carry the ``error:`` prefix like every other command.
"""
from __future__ import annotations

import json
import time
from typing import Any, Callable, Mapping

__all__ = ["render", "render_json", "render_event", "render_line"]

Reply = Mapping[str, Any]

SINGLETON_TEXT = "This watcher is a Singleton - not changing the number of processes"
_STAT_FIELDS = ("pid", "cmdline", "username", "nice", "mem_info1", "mem_info2", "cpu", "mem", "ctime")


def _value(key: str, value: Any) -> str:
    """An option value as 0.19 printed it: env as sorted ``K=V`` pairs, None as nothing."""
    if key == "env":
        if not value:
            return ""
        if isinstance(value, Mapping):
            return ",".join(f"{k}={v}" for k, v in sorted(value.items()))
    return "" if value is None else str(value)


def _options(reply: Reply) -> str:
    return "\n".join(f"{k}: {_value(k, v)}" for k, v in (reply.get("options") or {}).items())


def _infoline(info: Mapping[str, Any]) -> str:
    v = {k: info.get(k, "N/A") for k in _STAT_FIELDS}
    return (f"{v['pid']}  {v['cmdline']} {v['username']} {v['nice']} {v['mem_info1']} "
            f"{v['mem_info2']} {v['cpu']} {v['mem']} {v['ctime']}")


def _process(info: Any) -> str:
    """One process (and its children, indented); a string info (e.g. a dead pid) as is."""
    if not isinstance(info, Mapping):
        return str(info)
    lines = [_infoline(info)]
    lines += ["   " + _infoline(child) for child in info.get("children") or () if isinstance(child, Mapping)]
    return "\n".join(lines)


def _stats(reply: Reply) -> str:
    if "name" in reply:
        lines = [f"{reply['name']}:"]
        lines += [f"{pid}: {_process(info)}" for pid, info in (reply.get("info") or {}).items()]
        return "\n".join(lines)
    if "infos" in reply:
        lines = []
        for watcher, infos in (reply.get("infos") or {}).items():
            lines.append(f"{watcher}:")
            lines += [f"{pid}: {_process(info)}" for pid, info in (infos or {}).items()]
        return "\n".join(lines)
    return f"{reply.get('process')}: {_process(reply.get('info'))}\n"


def _dstats(reply: Reply) -> str:
    info = reply.get("info") or {}
    if not isinstance(info, Mapping):
        return str(info)
    lines = ["Main Process:", "    " + _infoline(info)]
    children = [c for c in info.get("children") or () if isinstance(c, Mapping)]
    if children:
        lines.append("Children:")
        lines += ["    " + _infoline(child) for child in children]
    return "\n".join(lines)


def _rich(state: Any, reason: Any) -> str:
    return f"{state} ({reason})" if reason else str(state)


def _status(reply: Reply) -> str:
    if "statuses" in reply:
        statuses = reply.get("statuses") or {}
        details = reply.get("details") or {}
        lines = []
        for name in sorted(statuses):
            detail = details.get(name)
            if isinstance(detail, Mapping) and detail.get("state"):
                lines.append(f"{name}: {_rich(detail['state'], detail.get('reason'))}")
            else:
                lines.append(f"{name}: {statuses[name]}")
        return "\n".join(lines)
    if reply.get("state"):
        return _rich(reply["state"], reply.get("reason"))
    return str(reply.get("status"))


def _list(reply: Reply) -> str:
    if "pids" in reply:
        return ",".join(str(pid) for pid in reply["pids"] or ())
    return ",".join(str(name) for name in reply.get("watchers") or ())


def _socket(sock: Mapping[str, Any]) -> str:
    where = sock["path"] if "path" in sock else f"{sock.get('host')}:{sock.get('port')}"
    return f"{sock.get('fd')}:socket '{sock.get('name')}' at {where}"


def _listsockets(reply: Reply) -> str:
    return "\n".join(_socket(sock) for sock in reply.get("sockets") or ())


def _count(field: str) -> Callable[[Reply], str]:
    return lambda reply: str(reply.get(field))


def _resize(reply: Reply) -> str:
    if "singleton" in reply:
        return SINGLETON_TEXT
    return str(reply.get("numprocesses", "ok"))


def _plan_lines(reply: Reply) -> list[str]:
    for key in ("changes", "plan"):
        lines = reply.get(key)
        if isinstance(lines, list) and all(isinstance(line, str) for line in lines):
            return lines
    return []


def _reloadconfig(reply: Reply, dry_run: bool = False) -> str:
    lines = _plan_lines(reply)
    if dry_run:
        return "\n".join(lines) if lines else "ok"
    return "\n".join(["ok", *lines])


def render_line(entry: Mapping[str, Any]) -> str:
    """One captured output line (``tail``): ``<local time> [<pid>] <stream> | <line>``."""
    when = entry.get("time")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) if isinstance(when, (int, float)) else "-"
    cut = f" [... {entry['cut']} bytes in all]" if isinstance(entry.get("cut"), int) else ""
    return f"{stamp} [{entry.get('pid')}] {entry.get('stream')} | {entry.get('line')}{cut}"


def _tail(reply: Reply) -> str:
    return "\n".join(render_line(entry) for entry in reply.get("lines") or [])


def _tools(reply: Reply) -> str:
    """``name  description`` per tool, names aligned."""
    tools = [t for t in reply.get("tools") or () if isinstance(t, Mapping)]
    width = max((len(str(t.get("name"))) for t in tools), default=0)
    return "\n".join(f"{t.get('name')!s:<{width}}  {t.get('description') or ''}".rstrip()
                     for t in tools)


def _processes(reply: Reply) -> str:
    """``watcher: state, restarts N`` then ``  wid N: pid state [ready]`` per process."""
    lines = []
    for name, rec in sorted((reply.get("watchers") or {}).items()):
        if not isinstance(rec, Mapping):
            continue
        lines.append(f"{name}: {rec.get('state')}, {rec.get('numprocesses')} wanted, "
                     f"{rec.get('restarts')} restarts")
        for p in rec.get("processes") or ():
            ready = " ready" if p.get("ready") else ""
            last = f" last exit {p['last_exit']}" if p.get("last_exit") is not None else ""
            lines.append(f"  wid {p.get('wid')}: {p.get('pid') or '-'} {p.get('state')}{ready}{last}")
    return "\n".join(lines)


_OK: dict[str, Callable[[Reply], str]] = {
    "list": _list, "status": _status, "stats": _stats, "dstats": _dstats,
    "options": _options, "get": _options, "globaloptions": _options,
    "listsockets": _listsockets, "numprocesses": _count("numprocesses"),
    "numwatchers": _count("numwatchers"), "incr": _resize, "decr": _resize,
    "reloadconfig": _reloadconfig, "tail": _tail,
    "tools": _tools, "processes": _processes,
}


def render(command: str, reply: Reply, props: Mapping[str, Any] | None = None) -> tuple[str, bool]:
    """``(text, is_error)`` for ``reply`` to ``command`` (sent with ``props``)."""
    status = reply.get("status")
    if status == "error":
        return f"error: {reply.get('reason')}", True
    if command == "status" and "statuses" not in reply and status is not None:
        return _status(reply), False
    if status != "ok":
        return f"error: unexpected reply status {status!r}", True
    if command == "reloadconfig":
        return _reloadconfig(reply, bool((props or {}).get("dry_run"))), False
    return _OK.get(command, lambda r: "ok")(reply), False


def render_json(reply: Reply, prettify: bool = False, color: bool = False) -> str:
    """The raw reply: compact, or indented with sorted keys (coloured if asked and possible)."""
    if not prettify:
        return json.dumps(reply)
    text = json.dumps(reply, indent=2, sort_keys=True)
    if color:
        try:
            from pygments import highlight
            from pygments.formatters import TerminalFormatter
            from pygments.lexers import JsonLexer
        except ImportError:
            return text
        return highlight(text, JsonLexer(), TerminalFormatter()).rstrip("\n")
    return text


def render_event(topic: bytes, message: bytes) -> str:
    """One event as ``circusctl listen`` prints it (0.19: the two frames' bytes reprs)."""
    return f"{topic!r}: {message!r}"
