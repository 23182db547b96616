"""Probe specifications: what a readiness (`ready`) or liveness (`health`) check is, parsed from
its configuration text. Pure: nothing here connects, runs or reads anything.

Syntax (the kind is case-insensitive)::

    tcp:HOST:PORT        connect succeeds          tcp:127.0.0.1:8000, tcp:[::1]:8000
    http:URL             a 2xx or 3xx answer        http:http://127.0.0.1:8000/health
    http://... https://...   shorthand for http:URL
    exec:COMMAND         exit status 0; run without a shell (shell-like split)
    notify               the process sends READY=1 on $NOTIFY_SOCKET (sd_notify)
    log:REGEX            a line of the process's output matches (re.search)

Readiness accepts every kind (`READINESS_KINDS`); liveness only tcp, http and exec
(`LIVENESS_KINDS`).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any, ClassVar, Union

from circus.protocol.limits import MAX_LINE_PATTERN, compile_line_pattern

__all__ = [
    "TcpProbe", "HttpProbe", "ExecProbe", "NotifyProbe", "LogProbe", "Probe", "parse_probe",
    "PROBE_KINDS", "READINESS_KINDS", "LIVENESS_KINDS", "MAX_PATTERN_LENGTH",
]

MAX_PATTERN_LENGTH = MAX_LINE_PATTERN
_HOSTNAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?")
_SYNTAX = "expected tcp:HOST:PORT, http:URL, exec:COMMAND, notify or log:REGEX"


@dataclass(frozen=True)
class TcpProbe:
    """Success when a TCP connection to host:port is accepted."""

    kind: ClassVar[str] = "tcp"
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp:{host}:{self.port}"


@dataclass(frozen=True)
class HttpProbe:
    """Success when a GET of `url` (http:// or https://) answers 2xx or 3xx."""

    kind: ClassVar[str] = "http"
    url: str

    def __str__(self) -> str:
        return f"http:{self.url}"


@dataclass(frozen=True)
class ExecProbe:
    """Success when `command` (split like a shell would, but run without one) exits 0."""

    kind: ClassVar[str] = "exec"
    command: str

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.command)

    def __str__(self) -> str:
        return f"exec:{self.command}"


@dataclass(frozen=True)
class NotifyProbe:
    """Success when the process sends READY=1 on its sd_notify socket."""

    kind: ClassVar[str] = "notify"

    def __str__(self) -> str:
        return "notify"


@dataclass(frozen=True)
class LogProbe:
    """Success when `pattern` is found (re.search) in a line of the process's output."""

    kind: ClassVar[str] = "log"
    pattern: str

    @property
    def regex(self) -> Any:
        return compile_line_pattern(self.pattern)

    def __str__(self) -> str:
        return f"log:{self.pattern}"


Probe = Union[TcpProbe, HttpProbe, ExecProbe, NotifyProbe, LogProbe]

PROBE_KINDS = ("tcp", "http", "exec", "notify", "log")
READINESS_KINDS = frozenset(PROBE_KINDS)
LIVENESS_KINDS = frozenset({"tcp", "http", "exec"})


def _tcp(rest: str) -> TcpProbe:
    if rest.startswith("["):
        host, bracket, tail = rest[1:].partition("]")
        if not bracket:
            raise ValueError(f"missing ']' after the IPv6 address in {rest!r}")
        import ipaddress

        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"not an IPv6 address: [{host}]") from None
        if not tail.startswith(":"):
            raise ValueError(f"expected [IPV6]:PORT, got {rest!r}")
        port_text = tail[1:]
    else:
        host, colon, port_text = rest.rpartition(":")
        if not colon:
            raise ValueError(f"expected tcp:HOST:PORT, got 'tcp:{rest}'")
        if ":" in host:
            raise ValueError(f"an IPv6 address must be in brackets, e.g. tcp:[::1]:8000 "
                             f"(got {host!r})")
        if not host:
            raise ValueError("missing host in tcp:HOST:PORT")
        if not _HOSTNAME.fullmatch(host):
            raise ValueError(f"not a host name or address: {host!r}")
    port_text = port_text.strip()
    if not port_text.isdigit() or not port_text.isascii():
        raise ValueError(f"expected a port number, got {port_text!r}")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be 1..65535, got {port}")
    return TcpProbe(host, port)


def _http(url: str) -> HttpProbe:
    if not url:
        raise ValueError("http: needs a URL, e.g. http:http://127.0.0.1:8000/health")
    if any(ch.isspace() for ch in url):
        raise ValueError(f"expected a URL without spaces, got {url!r}")
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"bad port in URL {url!r}") from None
    if not parts.hostname:
        raise ValueError(f"missing host in URL {url!r}")
    return HttpProbe(url)


def _exec(command: str) -> ExecProbe:
    command = command.strip()
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ValueError(f"cannot split command {command!r}: {exc}") from None
    if not argv:
        raise ValueError("exec: needs a command, e.g. exec:/usr/bin/check --quick")
    return ExecProbe(command)


def _log(pattern: str) -> LogProbe:
    if not pattern:
        raise ValueError("log: needs a regular expression, e.g. log:listening on")
    compile_line_pattern(pattern)       # ValueError with the reason
    return LogProbe(pattern)


def parse_probe(text: str, allowed: frozenset[str] = READINESS_KINDS) -> Probe:
    """The probe `text` describes; ValueError with the reason if it is malformed or its kind is
    not in `allowed`."""
    if not isinstance(text, str):
        raise ValueError(f"expected probe text, got {type(text).__name__}")
    text = text.strip()
    if not text:
        raise ValueError(f"empty probe; {_SYNTAX}")
    lower = text.lower()
    if lower.startswith(("http://", "https://")):
        kind, rest = "http", text
    else:
        kind, colon, rest = text.partition(":")
        kind = kind.strip().lower()
        if kind not in PROBE_KINDS:
            import difflib

            matches = difflib.get_close_matches(kind, PROBE_KINDS, n=1, cutoff=0.6)
            hint = f" (did you mean {matches[0]!r}?)" if matches else ""
            raise ValueError(f"unknown probe kind {kind!r}{hint}; {_SYNTAX}")
        if kind == "notify" and colon:
            raise ValueError(f"'notify' takes no argument, got {text!r}")
        if kind != "notify" and not colon:
            raise ValueError(f"{kind!r} needs an argument; {_SYNTAX}")
    if kind not in allowed:
        raise ValueError(f"a {kind} probe cannot be used here (allowed: "
                         f"{', '.join(k for k in PROBE_KINDS if k in allowed)})")
    if kind == "tcp":
        return _tcp(rest.strip())
    if kind == "http":
        return _http(rest.strip())
    if kind == "exec":
        return _exec(rest)
    if kind == "log":
        return _log(rest)
    return NotifyProbe()
