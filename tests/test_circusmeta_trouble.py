"""Tier 3 on loopback: what an operator sees of trouble across a pool of three real circusd
(ipc:// endpoints), through the installed ``circusmeta`` script: error replies per node, the
crash output at hand, trouble in ``status``/``nodes``/``top``, ``tail``, help and typos, and
node errors that say what is wrong. Exact output and exit codes are asserted."""
from __future__ import annotations

import asyncio
import json
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import proc_state

pytestmark = pytest.mark.real

PY = sys.executable
META = str(Path(PY).with_name("circusmeta"))
EARLY = (f'{PY} -c "import sys, time; print(\'starting up\', flush=True); '
         f'print(\'Traceback: boom\', file=sys.stderr, flush=True); time.sleep(0.2); sys.exit(3)"')
TICKER = "sh -c 'i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done'"

WATCHERS = {
    "n1": f"""
        [watcher:sl]
        cmd = sleep 300
        [watcher:crasher]
        cmd = {PY} -c "import sys; print('crasher: giving up', file=sys.stderr); sys.exit(3)"
        min_uptime = 1
        backoff_initial = 25
        [watcher:missing]
        cmd = /usr/bin/does-not-exist
        autostart = false
        [watcher:early]
        cmd = {EARLY}
        autostart = false
        min_uptime = 1
    """,
    "n2": f"""
        [watcher:sl]
        cmd = sleep 300
        [watcher:gone]
        cmd = {PY} -c "import sys; print('OSError: [Errno 98] Address already in use', file=sys.stderr); sys.exit(1)"
        min_uptime = 1
        max_retry = 1
        backoff_initial = 0.05
        [watcher:early]
        cmd = sleep 300
        autostart = false
    """,
    "n3": f"""
        [watcher:sl]
        cmd = sleep 300
        numprocesses = 2
        [watcher:ticker]
        cmd = {TICKER}
    """,
}


class Pool:
    def __init__(self, circusd, tmp: Path) -> None:
        self.tmp = tmp
        self.daemons = {}
        for name, body in WATCHERS.items():
            head = textwrap.dedent(f"""
                [circus]
                endpoint = ipc://{tmp}/{name}-c.sock
                pubsub_endpoint = ipc://{tmp}/{name}-p.sock
            """)
            if name == "n1":                    # circusd-stats on one node only: for top
                head += f"stats_endpoint = ipc://{tmp}/n1-s.sock\nstats_interval = 0.2\n"
            d = circusd(head + textwrap.dedent(body), "--name", name)
            d.wait(lambda name=name: (tmp / f"{name}-c.sock").exists(), what=f"{name} control")
            self.daemons[name] = d
        self.file = tmp / "pool.ini"
        self.write()

    def write(self, extra: str = "") -> None:
        text = "[meta]\ntimeout = 2\n"
        for name in WATCHERS:
            text += (f"[node:{name}]\nendpoint = ipc://{self.tmp}/{name}-c.sock\n"
                     f"pubsub_endpoint = ipc://{self.tmp}/{name}-p.sock\n")
            if name == "n1":
                text += f"stats_endpoint = ipc://{self.tmp}/n1-s.sock\n"
        self.file.write_text(text + extra)

    def meta(self, *args: str, env: dict | None = None) -> tuple[int, str, str]:
        r = subprocess.run([META, "--pool", str(self.file), *args], capture_output=True,
                           text=True, timeout=60, env={**os.environ, **(env or {})},
                           stdin=subprocess.DEVNULL)
        return r.returncode, r.stdout, r.stderr

    def status(self, node: str, name: str) -> dict:
        code, out, _ = self.meta("--json", "--node", node, "status", name)
        return json.loads(out)["nodes"][node]["reply"]

    def wait(self, predicate, what: str, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            for name, d in self.daemons.items():
                assert d.proc.poll() is None, f"{name} died waiting for {what}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)


@pytest.fixture
def pool(circusd, tmp_path):
    p = Pool(circusd, tmp_path)
    p.wait(lambda: p.status("n1", "crasher").get("trouble") == "backoff"
           and p.status("n2", "gone").get("trouble") == "fatal", "the crasher in backoff, gone "
           "fatal")
    yield p
    for d in p.daemons.values():
        if d.proc.poll() is None:
            os.kill(d.pid, signal.SIGCONT)
            d.stop()


def _match(lines: list[str], patterns: list[str]) -> None:
    assert len(lines) == len(patterns), "\n".join(lines)
    for line, pattern in zip(lines, patterns):
        assert re.fullmatch(pattern, line), f"{line!r} !~ {pattern!r}"


def test_status_shows_the_watchers_in_trouble(pool):
    code, out, err = pool.meta("status")
    assert code == 0
    _match(out.splitlines(), [
        r"NODE  WATCHER        STATE    TROUBLE  REASON",
        r"n1    circusd-stats  active   -",
        r"n1    crasher        active   backoff  1 process\(es\) in backoff: exit code 3; "
        r"respawn in [0-9.]+ s",
        r"n1    early          stopped  -",
        r"n1    missing        stopped  -",
        r"n1    sl             active   -",
        r"n2    early          stopped  -",
        r"n2    gone           fatal    fatal    exited 2 times in [0-9.]+ s: exit code 1",
        r"n2    sl             active   -",
        r"n3    sl             active   -",
        r"n3    ticker         active   -"])
    assert err == ("2 watchers in trouble: 'circusmeta status NAME' shows its processes and last "
                   "output lines\n")
    code, out, _ = pool.meta("--json", "status")
    details = json.loads(out)["nodes"]["n1"]["reply"]["details"]
    assert details["crasher"]["trouble"] == "backoff" and code == 0


def test_status_of_a_watcher_gives_its_processes_and_last_output_lines(pool):
    code, out, err = pool.meta("status", "crasher")
    assert code == 0
    _match(out.splitlines(), [
        r"NODE  WATCHER  STATE   TROUBLE  REASON",
        r"n1    crasher  active  backoff  1 process\(es\) in backoff: exit code 3; respawn in "
        r"[0-9.]+ s",
        r"  process 1:  no pid  backoff  0 restarts  last exit 3  \(exit code 3; respawn in "
        r"[0-9.]+ s\)",
        r"  n1/crasher \| crasher: giving up"])
    assert err == "crasher: not on n2, n3\n"
    code, out, err = pool.meta("status", "gone")
    assert code == 0 and out.splitlines()[-1] == \
        "  n2/gone | OSError: [Errno 98] Address already in use"
    code, out, err = pool.meta("status", "sl", "--node", "n3")
    _match(out.splitlines(), [r"NODE  WATCHER  STATE   TROUBLE  REASON",
                              r"n3    sl       active  -",
                              r"  process 1:  pid \d+  running  up \d+s  0 restarts",
                              r"  process 2:  pid \d+  running  up \d+s  0 restarts"])
    assert code == 0 and err == ""
    # nobody has it: every node's answer, with circusd's hint, exit 3
    code, out, err = pool.meta("status", "crashr")
    assert code == 3
    assert out.splitlines() == [
        "n1: error: program crashr not found: did you mean 'crasher'?",
        "n2: error: program crashr not found: the watchers are early, gone, sl",
        "n3: error: program crashr not found: the watchers are sl, ticker"]


def test_nodes_count_the_watchers_in_trouble(pool):
    code, out, err = pool.meta("nodes")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["NODE", "STATE", "ADDRESS", "TAGS", "LOAD", "MEMORY", "WATCHERS",
                                "TROUBLE", "PROCS", "RTT"]
    cells = {line.split()[0]: line.split() for line in lines[1:]}
    # LOAD is three numbers: WATCHERS, TROUBLE, PROCS are the 9th to 11th words
    assert {n: c[8:11] for n, c in cells.items()} == {
        "n1": ["5", "1", "2"], "n2": ["3", "1", "1"], "n3": ["2", "0", "3"]}
    code, out, _ = pool.meta("--json", "nodes")
    data = {n["node"]: n for n in json.loads(out)["nodes"]}
    assert data["n1"]["trouble"] == {"crasher": "backoff"}
    assert data["n2"]["trouble"] == {"gone": "fatal"} and data["n3"]["trouble"] == {}


def test_waiting_starts_report_each_nodes_failure_with_its_output(pool):
    code, out, err = pool.meta("--node", "n1", "start", "missing", "--waiting")
    assert code == 3, err
    assert out.splitlines() == [
        "n1: error: missing: 1 of 1 process(es) could not be started: process 1: command not "
        "found: '/usr/bin/does-not-exist'; circusd retries it, see its status"]
    # early fails on n1 (exits before min_uptime), starts on n2, n3 has none: partial
    code, out, err = pool.meta("--all", "start", "early", "--waiting")
    assert code == 4, out + err
    lines = out.splitlines()
    assert lines[0] == "n1: error: early: process " + lines[0].split()[4] + " exit code 3 " + \
        lines[0].split(" exit code 3 ")[1]
    assert lines[0].endswith("(a failed start: it ran less than min_uptime = 1 s); its last "
                             "output lines:")
    assert lines[1:] == ["  n1/early | Traceback: boom", "n2: ok",
                         "n3: error: program early not found: the watchers are sl, ticker"]
    # started again while circusd retries it: it is tried again now, and fails the same way
    code, out, err = pool.meta("--node", "n1", "start", "missing", "--waiting")
    assert code == 3 and out.splitlines() == [
        "n1: error: missing: 1 of 1 process(es) could not be started: process 1: command not "
        "found: '/usr/bin/does-not-exist'; circusd retries it, see its status"], out + err
    assert pool.meta("--node", "n1", "stop", "missing")[0] == 0
    code, out, _ = pool.meta("--json", "--node", "n1", "start", "missing", "--waiting")
    n1 = json.loads(out)["nodes"]["n1"]
    assert code == 3 and n1["ok"] is False and n1["reply"]["code"] == "spawn_failed"
    assert "command not found" in n1["reason"]


def test_decr_past_zero_warns_per_node(pool):
    code, out, err = pool.meta("--all", "decr", "sl", "3")
    assert code == 0, err
    assert out.splitlines() == [
        "n1: ok", "n1: warning: sl had numprocesses = 1: decr 3 leaves 0, not a negative number",
        "n2: ok", "n2: warning: sl had numprocesses = 1: decr 3 leaves 0, not a negative number",
        "n3: ok", "n3: warning: sl had numprocesses = 2: decr 3 leaves 0, not a negative number"]
    code, out, _ = pool.meta("--json", "--node", "n3", "incr", "sl", "2", "--waiting")
    reply = json.loads(out)["nodes"]["n3"]["reply"]
    assert code == 0 and reply["numprocesses"] == 2 and "warning" not in reply


def test_tail_merges_the_nodes_lines_with_where_they_come_from(pool):
    pool.wait(lambda: "tick 3" in pool.meta("tail", "ticker")[1], "three ticks")
    code, out, err = pool.meta("tail", "--lines", "2")
    assert code == 0, err
    lines = out.splitlines()
    assert "n1/crasher | crasher: giving up" in lines
    assert "n2/gone | OSError: [Errno 98] Address already in use" in lines
    assert sum(line.startswith("n3/ticker | tick ") for line in lines) == 2
    assert all(re.fullmatch(r"n[123]/\w+ \| .*", line) for line in lines), lines
    code, out, err = pool.meta("tail", "crasher")
    assert code == 0 and out == "n1/crasher | crasher: giving up\n"
    assert err == "crasher: not on n2, n3\n"
    code, out, _ = pool.meta("tail", "ticker", "--stream", "stderr")
    assert code == 0 and out == ""
    code, out, _ = pool.meta("--json", "tail", "gone")
    data = json.loads(out)
    assert [(x["node"], x["watcher"], x["line"]) for x in data["lines"]] == \
        [("n2", "gone", "OSError: [Errno 98] Address already in use")] * 2
    assert data["absent"] == ["n1", "n3"] and data["exit"] == 0
    code, _, err = pool.meta("tail", "--lines", "5000")
    assert code == 2 and err == "circusmeta tail: --lines must be 0 to 1000, got 5000\n"


def test_tail_follow_prints_new_lines_until_interrupted(pool):
    proc = subprocess.Popen([META, "--pool", str(pool.file), "tail", "ticker", "-n", "1",
                             "--follow"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        seen = b""
        deadline = time.monotonic() + 20
        while seen.count(b"n3/ticker | tick ") < 4:
            assert proc.poll() is None, (seen, proc.stderr.read())
            assert time.monotonic() < deadline, seen
            if select.select([proc.stdout], [], [], 0.1)[0]:
                seen += os.read(proc.stdout.fileno(), 65536)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, err
    ticks = [int(line.rsplit(" ", 1)[1]) for line in (seen + rest).decode().splitlines()]
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks)))     # none lost, none twice
    assert err.decode() == "ticker: not on n1, n2\n"


def test_help_lists_the_commands_and_typos_get_a_suggestion(pool):
    code, out, err = pool.meta("--help")
    assert code == 0 and out.startswith("usage: circusmeta [--pool FILE]") and err == ""
    assert "``" not in out and "rolling.py" not in out
    code, out, err = pool.meta()
    assert code == 2 and out == "" and err.endswith(
        "circusmeta: which command? 'circusmeta --help' lists them\n")
    code, out, err = pool.meta("stauts")
    assert (code, out) == (2, "")
    assert err == ("circusmeta: unknown command 'stauts' (did you mean 'stats' or 'status'?); "
                   "'circusmeta --help' lists them\n")
    code, out, _ = pool.meta("help", "tail")
    assert code == 0 and out.startswith("usage: circusmeta tail [NAME]")
    for command, usage in (("add", "usage: circusmeta add NAME CMD..."),
                           ("top", "usage: circusmeta top "), ("nodes", "usage: circusmeta nodes"),
                           ("restart", "usage: circusmeta [options] restart [<name>]")):
        code, out, err = pool.meta("help", command)
        assert code == 0 and out.startswith(usage), (command, out, err)
    code, out, _ = pool.meta("status", "--help")
    assert code == 0 and out.startswith("usage: circusmeta [options] status [<name>]")
    code, _, err = pool.meta("listen")
    assert code == 2 and err == ("circusmeta: listen is not run across a pool: 'circusctl --pool "
                                 "FILE --node N listen' on one node, or 'circusmeta proxy' for "
                                 "the pool's events\n")
    code, _, err = pool.meta("help", "stauts")
    assert code == 2 and "did you mean 'stats' or 'status'?" in err


def test_a_node_that_cannot_be_asked_says_where_and_why(pool, tmp_path):
    pool.write(f"[node:n9]\nendpoint = ipc://{tmp_path}/nope.sock\n")
    code, out, _ = pool.meta("list")
    assert code == 4
    assert out.splitlines()[-1] == (f"n9: not_available: cannot connect to ipc://{tmp_path}/"
                                    f"nope.sock within 2 s: no socket file {tmp_path}/nope.sock "
                                    f"(is circusd running there?)")
    code, out, err = pool.meta("nodes")
    assert code == 4 and err.endswith(f"n9: not_available: cannot connect to ipc://{tmp_path}/"
                                      f"nope.sock within 2 s: no socket file {tmp_path}/nope.sock "
                                      f"(is circusd running there?)\n")
    assert out.splitlines()[-1].split()[:2] == ["n9", "not_available"]


def test_a_frozen_node_is_a_timeout_not_a_curve_problem(pool):
    """A node that accepted the connection and never completes ZeroMQ's handshake (SIGSTOP):
    ZeroMQ gives up the handshake after HANDSHAKE_IVL (30 s; 1 s here), which used to be
    reported as "the node uses CURVE?". The next call on the same open Pool does not wait
    again: nothing was heard from the node since."""
    from circusmeta import Pool
    from circusmeta.fanout import UNRESPONSIVE
    from circusmeta.pool import MetaOptions, NodeSpec, PoolConfig

    d = pool.daemons["n2"]
    os.kill(d.pid, signal.SIGSTOP)
    pool.wait(lambda: proc_state(d.pid) == "T", "n2 stopped")
    endpoint = f"ipc://{pool.tmp}/n2-c.sock"
    config = PoolConfig(MetaOptions(timeout=2.0), {"n2": NodeSpec("n2", endpoint)})

    async def ask():
        async with Pool(config, handshake_ivl=1.0) as p:
            first = await p.call_one("n2", "status", deadline=3.0)
            start = time.monotonic()
            second = await p.call_one("n2", "list", deadline=3.0)
            return first, second, time.monotonic() - start
    try:
        first, second, waited = asyncio.run(ask())
    finally:
        os.kill(d.pid, signal.SIGCONT)
    assert first.state == UNRESPONSIVE, first
    assert first.reason == (
        f"connected to {endpoint}, but no answer to 'status' within 3 s: "
        f"{endpoint} accepted the connection but did not complete the ZeroMQ "
        f"handshake within 1 s (a frozen or overloaded circusd, or no circusd at that address)")
    assert second.state == UNRESPONSIVE and waited < 1.0, (second, waited)
    assert second.reason == (
        f"no answer to 'status' within 3 s, and nothing heard from {endpoint} since (a frozen "
        f"or overloaded circusd, or no circusd at that address): 'list' not sent")


def test_top_shows_the_states_of_a_pool_node(pool):
    def troubled():
        code, out, err = pool.meta("top", "--once", "--node", "n1", "--wait", "10")
        assert code == 0, err
        return out if "crasher (0/1)" in out else None
    out = pool.wait(troubled, "the crasher in the stats stream")
    lines = out.splitlines()
    assert lines[0] == "circus-top  nodes 1  sort cpu desc  1 watcher in trouble"
    assert "  watchers 4 (1 in trouble)  processes 1 (" in lines[1]
    rows = [line.split() for line in lines if line.split()[:1] in (["crasher"], ["sl"],
                                                                  ["missing"], ["early"])]
    assert rows[0] == ["crasher", "(0/1)", "backoff", "-", "-", "-", "-"]
    # trouble first, then by CPU (every one idle here: by name)
    assert [r[0] for r in rows] == ["crasher", "early", "missing", "sl"], rows
    assert rows[1][:3] == ["early", "(0)", "stopped"] and rows[3][:3] == ["sl", "(1)", "active"]


def test_a_restart_of_a_watcher_in_backoff_tries_it_now_and_fails_with_its_output(pool):
    """A watcher circusd retries in backoff is restarted now by a waiting restart, graceful or
    not, and the reply is its failure with its output (not an ok that started nothing); a
    rolling restart fails that step with the same reason, on one line in the summary."""
    for graceful in ((), ("--graceful",)):
        code, out, err = pool.meta("--node", "n1", "restart", "crasher", "--waiting", *graceful)
        assert code == 3, out + err
        lines = out.splitlines()
        assert re.fullmatch(r"n1: error: crasher: process \d+ exit code 3 [0-9.]+ s after it "
                            r"started \(a failed start: it ran less than min_uptime = 1 s\); "
                            r"its last output lines:", lines[0]), lines[0]
        assert lines[1:] == ["  n1/crasher | crasher: giving up"]
    code, out, err = pool.meta("restart", "--rolling", "crasher", "--all")
    assert code == 3, out + err
    lines = out.splitlines()
    assert lines[0] == "rolling restart of crasher: 1 item in 1 step (batch 1)"
    assert re.fullmatch(r"\[1/1\] n1:crasher restart \.\.\. failed \([0-9.]+ s\)", lines[1])
    assert "crasher: giving up" in out
    assert re.fullmatch(r"failed: n1:crasher \(crasher: process \d+ exit code 3 [0-9.]+ s after "
                        r"it started \(a failed start: it ran less than min_uptime = 1 s\)\)",
                        lines[-1]), lines[-1]
    # a healthy watcher's rolling restart is still done
    code, out, err = pool.meta("restart", "--rolling", "sl", "--node", "n3")
    assert code == 0 and out.splitlines()[-1] == "done: n3:sl", out + err
