"""Discovery answers, checked, and the pool-file text made of them (pure).

A discovery answer is a UDP datagram from anyone who can reach the asking socket: nothing in it
is trusted. An answer is kept only when every field that is used is of the strict shape below;
any other answer is dropped with a remark that shows the offending value escaped (printable
ASCII only, cut at :data:`MAX_SHOWN` characters), so a remark can never start a line, a section
or a key of its own.

- ``endpoint``: ``tcp://HOST:PORT`` — HOST an IPv4 address, a bracketed IPv6 address (no zone)
  or a DNS name (labels of letters, digits and ``-``, the last not all digits), or a wildcard
  (``*``, ``0.0.0.0``, ``[::]``: replaced by the address that answered); PORT 1 to 65535 — or
  ``ipc:///PATH``, an absolute path of letters, digits and ``_ . + -`` (no ``.``/``..``
  component), at most :data:`MAX_IPC_PATH` bytes;
- ``node`` (optional; 0.19 sends none): 1 to 64 letters, digits, ``.``, ``_`` or ``-`` (the node
  names ``circusctl rename`` accepts);
- the address that answered: an IP address and a port;
- any other field is ignored: never printed, never used.

Limits (a neighbour may send any number of datagrams of any size): :data:`MAX_ANSWER_BYTES` per
datagram, :data:`MAX_NODES` nodes per run; the remarks beyond :data:`MAX_REMARKS` are counted.
"""
from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

__all__ = ["Answer", "Dropped", "Found", "parse_answers", "sections", "check_endpoint",
           "check_name", "shown", "MAX_ANSWER_BYTES", "MAX_NODES", "MAX_REMARKS", "MAX_SHOWN",
           "MAX_IPC_PATH", "WRITTEN_KEYS"]

#: bytes of one answer (a circusd answer is about 100); longer datagrams are dropped
MAX_ANSWER_BYTES = 2048
#: distinct nodes kept per run; later answers are dropped (and counted)
MAX_NODES = 256
#: dropped answers described one by one; the others are counted
MAX_REMARKS = 32
#: characters of a rejected value shown in its remark (escaped)
MAX_SHOWN = 80
#: bytes of an ipc:// path (a unix socket address holds 107 and a NUL)
MAX_IPC_PATH = 107
#: the only keys :func:`sections` writes in a ``[node:NAME]`` section
WRITTEN_KEYS = ("endpoint",)

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_TCP = re.compile(r"tcp://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+|\*):(?P<port>[0-9]{1,5})")
_IPC = re.compile(r"ipc://(?P<path>(?:/[A-Za-z0-9_.+-]+)+)")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_ADDRESS = re.compile(r"[0-9A-Fa-f:.]+")


def shown(value: Any) -> str:
    """``value`` as a remark may show it: quoted, escaped to printable ASCII, cut short."""
    if isinstance(value, (bytes, bytearray)):     # b'...': its repr is printable ASCII
        return repr(bytes(value[:MAX_SHOWN])) + ("..." if len(value) > MAX_SHOWN else "")
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=True)
        except (TypeError, ValueError, RecursionError):
            text = f"<{type(value).__name__}>"
    return ascii(text[:MAX_SHOWN]) + ("..." if len(text) > MAX_SHOWN else "")


def _host(host: str) -> str:
    """The host if it is one we accept, else ValueError (why)."""
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{host} is not an IPv6 address") from None
        return host
    labels = host.split(".")
    if labels[-1].isdigit():                  # meant as an IPv4 address: only a valid one
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{host} is not an IPv4 address") from None
        return host
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{host} is not a DNS name (labels of 1 to 63 letters, digits or '-')")
    return host


def check_endpoint(endpoint: Any) -> str:
    """``endpoint`` if it is a ``tcp://HOST:PORT`` or ``ipc:///PATH`` we write into a pool
    file; ValueError (why, without the value) otherwise."""
    if not isinstance(endpoint, str):
        raise ValueError("not a string")
    if any(not (" " < c < "\x7f") for c in endpoint):
        raise ValueError("a space, control, non-ASCII or invisible character")
    if endpoint.startswith("tcp://"):
        match = _TCP.fullmatch(endpoint)
        if match is None:
            raise ValueError("not tcp://HOST:PORT (a character that is not allowed there?)")
        port = match["port"]
        if port.startswith("0") or not 1 <= int(port) <= 65535:
            raise ValueError(f"port {port} is not 1 to 65535")
        if match["host"] != "*":
            _host(match["host"])
        return endpoint
    if endpoint.startswith("ipc://"):
        match = _IPC.fullmatch(endpoint)
        if match is None:
            raise ValueError("not ipc:///ABSOLUTE/PATH of letters, digits, '_', '.', '+', '-'")
        path = match["path"]
        if any(part in (".", "..") for part in path.split("/")):
            raise ValueError("a '.' or '..' in the path")
        if len(path.encode()) > MAX_IPC_PATH:
            raise ValueError(f"a path longer than {MAX_IPC_PATH} bytes")
        return endpoint
    raise ValueError("neither tcp://HOST:PORT nor ipc:///PATH")


def check_name(name: Any) -> str:
    """A node name as a pool file has it, else ValueError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError("not 1 to 64 letters, digits, '.', '_' or '-'")
    return name


@dataclass(frozen=True)
class Answer:
    """One node's answer, checked: its name (the pool's, unique among the answers), where to
    reach it, who answered, and remarks when something needs a look."""

    name: str
    endpoint: str
    responder: tuple[str, int]
    reported: str | None = None       # the name the node gave, if not the one used
    remark: str | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.name, "endpoint": self.endpoint,
                "responder": f"{self.responder[0]}:{self.responder[1]}",
                "reported_name": self.reported,
                "remark": "; ".join(r for r in (self.remark, *self.notes) if r) or None}


@dataclass(frozen=True)
class Dropped:
    """An answer not kept: who sent it (as far as it can be shown) and why."""

    responder: str
    reason: str

    def __str__(self) -> str:
        return f"the answer from {self.responder}: {self.reason}"


@dataclass
class Found:
    """What a run of discovery heard: the nodes kept, the answers dropped (the first
    :data:`MAX_REMARKS` different ones) and how many more were dropped (repeats included)."""

    answers: list[Answer] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    more_dropped: int = 0

    def drop(self, responder: str, reason: str) -> None:
        dropped = Dropped(responder, reason)
        # said once (the same answer comes on both interfaces), at most MAX_REMARKS: counted
        if dropped not in self.dropped and len(self.dropped) < MAX_REMARKS:
            self.dropped.append(dropped)
        else:
            self.more_dropped += 1

    @property
    def dropped_count(self) -> int:
        return len(self.dropped) + self.more_dropped


def _responder(addr: Any) -> tuple[str, int]:
    host, port = addr[0], addr[1]
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError("bad port")
    host = str(ipaddress.ip_address(host))
    if not _ADDRESS.fullmatch(host):                 # e.g. an IPv6 zone (fe80::1%eth0)
        raise ValueError("not a plain address")
    return host, port


def _wildcard(host: str) -> bool:
    if host == "*":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def _placed(endpoint: str, responder: str) -> tuple[str, str | None]:
    """The endpoint to write down and a remark: a wildcard host becomes the responder's."""
    if endpoint.startswith("ipc://"):
        return endpoint, None if _loopback(responder) else \
            "an ipc endpoint: reachable only on that machine"
    host, port = endpoint[len("tcp://"):].rsplit(":", 1)
    if _wildcard(host):
        where = f"[{responder}]" if ":" in responder else responder
        return f"tcp://{where}:{port}", f"circusd binds {endpoint}; using the responder's address"
    if _loopback(host) and not _loopback(responder):
        return endpoint, "a loopback endpoint: reachable only on that machine"
    return endpoint, None


def _decode(data: Any) -> dict:
    if not isinstance(data, (bytes, bytearray)):
        raise ValueError("not a datagram")
    if len(data) > MAX_ANSWER_BYTES:
        raise ValueError(f"more than {MAX_ANSWER_BYTES} bytes")
    try:
        reply = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ValueError(f"not JSON: {shown(data)}") from None
    if not isinstance(reply, dict):
        raise ValueError(f"not a JSON object: {shown(reply)}")
    return reply


def parse_answers(raw: Iterable[tuple[Any, Any]]) -> Found:
    """The answers of datagrams ``(data, (host, port))``, checked (see the module's doc):
    the same node once, names unique (``web1-2`` for a second ``web1``; ``node-10-0-0-11``
    when a 0.19 node gives none), the rest dropped with why."""
    found = Found()
    seen: set[tuple[str | None, str]] = set()
    by_name: dict[str, list[int]] = {}          # name given -> indexes of the answers
    for data, addr in raw:
        try:
            host, port = _responder(addr)
        except (TypeError, ValueError, IndexError, KeyError):
            found.drop(shown(addr), "not an IP address and port")
            continue
        where = f"{host}:{port}"
        try:
            reply = _decode(data)
        except ValueError as exc:
            found.drop(where, str(exc))
            continue
        if "endpoint" not in reply:
            found.drop(where, "no endpoint")
            continue
        try:
            endpoint = check_endpoint(reply["endpoint"])
        except ValueError as exc:
            found.drop(where, f"endpoint {shown(reply['endpoint'])}: {exc}")
            continue
        given = reply.get("node")
        if given is not None:
            try:
                check_name(given)
            except ValueError as exc:
                found.drop(where, f"node name {shown(given)}: {exc} (endpoint {endpoint})")
                continue
        if (given, endpoint) in seen:             # it answered on both interfaces
            continue
        if len(found.answers) >= MAX_NODES:
            found.drop(where, f"more than {MAX_NODES} nodes answered")
            continue
        seen.add((given, endpoint))
        placed, remark = _placed(endpoint, host)
        base = given or "node-" + host.replace(".", "-").replace(":", "-")
        taken = {a.name for a in found.answers}
        name, n = base, 2
        while name in taken:
            name, n = f"{base[:60]}-{n}", n + 1
        if given is not None:
            by_name.setdefault(given, []).append(len(found.answers))
        found.answers.append(Answer(name, placed, (host, port), given if given != name else None,
                                    remark))
    for given, indexes in by_name.items():         # one name, several answers: say so
        if len(indexes) > 1:
            others = [found.answers[i] for i in indexes]
            for i in indexes:
                a = found.answers[i]
                note = (f"{len(indexes)} answers call themselves {given!r} (from "
                        f"{', '.join(f'{o.responder[0]}:{o.responder[1]}' for o in others)}): "
                        f"make sure which one is that node")
                found.answers[i] = Answer(a.name, a.endpoint, a.responder, a.reported, a.remark,
                                          a.notes + (note,))
    return found


def _comment(text: str) -> str:
    """A comment line: anything but printable ASCII escaped (it cannot end the line)."""
    return "# " + "".join(c if " " <= c <= "~" else ascii(c)[1:-1] for c in text)


def sections(found: Found | Iterable[Answer]) -> str:
    """The pool file's ``[node:NAME]`` sections for the answers, each with its comments, then
    the dropped answers as comments (pure). Nothing else is written: no key but
    :data:`WRITTEN_KEYS`, no other section; ValueError for an answer (made by hand) whose name
    or endpoint would not pass :func:`check_name` / :func:`check_endpoint`."""
    if not isinstance(found, Found):
        found = Found(list(found))
    blocks = []
    for a in found.answers:
        check_name(a.name)                  # an Answer made by hand is held to the same rules
        check_endpoint(a.endpoint)
        lines = [_comment(f"answered from {a.responder[0]}:{a.responder[1]}")]
        if a.reported:
            lines.append(_comment(f"the node calls itself {a.reported!r}"))
        lines += [_comment(r) for r in (a.remark, *a.notes) if r]
        lines += [f"[node:{a.name}]", f"endpoint = {a.endpoint}"]
        blocks.append("\n".join(lines))
    if found.dropped_count:
        lines = [_comment(f"dropped {d}") for d in found.dropped]
        if found.more_dropped:
            lines.append(f"# dropped {found.more_dropped} more answer(s) (repeats, or beyond "
                         f"the first {MAX_REMARKS} remarks)")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + ("\n" if blocks else "")
