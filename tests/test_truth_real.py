"""Tier 2: a reply says ``ok`` only of what is done; trouble shows in ``status``; the output that
explains a crash is at hand without any configuration (real circusd, real processes)."""
from __future__ import annotations

import json
import socket
import sys
import time

import pytest

from conftest import Raw

pytestmark = pytest.mark.real

PY = sys.executable


def _error(reply: dict, code: str, *words: str) -> dict:
    assert reply["status"] == "error" and reply["code"] == code, reply
    for word in words:
        assert word in reply["reason"], reply
    return reply


@pytest.fixture
def node(control_node):
    def start(body: str):
        d, c = control_node(body)
        return d, c
    return start


BODY = f"""
[watcher:sleeper]
cmd = sleep 3600
graceful_timeout = 1

[watcher:missing]
cmd = /usr/bin/does-not-exist
autostart = false

[watcher:early]
cmd = {PY} -c "import sys; print('starting up', flush=True); print('Traceback: boom', file=sys.stderr, flush=True); import time; time.sleep(0.2); sys.exit(3)"
autostart = false
min_uptime = 1
"""


def test_start_waiting_of_a_command_that_does_not_exist_is_an_error(node):
    d, c = node(BODY)
    reply = _error(c.call("start", name="missing", waiting=True), "spawn_failed",
                   "1 of 1 process(es) could not be started", "command not found")
    assert "does-not-exist" in reply["reason"]
    log = d.log_text()
    assert "missing: active, but" in log and "missing: active\n" not in log
    # without waiting: accepted (0.19), and the trouble is in the status
    assert c.call("start", name="missing")["status"] == "ok"


def test_start_waiting_of_a_process_that_exits_at_once_is_an_error_with_its_output(node):
    d, c = node(BODY)
    reply = _error(c.call("start", name="early", waiting=True, wait=10), "not_ready",
                   "exit code 3", "less than min_uptime = 1 s", "Traceback: boom")
    assert "after it started" in reply["reason"]


def test_start_waiting_of_a_healthy_watcher_takes_min_uptime_and_says_ok(node):
    d, c = node(BODY.replace("[watcher:missing]", "[watcher:fast]\ncmd = sleep 3600\nmin_uptime = 0.3\n"
                             "autostart = false\n\n[watcher:missing]"))
    started = time.monotonic()
    reply = c.call("start", name="fast", waiting=True)
    assert reply["status"] == "ok" and len(reply["info"]["started"]) == 1, reply
    assert time.monotonic() - started >= 0.3


def test_a_socket_that_cannot_bind_fails_the_waiting_start(node):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        d, c = node(f"""
            [socket:web]
            host = 127.0.0.1
            port = {port}

            [watcher:web]
            cmd = sleep 3600
            use_sockets = true
            autostart = false
        """)
        _error(c.call("start", name="web", waiting=True), "spawn_failed",
               "could not be started", "cannot bind socket 'web'")
    finally:
        taken.close()


def test_incr_and_restart_of_a_watcher_that_cannot_spawn_are_errors(node, tmp_path):
    d, c = node(BODY)
    marker = tmp_path / "binary"
    marker.write_text("#!/bin/sh\nexec sleep 3600\n")
    marker.chmod(0o755)
    assert c.call("set", name="sleeper", options={"cmd": str(marker)}, waiting=True)["status"] == "ok"
    old = c.call("list", name="sleeper")["pids"]
    marker.unlink()                      # the command is gone: new processes cannot be spawned
    _error(c.call("incr", name="sleeper", nb=1, waiting=True), "spawn_failed", "command not found")
    _error(c.call("restart", name="sleeper", graceful=True, waiting=True), "not_ready",
           "could not be started", "the others keep serving")
    assert set(old) <= set(c.call("list", name="sleeper")["pids"]), "the old process still serves"


def test_decr_past_the_processes_says_so(node):
    d, c = node(BODY)
    reply = c.call("decr", name="sleeper", nb=5, waiting=True)
    assert reply["status"] == "ok" and reply["numprocesses"] == 0, reply
    assert "had numprocesses = 1: decr 5 leaves 0" in reply["warning"]
    reply = c.call("incr", name="sleeper", nb=2)        # 0.19's reply without waiting: just ok
    assert reply["status"] == "ok" and "numprocesses" not in reply and "warning" not in reply
    reply = c.call("decr", name="sleeper", nb=3)
    assert reply["status"] == "ok" and "decr 3 leaves 0" in reply["warning"]


def test_status_of_a_crash_loop_shows_the_trouble_and_the_last_lines(node):
    d, c = node(BODY.replace("autostart = false\nmin_uptime = 1", "min_uptime = 1\nbackoff_initial = 5"))
    d.wait(lambda: c.call("status", name="early").get("trouble") == "backoff", 15, "backoff")
    reply = c.call("status", name="early")
    assert reply["status"] == "active" and reply["trouble"] == "backoff", reply  # 0.19's word kept
    assert "in backoff" in reply["reason"]
    assert [line["line"] for line in reply["last_lines"]] == ["Traceback: boom"]
    assert reply["processes"][0]["state"] == "backoff" and reply["processes"][0]["last_exit"] == 3
    every = c.call("status")
    assert every["statuses"]["early"] == "active"
    assert every["details"]["early"]["trouble"] == "backoff"
    assert "sleeper" not in every["details"]
    healthy = c.call("status", name="sleeper")
    assert healthy["trouble"] is None and "last_lines" not in healthy
    assert healthy["processes"][0]["pid"] == c.call("list", name="sleeper")["pids"][0]
    assert healthy["processes"][0]["started"] <= healthy["time"]


def test_a_fatal_watcher_keeps_its_last_lines(node):
    d, c = node(BODY.replace("autostart = false\nmin_uptime = 1", "min_uptime = 1\nmax_retry = 1\n"
                             "backoff_initial = 0.05"))
    d.wait(lambda: c.call("status", name="early")["status"] == "fatal", 20, "fatal")
    reply = c.call("status", name="early")
    assert reply["trouble"] == "fatal" and "Traceback: boom" in reply["last_lines"][-1]["line"]
    assert c.call("tail", name="early", stream="stdout")["lines"][-1]["line"] == "starting up"


def test_status_takes_a_glob(node):
    d, c = node(BODY + "\n[watcher:sleeper2]\ncmd = sleep 3601\n")
    d.wait(lambda: c.call("status", name="sleeper2")["status"] == "active", 10, "sleeper2")
    reply = c.call("status", name="sleep*")
    assert reply["statuses"] == {"sleeper": "active", "sleeper2": "active"}, reply
    _error(c.call("status", name="nomatch*"), "unknown_watcher",
           "program nomatch* not found (no watcher matches this glob pattern): the watchers are")


def test_unknown_watchers_say_what_was_meant(node):
    d, c = node(BODY)
    _error(c.call("status", name="sleeperz"), "unknown_watcher",
           "program sleeperz not found: did you mean 'sleeper'?")
    _error(c.call("stop", name="zzz"), "unknown_watcher",
           "program zzz not found: the watchers are early, missing, sleeper")


def test_tail_without_a_name_merges_every_watcher(node):
    d, c = node("""
        [watcher:a]
        cmd = sh -c 'echo from-a; exec sleep 3600'

        [watcher:b]
        cmd = sh -c 'sleep 0.2; echo from-b; exec sleep 3600'
    """)
    d.wait(lambda: len(c.call("tail")["lines"]) == 2, 10, "2 lines")
    lines = c.call("tail")["lines"]
    assert [(x["watcher"], x["line"]) for x in lines] == [("a", "from-a"), ("b", "from-b")]
    assert c.call("tail", lines=1)["lines"][0]["line"] == "from-b"


def test_reloadconfig_of_a_wrong_file_is_an_error_without_waiting(node):
    d, c = node(BODY)
    d.config.write_text(d.config.read_text().replace("graceful_timeout = 1", "numprocesess = 2"))
    for waiting in (False, True):
        _error(c.call("reloadconfig", waiting=waiting), "config_error", "numprocesess",
               "did you mean 'numprocesses'")
    assert c.call("status", name="sleeper")["status"] == "active"


def test_start_and_restart_of_a_crash_loop_try_again_now_and_say_how_it_went(node):
    d, c = node(BODY.replace("autostart = false\nmin_uptime = 1", "min_uptime = 1\nbackoff_initial = 30"))
    d.wait(lambda: c.call("status", name="early").get("trouble") == "backoff", 15, "backoff")
    retry_at = c.call("status", name="early")["processes"][0]["retry_at"]
    assert retry_at > time.time() + 20                      # the next try is far away
    for command, props in (("start", {}), ("restart", {"graceful": True}), ("restart", {})):
        started = time.monotonic()
        reply = c.call(command, name="early", waiting=True, wait=15, **props)
        _error(reply, "not_ready", "exit code 3", "Traceback: boom")    # tried now, failed
        assert time.monotonic() - started < 10, command
    assert c.call("status", name="early")["trouble"] == "backoff"


def test_incr_of_a_singleton_says_nothing_changed(node):
    d, c = node(BODY.replace("[watcher:sleeper]\ncmd = sleep 3600", "[watcher:sleeper]\ncmd = sleep 3600\nsingleton = true"))
    reply = c.call("incr", name="sleeper", nb=2, waiting=True)
    assert reply["status"] == "ok" and reply["numprocesses"] == 1, reply
    assert "singleton" in reply["warning"]


def test_add_start_waiting_says_what_it_started(node):
    d, c = node(BODY)
    reply = c.call("add", name="fresh", cmd="sleep 3600", start=True, waiting=True,
                   options={"min_uptime": 0.2})
    assert reply["status"] == "ok" and len(reply["info"]["started"]) == 1, reply
    assert reply["info"]["started"] == c.call("list", name="fresh")["pids"]


def test_set_keys_are_case_insensitive(node):
    """Found by the control fuzz: set NumProcesses = 5 answered ok and changed nothing (the old
    numprocesses, merged first, won)."""
    d, c = node(BODY)
    assert c.call("set", name="sleeper", options={"NumProcesses": 3}, waiting=True)["status"] == "ok"
    assert c.call("get", name="sleeper", keys=["numprocesses"])["options"]["numprocesses"] == 3
    d.wait(lambda: len(c.call("list", name="sleeper")["pids"]) == 3, 10, "3 processes")
    assert c.call("set", name="sleeper", options={"GRACEFUL_TIMEOUT": 2}, waiting=True)["status"] == "ok"
    assert c.call("get", name="sleeper", keys=["graceful_timeout"])["options"]["graceful_timeout"] == 2
