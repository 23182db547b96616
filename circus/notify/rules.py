"""Which events and lines a notification is about, the throttle, and the message text. Pure.

Nothing here reads a clock: the monotonic ``now`` (for the throttle) and the wall time of each
occurrence (for the text) are passed in, so the throttle is tested with plain numbers.

Rules:

* A notification covers the watchers it lists (case-insensitively), or every watcher, also those
  added later, when it lists none.
* Events (``events =``), from the watcher events circusd publishes: ``fatal`` (``state`` with
  state fatal: the watcher gave up), ``backoff`` (a process failed to start and is respawned after a
  delay), ``unhealthy`` (a liveness check or the watchdog failed; the process is restarted),
  ``restart`` (``respawn``: a process that had been running exited on its own and is replaced at
  once). A stop, restart or reload asked for by an operator is none of these.
* Lines (``match =``): every line a covered watcher writes on stdout or stderr is searched for the
  regex (searched by RE2, in linear time); a matching line is an occurrence of the event ``match``.
* Throttle, per notification: the first occurrence is sent at once and opens a window of
  ``throttle`` seconds. Occurrences inside the window are held back and counted (the latest few
  kept as examples); when the window ends with something held back, one message says how many and
  shows the examples, and opens the next window. So at most one message per window, and no count
  is lost. ``throttle = 0`` sends every occurrence.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Mapping

from circus.config import NotifyConfig
from circus.notify.spec import EVENT_TOPICS
from circus.protocol.limits import compile_line_pattern

__all__ = ["Occurrence", "Rule", "Throttle", "Batch", "render_text", "render_data", "KEEP"]

#: examples of held-back occurrences a message shows
KEEP = 5
#: the longest output line quoted in a message (characters)
MAX_QUOTE = 2000

_TOPIC_EVENTS = {topic: event for event, topic in EVENT_TOPICS.items()}


@dataclass(frozen=True)
class Occurrence:
    """One thing worth telling: an event of a watcher, or a line it wrote."""

    watcher: str
    event: str                 # fatal | backoff | unhealthy | restart | match
    reason: str
    time: float                # wall clock (seconds since the epoch)
    pid: int | None = None
    stream: str | None = None  # match: stdout | stderr

    def to_dict(self) -> dict[str, Any]:
        return {"watcher": self.watcher, "event": self.event, "reason": self.reason,
                "time": self.time, "pid": self.pid, "stream": self.stream}


class Rule:
    """The matching part of one ``[notify:NAME]`` section."""

    def __init__(self, cfg: NotifyConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.watchers = frozenset(w.lower() for w in cfg.watchers)
        self.regex = compile_line_pattern(cfg.match) if cfg.match else None
        self.events = frozenset(cfg.events)

    def covers(self, watcher: str) -> bool:
        return not self.watchers or watcher.lower() in self.watchers

    def wants_lines(self, watcher: str) -> bool:
        return self.regex is not None and self.covers(watcher)

    def on_event(self, watcher: str, event: str, payload: Mapping[str, Any],
                 wall: float) -> Occurrence | None:
        """The occurrence that watcher event ``event`` (the topic's last part) is, if any."""
        kind = _TOPIC_EVENTS.get(event)
        if kind is None or kind not in self.events or not self.covers(watcher):
            return None
        if kind == "fatal" and payload.get("state") != "fatal":
            return None
        when = payload.get("time")
        pid = payload.get("process_pid")
        return Occurrence(watcher, kind, str(payload.get("reason") or ""),
                          when if isinstance(when, (int, float)) else wall,
                          pid if isinstance(pid, int) else None)

    def on_line(self, watcher: str, pid: int, stream: str, line: str,
                wall: float) -> Occurrence | None:
        if self.regex is None or not self.covers(watcher) or not self.regex.search(line):
            return None
        quoted = line if len(line) <= MAX_QUOTE else line[:MAX_QUOTE] + "..."
        return Occurrence(watcher, "match", quoted, wall, pid, stream)


@dataclass(frozen=True)
class Batch:
    """What one message tells: new occurrences (none in a digest), and what the throttle held
    back since the previous message (a count, and the latest few as examples)."""

    notify: str
    occurrences: tuple[Occurrence, ...]
    suppressed: int = 0
    held: tuple[Occurrence, ...] = ()
    window: float = 0.0

    @property
    def digest(self) -> bool:
        return not self.occurrences


@dataclass
class Throttle:
    """At most one batch per ``window`` seconds; ``now`` is a monotonic time."""

    notify: str
    window: float
    keep: int = KEEP
    until: float | None = None         # end of the current window
    count: int = 0                     # held back in it
    held: deque[Occurrence] = field(default_factory=deque)

    def offer(self, occurrence: Occurrence, now: float) -> Batch | None:
        """The batch to send now for ``occurrence``, or None when it is held back."""
        if self.window <= 0:
            return Batch(self.notify, (occurrence,))
        if self.until is not None and now < self.until:
            self.count += 1
            self.held.append(occurrence)
            while len(self.held) > self.keep:
                self.held.popleft()
            return None
        batch = Batch(self.notify, (occurrence,), self.count, tuple(self.held), self.window)
        self._reset(now)
        return batch

    def due(self) -> float | None:
        """When :meth:`flush` has something to send (None: nothing is held back)."""
        return self.until if self.count else None

    def flush(self, now: float, force: bool = False) -> Batch | None:
        """At the end of a window (or ``force``): a digest of what was held back, if anything."""
        if not self.count or (not force and self.until is not None and now < self.until):
            return None
        batch = Batch(self.notify, (), self.count, tuple(self.held), self.window)
        self._reset(now)
        return batch

    def _reset(self, now: float) -> None:
        self.count = 0
        self.held.clear()
        self.until = now + self.window


# -- the message ------------------------------------------------------------------------------

_WORDS = {"fatal": "is fatal", "backoff": "in backoff", "unhealthy": "is unhealthy",
          "restart": "restarted", "match": "logged"}


def _when(wall: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(wall, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def subject(batch: Batch, node: str) -> str:
    if batch.digest:
        watchers = sorted({o.watcher for o in batch.held})
        return _one_line(f"[circus] {node}: {_plural(batch.suppressed, 'more notification')} "
                         f"({', '.join(watchers)})")
    first = batch.occurrences[0]
    text = f"[circus] {node}: {first.watcher} {_WORDS.get(first.event, first.event)}"
    return _one_line(f"{text}: {first.reason}" if first.reason else text)


def _detail(o: Occurrence) -> list[str]:
    lines = [f"Watcher:  {o.watcher}", f"Event:    {o.event}", f"Time:     {_when(o.time)}"]
    if o.pid is not None:
        lines.append(f"Process:  {o.pid}")
    if o.event == "match":
        lines.append(f"Line ({o.stream}):")
        lines += ["    " + part for part in o.reason.splitlines() or [""]]
    else:
        lines.append(f"Reason:   {o.reason or '(none given)'}")
    return lines


def render_text(batch: Batch, node: str, dropped: int = 0) -> tuple[str, str]:
    """(subject, body) of the message for ``batch``, sent by node ``node``."""
    blocks = [[f"Node:     {node}", *_detail(batch.occurrences[0])]] if batch.occurrences \
        else [[f"Node:     {node}"]]
    blocks += [_detail(o) for o in batch.occurrences[1:]]
    if batch.suppressed:
        count = _plural(batch.suppressed, "notification")
        text = (f"{count} held back by the throttle (one message per {batch.window:g} s) since "
                "the previous message.")
        held = [text if batch.digest else f"Also: {text}"]
        if batch.held:
            held.append(f"The latest {len(batch.held)}:" if len(batch.held) > 1 else "The latest:")
            held += [f"  {_when(o.time)}  {o.watcher} {o.event}: {_one_line(o.reason, 300)}"
                     for o in batch.held]
        blocks.append(held)
    if dropped:
        blocks.append([f"{_plural(dropped, 'earlier message')} could not be queued (the queue "
                       "was full) and were dropped."])
    blocks.append([f"-- circusd on {node}, notification {batch.notify!r}"])
    return subject(batch, node), "\n\n".join("\n".join(block) for block in blocks) + "\n"


def render_data(batch: Batch, node: str, dropped: int = 0) -> dict[str, Any]:
    """The JSON a webhook receives (``text`` makes it readable by chat webhooks as is)."""
    title, text = render_text(batch, node, dropped)
    return {
        "notification": batch.notify, "node": node, "subject": title, "text": text,
        "occurrences": [o.to_dict() for o in batch.occurrences],
        "suppressed": batch.suppressed, "held": [o.to_dict() for o in batch.held],
        "throttle": batch.window, "dropped": dropped,
    }
