"""Tier 1: what circusmeta prints of the nodes' results, its help and its answer to a typo, and
how a connection problem is named (pure: no sockets)."""
from __future__ import annotations

import zmq

from circus.stats.health import Tone
from circusmeta.control import split_absent
from circusmeta.fanout import (NodeResult, connect_failure, exit_code, handshake_failure,
                               handshake_timed_out)
from circusmeta.report import (list_lines, node_lines, nodes_table, output_line, stats_lines,
                               status_lines, table)
from circusmeta.usage import HELP, distance, suggestions, unknown_command


def ok(node, **reply):
    return NodeResult(node, "active", {"status": "ok", "node": node, **reply})


def refused(node, reason, code="bad"):
    return NodeResult(node, "active", {"status": "error", "reason": reason, "code": code,
                                       "node": node})


def down(node, why="cannot connect to ipc:///x within 2 s"):
    return NodeResult(node, "not_available", error=why, endpoint="ipc:///x")


def test_table_aligns_and_colours_cells_without_breaking_alignment():
    rows = [["A", "B", "C"], ["long-one", ("fatal", Tone.BAD), "free text"], ["x", "y", ""]]
    assert table(rows) == ["A         B      C", "long-one  fatal  free text", "x         y"]
    coloured = table(rows, colour=True)
    assert coloured[1] == "long-one  \x1b[31mfatal\x1b[0m  free text"
    assert table([]) == []


def test_status_table_has_a_trouble_column_and_counts_trouble():
    results = {
        "web1": ok("web1", statuses={"api": "active", "crasher": "active", "old": "stopped"},
                   details={"crasher": {"state": "active", "trouble": "backoff",
                                        "reason": "1 process(es) in backoff: exit code 3"}}),
        "web2": ok("web2", statuses={"api": "fatal"},
                   details={"api": {"state": "fatal", "reason": "exited 6 times"}}),
        "web3": down("web3"),
    }
    lines, troubled = status_lines(results)
    assert lines == ["NODE  WATCHER  STATE    TROUBLE  REASON",
                     "web1  api      active   -",
                     "web1  crasher  active   backoff  1 process(es) in backoff: exit code 3",
                     "web1  old      stopped  -",
                     "web2  api      fatal    fatal    exited 6 times"]
    assert troubled == 2                      # a fatal without "trouble" (an older circusd) too
    assert status_lines({"web3": down("web3")}) == ([], 0)


def test_status_of_one_watcher_shows_its_processes_and_last_lines():
    reply = {"status": "active", "state": "active", "trouble": "backoff", "time": 1000.0,
             "reason": "1 process(es) in backoff: exit code 3; respawn in 8 s",
             "processes": [{"wid": 1, "pid": None, "state": "backoff", "restarts": 2,
                            "last_exit": 3, "reason": "exit code 3; respawn in 8 s"},
                           {"wid": 2, "pid": 42, "state": "running", "started": 877.0,
                            "restarts": 1, "last_exit": None}],
             "last_lines": [{"seq": 1, "time": 999.0, "pid": 7, "stream": "stderr",
                             "line": "Traceback (most recent call last):", "watcher": "crasher"},
                            {"seq": 2, "time": 999.0, "pid": 7, "stream": "stderr",
                             "line": "OSError: boom", "watcher": "crasher"}]}
    lines, troubled = status_lines({"web1": NodeResult("web1", "active", reply)}, name="crasher")
    assert troubled == 1
    assert lines == [
        "NODE  WATCHER  STATE   TROUBLE  REASON",
        "web1  crasher  active  backoff  1 process(es) in backoff: exit code 3; respawn in 8 s",
        "  process 1:  no pid  backoff  2 restarts  last exit 3  (exit code 3; respawn in 8 s)",
        "  process 2:  pid 42  running  up 2m03s  1 restart",
        "  web1/crasher | Traceback (most recent call last):",
        "  web1/crasher | OSError: boom"]


def test_list_and_stats_tables():
    assert list_lines({"a": ok("a", watchers=["x", "y"]), "b": down("b")}) == \
        ["NODE  WATCHER", "a     x", "a     y"]
    info = {"pid": 5, "cpu": 1.5, "mem": 0.2, "mem_info1": "8.0M", "age": 75.0}
    assert stats_lines({"a": ok("a", infos={"w": {"5": info}})}) == [
        "NODE  WATCHER  PID  CPU%  MEM%  RSS   AGE",
        "a     w        5    1.5   0.2   8.0M  1m15s"]


def test_a_node_line_tells_the_truth():
    render = lambda reply: str(reply.get("numprocesses", "ok"))          # noqa: E731
    assert node_lines("a", ok("a"), render) == ["a: ok"]
    assert node_lines("a", down("a"), render) == \
        ["a: not_available: cannot connect to ipc:///x within 2 s"]
    assert node_lines("a", refused("a", "program web not found"), render) == \
        ["a: error: program web not found"]
    warned = ok("a", numprocesses=0, warning="web had numprocesses = 1: decr 5 leaves 0")
    assert node_lines("a", warned, render) == \
        ["a: 0", "a: warning: web had numprocesses = 1: decr 5 leaves 0"]
    failed = refused("a", "web: process 7 exit code 3 0.21 s after it started (a failed start: "
                     "it ran less than min_uptime = 1 s); last output lines:\n  Traceback: x\n"
                     "  OSError: boom", "not_ready")
    assert node_lines("a", failed, render, "web") == [
        "a: error: web: process 7 exit code 3 0.21 s after it started (a failed start: it ran "
        "less than min_uptime = 1 s); its last output lines:",
        "  a/web | Traceback: x", "  a/web | OSError: boom"]
    empty = ok("a", info={"started": [], "kept": []})
    assert node_lines("a", empty, lambda reply: "ok", "web", "start") == [
        "a: ok", "a: warning: no process was started and none runs (circusmeta status web "
                 "--node a says why)"]
    assert node_lines("a", empty, lambda reply: "ok", "web") == ["a: ok"]      # not waiting
    kept = ok("a", info={"started": [], "kept": [42]})
    assert node_lines("a", kept, lambda reply: "ok", "web", "start") == ["a: ok"]
    multi = refused("a", "first\nsecond")
    assert node_lines("a", multi, render) == ["a: error: first", "  second"]
    assert not failed.ok and failed.code == "not_ready" and failed.to_dict()["reason"]


def test_nodes_table_counts_the_watchers_in_trouble():
    rows = [{"node": "a", "state": "active", "endpoint": "ipc:///a", "tags": ["web"],
             "rtt": 0.002, "info": {"load": [0.5, 0.25, 0.1], "mem_total": 4 << 30,
                                    "mem_available": 3 << 30, "watchers": 3, "processes": 5},
             "trouble": {"crasher": "backoff"}},
            {"node": "b", "state": "not_available", "endpoint": "ipc:///b", "tags": [],
             "rtt": None, "trouble": None}]
    assert nodes_table(rows) == [
        "NODE  STATE          ADDRESS   TAGS  LOAD            MEMORY     WATCHERS  TROUBLE  "
        "PROCS  RTT",
        "a     active         ipc:///a  web   0.50 0.25 0.10  1.0G/4.0G  3         1        "
        "5      2.0ms",
        "b     not_available  ipc:///b  -     -               -          -         -        "
        "-      -"]
    assert "\x1b[31m1\x1b[0m" in nodes_table(rows, colour=True)[1]


def test_read_only_queries_ask_the_nodes_that_have_the_watcher():
    gone = refused("b", "program web not found: did you mean 'wab'?", "unknown_watcher")
    results = {"a": ok("a", status="active"), "b": gone, "c": down("c")}
    counted, absent = split_absent(True, {"name": "web"}, results)
    assert absent == ["b"] and set(counted) == {"a", "c"} and exit_code(counted.values()) == 4
    counted, absent = split_absent(True, {"name": "web"}, {"a": ok("a"), "b": gone})
    assert absent == ["b"] and exit_code(counted.values()) == 0
    # nobody has it: every refusal counts (exit 3); a command that changes something: the same
    everywhere = {"a": refused("a", "program web not found", "unknown_watcher"), "b": gone}
    assert split_absent(True, {"name": "web"}, everywhere) == (everywhere, [])
    assert exit_code(everywhere.values()) == 3
    assert split_absent(False, {"name": "web"}, results) == (results, [])
    assert split_absent(True, {}, results) == (results, [])


def test_output_lines_say_where_they_come_from():
    assert output_line("web1", {"watcher": "api", "line": "hello"}) == "web1/api | hello"
    assert output_line("web1", {"line": "x", "cut": 9000}, "api") == \
        "web1/api | x [... 9000 bytes in all]"


def test_help_is_a_usage_list_and_typos_get_a_suggestion():
    assert HELP.startswith("usage: circusmeta [--pool FILE]")
    assert "``" not in HELP and ".py" not in HELP          # not the docstring's reStructuredText
    for command in ("nodes", "status [NAME]", "tail [NAME]", "--node N", "exit codes:"):
        assert command in HELP
    known = ["status", "stats", "start", "stop", "dstats", "processes", "tail", "list"]
    assert distance("stauts", "status") == 1 and distance("stat", "stats") == 1
    assert suggestions("stauts", known) == ["stats", "status"]
    assert suggestions("proc", known) == ["processes"]
    assert suggestions("zzzzzz", known) == []
    assert unknown_command("stauts", known) == (
        "unknown command 'stauts' (did you mean 'stats' or 'status'?); 'circusmeta --help' "
        "lists them")
    assert unknown_command("xyz", known) == \
        "unknown command 'xyz'; 'circusmeta --help' lists the commands"


def test_a_handshake_timeout_is_a_timeout_not_a_key_problem():
    no_detail = zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    assert handshake_timed_out(no_detail, 29.9, 30.0)
    assert not handshake_timed_out(no_detail, 0.01, 30.0)          # the peer closed: a mismatch
    assert not handshake_timed_out(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, 40.0, 30.0)
    assert not handshake_timed_out(no_detail, None, 30.0)
    text = handshake_failure(no_detail, False, "tcp://h:1", True, 30.0)
    assert text == ("tcp://h:1 accepted the connection but did not complete the ZeroMQ "
                    "handshake within 30 s (a frozen or overloaded circusd, or no circusd at "
                    "that address)")
    assert "CURVE" not in text


def test_a_failed_connection_says_why():
    assert connect_failure("ipc:///run/x.sock", 3, True, False) == (
        "cannot connect to ipc:///run/x.sock within 3 s: no socket file /run/x.sock (is circusd "
        "running there?)")
    assert connect_failure("ipc:///run/x.sock", 3, True, True).endswith(
        "nobody listens on the socket file (circusd stopped?)")
    assert connect_failure("tcp://h:1", 2.5, True).endswith(
        "the connection is refused or the host is unreachable (is circusd running there, on "
        "this port?)")
    assert connect_failure("tcp://h:1", 2.5, False).endswith(
        "no answer to the connection attempts (the host down, or a firewall?)")
