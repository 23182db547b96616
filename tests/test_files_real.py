"""Tier 2: the modes of what circusd and its helpers create: ``--daemon``'s umask and the modes
of logs, the ipc:// socket files of circusd-stats and circusmeta proxy."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time

from conftest import proc_alive


def _mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _daemon(tmp_path, config: str, umask: int) -> int:
    conf = tmp_path / "d.ini"
    conf.write_text(config)
    r = subprocess.run([sys.executable, "-m", "circus.cli.circusd", "--daemon", "--pidfile",
                        str(tmp_path / "d.pid"), "--log-output", str(tmp_path / "d.log"), str(conf)],
                       capture_output=True, text=True, timeout=30, preexec_fn=lambda: os.umask(umask))
    assert r.returncode == 0, r.stderr
    return int((tmp_path / "d.pid").read_text())


def _stop(pid: int) -> None:
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while proc_alive(pid):
        assert time.monotonic() < deadline, "circusd did not stop"
        time.sleep(0.02)


def _umask_of(pid: int) -> str:
    with open(f"/proc/{pid}/status") as fh:
        return next(line.split()[1] for line in fh if line.startswith("Umask:"))


def test_daemon_sets_umask_027_and_creates_logs_0640(tmp_path):
    pid = _daemon(tmp_path, f"""[circus]
endpoint = ipc://{tmp_path}/c.sock
pubsub_endpoint = ipc://{tmp_path}/e.sock

[watcher:one]
cmd = sh -c 'echo hello; sleep 60'
stdout_stream.filename = {tmp_path}/one.out
""", umask=0)
    try:
        assert _umask_of(pid) == "0027"
        deadline = time.monotonic() + 10
        while not (tmp_path / "one.out").exists() or not (tmp_path / "one.out").read_bytes():
            assert time.monotonic() < deadline, "no output"
            time.sleep(0.02)
        assert _mode(tmp_path / "d.log") == 0o640
        assert _mode(tmp_path / "one.out") == 0o640
        assert _mode(tmp_path / "d.pid") == 0o644 & ~0o027
    finally:
        _stop(pid)


def test_daemon_keeps_the_umask_of_the_configuration(tmp_path):
    pid = _daemon(tmp_path, f"""[circus]
endpoint = ipc://{tmp_path}/c.sock
pubsub_endpoint = ipc://{tmp_path}/e.sock
umask = 002

[watcher:one]
cmd = sleep 60
""", umask=0o077)
    try:
        assert _umask_of(pid) == "0002"
    finally:
        _stop(pid)


def test_an_existing_log_file_others_may_write_is_made_go_w(tmp_path):
    log = tmp_path / "d.log"
    log.write_text("older lines\n")
    log.chmod(0o666)
    pid = _daemon(tmp_path, f"""[circus]
endpoint = ipc://{tmp_path}/c.sock
pubsub_endpoint = ipc://{tmp_path}/e.sock

[watcher:one]
cmd = sleep 60
""", umask=0o022)
    try:
        assert _mode(log) == 0o644
        assert "was writable by others (mode 666)" in log.read_text()
    finally:
        _stop(pid)


def test_the_stats_ipc_socket_is_0600_whatever_the_umask(circusd, tmp_path):
    old = os.umask(0)
    try:
        d = circusd(f"""
            [circus]
            endpoint = ipc://{tmp_path}/control.sock
            pubsub_endpoint = ipc://{tmp_path}/events.sock
            stats_endpoint = ipc://{tmp_path}/stats.sock
            statsd = true

            [watcher:one]
            cmd = sleep 60
        """)
    finally:
        os.umask(old)
    stats = tmp_path / "stats.sock"
    d.wait(stats.exists, 20, "circusd-stats' socket")
    assert stat.S_ISSOCK(os.lstat(stats).st_mode) and _mode(stats) == 0o600
    assert _mode(tmp_path / "control.sock") == _mode(tmp_path / "events.sock") == 0o600
    assert d.stop() == 0


def test_the_proxy_ipc_sockets_are_0600_whatever_the_umask(tmp_path):
    from circusmeta.live import Proxy
    proxy = Proxy([], {"stats": f"ipc://{tmp_path}/ps.sock", "events": f"ipc://{tmp_path}/pe.sock"},
                  log=lambda line: None)
    old = os.umask(0)
    try:
        proxy.open()
        assert _mode(tmp_path / "ps.sock") == _mode(tmp_path / "pe.sock") == 0o600
    finally:
        os.umask(old)
        proxy.close()
