"""Rolling operations against real circusd nodes whose watchers change under them: an ``ok``
counts only when it is true (``circusmeta/confirm.py``).

A watcher removed without being stopped (``rm --nostop``) while a rolling ``start`` waits for
its readiness, or removed and added again, still gets its ``ok`` from the node; the rolling
operation must not report it done. The check after each ``ok`` is also driven directly against
a real node (a stopped watcher that is active again, processes that are not the watcher's, a
watcher that is gone, a reply of another shape, a node that does not answer the check).

Each node is a circusd on ipc:// endpoints in tmp_path; every wait has a deadline and fails as
soon as circusd died; processes left by ``rm --nostop`` are ended by pid.
"""
from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest
import zmq

from circusmeta import ACTIVE, NOT_AVAILABLE, UNRESPONSIVE, NodeResult, Pool
from circusmeta import run_rolling as rolling
from circusmeta.rolling import RollingReport, Step
from conftest import Raw, proc_alive

pytestmark = pytest.mark.real

PY = sys.executable
WORKERS = Path(__file__).parent / "workers"
#: a worker that reloads on SIGHUP (prints a line) instead of dying of it
HUP_WORKER = ("import signal, time; signal.signal(signal.SIGHUP, lambda *a: print('reloaded', "
              "flush=True)); print('listening', flush=True); time.sleep(3600)")
NODE = """
[circus]
endpoint = ipc://{d}/control.sock
pubsub_endpoint = ipc://{d}/events.sock
statsd = false

[watcher:slow]
cmd = {py} {workers}/readyworker.py --mode log --delay 1.0
ready = log:listening
ready_timeout = 15
graceful_timeout = 1
autostart = false

[watcher:hup]
cmd = {py} -c "{hup_worker}"
ready = log:listening
graceful_timeout = 1
send_hup = true
"""


class Node:
    def __init__(self, circusd, name: str = "n1") -> None:
        self.daemon = circusd(start=False)
        self.dir = self.daemon.dir
        self.daemon.write(textwrap.dedent(NODE.format(d=self.dir, py=PY, workers=WORKERS,
                                                      hup_worker=HUP_WORKER)))
        self.daemon.start(None, "--name", name)
        self.daemon.wait(lambda: (self.dir / "control.sock").exists(), 15, "control socket")
        self.ctx = zmq.Context()
        self.raw = Raw(self.ctx, f"ipc://{self.dir}/control.sock")
        self.pool = self.dir / "pool.ini"
        self.pool.write_text(f"[meta]\ntimeout = 2\n\n[node:{name}]\n"
                             f"endpoint = ipc://{self.dir}/control.sock\n")
        self.daemon.wait(lambda: self.call("status", name="hup")["status"] == "active", 15,
                         "hup active")

    def call(self, command: str, **props) -> dict:
        assert self.daemon.proc.poll() is None, self.daemon.log_text()[-3000:]
        return self.raw.call(command, wait=10, **props)

    def pids(self, watcher: str) -> list[int]:
        reply = self.call("list", name=watcher)
        return sorted(reply.get("pids", []))

    def close(self, leftovers: list[int]) -> None:
        for pid in leftovers:                  # processes of a watcher removed with --nostop
            if proc_alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.raw.close()
        self.ctx.term()


@pytest.fixture
def node(circusd):
    n = Node(circusd)
    leftovers: list[int] = []
    n.leftovers = leftovers
    yield n
    n.close(leftovers)


def run(node: Node, work) -> object:
    async def go():
        async with Pool.from_file(str(node.pool)) as pool:
            return await asyncio.wait_for(work(pool), 60)
    return asyncio.run(go())


async def _when_spawned(node: Node, then) -> None:
    """Once the slow watcher has a process (not ready yet), run ``then()`` (blocking calls)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while not await loop.run_in_executor(None, node.pids, "slow"):
        assert loop.time() < deadline, "the slow watcher spawned nothing within 15 s"
        await asyncio.sleep(0.02)
    await loop.run_in_executor(None, then)


def test_a_watcher_removed_during_a_rolling_start_is_not_reported_started(node):
    removed: list[int] = []

    def rm() -> None:
        removed.extend(node.pids("slow"))
        assert node.call("rm", name="slow", nostop=True)["status"] == "ok"

    async def work(pool):
        report = asyncio.ensure_future(rolling(pool, "start", "n1:slow"))
        await _when_spawned(node, rm)
        return await report
    report: RollingReport = run(node, work)
    node.leftovers.extend(removed)
    result = report.results["n1:slow"]
    # not done: the watcher is gone, its process runs unmanaged. The node itself says so (its
    # rm cancels the start: an error reply); a node that answered ok (0.19, older ones) is
    # caught by the look after the ok
    assert report.done == [] and list(report.failed) == ["n1:slow"], report.summary()
    if result.reply["status"] == "ok":
        assert "'slow' is no longer on the node: it was removed during the start" in \
            report.summary()
        assert result.to_dict()["unconfirmed"] == result.unconfirmed
    else:
        assert result.reply["code"] == "interrupted", result.reply
    assert report.exit_code == 3 and not result.ok
    assert node.call("list")["watchers"] == ["hup"] and all(proc_alive(p) for p in removed)


def test_a_watcher_replaced_during_a_rolling_start_is_not_reported_started(node):
    removed: list[int] = []

    def replace() -> None:
        removed.extend(node.pids("slow"))
        assert node.call("rm", name="slow", nostop=True)["status"] == "ok"
        assert node.call("add", name="slow", cmd="sleep 3702", start=True)["status"] == "ok"

    async def work(pool):
        report = asyncio.ensure_future(rolling(pool, "start", "slow"))
        await _when_spawned(node, replace)
        return await report
    report: RollingReport = run(node, work)
    node.leftovers.extend(removed)
    new = node.pids("slow")
    assert new and not set(new) & set(removed)
    assert report.done == [] and list(report.failed) == ["n1:slow"], report.summary()
    failed = report.failed["n1:slow"]
    if failed.reply["status"] == "ok":           # a node that did not cancel the start
        why = failed.unconfirmed
        assert why.startswith(f"none of the processes the start left running ({removed[0]}) "
                              f"is one of 'slow''s now ({new[0]})"), why
    else:
        assert failed.reply["code"] == "interrupted", failed.reply


def test_a_node_named_twice_in_the_selection_is_one_item(node):
    report: RollingReport = run(node, lambda pool: rolling(pool, "reload", "hup",
                                                           nodes=["n1", "n1"], batch=2))
    assert report.items == ["n1:hup"] and [s.items for s in report.steps] == [("n1:hup",)]
    assert report.done == ["n1:hup"] and report.exit_code == 0, str(report.to_dict())


def test_a_send_hup_restart_says_its_processes_were_kept(node):
    import subprocess
    before = node.pids("hup")
    r = subprocess.run([PY, "-m", "circusmeta.cli", "--pool", str(node.pool), "restart",
                        "--rolling", "hup", "--all"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[1].startswith("[1/1] n1:hup restart ... ok (")
    assert lines[2] == (f"  n1:hup: its processes were kept, not replaced "
                        f"({', '.join(map(str, before))}): a send_hup watcher is sent SIGHUP "
                        f"instead"), r.stdout
    assert lines[-1] == "done: n1:hup"
    assert node.pids("hup") == before


def test_the_check_after_an_ok_against_a_real_node(node):
    from circusmeta.confirm import confirm
    ok = NodeResult("n1", ACTIVE, {"status": "ok", "info": None})

    async def work(pool):
        out = {}
        # a stop answered ok, but the watcher is running: not done
        out["stop-running"] = await confirm(pool, "hup", "stop", ok)
        # a restart that names processes the watcher does not have
        out["strangers"] = await confirm(pool, "hup", "restart", NodeResult(
            "n1", ACTIVE, {"status": "ok", "info": {"started": [1], "kept": []}}))
        out["theirs"] = await confirm(pool, "hup", "restart", NodeResult(
            "n1", ACTIVE, {"status": "ok", "info": {"started": node.pids("hup"), "kept": []}}))
        out["gone"] = await confirm(pool, "nosuch", "restart", ok)
        out["no-status"] = await confirm(pool, "hup", "restart", NodeResult("n1", ACTIVE, {}))
        out["stopped"] = await confirm(pool, "slow", "stop", ok)
        out["0.19"] = await confirm(pool, "hup", "start", NodeResult("n1", ACTIVE,
                                                                     {"status": "ok"}))
        refused = NodeResult("n1", ACTIVE, {"status": "error", "reason": "no"})
        out["refused"] = await confirm(pool, "hup", "stop", refused)
        return out
    out = run(node, work)
    assert out["stop-running"].unconfirmed == \
        "'hup' is active right after the stop (another request started it again?)"
    assert "none of the processes the restart left running (1)" in out["strangers"].unconfirmed
    assert out["theirs"].unconfirmed is None and out["theirs"].ok
    assert out["gone"].unconfirmed.startswith("'nosuch' is no longer on the node")
    assert out["no-status"].unconfirmed == \
        "the node answered status None to 'restart', not 'ok'"
    assert out["stopped"].ok and out["0.19"].ok
    assert out["refused"].unconfirmed is None and not out["refused"].ok
    # a node that cannot be asked afterwards: the ok is not taken on trust
    node.daemon.stop()

    async def unreachable(pool):
        return await confirm(pool, "hup", "restart", ok)
    gone = run(node, unreachable)
    assert not gone.ok and gone.unconfirmed.startswith(
        "the restart was answered ok, but the check afterwards (list) got no answer: "
        "not_available"), gone.unconfirmed


def test_notes_and_the_reasons_in_the_report():
    from circusmeta.confirm import note
    assert note("restart", {"status": "ok", "info": {"stopped": [], "started": [],
                                                     "kept": [3, 2]}}) == \
        "its processes were kept, not replaced (2, 3): a send_hup watcher is sent SIGHUP instead"
    assert note("restart", {"status": "ok", "info": {"stopped": [2], "started": [4],
                                                     "kept": []}}) is None
    assert note("start", {"status": "ok", "info": {"started": [], "kept": [2]}}) == \
        "it was running already"
    assert note("stop", {"status": "ok", "info": None}) is None and note("stop", None) is None
    slow = NodeResult("a", UNRESPONSIVE, error="connected, but no answer to 'restart' within 2 s")
    gone = NodeResult("b", NOT_AVAILABLE, error="cannot connect")
    report = RollingReport("restart", "web", "watcher", 1, ["a:w", "b:w"])
    report.steps = [Step(1, ("a:w",), {"a:w": slow})]
    assert report.summary() == ("failed: a:w (unresponsive: connected, but no answer to "
                                "'restart' within 2 s (sent; the node may still be doing it)); "
                                "not done: b:w")
    report.steps = [Step(1, ("b:w",), {"b:w": gone})]
    assert "failed: b:w (not_available: cannot connect)" in report.summary()
