"""Tier 2: no request can freeze a node (the F1 class), removed watchers take no more operations
(F6), strict JSON (F16), names that hide what they are (F17), cut connections logged (F18), and
a stop signal that ends circusd even when its event loop is stuck."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
import zmq

from conftest import IPC_HEAD, Circusd, Raw, proc_alive, proc_children
from circus.protocol.limits import MAX_CONTAINERS, MAX_NUMPROCESSES, MAX_OPTIONS

pytestmark = pytest.mark.real

ONE = """
[watcher:one]
cmd = sleep 3600
numprocesses = 2
graceful_timeout = 1
"""


def _error(reply: dict, code: str, *words: str) -> dict:
    assert reply["status"] == "error" and reply["code"] == code, reply
    for word in words:
        assert word in reply["reason"], reply
    return reply


def _quick_list(ctx, endpoint: str, within: float = 1.0) -> list[str]:
    """``list`` on a fresh socket, answered within ``within`` seconds (the node is not frozen)."""
    c = Raw(ctx, endpoint)
    try:
        started = time.monotonic()
        reply = c.call("list", wait=within)
        assert time.monotonic() - started < within
        assert reply["status"] == "ok", reply
        return reply["watchers"]
    finally:
        c.close()


@pytest.fixture
def node(control_node, tmp_path):
    d, c = control_node(ONE)
    d.wait(lambda: len(d.children("sleep")) == 2, what="2 sleepers")
    ctx = zmq.Context()
    yield d, c, ctx, f"ipc://{tmp_path}/control.sock"
    ctx.destroy(linger=0)


# -- F1: numprocesses has a maximum, checked on every path that sets it ---------------------------

@pytest.mark.parametrize("request_", [
    {"command": "incr", "properties": {"name": "one", "nb": 10 ** 30}},
    {"command": "incr", "properties": {"name": "one", "nb": 10 ** 30, "waiting": True}},
    {"command": "incr", "properties": {"name": "one", "nb": MAX_NUMPROCESSES - 1}},
    {"command": "set", "properties": {"name": "one", "options": {"numprocesses": 10 ** 30}}},
    {"command": "set", "properties": {"name": "one", "options": {"numprocesses": 10 ** 30},
                                      "waiting": True}},
    {"command": "add", "properties": {"name": "two", "cmd": "sleep 3600", "start": True,
                                      "options": {"numprocesses": 10 ** 30}}},
], ids=["incr", "incr-waiting", "incr-one-over", "set", "set-waiting", "add"])
def test_a_huge_numprocesses_is_refused_and_the_node_keeps_answering(node, request_):
    d, c, ctx, endpoint = node
    before = d.children("sleep")
    msg_id = uuid.uuid4().hex
    c.send_raw(json.dumps({"id": msg_id, **request_}).encode())
    reply = c.recv(5)
    assert reply["id"] == msg_id
    _error(reply, "invalid_property", "numprocesses", f"limit of {MAX_NUMPROCESSES}",
           "max_numprocesses")
    for _ in range(5):
        assert _quick_list(ctx, endpoint) == ["one"]
    assert c.call("numprocesses", name="one")["numprocesses"] == 2
    assert c.call("get", name="one", keys=["numprocesses"])["options"] == {"numprocesses": 2}
    assert d.children("sleep") == before


def _start_with(circusd, tmp_path, head: str, body: str):
    d = circusd(IPC_HEAD.format(dir=tmp_path) + head + body)
    d.wait(lambda: (tmp_path / "control.sock").exists(), what="control socket")
    return d


def test_max_numprocesses_is_configurable_and_the_limit_itself_is_allowed(circusd, tmp_path):
    d = _start_with(circusd, tmp_path, "max_numprocesses = 3\n",
                    ONE.replace("numprocesses = 2", "numprocesses = 1"))
    ctx = zmq.Context()
    c = Raw(ctx, f"ipc://{tmp_path}/control.sock")
    try:
        assert c.call("incr", name="one", nb=2, waiting=True)["numprocesses"] == 3
        _error(c.call("incr", name="one", nb=1), "invalid_property", "would be 4", "limit of 3")
        _error(c.call("set", name="one", options={"numprocesses": 4}), "invalid_property",
               "limit of 3")
        d.wait(lambda: len(d.children("sleep")) == 3, what="3 sleepers")
        assert c.call("numprocesses", name="one")["numprocesses"] == 3
    finally:
        c.close()
        ctx.destroy(linger=0)


def test_queued_increments_cannot_pass_the_limit_together(circusd, tmp_path):
    """Each incr --waiting is checked when it arrives and again when it runs (after the others)."""
    d = _start_with(circusd, tmp_path, "max_numprocesses = 4\n", ONE)
    ctx = zmq.Context()
    try:
        clients = [Raw(ctx, f"ipc://{tmp_path}/control.sock") for _ in range(3)]
        for c in clients:
            c.send_raw(json.dumps({"id": "x", "command": "incr",
                                   "properties": {"name": "one", "nb": 2, "waiting": True}}).encode())
        replies = [c.recv(10) for c in clients]
        assert sorted(r["status"] for r in replies) == ["error", "error", "ok"], replies
        for r in replies:
            if r["status"] == "error":
                _error(r, "invalid_property", "limit of 4")
        d.wait(lambda: len(d.children("sleep")) == 4, what="4 sleepers")
        for c in clients:
            c.close()
    finally:
        ctx.destroy(linger=0)


def test_a_file_over_the_limit_is_a_configuration_error(circusd, tmp_path):
    d = circusd(IPC_HEAD.format(dir=tmp_path) + "max_numprocesses = 5\n" + ONE.replace(
        "numprocesses = 2", "numprocesses = 6"), start=False)
    out = subprocess.run([sys.executable, "-m", "circus.cli.circusd", "--check-config", str(d.config)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out
    assert "circus.ini:" in out.stderr and "[watcher:one] numprocesses:" in out.stderr, out.stderr
    assert "would be 6, above the limit of 5" in out.stderr, out.stderr


def test_reloadconfig_over_the_limit_changes_nothing(node, tmp_path):
    d, c, ctx, endpoint = node
    before = d.children("sleep")
    text = d.config.read_text()
    d.config.write_text(text.replace("numprocesses = 2", f"numprocesses = {10 ** 30}"))
    for waiting in (False, True):
        _error(c.call("reloadconfig", waiting=waiting), "config_error", "numprocesses",
               f"limit of {MAX_NUMPROCESSES}")
    assert _quick_list(ctx, endpoint) == ["one"]
    assert d.children("sleep") == before


def test_too_many_options_or_keys_are_refused_at_once(node):
    d, c, ctx, endpoint = node
    many = {f"nosuchoption{i}": 1 for i in range(20_000)}
    for command, props in (("set", {"name": "one", "options": many}),
                           ("add", {"name": "two", "cmd": "sleep 1", "options": many}),
                           ("get", {"name": "one", "keys": list(many)})):
        reply = c.call(command, wait=10, **props)
        _error(reply, "invalid_property" if command != "add" else "invalid_option",
               f"at most {MAX_OPTIONS}")
        assert len(json.dumps(reply)) < 2000        # refused whole, not 20,000 suggestions
    assert _quick_list(ctx, endpoint) == ["one"]


def test_argument_lists_environments_and_values_are_bounded(node):
    d, c, ctx, endpoint = node
    cases = [
        ({"args": ["x"] * 5000}, "arguments: at most"),
        ({"env": {f"V{i}": "x" for i in range(5000)}}, "variables: at most"),
        ({"working_dir": "/" + "d" * 200_000}, "characters: at most"),
        ({"env": {"A": "x" * 100_000, "B": "y" * 100_000, "C": "z" * 100_000,
                  "D": "w" * 100_000, "E": "v" * 100_000, "F": "u" * 100_000,
                  "G": "t" * 100_000, "H": "s" * 100_000, "I": "r" * 100_000,
                  "J": "q" * 100_000, "K": "p" * 100_000}}, "bytes: at most"),
    ]
    for options, words in cases:
        body = json.dumps({"command": "add", "id": "a", "properties": {
            "name": "big", "cmd": "sleep 1", "options": options}})
        if len(body) > (1 << 20):                 # over the frame limit: add it to the file case
            continue
        _error(c.call("add", name="big", cmd="sleep 1", options=options), "invalid_option", words)
    assert _quick_list(ctx, endpoint) == ["one"]


def test_a_request_with_too_many_containers_is_refused(node):
    d, c, ctx, endpoint = node
    c.send_raw(json.dumps({"id": 1, "command": "list",
                           "properties": {"x": [[]] * (MAX_CONTAINERS + 1)}}).encode())
    _error(c.recv(5), "invalid_message", f"more than {MAX_CONTAINERS}")
    assert _quick_list(ctx, endpoint) == ["one"]


def test_a_long_glob_is_refused(node):
    d, c, ctx, endpoint = node
    _error(c.call("stop", name="*a" * 200 + "b", match="glob"), "invalid_property",
           "pattern longer than")
    _error(c.call("start", name="*" * 300), "invalid_property", "pattern longer than")


def test_a_flood_of_large_requests_does_not_starve_other_clients(node):
    """One client sends 60 requests of ~1 MiB of JSON each (~25 ms of decoding apiece); circusd
    reads at most READ_BYTES per wake-up, so another client's list is answered in between."""
    d, c, ctx, endpoint = node
    body = json.dumps({"id": 0, "command": "list",
                       "properties": {"pad": ["x" * 60] * 16_000}}).encode()
    assert (1 << 20) - 50_000 < len(body) <= (1 << 20)
    flood = Raw(ctx, endpoint)
    try:
        for _ in range(60):
            flood.send_raw(body)
        time.sleep(0.05)                          # the flood is queued in circusd's socket
        answered = _quick_list(ctx, endpoint, within=1.0)
        assert answered == ["one"]
        for _ in range(60):
            assert flood.recv(20)["status"] == "ok"
    finally:
        flood.close()


# -- F6: a removed watcher takes no more operations ------------------------------------------------

def test_start_then_rm_without_waiting_leaves_nothing_running(node):
    d, c, ctx, endpoint = node
    c.call("stop", name="one", waiting=True)
    d.wait(lambda: not d.children("sleep"), what="no sleeper")
    for attempt in range(5):
        c.send_raw(json.dumps({"id": "s", "command": "start", "properties": {"name": "one"}}).encode())
        c.send_raw(json.dumps({"id": "r", "command": "rm", "properties": {"name": "one"}}).encode())
        replies = sorted((c.recv(5), c.recv(5)), key=lambda r: r["id"])
        assert [r["status"] for r in replies] == ["ok", "ok"], replies
        assert _quick_list(ctx, endpoint) == [], (attempt, d.log_text()[-1500:])
        time.sleep(0.5)                            # a queued start would run by now
        assert not d.children("sleep"), "a removed watcher's processes were started again"
        assert c.call("add", name="one", cmd="sleep 3600", waiting=True)["status"] == "ok"


def test_operations_queued_behind_rm_fail_instead_of_starting_processes(node):
    d, c, ctx, endpoint = node
    clients = [Raw(ctx, endpoint) for _ in range(4)]
    try:
        clients[0].send_raw(json.dumps({"id": "rm", "command": "rm",
                                        "properties": {"name": "one", "waiting": True}}).encode())
        for i, command in enumerate(("start", "restart", "incr"), start=1):
            clients[i].send_raw(json.dumps({"id": command, "command": command, "properties": {
                "name": "one", "waiting": True}}).encode())
        assert clients[0].recv(10)["status"] == "ok"
        for i in range(1, 4):
            reply = clients[i].recv(10)
            if reply["status"] == "error":
                assert reply["code"] in ("unknown_watcher", "failed", "interrupted"), reply
        time.sleep(0.5)
        assert not d.children("sleep")
        assert _quick_list(ctx, endpoint) == []
    finally:
        for cl in clients:
            cl.close()


def test_reloadconfig_removing_a_watcher_while_it_starts(node):
    d, c, ctx, endpoint = node
    c.call("stop", name="one", waiting=True)
    text = d.config.read_text()
    d.config.write_text(text.split("[watcher:one]")[0] + "[watcher:other]\ncmd = sleep 3601\n")
    c.send_raw(json.dumps({"id": "s", "command": "start", "properties": {"name": "one"}}).encode())
    c.send_raw(json.dumps({"id": "r", "command": "reloadconfig",
                           "properties": {"waiting": True}}).encode())
    replies = {r["id"]: r for r in (c.recv(10), c.recv(10))}
    assert replies["r"]["status"] == "ok", replies
    d.wait(lambda: d.children("sleep 3601"), what="the new watcher")
    time.sleep(0.5)
    assert not d.children("sleep 3600")
    assert _quick_list(ctx, endpoint) == ["other"]


# -- F16, F17, F18 ----------------------------------------------------------------------------------

@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_not_json(node, literal):
    d, c, ctx, endpoint = node
    c.send_raw(('{"id": %s, "command": "list"}' % literal).encode())
    reply = c.recv(5)
    assert reply["code"] == "invalid_json" and reply["id"] is None, reply
    c.send_raw(('{"id": "n", "command": "set", "properties": {"name": "one", "options": '
                '{"graceful_timeout": %s}}}' % literal).encode())
    raw = c.sock.recv() if c.sock.poll(5000) else b""
    json.loads(raw, parse_constant=lambda name: pytest.fail(f"{name} in a reply: {raw!r}"))


@pytest.mark.parametrize("name", ["a\u202eb", "x\u0085y", "x\u2028y", "\u200b", "x\u200dy",
                                  " leading", "trailing ", "no\u00a0break", "\ue000private",
                                  "tab\tname"])
def test_names_that_hide_what_they_are_are_refused(node, name):
    d, c, ctx, endpoint = node
    reply = _error(c.call("add", name=name, cmd="sleep 1"), "invalid_property", "watcher name")
    assert "U+" in reply["reason"] or "space" in reply["reason"], reply
    assert _quick_list(ctx, endpoint) == ["one"]


def test_plain_unicode_names_are_still_fine(node):
    d, c, ctx, endpoint = node
    for name in ("café", "web worker", "日本", "a-b_c.d"):
        assert c.call("add", name=name, cmd="sleep 1")["status"] == "ok", name


def test_a_connection_cut_for_an_oversized_frame_is_logged(node):
    d, c, ctx, endpoint = node
    big = Raw(ctx, endpoint)
    try:
        big.send_raw(b"x" * (8 << 20))
        d.wait_log("dropped a control connection before it delivered a request", timeout=10)
    finally:
        big.close()
    assert "a message over 4194304 bytes is cut" in d.log_text()
    assert _quick_list(ctx, endpoint) == ["one"]
    # ordinary clients that ask and leave are not reported
    lines = d.log_text().count("dropped a control connection")
    for _ in range(5):
        _quick_list(ctx, endpoint)
    time.sleep(0.3)
    assert d.log_text().count("dropped a control connection") == lines


# -- a stop signal ends circusd even when its loop is stuck ----------------------------------------

STUCK = textwrap.dedent("""
    import sys, time
    from circus.core import handlers
    def busy(arbiter, ops, props):
        if props.get("name") == "python":
            while True:
                pass
        time.sleep(3600)
        return {}
    handlers.HANDLERS["numwatchers"] = busy
    handlers.HANDLERS["numprocesses"] = busy
    from circus.cli.circusd import main
    sys.exit(main())
""")


@pytest.mark.parametrize("how", ["python", "sleep"])
def test_sigterm_ends_circusd_whose_loop_is_stuck(tmp_path, how):
    d = Circusd(tmp_path)
    d.write(IPC_HEAD.format(dir=tmp_path) + ONE)
    argv = d.argv()
    d.proc = subprocess.Popen([sys.executable, "-c", STUCK, *argv[3:]], cwd=tmp_path,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    ctx = zmq.Context()
    try:
        d.wait(lambda: len(d.children("sleep")) == 2, what="2 sleepers")
        kids = d.children("sleep")
        c = Raw(ctx, f"ipc://{tmp_path}/control.sock")
        c.send_raw(json.dumps({"id": 1, "command": "numprocesses",
                               "properties": {"name": how}}).encode())
        time.sleep(0.3)                              # the loop is stuck in the handler now
        with pytest.raises(AssertionError):
            _quick_list(ctx, f"ipc://{tmp_path}/control.sock", within=0.5)
        started = time.monotonic()
        d.signal(signal.SIGTERM)
        code = d.proc.wait(15)
        took = time.monotonic() - started
        assert code != 0 and took < 10, (code, took)
        log = d.log_text()
        assert "Timeout" in log and "busy" in log, log[-2000:]      # the stack of the stuck loop
        deadline = time.monotonic() + 10
        while any(proc_alive(k) for k in kids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(proc_alive(k) for k in kids), "the keeper ended the children"
        c.close()
    finally:
        ctx.destroy(linger=0)
        d.cleanup()


def test_sigterm_on_a_healthy_loop_still_stops_cleanly(control_node, tmp_path):
    d, c = control_node(ONE)
    d.wait(lambda: len(d.children("sleep")) == 2, what="2 sleepers")
    d.signal(signal.SIGTERM)
    assert d.proc.wait(15) == 0
    assert "Timeout" not in d.log_text()


# -- patterns searched in output lines run in linear time ------------------------------------------

def test_catastrophic_line_patterns_do_not_freeze_the_node(node, tmp_path):
    """``.*a.*b`` took Python's re 1.2 s on one line of 1,024 'a'; ``(a+)+$`` never ends on
    'aaa...b'. RE2 searches both in linear time."""
    d, c, ctx, endpoint = node
    script = tmp_path / "spam.py"
    script.write_text("import sys, time\n"
                      "for _ in range(200):\n"
                      "    print('a' * 4000 + 'c', flush=True)\n"
                      "print('a' * 30 + 'b', flush=True)\n"
                      "time.sleep(3600)\n")
    reply = c.call("add", name="spam", cmd=f"{sys.executable} {script}", start=True, waiting=True,
                   options={"ready": "log:(a+)+$", "ready_timeout": 5,
                            "stdout_stream": {"class": "StdoutStream"}}, wait=20)
    assert reply["status"] == "error" and reply["code"] == "not_ready", reply
    for _ in range(3):
        assert "spam" in _quick_list(ctx, endpoint)
    reply = c.call("add", name="spam2", cmd=f"{sys.executable} {script}", start=True,
                   waiting=True, options={"ready": "log:.*a.*b", "ready_timeout": 10,
                                          "stdout_stream": {"class": "StdoutStream"}}, wait=20)
    assert reply["status"] == "ok", reply          # the last line matches, found at once
    assert "spam2" in _quick_list(ctx, endpoint)


def test_back_references_are_refused_with_the_reason(node):
    d, c, ctx, endpoint = node
    _error(c.call("add", name="br", cmd="sleep 1", options={"ready": r"log:(a)\1"}),
           "invalid_option", "RE2 syntax")
