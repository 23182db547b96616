"""How a state shows on the pages: the badge's word, its tone and its tooltip, and a node's
health from its watchers' troubles. Pure (the templates call these as globals).

A badge is green only when nothing is wrong. A watcher's state is Circus 0.19's word
(``active`` for a watcher whose processes crash in a loop), so the badge follows circusd's
``trouble`` first:

=================================== ========== ======
watcher                              word       tone
=================================== ========== ======
``fatal`` (state or trouble)         fatal      bad (red)
trouble ``backoff`` (a crash loop)   backoff    warn (amber)
trouble ``exited`` (ended in error)  exited     warn (amber)
active, no trouble                   active     ok (green)
starting, stopping                   the state  busy (blue)
stopped                              stopped    idle (grey)
=================================== ========== ======

Processes: running ok; starting, stopping busy; backoff warn; exited warn (idle when it ended
with exit code 0); fatal bad; anything else idle. Nodes (the connection): active ok,
unresponsive warn, not_available bad.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

__all__ = ["Badge", "watcher_badge", "process_badge", "node_badge", "Health", "node_health",
           "TROUBLES"]

#: circusd's ``trouble`` values, worst first
TROUBLES = ("fatal", "backoff", "exited")


@dataclass(frozen=True)
class Badge:
    word: str
    tone: str                 # ok, warn, bad, busy, idle
    title: str = ""


def watcher_badge(state: Any, trouble: Any = None, reason: Any = "") -> Badge:
    state = str(state or "unknown")
    why = str(reason or "")
    if trouble == "fatal" or state == "fatal":
        return Badge("fatal", "bad", why or "circusd gave up on this watcher")
    if trouble == "backoff":
        return Badge("backoff", "warn", f"{state}, but " + (why or "processes wait to be "
                                                             "respawned after failing"))
    if trouble == "exited":
        return Badge("exited", "warn", f"{state}, but " + (why or "processes ended with an "
                                                            "error and are not respawned"))
    if state == "active":
        return Badge("active", "ok", why)
    if state in ("starting", "stopping"):
        return Badge(state, "busy", why)
    return Badge(state.replace("_", " "), "idle", why)


def process_badge(state: Any, last_exit: Any = None) -> Badge:
    state = str(state or "unknown")
    tone = {"running": "ok", "starting": "busy", "stopping": "busy", "backoff": "warn",
            "fatal": "bad"}.get(state, "idle")
    if state == "exited" and last_exit not in (0, None):
        tone = "warn"
    return Badge(state.replace("_", " "), tone)


def node_badge(state: Any) -> Badge:
    state = str(state or "unknown")
    return Badge(state.replace("_", " "),
                 {"active": "ok", "unresponsive": "warn", "not_available": "bad"}.get(state,
                                                                                     "idle"))


@dataclass(frozen=True)
class Health:
    """What is wrong on one node: ``troubled`` is ``[(watcher, trouble, reason)]``, worst
    first then by name; ``tone`` ok (nothing), warn (backoff/exited only) or bad (a fatal)."""

    troubled: tuple[tuple[str, str, str], ...]

    @property
    def tone(self) -> str:
        if any(t == "fatal" for _, t, _ in self.troubled):
            return "bad"
        return "warn" if self.troubled else "ok"

    @property
    def counts(self) -> list[tuple[str, int]]:
        """``[(trouble, how many)]`` in :data:`TROUBLES` order, only those present."""
        return [(t, n) for t in TROUBLES
                if (n := sum(1 for _, kind, _ in self.troubled if kind == t))]

    @property
    def summary(self) -> str:
        """``healthy`` or ``1 fatal, 2 in backoff``."""
        if not self.troubled:
            return "healthy"
        words = {"fatal": "fatal", "backoff": "in backoff", "exited": "exited"}
        return ", ".join(f"{n} {words[t]}" for t, n in self.counts)


def node_health(details: Mapping[str, Any] | None,
                statuses: Mapping[str, Any] | None = None) -> Health:
    """From a ``status`` reply's ``details`` (``{name: {state, reason, trouble}}``) and
    ``statuses`` (``{name: state}``: a fatal state counts even without ``trouble``)."""
    found: dict[str, tuple[str, str]] = {}
    for name, info in (details or {}).items():
        if not isinstance(info, Mapping):
            continue
        kind = info.get("trouble") or ("fatal" if info.get("state") == "fatal" else None)
        if kind in TROUBLES:
            found[str(name)] = (kind, str(info.get("reason") or ""))
    for name, state in (statuses or {}).items():
        if state == "fatal" and str(name) not in found:
            found[str(name)] = ("fatal", "")
    order = {t: i for i, t in enumerate(TROUBLES)}
    rows: Iterable[tuple[str, str, str]] = ((n, k, r) for n, (k, r) in found.items())
    return Health(tuple(sorted(rows, key=lambda row: (order[row[1]], row[0].lower()))))
