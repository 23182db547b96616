"""Fault injection against a real circusd: children that misbehave, resources that run out, a
subscriber that never reads, a pool node that freezes during a rolling restart.

Run alone with ``pytest -m fault``. Every daemon and child is ended by pid in teardown; every
wait has a deadline and fails at once when circusd died.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
import zmq

from conftest import (ROOT, Circusd, Raw, proc_alive, proc_children,
                      proc_cmdline, proc_state, proc_rss_kb, proc_zombies)

pytestmark = [pytest.mark.fault, pytest.mark.real]

PY = sys.executable
FAULTY = f"{PY} {Path(__file__).parent / 'workers' / 'faulty.py'}"
HEAD = """
[circus]
endpoint = ipc://{dir}/control.sock
pubsub_endpoint = ipc://{dir}/events.sock
stats_endpoint = ipc://{dir}/stats.sock
statsd = false
"""


# -- helpers ---------------------------------------------------------------------------------------

def ctl_argv(d: Circusd, *args: str) -> list[str]:
    return [PY, "-m", "circus.cli.circusctl", "--endpoint", f"ipc://{d.dir}/control.sock", *args]


def ctl(d: Circusd, *args: str, timeout: float = 30) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CIRCUSCTL_ENDPOINT"}
    r = subprocess.run(ctl_argv(d, *args), capture_output=True, text=True, timeout=timeout,
                       env=env, cwd=ROOT, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout, r.stderr


class Node:
    """A circusd started on HEAD + ``body`` with a Raw client on its control socket."""

    def __init__(self, make, body: str, *extra: str, sub: bool = False) -> None:
        self.ctx = zmq.Context()
        probe = make(None, start=False)
        self.d: Circusd = probe
        probe.write(HEAD.format(dir=probe.dir) + textwrap.dedent(body))
        self.events: zmq.Socket | None = None
        if sub:                                   # subscribed before circusd starts: no event missed
            self.events = self.ctx.socket(zmq.SUB)
            self.events.linger = 0
            self.events.setsockopt(zmq.SUBSCRIBE, b"")
            self.events.connect(f"ipc://{probe.dir}/events.sock")
        probe.start(None, *extra)
        probe.wait(lambda: (probe.dir / "control.sock").exists(), what="control socket")
        self.c = Raw(self.ctx, f"ipc://{probe.dir}/control.sock")

    def call(self, command: str, wait: float = 10.0, **props) -> dict:
        assert self.d.proc.poll() is None, f"circusd died\n{self.d.log_text()[-3000:]}"
        return self.c.call(command, wait=wait, **props)

    def pids(self, name: str) -> list[int]:
        return sorted(self.call("list", name=name)["pids"])

    def status(self, name: str) -> dict:
        return self.call("status", name=name)

    def next_events(self, timeout: float = 0.0) -> list[tuple[str, dict]]:
        assert self.events is not None
        out = []
        while self.events.poll(int(timeout * 1000)):
            topic, body = self.events.recv_multipart()
            out.append((topic.decode(), json.loads(body)))
            timeout = 0
        return out

    def close(self) -> None:
        self.c.close()
        if self.events is not None:
            self.events.close()
        self.ctx.term()


@pytest.fixture
def node(circusd):
    nodes: list[Node] = []

    def start(body: str, *extra: str, sub: bool = False) -> Node:
        n = Node(circusd, body, *extra, sub=sub)
        nodes.append(n)
        return n
    yield start
    for n in nodes:
        n.close()


# -- 1. a child that ignores SIGTERM ---------------------------------------------------------------

STUBBORN = """
[watcher:stubborn]
cmd = {faulty} ignore-term {dir}/ready.$(circus.wid)
numprocesses = 2
graceful_timeout = 0.5

[watcher:other]
cmd = sleep 3600
"""


def test_sigterm_ignored_stop_kills_after_graceful_timeout_and_control_keeps_answering(node, tmp_path):
    n = node(STUBBORN.format(faulty=FAULTY, dir=tmp_path), sub=True)
    d = n.d
    d.wait(lambda: (tmp_path / "ready.1").exists() and (tmp_path / "ready.2").exists()
           and len(n.pids("other")) == 1, what="2 stubborn children and 'other'")
    stubborn = n.pids("stubborn")
    other = n.pids("other")
    n.next_events(0.2)                                  # drop the start-up events
    # the stop goes through circusctl; status of the other watcher is asked while it runs
    t0 = time.monotonic()
    stop = subprocess.Popen(ctl_argv(d, "stop", "stubborn", "--waiting"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        answered_during_stop = 0
        deadline = time.monotonic() + 15
        while stop.poll() is None and time.monotonic() < deadline:
            if all(proc_alive(p) for p in stubborn):   # the stop is in progress (SIGTERM ignored)
                assert n.status("other")["status"] == "active"
                assert n.pids("other") == other
                answered_during_stop += int(stop.poll() is None and
                                            all(proc_alive(p) for p in stubborn))
            time.sleep(0.02)
        out, err = stop.communicate(timeout=15)
    finally:
        if stop.poll() is None:
            stop.kill()
            stop.wait(5)
    elapsed = time.monotonic() - t0
    assert stop.returncode == 0, out + err
    assert answered_during_stop > 0, "no status answered while the stop was in progress"
    assert not any(proc_alive(p) for p in stubborn)
    assert elapsed >= 0.5                               # they got their graceful_timeout
    assert elapsed < 10, f"stop took {elapsed:.1f} s"   # against a hang, not a speed target
    events = n.next_events(1.0)
    # one ``kill`` event when SIGTERM is sent, one when SIGKILL is, graceful_timeout apart
    kills: dict[int, list[float]] = {}
    for t, e in events:
        if t == "watcher.stubborn.kill":
            kills.setdefault(e["process_pid"], []).append(e["time"])
    reaped = {e["process_pid"]: e["exit_code"] for t, e in events if t == "watcher.stubborn.reap"}
    assert sorted(kills) == stubborn and all(len(v) == 2 for v in kills.values()), events
    gaps = [v[1] - v[0] for v in kills.values()]
    assert all(g >= 0.45 for g in gaps), gaps
    assert reaped == {p: -signal.SIGKILL for p in stubborn}, events
    assert n.status("stubborn")["status"] == "stopped"
    assert n.pids("other") == other and all(proc_alive(p) for p in other)
    sys.stderr.write(f"[fault 1] stop: SIGTERM->SIGKILL {max(gaps):.3f} s, stop {elapsed:.2f} s, "
                     f"{answered_during_stop} status answers during the stop\n")


def test_sigterm_ignored_quit_kills_after_graceful_timeout(node, tmp_path):
    n = node(STUBBORN.format(faulty=FAULTY, dir=tmp_path))
    d = n.d
    d.wait(lambda: (tmp_path / "ready.1").exists() and (tmp_path / "ready.2").exists()
           and len(n.pids("other")) == 1, what="children")
    kids = n.pids("stubborn") + n.pids("other")
    t0 = time.monotonic()
    code, out, err = ctl(d, "quit", "--waiting")
    assert code == 0, out + err
    assert d.proc.wait(15) == 0
    elapsed = time.monotonic() - t0
    assert not any(proc_alive(p) for p in kids)
    assert 0.5 <= elapsed < 10, elapsed
    sys.stderr.write(f"[fault 1] quit with SIGTERM ignored: {elapsed:.2f} s\n")


# -- 2. a double-forking daemon --------------------------------------------------------------------

def test_a_double_forking_worker_its_daemons_are_reaped_adopted_and_killed_at_quit(node, tmp_path):
    pids_file = tmp_path / "daemons"
    n = node(f"""
        [watcher:forker]
        cmd = {FAULTY} daemon {pids_file}
        max_retry = 2
        backoff_initial = 0.05
        graceful_timeout = 0.5

        [watcher:other]
        cmd = sleep 3600
    """)
    d = n.d
    try:
        # the worker exits at once, every time: the watcher respawns it per max_retry, then gives up
        d.wait(lambda: n.status("forker")["status"] == "fatal", timeout=15, what="forker fatal")
        reason = n.status("forker")["reason"]
        assert "exited 3 times in" in reason, reason
        daemons = [int(x) for x in pids_file.read_text().split()]
        assert len(daemons) == 3, daemons                   # one daemon per spawn: 1 + max_retry
        # each daemon was re-parented to circusd (the subreaper): its direct children now
        d.wait(lambda: all(p in d.children() for p in daemons), what="daemons adopted by circusd")
        for p in daemons:
            assert proc_alive(p)
            # in the session the middle child made: neither circusd's nor the worker's group
            assert os.getsid(p) == os.getpgid(p) != os.getsid(d.pid) and os.getsid(p) != p
            assert p not in n.pids("forker")                # not one of the watcher's processes
        # the worker and the middle child were reaped: no zombie under circusd while it runs
        d.wait(lambda: not proc_zombies(d.pid), timeout=5, what="no zombie under circusd")
        assert n.status("other")["status"] == "active"
        code, out, err = ctl(d, "quit", "--waiting")
        assert code == 0, out + err
        assert d.proc.wait(15) == 0
        assert [p for p in daemons if proc_alive(p)] == [], "a daemon survived quit"
        assert "orphaned descendant" in d.log_text()
    finally:       # a daemon is no child of circusd's group: ended by its pid if a check failed
        for p in (int(x) for x in (pids_file.read_text().split() if pids_file.exists() else [])):
            if proc_alive(p):
                os.kill(p, signal.SIGKILL)


# -- 3. the binary disappears ----------------------------------------------------------------------

def test_binary_removed_respawn_fails_with_the_reason_then_start_works_again(node, tmp_path):
    binary = tmp_path / "mysleep"
    shutil.copy("/bin/sleep", binary)
    n = node(f"""
        [watcher:vanish]
        cmd = {binary} 3600
        max_retry = 2
        backoff_initial = 0.05

        [watcher:other]
        cmd = sleep 3600
    """)
    d = n.d
    d.wait(lambda: len(n.pids("vanish")) == 1 and len(n.pids("other")) == 1, what="both watchers")
    other = n.pids("other")
    victim = n.pids("vanish")[0]
    binary.unlink()
    os.kill(victim, signal.SIGKILL)
    d.wait(lambda: n.status("vanish")["status"] == "fatal", timeout=15, what="vanish fatal")
    reason = n.status("vanish")["reason"]
    assert f"command not found: '{binary}'" in reason, reason
    assert "failed to start" in reason, reason
    code, out, err = ctl(d, "status")          # exit 3: a watcher is fatal
    assert code == 3 and "vanish" in out and "fatal" in out and "command not found" in out, out + err
    assert f"vanish: could not spawn process 1: command not found: '{binary}'" in d.log_text()
    # the rest goes on
    assert n.pids("other") == other and n.status("other")["status"] == "active"
    assert n.pids("vanish") == []
    # the binary back: start works again
    shutil.copy("/bin/sleep", binary)
    code, out, err = ctl(d, "start", "vanish", "--waiting")
    assert code == 0, out + err
    d.wait(lambda: len(n.pids("vanish")) == 1, what="vanish running again")
    assert n.status("vanish")["status"] == "active"
    assert proc_cmdline(n.pids("vanish")[0])[0] == str(binary)
    d.stop()


# -- 4. disk full under a log stream ---------------------------------------------------------------

def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} needs root and CI runs as root")
        pytest.skip(f"{what} needs root (CI runs as root)")


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 256 KiB tmpfs mounted in tmp_path, unmounted by path in teardown."""
    _need_root("mounting a tmpfs")
    if shutil.which("mount") is None:
        pytest.fail("no `mount` command")
    where = tmp_path / "full"
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs: {r.stderr}")
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True, timeout=30).returncode:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


def test_disk_full_under_a_file_stream_circusd_serves_logs_it_and_writing_resumes(small_tmpfs, node):
    out = small_tmpfs / "out.log"
    n = node(f"""
        [watcher:flood]
        cmd = {FAULTY} flood 2000000
        stdout_stream.class = FileStream
        stdout_stream.filename = {out}

        [watcher:other]
        cmd = sleep 3600
    """)
    d = n.d
    d.wait(lambda: len(n.pids("flood")) == 1 and len(n.pids("other")) == 1, what="both watchers")
    flood, other = n.pids("flood"), n.pids("other")
    # 2 MB into 256 KiB: ENOSPC, said once in circusd's log with what was lost
    d.wait_log(f"flood stdout ({out}): write failed, ", timeout=20)
    line = next(x for x in d.log_text().splitlines() if "flood stdout (" in x and "write failed" in x)
    assert "No space left on device" in line and "line(s) lost so far" in line, line
    assert shutil.disk_usage(small_tmpfs).free < 8192
    # circusd answers, nothing was stopped or restarted, the child still runs and still writes:
    # the lost lines are dropped, its pipe is read on (it is not blocked on a full pipe)
    assert n.status("flood")["status"] == "active" and n.status("other")["status"] == "active"
    assert n.pids("flood") == flood and n.pids("other") == other
    code, out_, err = ctl(d, "status")
    assert code == 0 and "flood" in out_, out_ + err
    tail = lambda: n.call("tail", name="flood", lines=1)["lines"]        # noqa: E731
    first = d.wait(lambda: [x for x in tail() if "tick" in json.dumps(x)], timeout=20,
                   what="ticks read from the full-disk child")
    d.wait(lambda: tail() != first, timeout=10, what="more ticks")
    # space freed (the file emptied): writing resumes by itself, on the same descriptor
    size_full = out.stat().st_size
    os.truncate(out, 0)
    d.wait(lambda: b"tick " in out.read_bytes(), timeout=10, what="ticks in the emptied file")
    assert out.stat().st_size < size_full
    # the file removed (its space is only freed when circusd closes it) + reopen: a new file
    os.unlink(out)
    code, out_, err = ctl(d, "reopen")
    assert code == 0, out_ + err
    d.wait(lambda: out.exists() and b"tick " in out.read_bytes(), timeout=10,
           what="ticks in the reopened file")
    assert n.pids("flood") == flood
    lost = [x for x in d.log_text().splitlines() if "flood stdout (" in x and "write failed, " in x]
    sys.stderr.write(f"[fault 4] {lost[0].split('): ', 1)[1]}; "
                     f"{len(lost)} error line(s)\n")
    d.stop()


# -- 5. file descriptors run out -------------------------------------------------------------------

NOFILE = 64
LIMITED = ("import os, resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, ({n}, {n})); "
           "os.execv(sys.argv[1], sys.argv[1:])")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_fd_exhaustion_spawns_fail_with_emfile_control_answers_and_lowering_recovers(circusd, tmp_path):
    d = circusd(None, start=False)
    d.write(HEAD.format(dir=tmp_path) + textwrap.dedent("""
        [watcher:many]
        cmd = sleep 3600
        max_retry = -1
        backoff_initial = 0.05
        backoff_max = 0.5
        stdout_stream.class = StdoutStream
        stderr_stream.class = StdoutStream

        [watcher:other]
        cmd = sleep 3601
    """))
    # circusd itself under RLIMIT_NOFILE 64 (exec'd in place: same pid)
    d.argv = lambda *extra: [PY, "-c", LIMITED.format(n=NOFILE), PY,
                             *Circusd.argv(d, *extra)[1:]]
    d.start()
    d.wait(lambda: (tmp_path / "control.sock").exists(), what="control socket")
    ctx = zmq.Context()
    c = Raw(ctx, f"ipc://{tmp_path}/control.sock")
    try:
        with open(f"/proc/{d.pid}/limits") as fh:
            assert any(line.startswith("Max open files") and line.split()[3] == str(NOFILE)
                       for line in fh)
        d.wait(lambda: len(c.call("list", name="other")["pids"]) == 1, what="other running")
        other = c.call("list", name="other")["pids"]
        baseline = open_fds(d.pid)
        # each process costs circusd two pipe ends kept open (stdout, stderr), a spawn six at once
        code, out, err = ctl(d, "incr", "many", "59")
        assert code == 0, out + err
        reason = lambda: c.call("status", name="many")["reason"]         # noqa: E731
        d.wait(lambda: "Too many open files" in reason(), timeout=15, what="EMFILE as the reason")
        assert "in backoff" in reason(), reason()
        running = c.call("list", name="many")["pids"]
        assert 1 <= len(running) < 60 and all(proc_alive(p) for p in running)
        assert "many: could not spawn process" in d.log_text()
        assert ": could not start 'sleep': Too many open files" in d.log_text()
        # the daemon goes on: new control connections, the status of everything, stats
        for _ in range(3):
            code, out, err = ctl(d, "--timeout", "30", "status")     # a shared, busy machine
            # exit 3: many is in backoff
            assert code == 3 and "Too many open files" in out and "other: active" in out, out + err
        assert c.call("stats", name="other")["info"].keys() == {str(other[0])}
        assert c.call("list", name="other")["pids"] == other
        exhausted = open_fds(d.pid)
        assert exhausted > NOFILE - 8, (baseline, exhausted)        # really at the limit
        # lowering numprocesses frees the descriptors: the watcher is healthy again
        code, out, err = ctl(d, "decr", "many", "55")
        assert code == 0, out + err
        d.wait(lambda: (lambda r: (r["status"], r["reason"]))(c.call("status", name="many"))
               == ("active", ""), timeout=10,
               what="many active without a reason")
        d.wait(lambda: len(c.call("list", name="many")["pids"]) == 5, what="5 processes")
        code, out, err = ctl(d, "incr", "many", "2", "--waiting")
        assert code == 0, out + err
        d.wait(lambda: len(c.call("list", name="many")["pids"]) == 7, what="7 processes")
        assert c.call("status", name="many")["reason"] == ""
        assert open_fds(d.pid) < exhausted
        sys.stderr.write(f"[fault 5] fds: {baseline} at start, {exhausted}/{NOFILE} exhausted with "
                         f"{len(running)} processes running, {open_fds(d.pid)} with 7\n")
    finally:
        c.close()
        ctx.term()
    d.stop()


# -- 6. an events subscriber that never reads ------------------------------------------------------

class Counter:
    """A SUB on every event that does read: how many events circusd published."""

    def __init__(self, ctx: zmq.Context, endpoint: str) -> None:
        self.sock = ctx.socket(zmq.SUB)
        self.sock.linger = 0
        self.sock.rcvhwm = 0
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(endpoint)
        self.count = 0
        self.topics: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.sock.poll(50):
                while True:
                    try:
                        topic, _ = self.sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self.count += 1
                    kind = topic.decode().rsplit(".", 1)[-1]
                    self.topics[kind] = self.topics.get(kind, 0) + 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        assert not self._thread.is_alive()
        self.sock.close()


def stalled_sub(ctx: zmq.Context, endpoint: str, *topics: bytes) -> zmq.Socket:
    """Subscribes and never calls recv; its own queue is kept tiny so that the backlog stays
    on circusd's side of the connection."""
    sock = ctx.socket(zmq.SUB)
    sock.linger = 0
    sock.rcvhwm = 1
    sock.setsockopt(zmq.RCVBUF, 4096)
    for t in topics:
        sock.setsockopt(zmq.SUBSCRIBE, t)
    sock.connect(endpoint)
    return sock


def test_a_subscriber_that_never_reads_20000_events_rss_stays_bounded(node, tmp_path):
    n = node("""
        [watcher:crash]
        cmd = sh -c "exit 1"
        numprocesses = 4
        max_retry = -1
        backoff_initial = 0.001
        backoff_max = 0.01

        [watcher:pool]
        cmd = sleep 3600
        graceful_timeout = 0.5
    """)
    d = n.d
    endpoint = f"ipc://{d.dir}/events.sock"
    stalled = stalled_sub(n.ctx, endpoint, b"")
    counter = Counter(n.ctx, endpoint)
    try:
        d.wait(lambda: counter.count > 200, timeout=15, what="the crash loop's events")
        before = proc_rss_kb(d.pid)
        deadline = time.monotonic() + 45
        rounds = 0
        while counter.count < 20_000:
            assert time.monotonic() < deadline, f"only {counter.count} events in 45 s"
            n.call("incr", name="pool", nb=3)         # spawn events
            n.call("decr", name="pool", nb=3)         # kill and reap events
            # and 100 audit events without a fork: SIGCONT to the pool, pipelined
            ids = []
            for _ in range(100):
                ids.append(uuid.uuid4().hex)
                n.c.send_raw(json.dumps({"id": ids[-1], "command": "signal", "properties":
                                         {"name": "pool", "signum": "SIGCONT"}}).encode())
            replies = [n.c.recv(10) for _ in ids]
            assert sorted(r["id"] for r in replies) == sorted(ids)
            assert all(r["status"] == "ok" for r in replies), replies[0]
            rounds += 1
        code, out, err = ctl(d, "--timeout", "30", "status")
        # crash loops: exit 3 while one of its processes waits in backoff, 0 between
        assert code in (0, 3) and "crash: active" in out and "pool: active" in out, out + err
        after = proc_rss_kb(d.pid)
        growth_mb = (after - before) / 1024
        sys.stderr.write(f"[fault 6] {counter.count} events ({rounds} incr/decr rounds, "
                         f"{dict(sorted(counter.topics.items()))}): RSS {before} -> {after} kB "
                         f"({growth_mb:+.1f} MB)\n")
        assert growth_mb < 30, f"RSS grew {growth_mb:.1f} MB with a subscriber that never reads"
    finally:
        counter.close()
        stalled.close()
    d.stop()


def test_a_subscriber_to_output_that_never_reads_long_lines_rss_stays_bounded(node, tmp_path):
    n = node(f"""
        [watcher:long]
        cmd = {FAULTY} long-lines 1000
        stdout_stream.class = StdoutStream
        autostart = false
    """)
    d = n.d
    endpoint = f"ipc://{d.dir}/events.sock"
    # subscribed to its output lines explicitly (as `circusctl tail --follow` does), never read
    stalled = stalled_sub(n.ctx, endpoint, b"", b"output.long")
    confirm = n.ctx.socket(zmq.SUB)       # circusd confirms each output subscription it sees
    confirm.linger = 0
    confirm.setsockopt(zmq.SUBSCRIBE, b"output.long")
    confirm.connect(endpoint)
    try:
        assert confirm.poll(10_000), "no output subscription confirmed"
        assert json.loads(confirm.recv_multipart()[1]).get("subscribed") == "output.long"
        confirm.close()
        before = proc_rss_kb(d.pid)
        n.call("start", name="long")
        d.wait(lambda: any(x.get("line") == "done" for x in n.call("tail", name="long", lines=1)
                           ["lines"]), timeout=30, what="1000 long lines read by circusd")
        code, out, err = ctl(d, "--timeout", "30", "status")
        assert code == 0 and "long: active" in out, out + err
        after = proc_rss_kb(d.pid)
        growth_mb = (after - before) / 1024
        sys.stderr.write(f"[fault 6] 1000 lines of 65,000 bytes to a stalled output subscriber: "
                         f"RSS {before} -> {after} kB ({growth_mb:+.1f} MB)\n")
        assert growth_mb < 30, f"RSS grew {growth_mb:.1f} MB with a subscriber that never reads"
    finally:
        confirm.close()
        stalled.close()
    d.stop()


# -- 7. a pool node frozen (SIGSTOP) during a rolling restart --------------------------------------

POOL_NAMES = ("n1", "n2", "n3")
POOL_NODE = """
[watcher:w]
cmd = sleep 3600
numprocesses = 2
graceful_timeout = 0.5
"""
# n2's workers ignore SIGTERM: its restart answers only after graceful_timeout (old ones killed)
SLOW_NODE = """
[watcher:w]
cmd = {faulty} ignore-term {dir}/ready.$(circus.wid)
numprocesses = 2
graceful_timeout = 1.5
"""


@pytest.fixture
def frozen_pool(circusd, tmp_path):
    """Three circusd nodes on ipc:// in tmp_path; whatever a test SIGSTOPped is SIGCONTed and
    stopped (by pid, with its children) in teardown."""
    nodes: dict[str, Node] = {}
    try:
        for i, name in enumerate(POOL_NAMES):
            where = tmp_path / f"d{i}" if i else tmp_path          # the circusd fixture's dirs
            body = SLOW_NODE.format(faulty=FAULTY, dir=where) if name == "n2" else POOL_NODE
            nodes[name] = Node(circusd, body, "--name", name)
            assert nodes[name].d.dir == where
        for n in nodes.values():
            n.d.wait(lambda n=n: len(n.pids("w")) == 2, what="2 workers")
        yield nodes
    finally:
        for n in nodes.values():
            if n.d.proc is not None and n.d.proc.poll() is None:
                os.kill(n.d.pid, signal.SIGCONT)
        for n in nodes.values():
            n.close()


def write_pool(tmp_path: Path, nodes: dict[str, Node], order: tuple[str, ...]) -> Path:
    pool = tmp_path / "pool.ini"
    pool.write_text("[meta]\ntimeout = 1\n\n" + "".join(
        f"[node:{name}]\nendpoint = ipc://{nodes[name].d.dir}/control.sock\n\n" for name in order))
    return pool


def rolling(pool: Path, *args: str, deadline: float = 30.0) -> tuple[int, dict, str, float]:
    t0 = time.monotonic()
    r = subprocess.run([PY, "-m", "circusmeta.cli", "--pool", str(pool), "--json", *args],
                       capture_output=True, text=True, timeout=deadline, cwd=ROOT,
                       stdin=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    try:
        report = json.loads(r.stdout)
    except ValueError:
        pytest.fail(f"exit {r.returncode}, no JSON report\n{r.stdout}\n{r.stderr}")
    return r.returncode, report, r.stderr, wall


def test_a_node_frozen_before_the_rolling_restart_fails_in_its_turn_the_others_restart(
        frozen_pool, tmp_path):
    nodes = frozen_pool
    pool = write_pool(tmp_path, nodes, ("n1", "n3", "n2"))          # the frozen node goes last
    before = {name: n.pids("w") for name, n in nodes.items()}
    os.kill(nodes["n2"].d.pid, signal.SIGSTOP)
    nodes["n2"].d.wait(lambda: proc_state(nodes["n2"].d.pid) == "T", what="n2 stopped")
    code, report, err, wall = rolling(pool, "restart", "--rolling", "w", "--all", "--step-timeout", "2")
    assert code == 4, (report, err)                                  # partial
    assert report["items"] == ["n1:w", "n3:w", "n2:w"], report
    assert report["done"] == ["n1:w", "n3:w"] and report["not_done"] == [], report
    failed = report["failed"]["n2:w"]
    assert failed["state"] in ("unresponsive", "not_available"), failed
    assert failed["reason"], failed
    assert "n2" in err, err                                          # named when it was asked
    assert wall < 20, wall                                           # against a hang only
    after = {name: nodes[name].pids("w") for name in ("n1", "n3")}
    for name in ("n1", "n3"):
        assert len(after[name]) == 2 and not set(after[name]) & set(before[name]), name
    # n2, thawed, serves on with its old processes: it was frozen before the connection's
    # handshake, so the restart never left circusmeta (nothing is done late)
    os.kill(nodes["n2"].d.pid, signal.SIGCONT)
    n2 = nodes["n2"]
    n2.d.wait(lambda: n2.status("w")["status"] == "active", what="n2 answering after SIGCONT")
    assert n2.pids("w") == before["n2"] and all(proc_alive(p) for p in before["n2"])
    sys.stderr.write(f"[fault 7] frozen before: exit {code} in {wall:.1f} s, n2:w "
                     f"{failed['state']}: {failed['reason']}\n")


def test_a_node_frozen_during_the_rolling_restart_fails_at_its_deadline(frozen_pool, tmp_path):
    nodes = frozen_pool
    pool = write_pool(tmp_path, nodes, POOL_NAMES)
    before = {name: n.pids("w") for name, n in nodes.items()}
    proc = subprocess.Popen([PY, "-m", "circusmeta.cli", "--pool", str(pool), "restart",
                             "--rolling", "w", "--all", "--step-timeout", "2.5"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        t0 = time.monotonic()
        # n2 answered the plan's `list`; it freezes as soon as n1's step is over, while its
        # own restart (at least its 1.5 s graceful_timeout) is running
        seen = b""
        deadline = time.monotonic() + 20
        while b"[1/3] n1:w restart ... ok" not in seen:
            assert time.monotonic() < deadline and proc.poll() is None, seen
            if select.select([proc.stdout], [], [], 0.05)[0]:
                seen += os.read(proc.stdout.fileno(), 65536)
        os.kill(nodes["n2"].d.pid, signal.SIGSTOP)
        rest, err_b = proc.communicate(timeout=30)
        out, err = (seen + rest).decode(), err_b.decode()
        wall = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 4, out + err
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert lines[0].startswith("[1/3] n1:w restart ... ok"), out
    assert lines[-1].startswith("[2/3] n2:w restart ... failed"), out
    summary = out.splitlines()[-1]
    assert summary.startswith("done: n1:w; failed: n2:w (") and summary.endswith(
        "; not done: n3:w"), out
    assert "unresponsive" in summary and "within 2.5 s" in summary, summary
    assert wall < 20, wall
    os.kill(nodes["n2"].d.pid, signal.SIGCONT)
    # thawed, n2 still serves (it may have done the restart it was sent: "it may still finish")
    nodes["n2"].d.wait(lambda: len(nodes["n2"].pids("w")) == 2 and
                       nodes["n2"].status("w")["status"] == "active", timeout=15,
                       what="n2 serving")
    assert nodes["n3"].pids("w") == before["n3"]                     # never touched
    late = nodes["n2"].pids("w") != before["n2"]
    sys.stderr.write(f"[fault 7] frozen during: exit {proc.returncode} in {wall:.1f} s; "
                     f"{summary}; after SIGCONT n2 "
                     f"{'finished the restart late' if late else 'kept its processes'}\n")


def test_incr_then_decr_without_waiting_ends_where_it_started(node, tmp_path):
    # the count was resolved when the request arrived and queued updates were lost
    # (numprocesses 0 after incr 3 / decr 3 rounds)
    n = node("""
        [watcher:pool]
        cmd = sleep 3600
        graceful_timeout = 0.5
    """)
    n.d.wait(lambda: len(n.pids("pool")) == 1, what="1 process")
    for _ in range(30):
        n.call("incr", name="pool", nb=3)
        n.call("decr", name="pool", nb=3)
    n.d.wait(lambda: n.call("get", name="pool", keys=["numprocesses"])["options"]["numprocesses"]
             == 1 and len(n.pids("pool")) == 1, timeout=8, what="numprocesses back to 1")
    n.d.stop()
