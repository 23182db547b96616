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

from asnobody import NOBODY, owned_dir, scratch, sh_as_nobody
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


def test_a_uid_without_a_passwd_entry_gets_none_of_circusds_groups(circusd, tmp_path):
    """circusd in group root and an extra group (as when root's groups are inherited): a
    watcher whose uid has no passwd entry gets none of them as supplementary groups."""
    d = circusd("""
        [watcher:numeric]
        cmd = sleep 3607
        uid = 54321
    """, start=False)
    d.proc = subprocess.Popen(d.argv(), cwd=d.dir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, extra_groups=[0, 4242])
    child = d.wait(lambda: d.children("sleep 3607"), what="child")[0]
    uid, _, groups = status_ids(child)
    assert uid == 54321 and groups == []
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


# -- files a root circusd creates: never through a link another user planted ---------------------

def _run_circusd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "circus.cli.circusd", *args], capture_output=True,
                          text=True, timeout=30)


@pytest.fixture
def planted():
    """A scratch directory with a root-only ``victim`` file and a world-writable sticky ``ww``
    (like /tmp) where nobody plants links."""
    with scratch() as path:
        (path / "ww").mkdir()
        (path / "ww").chmod(0o1777)
        victim = path / "victim"
        victim.write_bytes(b"precious root-only content\n")
        victim.chmod(0o600)
        yield path


def _ipc_config(tmp_path, body: str) -> str:
    return (f"[circus]\nendpoint = ipc://{tmp_path}/c.sock\n"
            f"pubsub_endpoint = ipc://{tmp_path}/e.sock\n" + body)


def _end_started(victim) -> None:
    """A circusd that did start after all wrote its pid through the link: stop it."""
    text = victim.read_text().strip()
    if text.isdigit() and proc_alive(int(text)):
        os.kill(int(text), signal.SIGTERM)


def test_a_pidfile_that_is_a_link_is_refused_and_its_target_untouched(planted, tmp_path):
    sh_as_nobody(f"ln -s {planted}/victim {planted}/ww/circusd.pid", planted)
    conf = tmp_path / "pf.ini"
    conf.write_text(_ipc_config(tmp_path, "[watcher:one]\ncmd = sleep 3611\n"))
    try:
        for mode in (["--daemon"], []):
            r = _run_circusd(*mode, "--pidfile", f"{planted}/ww/circusd.pid",
                             "--log-output", str(tmp_path / "circusd.log"), str(conf))
            assert r.returncode == 1, (mode, r.stdout, r.stderr)
            assert "circusd.pid: it is a symbolic link: refusing to use it" in r.stderr, r.stderr
        assert (planted / "victim").read_bytes() == b"precious root-only content\n"
        assert (planted / "ww" / "circusd.pid").is_symlink()
    finally:
        _end_started(planted / "victim")


def test_a_log_output_through_a_planted_link_is_refused(planted, tmp_path):
    sh_as_nobody(f"ln -s {planted}/victim {planted}/ww/circusd.log", planted)
    conf = tmp_path / "lf.ini"
    conf.write_text(_ipc_config(tmp_path, "[watcher:one]\ncmd = sleep 3612\n"))
    try:
        r = _run_circusd("--log-output", f"{planted}/ww/circusd.log", str(conf))
    except subprocess.TimeoutExpired:
        pytest.fail("circusd started with its log going through the planted link")
    assert r.returncode == 2 and "bad log output" in r.stderr, r.stderr
    assert "symbolic link in a directory that other users can change" in r.stderr, r.stderr
    assert (planted / "victim").read_bytes() == b"precious root-only content\n"


def test_state_file_and_stream_files_never_follow_a_planted_link(circusd, planted):
    ww = planted / "ww"
    owned_dir(planted / "logs")
    sh_as_nobody(f"ln -s {planted}/victim {ww}/state.json && ln -s {planted}/victim {ww}/out.log",
                 planted)
    d = circusd(f"""
        [circus]
        endpoint = ipc://{planted}/control.sock
        pubsub_endpoint = ipc://{planted}/events.sock
        state_file = {ww}/state.json

        [watcher:root_out]
        cmd = /bin/echo root output
        stdout_stream.filename = {ww}/out.log

        [watcher:watched]
        cmd = sh -c 'while true; do echo tick; sleep 0.1; done'
        uid = nobody
        stdout_stream.class = WatchedFileStream
        stdout_stream.filename = {planted}/logs/w.log
    """)
    victim = planted / "victim"
    untouched = b"precious root-only content\n"
    d.wait(lambda: "root_out: fatal" in d.log_text() or victim.read_bytes() != untouched,
           what="root_out to fail")
    assert victim.read_bytes() == untouched
    assert "symbolic link in a directory that other users can change" in d.log_text()
    assert f"state_file {ww}/state.json is ignored: it is a symbolic link" in d.log_text()
    d.wait(lambda: (planted / "logs" / "w.log").exists(), what="the watched file")
    # replaced in one rename: between an rm and an ln the stream may create the file again
    sh_as_nobody(f"cd {planted}/logs && ln -s {planted}/victim w.log.new && mv -f w.log.new w.log",
                 planted)
    d.wait(lambda: "write failed" in d.log_text() or victim.read_bytes() != untouched,
           what="the reopen to be refused")
    d.wait(lambda: not (ww / "state.json").is_symlink(), what="the state file to be written")
    assert (planted / "victim").read_bytes() == b"precious root-only content\n"
    assert d.stop() == 0


def test_compression_never_writes_through_a_planted_name(circusd, planted):
    logs = owned_dir(planted / "logs")
    # the temporary name an older circusd used for out.log.1.gz, planted in advance
    sh_as_nobody(f"ln -s {planted}/victim {logs}/out.log.1.gz.tmp", planted)
    d = circusd(f"""
        [circus]
        endpoint = ipc://{planted}/control.sock
        pubsub_endpoint = ipc://{planted}/events.sock

        [watcher:chatty]
        cmd = sh -c 'while true; do echo 0123456789abcdef; sleep 0.01; done'
        uid = nobody
        stdout_stream.filename = {logs}/out.log
        stdout_stream.max_bytes = 100
        stdout_stream.backup_count = 2
        stdout_stream.compress = gzip
    """)
    d.wait(lambda: (logs / "out.log.2.gz").exists(), what="two compressed rotations")
    assert (planted / "victim").read_bytes() == b"precious root-only content\n"
    new = [p for p in logs.iterdir() if p.name.startswith("out.log")]
    assert all(p.stat().st_uid == NOBODY.pw_uid for p in new if not p.is_symlink())
    assert d.stop() == 0
