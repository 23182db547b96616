"""When ``circusmeta proxy`` degrades, and what it says then (pure: the caller gives the time).

The proxy forwards every stats message while the pool offers at most ``max_rate`` messages a
second (150,000 by default), measured over :data:`DEGRADE_WINDOW`. Above it, it forwards only
the watchers' aggregates, the circus group's, the sockets' totals and the node view of each
node, and drops the per-process and per-socket messages (:func:`circusmeta.streamtopics.is_detail`):
a dashboard still sees every watcher of every node, its process count, CPU, memory and state,
every round. Each round of a node gets a notice on the node's own topic, just before its node
view (a node without node view, a 0.19 one, gets one a second)::

    web1/stat.degraded  {"node": "web1", "degraded": true, "by": "circusmeta proxy",
                         "dropped": 412, "dropped_total": 9120, "rate": 181000,
                         "max_rate": 150000, "saturated": false, "since": 1765012345.2,
                         "reason": "..."}

``dropped`` counts the messages of that node not forwarded since its previous notice, ``rate``
is the pool's (updated every :data:`TICK` seconds). When the
pool has offered less than :data:`RECOVER_SHARE` of ``max_rate`` for :data:`RECOVER_WINDOW`
seconds the proxy forwards everything again, and each node notified gets one last notice with
``"degraded": false``. ``saturated`` is true when the proxy could not read as fast as the nodes
publish for a second: then the nodes' publishers drop what the proxy's bounded queue cannot
hold, aggregates included, and the notice says so too.
"""
from __future__ import annotations

import json
from collections import deque

from .streamtopics import DEGRADED

__all__ = ["RateMeter", "Shedding", "should_degrade", "should_recover", "MAX_RATE",
           "DEGRADE_WINDOW", "RECOVER_WINDOW", "RECOVER_SHARE", "NOTICE_EVERY", "TICK",
           "SATURATED_AFTER", "BY"]

#: stats messages a second forwarded in full, by default: above the 100,000 a pool may need
#: (forwarded by libzmq at about 40 % of a core, docs/benchmarks.rst), below what one core can
MAX_RATE = 150_000
#: seconds over which the rate that degrades is measured (several rounds of a node)
DEGRADE_WINDOW = 2.0
#: seconds under RECOVER_SHARE * max_rate before everything is forwarded again
RECOVER_WINDOW = 5.0
RECOVER_SHARE = 0.8
#: seconds between two notices of a degraded node
NOTICE_EVERY = 1.0
#: seconds between two looks at the rate
TICK = 0.25
#: seconds without the upstream queue ever empty before the proxy says it is saturated
SATURATED_AFTER = 1.0
BY = "circusmeta proxy"


class RateMeter:
    """A rate from a cumulative count sampled now and then, over the last ``span`` seconds."""

    def __init__(self, span: float) -> None:
        self.span = span
        self._samples: deque[tuple[float, float]] = deque()

    def add(self, now: float, total: float) -> None:
        self._samples.append((now, total))
        # keep one sample at or before the start of the window
        while len(self._samples) > 2 and self._samples[1][0] <= now - self.span:
            self._samples.popleft()

    def reset(self) -> None:
        self._samples.clear()

    def full(self, now: float) -> bool:
        """True once the samples cover the whole window."""
        return bool(self._samples) and self._samples[0][0] <= now - self.span * 0.95

    def rate(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else None


def should_degrade(rate: float | None, max_rate: int) -> bool:
    return rate is not None and rate > max_rate


def should_recover(rate: float | None, max_rate: int) -> bool:
    return rate is not None and rate < RECOVER_SHARE * max_rate


class Shedding:
    """One degraded period: what was dropped, per node (topic prefixes, as bytes), and the
    notices saying it. The pump counts into ``dropped`` and ``kept`` directly (its loop is the
    hot path). Each node's round gets its notice just before its node view (:meth:`notice`,
    so that a subscriber that has a node's view has its notice too); a node heard without a
    node view (a 0.19 circusd-stats) gets one a second (:meth:`notices`)."""

    def __init__(self, max_rate: int, since: float) -> None:
        self.max_rate = max_rate
        self.since = since                      # wall clock, for the notices
        self.dropped: dict[bytes, int] = {}     # since the node's last notice
        self.kept: dict[bytes, int] = {}
        self.dropped_total: dict[bytes, int] = {}
        self.notified: set[bytes] = set()
        self._told: set[bytes] = set()          # nodes given a notice since notices()
        self._names: dict[bytes, bytes] = {}
        self.update(None, False)

    def update(self, rate: float | None, saturated: bool) -> None:
        """The pool's rate and the saturation, for the notices from now on."""
        self.rate, self.saturated = rate, saturated
        common = {"degraded": True, "by": BY, "rate": None if rate is None else round(rate),
                  "max_rate": self.max_rate, "saturated": saturated, "since": self.since,
                  "reason": self.reason(rate, saturated)}
        self._common = json.dumps(common)[1:-1].encode()

    def reason(self, rate: float | None, saturated: bool) -> str:
        offered = f"{rate:,.0f}" if rate is not None else "more than"
        text = (f"the pool's stats arrive at {offered} messages/s, above the proxy's max_rate of "
                f"{self.max_rate:,}: only the watchers' aggregates and the node view are "
                f"forwarded, not the per-process and per-socket messages")
        if saturated:
            text += ("; the proxy cannot read as fast as the nodes publish, so the nodes' "
                     "publishers drop what its queue cannot hold, aggregates included")
        return text

    def recovered(self, rate: float | None) -> str:
        offered = f"{rate:,.0f}" if rate is not None else "fewer"
        return (f"the pool's stats arrive at {offered} messages/s, under the proxy's max_rate "
                f"of {self.max_rate:,}: every message is forwarded again")

    def notice(self, node: bytes) -> tuple[bytes, bytes]:
        """The node's notice now (its drops since its previous one); cheap: once a round."""
        name = self._names.get(node)
        if name is None:
            name = self._names[node] = json.dumps(node.decode("utf-8", "replace")).encode()
        dropped = self.dropped.pop(node, 0)
        self.kept.pop(node, None)
        total = self.dropped_total[node] = self.dropped_total.get(node, 0) + dropped
        self.notified.add(node)
        self._told.add(node)
        body = b'{"node": %s, %s, "dropped": %d, "dropped_total": %d}' % (
            name, self._common, dropped, total)
        return node + _TOPIC, body

    def notices(self) -> list[tuple[bytes, bytes]]:
        """A notice for each node heard since the previous call that got none meanwhile."""
        heard = (set(self.dropped) | set(self.kept)) - self._told
        self._told = set()
        return [self.notice(node) for node in sorted(heard)]

    def ended(self, rate: float | None, until: float) -> list[tuple[bytes, bytes]]:
        """The last notice of every node notified: everything is forwarded again."""
        for node, count in self.dropped.items():      # dropped since the last notices
            self.dropped_total[node] = self.dropped_total.get(node, 0) + count
            self.notified.add(node)
        self.dropped.clear()
        self.kept.clear()
        reason = self.recovered(rate)
        return [_notice(node, {"degraded": False, "dropped": 0,
                               "dropped_total": self.dropped_total.get(node, 0),
                               "rate": None if rate is None else round(rate),
                               "max_rate": self.max_rate, "saturated": False,
                               "since": self.since, "until": until, "reason": reason})
                for node in sorted(self.notified)]

    @property
    def total(self) -> int:
        """Messages not forwarded in this period so far."""
        return sum(self.dropped_total.values()) + sum(self.dropped.values())


_TOPIC = b"/stat." + DEGRADED.encode()


def _notice(node: bytes, fields: dict) -> tuple[bytes, bytes]:
    name = node.decode("utf-8", "replace")
    body = {"node": name, "by": BY, **fields}
    return node + _TOPIC, json.dumps(body).encode()
