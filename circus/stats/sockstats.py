"""Listening-socket statistics read from the kernel's tables, not polled.

0.19 counted how many 10 ms ``select`` polls found a socket readable (its "reads", and the CPU
its stats process burnt). Linux says what happened directly, in ``/proc/net/tcp``/``tcp6``:

- for a LISTEN entry, ``rx_queue`` is the accept queue length (connections the kernel completed
  that no worker has accepted yet) and ``tx_queue`` the socket's backlog;
- ESTABLISHED entries on the same local port are the connections being served or waiting to
  be; the ones whose peer address was not there at the previous sample arrived since (``accepted``; 0.19's
  ``reads`` field carries the same number, an activity count per interval). A connection opened
  and closed between two samples is not seen: ``accepted`` is a lower bound.

Unix sockets come from ``/proc/net/unix`` (connections only; the kernel shows no accept queue).
Everything is read in the network namespace of the reading process (circusd's, when it runs
circusd-stats). The parsers are pure and take the files' text.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

__all__ = ["TcpEntry", "parse_tcp", "parse_unix", "SocketSampler"]

LISTEN, ESTABLISHED = "0A", "01"
_ACCEPTCON = 0x10000          # __SO_ACCEPTCON in /proc/net/unix's Flags: a listening socket
_UNIX_CONNECTED = "03"


@dataclass(frozen=True)
class TcpEntry:
    port: int
    state: str
    tx_queue: int
    rx_queue: int
    inode: int
    remote: str = ""          # the peer's address:port as the table writes it (hex)


def parse_tcp(text: str) -> list[TcpEntry]:
    """Entries of a /proc/net/tcp or tcp6 table (the header line skipped, bad lines ignored)."""
    out = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 10:
            continue
        try:
            port = int(parts[1].rsplit(":", 1)[1], 16)
            tx, rx = (int(x, 16) for x in parts[4].split(":"))
            out.append(TcpEntry(port, parts[3], tx, rx, int(parts[9]), parts[2]))
        except (ValueError, IndexError):
            continue
    return out


def parse_unix(text: str) -> dict[str, list[tuple[bool, str, int]]]:
    """{path: [(listening, state, inode)]} of /proc/net/unix (unnamed sockets left out)."""
    out: dict[str, list[tuple[bool, str, int]]] = {}
    for line in text.splitlines()[1:]:
        parts = line.split(None, 7)
        if len(parts) < 8:
            continue
        try:
            flags, state, inode = int(parts[3], 16), parts[5], int(parts[6])
        except ValueError:
            continue
        out.setdefault(parts[7], []).append((bool(flags & _ACCEPTCON), state, inode))
    return out


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


class SocketSampler:
    """Turns ``listsockets`` entries into per-socket stats, remembering the connections it saw."""

    def __init__(self, proc_net: str = "/proc/net") -> None:
        self.proc_net = proc_net
        # fd -> its connections last time: a TCP connection is known by its peer's address (not
        # its inode: one nobody accepted yet has inode 0), a unix one by its inode
        self._seen: dict[int, set[object]] = {}

    def sample(self, sockets: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        sockets = list(sockets)
        tcp: list[TcpEntry] | None = None
        unix: dict[str, list[tuple[bool, str, int]]] | None = None
        out = []
        for sock in sockets:
            fd = int(sock.get("fd", -1))
            stat: dict[str, Any] = {"fd": fd, "name": sock.get("name"),
                                    "address": _address(sock), "queue": None,
                                    "backlog": sock.get("backlog"), "connections": None}
            current: set[object] | None = None
            if sock.get("path"):
                if unix is None:
                    unix = parse_unix(_read(f"{self.proc_net}/unix"))
                entries = unix.get(str(sock["path"]), [])
                current = {inode for listening, state, inode in entries
                           if not listening and state == _UNIX_CONNECTED}
            elif sock.get("port") is not None:
                if tcp is None:
                    tcp = parse_tcp(_read(f"{self.proc_net}/tcp")) + \
                        parse_tcp(_read(f"{self.proc_net}/tcp6"))
                port = int(sock["port"])
                listening = [e for e in tcp if e.port == port and e.state == LISTEN]
                if listening:
                    stat["queue"] = sum(e.rx_queue for e in listening)
                    backlog = max(e.tx_queue for e in listening)
                    if backlog:                  # 0 on kernels that do not report it here
                        stat["backlog"] = backlog
                current = {e.remote for e in tcp if e.port == port and e.state == ESTABLISHED}
            if current is not None:
                stat["connections"] = len(current)
                before = self._seen.get(fd)
                stat["accepted"] = len(current - before) if before is not None else 0
                self._seen[fd] = current
            else:
                stat["accepted"] = 0
            stat["reads"] = stat["accepted"]
            out.append(stat)
        known = {int(s.get("fd", -1)) for s in sockets}
        for fd in [fd for fd in self._seen if fd not in known]:
            del self._seen[fd]
        return out


def _address(sock: Mapping[str, Any]) -> str:
    if sock.get("path"):
        return str(sock["path"])
    return f"{sock.get('host')}:{sock.get('port')}"
