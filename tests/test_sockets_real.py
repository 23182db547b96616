"""Tier 2: sockets bound by circusd and served by its children."""
from __future__ import annotations

import os
import socket
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest
import zmq

from conftest import Raw

pytestmark = pytest.mark.real
WORKER = Path(__file__).parent / "workers" / "httpworker.py"


def get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
        return resp.read().decode().strip()


@pytest.fixture
def ctl(tmp_path):
    ctx = zmq.Context()
    clients = []

    def make() -> Raw:
        c = Raw(ctx, f"ipc://{tmp_path}/control.sock")
        clients.append(c)
        return c
    yield make
    for c in clients:
        c.close()
    ctx.term()


HEAD = """
[circus]
endpoint = ipc://{dir}/control.sock
pubsub_endpoint = ipc://{dir}/events.sock
"""


def test_port_zero_is_reported_and_workers_serve_the_shared_socket(circusd, tmp_path, ctl):
    d = circusd(HEAD.format(dir=tmp_path) + textwrap.dedent(f"""
        [socket:web]
        host = 127.0.0.1
        port = 0

        [watcher:web]
        cmd = {sys.executable} {WORKER} --fd $(circus.sockets.web)
        use_sockets = true
        numprocesses = 2
    """))
    c = ctl()
    d.wait(lambda: (tmp_path / "control.sock").exists(), what="control socket")
    sockets = c.call("listsockets")["sockets"]
    assert len(sockets) == 1 and sockets[0]["name"] == "web" and sockets[0]["host"] == "127.0.0.1"
    port = sockets[0]["port"]
    assert port > 0 and sockets[0]["backlog"] == 2048
    pids = {str(p) for p in c.call("list", name="web")["pids"]}
    served = d.wait(lambda: _try_get(port), what="a worker answering")
    assert served in pids
    assert c.call("restart", name="web", waiting=True, wait=30)["status"] == "ok"
    assert _try_get(port) not in pids               # new workers, same socket, same port
    d.stop()


def _try_get(port: int) -> str | None:
    try:
        return get(port)
    except OSError:
        return None


def test_a_socket_that_cannot_bind_fails_only_its_watchers(circusd, tmp_path, ctl):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        d = circusd(HEAD.format(dir=tmp_path) + textwrap.dedent(f"""
            [socket:busy]
            host = 127.0.0.1
            port = {port}

            [watcher:needs]
            cmd = sleep 3620 $(circus.sockets.busy)
            max_retry = 0

            [watcher:fine]
            cmd = sleep 3621
        """))
        d.wait(lambda: d.children("sleep 3621"), what="the other watcher")
        d.wait_log("needs: fatal")
        assert "cannot bind socket 'busy'" in d.log_text() and "Address already in use" in d.log_text()
        c = ctl()
        info = c.call("listsockets")["sockets"][0]
        assert "Address already in use" in info["error"] and "fd" not in info
        st = c.call("status", name="needs")
        assert st["status"] == "fatal" and "cannot bind socket 'busy'" in st["reason"]
        d.stop()
    finally:
        taken.close()


def test_unix_socket_replace_and_only_listed_sockets_are_passed(circusd, tmp_path, ctl):
    path = tmp_path / "app.sock"
    path.touch()
    fds_file = tmp_path / "fds"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp_path / "stale.sock"))
    stale.close()
    d = circusd(HEAD.format(dir=tmp_path) + textwrap.dedent(f"""
        [socket:app]
        path = {tmp_path}/stale.sock
        replace = true

        [socket:other]
        host = 127.0.0.1
        port = 0

        [watcher:w]
        cmd = sh -c 'ls /proc/$$/fd > {fds_file}; exec sleep 3630'
        use_sockets = true
        sockets = app
    """))
    c = ctl()
    d.wait(lambda: fds_file.exists() and d.children("sleep 3630"), what="worker")
    infos = {i["name"]: i for i in c.call("listsockets")["sockets"]}
    assert infos["app"]["path"] == str(tmp_path / "stale.sock")
    fds = {int(x) for x in fds_file.read_text().split()}
    assert infos["app"]["fd"] in fds and infos["other"]["fd"] not in fds
    assert os.path.exists(tmp_path / "stale.sock")
    d.stop()
    assert not os.path.exists(tmp_path / "stale.sock")          # removed at exit


@pytest.mark.skipif(os.geteuid() != 0, reason="SO_BINDTODEVICE needs root (CI runs as root)")
def test_interface_binds_to_a_device(circusd, tmp_path, ctl):
    d = circusd(HEAD.format(dir=tmp_path) + textwrap.dedent(f"""
        [socket:lo]
        host = 127.0.0.1
        port = 0
        interface = lo

        [watcher:web]
        cmd = {sys.executable} {WORKER} --fd $(circus.sockets.lo)
        use_sockets = true
    """))
    c = ctl()
    d.wait(lambda: (tmp_path / "control.sock").exists(), what="control socket")
    info = c.call("listsockets")["sockets"][0]
    assert "error" not in info
    assert d.wait(lambda: _try_get(info["port"]), what="served through the lo-bound socket")
    d.stop()


def test_circusd_uses_a_socket_passed_by_systemd_activation(tmp_path):
    """LISTEN_FDS/LISTEN_PID: a [socket] whose address matches an inherited fd uses it."""
    import subprocess
    import time
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    conf = tmp_path / "sd.ini"
    conf.write_text(HEAD.format(dir=tmp_path) + textwrap.dedent(f"""
        [socket:web]
        host = 127.0.0.1
        port = {port}

        [watcher:web]
        cmd = {sys.executable} {WORKER} --fd $(circus.sockets.web)
        use_sockets = true
    """))
    log = tmp_path / "sd.log"
    # like systemd: the socket at fd 3, LISTEN_PID = the pid that execs circusd
    launcher = ("import os, sys; os.dup2(int(sys.argv[1]), 3); "
                "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid())); "
                "os.execv(sys.executable, [sys.executable, '-m', 'circus.cli.circusd', *sys.argv[2:]])")
    proc = subprocess.Popen([sys.executable, "-c", launcher, str(listener.fileno()), "--log-output",
                             str(log), str(conf)], pass_fds=[listener.fileno()])
    try:
        deadline = time.monotonic() + 15
        served = None
        while served is None and time.monotonic() < deadline and proc.poll() is None:
            served = _try_get(port)
            time.sleep(0.05)
        assert served is not None, log.read_text() if log.exists() else "no log"
        assert "cannot bind" not in log.read_text()
    finally:
        proc.terminate()
        proc.wait(15)
        listener.close()


def test_reloadconfig_moves_watchers_to_a_changed_socket(circusd, tmp_path, ctl):
    p1, p2 = _free_port(), _free_port()
    body = """
        [socket:web]
        host = 127.0.0.1
        port = {port}

        [watcher:web]
        cmd = {python} {worker} --fd $(circus.sockets.web)
        use_sockets = true
    """
    d = circusd(HEAD.format(dir=tmp_path) + textwrap.dedent(body.format(port=p1, python=sys.executable, worker=WORKER)))
    c = ctl()
    d.wait(lambda: _try_get(p1), what="serving on the first port")
    d.write(HEAD.format(dir=tmp_path) + textwrap.dedent(body.format(port=p2, python=sys.executable, worker=WORKER)))
    r = c.call("reloadconfig", waiting=True, wait=30)
    assert r["status"] == "ok", r
    assert d.wait(lambda: _try_get(p2), what="serving on the new port")
    assert _try_get(p1) is None                      # the old socket is closed, nobody left on it
    assert c.call("listsockets")["sockets"][0]["port"] == p2
    d.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
