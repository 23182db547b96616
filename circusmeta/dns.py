"""A small DNS client: the SRV, TXT, A and AAAA questions a pool from DNS needs
(:mod:`circusmeta.srv`), asked of one given server.

Why not the system resolver: it cannot be pointed at a server and port (``[meta] dns_server``,
a test's dnsmasq), and it does not answer SRV or TXT. Why not a library: what is needed is one
question type per query, asked over UDP with a fallback to TCP, and the answer read with bounds
checks — about the size of this module, which adds nothing to import.

The wire format (RFC 1035; SRV: RFC 2782; EDNS(0): RFC 6891) is pure: :func:`encode_query` and
:func:`parse_response`, bytes in and out. The I/O is :class:`Resolver`: every question goes out
at once on one UDP socket (at most :data:`WINDOW` in flight), unanswered ones are asked again,
answers are matched by id and question; a truncated answer is asked again over TCP. Errors::

    DnsError                    the question got no usable answer
     ├── DnsUnavailable         no answer in time, the server unreachable, SERVFAIL or REFUSED
     └── DnsMalformed           the answer does not parse (or answers another question)

A name that does not exist (NXDOMAIN) is not an error: it has no records.
"""
from __future__ import annotations

import ipaddress
import secrets
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

__all__ = ["A", "AAAA", "TXT", "SRV", "Record", "Response", "DnsError", "DnsUnavailable",
           "DnsMalformed", "encode_query", "parse_response", "Resolver", "parse_server",
           "system_server", "records", "WINDOW"]

A, AAAA, TXT, SRV, OPT = 1, 28, 16, 33, 41
_IN = 1
NOERROR, SERVFAIL, NXDOMAIN, REFUSED = 0, 2, 3, 5
_RCODES = {1: "FORMERR", 2: "SERVFAIL", 4: "NOTIMP", 5: "REFUSED"}
_TYPES = {"A": A, "AAAA": AAAA, "TXT": TXT, "SRV": SRV}
#: the largest UDP answer we say we accept (EDNS(0)); a larger one comes truncated
UDP_PAYLOAD = 4096
#: questions sent before their answers came (a burst of more may be dropped by the server)
WINDOW = 64
_MAX_JUMPS = 64                   # compression pointers followed in one name


class DnsError(Exception):
    """A question got no usable answer."""


class DnsUnavailable(DnsError):
    """No answer within the deadline, the server unreachable, or it said SERVFAIL / REFUSED."""


class DnsMalformed(DnsError):
    """The answer does not parse, or it answers another question."""


@dataclass(frozen=True)
class Record:
    """One resource record; ``data`` by type: SRV (priority, weight, port, target), TXT a
    tuple of strings, A / AAAA the address as text; other types the raw bytes."""

    name: str
    type: int
    ttl: int
    data: object


@dataclass(frozen=True)
class Response:
    """The header, the question and the answer section. The authority and additional sections
    are not read: nothing here relies on them (dnsmasq, for one, writes wrong compression
    pointers there once an answer passes 16 KiB: an address would be given to another name)."""

    id: int
    rcode: int
    truncated: bool
    question: tuple[str, int] | None
    answers: tuple[Record, ...] = ()


# -- the wire format (pure) ----------------------------------------------------------------------

def _encode_name(name: str) -> bytes:
    labels = [label for label in name.rstrip(".").split(".")] if name.strip(".") else []
    out = b""
    for label in labels:
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise ValueError(f"bad DNS name {name!r}: a label has 1 to 63 characters")
        out += bytes([len(raw)]) + raw
    if len(out) + 1 > 255:
        raise ValueError(f"bad DNS name {name!r}: longer than 255 bytes")
    return out + b"\0"


def encode_query(qid: int, name: str, qtype: int) -> bytes:
    """A recursive query for (``name``, ``qtype``) with an EDNS(0) record offering
    :data:`UDP_PAYLOAD` bytes; ValueError for a name that is not ASCII labels of 1-63."""
    header = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 1)        # RD; one question, one OPT
    opt = b"\0" + struct.pack(">HHIH", OPT, UDP_PAYLOAD, 0, 0)
    return header + _encode_name(name) + struct.pack(">HH", qtype, _IN) + opt


def _name(data: bytes, offset: int) -> tuple[str, int]:
    """The name at ``offset`` (compression pointers followed) and the offset after it."""
    labels: list[str] = []
    end: int | None = None
    jumps = length = 0
    while True:
        if offset >= len(data):
            raise DnsMalformed("a name runs past the end of the answer")
        size = data[offset]
        if size & 0xC0 == 0xC0:
            if offset + 1 >= len(data):
                raise DnsMalformed("a compression pointer runs past the end of the answer")
            jumps += 1
            if jumps > _MAX_JUMPS:
                raise DnsMalformed("a name's compression pointers loop")
            if end is None:
                end = offset + 2
            offset = ((size & 0x3F) << 8) | data[offset + 1]
            continue
        if size & 0xC0:
            raise DnsMalformed(f"unknown label type 0x{size:02x}")
        offset += 1
        if size == 0:
            break
        label = data[offset:offset + size]
        if len(label) < size:
            raise DnsMalformed("a label runs past the end of the answer")
        length += size + 1
        if length > 255:
            raise DnsMalformed("a name longer than 255 bytes")
        labels.append(label.decode("latin-1"))
        offset += size
    return ".".join(labels), (end if end is not None else offset)


def _rdata(data: bytes, rtype: int, start: int, size: int) -> object:
    raw = data[start:start + size]
    if rtype == A:
        if size != 4:
            raise DnsMalformed(f"an A record of {size} bytes")
        return str(ipaddress.IPv4Address(raw))
    if rtype == AAAA:
        if size != 16:
            raise DnsMalformed(f"an AAAA record of {size} bytes")
        return str(ipaddress.IPv6Address(raw))
    if rtype == SRV:
        if size < 7:
            raise DnsMalformed(f"an SRV record of {size} bytes")
        priority, weight, port = struct.unpack(">HHH", raw[:6])
        target, after = _name(data, start + 6)
        if after != start + size:
            raise DnsMalformed("an SRV record's target does not end with the record")
        return (priority, weight, port, target)
    if rtype == TXT:
        strings, i = [], 0
        while i < size:
            length = raw[i]
            if i + 1 + length > size:
                raise DnsMalformed("a TXT string runs past the end of its record")
            strings.append(raw[i + 1:i + 1 + length].decode("utf-8", "replace"))
            i += 1 + length
        return tuple(strings)
    return raw


def _records(data: bytes, offset: int, count: int) -> tuple[list[Record], int]:
    out = []
    for _ in range(count):
        name, offset = _name(data, offset)
        if offset + 10 > len(data):
            raise DnsMalformed("a record runs past the end of the answer")
        rtype, _rclass, ttl, size = struct.unpack(">HHIH", data[offset:offset + 10])
        offset += 10
        if offset + size > len(data):
            raise DnsMalformed("a record's data runs past the end of the answer")
        if rtype != OPT:
            out.append(Record(name, rtype, ttl, _rdata(data, rtype, offset, size)))
        offset += size
    return out, offset


def parse_response(data: bytes) -> Response:
    """The answer in ``data``; DnsMalformed when it is not a well-formed DNS response.

    A truncated answer (TC set) is returned with what it holds, its records not parsed."""
    if len(data) < 12:
        raise DnsMalformed(f"an answer of {len(data)} bytes (a header is 12)")
    qid, flags, qd, an = struct.unpack(">HHHH", data[:8])
    if not flags & 0x8000:
        raise DnsMalformed("not a response (QR not set)")
    rcode, truncated = flags & 0x000F, bool(flags & 0x0200)
    offset, question = 12, None
    for index in range(qd):
        qname, offset = _name(data, offset)
        if offset + 4 > len(data):
            raise DnsMalformed("the question runs past the end of the answer")
        if index == 0:
            question = (qname, struct.unpack(">H", data[offset:offset + 2])[0])
        offset += 4
    if truncated:
        return Response(qid, rcode, True, question)
    answers, offset = _records(data, offset, an)
    return Response(qid, rcode, False, question, tuple(answers))


# -- servers -------------------------------------------------------------------------------------

def parse_server(text: str) -> tuple[str, int]:
    """(address, port) of ``HOST``, ``HOST:PORT``, ``[V6]:PORT`` or ``V6``: HOST an IP address
    (a name would need a resolver to find the resolver); port 53 by default. ValueError."""
    text = text.strip()
    host, port = text, "53"
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"expected HOST[:PORT] or [IPV6]:PORT, got {text!r}")
        port = rest[1:] or "53"
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"the DNS server must be an IP address (with :PORT), got "
                         f"{text!r}") from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected a port 1-65535 in {text!r}")
    return str(address), int(port)


def system_server(resolv_conf: str = "/etc/resolv.conf") -> tuple[str, int]:
    """The first ``nameserver`` of resolv.conf, else 127.0.0.1 port 53."""
    try:
        with open(resolv_conf) as fh:
            for line in fh:
                words = line.split()
                if len(words) >= 2 and words[0] == "nameserver":
                    try:
                        return parse_server(words[1].split("%")[0])
                    except ValueError:
                        continue
    except OSError:
        pass
    return "127.0.0.1", 53


# -- asking (I/O) --------------------------------------------------------------------------------

@dataclass
class _Pending:
    name: str
    qtype: int
    qid: int
    sent: float = 0.0
    tries: int = 0
    answer: Response | None = None
    tcp: bool = False


@dataclass
class Resolver:
    """Asks one server; ``timeout`` bounds a whole :meth:`ask`, a question is sent again every
    ``retry`` seconds while it has no answer."""

    server: tuple[str, int]
    timeout: float = 3.0
    retry: float = 0.5
    asked: int = field(default=0, init=False)        # datagrams and TCP queries sent

    def ask(self, questions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], Response]:
        """The answer to each (name, type); DnsUnavailable / DnsMalformed as soon as one
        question cannot be answered (the caller needs them all to know the pool)."""
        deadline = time.monotonic() + self.timeout
        pending = {}
        for name, qtype in dict.fromkeys((n.rstrip(".").lower(), t) for n, t in questions):
            pending[(name, qtype)] = _Pending(name, qtype, 0)
        if not pending:
            return {}
        self._udp(list(pending.values()), deadline)
        for item in pending.values():
            if item.tcp:
                item.answer = self._tcp(item, deadline)
        out = {}
        for key, item in pending.items():
            answer = item.answer
            assert answer is not None
            if answer.rcode not in (NOERROR, NXDOMAIN):
                word = _RCODES.get(answer.rcode, f"rcode {answer.rcode}")
                raise DnsUnavailable(f"{self._where()} answered {word} for {item.name} "
                                     f"{_type_name(item.qtype)}")
            out[key] = answer
        return out

    def _where(self) -> str:
        host, port = self.server
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _udp(self, items: Sequence[_Pending], deadline: float) -> None:
        family = socket.AF_INET6 if ":" in self.server[0] else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            try:
                sock.connect(self.server)       # only the server's datagrams are received
            except OSError as exc:
                raise DnsUnavailable(f"cannot reach the DNS server {self._where()}: "
                                     f"{exc.strerror or exc}") from None
            by_id: dict[int, _Pending] = {}         # sent, not answered yet
            todo = list(items)
            while by_id or todo:
                now = time.monotonic()
                for item in list(by_id.values()):
                    if now - item.sent >= self.retry * item.tries:
                        self._send(sock, item, by_id, now)
                while todo and len(by_id) < WINDOW:
                    self._send(sock, todo.pop(0), by_id, now)
                left = deadline - time.monotonic()
                if left <= 0:
                    waiting = list(by_id.values()) + todo
                    missing = ", ".join(f"{i.name} {_type_name(i.qtype)}" for i in waiting[:3])
                    raise DnsUnavailable(f"no answer from the DNS server {self._where()} within "
                                         f"{self.timeout:g} s (for {missing}"
                                         f"{', ...' if len(waiting) > 3 else ''})")
                sock.settimeout(min(left, self.retry))
                try:
                    data = sock.recv(65535)
                except socket.timeout:
                    continue
                except ConnectionRefusedError:
                    raise DnsUnavailable(f"the DNS server {self._where()} refused the question "
                                         f"(nothing listens there)") from None
                except OSError as exc:
                    raise DnsUnavailable(f"the DNS server {self._where()}: "
                                         f"{exc.strerror or exc}") from None
                self._take(data, by_id)

    def _send(self, sock: socket.socket, item: _Pending, by_id: dict[int, _Pending],
              now: float) -> None:
        if not item.tries:                  # a new id per question; the same one when sent again
            item.qid = secrets.randbelow(65536)
            while item.qid in by_id:
                item.qid = secrets.randbelow(65536)
            by_id[item.qid] = item
        item.sent, item.tries = now, item.tries + 1
        self.asked += 1
        try:
            sock.send(encode_query(item.qid, item.name, item.qtype))
        except OSError as exc:
            raise DnsUnavailable(f"cannot send to the DNS server {self._where()}: "
                                 f"{exc.strerror or exc}") from None

    def _take(self, data: bytes, by_id: dict[int, _Pending]) -> None:
        """Match a datagram to its question; one that matches none is ignored (a second answer
        to a question sent again, or no answer to our questions at all)."""
        if len(data) < 2:
            return
        qid = struct.unpack(">H", data[:2])[0]
        item = by_id.get(qid)
        if item is None:
            return
        try:
            answer = parse_response(data)
        except DnsMalformed:
            return                     # a damaged or forged datagram: the question is sent again
        if not _answers(answer, item):
            return
        if answer.truncated:
            item.tcp = True            # asked again over TCP once every UDP answer is in
        else:
            item.answer = answer
        del by_id[qid]

    def _tcp(self, item: _Pending, deadline: float) -> Response:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DnsUnavailable(f"no time left to ask {self._where()} over TCP for "
                                 f"{item.name} {_type_name(item.qtype)} (its UDP answer was "
                                 f"truncated)")
        item.qid = secrets.randbelow(65536)
        query = encode_query(item.qid, item.name, item.qtype)
        self.asked += 1
        try:
            with socket.create_connection(self.server, timeout=left) as sock:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                sock.sendall(struct.pack(">H", len(query)) + query)
                size = struct.unpack(">H", _read(sock, 2))[0]
                data = _read(sock, size)
        except (socket.timeout, TimeoutError):
            raise DnsUnavailable(f"no answer over TCP from the DNS server {self._where()} "
                                 f"within {self.timeout:g} s") from None
        except OSError as exc:
            raise DnsUnavailable(f"the DNS server {self._where()} over TCP: "
                                 f"{exc.strerror or exc}") from None
        answer = parse_response(data)
        if not _answers(answer, item) or answer.id != item.qid:
            raise DnsMalformed(f"{self._where()} answered another question over TCP")
        if answer.truncated:
            raise DnsMalformed(f"{self._where()} truncated its TCP answer for {item.name}")
        return answer


def _answers(answer: Response, item: _Pending) -> bool:
    return answer.question is not None and answer.question[1] == item.qtype and \
        answer.question[0].rstrip(".").lower() == item.name


def _read(sock: socket.socket, size: int) -> bytes:
    out = b""
    while len(out) < size:
        chunk = sock.recv(size - len(out))
        if not chunk:
            raise OSError("the server closed the connection mid-answer")
        out += chunk
    return out


def _type_name(qtype: int) -> str:
    return next((k for k, v in _TYPES.items() if v == qtype), str(qtype))


def records(answer: Response, qtype: int, name: str | None = None) -> list[Record]:
    """The answer's records of ``qtype`` (CNAMEs followed by the server), optionally only those
    of ``name``."""
    wanted = name.rstrip(".").lower() if name else None
    return [r for r in answer.answers if r.type == qtype and
            (wanted is None or r.name.rstrip(".").lower() == wanted)]

