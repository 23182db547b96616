"""Pool-wide operations run from the dashboard (a rolling restart, an ``add`` with placement)
as *jobs*: what each node is at, and the banner that tells how it ended. Pure (no I/O, no
clock: times are given); :mod:`.poolactions` runs them.

A job has an *item* per node (``node:watcher`` for a rolling operation, the node for an add),
each ``pending`` → ``running`` → ``done`` or ``failed`` (with the reason), or ``not_done`` when
the job stopped before it. Every change bumps the job's ``seq`` and is kept until
:meth:`Job.take_changes` hands it to the pages::

    {"type": "job", "id", "seq", "state", "step", "total_steps", "counts": {state: n},
     "items": {label: {"node", "state", "reason", "step", "note"}},      # the changed ones
     "banner": {...}}                                                     # once it ended

The banner says the truth of the run: green only when every item is done; red when one failed
(where it stopped, what was done, what was not, and how to resume); amber for an ``ok`` with a
caveat (a node that could not be asked whether it already had the watcher).
"""
from __future__ import annotations

import shlex
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from .watchers import natural_key

__all__ = ["Job", "Item", "Jobs", "PENDING", "RUNNING", "DONE", "FAILED", "NOT_DONE", "STATES",
           "KEEP"]

PENDING, RUNNING, DONE, FAILED, NOT_DONE = "pending", "running", "done", "failed", "not_done"
STATES = (PENDING, RUNNING, DONE, FAILED, NOT_DONE)
#: finished jobs kept (the oldest goes first)
KEEP = 50


@dataclass
class Item:
    label: str                     # node:watcher, or the node
    node: str
    state: str = PENDING
    reason: str = ""
    step: int | None = None
    note: str = ""                 # what else to know (why the node was chosen)

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "state": self.state, "reason": self.reason,
                "step": self.step, "note": self.note}


@dataclass
class Job:
    id: str
    kind: str                      # rolling or add
    action: str                    # restart, reload, add...
    target: str                    # the watcher
    user: str
    started: float                 # wall-clock time
    params: dict[str, Any] = field(default_factory=dict)
    items: dict[str, Item] = field(default_factory=OrderedDict)
    state: str = RUNNING           # running, done, failed, refused
    phase: str = "planning"        # planning, running, ended
    step: int = 0
    total_steps: int = 0
    finished: float | None = None
    banner: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    seq: int = 0
    _dirty: set[str] = field(default_factory=set, repr=False)
    _head: bool = field(default=True, repr=False)

    # -- changes -----------------------------------------------------------------------------------

    def _touch(self, *labels: str) -> None:
        self.seq += 1
        self._dirty.update(labels)
        self._head = True

    def plan(self, items: Iterable[tuple[str, str]], total_steps: int = 1,
             warnings: Iterable[str] = ()) -> None:
        """The items, in order (``(label, node)``), all pending."""
        for label, node in items:
            self.items[label] = Item(label, node)
        self.total_steps = total_steps
        self.warnings.extend(warnings)
        self.phase = "running"
        self._touch(*self.items)

    def add_item(self, label: str, node: str, note: str = "") -> Item:
        item = self.items[label] = Item(label, node, note=note)
        self._touch(label)
        return item

    def running(self, labels: Iterable[str], step: int | None = None) -> None:
        labels = [label for label in labels if label in self.items]
        for label in labels:
            self.items[label].state = RUNNING
            self.items[label].step = step
        if step is not None:
            self.step = step
        self._touch(*labels)

    def finished_item(self, label: str, ok: bool, reason: str = "", note: str = "") -> None:
        item = self.items[label]
        item.state = DONE if ok else FAILED
        item.reason = "" if ok else (reason or "failed")
        if note:
            item.note = note
        self._touch(label)

    def refuse(self, reason: str, now: float) -> None:
        """Nothing was done: the whole job is refused (a name in use, no node to place on)."""
        self.state, self.phase, self.finished = "refused", "ended", now
        self.banner = {"kind": "error", "title": f"{self._what()}: refused", "reason": reason,
                       "summary": "", "lines": []}
        self._touch()

    def end(self, now: float) -> None:
        """The run is over: what was never tried is ``not_done``; the banner says how it went."""
        left = [i for i in self.items.values() if i.state in (PENDING, RUNNING)]
        for item in left:
            item.state = NOT_DONE
        failed = any(i.state == FAILED for i in self.items.values())
        self.state = "failed" if failed or left else "done"
        self.phase, self.finished = "ended", now
        self.banner = self._rolling_banner() if self.kind == "rolling" else self._add_banner()
        self._touch(*(i.label for i in left))

    def take_changes(self) -> dict[str, Any] | None:
        """The message for the pages since the last call (None: nothing changed)."""
        if not self._head and not self._dirty:
            return None
        items = {label: self.items[label].to_dict() for label in self._dirty
                 if label in self.items}
        self._dirty.clear()
        self._head = False
        return self.message(items)

    # -- views -------------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATES}
        for item in self.items.values():
            out[item.state] += 1
        return out

    def message(self, items: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The job as the pages and the API see it (``items``: only these; default all)."""
        return {"type": "job", "id": self.id, "seq": self.seq, "kind": self.kind,
                "action": self.action, "target": self.target, "user": self.user,
                "started": self.started, "finished": self.finished, "state": self.state,
                "phase": self.phase, "step": self.step, "total_steps": self.total_steps,
                "params": self.params, "warnings": list(self.warnings), "counts": self.counts(),
                "items": {k: i.to_dict() for k, i in self.items.items()} if items is None
                else dict(items),
                "order": list(self.items) if items is None else None,
                "headline": self.headline(), "banner": self.banner}

    def headline(self) -> str:
        """What it is at, in a few words (the banner's title once it ended)."""
        if self.banner is not None:
            return str(self.banner.get("title", ""))
        if self.phase == "planning":
            return f"{self._what()}: " + ("finding the nodes that have it"
                                          if self.kind == "rolling" else
                                          "asking the nodes where it can go")
        if self.kind == "rolling":
            return (f"{self._what()}: step {self.step} of {self.total_steps} (batch "
                    f"{self.params.get('batch') or 1})")
        return f"{self._what()}: starting on " + ", ".join(
            i.node for i in self.items.values() if i.state == RUNNING)

    def _what(self) -> str:
        if self.kind == "rolling":
            return f"rolling {self.action} of {self.target}"
        return f"{self.action} {self.target}"

    def _took(self) -> str:
        took = (self.finished or self.started) - self.started
        return f"{took:.1f} s" if took < 60 else f"{int(took // 60)} min {took % 60:.0f} s"

    def _by(self, state: str) -> list[Item]:
        return [i for i in self.items.values() if i.state == state]

    def _rolling_banner(self) -> dict[str, Any]:
        done, failed, left = self._by(DONE), self._by(FAILED), self._by(NOT_DONE)
        batch = self.params.get("batch") or 1
        lines = [f"{w}" for w in self.warnings]
        if self.state == "done":
            steps = f"{self.total_steps} step{'s' if self.total_steps != 1 else ''}"
            return {"kind": "warning" if self.warnings else "ok",
                    "title": f"{self._what()}: done on {_n(len(done), 'node')}",
                    "summary": f"{steps} of {batch} in {self._took()}", "reason": "",
                    "lines": lines}
        where = f"stopped at step {self.step} of {self.total_steps}" if self.step else \
            "stopped before the first step"
        reasons = [f"{i.node}: {_first(i.reason)}" for i in failed]
        resume = sorted({i.node for i in failed + left}, key=natural_key)
        lines.append("done: " + (", ".join(i.node for i in done) or "none"))
        if left:
            lines.append("not done: " + ", ".join(i.node for i in left))
        cli = shlex.join(["circusmeta", self.action, "--rolling", self.target, "--batch",
                          str(batch), *[w for n in resume for w in ("--node", n)]])
        if resume:
            lines.append(f"to resume once {', '.join(i.node for i in failed) or 'it'} is "
                         f"fixed: resume here (the nodes failed and not done: "
                         f"{', '.join(resume)}), or run: {cli}")
        return {"kind": "error", "title": f"{self._what()}: {where}",
                "summary": f"{_n(len(failed), 'node')} failed, {len(done)} done, "
                           f"{len(left)} not done",
                "reason": "; ".join(reasons) or "interrupted", "lines": lines,
                "resume": {"nodes": resume, "cli": cli} if resume else None}

    def _add_banner(self) -> dict[str, Any]:
        done, failed = self._by(DONE), self._by(FAILED)
        placed = [f"{i.node} ({i.note})" if i.note else i.node for i in done]
        if self.state == "done":
            return {"kind": "warning" if self.warnings else "ok",
                    "title": f"{self._what()}: placed on {', '.join(i.node for i in done)}",
                    "summary": "started" if self.params.get("start") else "added, not started",
                    "reason": "; ".join(placed), "lines": list(self.warnings)}
        lines = [f"{i.node}: {line}" for i in failed for line in i.reason.splitlines()[1:]]
        return {"kind": "error",
                "title": f"{self._what()}: failed on {', '.join(i.node for i in failed)}",
                "summary": f"placed on {', '.join(i.node for i in done)}" if done else "",
                "reason": "; ".join(f"{i.node}: {_first(i.reason)}" for i in failed),
                "lines": [*lines, *self.warnings]}


def _first(text: str) -> str:
    return (str(text).splitlines() or [""])[0]


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


Listener = Callable[[dict[str, Any]], None]


class Jobs:
    """The jobs of this circushttpd (the running ones and the last :data:`KEEP` finished), and
    the pages listening to their changes."""

    def __init__(self, keep: int = KEEP, ids: Callable[[], str] | None = None) -> None:
        import secrets
        self.keep = keep
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.listeners: set[Listener] = set()
        self._ids = ids or (lambda: secrets.token_hex(4))

    def new(self, kind: str, action: str, target: str, user: str, now: float,
            params: Mapping[str, Any] | None = None) -> Job:
        job_id = self._ids()
        while job_id in self.jobs:
            job_id = self._ids()
        job = Job(job_id, kind, action, target, user, now, dict(params or {}))
        self.jobs[job_id] = job
        self._trim()
        return job

    def _trim(self) -> None:
        ended = [j for j in self.jobs.values() if j.phase == "ended"]
        for job in ended[:max(0, len(ended) - self.keep)]:
            del self.jobs[job.id]

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def forget(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)

    def running_on(self, target: str) -> Job | None:
        """A job still running on the watcher ``target`` (names compared without case)."""
        key = target.lower()
        return next((j for j in self.jobs.values()
                     if j.phase != "ended" and j.target.lower() == key), None)

    def recent(self) -> list[Job]:
        return list(reversed(self.jobs.values()))

    def publish(self, job: Job) -> None:
        """Tell the listeners what changed in ``job`` since the last time."""
        message = job.take_changes()
        if message is None:
            return
        if job.phase == "ended":
            self._trim()
        for listener in list(self.listeners):
            try:
                listener(message)
            except Exception:                # one broken page must not stop the others
                self.listeners.discard(listener)
