"""circusctl against a fake circusd answering with replies recorded from a real Circus 0.19 circusd.

The expected texts and exit codes were captured by running circusctl 0.19.0 against circusd
0.19.0 with the same replies; where we differ on purpose, the test says so (``status`` exits 3
when a watcher is not active; ``stats`` and ``dstats`` are tables with headers).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from circus import __version__
from circus.cli import circusctl
from circus.cli.ctl_forms import build_request, UsageError
from circus.cli.ctl_output import render
from circus.cli.ctl_shell import CtlShell
from test_client_fake import err, fake, ok  # noqa: F401  (fixture)

# -- replies recorded from circusd 0.19.0 -------------------------------------------------------------

INFO_1 = {"mem_info1": "1.36M", "mem_info2": "2.44M", "cpu": 0.0, "mem": 0.006, "ctime": "0:00.0",
          "pid": 14588, "username": "root", "nice": 0, "create_time": 1795320258.78, "age": 13.85,
          "cmdline": "sleep", "children": [], "started": 1795320258.79, "wid": 1}
INFO_2 = {**INFO_1, "mem_info1": "1.47M", "pid": 14590, "wid": 2}
DSTATS = {"mem_info1": "31.17M", "mem_info2": "117.45M", "cpu": 0.0, "mem": 0.129, "ctime": "0:00.30",
          "pid": 14542, "username": "root", "nice": 0, "create_time": 1795320258.53, "age": 14.9,
          "cmdline": "python3", "children": []}
OPTIONS = {"__name__": "watcher:sleeper", "args": "", "close_child_stderr": False,
           "close_child_stdin": True, "close_child_stdout": False, "cmd": "sleep 1000",
           "copy_env": False, "env": {}, "executable": None, "gid": None, "graceful_timeout": 30.0,
           "max_age": 0, "max_age_variance": 30, "max_retry": 5, "numprocesses": 2,
           "on_demand": False, "priority": 0, "respawn": True, "send_hup": False, "shell": False,
           "shell_args": None, "singleton": False, "stderr_stream_conf": {}, "stdout_stream_conf": {},
           "stop_children": False, "stop_signal": 15, "uid": None, "use_sockets": False,
           "warmup_delay": 0, "working_dir": "/tmp/cap"}
OPTIONS_TEXT = """\
__name__: watcher:sleeper
args: 
close_child_stderr: False
close_child_stdin: True
close_child_stdout: False
cmd: sleep 1000
copy_env: False
env: 
executable: 
gid: 
graceful_timeout: 30.0
max_age: 0
max_age_variance: 30
max_retry: 5
numprocesses: 2
on_demand: False
priority: 0
respawn: True
send_hup: False
shell: False
shell_args: 
singleton: False
stderr_stream_conf: {}
stdout_stream_conf: {}
stop_children: False
stop_signal: 15
uid: 
use_sockets: False
warmup_delay: 0
working_dir: /tmp/cap
"""  # noqa: W291 (0.19 prints "key: " for empty values)
GLOBALOPTIONS = {"endpoint": "ipc:///tmp/cap/ctl.sock", "stats_endpoint": "ipc:///tmp/cap/stats.sock",
                 "pubsub_endpoint": "ipc:///tmp/cap/pub.sock", "check_delay": 1.0,
                 "multicast_endpoint": ""}
STATS_HEAD = "WATCHER    PID  CPU%  MEM%    RSS    VMS      AGE  CMD"
ROW_1 = "sleeper  14588   0.0   0.0  1.36M  2.44M  0:00:13  sleep"
ROW_2 = "sleeper  14590   0.0   0.0  1.47M  2.44M  0:00:13  sleep"

# (argv after the command, recorded reply, expected stdout) — exit code 0
RECORDED_OK = [
    (["list"], ok(watchers=["circusd-stats", "idle", "sleeper", "web"]),
     "circusd-stats,idle,sleeper,web\n"),
    (["list", "sleeper"], ok(pids=[14588, 14590]), "14588,14590\n"),
    (["status"], ok(statuses={"Web": "active", "sleeper": "active", "circusd-stats": "active"}),
     "Web: active\ncircusd-stats: active\nsleeper: active\n"),
    (["status", "sleeper"], {"status": "active", "time": 1.0}, "active\n"),
    (["listsockets"], ok(sockets=[{"fd": 7, "name": "unixs", "backlog": 2048, "path": "/tmp/cap/u.sock"},
                                  {"fd": 8, "name": "web", "backlog": 2048, "host": "127.0.0.1",
                                   "port": 42571}]),
     "7:socket 'unixs' at /tmp/cap/u.sock\n8:socket 'web' at 127.0.0.1:42571\n"),
    (["numprocesses"], ok(numprocesses=4), "4\n"),
    (["numprocesses", "sleeper"], ok(numprocesses=2, watcher_name="sleeper"), "2\n"),
    (["numwatchers"], ok(numwatchers=4), "4\n"),
    (["options", "sleeper"], ok(options=OPTIONS), OPTIONS_TEXT),
    (["get", "sleeper", "numprocesses", "cmd"], ok(options={"numprocesses": 2, "cmd": "sleep 1000"}),
     "numprocesses: 2\ncmd: sleep 1000\n"),
    (["globaloptions"], ok(options=GLOBALOPTIONS),
     "endpoint: ipc:///tmp/cap/ctl.sock\nstats_endpoint: ipc:///tmp/cap/stats.sock\n"
     "pubsub_endpoint: ipc:///tmp/cap/pub.sock\ncheck_delay: 1.0\nmulticast_endpoint: \n"),
    (["globaloptions", "check_delay"], ok(options={"check_delay": 1.0}), "check_delay: 1.0\n"),
    (["incr", "sleeper"], ok(), "ok\n"),
    (["incr", "sleeper", "2", "--waiting"], ok(numprocesses=5), "5\n"),
    (["decr", "sleeper", "3", "--waiting"], ok(numprocesses=3), "3\n"),
    (["incr", "single"], ok(numprocesses=1, singleton=True),
     "This watcher is a Singleton - not changing the number of processes\n"),
    (["set", "sleeper", "numprocesses", "3"], ok(), "ok\n"),
    (["add", "foo", "sleep 500"], ok(), "ok\n"),
    (["rm", "bar"], ok(), "ok\n"),
    (["start", "foo", "--waiting"], ok(info={"started": [15263], "kept": []}), "ok\n"),
    (["stop", "foo", "--waiting"], ok(info=None), "ok\n"),
    (["restart", "sleeper", "--waiting"], ok(info={"stopped": [1, 2], "started": [3, 4], "kept": []}),
     "ok\n"),
    (["reload", "sleeper", "--waiting"], ok(info={"stopped": [1], "started": [2], "kept": []}), "ok\n"),
    (["reloadconfig"], ok(), "ok\n"),
    (["kill", "sleeper", "--waiting"], ok(), "ok\n"),
    (["signal", "sleeper", "hup"], ok(), "ok\n"),
    (["quit"], ok(), "ok\n"),
]

# (argv, recorded error reply, expected stderr) — exit code 3
RECORDED_ERRORS = [
    (["get", "sleeper", "nope"], err("'nope' option not found"), "error: 'nope' option not found\n"),
    (["list", "nope"], err("program nope not found"), "error: program nope not found\n"),
    (["stats", "sleeper", "99999"], err("process 99999 not found in 'sleeper'"),
     "error: process 99999 not found in 'sleeper'\n"),
    (["incr", "nope"], err("program nope not found"), "error: program nope not found\n"),
    (["rm", "nope"], err("program nope not found"), "error: program nope not found\n"),
    (["start", "nomatch", "--waiting"], err("program nomatch not found"),
     "error: program nomatch not found\n"),
    (["add", "foo", "sleep", "500"], err("'foo' already exist", errno=5),
     "error: 'foo' already exist\n"),
    # 0.19 printed only "error" here (the reason was dropped): we keep the reason
    (["status", "nope"], err("program nope not found"), "error: program nope not found\n"),
    # 0.19 printed the bare reason for globaloptions: we print it like every other error
    (["globaloptions", "nope"], err("'nope' not an existing option"),
     "error: 'nope' not an existing option\n"),
]

TIMEOUT_TEXT = """\
Timed out.
A time out usually happens in one of those cases:

#1 The Circus daemon could not be reached.
#2 The Circus daemon took too long to perform the operation

For #1, make sure you are hitting the right place
by checking your --endpoint option.

For #2, if you are not expecting a result to
come back, increase your timeout option value
(particularly with waiting switches)
"""


@pytest.fixture
def ctl(capsys, monkeypatch):
    monkeypatch.delenv("CIRCUSCTL_ENDPOINT", raising=False)

    def run(*argv: str) -> tuple[int, str, str]:
        code = circusctl.main(list(argv))
        out, error = capsys.readouterr()
        return int(code), out, error
    return run


def replying(reply):
    return lambda req: reply


@pytest.mark.parametrize("argv,reply,expected", RECORDED_OK, ids=[" ".join(c[0]) for c in RECORDED_OK])
def test_output_matches_0_19(fake, ctl, argv, reply, expected):
    server = fake(replying(reply))
    assert ctl("--endpoint", server.endpoint, *argv) == (0, expected, "")
    assert server.last["command"] == argv[0]


# 0.19 printed these and exited 0; the text is the same, the exit status says not all is well
RECORDED_UNHEALTHY = [
    (["status"], ok(statuses={"Web": "active", "idle": "stopped", "sleeper": "active",
                              "circusd-stats": "active"}),
     "Web: active\ncircusd-stats: active\nidle: stopped\nsleeper: active\n"),
    (["status", "idle"], {"status": "stopped", "time": 1.0}, "stopped\n"),
    (["status", "web"], {"status": "starting", "time": 1.0}, "starting\n"),
]


@pytest.mark.parametrize("argv,reply,expected", RECORDED_UNHEALTHY,
                         ids=[" ".join(c[0]) for c in RECORDED_UNHEALTHY])
def test_status_of_a_watcher_not_active_exits_3_with_0_19_text(fake, ctl, argv, reply, expected):
    server = fake(replying(reply))
    assert ctl("--endpoint", server.endpoint, *argv) == (3, expected, "")


# what 0.19 printed as headerless lines (``pid: pid  cmd user nice rss vms cpu mem ctime``)
STATS = [
    (["stats", "sleeper"], ok(name="sleeper", info={"14588": INFO_1, "14590": INFO_2}),
     f"{STATS_HEAD}\n{ROW_1}\n{ROW_2}\n"),
    (["stats"], ok(infos={"Web": {}, "idle": {}, "sleeper": {"14588": INFO_1, "14590": INFO_2}}),
     f"{STATS_HEAD}\n{ROW_1}\n{ROW_2}\n"),
    (["stats", "sleeper", "14588"], ok(process=14588, info=INFO_1),
     f"{STATS_HEAD}\n{ROW_1}\n"),
    (["dstats"], ok(info=DSTATS),
     "WATCHER    PID  CPU%  MEM%     RSS      VMS      AGE  CMD\n"
     "circusd  14542   0.0   0.1  31.17M  117.45M  0:00:14  python3\n"),
]


@pytest.mark.parametrize("argv,reply,expected", STATS, ids=[" ".join(c[0]) for c in STATS])
def test_stats_is_a_table_with_headers(fake, ctl, argv, reply, expected):
    server = fake(replying(reply))
    assert ctl("--endpoint", server.endpoint, *argv) == (0, expected, "")


@pytest.mark.parametrize("argv,reply,expected", RECORDED_ERRORS,
                         ids=[" ".join(c[0]) for c in RECORDED_ERRORS])
def test_error_replies_exit_3_on_stderr(fake, ctl, argv, reply, expected):
    server = fake(replying(reply))
    assert ctl("--endpoint", server.endpoint, *argv) == (3, "", expected)


# -- what is sent --------------------------------------------------------------------------------

REQUESTS = [
    (["add", "--start", "bar", "sleep", "600"], "add", {"name": "bar", "cmd": "sleep 600", "start": True}),
    (["add", "foo", "sleep 1", "--options", '{"numprocesses": 3}'], "add",
     {"name": "foo", "cmd": "sleep 1", "options": {"numprocesses": 3}}),
    (["add", "web", "python", "-m", "http.server", "--start"], "add",
     {"name": "web", "cmd": "python -m http.server", "start": True}),
    (["add", "web", "--", "sh", "-c", "exit 1", "--start"], "add",
     {"name": "web", "cmd": "sh -c exit 1 --start"}),
    (["add", "web", "sleep 500", "--start", "--waiting"], "add",
     {"name": "web", "cmd": "sleep 500", "start": True, "waiting": True, "timeout": 5.0}),
    (["rm", "foo", "--nostop"], "rm", {"name": "foo", "nostop": True}),
    (["start"], "start", {}),
    (["stop", "web", "--match", "regex"], "stop", {"name": "web", "match": "regex"}),
    (["restart", "web"], "restart", {"name": "web"}),
    (["reload", "web", "--terminate", "--sequential"], "reload",
     {"name": "web", "graceful": False, "sequential": True}),
    (["reloadconfig", "--dry-run"], "reloadconfig", {"dry_run": True}),
    (["reloadconfig", "--dry_run"], "reloadconfig", {"dry_run": True}),
    (["incr", "web", "2"], "incr", {"name": "web", "nb": 2}),
    (["decr", "web"], "decr", {"name": "web"}),
    (["set", "web", "numprocesses", "3", "shell", "yes", "env", "A=1,B=x", "stop_signal", "hup",
      "graceful_timeout", "2.5", "hooks", "before_start:m.f", "restart_policy", "never",
      "stdout_stream.max_bytes", "10"], "set",
     {"name": "web", "options": {"numprocesses": 3, "shell": True, "env": {"A": "1", "B": "x"},
                                 "stop_signal": 1, "graceful_timeout": 2.5,
                                 "hooks": {"before_start": "m.f"}, "restart_policy": "never",
                                 "stdout_stream.max_bytes": 10}}),
    (["get", "web", "cmd", "numprocesses"], "get", {"name": "web", "keys": ["cmd", "numprocesses"]}),
    (["options", "web"], "options", {"name": "web"}),
    (["globaloptions", "check_delay"], "globaloptions", {"option": "check_delay"}),
    (["list"], "list", {}),
    (["numprocesses", "web"], "numprocesses", {"name": "web"}),
    (["stats", "--extended", "web", "12"], "stats", {"name": "web", "process": 12, "extended": True}),
    (["kill", "web", "12", "--signum", "KILL", "--graceful_timeout", "1.5"], "kill",
     {"name": "web", "pid": 12, "signum": "KILL", "graceful_timeout": 1.5}),
    (["kill", "web", "--graceful-timeout", "2"], "kill", {"name": "web", "graceful_timeout": 2}),
    (["signal", "web", "hup"], "signal", {"name": "web", "signum": "hup"}),
    (["signal", "web", "12", "9", "--children"], "signal",
     {"name": "web", "pid": 12, "signum": 9, "children": True}),
    (["signal", "--recursive", "web", "12", "usr1"], "signal",
     {"name": "web", "pid": 12, "signum": "usr1", "recursive": True}),
    (["reopen"], "reopen", {}),
    (["quit"], "quit", {}),
]


@pytest.mark.parametrize("argv,command,props", REQUESTS, ids=[" ".join(r[0]) for r in REQUESTS])
def test_requests_sent(fake, ctl, argv, command, props):
    server = fake()
    code, _, error = ctl("--endpoint", server.endpoint, *argv)
    assert (code, error) == (0, "")
    assert server.last["command"] == command
    assert server.last["properties"] == props
    assert "msg_type" not in server.last


def test_waiting_commands_pass_the_timeout_on(fake, ctl):
    server = fake()
    assert ctl("--endpoint", server.endpoint, "--timeout", "7.5", "stop", "web", "--waiting")[0] == 0
    assert server.last["properties"] == {"name": "web", "waiting": True, "timeout": 7.5}
    assert ctl("--endpoint", server.endpoint, "incr", "web", "--waiting")[0] == 0
    assert server.last["properties"] == {"name": "web", "waiting": True, "timeout": 5.0}


def test_global_options_after_the_command(fake, ctl):
    server = fake(replying(ok(watchers=["a"])))
    code, out, _ = ctl("list", "--endpoint", server.endpoint, "--json")
    assert code == 0 and json.loads(out)["watchers"] == ["a"]


# -- status and reloadconfig: our richer replies -------------------------------------------------

def test_status_shows_rich_state_and_reason(fake, ctl):
    reply = ok(statuses={"web": "stopped", "db": "active", "old": "active"},
               details={"web": {"state": "fatal", "reason": "exited 3 times in 2.1 s: exit code 1"},
                        "db": {"state": "active", "reason": ""}})
    server = fake(replying(reply))
    assert ctl("--endpoint", server.endpoint, "status") == (
        3, "db: active\nold: active\nweb: fatal (exited 3 times in 2.1 s: exit code 1)\n", "")
    reply["details"] = {"web": {"state": "active", "reason": "1 process(es) in backoff: exit code "
                                "1; respawn in 10.44 s", "trouble": "backoff"}}
    reply["statuses"]["web"] = "active"
    assert ctl("--endpoint", server.endpoint, "status") == (
        3, "db: active\nold: active\nweb: active (backoff: 1 process(es) in backoff: exit code 1; "
        "respawn in 10.44 s)\n", "")
    reply["details"] = {"web": {"state": "active", "reason": "", "trouble": None}}
    assert ctl("--endpoint", server.endpoint, "status") == (
        0, "db: active\nold: active\nweb: active\n", "")


def test_named_status_shows_rich_state(fake, ctl):
    server = fake(replying({"status": "stopped", "state": "fatal", "reason": "spawn failed: no such file",
                            "time": 1.0}))
    assert ctl("--endpoint", server.endpoint, "status", "web") == (
        3, "fatal (spawn failed: no such file)\n", "")
    server.handler = replying({"status": "active", "state": "active", "reason": "", "time": 1.0})
    assert ctl("--endpoint", server.endpoint, "status", "web") == (0, "active\n", "")


def test_reloadconfig_dry_run_prints_the_plan(fake, ctl):
    changes = ["+ watcher api (added)", "= watcher web: numprocesses 2 -> 4 (resize)"]
    server = fake(replying(ok(plan={"watchers_added": ["api"]}, changes=changes)))
    assert ctl("--endpoint", server.endpoint, "reloadconfig", "--dry-run") == (
        0, "\n".join(changes) + "\n", "")
    assert ctl("--endpoint", server.endpoint, "reloadconfig", "--waiting") == (
        0, "ok\n" + "\n".join(changes) + "\n", "")
    server.handler = replying(ok(plan=["~ watcher web: cmd changed (restart)"]))
    assert ctl("--endpoint", server.endpoint, "reloadconfig", "--dry-run") == (
        0, "~ watcher web: cmd changed (restart)\n", "")


def test_stats_children_and_dead_pids():
    child = {**INFO_1, "pid": 99, "cmdline": "child", "rss": 2048, "vms": 3 * 1024 ** 2,
             "age": 3725.5}
    reply = ok(name="w", info={"1": {**INFO_1, "pid": 1, "cpu": 12.345, "children": [child]},
                               "2": "No such process (stopped?)"})
    text, is_error = render("stats", reply)
    assert not is_error
    assert text.splitlines() == [
        "WATCHER  PID  CPU%  MEM%    RSS    VMS      AGE  CMD",
        "w          1  12.3   0.0  1.36M  2.44M  0:00:13  sleep",
        "          99   0.0   0.0   2.0K   3.0M  1:02:05   \\_ child",
        "w          2     -     -      -      -        -  No such process (stopped?)"]


def test_nodeinfo_is_key_value_lines(fake, ctl):
    reply = ok(name="web1", version="1.0.0", pid=4242, uptime=93784.2, load=[0.5, 1.25, 2.0],
               cpu_count=2, mem_total=8 * 1024 ** 3, mem_available=6 * 1024 ** 3, watchers=4,
               processes=9, node="web1")
    server = fake(replying(reply))
    assert ctl("--endpoint", server.endpoint, "nodeinfo") == (0, (
        "name:      web1\n"
        "version:   1.0.0\n"
        "pid:       4242\n"
        "uptime:    1d 2:03:04\n"
        "load:      0.50 1.25 2.00 (1, 5, 15 min; 2 CPUs)\n"
        "memory:    6.0G available of 8.0G (25.0% used)\n"
        "watchers:  4\n"
        "processes: 9\n"), "")


def test_a_warning_goes_to_stderr_and_the_command_still_succeeds(fake, ctl):
    server = fake(replying(ok(numprocesses=0, warning="web had numprocesses = 2: decr 5 leaves "
                                                      "0, not a negative number")))
    assert ctl("--endpoint", server.endpoint, "decr", "web", "5", "--waiting") == (
        0, "0\n", "warning: web had numprocesses = 2: decr 5 leaves 0, not a negative number\n")


def test_options_env_is_sorted_pairs():
    text, _ = render("options", ok(options={"env": {"B": "2", "A": "1"}, "uid": None}))
    assert text == "env: A=1,B=2\nuid: "


# -- --json, exit codes, endpoints ---------------------------------------------------------------

def test_json_prints_the_raw_reply_and_exits_3_on_error(fake, ctl):
    # 0.19 exited 0 here: a script had to parse the JSON to see the error
    reply = {"status": "error", "reason": "program nope not found", "tb": None, "time": 1795320281.7,
             "errno": 3}
    server = fake(replying(reply))
    for command in (["status", "nope"], ["incr", "nope"]):
        code, out, error = ctl("--endpoint", server.endpoint, "--json", *command)
        assert (code, error) == (3, "")
        assert out == json.dumps({**reply, "id": server.last["id"]}) + "\n"
    server.handler = replying({"status": "stopped", "state": "stopped", "time": 1.0})
    code, out, _ = ctl("--endpoint", server.endpoint, "--json", "status", "idle")
    assert code == 3 and json.loads(out)["status"] == "stopped"


def test_json_prettify_is_indented_and_sorted(fake, ctl):
    server = fake(replying({"status": "ok", "time": 1.5, "watchers": ["a", "b"]}))
    code, out, _ = ctl("--endpoint", server.endpoint, "--json", "--prettify", "list")
    assert code == 0
    assert out == ('{\n  "id": "%s",\n  "status": "ok",\n  "time": 1.5,\n  "watchers": [\n'
                   '    "a",\n    "b"\n  ]\n}\n' % server.last["id"])


def test_prettify_alone_changes_nothing(fake, ctl):
    server = fake(replying(ok(watchers=["a", "b"])))
    assert ctl("--endpoint", server.endpoint, "--prettify", "list") == (0, "a,b\n", "")


def test_no_socket_file_is_said_at_once(ctl, tmp_path):
    start = time.monotonic()
    code, out, error = ctl("--endpoint", f"ipc://{tmp_path}/nobody.sock", "--timeout", "30", "list")
    assert (code, out, error) == (1, "", f"circusctl: cannot connect to ipc://{tmp_path}/nobody.sock: "
                                  "no such socket file (is circusd running with this endpoint?)\n")
    assert time.monotonic() - start < 2


def test_timeout_bounds_a_slow_waiting_command(fake, ctl):
    server = fake(replying(ok()), delay=1.5)
    start = time.monotonic()
    code, _, error = ctl("--endpoint", server.endpoint, "--timeout", "0.3", "stop", "web", "--waiting")
    assert (code, error) == (1, f"circusctl: no answer from {server.endpoint} to 'stop' within "
                             "0.3 s: circusd is connected but busy or slow (for a waiting "
                             "command, give a larger --timeout)\n")
    assert time.monotonic() - start < 1.2


def test_the_0_19_hint_is_kept_where_nothing_more_is_known():
    # through an ssh tunnel the connection cannot be watched: 0.19's "Timed out." and its hint
    from circus.client.errors import CallTimeout
    err = __import__("io").StringIO()
    session = circusctl.Session(circusctl.Options(), err=err)

    def timed_out(*args):
        raise CallTimeout("Timed out.")
    session.call = timed_out
    assert session.run("list", []) == 1
    assert err.getvalue() == TIMEOUT_TEXT


def test_endpoint_from_environment(fake, ctl, monkeypatch):
    server = fake(replying(ok(numwatchers=1)))
    monkeypatch.setenv("CIRCUSCTL_ENDPOINT", server.endpoint)
    assert ctl("numwatchers") == (0, "1\n", "")


def test_endpoint_option_beats_environment(fake, ctl, monkeypatch, tmp_path):
    server = fake(replying(ok(numwatchers=1)))
    monkeypatch.setenv("CIRCUSCTL_ENDPOINT", f"ipc://{tmp_path}/elsewhere.sock")
    assert ctl("--endpoint", server.endpoint, "numwatchers") == (0, "1\n", "")


def test_ssh_without_pexpect_or_paramiko_exits_1(ctl, monkeypatch):
    from circus.client import wire
    monkeypatch.setattr(wire, "_ssh_available", lambda: False)
    code, out, error = ctl("--ssh", "me@host:22", "list")
    assert code == 1 and "pexpect or paramiko" in error


def test_version(ctl):
    assert ctl("--version") == (0, f"circusctl {__version__}\n", "")


# -- usage errors: exit 2 ------------------------------------------------------------------------

USAGE_ERRORS = [
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--timeout", "x", "list"], "is not a number of seconds"),
    (["--timeout", "0", "list"], "more than 0"),
    (["get", "sleeper"], "Invalid number of arguments"),
    (["set", "sleeper"], "Invalid number of arguments"),
    (["set", "sleeper", "env"], "List of key/values is invalid"),
    (["set", "sleeper", "numprocesses", "x"], "'x' is not an integer"),
    (["set", "sleeper", "shell", "maybe"], "'maybe' is not a boolean"),
    (["set", "sleeper", "stop_signal", "NOPE"], "'NOPE' is not a signal"),
    (["set", "sleeper", "hooks", "nohook:m.f"], "unknown hook 'nohook'"),
    (["signal", "sleeper"], "Invalid number of arguments"),
    (["list", "a", "b"], "Invalid number of arguments"),
    (["status", "a", "b"], "Invalid number of arguments"),
    (["numwatchers", "x"], "Invalid number of arguments"),
    (["dstats", "x"], "Invalid number of arguments"),
    (["quit", "x"], "Invalid number of arguments"),       # 0.19 sent quit anyway
    (["stats", "a", "b", "c"], "Invalid number of arguments"),
    (["incr", "web", "many"], "nb must be an integer"),
    (["start", "--match", "fuzzy"], "match must be one of glob, simple, regex"),
    (["add", "foo"], "Invalid number of arguments"),
    (["add", "foo", "x", "--options", "{bad"], "options wants JSON"),
    (["incr", "web", "--bogus"], "unrecognized arguments: --bogus"),
    (["incr", "web", "--wating"], "unrecognized arguments: --wating (did you mean '--waiting'?)"),
]


@pytest.mark.parametrize("argv,message", USAGE_ERRORS, ids=[" ".join(u[0]) for u in USAGE_ERRORS])
def test_usage_errors_exit_2_and_send_nothing(fake, ctl, argv, message):
    server = fake()
    code, out, error = ctl("--endpoint", server.endpoint, *argv)
    assert code == 2 and out == ""
    assert message in error and error.startswith("usage: circusctl")
    assert server.requests == []


UNKNOWN = [
    (["stauts"], "circusctl: unknown command 'stauts' (did you mean 'status'?)"),
    (["stat"], "circusctl: unknown command 'stat' (did you mean 'start' or 'stats'?)"),
    (["proceses", "web"], "circusctl: unknown command 'proceses' (did you mean 'processes'?)"),
    (["help", "tial"], "circusctl: no help for 'tial' (did you mean 'tail'?)"),
]


@pytest.mark.parametrize("argv,message", UNKNOWN, ids=[" ".join(u[0]) for u in UNKNOWN])
def test_unknown_command_gets_one_line_with_the_likely_one(fake, ctl, argv, message):
    server = fake()
    assert ctl("--endpoint", server.endpoint, *argv) == (2, "", message + "\n")
    assert server.requests == []


def test_unknown_command_far_from_any_lists_them_all(fake, ctl):
    from circus.cli.ctl_forms import command_names
    server = fake()
    code, out, error = ctl("--endpoint", server.endpoint, "frobnicate")
    assert (code, out) == (2, "")
    assert error == f"circusctl: unknown command 'frobnicate' (commands: {', '.join(command_names())})\n"


MALFORMED = [
    ("foo", "not an endpoint (expected tcp://HOST:PORT or ipc://PATH)"),
    ("tcp://x", "no port (expected tcp://HOST:PORT)"),
    ("tcp://127.0.0.1:", "invalid port '' (expected 1 to 65535)"),
    ("tcp://127.0.0.1:99999", "invalid port '99999' (expected 1 to 65535)"),
    ("tcp://*:5555", "'*' is for binding: give the address circusd listens on (e.g. 127.0.0.1)"),
    ("ipc://", "no socket path (expected ipc://PATH)"),
    ("udp://1.2.3.4:5", "unsupported transport 'udp://' (expected tcp://HOST:PORT or ipc://PATH)"),
]


@pytest.mark.parametrize("endpoint,why", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_endpoint_is_a_usage_error(ctl, endpoint, why):
    assert ctl("--endpoint", endpoint, "list") == (
        2, "", f"circusctl: invalid --endpoint {endpoint!r}: {why}\n")


def test_malformed_endpoint_from_the_environment_says_so(ctl, monkeypatch):
    monkeypatch.setenv("CIRCUSCTL_ENDPOINT", "localhost:5555")
    assert ctl("list") == (2, "", "circusctl: invalid $CIRCUSCTL_ENDPOINT 'localhost:5555': not "
                           "an endpoint (expected tcp://HOST:PORT or ipc://PATH)\n")
    assert ctl("list", "--endpoint", "tcp://h") == (
        2, "", "circusctl: invalid --endpoint 'tcp://h': no port (expected tcp://HOST:PORT)\n")


# -- help ----------------------------------------------------------------------------------------

def test_main_help_lists_every_command(ctl):
    from circus.protocol import COMMANDS
    code, out, _ = ctl("--help")
    assert code == 0 and out.startswith("usage: circusctl [options] command [args]\n")
    for name in [*COMMANDS, "listen", "help"]:
        assert f"\n  {name} " in out
    for flag in ("--endpoint", "--timeout", "--json", "--prettify", "--ssh", "--ssh_keyfile",
                 "--version"):
        assert flag in out
    assert ctl("help") == (0, out, "")


@pytest.mark.parametrize("argv", [["help", "kill"], ["kill", "--help"], ["--help", "kill"], ["kill", "-h"]])
def test_command_help(ctl, argv):
    code, out, _ = ctl(*argv)
    assert code == 0
    assert out.startswith("usage: circusctl [options] kill <name> [<pid>] [--signum SIGNUM] "
                          "[--graceful_timeout GRACEFUL_TIMEOUT] [--waiting]\n")
    assert "Stop processes with the stop policy" in out and "--graceful_timeout" in out


def test_help_is_for_people_not_the_protocol():
    from circus.cli.ctl_forms import command_help, command_names
    for name in command_names():
        text = command_help(name)
        for internal in ("reply:", "(new)", "*new*", "``"):
            assert internal not in text, (name, internal)
        assert all(len(line) <= 79 for line in text.splitlines() if not line.startswith("usage:"))
    assert "Exit status: 0 when every watcher shown is active" in command_help("status")


def test_every_protocol_command_has_a_form_and_help():
    from circus.cli.ctl_forms import FORMS, command_help
    from circus.protocol import COMMANDS
    assert set(FORMS) == set(COMMANDS)
    for name in COMMANDS:
        text = command_help(name)
        assert COMMANDS[name].summary in text
        for prop in COMMANDS[name].props:   # every property is a positional or a flag, except
            if prop.name == "timeout" or (name, prop.name) == ("reload", "graceful"):
                continue                    # the global --timeout, and reload --terminate
            assert prop.name in text, (name, prop.name)


def test_build_request_reports_global_overrides():
    props, overrides = build_request("list", ["web", "--json", "--timeout", "2"])
    assert props == {"name": "web"} and overrides == {"json": True, "timeout": 2.0}
    with pytest.raises(UsageError):
        build_request("list", ["a", "b"])


# -- listen --------------------------------------------------------------------------------------

def _run_listen(server, *argv, env=None):
    proc = subprocess.Popen([sys.executable, "-m", "circus.cli.circusctl", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    try:
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            server.publish("watcher.other.spawn", {"process_pid": 2})
            server.publish("watcher.web.spawn", {"process_pid": 1})
            if sel.select(0.05):
                return proc.stdout.readline().decode()
        pytest.fail("circusctl listen printed nothing")
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


def test_listen_prints_topic_and_fields(fake):
    # 0.19 printed the frames' Python bytes reprs: b'watcher.web.spawn': b'{"process_pid": 1}'
    server = fake(pub=True)
    line = _run_listen(server, "--endpoint", server.pub_endpoint, "listen", "watcher.web.")
    assert line == "watcher.web.spawn  process_pid=1\n"
    line = _run_listen(server, "--json", "--endpoint", server.pub_endpoint, "listen", "watcher.web.")
    assert json.loads(line) == {"topic": "watcher.web.spawn", "data": {"process_pid": 1}}


def test_event_line_fields():
    from circus.cli.ctl_color import PLAIN
    from circus.cli.ctl_follow import event_line
    when = time.mktime((2026, 12, 6, 19, 7, 38, 0, 0, -1)) + 0.25
    payload = {"state": "fatal", "reason": "exited 6 times", "time": when, "pid": None,
               "ids": [1, 2], "empty": ""}
    assert event_line(b"watcher.web.state", json.dumps(payload).encode(), PLAIN) == (
        'watcher.web.state  state=fatal reason="exited 6 times" time=19:07:38.250 pid=null '
        'ids=[1,2] empty=""')
    assert event_line(b"x", b"not json", PLAIN) == "x  not json"


def test_listen_stops_quietly_when_the_reader_goes_away(fake):
    server = fake(pub=True)
    proc = subprocess.Popen([sys.executable, "-m", "circus.cli.circusctl", "--endpoint",
                             server.pub_endpoint, "listen"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not sel.select(0.05):
            server.publish("watcher.web.spawn", {"process_pid": 1})
        sel.close()
        proc.stdout.close()                     # like `circusctl listen | head -1`
        while proc.poll() is None and time.monotonic() < deadline:
            server.publish("watcher.web.spawn", {"process_pid": 1})
            time.sleep(0.02)
        assert proc.wait(5) == 1
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()


def test_listen_in_the_shell_asks_circusd_for_the_pubsub_endpoint(fake, capsys):
    server = fake(lambda req: ok(options={"pubsub_endpoint": server.pub_endpoint}), pub=True)
    session = circusctl.Session(circusctl.Options(endpoint=server.endpoint), shell=True)
    try:
        assert session.events_endpoint(session.options) == server.pub_endpoint
        assert server.last["properties"] == {"option": "pubsub_endpoint"}
        server.handler = lambda req: ok(options={})          # a circusd that does not say
        assert session.events_endpoint(session.options) == "tcp://127.0.0.1:5556"
    finally:
        session.close()


def test_bash_completion_protocol_of_0_19(monkeypatch, capsys):
    monkeypatch.setenv("AUTO_COMPLETE", "1")
    monkeypatch.setenv("COMP_WORDS", "circusctl st")
    monkeypatch.setenv("COMP_CWORD", "1")
    assert circusctl.main([]) == 1
    assert capsys.readouterr().out == "start stats status stop\n"
    monkeypatch.setenv("COMP_WORDS", "circusctl status we")
    monkeypatch.setenv("COMP_CWORD", "2")
    assert circusctl.main([]) == 1
    assert capsys.readouterr().out == ""


# -- interactive shell -------------------------------------------------------------------------------

def test_shell_session(fake):
    statuses = ok(statuses={"web": "active"})

    def handler(req):
        if req["command"] == "status":
            return statuses if not req["properties"] else {"status": "active", "time": 1.0}
        return ok(watchers=["web", "worker"])

    server = fake(handler)
    lines = "list\nstatus web\n\nbogus\nstatus nope too\nhelp\nhelp incr\n"
    proc = subprocess.run([sys.executable, "-m", "circus.cli.circusctl", "--endpoint", server.endpoint],
                          input=lines, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    out = proc.stdout
    assert out.startswith(f"circusctl {__version__}\nweb: active\n(circusctl) web,worker\n"
                          "(circusctl) active\n(circusctl) (circusctl) (circusctl) ")
    assert "*** unknown command 'bogus' (type help for the commands)\n" in proc.stderr
    assert "Commands (type help <command>):" in out and "reloadconfig" in out
    assert "usage: circusctl [options] incr <name> [<nb>]" in out
    assert out.endswith("(circusctl) \n")
    assert "Invalid number of arguments" in proc.stderr
    assert [r["command"] for r in server.requests] == ["status", "list", "status"]


def test_shell_completion(fake):
    server = fake(replying(ok(watchers=["web", "worker", "db"])))
    session = circusctl.Session(circusctl.Options(endpoint=server.endpoint))
    try:
        shell = CtlShell(session)
        assert shell.completenames("re") == ["reload", "reloadconfig", "rename", "reopen", "restart"]
        assert shell.complete_help("li", "help li", 5, 7) == ["list", "listen", "listsockets"]
        assert shell.completedefault("w", "incr w", 5, 6) == ["web", "worker"]
        assert shell.completedefault("", "status ", 7, 7) == ["db", "web", "worker"]
        assert shell.completedefault("w", "incr web w", 9, 10) == []
        assert shell.completedefault("w", "listsockets w", 12, 13) == []
        assert len(server.requests) == 1          # names cached between completions
    finally:
        session.close()


def test_shell_completion_without_circusd(tmp_path):
    session = circusctl.Session(circusctl.Options(endpoint=f"ipc://{tmp_path}/none.sock"))
    try:
        assert CtlShell(session).completedefault("w", "incr w", 5, 6) == []
    finally:
        session.close()


# -- the console script and its imports ----------------------------------------------------------

def test_console_script_runs(fake):
    server = fake(replying(ok(watchers=["a"])))
    exe = os.path.join(os.path.dirname(sys.executable), "circusctl")
    proc = subprocess.run([exe, "--endpoint", server.endpoint, "list"], capture_output=True, text=True,
                          timeout=30)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "a\n", "")


def test_import_is_light():
    code = ("import sys, circus.cli.circusctl\n"
            "heavy = sorted(m for m in ('tornado', 'jinja2', 'psutil', 'asyncio', 'circus.core',"
            " 'circus.config') if m in sys.modules)\n"
            "print(','.join(heavy))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
