"""circus-top's screen as rows of text: what curses draws and what ``--once`` prints.

Pure like :mod:`circus.stats.topview`: one function turns the model and the view into rows, each
with a style (the curses layer maps styles to attributes), the parts to colour (``spans``: the
state of a watcher, a node's count of watchers in trouble) and, for a watcher's row, the
``(node, watcher)`` key that the cursor selects. ``--once`` prints the same rows, so what a
script reads is what an operator sees (coloured on a terminal: :func:`coloured`).
:func:`snapshot` is the ``--json`` form.

Over many nodes: nodes come in natural order, ``view.pool`` gives one list of the pool's
watchers sorted across every node (``NODE/WATCHER`` rows), ``view.node_filter`` keeps the
nodes whose name contains it, and a scrolled screen keeps the header of the node its first
rows belong to (:func:`window`, :func:`scroll_to`).

The STATE column is :func:`circus.stats.health.state_word` of the watcher's aggregate (its
trouble, else circusd's state word); ``-`` when the stream does not say (a circusd-stats older
than this one). A watcher without a running process shows ``-`` for CPU, memory and age, not
zeros, and ``NAME (running/wanted)`` when fewer run than it should have.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from circus.stats.health import Tone, in_trouble, paint, state_word, tone
from circus.stats.topview import (CIRCUS, SOCKETS, Group, Model, Node, Sample, SortKey, View,
                                  node_names, number, ordered_processes, pool_groups,
                                  visible_groups)
from circus.stats.units import human_age, human_bytes

__all__ = ["Style", "Row", "rows", "title", "snapshot", "human_bytes", "human_age", "selectable",
           "move_selection", "coloured", "trouble_count", "window", "scroll_to", "page_selection",
           "DEGRADED_NOTE"]

#: on a node's header while a degraded proxy forwards only its aggregates
DEGRADED_NOTE = "[proxy: aggregates only]"

LABEL = 26   # width of the name / pid column
STATE = 8    # width of the state column ("stopping")


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
    #: (start, end, tone) of the parts of ``text`` shown in their tone's colour
    spans: tuple[tuple[int, int, Tone], ...] = ()


def coloured(row: Row, colour: bool) -> str:
    """The row's text with its spans in colour (ANSI, for ``--once`` on a terminal)."""
    if not colour or not row.spans:
        return row.text
    out, at = [], 0
    for start, end, part_tone in sorted(row.spans):
        out += [row.text[at:start], paint(row.text[start:end], part_tone, True)]
        at = end
    return "".join(out) + row.text[at:]


def _pct(value: Any) -> str:
    n = number(value)
    if n is None:
        return value if isinstance(value, str) else "-"
    return f"{n:.1f}"


def _line(label: str, state: str, cpu: str, mem: str, rss: str, age: str,
          rest: str = "") -> str:
    return (f"{label:<{LABEL}} {state:<{STATE}} {cpu:>6} {mem:>6} {rss:>8} {age:>7}  "
            f"{rest}").rstrip()


def _state_span(label: str, word: str, word_tone: Tone) -> tuple[tuple[int, int, Tone], ...]:
    """Where ``_line`` put the state word, to colour it (nothing for an unknown tone)."""
    if word_tone in (Tone.UNKNOWN, Tone.IDLE) or not word:
        return ()
    start = max(LABEL, len(label)) + 1
    return ((start, start + len(word), word_tone),)


def trouble_count(node: Node) -> int:
    """The node's watchers in trouble: the node view's count (every watcher, filtered or not),
    else the aggregates'."""
    stats = node.stats.data if node.stats else {}
    count = number(stats.get("in_trouble"))
    if count is not None:
        return int(count)
    return sum(1 for g in node.groups.values()
               if g.aggregate is not None and in_trouble(g.aggregate.data))


def _node_row(model: Model, node: Node, now: float) -> Row:
    parts = [node.name]
    spans: list[tuple[int, int, Tone]] = []
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
        watchers = f"watchers {stats.get('watchers', '-')}"
        troubled = trouble_count(node)
        if troubled:
            note = f"({troubled} in trouble)"
            start = len("  ".join(parts)) + 2 + len(watchers) + 1
            spans.append((start, start + len(note), Tone.BAD))
            watchers += " " + note
        parts.append(watchers)
        own = number(stats.get("watcher_processes"))
        machine = stats.get("processes", "-")
        if own is not None:      # the node's own; the machine's count said as such
            parts.append(f"processes {int(own)} ({machine} on the machine)")
        else:
            parts.append(f"processes on the machine {machine}")
    if node.degraded is not None:
        start = len("  ".join(parts)) + 2
        spans.append((start, start + len(DEGRADED_NOTE), Tone.WARN))
        parts.append(DEGRADED_NOTE)
    stale = model.stale(node, now)
    if stale is not None:
        parts.append(f"[no data for {int(stale)}s]")
    return Row("  ".join(parts), Style.NODE, spans=tuple(spans))


def _pct2(value: Any) -> str:
    n = number(value)
    return f"{n:.2f}" if n is not None else "N/A"


def group_word(group: Group) -> str:
    """The STATE of a watcher's row: its trouble, else its state; ``-`` when the stream does
    not say; nothing for the circus group (not a watcher)."""
    if group.name == CIRCUS:
        return ""
    agg = group.aggregate.data if group.aggregate else {}
    return state_word(agg.get("state"), agg.get("trouble"))


def _group_row(node: Node, group: Group, pool: bool = False) -> Row:
    agg = group.aggregate.data if group.aggregate else {}
    procs = [s.data for s in group.processes.values()]
    pids = agg.get("pid")
    count = agg.get("numprocesses", len(pids) if isinstance(pids, list) else len(procs))
    wanted = number(agg.get("wanted"))
    running = number(count)
    name = f"{node.name}/{group.name}" if pool else group.name
    label = f"{name} ({count})"
    running_state = agg.get("state") in ("active", "starting") or in_trouble(agg)
    if running_state and wanted is not None and running is not None and \
            int(wanted) != int(running):
        label = f"{name} ({count}/{int(wanted)})"     # fewer (or more) than it should
    word = group_word(group)
    if running == 0 and not procs:       # nothing runs: no numbers that look like an idle one
        cpu = mem = rss = age = "-"
    else:
        cpu = _pct(agg.get("cpu", _mean([p.get("cpu") for p in procs])))
        mem = _pct(agg.get("mem", _sum([p.get("mem") for p in procs])))
        rss = human_bytes(agg.get("rss", _sum([p.get("rss") for p in procs])))
        age = human_age(agg.get("age", _max([p.get("age") for p in procs])))
    return Row(_line(label, word, cpu, mem, rss, age), Style.GROUP, (node.name, group.name),
               _state_span(label, word, tone(word)))


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


def _process_state(d: dict[str, Any]) -> str:
    state = d.get("state")
    return state if isinstance(state, str) else ""


def _process_row(group: Group, sample: Sample) -> Row:
    d = sample.data
    rss = d.get("rss", d.get("mem_info1"))
    cmd = d.get("cmdline")
    label = "  " + _pid_label(group, d)
    word = _process_state(d)
    # a running process is the normal case: only the others are coloured
    spans = _state_span(label, word, tone(word)) if word != "running" else ()
    return Row(_line(label, word, _pct(d.get("cpu")), _pct(d.get("mem")), human_bytes(rss),
                     human_age(d.get("age")), cmd if isinstance(cmd, str) else "-"),
               Style.PROCESS, spans=spans)


def _count(value: Any) -> str:
    n = number(value)
    return str(int(n)) if n is not None else "-"


def _socket_rows(node: Node) -> list[Row]:
    items = [node.sockets.items[fd].data for fd in sorted(node.sockets.items)]
    if not items:
        return []
    totals = node.sockets.aggregate.data if node.sockets.aggregate else {}
    label = f"{SOCKETS} ({len(items)})"
    gap = " " * (STATE + 1)               # the columns line up with CPU%, MEM% and RSS
    out = [Row(f"{label:<{LABEL}} {gap}{_count(totals.get('connections')):>6} "
               f"{_count(totals.get('queue')):>6} {_count(totals.get('reads')):>8}", Style.GROUP),
           Row(f"  {'ADDRESS':<{LABEL - 2}} {gap}{'CONNS':>6} {'QUEUE':>6} {'READS':>8}",
               Style.HEADER)]
    for d in items:
        address = str(d.get("address", "?"))
        out.append(Row(f"  {address:<{LABEL - 2}} {gap}{_count(d.get('connections')):>6} "
                       f"{_count(d.get('queue')):>6} {_count(d.get('reads')):>8}", Style.SOCKET))
    return out


def _detail_rows(node: Node, group: Group, view: View) -> list[Row]:
    """Every field of each process of one watcher: the drill-down view, under the watcher's
    state, why, and its restarts."""
    out = [_group_row(node, group)]
    agg = group.aggregate.data if group.aggregate else {}
    word = group_word(group)
    if group.name != CIRCUS and word != "-":
        text = f"  state {word}"
        word_tone = tone(word)
        spans = () if word_tone in (Tone.UNKNOWN, Tone.IDLE) else \
            ((len(text) - len(word), len(text), word_tone),)
        if agg.get("trouble") and agg.get("state") and agg.get("state") != word:
            text += f" (circusd's state: {agg['state']})"
        if agg.get("reason"):
            text += f": {agg['reason']}"
        restarts = number(agg.get("restarts"))
        if restarts is not None:
            text += f"; {int(restarts)} restart{'s' if restarts != 1 else ''}"
        out.append(Row(text, Style.NOTE, spans=spans))
        if in_trouble(agg):
            out.append(Row(f"  its last output lines: circusctl status {group.name} (on "
                           f"{node.name})", Style.NOTE))
    out.append(Row(f"  {'PID':<20} {'STATE':<{STATE}} {'CPU%':>6} {'MEM%':>6} {'RSS':>8} "
                   f"{'VMS':>8} {'FDS':>5} {'THR':>4} {'AGE':>7} {'CTIME':>9} {'USER':<10} "
                   f"{'NICE':>4} {'READ':>8} {'WRITE':>8} {'KIDS':>4}  COMMAND", Style.HEADER))
    for sample in ordered_processes(group, view):
        d = sample.data
        io = d.get("io") if isinstance(d.get("io"), dict) else {}
        kids = d.get("children_total") if isinstance(d.get("children_total"), dict) else {}
        user = str(d.get("username", "-"))[:10]
        out.append(Row(
            f"  {_pid_label(group, d):<20} {_process_state(d):<{STATE}} {_pct(d.get('cpu')):>6} "
            f"{_pct(d.get('mem')):>6} "
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
    shown = sum(1 for n in model.nodes if view.shows_node(n))
    count = f"nodes {len(model.nodes)}" if shown == len(model.nodes) else \
        f"nodes {shown} of {len(model.nodes)}"
    parts = [f"circus-top  {count}", f"sort {view.sort.value} {order}"]
    if view.pool:
        parts[-1] += " pool-wide"
    troubled = sum(trouble_count(model.nodes[n]) for n in model.nodes if view.shows_node(n))
    if troubled:
        parts.append(f"{troubled} watcher{'s' if troubled != 1 else ''} in trouble")
    degraded = sum(1 for n in model.nodes if view.shows_node(n) and model.nodes[n].degraded)
    if degraded:
        parts.append(f"{degraded} degraded by the proxy")
    if view.node_filter:
        parts.append(f"nodes {view.node_filter!r}")
    if view.filter:
        parts.append(f"filter {view.filter!r}")
    if view.detail is not None:
        parts.append(f"watcher {view.detail[1]} on {view.detail[0]}")
    return "  ".join(parts)


def rows(model: Model, view: View, now: float) -> list[Row]:
    """The screen below the title: per node (in natural order) its header, watchers, circus
    group and sockets; with ``view.pool``, one list of the pool's watchers instead."""
    nodes = [model.nodes[n] for n in node_names(model, view)]
    if not nodes:
        if model.nodes and (view.node_filter or view.nodes):
            return [Row(f"(no node matches {view.node_filter!r})" if view.node_filter
                        else "(waiting for the selected nodes)", Style.NOTE)]
        return [Row("(waiting for the stats stream)", Style.NOTE)]
    out: list[Row] = []
    if view.detail is not None:
        node = model.nodes.get(view.detail[0])
        group = node.groups.get(view.detail[1]) if node else None
        if node is None or group is None:
            return [Row(f"{view.detail[1]}: no longer published (Esc to go back)", Style.NOTE)]
        return [_node_row(model, node, now), *_detail_rows(node, group, view)]
    if view.pool:
        return _pool_rows(model, view)
    header = Row(_line("WATCHER / PID", "STATE", "CPU%", "MEM%", "RSS", "AGE", "COMMAND"),
                 Style.HEADER)
    for node in nodes:
        if out:
            out.append(Row("", Style.NOTE))
        out.append(_node_row(model, node, now))
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


def _pool_rows(model: Model, view: View) -> list[Row]:
    """One row per watcher of the pool, the pool's busiest first (its processes in Enter's
    details)."""
    out = [Row(_line("NODE/WATCHER", "STATE", "CPU%", "MEM%", "RSS", "AGE"), Style.HEADER)]
    out += [_group_row(node, group, pool=True) for node, group in pool_groups(model, view)]
    if len(out) == 1:
        out.append(Row(f"(no watcher matches {view.filter!r})" if view.filter
                       else "(no watcher yet)", Style.NOTE))
    return out


def window(body: list[Row], top: int, space: int) -> tuple[Row | None, list[Row]]:
    """The rows shown from ``top`` on ``space`` lines. When the first of them is inside a
    node's block, below its header, that header is shown first (sticky), and one row less:
    a scrolled screen always says which node its rows are."""
    shown = body[top:top + space]
    if top <= 0 or space < 2 or not shown or shown[0].style is Style.NODE:
        return None, shown
    if shown[0].style is Style.NOTE and not shown[0].text and len(shown) > 1 and \
            shown[1].style is Style.NODE:
        return None, shown                           # the blank line before the next block
    owner = next((body[i] for i in range(top - 1, -1, -1) if body[i].style is Style.NODE), None)
    if owner is None:
        return None, shown
    return owner, shown[:space - 1]


def scroll_to(body: list[Row], top: int, space: int, index: int | None) -> int:
    """The first row to show so that row ``index`` (None: any) is on screen, moving as little
    as possible, never past the last row, the sticky header counted."""
    def last_top() -> int:
        limit = max(0, len(body) - space)
        return limit + 1 if window(body, limit, space)[0] is not None and limit > 0 else limit
    if index is not None:
        if index < top:
            top = max(0, index - 1)      # the row above too: the column titles, a header
        elif index >= top + space:
            top = index - space + 1
        for _ in range(2):               # the sticky header takes a line
            sticky, shown = window(body, top, space)
            if sticky is not None and index >= top + len(shown):
                top += 1
    top = max(0, min(top, last_top()))
    if 0 < top < last_top() and not body[top].text and body[top + 1].style is Style.NODE:
        top += 1                         # not the blank line between two blocks: the next one
    return top


def page_selection(body: list[Row], current: tuple[str, str] | None, rows_: int
                   ) -> tuple[str, str] | None:
    """The watcher about ``rows_`` screen rows away from ``current`` (a page up or down)."""
    keyed = [(i, r.key) for i, r in enumerate(body) if r.key is not None]
    if not keyed:
        return None
    at = next((i for i, k in keyed if k == current), None)
    if at is None:
        return keyed[0][1] if rows_ >= 0 else keyed[-1][1]
    target = at + rows_
    if rows_ >= 0:
        return next((k for i, k in keyed if i >= target), keyed[-1][1])
    return next((k for i, k in reversed(keyed) if i <= target), keyed[0][1])


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
    for name in node_names(model, view):
        node = model.nodes[name]
        watchers = {}
        for group in visible_groups(node, view):
            agg = group.aggregate.data if group.aggregate else {}
            watchers[group.name] = {
                "state": group_word(group) or None, "trouble": in_trouble(agg),
                "aggregate": group.aggregate.data if group.aggregate else None,
                "processes": [s.data for s in ordered_processes(group, view)],
            }
        entry: dict[str, Any] = {"node": node.stats.data if node.stats else None,
                                 "watchers": watchers}
        if node.degraded is not None:              # through a proxy above its ceiling
            entry["degraded"] = node.degraded.data
        if view.shows_group(SOCKETS):
            entry["sockets"] = {
                "aggregate": node.sockets.aggregate.data if node.sockets.aggregate else None,
                "sockets": [node.sockets.items[fd].data for fd in sorted(node.sockets.items)],
            }
        out[name] = entry
    return {"nodes": out}
