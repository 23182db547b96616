"""circus-top as a subprocess: ``--once`` (text, JSON, exit codes), flags, the pool file, and the
curses screen under a pseudo-terminal; first against a small publisher of stats-shaped payloads,
then against a real circusd running circusd-stats with real children.

Every wait has a deadline and fails as soon as the child died; what is started is stopped by pid.
"""
from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, proc_cmdline
from tests.topfeed import Feed
from tests.vtscreen import VTScreen

pytestmark = pytest.mark.real

TOP = [sys.executable, "-m", "circus.cli.top"]
SLEEPERS = {"sleeper": [11, 12], "api": [13]}


def top(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess:
    return subprocess.run([*TOP, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture
def feeds():
    started: list[Feed] = []

    def make(endpoint: str, nodes: dict, interval: float = 0.1, states: dict | None = None) -> Feed:
        feed = Feed(endpoint, nodes, interval, states)
        started.append(feed)
        return feed
    yield make
    for feed in started:
        feed.stop()


class Term:
    """A child on a pseudo-terminal, its output fed to a VTScreen."""

    def __init__(self, argv: list[str], rows: int = 30, cols: int = 110,
                 env: dict[str, str] | None = None) -> None:
        extra = env or {}
        env = dict(os.environ, TERM="xterm")
        for name in ("LINES", "COLUMNS", "NO_COLOR"):   # the size from the pty; colour unless told
            env.pop(name, None)
        env.update(extra)
        self.pid, self.fd = pty.fork()
        if self.pid == 0:   # the child: exec at once, nothing else
            os.chdir(ROOT)
            os.execve(argv[0], argv, env)
        self.status: int | None = None
        self.screen = VTScreen(rows, cols)
        self.resize(rows, cols)

    def resize(self, rows: int, cols: int) -> None:
        self.screen.resize(rows, cols)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def _pump(self, seconds: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], seconds)
        if ready:
            try:
                self.screen.feed(os.read(self.fd, 65536))
            except OSError:   # EIO: the child closed the terminal
                self._reap(block=True)

    def _reap(self, block: bool = False) -> None:
        if self.status is None:
            pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)

    def wait_for(self, predicate, timeout: float = 10.0, what: str = "screen") -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen.text()
            if predicate(text):
                return text
            self._reap()
            if self.status is not None:
                pytest.fail(f"circus-top exited ({self.status}) waiting for {what}\n{text}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout} s waiting for {what}\n{text}")
            self._pump(0.05)

    def has(self, *texts: str, absent: tuple[str, ...] = (), timeout: float = 10.0) -> str:
        """Wait until the screen shows all ``texts`` and none of ``absent`` (a repaint may be
        read half-way: every condition on one screen goes in one call)."""
        return self.wait_for(lambda s: all(t in s for t in texts) and not any(t in s for t in absent),
                             timeout, f"{texts!r} without {absent!r}")

    def watch(self, seconds: float) -> None:
        """Keep reading the screen for a while (a child blocked on a full terminal would idle)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.status is None:
            self._pump(0.05)

    def key(self, data: bytes) -> None:
        os.write(self.fd, data)

    def exit_code(self, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while self.status is None:
            if time.monotonic() > deadline:
                pytest.fail(f"circus-top did not exit within {timeout} s\n{self.screen.text()}")
            self._pump(0.05)
            self._reap()
        return self.status

    def close(self) -> None:
        self._reap()
        if self.status is None:
            os.kill(self.pid, signal.SIGKILL)
            self._reap(block=True)
        os.close(self.fd)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def term():
    started: list[Term] = []

    def make(*args: str, rows: int = 30, cols: int = 110, env: dict | None = None,
             argv: list[str] | None = None) -> Term:
        t = Term([*(argv or TOP), *args], rows, cols, env)
        started.append(t)
        return t
    yield make
    for t in started:
        t.close()


# -- against a small publisher ---------------------------------------------------------------

def test_once_prints_every_node_of_every_endpoint(tmp_path, feeds):
    a, b = f"ipc://{tmp_path}/a.sock", f"ipc://{tmp_path}/b.sock"
    feeds(a, {"web1": SLEEPERS})
    feeds(b, {"web2": {"worker": [21]}})
    started = time.monotonic()
    res = top("--once", "--wait", "15", "--endpoint", a, "--endpoint", b)
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - started < 10     # returned on full rounds, not at --wait
    lines = res.stdout.splitlines()
    assert lines[0].startswith("circus-top  nodes 2")
    heads = [line.split()[0] for line in lines if line.startswith("web")]
    assert heads == ["web1", "web2"]
    assert any(line.startswith("sleeper (2)") for line in lines)
    assert {line.split()[0] for line in lines if line.startswith("  ")} >= {"11", "12", "13", "21"}
    assert any(line.strip().startswith("900 (circusd) ") for line in lines)
    assert any(line.strip().startswith("901 (circusd-stats) ") for line in lines)
    assert any("127.0.0.1:8080" in line for line in lines)


def test_once_json_node_filter_and_sort(tmp_path, feeds):
    a = f"ipc://{tmp_path}/a.sock"
    feeds(a, {"web1": SLEEPERS, "web2": {"worker": [21]}})
    res = top("--once", "--json", "--endpoint", a, "--node", "web2")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert list(data["nodes"]) == ["web2"]
    assert data["endpoints"] == {a: "complete"}
    web2 = data["nodes"]["web2"]
    assert [p["pid"] for p in web2["watchers"]["worker"]["processes"]] == [21]
    assert web2["node"]["processes"] == 123
    res = top("--once", "--endpoint", a, "--node", "web1", "--sort", "name", "--filter", "e")
    assert res.returncode == 0, res.stderr
    groups = [line.split()[0] for line in res.stdout.splitlines() if line[:1].isalpha()][2:]
    assert groups == ["WATCHER", "sleeper", "sockets"], res.stdout   # "api", "circus": no "e"
    assert "web2" not in res.stdout


def test_once_exit_codes_without_a_stream(tmp_path, feeds):
    silent = f"ipc://{tmp_path}/nobody.sock"
    res = top("--once", "--wait", "0.5", "--endpoint", silent)
    assert res.returncode == 1
    assert res.stdout == ""
    assert "no stats received within 0.5 s" in res.stderr and silent in res.stderr
    live = f"ipc://{tmp_path}/a.sock"
    feeds(live, {"web1": SLEEPERS})
    res = top("--once", "--wait", "1", "--endpoint", live, "--endpoint", silent)
    assert res.returncode == 4, res.stderr
    assert "sleeper (2)" in res.stdout and f"nothing received from {silent}" in res.stderr


def test_flags_and_pool_file(tmp_path, feeds):
    assert top("--version").stdout.startswith("circus-top ")
    res = top("--ssh", "me@host")
    assert res.returncode == 2 and "not supported" in res.stderr
    assert top("--json").returncode == 2
    bad = tmp_path / "bad.ini"
    bad.write_text("[meta]\nstrategy = random\n\n[node:web1]\nendpoint = tcp://x:5555\n")
    res = top("--once", "--pool", str(bad))
    assert res.returncode == 2 and f"{bad}:4: [node:web1]: no stats_endpoint" in res.stderr
    bad.write_text("[node:web1]\nstats_endpoint = web1:5557\n")
    res = top("--once", "--pool", str(bad))
    assert res.returncode == 2 and f"{bad}:2:" in res.stderr and "not an endpoint" in res.stderr
    res = top("--once", "--pool", str(tmp_path / "missing.ini"))
    assert res.returncode == 2 and "cannot read the pool file" in res.stderr
    a, b = f"ipc://{tmp_path}/a.sock", f"ipc://{tmp_path}/b.sock"
    feeds(a, {"web1": SLEEPERS})
    feeds(b, {"web2": {"worker": [21]}})
    pool = tmp_path / "pool.ini"
    pool.write_text(f"[meta]\nstrategy = random\n[node:web1]\nstats_endpoint = {a}\ntags = x\n"
                    f"[node:web2]\nstats_endpoint = {b}\n")
    res = top("--once", "--pool", str(pool))
    assert res.returncode == 0, res.stderr
    assert "web1  load" in res.stdout and "web2  load" in res.stdout
    res = top("--once", "--pool", str(pool), "--node", "web2")
    assert res.returncode == 0 and "web1" not in res.stdout and "worker (1)" in res.stdout
    res = top("--once", "--pool", str(pool), "--node", "web9")
    assert res.returncode == 2 and "no [node:web9] section" in res.stderr


def test_reads_the_stream_only():
    code = ("import sys, circus.cli.top, circus.cli.top_screen, circus.stats.toprows; "
            "print(sorted(m for m in ('psutil', 'tornado', 'asyncio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=20)
    assert out.stdout.strip() == "[]", out.stderr


def test_screen_keys_filter_drilldown_resize(tmp_path, feeds, term):
    a = f"ipc://{tmp_path}/a.sock"
    feeds(a, {"web1": SLEEPERS})
    t = term("--endpoint", a)
    t.has("web1  load", "sleeper (2)", "api (1)", "901 (circusd-stats)", "q quit")
    t.key(b"c")
    t.has("sort cpu asc")
    t.key(b"/sle")
    t.has("filter (Enter applies, Esc clears): sle_")
    t.key(b"\r")
    t.has("filter 'sle'", "sleeper (2)", absent=("api (1)",))
    t.key(b"\x1bOB")     # Down, as xterm sends it in keypad mode
    t.key(b"\x1bOA")     # and Up
    t.key(b"\r")
    t.has("watcher sleeper on web1", "VMS", "tester")
    t.key(b"\x7f")       # Backspace: back to the list, the filter kept
    t.has("filter 'sle'", "WATCHER / PID")
    t.key(b"\x1b")       # Esc: the filter cleared
    t.has("api (1)", "sleeper (2)", absent=("filter '",))
    t.resize(8, 60)
    t.has("web1  load", timeout=5)
    t.resize(2, 15)
    t.has("circus-top", timeout=5)
    t.resize(25, 100)
    t.has("sleeper (2)", timeout=5)
    before = cpu_seconds(t.pid)
    t.watch(2.0)
    assert cpu_seconds(t.pid) - before < 0.5      # it sleeps in poll, it does not spin
    t.key(b"q")
    assert t.exit_code() == 0


TROUBLED = {"sleeper": [11, 12], "crasher": [], "web2": []}
STATES = {"web1": {"crasher": {"trouble": "backoff", "wanted": 1, "restarts": 53,
                               "reason": "1 process(es) in backoff: exit code 1; respawn in 10 s"},
                   "web2": {"state": "fatal", "trouble": "fatal", "wanted": 1,
                            "reason": "exited 6 times in 4.5 s: exit code 1"}}}


def test_once_shows_each_watchers_state_trouble_first(tmp_path, feeds):
    a = f"ipc://{tmp_path}/a.sock"
    feeds(a, {"web1": TROUBLED}, states=STATES)
    res = top("--once", "--endpoint", a)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[:8] == [
        "circus-top  nodes 1  sort cpu desc  2 watchers in trouble",
        "web1  load 0.50 0.25 0.10  cpu 7.5%  mem 1.0G/4.0G (25.0%)  watchers 3 (2 in trouble)  "
        "processes 2 (123 on the machine)",
        "WATCHER / PID              STATE      CPU%   MEM%      RSS     AGE  COMMAND",
        "web2 (0/1)                 fatal         -      -        -       -",
        "crasher (0/1)              backoff       -      -        -       -",
        "sleeper (2)                active      5.0    0.1    16.0M     12s",
        "  12                       running    10.0    0.1     8.0M     12s  python3",
        "  11                       running     0.0    0.1     8.0M     12s  python3"]
    assert "\x1b[" not in res.stdout                    # not a terminal: no colour
    res = top("--once", "--json", "--endpoint", a)
    watchers = json.loads(res.stdout)["nodes"]["web1"]["watchers"]
    assert {n: (w["state"], w["trouble"]) for n, w in watchers.items()} == {
        "web2": ("fatal", "fatal"), "crasher": ("backoff", "backoff"),
        "sleeper": ("active", None), "circus": (None, None)}
    assert watchers["crasher"]["aggregate"]["restarts"] == 53


def test_once_on_a_terminal_is_coloured_unless_no_color(tmp_path, feeds, term):
    a = f"ipc://{tmp_path}/a.sock"
    feeds(a, {"web1": TROUBLED}, states=STATES)
    t = term("--once", "--endpoint", a)
    t.has("web2 (0/1)", "sleeper (2)")
    assert t.exit_code() == 0
    assert t.screen.colours_of("fatal") == {"red"}
    assert t.screen.colours_of("backoff") == {"yellow"}
    assert t.screen.colours_of("active") == {"green"}
    assert t.screen.colours_of("(2 in trouble)") == {"red"}
    t = term("--once", "--endpoint", a, env={"NO_COLOR": "1"})
    t.has("web2 (0/1)", "sleeper (2)")
    assert t.exit_code() == 0
    assert t.screen.colours_of("fatal") == {None} and t.screen.colours_of("active") == {None}


def test_screen_colours_states_and_details_say_why(tmp_path, feeds, term):
    a = f"ipc://{tmp_path}/a.sock"
    feeds(a, {"web1": TROUBLED}, states=STATES)
    t = term("--endpoint", a, cols=160)
    screen = t.has("web2 (0/1)", "crasher (0/1)", "sleeper (", "STATE", "2 watchers in trouble")
    lines = screen.splitlines()
    at = [i for i, line in enumerate(lines) if line.startswith(("web2 (", "crasher (", "sleeper ("))]
    assert [lines[i].split()[0] for i in at] == ["web2", "crasher", "sleeper"]   # trouble first
    assert lines[at[0]].split()[2:] == ["fatal", "-", "-", "-", "-"]
    assert t.screen.colours_of("fatal") == {"red"}
    assert t.screen.colours_of("backoff") == {"yellow"}
    assert t.screen.colours_of("active ") <= {"green", None}
    assert t.screen.colours_of("active") == {"green"}
    t.key(b"j")                                  # the second watcher: the crasher
    t.key(b"\r")
    t.has("watcher crasher on web1", "state backoff (circusd's state: active): 1 process(es) in "
          "backoff: exit code 1; respawn in 10 s; 53 restarts",
          "its last output lines: circusctl status crasher (on web1)")
    t.key(b"q")
    assert t.exit_code() == 0
    t = term("--endpoint", a, env={"NO_COLOR": "1"})
    t.has("web2 (0/1)", "crasher (0/1)")
    assert t.screen.colours_of("fatal") == {None} and t.screen.colours_of("backoff") == {None}
    t.key(b"q")
    assert t.exit_code() == 0


def test_screen_needs_a_terminal(tmp_path):
    res = subprocess.run([*TOP, "--endpoint", f"ipc://{tmp_path}/x.sock"], capture_output=True,
                         text=True, stdin=subprocess.DEVNULL, timeout=20, cwd=ROOT)
    assert res.returncode == 2 and "--once" in res.stderr


# -- against a real circusd-stats ------------------------------------------------------------

HAVE_STREAMER = (ROOT / "circus" / "stats" / "streamer.py").exists()
STATS_INI = """
[circus]
endpoint = ipc://{dir}/control.sock
pubsub_endpoint = ipc://{dir}/events.sock
stats_endpoint = ipc://{dir}/stats.sock
statsd = true
stats_interval = 0.2

[watcher:sleeper]
cmd = {python} -c "import time; time.sleep(3600)"
numprocesses = 2

[watcher:idler]
cmd = {python} -c "import time; time.sleep(3600)"
numprocesses = 1
use_sockets = true

[socket:web]
path = {dir}/web.sock
"""


@pytest.fixture
def stats_node(circusd, tmp_path):
    if not HAVE_STREAMER:
        pytest.skip("circusd-stats (circus/stats/streamer.py) is not in this tree yet")
    d = circusd(STATS_INI.format(dir=tmp_path, python=sys.executable))
    d.wait(lambda: (tmp_path / "stats.sock").exists(), 20, "stats socket")
    d.wait(lambda: len(d.children(sys.executable + " -c")) >= 3, 20, "three sleepers")
    return d, f"ipc://{tmp_path}/stats.sock"


def _real_pids(d) -> tuple[list[int], int]:
    kids = d.children(sys.executable + " -c")
    stats = [p for p in d.children() if "circus.cli.stats" in " ".join(proc_cmdline(p))]
    return kids, stats[0] if stats else -1


def test_once_against_real_circusd_stats(stats_node):
    d, endpoint = stats_node
    res = top("--once", "--endpoint", endpoint, "--wait", "10")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    node = os.uname().nodename
    assert f"\n{node}  load " in out or out.startswith(f"{node}  load")
    assert "sleeper (2)" in out and "idler (1)" in out
    kids, stats_pid = _real_pids(d)
    shown = {line.split()[0] for line in out.splitlines() if line.startswith("  ")}
    assert {str(p) for p in kids} <= shown, out
    assert f"{d.pid} (circusd)" in out
    if stats_pid > 0:
        assert f"{stats_pid} (circusd-stats)" in out
    assert not any(line.startswith("circusd-stats") for line in out.splitlines())
    assert "sockets (1)" in out and f"{d.dir}/web.sock" in out

    res = top("--once", "--json", "--endpoint", endpoint, "--wait", "10")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert list(data["nodes"]) == [node]
    watchers = data["nodes"][node]["watchers"]
    real = sorted(p["pid"] for w in ("sleeper", "idler") for p in watchers[w]["processes"])
    assert real == sorted(kids)
    assert data["nodes"][node]["node"]["watchers"] >= 2


def test_screen_against_real_circusd_stats(stats_node, term):
    d, endpoint = stats_node
    t = term("--endpoint", endpoint)
    t.has("sleeper (2)", "idler (1)", f"{d.pid} (circusd)", timeout=15)
    t.key(b"c")
    t.has("sort cpu asc")
    t.key(b"/idl\r")
    t.has("filter 'idl'", "idler (1)", absent=("sleeper (2)",))
    kids = d.children(sys.executable + " -c")
    t.key(b"\r")
    screen = t.wait_for(lambda s: "watcher idler on" in s and any(f"  {p} " in s for p in kids),
                        what="the idler's process in the details")
    assert sum(f"  {p} " in screen for p in kids) == 1
    t.key(b"q")
    assert t.exit_code() == 0


TROUBLE_INI = """
[circus]
endpoint = ipc://{dir}/control.sock
pubsub_endpoint = ipc://{dir}/events.sock
stats_endpoint = ipc://{dir}/stats.sock
statsd = true
stats_interval = 0.2

[watcher:sleeper]
cmd = sleep 3600

[watcher:crasher]
cmd = {python} -c "import sys; sys.exit(3)"
min_uptime = 1
backoff_initial = 30

[watcher:gone]
cmd = {python} -c "import sys; sys.exit(1)"
min_uptime = 1
max_retry = 1
backoff_initial = 0.05
"""


def test_once_shows_the_trouble_of_a_real_node(circusd, tmp_path, term):
    if not HAVE_STREAMER:
        pytest.skip("circusd-stats is not in this tree yet")
    d = circusd(TROUBLE_INI.format(dir=tmp_path, python=sys.executable), "--name", "real1")
    d.wait(lambda: (tmp_path / "stats.sock").exists(), 20, "stats socket")
    endpoint = f"ipc://{tmp_path}/stats.sock"

    def troubled() -> str | None:
        res = top("--once", "--endpoint", endpoint, "--wait", "10")
        assert res.returncode == 0, res.stderr
        done = "gone (0/1)" in res.stdout and "crasher (0/1)" in res.stdout
        return res.stdout if done else None

    out = d.wait(troubled, 30, "the crasher in backoff and gone fatal, in the stream")
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.startswith(("gone ", "crasher ", "sleeper "))}
    assert rows["gone"][2:] == ["fatal", "-", "-", "-", "-"]
    assert rows["crasher"][2:] == ["backoff", "-", "-", "-", "-"]
    assert rows["sleeper"][:3] == ["sleeper", "(1)", "active"]
    lines = out.splitlines()
    assert lines[0].endswith("2 watchers in trouble")
    assert "watchers 3 (2 in trouble)  processes 1 (" in lines[1] and "on the machine)" in lines[1]
    order = [line.split()[0] for line in lines if line.startswith(("gone ", "crasher ", "sleeper "))]
    assert order == ["gone", "crasher", "sleeper"]
    t = term("--endpoint", endpoint, cols=160)
    t.has("fatal", "backoff", timeout=15)
    assert t.screen.colours_of("fatal") == {"red"} and t.screen.colours_of("backoff") == {"yellow"}
    t.key(b"q")
    assert t.exit_code() == 0
