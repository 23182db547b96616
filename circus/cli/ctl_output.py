"""What circusctl prints for a reply: 0.19's text where scripts parse it, readable tables
where 0.19 printed little or nothing useful.

``render(command, reply, props, paint)`` returns the text and whether it is an error (printed on
stderr, exit code 3). Formats kept from 0.19 (scripts parse them): ``list`` comma-joined,
``status`` as ``name: state`` lines (see :mod:`circus.cli.ctl_status` for its table),
``options``/``get`` as ``key: value`` lines, ``listsockets`` as ``fd:socket 'name' at addr``,
``numprocesses``/``incr``/``decr`` as a number, ``ok`` for commands that only act.

New, for people: ``stats`` and ``dstats`` as a table with headers (WATCHER PID CPU% MEM% RSS VMS
AGE CMD), ``nodeinfo`` as ``key: value`` lines, ``processes`` as a table, ``reloadconfig`` with
the plan's lines, ``tail`` of every watcher with the watcher's name in front of each line. A
reply's ``warning`` (``decr`` past zero) is for stderr: :func:`warnings`.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Mapping

from circus.cli.ctl_color import PLAIN, Paint
from circus.cli.ctl_status import plain_text, processes_table
from circus.cli.ctl_text import Cell, columns, duration, number, output_line, size

__all__ = ["render", "render_json", "render_line", "warnings", "tail_lines", "name_width"]

Reply = Mapping[str, Any]

SINGLETON_TEXT = "This watcher is a Singleton - not changing the number of processes"

#: the kept name of the captured-line formatter
render_line = output_line


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


_STATS_HEADER = ["WATCHER", "PID", "CPU%", "MEM%", "RSS", "VMS", "AGE", "CMD"]


def _stat_rows(watcher: str, pid: Any, info: Any, paint: Paint, child: bool = False) -> list[list[Cell]]:
    """The rows of one process (and its children, ``\\_`` in front of their command)."""
    if not isinstance(info, Mapping):
        return [[Cell(watcher, paint.bold), Cell(pid), *(Cell(None) for _ in range(5)), Cell(info)]]
    cmd = str(info.get("cmdline") or "-")
    rss = info.get("rss") if isinstance(info.get("rss"), (int, float)) else info.get("mem_info1")
    vms = info.get("vms") if isinstance(info.get("vms"), (int, float)) else info.get("mem_info2")
    rows = [[Cell("" if child else watcher, paint.bold, blank=""), Cell(info.get("pid", pid)),
             Cell(number(info.get("cpu"))), Cell(number(info.get("mem"))), Cell(size(rss)),
             Cell(size(vms)), Cell(duration(info.get("age"))),
             Cell(f" \\_ {cmd}" if child else cmd)]]
    for sub in info.get("children") or ():
        if isinstance(sub, Mapping):
            rows += _stat_rows(watcher, sub.get("pid"), sub, paint, child=True)
    return rows


def _stats_table(by_watcher: Mapping[str, Mapping[str, Any]], paint: Paint) -> str:
    rows: list[list[Cell]] = []
    for watcher, infos in by_watcher.items():
        for pid, info in (infos or {}).items():
            rows += _stat_rows(watcher, pid, info, paint)
    return "\n".join(columns(rows, _STATS_HEADER, right=(1, 2, 3, 4, 5, 6),
                             header_style=paint.dim))


def _stats(reply: Reply, paint: Paint = PLAIN, props: Mapping[str, Any] | None = None) -> str:
    if "infos" in reply:
        return _stats_table(reply.get("infos") or {}, paint)
    if "name" in reply:
        return _stats_table({str(reply["name"]): reply.get("info") or {}}, paint)
    name = str((props or {}).get("name") or "")       # one process: the watcher asked about
    return _stats_table({name: {str(reply.get("process")): reply.get("info")}}, paint)


def _dstats(reply: Reply, paint: Paint = PLAIN) -> str:
    info = reply.get("info")
    pid = info.get("pid") if isinstance(info, Mapping) else "-"
    return _stats_table({"circusd": {str(pid): info}}, paint)


def _nodeinfo(reply: Reply, paint: Paint = PLAIN) -> str:
    """``key: value`` lines, values aligned."""
    r = dict(reply)
    load = r.get("load")
    if isinstance(load, list):
        cpus = r.get("cpu_count")
        load = " ".join(number(x, 2) for x in load) + " (1, 5, 15 min" + \
            (f"; {cpus} CPUs)" if cpus else ")")
    total, free = r.get("mem_total"), r.get("mem_available")
    memory = None
    if isinstance(total, (int, float)) and isinstance(free, (int, float)) and total > 0:
        memory = f"{size(free)} available of {size(total)} ({100 * (total - free) / total:.1f}% used)"
    pairs = [("name", r.get("name", r.get("node"))), ("version", r.get("version")),
             ("pid", r.get("pid")), ("uptime", duration(r.get("uptime"))), ("load", load),
             ("memory", memory), ("watchers", r.get("watchers")),
             ("processes", r.get("processes"))]
    known = {"name", "node", "version", "pid", "uptime", "load", "cpu_count", "mem_total",
             "mem_available", "watchers", "processes", "status", "time", "id"}
    pairs += [(k, v) for k, v in r.items() if k not in known]
    pairs = [(k, v) for k, v in pairs if v is not None]
    width = max(len(k) for k, _ in pairs) + 2
    return "\n".join(f"{k + ':':<{width}}{v}" for k, v in pairs)


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


def _resize(reply: Reply, props: Mapping[str, Any] | None = None) -> str:
    """0.19's text: the new number of processes with ``--waiting``, else ``ok`` (circusd says
    the number either way: it is in ``--json``)."""
    if "singleton" in reply:
        return SINGLETON_TEXT
    if not (props or {}).get("waiting"):
        return "ok"
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


def name_width(names: Any) -> int:
    return max((len(str(n)) for n in names), default=0)


def tail_lines(entries: Any, paint: Paint = PLAIN, width: int | None = None,
               by_watcher: bool = False) -> list[str]:
    """``tail`` lines: of one watcher ``<time> [<pid>] <stream> | <line>``; of every watcher
    (``by_watcher``) ``<watcher> | <line>``, names aligned to ``width`` and coloured."""
    entries = [e for e in entries or () if isinstance(e, Mapping)]
    if not by_watcher:
        return [output_line(e) for e in entries]
    if width is None:
        width = name_width(e.get("watcher", "") for e in entries)
    out = []
    for e in entries:
        name = str(e.get("watcher", ""))
        cut = f" [... {e['cut']} bytes in all]" if isinstance(e.get("cut"), int) else ""
        out.append(f"{paint.name(name, name.ljust(width))} | {e.get('line')}{cut}")
    return out


def _tail(reply: Reply, paint: Paint = PLAIN, props: Mapping[str, Any] | None = None) -> str:
    return "\n".join(tail_lines(reply.get("lines"), paint,
                                by_watcher=not (props or {}).get("name")))


def _tools(reply: Reply) -> str:
    """``name  description`` per tool, names aligned."""
    tools = [t for t in reply.get("tools") or () if isinstance(t, Mapping)]
    width = max((len(str(t.get("name"))) for t in tools), default=0)
    return "\n".join(f"{t.get('name')!s:<{width}}  {t.get('description') or ''}".rstrip()
                     for t in tools)


def _processes(reply: Reply, paint: Paint = PLAIN) -> str:
    return "\n".join(processes_table(reply, paint))


_OK: dict[str, Callable[..., str]] = {
    "list": _list, "options": _options, "get": _options, "globaloptions": _options,
    "listsockets": _listsockets, "numprocesses": _count("numprocesses"),
    "numwatchers": _count("numwatchers"), "tools": _tools,
}
#: renderers that colour
_PAINTED: dict[str, Callable[..., str]] = {
    "status": plain_text, "stats": _stats, "dstats": _dstats, "nodeinfo": _nodeinfo,
    "processes": _processes,
}


def render(command: str, reply: Reply, props: Mapping[str, Any] | None = None,
           paint: Paint = PLAIN) -> tuple[str, bool]:
    """``(text, is_error)`` for ``reply`` to ``command`` (sent with ``props``)."""
    status = reply.get("status")
    if status == "error":
        return f"{paint.error('error:')} {reply.get('reason')}", True
    if command == "status" and "statuses" not in reply and status is not None:
        return plain_text(reply, paint), False
    if status != "ok":
        return f"{paint.error('error:')} unexpected reply status {status!r}", True
    if command == "reloadconfig":
        return _reloadconfig(reply, bool((props or {}).get("dry_run"))), False
    if command in ("tail", "stats"):
        return (_tail if command == "tail" else _stats)(reply, paint, props), False
    if command in ("incr", "decr"):
        return _resize(reply, props), False
    if command in _PAINTED:
        return _PAINTED[command](reply, paint), False
    return _OK.get(command, lambda r: "ok")(reply), False


def warnings(reply: Reply) -> list[str]:
    """What an ``ok`` reply warns about (``decr`` clamped at zero...), for stderr."""
    found = reply.get("warning")
    if isinstance(found, str) and found:
        return [found]
    if isinstance(found, list):
        return [str(w) for w in found if w]
    return []


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
