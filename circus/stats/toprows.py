"""circus-top's screen as rows of text: what curses draws and what ``--once`` prints.

Pure like :mod:`circus.stats.topview`: one function turns the model and the view into rows, each
with a style (the curses layer maps styles to attributes) and, for a watcher's row, the
``(node, watcher)`` key that the cursor selects. ``--once`` prints the same rows, so what a
script reads is what an operator sees. :func:`snapshot` is the ``--json`` form.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from circus.stats.topview import (CIRCUS, SOCKETS, Group, Model, Node, Sample, SortKey, View, number,
                                  ordered_processes, visible_groups)

__all__ = ["Style", "Row", "rows", "title", "snapshot", "human_bytes", "human_age", "selectable",
           "move_selection"]

LABEL = 26   # width of the name / pid column


class Style(enum.Enum):
    """How curses shows a row."""

    NODE = "node"          # a node's header
    HEADER = "header"      # column titles
    GROUP = "group"        # a watcher's aggregate line (selectable)
    PROCESS = "process"
    SOCKET = "socket"
    NOTE = "note"          # "waiting for data", "no watcher matches"


@dataclass(frozen=True)
class Row:
    text: str
    style: Style
    key: tuple[str, str] | None = None


def human_bytes(value: Any) -> str:
    """``8617984`` -> ``"8.2M"``; "N/A" (or a string the stream already formatted) unchanged."""
    n = number(value)
    if n is None:
        return value if isinstance(value, str) else "-"
    for unit in ("B", "K", "M", "G", "T"):
        if abs(n) < 1024 or unit == "T":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return "-"  # pragma: no cover


def human_age(value: Any) -> str:
    """Seconds as ``"15s"``, ``"3m05s"``, ``"2h03m"`` or ``"4d02h"``: wide enough for a column."""
    n = number(value)
    if n is None:
        return value if isinstance(value, str) else "-"
    s = int(n)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _pct(value: Any) -> str:
    n = number(value)
    if n is None:
        return value if isinstance(value, str) else "-"
    return f"{n:.1f}"


def _line(label: str, cpu: str, mem: str, rss: str, age: str, rest: str = "") -> str:
    return f"{label:<{LABEL}} {cpu:>6} {mem:>6} {rss:>8} {age:>7}  {rest}".rstrip()


def _node_text(model: Model, node: Node, now: float) -> str:
    parts = [node.name]
    stats = node.stats.data if node.stats else None
    if stats is None:
        parts.append("(waiting for node stats)")
    else:
        load = stats.get("load")
        if isinstance(load, list) and len(load) == 3:
            parts.append("load " + " ".join(_pct2(v) for v in load))
        parts.append(f"cpu {_pct(stats.get('cpu'))}%")
        parts.append(f"mem {human_bytes(stats.get('mem_used'))}/{human_bytes(stats.get('mem_total'))}"
                     f" ({_pct(stats.get('mem_percent'))}%)")
        parts.append(f"processes {stats.get('processes', '-')}")
        parts.append(f"watchers {stats.get('watchers', '-')}")
    stale = model.stale(node, now)
    if stale is not None:
        parts.append(f"[no data for {int(stale)}s]")
    return "  ".join(parts)


def _pct2(value: Any) -> str:
    n = number(value)
    return f"{n:.2f}" if n is not None else "N/A"


def _group_row(node: Node, group: Group) -> Row:
    agg = group.aggregate.data if group.aggregate else {}
    procs = [s.data for s in group.processes.values()]
    pids = agg.get("pid")
    count = agg.get("numprocesses", len(pids) if isinstance(pids, list) else len(procs))
    cpu = agg.get("cpu", _mean([p.get("cpu") for p in procs]))
    mem = agg.get("mem", _sum([p.get("mem") for p in procs]))
    rss = agg.get("rss", _sum([p.get("rss") for p in procs]))
    age = agg.get("age", _max([p.get("age") for p in procs]))
    label = f"{group.name} ({count})"
    return Row(_line(label, _pct(cpu), _pct(mem), human_bytes(rss), human_age(age)),
               Style.GROUP, (node.name, group.name))


def _mean(values: list[Any]) -> float | str:
    known = [n for v in values if (n := number(v)) is not None]
    return sum(known) / len(known) if known else "N/A"


def _sum(values: list[Any]) -> float | str:
    known = [n for v in values if (n := number(v)) is not None]
    return sum(known) if known else "N/A"


def _max(values: list[Any]) -> float | str:
    known = [n for v in values if (n := number(v)) is not None]
    return max(known) if known else "N/A"


def _pid_label(group: Group, data: dict[str, Any]) -> str:
    pid = str(data.get("pid", "?"))
    name = data.get("name")
    if group.name == CIRCUS and isinstance(name, str) and name:
        return f"{pid} ({name})"
    return pid


def _process_row(group: Group, sample: Sample) -> Row:
    d = sample.data
    rss = d.get("rss", d.get("mem_info1"))
    cmd = d.get("cmdline")
    return Row(_line("  " + _pid_label(group, d), _pct(d.get("cpu")), _pct(d.get("mem")),
                     human_bytes(rss), human_age(d.get("age")), cmd if isinstance(cmd, str) else "-"),
               Style.PROCESS)


def _count(value: Any) -> str:
    n = number(value)
    return str(int(n)) if n is not None else "-"


def _socket_rows(node: Node) -> list[Row]:
    items = [node.sockets.items[fd].data for fd in sorted(node.sockets.items)]
    if not items:
        return []
    totals = node.sockets.aggregate.data if node.sockets.aggregate else {}
    label = f"{SOCKETS} ({len(items)})"
    out = [Row(f"{label:<{LABEL}} {_count(totals.get('connections')):>6} "
               f"{_count(totals.get('queue')):>6} {_count(totals.get('reads')):>8}", Style.GROUP),
           Row(f"  {'ADDRESS':<{LABEL - 2}} {'CONNS':>6} {'QUEUE':>6} {'READS':>8}", Style.HEADER)]
    for d in items:
        address = str(d.get("address", "?"))
        out.append(Row(f"  {address:<{LABEL - 2}} {_count(d.get('connections')):>6} "
                       f"{_count(d.get('queue')):>6} {_count(d.get('reads')):>8}", Style.SOCKET))
    return out


def _detail_rows(node: Node, group: Group, view: View) -> list[Row]:
    """Every field of each process of one watcher: the drill-down view."""
    out = [_group_row(node, group),
           Row(f"  {'PID':<20} {'CPU%':>6} {'MEM%':>6} {'RSS':>8} {'VMS':>8} {'FDS':>5} {'THR':>4} "
               f"{'AGE':>7} {'CTIME':>9} {'USER':<10} {'NICE':>4} {'READ':>8} {'WRITE':>8} "
               f"{'KIDS':>4}  COMMAND", Style.HEADER)]
    for sample in ordered_processes(group, view):
        d = sample.data
        io = d.get("io") if isinstance(d.get("io"), dict) else {}
        kids = d.get("children_total") if isinstance(d.get("children_total"), dict) else {}
        user = str(d.get("username", "-"))[:10]
        out.append(Row(
            f"  {_pid_label(group, d):<20} {_pct(d.get('cpu')):>6} {_pct(d.get('mem')):>6} "
            f"{human_bytes(d.get('rss', d.get('mem_info1'))):>8} "
            f"{human_bytes(d.get('vms', d.get('mem_info2'))):>8} {_count(d.get('num_fds')):>5} "
            f"{_count(d.get('num_threads')):>4} {human_age(d.get('age')):>7} "
            f"{str(d.get('ctime', '-')):>9} {user:<10} {str(d.get('nice', '-')):>4} "
            f"{human_bytes(io.get('read_bytes')):>8} {human_bytes(io.get('write_bytes')):>8} "
            f"{_count(kids.get('count', len(d.get('children') or []))):>4}  "
            f"{d.get('cmdline', '-')}", Style.PROCESS))
    if not group.processes:
        out.append(Row("  (no process)", Style.NOTE))
    return out


def title(view: View, model: Model) -> str:
    """The first line: what is shown and how it is ordered."""
    order = "asc" if view.reverse else "desc"
    if view.sort is SortKey.NAME:
        order = "desc" if view.reverse else "asc"
    parts = [f"circus-top  nodes {len(model.nodes)}", f"sort {view.sort.value} {order}"]
    if view.filter:
        parts.append(f"filter {view.filter!r}")
    if view.detail is not None:
        parts.append(f"watcher {view.detail[1]} on {view.detail[0]}")
    return "  ".join(parts)


def rows(model: Model, view: View, now: float) -> list[Row]:
    """The screen below the title: per node its header, watchers, circus group and sockets."""
    nodes = [model.nodes[n] for n in sorted(model.nodes) if view.shows_node(n)]
    if not nodes:
        return [Row("(waiting for the stats stream)", Style.NOTE)]
    out: list[Row] = []
    if view.detail is not None:
        node = model.nodes.get(view.detail[0])
        group = node.groups.get(view.detail[1]) if node else None
        if node is None or group is None:
            return [Row(f"{view.detail[1]}: no longer published (Esc to go back)", Style.NOTE)]
        return [Row(_node_text(model, node, now), Style.NODE), *_detail_rows(node, group, view)]
    header = Row(_line("WATCHER / PID", "CPU%", "MEM%", "RSS", "AGE", "COMMAND"), Style.HEADER)
    for node in nodes:
        if out:
            out.append(Row("", Style.NOTE))
        out.append(Row(_node_text(model, node, now), Style.NODE))
        out.append(header)
        groups = visible_groups(node, view)
        for group in groups:
            out.append(_group_row(node, group))
            out.extend(_process_row(group, s) for s in ordered_processes(group, view))
        if view.shows_group(SOCKETS):
            out.extend(_socket_rows(node))
        if not groups and view.filter:
            out.append(Row(f"(no watcher matches {view.filter!r})", Style.NOTE))
    return out


def selectable(all_rows: list[Row]) -> list[tuple[str, str]]:
    """The watchers the cursor can stop on, in screen order."""
    return [r.key for r in all_rows if r.key is not None]


def move_selection(keys: list[tuple[str, str]], current: tuple[str, str] | None,
                   step: int) -> tuple[str, str] | None:
    """The watcher ``step`` rows away from ``current`` (the first one if it is gone)."""
    if not keys:
        return None
    if current not in keys:
        return keys[0] if step >= 0 else keys[-1]
    index = max(0, min(len(keys) - 1, keys.index(current) + step))
    return keys[index]


def snapshot(model: Model, view: View) -> dict[str, Any]:
    """The state as plain data for ``--json``: nodes by name, the view's filter and order applied."""
    out: dict[str, Any] = {}
    for name in sorted(model.nodes):
        if not view.shows_node(name):
            continue
        node = model.nodes[name]
        watchers = {}
        for group in visible_groups(node, view):
            watchers[group.name] = {
                "aggregate": group.aggregate.data if group.aggregate else None,
                "processes": [s.data for s in ordered_processes(group, view)],
            }
        entry: dict[str, Any] = {"node": node.stats.data if node.stats else None,
                                 "watchers": watchers}
        if view.shows_group(SOCKETS):
            entry["sockets"] = {
                "aggregate": node.sockets.aggregate.data if node.sockets.aggregate else None,
                "sockets": [node.sockets.items[fd].data for fd in sorted(node.sockets.items)],
            }
        out[name] = entry
    return {"nodes": out}
