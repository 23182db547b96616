"""Tier 2: a real circusd with real children, real signals, real reaping."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import Circusd, proc_alive, proc_children, proc_cmdline, proc_state

pytestmark = pytest.mark.real

SLEEPERS = """
[circus]
endpoint = ipc://{dir}/c.sock
pubsub_endpoint = ipc://{dir}/p.sock

[watcher:sleepers]
cmd = sleep 3600
numprocesses = 3
graceful_timeout = 2

[watcher:other]
cmd = sleep 3601
"""


def test_starts_every_watcher_respawns_at_once_and_stops_everything(circusd, tmp_path):
    d = circusd(SLEEPERS.format(dir=tmp_path))
    d.wait(lambda: len(d.children("sleep 3600")) == 3 and len(d.children("sleep 3601")) == 1,
           what="4 sleep children")
    victim = d.children("sleep 3600")[0]
    os.kill(victim, signal.SIGKILL)
    t0 = time.monotonic()
    d.wait(lambda: victim not in d.children() and len(d.children("sleep 3600")) == 3,
           timeout=5, what="the replacement")
    assert time.monotonic() - t0 < 1.0          # event-driven: no 5 s polling tick
    kids = d.children()
    assert d.stop() == 0
    assert not any(proc_alive(p) for p in kids)
    assert "stopping every watcher" in d.log_text()


def test_children_run_in_their_own_process_group_and_get_only_the_configured_env(circusd, tmp_path):
    out = tmp_path / "env.txt"
    d = circusd(f"""
        [watcher:envdump]
        cmd = sh -c 'env > {out}; exec sleep 3600'
        [env]
        GREETING = hello
        FROM_PARENT = $HOME
        BRACED = ${{HOME}}/x
    """)
    d.wait(lambda: out.exists() and d.children("sleep"), what="env dump")
    env = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    assert env["GREETING"] == "hello"
    assert env["FROM_PARENT"] == os.environ["HOME"]
    assert env["BRACED"] == os.environ["HOME"] + "/x"
    assert "__name__" not in env                   # 0.19 leaked the parser's section name
    assert "PYTEST_CURRENT_TEST" not in env        # copy_env is false by default
    child = d.children("sleep")[0]
    assert os.getpgid(child) == child and os.getsid(child) == child
    d.stop()


def test_copy_env_rlimits_working_dir_and_wid(circusd, tmp_path, monkeypatch):
    monkeypatch.setenv("MARK", "marked")
    work = tmp_path / "work"
    work.mkdir()
    d = circusd(f"""
        [watcher:probe]
        cmd = sh -c 'echo "$(ulimit -n) $(pwd) $MARK $1" > out.$(circus.wid); exec sleep 3600' x $(circus.wid)
        numprocesses = 2
        copy_env = true
        working_dir = {work}
        rlimit_nofile = 123
    """)
    d.wait(lambda: (work / "out.1").exists() and (work / "out.2").exists(), what="probe output")
    assert (work / "out.1").read_text().split() == ["123", str(work), "marked", "1"]
    assert (work / "out.2").read_text().split()[3] == "2"
    d.stop()


def test_grandchildren_are_reaped_and_killed_with_the_tree(circusd, tmp_path):
    pids = tmp_path / "pids"
    # the worker starts a grandchild in its group and a double-forked one in a new session
    d = circusd(f"""
        [watcher:tree]
        cmd = sh -c 'sleep 3700 & setsid sleep 3701 & echo $! >> {pids}; exec sleep 3702'
        graceful_timeout = 1
        stop_children = true
    """)
    d.wait(lambda: d.children("sleep 3702") and pids.exists(), what="tree")
    worker = d.children("sleep 3702")[0]
    tree = [worker, *proc_children(worker)]
    assert len(tree) >= 2
    d.stop()
    for pid in tree:
        assert not proc_alive(pid), f"{pid} {proc_cmdline(pid)} survived"
    assert not proc_alive(int(pids.read_text().split()[0]))


def test_an_orphan_is_reaped_no_zombie_is_left(circusd, tmp_path):
    d = circusd("""
        [watcher:forker]
        cmd = sh -c '(sleep 0.2 &) && exec sleep 3600'
    """)
    d.wait(lambda: d.children("sleep 3600"), what="worker")
    # the (sleep 0.2 &) subshell exits at once: its child is re-parented to circusd (subreaper)
    d.wait(lambda: d.children("sleep 0.2"), timeout=5, what="orphan re-parented to circusd")
    time.sleep(0.5)
    zombies = [p for p in proc_children(d.pid) if proc_state(p) == "Z"]
    assert zombies == []
    d.stop()


def test_a_stubborn_child_is_killed_after_graceful_timeout(circusd, tmp_path):
    d = circusd(f"""
        [watcher:stubborn]
        cmd = {sys.executable} -c "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); open('{tmp_path}/ready', 'w').close(); time.sleep(3600)"
        graceful_timeout = 1
    """)
    d.wait(lambda: (tmp_path / "ready").exists(), what="stubborn child")
    child = d.children()[0]
    t0 = time.monotonic()
    assert d.stop() == 0
    elapsed = time.monotonic() - t0
    assert not proc_alive(child)
    assert 0.9 < elapsed < 5


def test_one_broken_watcher_fails_alone(circusd, tmp_path):
    d = circusd(f"""
        [watcher:nocmd]
        cmd = /nonexistent/binary
        max_retry = 1
        [watcher:nouser]
        cmd = sleep 3600
        uid = no_such_user_here
        max_retry = 0
        [watcher:nodir]
        cmd = sleep 3600
        working_dir = {tmp_path}/missing
        max_retry = 0
        [watcher:good]
        cmd = sleep 3603
    """)
    d.wait(lambda: d.children("sleep 3603"), what="the good watcher")
    d.wait_log("nocmd: fatal (failed to start 2 times in")
    d.wait_log("nouser: fatal (failed to start 1 times in")
    log = d.log_text()
    assert "command not found: '/nonexistent/binary'" in log
    assert "unknown user 'no_such_user_here'" in log
    assert f"working_dir '{tmp_path}/missing' does not exist" in log
    assert len(d.children()) == 1
    d.stop()


def test_crash_loop_backs_off_and_goes_fatal(circusd, tmp_path):
    d = circusd("""
        [watcher:crasher]
        cmd = sh -c 'exit 3'
        max_retry = 3
        backoff_initial = 0.05
    """)
    d.wait_log("crasher: fatal (exited 4 times in", timeout=10)
    assert "exit code 3" in d.log_text()
    d.stop()


def test_sighup_reloads_gracefully_and_sigusr1_reopens_the_log(circusd, tmp_path):
    d = circusd("""
        [watcher:web]
        cmd = sleep 3600
        numprocesses = 2
        graceful_timeout = 2
    """)
    d.wait(lambda: len(d.children("sleep")) == 2, what="2 workers")
    before = set(d.children("sleep"))
    d.signal(signal.SIGHUP)
    d.wait(lambda: len(d.children("sleep")) == 2 and not before & set(d.children("sleep")),
           what="2 new workers")
    os.rename(d.log, tmp_path / "rotated.log")
    d.signal(signal.SIGUSR1)
    d.wait(lambda: d.log.exists(), what="log reopened")
    d.stop()
    assert "circusd stopped" in d.log_text()


def test_quit_during_a_slow_start_is_not_lost(circusd, tmp_path):
    d = circusd("""
        [watcher:slow]
        cmd = sleep 3600
        numprocesses = 20
        warmup_delay = 1
    """)
    d.wait(lambda: d.children("sleep"), what="the first worker")
    t0 = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - t0 < 3


def run_circusd(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "circus.cli.circusd", *args], capture_output=True,
                          text=True, timeout=30, **kw)


def test_check_config_prints_a_summary_or_the_errors(tmp_path):
    good = tmp_path / "good.ini"
    good.write_text("[watcher:web]\ncmd = sleep 1\nnumprocesses = 2\n")
    r = run_circusd("--check-config", str(good))
    assert r.returncode == 0 and "web" in r.stdout
    bad = tmp_path / "bad.ini"
    bad.write_text("[watcher:web]\ncmd = sleep 1\nnumprocesess = 2\n")
    r = run_circusd("--check-config", str(bad))
    assert r.returncode == 2
    assert f"{bad}:3" in r.stderr and "numprocesess" in r.stderr and "numprocesses" in r.stderr
    r = run_circusd(str(bad))       # a config error never starts a half-configured arbiter
    assert r.returncode == 2
    assert "security: none (every endpoint is loopback or ipc://)" in \
        run_circusd("--check-config", str(good)).stdout
    exposed = tmp_path / "exposed.ini"
    exposed.write_text("[circus]\nendpoint = tcp://0.0.0.0:5555\n[watcher:web]\ncmd = sleep 1\n")
    r = run_circusd("--check-config", str(exposed))
    assert r.returncode == 2 and f"{exposed}:2: [circus] endpoint:" in r.stderr and "insecure" in r.stderr
    exposed.write_text(exposed.read_text().replace("5555\n", "5555\ninsecure = true\n"))
    r = run_circusd("--check-config", str(exposed))
    assert r.returncode == 0 and "security: none, insecure = true" in r.stdout


def test_daemon_returns_when_up_and_the_pidfile_is_locked(tmp_path):
    conf = tmp_path / "d.ini"
    pidfile = tmp_path / "circusd.pid"
    conf.write_text("[watcher:bg]\ncmd = sleep 3604\n")
    log = tmp_path / "d.log"
    r = run_circusd("--daemon", "--pidfile", str(pidfile), "--log-output", str(log), str(conf))
    assert r.returncode == 0, r.stderr
    pid = int(pidfile.read_text())
    try:
        assert proc_alive(pid)
        assert any("3604" in " ".join(proc_cmdline(c)) for c in proc_children(pid))  # already up
        r2 = run_circusd("--daemon", "--pidfile", str(pidfile), "--log-output", str(log), str(conf))
        assert r2.returncode == 1 and "locked" in r2.stderr
        assert int(pidfile.read_text()) == pid
    finally:
        kids = proc_children(pid)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while proc_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
    assert not proc_alive(pid) and not any(proc_alive(k) for k in kids)
    assert not pidfile.exists()


def test_a_stale_pidfile_is_replaced(tmp_path):
    conf = tmp_path / "d.ini"
    conf.write_text("[watcher:bg]\ncmd = sleep 3605\n")
    pidfile = tmp_path / "circusd.pid"
    pidfile.write_text(f"{os.getpid()}\n")        # alive, but not a circusd, and not locked
    r = run_circusd("--daemon", "--pidfile", str(pidfile), "--log-output", str(tmp_path / "l"), str(conf))
    assert r.returncode == 0, r.stderr
    pid = int(pidfile.read_text())
    assert pid != os.getpid()
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while proc_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not proc_alive(pid)


def test_daemon_reports_a_startup_failure(tmp_path):
    conf = tmp_path / "d.ini"
    conf.write_text("[watcher:bg]\ncmd = sleep 1\n")
    r = run_circusd("--daemon", "--log-output", str(tmp_path / "no" / "such" / "dir.log"), str(conf))
    assert r.returncode == 1 and "log output" in r.stderr


def test_the_ipc_socket_files_are_removed_at_exit_but_never_another_circusds(tmp_path):
    import socket as _socket
    d = Circusd(tmp_path)
    d.start(f"[circus]\nendpoint = ipc://{tmp_path}/control.sock\n"
            f"pubsub_endpoint = ipc://{tmp_path}/events.sock\n\n[watcher:s]\ncmd = sleep 3600\n")
    try:
        d.wait(lambda: (tmp_path / "control.sock").exists() and (tmp_path / "events.sock").exists(),
               what="the socket files")
        assert d.stop() == 0
        assert not (tmp_path / "control.sock").exists() and not (tmp_path / "events.sock").exists()
        d.proc.stdout.close()
        # a socket file at the same path that is not the one it bound is left alone
        d.start()
        d.wait(lambda: (tmp_path / "events.sock").exists(), what="the socket files")
        (tmp_path / "events.sock").unlink()
        other = _socket.socket(_socket.AF_UNIX)
        other.bind(str(tmp_path / "events.sock"))
        assert d.stop() == 0
        assert (tmp_path / "events.sock").exists() and not (tmp_path / "control.sock").exists()
        other.close()
    finally:
        d.cleanup()
