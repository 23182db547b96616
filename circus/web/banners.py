"""What an action's reply means, as the banner the page shows after it: the node's reply is
the truth, not the click.

::

    banner("add bogus", "add", reply={"status": "error", "reason": "...", "code": "spawn_failed"},
           state="active", took=0.1)
    -> {"kind": "error", "title": "add bogus: failed", "reason": "bogus: 1 of 1 process(es)
        could not be started: ...", "lines": [], "summary": "", "code": "spawn_failed"}

``kind`` is ``error`` (red) for an error reply or no reply at all, ``warning`` (amber) for an ok
reply that carries a ``warning`` (a decr past zero) or that changed nothing it was asked to
(an incr of a singleton), ``ok`` (green) only for an ok reply. ``reason`` is the first line of
what the node said; ``lines`` the rest (a failed start's last output lines), shown as they
are; ``summary`` says what the reply reports was done, in an operator's words. Pure.
"""
from __future__ import annotations

import textwrap
from typing import Any, Mapping, Sequence

__all__ = ["banner", "summary", "MAX_LINES"]

#: the error codes of an ``add`` whose watcher was added but could not start
ADDED_BUT_FAILED = ("spawn_failed", "not_ready")
#: output lines kept in a banner (a failed start sends its last 10)
MAX_LINES = 20
_LINE = 300


def _pids(pids: Sequence[Any]) -> str:
    shown = [str(p) for p in list(pids)[:8]]
    more = len(pids) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _n(count: int, word: str = "process") -> str:
    return f"{count} {word}" + ("" if count == 1 else ("es" if word.endswith("s") else "s"))


def _split(text: str) -> tuple[str, list[str]]:
    first, _, rest = str(text).strip("\n").partition("\n")
    lines = textwrap.dedent(rest).splitlines() if rest else []
    lines = [line[:_LINE] for line in lines[-MAX_LINES:]]
    return first.strip(), lines


def summary(command: str, reply: Mapping[str, Any]) -> tuple[str, list[str]]:
    """What an ok ``reply`` to ``command`` says was done: a sentence, and detail lines."""
    info = reply.get("info") if isinstance(reply.get("info"), Mapping) else {}
    started = list(info.get("started") or ())
    stopped = list(info.get("stopped") or ())
    kept = list(info.get("kept") or ())
    if command == "start":
        if started:
            return f"started {_n(len(started))} ({_pids(started)})", []
        if kept:
            return f"it was already running ({_n(len(kept))})", []
        return "no process to start (it wants 0)" if info else "started", []
    if command in ("restart", "reload"):
        if stopped and started:
            return (f"replaced {_n(len(stopped))}: stopped {_pids(stopped)}; started "
                    f"{_pids(started)}"), []
        if started:
            return f"it was not running: started {_n(len(started))} ({_pids(started)})", []
        if kept:
            return (f"sent SIGHUP to {_n(len(kept))} ({_pids(kept)}): they reload "
                    "themselves (send_hup)"), []
        if stopped:
            return f"stopped {_n(len(stopped))} ({_pids(stopped)}), started none", []
        return "no process to renew", []
    if command == "stop":
        return "stopped", []
    if command in ("incr", "decr"):
        n = reply.get("numprocesses")
        return (f"it now wants {_n(n)}" if isinstance(n, int) else ""), []
    if command == "kill":
        return "the process was stopped", []
    if command == "add":
        return "added and started", []
    if command == "reloadconfig":
        changes = [str(c) for c in reply.get("changes") or ()]
        if not changes or changes == ["no change"]:
            return "no change: the configuration is what circusd runs", []
        return f"applied {_n(len(changes), 'change')}", changes[:MAX_LINES]
    return "", []


def banner(what: str, command: str, *, reply: Mapping[str, Any] | None, state: str,
           took: float, error: str | None = None) -> dict[str, Any]:
    """The banner for the action ``what`` (``"restart web"``) that ran ``command``: ``reply``
    is the node's reply (None when none came: ``state`` and ``error`` say why)."""
    out: dict[str, Any] = {"kind": "error", "title": "", "reason": "", "lines": [],
                           "summary": "", "code": None}
    if reply is None:
        if state == "unresponsive":
            out["title"] = f"{what}: no answer within {took:.0f} s"
            out["reason"] = (f"{error or 'the node did not answer'}. The command may still be "
                             "running on the node: look at the state before trying again.")
        else:
            out["title"] = f"{what}: failed: the node is {state.replace('_', ' ')}"
            out["reason"] = error or ""
        return out
    if reply.get("status") == "error":
        out["title"] = f"{what}: failed"
        if command == "add" and reply.get("code") in ADDED_BUT_FAILED:
            out["title"] = f"{what}: added, but it failed to start"
        out["reason"], out["lines"] = _split(str(reply.get("reason") or "an error reply "
                                                 "without a reason"))
        out["code"] = reply.get("code")
        return out
    done = f"{what}: done in {took:.1f} s"
    out["summary"], out["lines"] = summary(command, reply)
    warning = reply.get("warning")
    if command in ("incr", "decr") and reply.get("singleton"):
        warning = warning or ("nothing changed: this watcher is a singleton (one process at "
                              "most)")
    if warning:
        out.update(kind="warning", title=f"{done}, with a warning")
        out["reason"], more = _split(str(warning))
        out["lines"] = more + out["lines"]
        return out
    out.update(kind="ok", title=done)
    return out
