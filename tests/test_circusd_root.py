"""Tier 2, as root: switching users, and circusd as PID 1 of a new PID namespace (containers)."""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import proc_alive, proc_children, proc_state

pytestmark = [pytest.mark.real,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")]


def status_ids(pid: int) -> tuple[int, int, list[int]]:
    with open(f"/proc/{pid}/status") as fh:
        fields = dict(line.split(":", 1) for line in fh if ":" in line)
    uid = int(fields["Uid"].split()[0])
    gid = int(fields["Gid"].split()[0])
    groups = [int(g) for g in fields["Groups"].split()]
    return uid, gid, groups


def test_uid_and_gid_are_switched_with_supplementary_groups(circusd, tmp_path):
    nobody = pwd.getpwnam("nobody")
    d = circusd("""
        [watcher:asnobody]
        cmd = sleep 3606
        uid = nobody
    """)
    child = d.wait(lambda: d.children("sleep 3606"), what="child")[0]
    uid, gid, groups = status_ids(child)
    assert (uid, gid) == (nobody.pw_uid, nobody.pw_gid)
    assert groups == sorted(set(os.getgrouplist("nobody", nobody.pw_gid)))
    d.stop()


@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare (util-linux) not installed")
def test_as_pid_1_it_reaps_every_orphan_and_stops_on_term(tmp_path):
    conf = tmp_path / "pid1.ini"
    # every second the worker leaves an orphan behind, which becomes PID 1's child
    conf.write_text("[watcher:orphans]\ncmd = sh -c 'while true; do (sleep 0.1 &); sleep 0.2; done'\n")
    log = tmp_path / "pid1.log"
    unshare = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-m", "circus.cli.circusd",
         "--log-level", "debug", "--log-output", str(log), str(conf)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not proc_children(unshare.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        circusd = proc_children(unshare.pid)[0]
        deadline = time.monotonic() + 10
        while "running as PID 1" not in (log.read_text() if log.exists() else ""):
            assert unshare.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        time.sleep(1.5)                                   # a few orphans came and went
        assert "reaped orphan" in log.read_text()
        zombies = [p for p in proc_children(circusd) if proc_state(p) == "Z"]
        assert len(zombies) <= 1                          # at most one caught between exit and reap
        kids = proc_children(circusd)
        os.kill(circusd, signal.SIGTERM)
        assert unshare.wait(10) == 0
        assert not any(proc_alive(k) for k in kids)
    finally:
        if unshare.poll() is None:
            unshare.kill()
            unshare.wait(5)
        unshare.stdout.close()
