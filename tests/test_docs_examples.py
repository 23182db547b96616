"""The docs and examples stay true: generated pages are current, every example config loads."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def test_generated_reference_pages_are_current():
    r = subprocess.run([sys.executable, str(ROOT / "docs" / "generate.py"), "--check"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


POOLS = ("pool.ini",)              # circusmeta pool files, not circusd configurations


@pytest.mark.parametrize("example", POOLS)
def test_example_pool_files_load(example):
    from circusmeta import load_pool
    pool = load_pool(str(ROOT / "examples" / example))
    assert pool.nodes and all(m.node in pool.nodes for c in pool.collections
                              for m in pool.expand(c))


@pytest.mark.parametrize("example", sorted(p.name for p in (ROOT / "examples").glob("*.ini")
                                           if p.name not in POOLS))
def test_example_configs_load(example):
    # the check imports hooks as circusd will: the examples run with PYTHONPATH=examples
    env = {**os.environ, "PYTHONPATH": str(ROOT / "examples")}
    r = subprocess.run([sys.executable, "-m", "circus.cli.circusd", "--check-config",
                        str(ROOT / "examples" / example)], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert "watchers (" in r.stdout


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.real
def test_the_zero_downtime_example_runs_and_restarts_without_dropping(circusd, tmp_path):
    import urllib.request

    port = _free_port()
    text = (ROOT / "examples" / "zero-downtime.ini").read_text()
    text = text.replace("tcp://127.0.0.1:5555", f"ipc://{tmp_path}/c.sock")
    text = text.replace("tcp://127.0.0.1:5556", f"ipc://{tmp_path}/p.sock")
    text = text.replace("port = 8000", f"port = {port}")
    text = text.replace("python3 examples/webapp.py", f"{sys.executable} {ROOT}/examples/webapp.py")
    d = circusd(text)
    d.wait(lambda: "web: active" in d.log_text(), timeout=30, what="web active")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
        assert r.read().startswith(b"hello from worker")
    ctl = [sys.executable, "-m", "circus.cli.circusctl", "--endpoint", f"ipc://{tmp_path}/c.sock",
           "--timeout", "60"]
    r = subprocess.run([*ctl, "restart", "web", "--graceful", "--batch", "2", "--waiting"], capture_output=True,
                       text=True, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "web: rolling restart 4/4" in d.log_text()
    d.stop()


@pytest.mark.real
def test_the_dependencies_example_starts_in_order(circusd, tmp_path):
    text = (ROOT / "examples" / "dependencies.ini").read_text()
    text = text.replace("tcp://127.0.0.1:5555", f"ipc://{tmp_path}/c.sock")
    text = text.replace("tcp://127.0.0.1:5556", f"ipc://{tmp_path}/p.sock")
    d = circusd(text)
    d.wait(lambda: "app: active" in d.log_text(), timeout=30, what="app active")
    log = d.log_text()
    assert log.index("db: process") < log.index("migrate: starting") < log.index("app: starting")
    d.stop()


@pytest.mark.real
def test_the_stats_example_publishes_and_serves_metrics(circusd, tmp_path):
    import json
    import urllib.request

    import zmq

    port, metrics_port = _free_port(), _free_port()
    text = (ROOT / "examples" / "stats.ini").read_text()
    for old, new in (("tcp://127.0.0.1:5555", f"ipc://{tmp_path}/c.sock"),
                     ("tcp://127.0.0.1:5556", f"ipc://{tmp_path}/p.sock"),
                     ("tcp://127.0.0.1:5557", f"ipc://{tmp_path}/s.sock"),
                     ("127.0.0.1:9101", f"127.0.0.1:{metrics_port}"),
                     ("port = 8000", f"port = {port}"),
                     ("python3 examples/webapp.py", f"{sys.executable} {ROOT}/examples/webapp.py"),
                     ("cmd = python3 ", f"cmd = {sys.executable} ")):
        assert old in text, old
        text = text.replace(old, new)
    d = circusd(text)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.linger = 0
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"ipc://{tmp_path}/s.sock")
    try:
        seen: dict[str, dict] = {}
        d.wait(lambda: "web: active" in d.log_text() and "cache: active" in d.log_text(),
               timeout=30, what="watchers active")

        def round_seen():
            while sub.poll(100):
                topic, body = sub.recv_multipart()
                seen[topic.decode()] = json.loads(body)
            return ("stats-demo/stat.cache" in seen and "stat.cache" in seen
                    and "stats-demo/stat.sockets" in seen)
        d.wait(round_seen, timeout=30, what="prefixed and legacy topics")
        assert seen["stats-demo/stat.cache"]["rss"] >= 50 << 20

        def scrape():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                            timeout=5) as r:
                    body = r.read().decode()
            except OSError:
                return None
            return body if 'watcher="web"' in body else None
        body = d.wait(scrape, timeout=30, what="/metrics")
        assert 'circus_watcher_processes{node="stats-demo",watcher="web"} 2.0' in body
    finally:
        sub.close()
        ctx.term()
        d.stop()


@pytest.mark.real
def test_the_upgrade_example_keeps_serving_across_quit_keep_and_sigkill(tmp_path):
    import urllib.request

    from conftest import Circusd, proc_alive

    port = _free_port()
    text = (ROOT / "examples" / "upgrade.ini").read_text()
    text = text.replace("tcp://127.0.0.1:5555", f"ipc://{tmp_path}/c.sock")
    text = text.replace("tcp://127.0.0.1:5556", f"ipc://{tmp_path}/p.sock")
    text = text.replace("port = 8000", f"port = {port}")
    text = text.replace("python3 examples/webapp.py", f"{sys.executable} {ROOT}/examples/webapp.py")
    ctl = [sys.executable, "-m", "circus.cli.circusctl", "--endpoint", f"ipc://{tmp_path}/c.sock",
           "--timeout", "30"]
    daemons: list[Circusd] = []
    workers: set[int] = set()

    def start() -> Circusd:
        d = Circusd(tmp_path)
        d.log = tmp_path / f"circusd-{len(daemons)}.log"
        daemons.append(d)
        d.start(text if not daemons[:-1] else None)
        d.wait(lambda: "web: active" in d.log_text(), timeout=30, what="web active")
        return d

    def pids() -> set[int]:
        out = subprocess.run([*ctl, "list", "web"], capture_output=True, text=True, timeout=30).stdout
        found = {int(p) for p in out.strip().split(",") if p}
        workers.update(found)
        return found

    def served() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            return r.read().decode()

    try:
        d = start()
        first = pids()
        assert len(first) == 2 and served().startswith("hello from worker")
        r = subprocess.run([*ctl, "quit", "--keep"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        assert d.proc.wait(15) == 0
        assert served().startswith("hello from worker")         # no circusd, still served
        d = start()
        assert pids() == first
        d.proc.kill()                                            # a crash of circusd
        d.proc.wait(10)
        assert served().startswith("hello from worker")
        d = start()
        assert pids() == first
        assert (tmp_path / "upgrade.state.json").exists()
        assert d.stop() == 0
        assert not any(proc_alive(p) for p in first)
    finally:
        for d in daemons:
            d.cleanup()
        for pid in workers:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
