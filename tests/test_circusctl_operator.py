"""Tier 2: what an operator sees from the installed ``circusctl`` against a real circusd on ipc://
endpoints in tmp_path: exit codes, the status table, "did you mean", connection errors that name
the endpoint and the cause, readable nodeinfo/stats/listen/tail, colours only on a terminal, and
the interactive shell's quit/exit/shutdown (driven through a pseudo-terminal).
"""
from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import Circusd, proc_alive

pytestmark = pytest.mark.real

CIRCUSCTL = str(Path(sys.executable).parent / "circusctl")

CONFIG = """
[circus]
endpoint = ipc://{dir}/control.sock
pubsub_endpoint = ipc://{dir}/events.sock

[watcher:sleeper]
cmd = sleep 3600
numprocesses = 2
graceful_timeout = 2

[watcher:crasher]
cmd = sh -c "echo crash-reason-$$ >&2; exit 1"
max_retry = -1
backoff_initial = 600
backoff_max = 600

[watcher:fataler]
cmd = sh -c "echo gave-up >&2; exit 2"
max_retry = 1
backoff_initial = 0.01

[watcher:idle]
cmd = sleep 3600
autostart = false

[watcher:flop]
cmd = sh -c "echo dying words >&2; exit 3"
autostart = false

[watcher:spare]
cmd = sleep 3600

[watcher:talker]
cmd = sh -c "while true; do echo talk-$$; sleep 1; done"
"""

ESC = "\x1b["


def env_without_colour_hints(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CIRCUSCTL_ENDPOINT", "NO_COLOR")}
    return {**env, **extra}


class Node:
    def __init__(self, daemon: Circusd) -> None:
        self.daemon = daemon
        self.endpoint = f"ipc://{daemon.dir}/control.sock"
        self.events = f"ipc://{daemon.dir}/events.sock"

    def ctl(self, *args: str, endpoint: str | None = None, env: dict | None = None,
            timeout: float = 60) -> tuple[int, str, str]:
        argv = [CIRCUSCTL, "--endpoint", endpoint or self.endpoint, *args]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                           env=env or env_without_colour_hints())
        return r.returncode, r.stdout, r.stderr

    def json(self, *args: str) -> dict:
        return json.loads(self.ctl("--json", *args)[1])

    def pids(self, name: str) -> list[int]:
        return [int(p) for p in self.ctl("list", name)[1].strip().split(",") if p]


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    d = Circusd(tmp_path_factory.mktemp("ops"))
    d.start(CONFIG.format(dir=d.dir))
    n = Node(d)
    try:
        d.wait(lambda: (d.dir / "control.sock").exists(), what="control socket")
        d.wait(lambda: len(n.pids("sleeper")) == 2, timeout=20, what="2 sleepers")
        d.wait(lambda: n.json("status", "crasher").get("trouble") == "backoff", timeout=20,
               what="crasher in backoff")
        d.wait(lambda: n.json("status", "fataler").get("status") == "fatal", timeout=20,
               what="fataler fatal")
        d.wait(lambda: n.pids("talker"), timeout=20, what="talker running")
        yield n
    finally:
        d.cleanup()


# -- status: 0.19's lines, the table, LSB exit codes ---------------------------------------------

def test_status_lines_keep_0_19_words_and_say_what_is_wrong(node):
    code, out, err = node.ctl("status")
    assert (code, err) == (3, "")
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["crasher", "fataler", "flop", "idle",
                                                      "sleeper", "spare", "talker"]
    assert re.fullmatch(r"crasher: active \(backoff: 1 process\(es\) in backoff: exit code 1; "
                        r"respawn in \d+\.\d\d s\)", lines[0]), lines[0]
    assert re.fullmatch(r"fataler: fatal \(exited 2 times in \d+\.\d s: exit code 2\)", lines[1])
    assert lines[2:] == ["flop: stopped", "idle: stopped", "sleeper: active", "spare: active",
                         "talker: active"]
    assert ESC not in out


@pytest.mark.parametrize("args,code", [
    (["status", "sleeper"], 0), (["status", "sleep*"], 0), (["status", "SLEEPER"], 0),
    (["status", "crasher"], 3), (["status", "fataler"], 3), (["status", "idle"], 3),
    (["status", "nosuch"], 3), (["--json", "status", "idle"], 3), (["--json", "status", "talker"], 0),
])
def test_status_exit_code_follows_lsb(node, args, code):
    assert node.ctl(*args)[0] == code


def test_status_is_0_when_every_watcher_is_healthy(tmp_path, circusd):
    d = circusd(f"""
        [circus]
        endpoint = ipc://{tmp_path}/control.sock
        pubsub_endpoint = ipc://{tmp_path}/events.sock

        [watcher:a]
        cmd = sleep 3600

        [watcher:b]
        cmd = sleep 3600
        numprocesses = 2
    """.replace("\n        ", "\n"))
    n = Node(d)
    d.wait(lambda: n.ctl("status")[0] == 0, timeout=20, what="all active")
    assert n.ctl("status") == (0, "a: active\nb: active\n", "")
    assert n.ctl("stop", "a", "--waiting")[0] == 0
    assert n.ctl("status") == (3, "a: stopped\nb: active\n", "")


def _table(out: str) -> dict[str, list[str]]:
    lines = out.splitlines()
    assert lines[0].split() == ["WATCHER", "STATE", "PROCS", "PIDS", "UPTIME", "RESTARTS", "REASON"]
    starts = [lines[0].index(h) for h in lines[0].split()]
    rows = {}
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, starts[1:] + [len(line)])]
        rows[cells[0]] = cells
    return rows


def test_status_table_has_pids_uptime_restarts(node):
    code, out, err = node.ctl("status", "--table")
    assert (code, err) == (3, "")
    rows = _table(out)
    pids = node.pids("sleeper")
    name, state, procs, pid_text, uptime, restarts, reason = rows["sleeper"]
    assert (state, procs, restarts, reason) == ("active", "2/2", "0", "")
    assert sorted(map(int, pid_text.split(", "))) == sorted(pids)
    assert re.fullmatch(r"0:\d\d:\d\d", uptime)
    crasher = rows["crasher"]
    assert crasher[1:6] == ["backoff", "0/1", "-", "-", "0"]
    assert crasher[6].startswith("1 process(es) in backoff: exit code 1; respawn in ")
    assert rows["fataler"][1] == "fatal" and "exit code 2" in rows["fataler"][6]
    assert rows["idle"][1:5] == ["stopped", "-", "-", "-"]
    # a process killed and respawned: a new pid, a restart, a fresh uptime
    os.kill(pids[0], signal.SIGKILL)
    node.daemon.wait(lambda: len(node.pids("sleeper")) == 2 and pids[0] not in node.pids("sleeper"),
                     what="sleeper respawned")
    row = _table(node.ctl("status", "--table")[1])["sleeper"]
    assert row[5] == "1" and str(pids[0]) not in row[3] and str(pids[1]) in row[3]
    assert re.fullmatch(r"0:00:[0-5]\d", row[4]), row


def test_status_of_a_watcher_in_trouble_shows_its_processes_and_last_lines(node):
    code, out, err = node.ctl("status", "crasher", "--table")
    assert (code, err) == (3, "")
    lines = out.splitlines()
    assert lines[0].startswith("crasher: active (backoff: 1 process(es) in backoff: exit code 1")
    assert lines[1].split() == ["WID", "PID", "STATE", "UPTIME", "RESTARTS", "LAST", "EXIT", "REASON"]
    assert lines[2].split()[:4] == ["1", "-", "backoff", "-"] and lines[2].split()[5] == "1"
    assert lines[3] == "  last output lines:"
    assert lines[4:] and all(re.fullmatch(r"    \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[\d+\] stderr \| "
                                          r"crash-reason-\d+", line) for line in lines[4:]), lines
    # a healthy watcher: its processes, no output lines
    code, out, _ = node.ctl("status", "sleeper", "--table")
    lines = out.splitlines()
    assert code == 0 and lines[0] == "sleeper: active" and len(lines) == 4
    assert sorted(int(line.split()[1]) for line in lines[2:]) == sorted(node.pids("sleeper"))
    # the plain form (a pipe) is 0.19's: the state word alone, the trouble in parentheses
    assert node.ctl("status", "sleeper") == (0, "active\n", "")
    assert node.ctl("status", "crasher")[1].startswith("active (backoff: ")


# -- typos and unknown names -----------------------------------------------------------------------

def test_did_you_mean_for_commands_and_watchers(node):
    assert node.ctl("stauts") == (2, "", "circusctl: unknown command 'stauts' (did you mean "
                                  "'status'?)\n")
    assert node.ctl("restat", "sleeper") == (2, "", "circusctl: unknown command 'restat' (did you "
                                             "mean 'restart'?)\n")
    assert node.ctl("status", "sleeperz") == (3, "", "error: program sleeperz not found: did you "
                                              "mean 'sleeper'?\n")
    assert node.ctl("stop", "zzz")[2].startswith("error: program zzz not found: the watchers are ")


# -- connection errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("endpoint", ["foo", "tcp://x", "ipc://", "tcp://127.0.0.1:70000"])
def test_malformed_endpoint_is_a_usage_error(node, endpoint):
    code, out, err = node.ctl("status", endpoint=endpoint)
    assert (code, out) == (2, "")
    assert err.startswith(f"circusctl: invalid --endpoint {endpoint!r}: ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_a_missing_socket_file_is_said_at_once(node, tmp_path):
    start = time.monotonic()
    code, out, err = node.ctl("--timeout", "30", "status", endpoint=f"ipc://{tmp_path}/nope.sock")
    assert (code, out, err) == (1, "", f"circusctl: cannot connect to ipc://{tmp_path}/nope.sock: "
                                "no such socket file (is circusd running with this endpoint?)\n")
    assert time.monotonic() - start < 10          # not the 30 s timeout (interpreter start: ~1 s)


def test_a_stale_socket_file_is_named(node, tmp_path):
    path = tmp_path / "stale.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()                                   # the file stays, nobody listens
    code, _, err = node.ctl("--timeout", "30", "list", endpoint=f"ipc://{path}")
    assert (code, err) == (1, f"circusctl: cannot connect to ipc://{path}: nobody listens on this "
                           "socket file (circusd is not running, or it left a stale socket file)\n")


def test_a_refused_tcp_connection_is_said_fast(node):
    with socket.socket() as probe:                  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    code, out, err = node.ctl("--timeout", "30", "list", endpoint=f"tcp://127.0.0.1:{port}")
    assert (code, out, err) == (1, "", f"circusctl: cannot connect to tcp://127.0.0.1:{port}: "
                                "connection refused (is circusd running with this endpoint?)\n")
    assert time.monotonic() - start < 10


def test_a_curve_node_without_keys_gets_the_curve_hint(circusd, tmp_path):
    from securenode import NodeKeys
    keys = NodeKeys.make(tmp_path / "keys")
    d = circusd(keys.head(tmp_path) + "\n[watcher:s]\ncmd = sleep 3600\n")
    d.wait(lambda: (tmp_path / "control.sock").exists(), what="control socket")
    n = Node(d)
    start = time.monotonic()
    code, out, err = n.ctl("--timeout", "30", "list")
    assert (code, out) == (1, "")
    assert err == (f"circusctl: the handshake with {n.endpoint} failed: circusd there needs CURVE "
                   "keys (--curve-key/--server-key), or it is not circusd\n")
    assert time.monotonic() - start < 10
    keys.stranger()
    code, _, err = n.ctl("--timeout", "30", "--curve-key", str(keys.root / "own" / "stranger.key_secret"),
                         "--server-key", str(keys.root / "node" / "node.key"), "list")
    assert (code, err) == (1, f"circusctl: {n.endpoint} refused this client's CURVE key (its "
                           "public key is not in circusd's curve_clients directory)\n")
    code, out, _ = n.ctl("--curve-key", str(keys.root / "own" / "admin.key_secret"),
                         "--server-key", str(keys.root / "node" / "node.key"), "list")
    assert (code, out) == (0, "s\n")


# -- no "ok" for a failure -------------------------------------------------------------------------

def test_a_start_that_fails_says_why(node):
    code, out, err = node.ctl("--timeout", "30", "start", "flop", "--waiting")
    assert (code, out) == (3, "")
    assert err.startswith("error: flop: process ") and "dying words" in err, err
    assert "last output lines:\n  dying words" in err
    node.ctl("stop", "flop", "--waiting")
    code, out, err = node.ctl("--timeout", "30", "add", "--start", "ghost", "/no/such/binary",
                              "--waiting")
    assert (code, out) == (3, "") and "command not found" in err and "ghost" in err, err
    node.ctl("rm", "ghost", "--waiting")


def test_decr_past_zero_warns_and_succeeds(node):
    code, out, err = node.ctl("decr", "spare", "5", "--waiting")
    assert (code, out) == (0, "0\n")
    assert err == "warning: spare had numprocesses = 1: decr 5 leaves 0, not a negative number\n"
    assert node.pids("spare") == []
    assert node.ctl("incr", "spare", "--waiting") == (0, "1\n", "")


# -- readable nodeinfo, stats, processes, listen ----------------------------------------------------

def test_nodeinfo_is_key_value_lines(node):
    code, out, err = node.ctl("nodeinfo")
    assert (code, err) == (0, "")
    pairs = dict(line.split(":", 1) for line in out.splitlines())
    assert list(pairs) == ["name", "version", "pid", "uptime", "load", "memory", "watchers",
                           "processes"]
    assert pairs["pid"].strip() == str(node.daemon.pid)
    assert pairs["watchers"].strip() == "7"
    assert re.fullmatch(r" +\d+:\d\d:\d\d", pairs["uptime"])
    assert re.fullmatch(r" +[\d.]+ [\d.]+ [\d.]+ \(1, 5, 15 min; \d+ CPUs\)", pairs["load"])


def test_stats_and_processes_are_tables(node):
    code, out, err = node.ctl("stats", "sleeper")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["WATCHER", "PID", "CPU%", "MEM%", "RSS", "VMS", "AGE", "CMD"]
    assert sorted(int(line.split()[1]) for line in lines[1:]) == sorted(node.pids("sleeper"))
    assert all(line.split()[-1] == "sleep" and re.fullmatch(r"\d+:\d\d:\d\d", line.split()[6])
               for line in lines[1:])
    code, out, _ = node.ctl("processes")
    rows = [line.split() for line in out.splitlines()]
    assert code == 0 and rows[0] == ["WATCHER", "WID", "PID", "STATE", "UPTIME", "RESTARTS",
                                     "LAST", "EXIT", "REASON"]
    assert sorted(int(r[2]) for r in rows if r[0] == "sleeper") == sorted(node.pids("sleeper"))
    assert [r[3] for r in rows if r[0] == "fataler"] == ["fatal"]


def test_listen_prints_one_readable_line_per_event(node):
    proc = subprocess.Popen([CIRCUSCTL, "--endpoint", node.events, "listen", "watcher.idle."],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env_without_colour_hints())
    try:
        line = b""
        deadline = time.monotonic() + 30
        while b"watcher.idle.spawn" not in line:
            assert time.monotonic() < deadline, f"nothing from listen: {line!r}"
            assert proc.poll() is None, proc.stderr.read()
            node.ctl("restart", "idle", "--waiting")
            if select.select([proc.stdout], [], [], 1.0)[0]:
                line = proc.stdout.readline()
        assert re.fullmatch(rb"watcher\.idle\.spawn  process_pid=\d+ time=\d\d:\d\d:\d\d\.\d{3} "
                            rb"node=\S+\n", line), line
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert b"Traceback" not in proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
        node.ctl("stop", "idle", "--waiting")


# -- tail of every watcher -------------------------------------------------------------------------

def test_tail_without_a_name_prefixes_each_line_with_its_watcher(node):
    code, out, err = node.ctl("tail", "--lines", "1000")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    width = len("crasher")                        # the longest name with lines here
    assert any(re.fullmatch(r"talker  \| talk-\d+", line) for line in lines), lines
    assert any(re.fullmatch(r"crasher \| crash-reason-\d+", line) for line in lines), lines
    assert all(line[width:width + 3] == " | " for line in lines), lines
    # a watcher without any stream configured can be tailed by name
    code, out, _ = node.ctl("tail", "talker", "--lines", "2")
    assert code == 0 and len(out.splitlines()) == 2
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[\d+\] stdout \| talk-\d+", line)
               for line in out.splitlines())


def test_tail_follow_without_a_name_follows_every_watcher(node):
    proc = subprocess.Popen([CIRCUSCTL, "--endpoint", node.endpoint, "tail", "--follow",
                             "--lines", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env_without_colour_hints())
    try:
        seen: list[bytes] = []
        deadline = time.monotonic() + 30
        while not any(line.startswith(b"talker ") for line in seen):
            assert time.monotonic() < deadline, f"no talker line followed: {seen!r}"
            assert proc.poll() is None, proc.stderr.read()
            if select.select([proc.stdout], [], [], 1.0)[0]:
                seen.append(proc.stdout.readline())
        width = len("crasher")                    # the longest watcher name
        assert all(line[width:width + 3] == b" | " for line in seen), seen
        assert any(re.fullmatch(rb"talker +\| talk-\d+\n", line) for line in seen), seen
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        proc.stdout.close()
        proc.stderr.close()


# -- colours: only on a terminal -------------------------------------------------------------------

class Pty:
    """A program on a pseudo-terminal: ``expect`` reads until a pattern shows, with a deadline."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        import pty
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     start_new_session=True)
        os.close(slave)
        self.text = ""                    # what was read and not matched yet
        self.all = ""                     # everything read

    def expect(self, pattern: str, timeout: float = 30) -> re.Match:
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.text)
            if found:
                self.text = self.text[found.end():]
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no {pattern!r} within {timeout} s; got {self.text!r}")
            if select.select([self.master], [], [], left)[0]:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:               # the program ended: no more output
                    chunk = b""
                if not chunk:
                    if not re.search(pattern, self.text):
                        pytest.fail(f"ended ({self.proc.wait(10)}) without {pattern!r}: {self.text!r}")
                self.text += chunk.decode(errors="replace")
                self.all += chunk.decode(errors="replace")

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            os.close(self.master)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def test_colours_on_a_terminal_only(node):
    env = env_without_colour_hints(TERM="xterm")
    term = Pty([CIRCUSCTL, "--endpoint", node.endpoint, "status"], env)
    try:
        term.expect(r"WATCHER")                   # a terminal gets the table
        term.expect(r"\x1b\[33mbackoff\x1b\[0m")
        term.expect(r"\x1b\[31mfatal\x1b\[0m")
        term.expect(r"\x1b\[32mactive\x1b\[0m")
        assert term.wait() == 3
    finally:
        term.kill()
    term = Pty([CIRCUSCTL, "--endpoint", node.endpoint, "status", "nosuch"], env)
    try:
        term.expect(r"\x1b\[31merror:\x1b\[0m program nosuch not found")
        assert term.wait() == 3
    finally:
        term.kill()
    for extra, flags in (({"NO_COLOR": "1"}, []), ({}, ["--no-color"]), ({"TERM": "dumb"}, [])):
        term = Pty([CIRCUSCTL, "--endpoint", node.endpoint, *flags, "status"], {**env, **extra})
        try:
            term.expect(r"sleeper +active[^\n]*\n")
            assert term.wait() == 3
            assert ESC not in term.all
        finally:
            term.kill()
    # not a terminal: never
    for args in (["status", "--table"], ["stats"], ["processes"], ["status", "nosuch"]):
        _, out, err = node.ctl(*args, env=env)
        assert ESC not in out + err, args


# -- the interactive shell -------------------------------------------------------------------------

def test_shell_quit_and_exit_leave_it_and_circusd_goes_on(node):
    env = env_without_colour_hints(TERM="xterm", HOME=str(node.daemon.dir))
    for leave in ("quit\r", "exit\r", "\x04"):
        shell = Pty([CIRCUSCTL, "--endpoint", node.endpoint], env)
        try:
            shell.expect(r"\(circusctl\) ")
            shell.send("stauts\r")
            shell.expect(r"unknown command 'stauts' \(did you mean 'status'\?\)")
            shell.expect(r"\(circusctl\) ")
            shell.send(leave)
            assert shell.wait() == 0
        finally:
            shell.kill()
        assert proc_alive(node.daemon.pid) and node.ctl("status", "sleeper")[0] == 0


def test_shell_shutdown_asks_first(tmp_path, circusd):
    d = circusd(f"[circus]\nendpoint = ipc://{tmp_path}/control.sock\n"
                f"pubsub_endpoint = ipc://{tmp_path}/events.sock\n\n[watcher:s]\ncmd = sleep 3600\n")
    n = Node(d)
    d.wait(lambda: n.pids("s"), timeout=20, what="s running")
    shell = Pty([CIRCUSCTL, "--endpoint", n.endpoint], env_without_colour_hints(
        TERM="xterm", HOME=str(tmp_path)))
    try:
        shell.expect(r"\(circusctl\) ")
        shell.send("help\r")
        shell.expect(r"quit, exit or Ctrl-D leave the shell \(circusd goes on\)")
        shell.expect(r"shutdown \[--keep\] \[--waiting\] stops circusd and every watcher")
        shell.expect(r"\(circusctl\) ")
        shell.send("shutdown\r")
        shell.expect(r"Really stop circusd and every watcher\? \[y/N\] ")
        shell.send("\r")                          # the default: no
        shell.expect(r"circusd goes on")
        shell.expect(r"\(circusctl\) ")
        assert proc_alive(d.pid)
        shell.send("shutdown --waiting\r")
        shell.expect(r"\[y/N\] ")
        shell.send("y\r")
        shell.expect(r"ok\r?\n")
        assert d.proc.wait(15) == 0               # circusd stopped
        shell.expect(r"\(circusctl\) ")
        shell.send("exit\r")
        assert shell.wait() == 0
    finally:
        shell.kill()
