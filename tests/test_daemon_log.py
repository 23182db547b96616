"""``circusd --daemon`` never throws its log away (circus.cli.daemonlog): the default log file,
its fallback, the file as circusd's stdout and stderr (the output of watchers without a stream),
reopening, and what the command prints. Real daemons, stopped by pid; root (as CI) for the
/var/log/circus default and the read-only mounts of the fallback tests."""
from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from circus.cli import daemonlog
from conftest import proc_alive, proc_children

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")


# -- where (pure) -------------------------------------------------------------------------------

def test_the_default_log_file_and_its_fallback_by_user():
    assert daemonlog.candidates("/etc/circus/circus.ini", 0, {}) == [
        "/var/log/circus/circus.log", "/etc/circus/circus.log"]
    assert daemonlog.candidates("/home/ada/app/web.conf", 1000, {"HOME": "/home/ada"}) == [
        "/home/ada/app/web.log", "/home/ada/.local/state/circus/web.log"]
    assert daemonlog.candidates("/srv/x.ini", 1000, {"HOME": "/home/ada",
                                                     "XDG_STATE_HOME": "/st"}) == [
        "/srv/x.log", "/st/circus/x.log"]


def test_choose_takes_the_next_place_but_never_skips_a_planted_link(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("not a directory\n")
    ok = tmp_path / "ok.log"
    assert daemonlog.choose([str(blocker / "x.log"), str(ok)]) == str(ok)
    assert ok.exists() and stat.S_IMODE(ok.stat().st_mode) & 0o077 in (0, 0o040)
    with pytest.raises(daemonlog.NoLogFile) as info:
        daemonlog.choose([str(blocker / "x.log"), str(blocker / "y.log")])
    assert str(info.value) == (f"no default log file could be opened ({blocker}/x.log: Not a "
                               f"directory; {blocker}/y.log: Not a directory): give --log-output "
                               f"FILE or syslog://")


@root_only
def test_a_link_planted_where_the_default_log_goes_stops_circusd(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)                      # others may write here, and nobody did
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (shared / "x.log").symlink_to(victim)
    nobody = pwd.getpwnam("nobody")
    os.lchown(shared / "x.log", nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(daemonlog.NoLogFile, match="x.log: 'x.log' is a symbolic link in a "
                                                   "directory that other users can change"):
        daemonlog.choose([str(shared / "x.log"), str(tmp_path / "fine.log")])
    assert victim.read_text() == "precious\n" and not (tmp_path / "fine.log").exists()


# -- real daemons -------------------------------------------------------------------------------

TALKER = """[circus]
endpoint = ipc://{dir}/c.sock
pubsub_endpoint = ipc://{dir}/p.sock

[watcher:talker]
cmd = sh -c 'echo "talker says hello"; echo "talker complains" >&2; exec sleep 3620'
"""


def circusd(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "circus.cli.circusd", *args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def wait_for(predicate, what: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def stop(pid: int) -> None:
    """SIGTERM to the daemon; it and every child gone within the deadline."""
    kids = proc_children(pid)
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not proc_alive(pid) and not any(proc_alive(k) for k in kids),
             f"circusd {pid} and its children to stop")


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


@pytest.fixture
def conf(tmp_path):
    """A configuration whose name is unique (so is its default log file); the files it leaves
    in /var/log/circus are removed (and the directory, when the test created it)."""
    name = f"circus-test-{secrets.token_hex(4)}"
    path = tmp_path / f"{name}.ini"
    path.write_text(TALKER.format(dir=tmp_path))
    made_dir = not os.path.isdir(daemonlog.ROOT_LOG_DIR)
    yield path
    for leftover in Path(daemonlog.ROOT_LOG_DIR).glob(f"{name}.log*"):
        leftover.unlink()
    if made_dir and os.path.isdir(daemonlog.ROOT_LOG_DIR) and not os.listdir(daemonlog.ROOT_LOG_DIR):
        os.rmdir(daemonlog.ROOT_LOG_DIR)


@pytest.mark.real
@root_only
def test_a_root_daemon_logs_to_var_log_circus_with_its_watchers_output(conf, tmp_path):
    log = Path(daemonlog.ROOT_LOG_DIR) / f"{conf.stem}.log"
    pidfile = tmp_path / "d.pid"
    r = circusd("--daemon", "--pidfile", str(pidfile), str(conf))
    assert r.returncode == 0, r.stderr
    pid = int(pidfile.read_text())
    try:
        assert r.stdout == (f"circusd: running in the background (pid {pid}); log: {log} (with "
                            f"the output of watchers that have no stream)\n")
        assert stat.S_IMODE(log.stat().st_mode) == 0o640          # umask 027 of the daemon
        assert stat.S_IMODE(log.parent.stat().st_mode) & 0o007 == 0
        # its stdout and stderr are two pipes: either line may come first
        text = wait_for(lambda: "talker complains" in read(log) and "talker says hello\n" in
                        read(log) and read(log), "the output")
        assert "starting on node" in text
        assert f"log: {log} (with the output of watchers that have no stream)" in text
        assert "talker says hello\n" in text
        assert os.readlink(f"/proc/{pid}/fd/1") == os.readlink(f"/proc/{pid}/fd/2") == str(log)
        # logrotate: move it, SIGUSR1; the log and circusd's stdout/stderr are the new file
        log.rename(log.with_name(log.name + ".1"))
        os.kill(pid, signal.SIGUSR1)
        wait_for(lambda: "reopen" in read(log), "the reopened log")
        assert os.readlink(f"/proc/{pid}/fd/1") == os.readlink(f"/proc/{pid}/fd/2") == str(log)
    finally:
        stop(pid)
    assert "circusd stopped" in read(log)


@pytest.mark.real
@root_only
def test_a_log_file_given_is_also_the_daemons_stdout(conf, tmp_path):
    given = tmp_path / "given.log"
    pidfile = tmp_path / "d.pid"
    r = circusd("--daemon", "--pidfile", str(pidfile), "--log-output", str(given), str(conf))
    assert r.returncode == 0, r.stderr
    pid = int(pidfile.read_text())
    try:
        assert f"; log: {given} (with the output" in r.stdout
        wait_for(lambda: "talker says hello" in read(given) and "talker complains" in read(given),
                 "the watcher's output in the given log")
    finally:
        stop(pid)
    assert not list(Path(daemonlog.ROOT_LOG_DIR).glob(f"{conf.stem}.log*"))


@pytest.mark.real
@root_only
def test_with_syslog_the_watchers_output_goes_to_the_default_file(conf, tmp_path):
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.2)
    port = udp.getsockname()[1]
    log = Path(daemonlog.ROOT_LOG_DIR) / f"{conf.stem}.log"
    pidfile = tmp_path / "d.pid"
    received: list[bytes] = []

    def heard(text: str) -> bool:
        try:
            while True:
                received.append(udp.recv(65536))
        except socket.timeout:
            pass
        return any(text.encode() in m for m in received)
    try:
        r = circusd("--daemon", "--pidfile", str(pidfile), "--log-output",
                    f"syslog://127.0.0.1:{port}?daemon", str(conf))
        assert r.returncode == 0, r.stderr
        pid = int(pidfile.read_text())
        try:
            assert r.stdout.endswith(f"; log: syslog://127.0.0.1:{port}?daemon; the output of "
                                     f"watchers that have no stream: {log}\n"), r.stdout
            wait_for(lambda: heard("starting on node"), "circusd's log on syslog")
            wait_for(lambda: "talker says hello" in read(log), "the output in the default file")
            assert "starting on node" not in read(log)
        finally:
            stop(pid)
    finally:
        udp.close()


def _read_only(*paths: Path | str) -> tuple[str, ...]:
    """A prefix running the command in a mount namespace where ``paths`` are read-only."""
    binds = " && ".join(f"mount --bind {p} {p} && mount -o remount,bind,ro {p}" for p in paths)
    return ("unshare", "--mount", "--propagation", "private", "sh", "-c",
            f'{binds} && exec "$@"', "sh")


@pytest.mark.real
@root_only
@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare (util-linux) not installed")
def test_a_read_only_var_log_falls_back_beside_the_config_and_nowhere_is_an_error(conf, tmp_path):
    pidfile = tmp_path / "run" / "d.pid"
    pidfile.parent.mkdir()
    beside = conf.with_suffix(".log")
    r = circusd("--daemon", "--pidfile", str(pidfile), str(conf),
                prefix=_read_only("/var/log"))
    assert r.returncode == 0, r.stderr
    pid = int(pidfile.read_text())
    try:
        assert f"; log: {beside} (with the output" in r.stdout, r.stdout
        wait_for(lambda: "talker says hello" in read(beside), "the output beside the config")
    finally:
        stop(pid)
    beside.unlink()
    r = circusd("--daemon", "--pidfile", str(pidfile), str(conf),
                prefix=_read_only("/var/log", conf.parent))
    assert r.returncode == 1
    assert r.stderr == (f"circusd: no default log file could be opened (/var/log/circus/"
                        f"{conf.stem}.log: Read-only file system; {beside}: Read-only file "
                        f"system): give --log-output FILE or syslog://\n"), r.stderr
    assert not pidfile.exists() and not beside.exists()
