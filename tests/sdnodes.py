"""Helpers for the service-discovery tests: real circusd nodes on loopback TCP with a
``/metrics`` endpoint, Debian's tools (installed with apt-get when missing), a dnsmasq serving
SRV records, and waits with deadlines."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from conftest import Circusd

BIN = Path(sys.executable).parent
META = str(BIN / "circusmeta") if (BIN / "circusmeta").exists() else None


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_both() -> int:
    """A port of 127.0.0.1 free for UDP and TCP at once (a DNS server serves both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    raise AssertionError("no port free for both UDP and TCP")


def ensure_tool(name: str, package: str) -> str:
    """The path of ``name``, installed from Debian when missing (CI must not skip)."""
    found = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}")
                                   else None)
    if found:
        return found
    if not shutil.which("apt-get"):
        pytest.fail(f"{name} is not installed and there is no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    out = ""
    for argv in (["apt-get", "install", "-y", "-q", "--no-install-recommends", package],
                 ["apt-get", "update", "-q"],
                 ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env)
        out = proc.stdout[-1500:] + proc.stderr[-1500:]
        found = shutil.which(name) or (f"/usr/sbin/{name}"
                                       if os.path.exists(f"/usr/sbin/{name}") else None)
        if found:
            return found
    pytest.fail(f"{name} missing and apt-get could not install {package}:\n{out}")


def wait_for(predicate: Callable[[], object], timeout: float, what: str,
             alive: Callable[[], str | None] = lambda: None, step: float = 0.05):
    """Poll until ``predicate()`` is truthy; fail at the deadline, or as soon as ``alive()``
    says what died."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        dead = alive()
        if dead:
            pytest.fail(f"{dead} while waiting for {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, exc.read().decode(), dict(exc.headers)
        finally:
            exc.close()


def try_get(url: str) -> str | None:
    try:
        status, body, _ = http_get(url, 1.0)
    except OSError:
        return None
    return body if status == 200 else None


@dataclass
class Node:
    name: str
    daemon: Circusd
    control: int
    pubsub: int
    stats: int
    metrics: int

    @property
    def endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.control}"

    @property
    def metrics_address(self) -> str:
        return f"127.0.0.1:{self.metrics}"


NODE_CONFIG = """
[circus]
endpoint = tcp://127.0.0.1:{control}
pubsub_endpoint = tcp://127.0.0.1:{pubsub}
stats_endpoint = tcp://127.0.0.1:{stats}
prometheus_endpoint = 127.0.0.1:{metrics}
stats_interval = 0.5
{extra}
[watcher:sl]
cmd = sleep 300
numprocesses = 2
[watcher:crash]
cmd = sh -c "sleep 0.3; exit 3"
[socket:web]
host = 127.0.0.1
port = {web}
"""


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports of 127.0.0.1 (each held until all are picked)."""
    held = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            held.append(s)
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def _start_node(root: Path, name: str, extra: str) -> Node:
    """One node; started again on other ports when one of its ports was taken meanwhile (by
    another test's process, between our pick and circusd's bind)."""
    directory = root / name
    directory.mkdir(parents=True, exist_ok=True)
    for _ in range(5):
        ports = dict(zip(("control", "pubsub", "stats", "metrics", "web"), free_ports(5)))
        d = Circusd(directory)
        d.start(textwrap.dedent(NODE_CONFIG).format(**ports, extra=extra), "--name", name)
        node = Node(name, d, ports["control"], ports["pubsub"], ports["stats"], ports["metrics"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if d.proc.poll() is not None:
                break
            if f'circus_stats_up{{node="{name}"}} 1.0' in \
                    (try_get(f"http://{node.metrics_address}/metrics") or ""):
                return node
            time.sleep(0.05)
        log = d.log_text()
        d.cleanup()
        if "Address already in use" not in log:
            pytest.fail(f"{name} did not serve /metrics within 30 s:\n{log[-3000:]}")
        d.log.unlink(missing_ok=True)
    pytest.fail(f"{name}: its ports were taken 5 times in a row")


def start_nodes(root: Path, names: list[str], extra: Callable[[str], str] = lambda n: "",
                ) -> list[Node]:
    """Real circusd nodes on loopback TCP ports, each serving /metrics; returned once every
    /metrics says ``circus_stats_up ... 1``. On a failure the nodes started are stopped."""
    nodes: list[Node] = []
    try:
        for name in names:
            nodes.append(_start_node(root, name, extra(name)))
    except BaseException:
        stop_nodes(nodes)
        raise
    return nodes


def stop_nodes(nodes: list[Node]) -> None:
    for node in nodes:
        node.daemon.stop()
        node.daemon.cleanup()


class Daemon:
    """A foreground process the test started (dnsmasq, prometheus): output to a file, stopped
    by its pid."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log
        self.out = open(log, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=subprocess.STDOUT)

    def dead(self) -> str | None:
        if self.proc.poll() is None:
            return None
        return f"{Path(self.proc.args[0]).name} exited ({self.proc.returncode}):\n" \
               f"{self.log.read_text(errors='replace')[-3000:]}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.out.close()


def dnsmasq(binary: str, port: int, records: list[str], log: Path) -> Daemon:
    """dnsmasq on 127.0.0.1:PORT (UDP and TCP) answering ``records`` (its --srv-host=...,
    --host-record=..., --txt-record=... options) for example.test only."""
    argv = [binary, "--no-daemon", "--conf-file=/dev/null", f"--port={port}",
            "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
            "--pid-file=", "--local=/example.test/", "--log-facility=-", "--log-queries",
            *records]
    return Daemon(argv, log)


def run_meta(pool: str, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    """The installed ``circusmeta`` (as an operator runs it)."""
    argv = [META] if META else [sys.executable, "-m", "circusmeta.cli"]
    r = subprocess.run([*argv, "--pool", pool, *args], capture_output=True, text=True,
                       timeout=timeout)
    return r.returncode, r.stdout, r.stderr
