"""``circusctl status``: what runs and what is wrong, and an exit status that says it.

Two views of the same reply:

* **plain** (0.19's lines, for scripts; the default when stdout is not a terminal, or
  ``--plain``): ``name: state`` per watcher, sorted; ``status NAME`` prints the state word alone.
  The first word after ``name: `` is always 0.19's state word (``active``, ``stopped``,
  ``fatal``...); what is wrong follows in parentheses: ``crasher: active (backoff: 1 process(es)
  in backoff: exit code 1; respawn in 10.44 s)``.
* **table** (the default on a terminal, or ``--table``): one aligned row per watcher with its
  state (the trouble word when there is one: ``backoff``, ``exited``, ``fatal``), processes
  running of wanted, pids, uptime (of its youngest process), restarts and the reason;
  ``status NAME`` adds one row per process and, for a watcher in trouble, its last output
  lines, indented.

Exit status (LSB, as ``systemctl status`` and ``supervisorctl status``): 0 when every watcher
shown is ``active`` with no trouble, 3 otherwise (one stopped, starting, fatal, in backoff...,
or an error reply).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from circus.cli.ctl_color import PLAIN, Paint
from circus.cli.ctl_text import Cell, columns, duration, exit_text, output_line

__all__ = ["status_exit", "annotation", "plain_text", "watchers_table", "watcher_detail",
           "process_lines", "processes_table", "HEALTHY", "UNHEALTHY"]

HEALTHY, UNHEALTHY = 0, 3
Reply = Mapping[str, Any]
_MAX_PIDS = 4


def _healthy(state: Any, trouble: Any, completed: Any = None) -> bool:
    """Active with no trouble, or a job that completed (every process ended with exit 0)."""
    return (state == "active" and not trouble) or (state == "stopped" and completed is True)


def status_exit(reply: Reply) -> int:
    """0 if every watcher in a ``status`` reply is active with no trouble (or a job that
    completed), else 3."""
    if reply.get("status") == "error":
        return UNHEALTHY
    if "statuses" in reply:
        details = reply.get("details") or {}
        for name, state in (reply.get("statuses") or {}).items():
            detail = details.get(name) if isinstance(details.get(name), Mapping) else {}
            if not _healthy(detail.get("state", state), detail.get("trouble"),
                            detail.get("completed")):
                return UNHEALTHY
        return HEALTHY
    state = reply.get("state") or reply.get("status")
    return HEALTHY if _healthy(state, reply.get("trouble"), reply.get("completed")) \
        else UNHEALTHY


def annotation(state: Any, reason: Any, trouble: Any) -> str:
    """`` (backoff: why)``, `` (why)`` or ``""``: what the state word does not say."""
    reason = str(reason or "")
    if trouble and trouble != state:
        return f" ({trouble}: {reason})" if reason else f" ({trouble})"
    return f" ({reason})" if reason else ""


def _shown(state: Any, trouble: Any) -> str:
    """The word a person reads: the trouble when there is one, else the state."""
    return str(trouble or state)


def _line(state: Any, reason: Any, trouble: Any, paint: Paint) -> str:
    return paint.state(_shown(state, trouble), str(state)) + annotation(state, reason, trouble)


def plain_text(reply: Reply, paint: Paint = PLAIN) -> str:
    """0.19's text: ``name: state`` lines, or the state alone for one watcher."""
    if "statuses" in reply:
        statuses = reply.get("statuses") or {}
        details = reply.get("details") or {}
        lines = []
        for name in sorted(statuses):
            detail = details.get(name) if isinstance(details.get(name), Mapping) else {}
            state = detail.get("state") or statuses[name]
            lines.append(f"{name}: " + _line(state, detail.get("reason"), detail.get("trouble"),
                                             paint))
        return "\n".join(lines)
    state = reply.get("state") or reply.get("status")
    return _line(state, reply.get("reason"), reply.get("trouble"), paint)


def _live(processes: Sequence[Any]) -> list[Mapping[str, Any]]:
    return [p for p in processes if isinstance(p, Mapping) and p.get("pid")]


def _pids(processes: Sequence[Any]) -> str:
    pids = [str(p["pid"]) for p in _live(processes)]
    if len(pids) > _MAX_PIDS:
        return ", ".join(pids[:_MAX_PIDS - 1]) + f", +{len(pids) - _MAX_PIDS + 1} more"
    return ", ".join(pids)


def _uptime(processes: Sequence[Any], now: Any) -> str:
    """The uptime of the youngest live process: how long the watcher has run as it is."""
    if not isinstance(now, (int, float)):
        return "-"
    started = [p["started"] for p in _live(processes) if isinstance(p.get("started"), (int, float))]
    return duration(now - max(started)) if started else "-"


def watchers_table(statuses: Reply, processes: Reply | None, paint: Paint = PLAIN) -> list[str]:
    """The table of ``status`` without a name: ``statuses`` is the status reply, ``processes``
    the ``processes`` reply (pids, uptime, restarts; None: not known)."""
    names = sorted(statuses.get("statuses") or {})
    details = statuses.get("details") or {}
    records = (processes or {}).get("watchers") or {}
    now = (processes or {}).get("time")
    rows = []
    for name in names:
        detail = details.get(name) if isinstance(details.get(name), Mapping) else {}
        rec = records.get(name) if isinstance(records.get(name), Mapping) else {}
        state = detail.get("state") or statuses["statuses"][name]
        trouble = detail.get("trouble")
        procs = rec.get("processes") or []
        shown = _shown(state, trouble)
        running = sum(1 for p in procs if isinstance(p, Mapping) and p.get("state") == "running")
        count = "-" if state == "stopped" or not rec else f"{running}/{rec.get('numprocesses')}"
        rows.append([Cell(name, paint.bold), Cell(shown, lambda t, s=shown: paint.state(s, t)),
                     Cell(count), Cell(_pids(procs)), Cell(_uptime(procs, now)),
                     Cell(rec.get("restarts") if rec else None),
                     Cell(detail.get("reason"), blank="")])
    return columns(rows, ["WATCHER", "STATE", "PROCS", "PIDS", "UPTIME", "RESTARTS", "REASON"],
                   right=(5,), header_style=paint.dim)


def _process_row(p: Mapping[str, Any], now: Any, paint: Paint) -> list[Cell]:
    state = str(p.get("state"))
    started = p.get("started")
    uptime = duration(now - started) if p.get("pid") and isinstance(started, (int, float)) \
        and isinstance(now, (int, float)) else "-"
    return [Cell(p.get("wid")), Cell(p.get("pid")),
            Cell(state, lambda t, s=state: paint.state(s, t)), Cell(uptime),
            Cell(p.get("restarts")), Cell(exit_text(p.get("last_exit"))),
            Cell(p.get("reason"), blank="")]


_PROCESS_HEADER = ["WID", "PID", "STATE", "UPTIME", "RESTARTS", "LAST EXIT", "REASON"]


def process_lines(processes: Sequence[Any], now: Any, paint: Paint = PLAIN,
                  indent: str = "  ") -> list[str]:
    """One row per process: wid, pid, state, uptime, restarts, last exit, reason."""
    rows = [_process_row(p, now, paint) for p in processes if isinstance(p, Mapping)]
    if not rows:
        return []
    return columns(rows, _PROCESS_HEADER, right=(0, 1, 4), indent=indent, header_style=paint.dim)


def processes_table(reply: Reply, paint: Paint = PLAIN) -> list[str]:
    """``circusctl processes``: every process of every watcher, one row each; a watcher with
    none gets one row with its state and reason."""
    now = reply.get("time")
    rows = []
    for name, rec in sorted((reply.get("watchers") or {}).items()):
        if not isinstance(rec, Mapping):
            continue
        procs = [p for p in rec.get("processes") or () if isinstance(p, Mapping)]
        for p in procs:
            rows.append([Cell(name, paint.bold), *_process_row(p, now, paint)])
        if not procs:
            shown = _shown(rec.get("state"), rec.get("trouble"))
            rows.append([Cell(name, paint.bold), Cell(None), Cell(None),
                         Cell(shown, lambda t, s=shown: paint.state(s, t)), Cell(None),
                         Cell(rec.get("restarts")), Cell(None), Cell(rec.get("reason"), blank="")])
    return columns(rows, ["WATCHER", *_PROCESS_HEADER], right=(1, 2, 5), header_style=paint.dim)


def watcher_detail(name: str, reply: Reply, paint: Paint = PLAIN) -> list[str]:
    """``status NAME`` on a terminal: the plain line with the name, its processes, and for a
    watcher in trouble its last output lines."""
    lines = [f"{paint.bold(name)}: " + plain_text(reply, paint)]
    lines += process_lines(reply.get("processes") or [], reply.get("time"), paint)
    last = [entry for entry in reply.get("last_lines") or () if isinstance(entry, Mapping)]
    if last:
        lines.append("  last output lines:")
        lines += ["    " + output_line(entry) for entry in last]
    return lines
