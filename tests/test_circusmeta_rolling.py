"""Tier 3 on loopback: rolling operations across three real circusd nodes (ipc:// control and
pubsub endpoints in a temporary directory, HTTP workers on a shared socket bound to port 0).

The nodes are shared by the module; every test reads the pids it compares before it acts. Each
node's web watcher is ready when its worker prints ``serving``; a node whose ``ready`` flag file
is missing starts workers that never get ready (its rolling step fails, the old ones serve on).
``graceful_timeout = 1``: an idle httpworker can sit in a blocking ``accept()`` after another
worker took the connection that woke them both, and only SIGKILL ends it.
"""
from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import zmq

from circusmeta import ACTIVE, NOT_AVAILABLE, NodeResult, Pool
from circusmeta import run_rolling as rolling
from circusmeta.rolling import Progress, RollingReport, Step, plan_steps
from conftest import Circusd, Raw

pytestmark = pytest.mark.real

PY = sys.executable
WORKERS = Path(__file__).parent / "workers"
NAMES = ("n1", "n2", "n3")

READY = f"{PY} {WORKERS}/readyworker.py --mode http --delay 0.2 --fd $(circus.sockets.web)"
NEVER = f"{PY} {WORKERS}/readyworker.py --mode never --delay 0"
NODE = """
[circus]
endpoint = ipc://{d}/control.sock
pubsub_endpoint = ipc://{d}/events.sock
stats_endpoint = ipc://{d}/stats.sock
statsd = false

[socket:web]
host = 127.0.0.1
port = 0

[watcher:web]
cmd = sh -c 'test -e {d}/ready && exec {ready}; exec {never}'
use_sockets = true
numprocesses = 2
graceful_timeout = 1
ready = log:^serving$
ready_timeout = 1.5
"""

WORKER = """
[watcher:worker]
cmd = sleep 3701
graceful_timeout = 1
"""

POOL = """
[meta]
timeout = 2

{nodes}

[collection:backend]
members = n3:worker, n2:web

[collection:all]
members = n1:web, backend, n3:web

[collection:wave]
members = n1:web, n2:web, n3:web
mode = parallel

[collection:broken]
members = n1:nosuch, n2:web
"""


class Node:
    def __init__(self, name: str, daemon: Circusd, ctx: zmq.Context) -> None:
        self.name, self.daemon, self.dir = name, daemon, daemon.dir
        self.client = Raw(ctx, f"ipc://{self.dir}/control.sock")
        self.port = 0

    def call(self, command: str, **props) -> dict:
        assert self.daemon.proc.poll() is None, f"{self.name}'s circusd died\n" \
                                               f"{self.daemon.log_text()[-3000:]}"
        return self.client.call(command, wait=10, **props)

    def pids(self, watcher: str = "web") -> list[int]:
        return sorted(self.call("list", name=watcher)["pids"])

    def status(self, watcher: str = "web") -> str:
        return self.call("status", name=watcher)["status"]

    def get(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=5) as r:
            return r.read().decode().strip()


class Cluster:
    def __init__(self, root: Path, nodes: dict[str, Node]) -> None:
        self.root, self.nodes = root, nodes
        self.pool = root / "pool.ini"

    def write_pool(self, order: tuple[str, ...] = NAMES, extra: str = "") -> Path:
        text = "\n".join(f"[node:{n}]\nendpoint = ipc://{self.root / n}/control.sock\n"
                         if n in self.nodes else extra for n in order)
        self.pool.write_text(POOL.format(nodes=text))
        return self.pool

    def meta(self, *args: str, timeout: float = 60) -> tuple[int, str, str]:
        r = subprocess.run([PY, "-m", "circusmeta.cli", "--pool", str(self.pool), *args],
                           capture_output=True, text=True, timeout=timeout)
        return r.returncode, r.stdout, r.stderr

    def pids(self) -> dict[str, list[int]]:
        return {n: node.pids() for n, node in self.nodes.items()}

    def wait_active(self, timeout: float = 20.0) -> None:
        for node in self.nodes.values():
            node.daemon.wait(lambda node=node: node.status() == "active" and
                             len(node.pids()) == 2, timeout, f"{node.name}: web active")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("rolling")
    ctx = zmq.Context()
    daemons: list[Circusd] = []
    nodes: dict[str, Node] = {}
    try:
        for name in NAMES:
            d = Circusd(root / name)
            d.dir.mkdir()
            (d.dir / "ready").touch()
            d.start(textwrap.dedent(NODE.format(d=d.dir, ready=READY, never=NEVER))
                    + (WORKER if name == "n3" else ""), "--name", name)
            daemons.append(d)
        for d, name in zip(daemons, NAMES):
            d.wait(lambda d=d: (d.dir / "control.sock").exists(), what=f"{name}'s control socket")
            nodes[name] = Node(name, d, ctx)
        c = Cluster(root, nodes)
        c.wait_active()
        for node in nodes.values():
            node.port = node.call("listsockets")["sockets"][0]["port"]
            assert node.port > 0
        c.write_pool()
        yield c
    finally:
        for node in nodes.values():
            node.client.close()
        for d in daemons:                       # all at once, then each one waited for
            if d.proc is not None and d.proc.poll() is None:
                d.proc.terminate()
        for d in daemons:
            d.stop()
            d.cleanup()
        ctx.term()


@pytest.fixture
def cluster_ok(cluster):
    """Every node serving with two ready workers, the pool file in its usual order."""
    for node in cluster.nodes.values():
        (node.dir / "ready").touch()
    cluster.write_pool()
    cluster.wait_active()
    return cluster


class Events:
    """Every node's ``watcher.*`` events (spawn, reap, ...) with circusd's own timestamps."""

    def __init__(self, cluster: Cluster) -> None:
        self.ctx = zmq.Context()
        self.socks = {}
        for name, node in cluster.nodes.items():
            s = self.ctx.socket(zmq.SUB)
            s.linger = 0
            s.setsockopt(zmq.SUBSCRIBE, b"watcher.")
            s.connect(f"ipc://{node.dir}/events.sock")
            self.socks[s] = name
        self.got: list[tuple[str, str, dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        poller = zmq.Poller()
        for s in self.socks:
            poller.register(s, zmq.POLLIN)
        while not self._stop.is_set():
            for s, _ in poller.poll(50):
                topic, body = s.recv_multipart()
                self.got.append((self.socks[s], topic.decode(), json.loads(body)))

    def __enter__(self) -> "Events":
        self._thread.start()
        time.sleep(0.3)                 # let the subscriptions reach the publishers
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.2)
        self._stop.set()
        self._thread.join(5)
        for s in self.socks:
            s.close()
        self.ctx.term()

    def times(self, node: str, event: str, pids: list[int], watcher: str = "web") -> list[float]:
        found = [p["time"] for n, t, p in self.got if n == node and
                 t == f"watcher.{watcher}.{event}" and p.get("process_pid") in pids]
        assert len(found) == len(pids), f"{node}: {event} events of {pids}: {found} ({self.got})"
        return found


class Load:
    """A request loop against one node's shared socket, bounded in count and time."""

    def __init__(self, node: Node, seconds: float = 30.0, limit: int = 20000) -> None:
        self.node, self.seconds, self.limit = node, seconds, limit
        self.ok, self.failures, self.pids = 0, [], set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        end = time.monotonic() + self.seconds
        while not self._stop.is_set() and time.monotonic() < end and \
                self.ok + len(self.failures) < self.limit:
            try:
                self.pids.add(int(self.node.get()))
                self.ok += 1
            except OSError as exc:
                self.failures.append(repr(exc))
            time.sleep(0.005)

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)
        assert not self._thread.is_alive()


def run_rolling(cluster: Cluster, *args, **kwargs):
    """The library call, in-process, with its own Pool; returns (report, progress events)."""
    seen: list[Progress] = []

    async def go():
        async with Pool.from_file(str(cluster.pool)) as pool:
            return await asyncio.wait_for(rolling(pool, *args, on_progress=seen.append,
                                                  **kwargs), 60)
    return asyncio.run(go()), seen


def interrupt(cluster: Cluster, *args: str, when: str, timeout: float = 20.0):
    """The CLI, sent SIGINT once a line of its output starts with ``when``."""
    proc = subprocess.Popen([PY, "-m", "circusmeta.cli", "--pool", str(cluster.pool), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline, out = time.monotonic() + timeout, b""
        while not any(line.startswith(when) for line in out.decode().splitlines()):
            assert time.monotonic() < deadline, f"no {when!r} line within {timeout} s: {out}"
            assert proc.poll() is None, (out, proc.stderr.read())
            if select.select([proc.stdout], [], [], 0.1)[0]:
                out += os.read(proc.stdout.fileno(), 65536)      # unbuffered: no line is hidden
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=timeout)
        return proc.returncode, (out + rest).decode(), err.decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def step_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("[")]


# -- the tests ---------------------------------------------------------------------------------

def test_rolling_restart_goes_node_after_node_and_no_request_fails(cluster_ok, tmp_path):
    c = cluster_ok
    before = c.pids()
    loads = [Load(node) for node in c.nodes.values()]
    with Events(c) as events:
        for load in loads:
            load.__enter__()
        try:
            time.sleep(0.3)
            code, out, err = c.meta("--log-dir", str(tmp_path / "audit"), "restart", "--rolling",
                                    "web", "--all")
            time.sleep(0.3)
        finally:
            for load in loads:
                load.__exit__()
    assert code == 0, out + err
    lines = step_lines(out)
    assert [line.split(" ... ")[0] for line in lines] == [
        "[1/3] n1:web restart", "[2/3] n2:web restart", "[3/3] n3:web restart"]
    assert all(" ... ok (" in line and line.endswith(" s)") for line in lines), out
    assert out.splitlines()[-1] == "done: n1:web, n2:web, n3:web"
    after = c.pids()
    for name in NAMES:
        assert not set(before[name]) & set(after[name]), (name, before, after)
    # zero downtime: every request on every node answered, by both generations of workers
    for load, name in zip(loads, NAMES):
        assert load.failures == [], (name, load.failures[:5])
        assert load.ok > 20, (name, load.ok)
        assert set(before[name]) & load.pids and set(after[name]) & load.pids, name
    # one node at a time, replacements first: node k's old workers were gone before node k+1
    # spawned anything, and each node spawned its new workers before reaping the old ones
    windows = []
    for name in NAMES:
        spawned = events.times(name, "spawn", after[name])
        reaped = events.times(name, "reap", before[name])
        assert min(spawned) < max(reaped), name                    # graceful
        windows.append((min(spawned), max(reaped)))
    for (_, end), (start, _) in zip(windows, windows[1:]):
        assert end <= start, windows
    # the audit file: the run, one line per node:watcher, the outcome
    audit = list((tmp_path / "audit").glob("*-restart-rolling-web-all.log"))
    assert len(audit) == 1, list((tmp_path / "audit").iterdir())
    lines = [json.loads(line) for line in audit[0].read_text().splitlines()]
    assert lines[0]["run"]["rolling"] is True and lines[0]["run"]["done"] == [
        "n1:web", "n2:web", "n3:web"]
    assert [line["item"] for line in lines[1:-1]] == ["n1:web", "n2:web", "n3:web"]
    assert all(line["ok"] for line in lines[1:-1]) and lines[-1]["exit"] == 0


def test_batch_two_restarts_two_nodes_at_once_with_state_lines(cluster_ok):
    c = cluster_ok
    before = c.pids()
    with Events(c) as events:
        report, seen = run_rolling(c, "restart", "web", batch=2, state_every=0.2)
    assert report.exit_code == 0 and report.not_done == [] and report.failed == {}
    assert [s.items for s in report.steps] == [("n1:web", "n2:web"), ("n3:web",)]
    after = c.pids()
    assert all(not set(before[n]) & set(after[n]) for n in NAMES)
    # n1 and n2 were replaced at the same time; n3 after both
    w = {n: (min(events.times(n, "spawn", after[n])), max(events.times(n, "reap", before[n])))
         for n in NAMES}
    assert w["n1"][0] < w["n2"][1] and w["n2"][0] < w["n1"][1], w
    assert max(w["n1"][1], w["n2"][1]) <= w["n3"][0], w
    kinds = [p.kind for p in seen]
    assert kinds[0] == "plan" and kinds.count("start") == 2 and kinds.count("done") == 2
    running = [p for p in seen if p.kind == "running"]
    assert running and all(p.running and p.elapsed >= 0.2 for p in running)
    assert set(running[0].running) <= {"n1:web", "n2:web"}


def test_a_collection_goes_in_pool_file_order_nested_collections_in_place(cluster_ok):
    c = cluster_ok
    worker = c.nodes["n3"].pids("worker")
    code, out, err = c.meta("restart", "--rolling", "all")
    assert code == 0, out + err
    assert [line.split(" ... ")[0] for line in step_lines(out)] == [
        "[1/4] n1:web restart", "[2/4] n3:worker restart", "[3/4] n2:web restart",
        "[4/4] n3:web restart"]
    assert c.nodes["n3"].pids("worker") != worker
    # mode = parallel: every member in one step, unless --batch says otherwise
    before = c.pids()
    code, out, err = c.meta("--json", "reload", "--rolling", "wave", "--state-every", "0.2")
    assert code == 0, out + err
    report = json.loads(out)
    assert report["mode"] == "parallel" and report["batch"] == 3
    assert [s["items"] for s in report["steps"]] == [["n1:web", "n2:web", "n3:web"]]
    assert report["done"] == ["n1:web", "n2:web", "n3:web"] and report["exit"] == 0
    assert "[1/1] n1:web, n2:web, n3:web reload ... ok" in err      # progress on stderr
    state = [line for line in err.splitlines() if " ... still running: " in line]
    assert state and state[0].startswith("[1/1] n1:web, n2:web, n3:web reload ... still "
                                         "running: "), err
    after = c.pids()
    assert all(not set(before[n]) & set(after[n]) for n in NAMES)
    # --node narrows a collection to its members on those nodes
    code, out, _ = c.meta("--json", "restart", "--rolling", "--batch", "1", "wave",
                          "--node", "n2")
    assert code == 0 and json.loads(out)["items"] == ["n2:web"]
    # a watcher name as the nodes spell it; stop and start wait too
    code, out, _ = c.meta("--json", "restart", "--rolling", "WEB", "--node", "n1")
    assert code == 0 and json.loads(out)["items"] == ["n1:web"]
    code, out, err = c.meta("stop", "--rolling", "worker", "--all")
    assert code == 0 and out.splitlines()[-1] == "done: n3:worker", out + err
    assert c.nodes["n3"].status("worker") == "stopped"
    code, out, err = c.meta("start", "--rolling", "n3:worker")
    assert code == 0 and c.nodes["n3"].status("worker") == "active", out + err


def test_the_first_failure_stops_the_rollout_and_the_rest_is_untouched(cluster_ok, tmp_path):
    c = cluster_ok
    (c.nodes["n2"].dir / "ready").unlink()          # n2's new workers will never be ready
    before = c.pids()
    code, out, err = c.meta("restart", "--rolling", "web", "--all", "--step-timeout", "20")
    assert code == 4, out + err
    lines = step_lines(out)
    assert len(lines) == 2 and " ... ok (" in lines[0]
    assert lines[1].startswith("[2/3] n2:web restart ... failed (")
    reason = out.split(lines[1] + "\n", 1)[1].splitlines()
    assert reason[0].startswith("  n2:web: rolling restart stopped after 0 of 2") and \
        "not ready after 1.5 s" in reason[0]
    assert reason[1] == "    never ready"              # the new worker's last stderr line
    summary = out.splitlines()[-1]
    assert summary.startswith("done: n1:web; failed: n2:web (") and "not ready" in summary, out
    assert summary.endswith("; not done: n3:web")
    after = c.pids()
    assert not set(before["n1"]) & set(after["n1"])
    assert after["n2"] == before["n2"] and after["n3"] == before["n3"]
    assert int(c.nodes["n2"].get()) in before["n2"]         # n2's old workers still serve
    # Ctrl-C during a step: what was done, what was sent, what was not; an audit file
    before = c.pids()
    code, out, err = interrupt(c, "--log-dir", str(tmp_path / "audit"), "restart", "--rolling",
                               "web", "--all", "--state-every", "0.1", when="[2/3] n2:web restart ... "
                                                                   "still running")
    assert code == 130, out + err
    assert "interrupted: done: n1:web; interrupted: n2:web (sent; the node may still be doing " \
           "it); not done: n3:web" in err
    assert c.pids()["n3"] == before["n3"]
    audit = [json.loads(line) for line in
             next((tmp_path / "audit").glob("*restart-rolling-web*.log")).read_text().splitlines()]
    assert audit[0]["run"]["interrupted"] == ["n2:web"] and audit[-1]["exit"] == 130
    # the first step refused: exit 3, nothing else sent
    before = c.pids()
    code, out, err = c.meta("--json", "restart", "--rolling", "broken")
    assert code == 3, out + err
    report = json.loads(out)
    assert report["done"] == [] and list(report["failed"]) == ["n1:nosuch"]
    assert "not found" in report["failed"]["n1:nosuch"]["reason"]
    assert report["not_done"] == ["n2:web"] and c.pids() == before


def test_a_node_that_is_down_stops_the_rollout_at_its_turn(cluster_ok, tmp_path):
    c = cluster_ok
    gone = f"[node:n9]\nendpoint = ipc://{tmp_path}/nobody.sock\ntimeout = 0.5\n"
    c.write_pool(("n1", "n9", "n2", "n3"), extra=gone)
    before = c.pids()
    code, out, err = c.meta("--json", "restart", "--rolling", "web", "--all")
    assert code == 4, out + err
    report = json.loads(out)
    assert report["items"] == ["n1:web", "n9:web", "n2:web", "n3:web"]
    assert report["done"] == ["n1:web"] and report["not_done"] == ["n2:web", "n3:web"]
    assert report["failed"]["n9:web"]["state"] == "not_available"
    assert "n9: not_available" in err and "it is tried in its turn" in err
    after = c.pids()
    assert after["n2"] == before["n2"] and after["n3"] == before["n3"]
    # nothing reachable: exit 1
    code, out, err = c.meta("start", "--rolling", "n9:web")
    assert code == 1, out + err
    assert out.splitlines()[-1].startswith("failed: n9:web (not_available: cannot connect")


def test_usage_errors_exit_2(cluster_ok):
    c = cluster_ok
    code, out, err = c.meta("restart", "--rolling", "nosuch", "--all")
    assert code == 2 and "no watcher or collection called 'nosuch'" in err, out + err
    assert "backend, all, wave" in err                               # the collections it knows
    code, out, err = c.meta("restart", "--rolling", "--batch", "0", "web")
    assert code == 2 and "--batch must be at least 1" in err
    code, out, err = c.meta("incr", "--rolling", "web")
    assert code == 2 and "--rolling works with restart, reload, stop, start" in err
    code, out, err = c.meta("restart", "--rolling")
    assert code == 2 and "which watcher or collection" in err
    code, out, err = c.meta("restart", "--rolling", "n7:web")
    assert code == 2 and "no node 'n7'" in err


def test_the_report_and_its_exit_code():
    ok = NodeResult("a", ACTIVE, {"status": "ok"})
    refused = NodeResult("b", ACTIVE, {"status": "error", "reason": "not ready\nlast lines"})
    gone = NodeResult("c", NOT_AVAILABLE, error="cannot connect")

    def report(*steps: dict) -> RollingReport:
        r = RollingReport("restart", "web", "watcher", 1, ["a:w", "b:w", "c:w", "d:w"])
        r.steps = [Step(i, tuple(results), dict(results)) for i, results in enumerate(steps, 1)]
        return r
    assert report({"a:w": ok}, {"b:w": ok}, {"c:w": ok}, {"d:w": ok}).exit_code == 0
    partial = report({"a:w": ok}, {"b:w": refused})
    assert partial.exit_code == 4 and partial.not_done == ["c:w", "d:w"]
    assert partial.summary() == "done: a:w; failed: b:w (not ready); not done: c:w, d:w"
    assert report({"a:w": refused}).exit_code == 3
    assert report({"a:w": gone}).exit_code == 1
    assert report({"a:w": gone, "b:w": refused}).exit_code == 3      # nothing done, one refused
    assert report({"a:w": gone, "b:w": ok}).exit_code == 4
    assert plan_steps(list("abcde"), 2) == [["a", "b"], ["c", "d"], ["e"]]
    with pytest.raises(ValueError):
        plan_steps([1], 0)


def test_the_summary_gives_a_reason_on_one_line_without_its_output():
    from circusmeta.rolling import _first_line
    assert _first_line("crasher: exit code 3; last output lines:\n  boom") == "crasher: exit code 3"
    assert _first_line("refused\nsecond line") == "refused"
    assert _first_line("; last output lines:\n  boom") == ""
    assert _first_line("") == ""
