"""Tier 2: readiness-gated start with every probe kind, on real processes."""
from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

from conftest import Raw  # noqa: F401  (type of the clients)

pytestmark = pytest.mark.real
WORKER = Path(__file__).parent / "workers" / "readyworker.py"



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def node(control_node):
    return control_node


def timed_start(c: Raw, name: str) -> tuple[dict, float]:
    t0 = time.monotonic()
    reply = c.call("start", name=name, waiting=True, wait=30)
    return reply, time.monotonic() - t0


@pytest.mark.parametrize("mode,ready", [
    ("tcp", "tcp:127.0.0.1:{port}"),
    ("notify", "notify"),
    ("log", "log:listening now"),
    ("tcp", "exec:{python} -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 1)\""),
])
def test_start_returns_exactly_when_ready(node, mode, ready):
    port = free_port()
    probe = ready.format(port=port, python=sys.executable)
    d, c = node(f"""
        [watcher:w]
        cmd = {sys.executable} {WORKER} --mode {mode} --delay 0.6 --port {port}
        ready = {probe}
        autostart = false
    """)
    reply, elapsed = timed_start(c, "w")
    assert reply["status"] == "ok", reply
    assert 0.6 <= elapsed < 3.0                      # no sooner than ready, not much later
    pid = reply["info"]["started"][0]
    assert c.call("list", name="w")["pids"] == [pid]
    assert f"process {pid} ready after" in d.log_text()
    d.stop()


def test_a_worker_that_never_becomes_ready_fails_the_start_with_the_reason(node):
    d, c = node(f"""
        [watcher:w]
        cmd = {sys.executable} {WORKER} --mode never --delay 0
        ready = notify
        ready_timeout = 1
        max_retry = 0
        autostart = false
    """)
    reply, elapsed = timed_start(c, "w")
    assert reply["status"] == "error" and reply["code"] == "not_ready", reply
    assert "not ready after 1 s: no READY=1" in reply["reason"]
    assert "never ready" in reply["reason"]                 # its stderr, at the end of the reason
    assert 1.0 <= elapsed < 4.0
    d.wait(lambda: c.call("status", name="w")["status"] == "fatal", what="fatal")
    d.stop()


def test_a_worker_that_crashes_during_startup_reports_its_stderr(node):
    d, c = node(f"""
        [watcher:w]
        cmd = {sys.executable} {WORKER} --mode crash --delay 0.2
        ready = log:listening
        autostart = false
        max_retry = 0
    """)
    reply, elapsed = timed_start(c, "w")
    assert reply["status"] == "error" and reply["code"] == "not_ready", reply
    assert "exited before it was ready: exit code 2" in reply["reason"]
    assert "boom: the configuration file is missing" in reply["reason"]
    assert elapsed < 5
    d.stop()


def test_incr_waits_for_the_new_process_to_be_ready(node):
    d, c = node(f"""
        [watcher:w]
        cmd = {sys.executable} {WORKER} --mode log --delay 0.5
        ready = log:listening now
    """)
    d.wait(lambda: c.call("status", name="w")["status"] == "active", what="active")
    t0 = time.monotonic()
    r = c.call("incr", name="w", waiting=True, wait=20)
    assert r["numprocesses"] == 2 and time.monotonic() - t0 >= 0.5
    d.stop()


def test_watchdog_restarts_a_process_whose_pings_stop(node):
    d, c = node(f"""
        [watcher:w]
        cmd = {sys.executable} {WORKER} --mode watchdog --delay 0
        ready = notify
        watchdog_timeout = 0.5
    """)
    d.wait(lambda: c.call("status", name="w")["status"] == "active", what="active")
    first = c.call("list", name="w")["pids"]
    time.sleep(0.8)
    assert c.call("list", name="w")["pids"] == first          # still pinging
    d.wait(lambda: c.call("list", name="w")["pids"] not in ([], first), timeout=10,
           what="restart after the pings stopped")
    assert "watchdog: no WATCHDOG=1 for 0.5 s" in d.log_text()
    d.stop()
