"""Tier 2: graceful rolling restarts over a shared socket drop nothing; dependencies; on_demand;
systemd-style fds; liveness."""
from __future__ import annotations

import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import Raw  # noqa: F401  (type of the clients)

pytestmark = pytest.mark.real
WORKERS = Path(__file__).parent / "workers"



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def node(control_node):
    return control_node


class Load:
    """A bounded request loop on loopback (at most ``limit`` requests, ``seconds`` long)."""

    def __init__(self, port: int, seconds: float = 30.0, limit: int = 20000) -> None:
        self.port, self.seconds, self.limit = port, seconds, limit
        self.ok = 0
        self.failures: list[str] = []
        self.latencies: list[float] = []
        self.pids: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        end = time.monotonic() + self.seconds
        while not self._stop.is_set() and time.monotonic() < end and self.ok + len(self.failures) < self.limit:
            t0 = time.monotonic()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=10) as r:
                    self.pids.add(r.read().decode().strip())
                self.ok += 1
            except OSError as exc:
                self.failures.append(repr(exc))
            self.latencies.append(time.monotonic() - t0)
            time.sleep(0.005)

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


def web_config(port: int, n: int, ready: str = "log:^serving$") -> str:
    return f"""
        [socket:web]
        host = 127.0.0.1
        port = {port}

        [watcher:web]
        cmd = {sys.executable} {WORKERS}/readyworker.py --mode http --delay 0.3 --fd $(circus.sockets.web)
        use_sockets = true
        numprocesses = {n}
        graceful_timeout = 5
        ready = {ready.format(port=port)}
    """


@pytest.mark.parametrize("command", [
    {"command": "restart", "graceful": True, "batch": 1},
    {"command": "restart", "graceful": True, "batch": "50%"},
    {"command": "reload"},
])
def test_no_request_fails_during_a_graceful_restart(node, command):
    port = free_port()
    d, c = node(web_config(port, 2))
    d.wait(lambda: c.call("status", name="web")["status"] == "active", what="web active", timeout=20)
    old = set(map(str, c.call("list", name="web")["pids"]))
    cmd = dict(command)
    with Load(port) as load:
        time.sleep(0.5)
        r = c.call(cmd.pop("command"), name="web", waiting=True, wait=60, **cmd)
        assert r["status"] == "ok", r
        time.sleep(0.5)
    new = set(map(str, c.call("list", name="web")["pids"]))
    assert load.failures == [], load.failures[:5]
    assert load.ok > 50
    assert old & load.pids and new & load.pids and not old & new     # served by both generations
    print(f"\n{command}: {load.ok} requests, max latency {max(load.latencies) * 1000:.0f} ms")
    assert max(load.latencies) < 5.0
    d.stop()


def test_a_replacement_that_never_gets_ready_leaves_the_old_ones_serving(node, tmp_path):
    port = free_port()
    d, c = node(web_config(port, 2))
    d.wait(lambda: c.call("status", name="web")["status"] == "active", what="web active", timeout=20)
    old = sorted(c.call("list", name="web")["pids"])
    broken = f"{sys.executable} {WORKERS}/readyworker.py --mode never --delay 0"
    r = c.call("set", name="web", options={"cmd": broken, "ready_timeout": 1}, wait=60)
    assert r["status"] == "ok"                  # set's reload runs in the background
    with Load(port, seconds=4) as load:
        d.wait(lambda: "rolling restart stopped" in d.log_text() or "not ready after" in d.log_text(),
               timeout=20, what="the failed replacement")
        time.sleep(1)
    assert load.failures == []
    assert sorted(c.call("list", name="web")["pids"]) == old
    d.stop()


def test_dependencies_start_in_order_and_stop_in_reverse(node, tmp_path):
    marks = tmp_path / "marks"
    d, c = node(f"""
        [watcher:app]
        cmd = sh -c 'echo app >> {marks}; exec sleep 3640'
        depends_on = db, migrate:completed
        priority = 100

        [watcher:migrate]
        cmd = sh -c 'sleep 0.3; echo migrate >> {marks}'
        restart_policy = never
        depends_on = db

        [watcher:db]
        cmd = {sys.executable} {WORKERS}/readyworker.py --mode log --delay 0.4
        ready = log:listening now
    """)
    d.wait(lambda: marks.exists() and "app" in marks.read_text(), what="app started", timeout=20)
    assert marks.read_text().split() == ["migrate", "app"]
    log = d.log_text()
    assert log.index("db: active") < log.index("migrate: starting") < log.index("app: starting")
    assert c.call("status", name="migrate")["status"] == "stopped"
    d.stop()
    log = d.log_text()
    assert log.rindex("app: stopped") < log.rindex("db: stopping")


def test_a_failed_dependency_keeps_its_dependents_stopped(node):
    d, c = node("""
        [watcher:db]
        cmd = sh -c 'echo starting; exit 1'
        ready = log:accepting connections
        max_retry = 1
        backoff_initial = 0.05
        [watcher:app]
        cmd = sleep 3641
        depends_on = db
    """)
    d.wait_log("app: not started: db is not ready", timeout=20)
    assert c.call("status", name="app")["status"] == "stopped"
    assert not d.children("sleep 3641")
    d.stop()


def test_on_demand_starts_at_the_first_connection_whatever_its_priority(node):
    port = free_port()
    d, c = node(f"""
        [socket:lazy]
        host = 127.0.0.1
        port = {port}

        [watcher:first]
        cmd = sleep 3642
        priority = 100

        [watcher:lazy]
        cmd = {sys.executable} {WORKERS}/httpworker.py --fd $(circus.sockets.lazy)
        use_sockets = true
        on_demand = true
        priority = 1
    """)
    d.wait(lambda: d.children("sleep 3642"), what="first")
    time.sleep(0.3)
    assert c.call("status", name="lazy")["status"] == "stopped"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
        served_by = r.read().decode().strip()
    assert c.call("list", name="lazy")["pids"] == [int(served_by)]
    d.stop()


def test_listen_fds_gives_systemd_style_sockets(node, tmp_path):
    out = tmp_path / "env"
    probe = ("import os, socket; s = socket.socket(fileno=3); "
             f"open('{out}', 'w').write(' '.join([os.environ['LISTEN_FDS'], os.environ['LISTEN_PID'], "
             "str(os.getpid()), os.environ['LISTEN_FDNAMES'], str(s.getsockname()[1])])); "
             "import time; time.sleep(3600)")
    port = free_port()
    d, c = node(f"""
        [socket:api]
        host = 127.0.0.1
        port = {port}

        [watcher:sd]
        cmd = {sys.executable} -c "{probe}"
        use_sockets = true
        listen_fds = true
    """)
    d.wait(lambda: out.exists() and out.read_text(), what="systemd-style program")
    fds, listen_pid, pid, names, bound = out.read_text().split()
    assert (fds, names, int(bound)) == ("1", "api", port)
    assert listen_pid == pid
    d.stop()


def test_a_process_failing_its_health_check_is_restarted(node, tmp_path):
    port = free_port()
    flag = tmp_path / "healthy"
    flag.touch()
    d, c = node(f"""
        [watcher:svc]
        cmd = sleep 3643
        health = exec:test -e {flag}
        health_interval = 0.2
        health_failures = 2
        ready = exec:true
    """)
    d.wait(lambda: d.children("sleep 3643"), what="svc")
    first = d.children("sleep 3643")[0]
    time.sleep(0.6)
    assert d.children("sleep 3643") == [first]
    flag.unlink()
    d.wait(lambda: d.children("sleep 3643") and d.children("sleep 3643") != [first], timeout=15,
           what="restart after failed health checks")
    assert "unhealthy: exit code 1" in d.log_text()
    d.stop()
