"""Tier 2: 0.19's ``HttpObserver`` and ``RedisObserver`` run by ``circus-plugin`` against a real
circusd: a real HTTP server on a circusd socket, a real Redis server (Debian's ``redis-server``,
installed with apt-get when missing) on a free loopback port, started by the test or by circusd.
statsd lines go to a UDP socket of the test. Every wait has a deadline; what the test starts it
stops by pid."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from test_plugins_real import PY, metrics, node, running, udp, write_script  # noqa: F401
from webdriver import _apt

pytestmark = pytest.mark.real


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def counters(lines: list[str]) -> set[str]:
    return {line for line in lines if line.endswith("|c")}


# -- HttpObserver ---------------------------------------------------------------------------------

SERVER = """
import http.server, os, socket, sys, time
here = os.path.dirname(os.path.abspath(__file__))

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/slow":
            time.sleep(30)
        code = 500 if os.path.exists(os.path.join(here, "fail")) else 200
        body = b"x" * 100_000
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
server.socket.close()
server.socket = socket.socket(fileno=int(sys.argv[1]))
server.daemon_threads = True
server.serve_forever()
"""


def test_http_observer_times_the_page_and_restarts_the_watcher_on_errors(node, udp, tmp_path):
    script = write_script(tmp_path / "server.py", SERVER)
    port = free_port()
    d, c, plugin, wait = node(f"""
        [socket:web]
        host = 127.0.0.1
        port = {port}
        [watcher:web]
        cmd = {PY} {script} $(circus.sockets.web)
        use_sockets = true
        graceful_timeout = 1
    """)
    before = wait(lambda: running(c, "web"), what="web running")
    statsd = {"host": "127.0.0.1", "port": udp.getsockname()[1]}
    plugin("circus.plugins.http_observer.HttpObserver", check_url=f"http://127.0.0.1:{port}/",
           loop_rate="0.2", timeout="2", restart_on_error="web", **statsd)
    slow = plugin("circus.plugins.http_observer.HttpObserver", name="slow", application_name="slow",
                  check_url=f"http://127.0.0.1:{port}/slow", loop_rate="0.2", timeout="0.5",
                  **statsd)
    seen: list[str] = []

    def got(*names: str) -> bool:
        seen.extend(metrics(udp))
        return all(any(line.startswith(n) for line in seen) for n in names)
    wait(lambda: got("circus.http_observer.watcher.http_stats.request_time:"), what="a timing")
    timing = next(line for line in seen if "request_time" in line)
    assert timing.endswith("|ms") and int(timing.split(":")[1].split("|")[0]) < 2000
    assert not counters(seen) - {line for line in seen if line.startswith("circus.slow.")}

    # no answer within timeout: 599, as tornado (and so 0.19) counted it; no restart asked
    wait(lambda: got("circus.slow.watcher.http_stats.error.599:1|c"), what="a timed-out fetch")
    assert "circus.slow.watcher.http_stats.error:1|c" in seen
    assert not any(line.startswith("circus.slow.watcher.http_stats.restart") for line in seen)
    assert "no answer within 0.5 s" in slow.text() or "timed out" in slow.text()
    assert running(c, "web") == before

    (tmp_path / "fail").write_text("")                  # the page answers 500 from now on
    wait(lambda: (now := running(c, "web")) and now != before, timeout=15, what="web restarted")
    (tmp_path / "fail").unlink()
    assert got("circus.http_observer.watcher.http_stats.error:1|c",
               "circus.http_observer.watcher.http_stats.error.500:1|c")
    wait(lambda: got("circus.http_observer.watcher.http_stats.restart_on_error:1|c"),
         what="the restart counted")
    del seen[:]
    wait(lambda: got("circus.http_observer.watcher.http_stats.request_time:"), what="served again")


def test_http_observer_refuses_bad_options(tmp_path):
    for config, word in (("check_url:ftp://x/", "check_url"), ("timeout:0", "timeout"),
                         ("loop_rate:-1", "loop_rate")):
        r = subprocess.run([PY, "-m", "circus.cli.plugin", "--endpoint", f"ipc://{tmp_path}/c",
                            "--pubsub", f"ipc://{tmp_path}/p", "--config", config,
                            "circus.plugins.http_observer.HttpObserver"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and word in r.stderr, (config, r.stderr)


# -- RedisObserver -------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def redis_server() -> str:
    """The path of Debian's redis-server, installed with apt-get when missing."""
    found = shutil.which("redis-server")
    if found is None:
        code, out = _apt(["install", "-y", "--no-install-recommends", "redis-server"], 600)
        if code != 0:
            code, out = _apt(["update"], 600)
            assert code == 0, f"apt-get update failed:\n{out[-2000:]}"
            code, out = _apt(["install", "-y", "--no-install-recommends", "redis-server"], 600)
        assert code == 0, f"apt-get install redis-server failed:\n{out[-2000:]}"
        found = shutil.which("redis-server")
    assert found, "redis-server is not on PATH after its install"
    return found


def redis_argv(binary: str, port: int, workdir: Path, *extra: str) -> list[str]:
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
            "no", "--daemonize", "no", "--dir", str(workdir), *extra]


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                pytest.fail(f"redis-server exited ({proc.returncode})")
            if time.monotonic() > deadline:
                pytest.fail(f"nothing listens on {port} after {timeout} s")
            time.sleep(0.02)


def test_redis_observer_sends_019s_gauges_and_counts_errors(node, udp, tmp_path, redis_server):
    port = free_port()
    redis = subprocess.Popen(redis_argv(redis_server, port, tmp_path, "--requirepass", "s3cret"),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        wait_port(port, redis)
        d, c, plugin, wait = node("""
            [watcher:app]
            cmd = sleep 60
        """)
        statsd = {"host": "127.0.0.1", "port": udp.getsockname()[1], "loop_rate": "0.2"}
        plugin("circus.plugins.redis_observer.RedisObserver",
               redis_url=f"redis://:s3cret@127.0.0.1:{port}/3", timeout="1", **statsd)
        wrong = plugin("circus.plugins.redis_observer.RedisObserver", name="wrong",
                       application_name="wrong", redis_url=f"redis://:nope@127.0.0.1:{port}/0",
                       **statsd)
        seen: list[str] = []
        prefix = "circus.redis_observer.watcher.redis_stats."

        def gauges() -> dict[str, float]:
            seen.extend(metrics(udp))
            return {line.split(":")[0][len(prefix):]: float(line.split(":")[1].split("|")[0])
                    for line in seen if line.startswith(prefix) and line.endswith("|g")}
        g = wait(lambda: {"connected_clients", "used_memory", "uptime_in_seconds",
                          "total_commands_processed", "keyspace_hits"} <= set(g := gauges()) and g,
                 what="redis gauges")
        assert g["connected_clients"] >= 1 and g["used_memory"] > 100_000
        assert "client_biggest_input_buf" not in g          # renamed in Redis 5: skipped
        wait(lambda: gauges() and "circus.wrong.watcher.redis_stats.error:1|c" in seen,
             what="the wrong password counted")
        assert "WRONGPASS" in wrong.text() or "invalid" in wrong.text()
        assert not any(line.startswith("circus.wrong.watcher.redis_stats.used") for line in seen)

        redis.send_signal(signal.SIGTERM)                    # the server goes away
        assert redis.wait(10) == 0
        wait(lambda: gauges() is not None and f"{prefix}error:1|c" in seen, what="errors counted")
        assert not any("restart_on_error" in line for line in seen)   # none configured
        assert running(c, "app")
    finally:
        if redis.poll() is None:
            redis.kill()
            redis.wait(10)


def test_redis_observer_restarts_the_watcher_of_a_server_that_hangs(node, udp, tmp_path,
                                                                   redis_server):
    port = free_port()
    argv = " ".join(f"'{a}'" for a in redis_argv(redis_server, port, tmp_path))
    d, c, plugin, wait = node(f"""
        [watcher:redis]
        cmd = {argv}
        graceful_timeout = 1
    """)
    before = wait(lambda: running(c, "redis"), what="redis running")
    wait_port(port)
    p = plugin("circus.plugins.redis_observer.RedisObserver", application_name="cache",
               redis_url=f"redis://127.0.0.1:{port}", timeout="0.5", loop_rate="0.2",
               restart_on_timeout="redis", host="127.0.0.1", port=udp.getsockname()[1])
    seen: list[str] = []
    gauge = "circus.cache.watcher.redis_stats.uptime_in_seconds:"
    wait(lambda: seen.extend(metrics(udp)) or any(line.startswith(gauge) for line in seen),
         what="a first gauge")
    os.kill(before[0], signal.SIGSTOP)                  # alive, but answers nothing any more
    after = wait(lambda: (now := running(c, "redis")) and now != before and now, timeout=20,
                 what="redis restarted")
    assert after != before
    wait(lambda: seen.extend(metrics(udp)) or
         "circus.cache.watcher.redis_stats.restart_on_error:1|c" in seen, what="restart counted")
    assert "circus.cache.watcher.redis_stats.error:1|c" in seen
    assert "no answer from" in p.text()
    del seen[:]
    wait(lambda: seen.extend(metrics(udp)) or any(line.startswith(gauge) for line in seen),
         timeout=15, what="gauges from the new server")
