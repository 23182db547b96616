"""Tier 1: the pure parts of circusctl's output and diagnosis: "did you mean", aligned columns
with colours, durations and sizes, status exit codes and annotations, endpoint syntax, and the
reading of a socket monitor's events (fed to it directly)."""
from __future__ import annotations

import pytest
import zmq

from circus.cli.ctl_color import Paint, wants_color
from circus.cli.ctl_help import did_you_mean, suggest
from circus.cli.ctl_status import annotation, status_exit
from circus.cli.ctl_text import Cell, columns, duration, exit_text, size
from circus.client.reach import ConnectionWatch, Seen, endpoint_problem, explain


@pytest.mark.parametrize("word,expected", [
    ("stauts", ["status"]),                 # two letters swapped: the anagram wins
    ("staus", ["stats", "status"]),
    ("stat", ["start", "stats"]),
    ("lst", ["list"]),
    ("STATUS", ["status"]),
    ("proc", ["processes"]),                # nothing near: what it starts
    ("frobnicate", []),
    ("", []),
])
def test_suggest(word, expected):
    names = ["start", "stats", "status", "stop", "list", "listen", "processes", "numprocesses"]
    assert suggest(word, names) == expected


def test_did_you_mean_wording():
    assert did_you_mean("stauts", ["status", "stats"]) == " (did you mean 'status'?)"
    assert did_you_mean("sta", ["start", "stats", "status"]) == \
        " (did you mean 'start', 'stats' or 'status'?)"
    assert did_you_mean("zz", ["start"]) == ""


def test_columns_align_on_plain_text_and_colour_after():
    paint = Paint(True)
    lines = columns([[Cell("web", paint.bold), Cell("active", paint.error), Cell("why", blank="")],
                     [Cell("worker"), Cell("fatal"), Cell(None, blank="")]],
                    header=["NAME", "STATE", "REASON"], right=())
    plain = [line.replace("\x1b[1m", "").replace("\x1b[31m", "").replace("\x1b[0m", "")
             for line in lines]
    assert plain == ["NAME    STATE   REASON", "web     active  why", "worker  fatal"]
    assert lines[1].startswith("\x1b[1mweb\x1b[0m     \x1b[31mactive\x1b[0m  ")
    assert columns([["1", "22"], ["333", "4"]], right=(0,)) == ["  1  22", "333  4"]


@pytest.mark.parametrize("seconds,text", [(0, "0:00:00"), (59.9, "0:00:59"), (312, "0:05:12"),
                                          (93784, "1d 2:03:04"), (-1, "-"), (None, "-"),
                                          ("x", "-"), (True, "-")])
def test_duration(seconds, text):
    assert duration(seconds) == text


@pytest.mark.parametrize("value,text", [(512, "512B"), (2048, "2.0K"), (1536 * 1024, "1.5M"),
                                        (300 * 1024 ** 2, "300M"), (23.5 * 1024 ** 3, "23.5G"),
                                        ("8.22M", "8.22M"), (None, "-"), (-5, "-")])
def test_size(value, text):
    assert size(value) == text


def test_exit_text():
    assert [exit_text(c) for c in (0, 1, -9, -15, None, -99)] == \
        ["0", "1", "SIGKILL", "SIGTERM", "-", "signal 99"]


def test_status_exit_and_annotation():
    assert status_exit({"status": "ok", "statuses": {}}) == 0
    assert status_exit({"status": "ok", "statuses": {"a": "active"}}) == 0
    assert status_exit({"status": "ok", "statuses": {"a": "active", "b": "stopped"}}) == 3
    assert status_exit({"status": "ok", "statuses": {"a": "active"},
                        "details": {"a": {"state": "active", "trouble": "backoff"}}}) == 3
    assert status_exit({"status": "ok", "statuses": {"a": "active"},
                        "details": {"a": {"state": "active", "reason": "x", "trouble": None}}}) == 0
    assert status_exit({"status": "active"}) == 0                      # a 0.19 circusd
    assert status_exit({"status": "active", "state": "active", "trouble": "exited"}) == 3
    assert status_exit({"status": "error", "reason": "x"}) == 3
    assert annotation("active", "why", "backoff") == " (backoff: why)"
    assert annotation("fatal", "why", "fatal") == " (why)"
    assert annotation("stopped", "", None) == ""
    assert annotation("active", "", "exited") == " (exited)"


def test_wants_color():
    class Tty:
        def isatty(self):
            return True

    assert wants_color(Tty(), environ={}) is True
    assert wants_color(Tty(), environ={"NO_COLOR": "1"}) is False
    assert wants_color(Tty(), environ={"NO_COLOR": ""}) is True        # set but empty: ignored
    assert wants_color(Tty(), environ={"TERM": "dumb"}) is False
    assert wants_color(Tty(), disabled=True, environ={}) is False
    assert wants_color(object(), environ={}) is False


@pytest.mark.parametrize("endpoint,problem", [
    ("tcp://127.0.0.1:5555", None), ("tcp://localhost:1", None), ("tcp://[::1]:5555", None),
    ("ipc:///run/circus.sock", None), ("ipc://@abstract", None), ("ipc://relative.sock", None),
    ("foo", "not an endpoint"), ("tcp://x", "no port"), ("tcp://h:0", "invalid port '0'"),
    ("tcp://h:port", "invalid port 'port'"), ("tcp://:5555", "expected tcp://HOST:PORT"),
    ("ipc://", "no socket path"), ("ipc://  ", "no socket path"), ("inproc://x", "unsupported"),
])
def test_endpoint_problem(endpoint, problem):
    found = endpoint_problem(endpoint)
    assert found is None if problem is None else found.startswith(problem), found


def _watch(kinds: list[int], endpoint: str = "tcp://127.0.0.1:1", keyed: bool = False):
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    try:
        watch = ConnectionWatch(sock, endpoint, keyed)
        try:
            for kind in kinds:
                watch._apply(kind)
            return watch.seen, watch.failed_since(0)
        finally:
            watch.close()
    finally:
        sock.close(0)


E = zmq


def test_refused_before_any_connection():
    seen, why = _watch([E.EVENT_CONNECT_DELAYED, E.EVENT_CONNECT_RETRIED])
    assert seen.failure == "refused" and why.startswith("cannot connect to tcp://127.0.0.1:1: ")


def test_a_reconnection_after_a_drop_is_not_a_refusal():
    seen, why = _watch([E.EVENT_CONNECTED, E.EVENT_HANDSHAKE_SUCCEEDED, E.EVENT_DISCONNECTED,
                        E.EVENT_CONNECT_RETRIED])
    assert why is None and not seen.connected and seen.failures == 0


def test_handshake_failures():
    _, why = _watch([E.EVENT_CONNECTED, E.EVENT_HANDSHAKE_FAILED_NO_DETAIL, E.EVENT_DISCONNECTED,
                     E.EVENT_CONNECT_RETRIED])
    assert "needs CURVE keys (--curve-key/--server-key)" in why
    _, why = _watch([E.EVENT_CONNECTED, E.EVENT_HANDSHAKE_FAILED_PROTOCOL], keyed=True)
    assert "the server key (--server-key) is not circusd's public key" in why
    _, why = _watch([E.EVENT_CONNECTED, E.EVENT_HANDSHAKE_FAILED_AUTH], keyed=True)
    assert "refused this client's CURVE key" in why
    seen, why = _watch([E.EVENT_CONNECTED, E.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
                        E.EVENT_CONNECTED, E.EVENT_HANDSHAKE_SUCCEEDED])
    assert seen.failure == "" and seen.failures == 1      # failed once, then got in


def test_timeout_explanations():
    ep = "tcp://10.0.0.1:5555"
    assert "circusd is connected but busy or slow" in explain(
        ep, Seen(connected=True, handshake=E.EVENT_HANDSHAKE_SUCCEEDED), False, 5, "stop")
    assert "no connection could be made" in explain(ep, Seen(delayed=True), False, 5)
    assert "the handshake did not complete" in explain(ep, Seen(connected=True), False, 5)
    assert explain(ep, Seen(), False, 5) == (
        f"no answer from {ep} within 5 s: circusd may not be running there, or it needs CURVE "
        "keys (--curve-key/--server-key)")
