"""Probe specifications: the text of `ready` / `health` options, parsed (pure)."""

from __future__ import annotations

import pytest

from circus.probes import (
    LIVENESS_KINDS,
    READINESS_KINDS,
    ExecProbe,
    HttpProbe,
    LogProbe,
    NotifyProbe,
    TcpProbe,
    parse_probe,
)


@pytest.mark.parametrize(
    ("text", "probe"),
    [
        ("tcp:127.0.0.1:8000", TcpProbe("127.0.0.1", 8000)),
        ("tcp:localhost:1", TcpProbe("localhost", 1)),
        ("  TCP:db.example.org:65535 ", TcpProbe("db.example.org", 65535)),
        ("tcp:[::1]:8000", TcpProbe("::1", 8000)),
        ("tcp:[fe80::1%eth0]:22", TcpProbe("fe80::1%eth0", 22)),
        ("http:http://127.0.0.1:8000/health", HttpProbe("http://127.0.0.1:8000/health")),
        ("http:https://example.org/", HttpProbe("https://example.org/")),
        ("http://127.0.0.1:8000/health?x=1", HttpProbe("http://127.0.0.1:8000/health?x=1")),
        ("https://[::1]:8443/", HttpProbe("https://[::1]:8443/")),
        ("exec:/usr/bin/check --quick 'a b'", ExecProbe("/usr/bin/check --quick 'a b'")),
        ("exec:true", ExecProbe("true")),
        ("notify", NotifyProbe()),
        ("Notify", NotifyProbe()),
        ("log:listening on .*:\\d+", LogProbe("listening on .*:\\d+")),
        ("log: ready", LogProbe(" ready")),  # the pattern is kept as written
        ("log:" + "a" * 500, LogProbe("a" * 500)),
    ],
)
def test_accepted(text, probe):
    assert parse_probe(text, READINESS_KINDS) == probe


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty probe"),
        ("   ", "empty probe"),
        ("tpc:127.0.0.1:80", "did you mean 'tcp'?"),
        ("ping", "unknown probe kind 'ping'"),
        ("tcp", "'tcp' needs an argument"),
        ("tcp:localhost", "expected tcp:HOST:PORT"),
        ("tcp::80", "missing host"),
        ("tcp:localhost:0", "port must be 1..65535"),
        ("tcp:localhost:65536", "port must be 1..65535"),
        ("tcp:localhost:http", "expected a port number"),
        ("tcp:localhost:-1", "expected a port number"),
        ("tcp:::1:80", "must be in brackets"),
        ("tcp:[::1:80", "missing ']'"),
        ("tcp:[nope]:80", "not an IPv6 address"),
        ("tcp:[::1]80", "expected [IPV6]:PORT"),
        ("tcp:bad host:80", "not a host name"),
        ("http:", "needs a URL"),
        ("http:ftp://example.org/", "http:// or https://"),
        ("http:example.org/health", "http:// or https://"),
        ("http://", "missing host"),
        ("http://127.0.0.1:99999/", "bad port"),
        ("http://a b/", "without spaces"),
        ("exec:", "needs a command"),
        ("exec:   ", "needs a command"),
        ("exec", "needs an argument"),
        ("exec:check 'unclosed", "cannot split command"),
        ("notify:now", "takes no argument"),
        ("log:", "needs a regular expression"),
        ("log:(unclosed", "invalid regular expression"),
        ("log:" + "a" * 501, "too long: 501"),
    ],
)
def test_refused(text, reason):
    with pytest.raises(ValueError) as info:
        parse_probe(text, READINESS_KINDS)
    assert reason in str(info.value)


@pytest.mark.parametrize("text", ["notify", "log:ready"])
def test_liveness_refuses_notify_and_log(text):
    with pytest.raises(ValueError, match=r"cannot be used here \(allowed: tcp, http, exec\)"):
        parse_probe(text, LIVENESS_KINDS)


@pytest.mark.parametrize("text", ["tcp:h:1", "http://h/", "exec:true"])
def test_liveness_accepts_tcp_http_exec(text):
    assert parse_probe(text, LIVENESS_KINDS).kind in LIVENESS_KINDS


def test_probes_print_back_as_their_canonical_text():
    for text in ("tcp:h:1", "tcp:[::1]:2", "http:http://h/", "exec:a b", "notify", "log:x+"):
        assert str(parse_probe(text, READINESS_KINDS)) == text
    assert str(parse_probe("https://h/", READINESS_KINDS)) == "http:https://h/"


def test_exec_argv_and_log_regex():
    assert parse_probe("exec:check --port '8 0'", READINESS_KINDS).argv == ["check", "--port", "8 0"]
    assert parse_probe("log:ready (\\d+)", READINESS_KINDS).regex.search("ready 42").group(1) == "42"


def test_probes_are_frozen():
    probe = TcpProbe("h", 1)
    with pytest.raises(AttributeError):
        probe.port = 2  # type: ignore[misc]
