"""How big ``circusmeta proxy`` is for a pool (pure: no sockets, no limits read here).

Its sockets: the two PUB sockets it binds; for stats one SUB connected to every node's stats
endpoint (and its socket monitor, a PUB for what Python republishes, a control pair), plus one
SUB per node while the proxy learns whether the node is a 0.19 circusd-stats (closed at its
first message when it is not); for events one SUB per node (their topics carry no node name, so
the socket says whose they are), with a monitor when the node's stats are not followed. libzmq
allows 1,023 sockets per context unless told otherwise: :func:`plan` counts them, and the
file descriptors they take (one per socket, one per connection, and room for subscribers), so
that the context's ``MAX_SOCKETS`` and the process's ``RLIMIT_NOFILE`` are sized before the
first socket, and a limit that cannot be raised is said as such (:func:`fd_refusal`), not as
libzmq's "Too many open files".

Its memory: a node's messages wait in the upstream socket's queue only while the proxy is
behind; that queue holds at most :func:`queue_per_node` messages per node (``rcvhwm``, about
450 bytes each with a 370-byte payload), sized so that the whole pool's stays near
``max_queued`` (200,000 by default, about 90 MB). Beyond it libzmq stops reading from the node
and the node's publisher drops, which the degraded proxy says (:mod:`circusmeta.shedding`).
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Plan", "plan", "queue_per_node", "fd_refusal", "socket_refusal", "MAX_QUEUED",
           "PER_NODE_MIN", "PER_NODE_MAX", "SUBSCRIBER_FDS", "NOFILE_TARGET"]

#: stats messages queued in the proxy for the whole pool, by default
MAX_QUEUED = 200_000
#: the per-node queue, whatever the pool's size: a round of a big node fits in it
PER_NODE_MIN = 500
PER_NODE_MAX = 10_000
#: file descriptors kept for the proxy's own subscribers (one each)
SUBSCRIBER_FDS = 256
#: the interpreter, stdio, the loop, libzmq's I/O and reaper threads, the ZAP handler
_BASE_FDS = 64
#: the soft RLIMIT_NOFILE is raised up to this when the pool needs more than it allows
NOFILE_TARGET = 1 << 20
_STATS_FIXED = 6          # the upstream SUB, its monitor (2), the inside PUB, the control pair
_ZAP_SOCKETS = 3          # the ZAP handler of a CURVE proxy
_SPARE_SOCKETS = 16


def queue_per_node(nodes: int, max_queued: int = MAX_QUEUED) -> int:
    """The upstream queue of each node (its ``rcvhwm``): ``max_queued`` shared, within
    [PER_NODE_MIN, PER_NODE_MAX]."""
    share = max_queued // max(nodes, 1)
    return max(PER_NODE_MIN, min(PER_NODE_MAX, share))


@dataclass(frozen=True)
class Plan:
    """What the proxy opens for a pool: ZeroMQ sockets, file descriptors, queues."""

    sockets: int
    fds: int
    queue_per_node: int
    queued: int             # the stats queue of the whole pool when every node is behind

    def summary(self, nodes: int) -> str:
        text = f"{self.sockets:,} sockets, about {self.fds:,} file descriptors"
        if self.queued:
            text += (f"; at most {self.queue_per_node:,} stats messages queued per node "
                     f"({self.queued:,} in all)")
        return text


def plan(stats: int, events: int, monitored_events: int, kinds: int, curve: bool = False,
         max_queued: int = MAX_QUEUED) -> Plan:
    """The sizes for ``stats`` stats endpoints and ``events`` events endpoints, of which
    ``monitored_events`` have a monitor; ``kinds`` PUB sockets bound."""
    sockets = kinds + events + 2 * monitored_events + _SPARE_SOCKETS
    if stats:
        sockets += _STATS_FIXED + stats            # the per-node probes, at most
    if curve:
        sockets += _ZAP_SOCKETS
    # one descriptor per socket (its mailbox) and per connection (the probes have their own)
    fds = sockets + 2 * stats + events + kinds + SUBSCRIBER_FDS + _BASE_FDS
    per_node = queue_per_node(stats, max_queued)
    return Plan(sockets, fds, per_node, per_node * stats)


def fd_refusal(need: int, soft: int, hard: int, nodes: int, unlimited: int = -1) -> tuple[int | None, str | None]:
    """``(new soft limit or None, refusal or None)`` for a process that needs ``need`` file
    descriptors under RLIMIT_NOFILE ``soft``/``hard`` (``unlimited``: RLIM_INFINITY)."""
    if soft == unlimited or soft >= need:
        return None, None
    ceiling = NOFILE_TARGET if hard == unlimited else min(hard, NOFILE_TARGET)
    if ceiling >= need:
        return ceiling, None
    return None, (f"following {nodes:,} nodes needs about {need:,} file descriptors and this "
                  f"process may open {hard:,} (RLIMIT_NOFILE hard limit): raise it (ulimit -Hn, "
                  f"LimitNOFILE= of a systemd unit) or follow fewer nodes (--node, --tag)")


def socket_refusal(sockets: int, limit: int, nodes: int) -> str | None:
    """A refusal when libzmq cannot have that many sockets in one context at all."""
    if sockets <= limit:
        return None
    return (f"following {nodes:,} nodes needs {sockets:,} ZeroMQ sockets and this libzmq allows "
            f"{limit:,} per context: follow fewer nodes (--node, --tag), or run one proxy per "
            f"part of the pool")
