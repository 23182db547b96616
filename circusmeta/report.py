"""What circusmeta prints of a fan-out's results, as text (pure: no sockets, no clock).

Every line an operator reads is keyed by node. The rules:

- an error reply is ``NODE: error: REASON``, never ``ok``; a reason that carries the last output
  lines of a process (``not_ready``, ``spawn_failed``) prints them under it, one
  ``  NODE/WATCHER | LINE`` each, like ``tail``;
- a ``warning`` in an ok reply (``decr`` past zero) is a ``NODE: warning: ...`` line of its own;
  so is an ok to a waiting start, restart or reload that started no process and kept none;
- a node that could not be asked is ``NODE: STATE: REASON`` (``not_available``,
  ``unresponsive``), the reason naming the endpoint;
- ``status``, ``list``, ``stats`` and ``nodes`` are aligned tables with a header; ``status`` has
  a TROUBLE column (``fatal``, ``backoff``, ``exited`` or ``-``), ``nodes`` the count of
  watchers in trouble, and ``status NAME`` adds the watcher's processes and its last output
  lines under its row.

Colour (the state and trouble cells, the trouble count) only when the caller says so: on a
terminal without ``NO_COLOR`` (:func:`circus.stats.health.use_colour`).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

from circus.stats.health import Tone, in_trouble, paint, tone
from circus.stats.units import human_age, human_bytes

from .fanout import NodeResult

__all__ = ["table", "status_lines", "list_lines", "stats_lines", "node_lines",
           "output_line", "nodes_table", "trouble_of", "LAST_LINES_MARK"]

#: where circusd's reason of a failed start gives the process's last output lines
LAST_LINES_MARK = "; last output lines:\n"

def table(rows: Sequence[Sequence[Any]], colour: bool = False) -> list[str]:
    """Rows of cells (a string, or ``(text, tone)`` to colour) as aligned lines; the last
    column is not padded."""
    plain = [[c[0] if isinstance(c, tuple) else str(c) for c in row] for row in rows]
    if not plain:
        return []
    width = [max(len(row[i]) for row in plain if i < len(row)) for i in range(len(plain[0]))]
    lines = []
    for row, texts in zip(rows, plain):
        cells = []
        for i, (cell, text) in enumerate(zip(row, texts)):
            padded = text if i == len(texts) - 1 else text.ljust(width[i])
            if isinstance(cell, tuple) and colour:
                padded = paint(text, cell[1], True) + padded[len(text):]
            cells.append(padded)
        lines.append("  ".join(cells).rstrip())
    return lines


def _word_cell(word: str) -> tuple[str, Tone]:
    return word, tone(word)


def output_line(node: str, entry: Mapping[str, Any], watcher: str | None = None) -> str:
    """One captured output line as ``NODE/WATCHER | LINE`` (``tail``, ``status NAME``)."""
    name = entry.get("watcher") or watcher or "?"
    cut = f" [... {entry['cut']} bytes in all]" if isinstance(entry.get("cut"), int) else ""
    return f"{node}/{name} | {entry.get('line', '')}{cut}"


def trouble_of(detail: Any) -> str:
    return in_trouble(detail) or "-"


# -- status ----------------------------------------------------------------------------------------

STATUS_HEADER = ("NODE", "WATCHER", "STATE", "TROUBLE", "REASON")


def _process_line(p: Mapping[str, Any], now: Any) -> str:
    parts = [f"process {p.get('wid')}:"]
    parts.append(f"pid {p['pid']}" if p.get("pid") else "no pid")
    parts.append(str(p.get("state", "?")))
    started = p.get("started")
    if isinstance(started, (int, float)) and isinstance(now, (int, float)) and p.get("pid"):
        parts.append(f"up {human_age(max(0.0, now - started))}")
    restarts = p.get("restarts")
    if isinstance(restarts, int):
        parts.append(f"{restarts} restart{'s' if restarts != 1 else ''}")
    if p.get("last_exit") is not None:
        parts.append(f"last exit {p['last_exit']}")
    text = "  ".join(parts)
    return text + (f"  ({p['reason']})" if p.get("reason") else "")


def status_lines(results: Mapping[str, NodeResult], colour: bool = False,
                 name: str | None = None) -> tuple[list[str], int]:
    """The status table of the nodes that answered ok (the others are the caller's), and how
    many watchers are in trouble. ``status NAME`` replies (one watcher: ``status`` holds its
    state) get their processes and last output lines under their row."""
    rows: list[list[Any]] = [list(STATUS_HEADER)]
    under: dict[int, list[str]] = {}          # row index -> lines printed under it
    troubled = 0
    for node, r in results.items():
        if not r.ok or r.reply is None:
            continue
        reply = r.reply
        if "statuses" in reply:
            details = reply.get("details") or {}
            for watcher, state in sorted(reply["statuses"].items()):
                detail = details.get(watcher) or {}
                trouble = trouble_of({"state": state, **detail})
                troubled += trouble != "-"
                rows.append([node, watcher, _word_cell(str(state)), _word_cell(trouble),
                             detail.get("reason") or ""])
            continue
        state = reply.get("state") or reply.get("status")
        trouble = trouble_of({"state": state, "trouble": reply.get("trouble")})
        troubled += trouble != "-"
        watcher = name or "?"
        rows.append([node, watcher, _word_cell(str(state)), _word_cell(trouble),
                     reply.get("reason") or ""])
        extra = [f"  {_process_line(p, reply.get('time'))}" for p in reply.get("processes") or ()
                 if isinstance(p, Mapping)]
        extra += [f"  {output_line(node, entry, watcher)}"
                  for entry in reply.get("last_lines") or () if isinstance(entry, Mapping)]
        under[len(rows) - 1] = extra
    if len(rows) == 1:
        return [], 0
    lines = table(rows, colour)
    out = []
    for index, line in enumerate(lines):
        out.append(line)
        out += under.get(index, [])
    return out, troubled


def list_lines(results: Mapping[str, NodeResult]) -> list[str]:
    rows: list[list[Any]] = [["NODE", "WATCHER"]]
    for node, r in results.items():
        if r.ok and r.reply is not None:
            if "watchers" in r.reply:
                rows += [[node, str(w)] for w in r.reply["watchers"]]
            elif "pids" in r.reply:
                rows += [[node, ",".join(str(p) for p in r.reply["pids"] or ())]]
    return table(rows) if len(rows) > 1 else []


def stats_lines(results: Mapping[str, NodeResult]) -> list[str]:
    rows: list[list[Any]] = [["NODE", "WATCHER", "PID", "CPU%", "MEM%", "RSS", "AGE"]]
    for node, r in results.items():
        if not r.ok or r.reply is None:
            continue
        reply = r.reply
        infos = reply.get("infos")
        if infos is None and "info" in reply:                # stats NAME
            infos = {reply.get("name", "?"): reply.get("info") or {}}
        for watcher, per_pid in sorted((infos or {}).items()):
            for pid, info in sorted((per_pid or {}).items(), key=lambda kv: str(kv[0])):
                if not isinstance(info, Mapping):
                    rows.append([node, watcher, str(pid), str(info), "", "", ""])
                    continue
                age = info.get("age")
                rows.append([node, watcher, str(pid), str(info.get("cpu", "-")),
                             str(info.get("mem", "-")),
                             human_bytes(info.get("rss", info.get("mem_info1"))),
                             human_age(age) if isinstance(age, (int, float)) else str(age)])
    return table(rows) if len(rows) > 1 else []


# -- one node's result ----------------------------------------------------------------------------

def _reason_lines(node: str, reason: str, watcher: str | None) -> list[str]:
    """An error's reason: the first line, then the rest indented; a failed start's last
    output lines as ``NODE/WATCHER | LINE``."""
    head, mark, tail = reason.partition(LAST_LINES_MARK)
    if mark:
        lines = [f"{node}: error: {head}; its last output lines:"]
        lines += [f"  {node}/{watcher or '?'} | {line[2:] if line.startswith('  ') else line}"
                  for line in tail.splitlines()]
        return lines
    first, *more = reason.splitlines() or [""]
    return [f"{node}: error: {first}", *(f"  {line}" for line in more)]


def _nothing_runs(command: str | None, reply: Mapping[str, Any]) -> bool:
    """An ok to a waiting start, restart or reload that started no process and kept none (a
    watcher already retrying in backoff answers so): said, not passed for a success."""
    info = reply.get("info")
    if command not in ("start", "restart", "reload") or not isinstance(info, Mapping):
        return False
    return info.get("started") == [] and info.get("kept") == [] and not info.get("stopped")


def node_lines(node: str, r: NodeResult, render: Callable[[Mapping[str, Any]], str],
               watcher: str | None = None, command: str | None = None) -> list[str]:
    """What one node made of a command: ``render(reply)`` for an ok reply (one line after the
    node's name, or indented lines under it), the error, or why there is no reply."""
    if r.reply is None:
        return [f"{node}: {r.state}: {r.reason}"]
    if r.refused or r.unconfirmed:
        return _reason_lines(node, r.reason, watcher)
    text = render(r.reply)
    body = text.splitlines() or [""]
    lines = [f"{node}: {body[0]}"] if len(body) == 1 else [f"{node}:", *(f"  {b}" for b in body)]
    warning = r.reply.get("warning")
    if isinstance(warning, str) and warning:
        lines.append(f"{node}: warning: {warning}")
    if _nothing_runs(command, r.reply):
        lines.append(f"{node}: warning: no process was started and none runs (circusmeta "
                     f"status {watcher or 'NAME'} --node {node} says why)")
    return lines


# -- nodes ----------------------------------------------------------------------------------------

_NODE_TONES = {"not_available": Tone.BAD, "unresponsive": Tone.WARN}
NODES_HEADER = ("NODE", "STATE", "ADDRESS", "TAGS", "LOAD", "MEMORY", "WATCHERS", "TROUBLE",
                "PROCS", "RTT")


def nodes_table(rows: Iterable[Mapping[str, Any]], colour: bool = False) -> list[str]:
    """``nodes`` rows (as :func:`circusmeta.control.node_row` makes them) as a table."""
    out: list[list[Any]] = [list(NODES_HEADER)]
    for row in rows:
        info = row.get("info") or {}
        mem = (f"{human_bytes(info['mem_total'] - info['mem_available'])}/"
               f"{human_bytes(info['mem_total'])}" if info.get("mem_total") else "-")
        troubled = row.get("trouble")
        if isinstance(troubled, Mapping):
            count = len(troubled)
            trouble: Any = (str(count), Tone.BAD) if count else "0"
        else:
            trouble = "-"
        name = row["node"] + (f" (reports {row['reported_name']!r})"
                              if row.get("reported_name") else "")
        out.append([name, (row["state"], _NODE_TONES.get(row["state"], Tone.UNKNOWN)),
                    row["endpoint"], ",".join(row.get("tags") or ()) or "-",
                    " ".join(f"{x:.2f}" for x in info.get("load", ())) or "-", mem,
                    str(info.get("watchers", "-")), trouble, str(info.get("processes", "-")),
                    f"{row['rtt'] * 1000:.1f}ms" if row.get("rtt") is not None else "-"])
    return table(out, colour)
