"""circusmeta at fleet size, tested small: six real circusd nodes (ipc:// control endpoints in a
temporary directory) and the ways a node is missing — a dead node (a 127.0.0.1 port nobody
listens on), a black hole (a listener that accepts and never speaks), a frozen node (a circusd
stopped with SIGSTOP, resumed and stopped at the end).

What is checked: a missing node costs at most one timeout per run, in parallel with the others,
and on an open Pool it is not waited for again while nothing arrives from it; a timeout is
reported as a timeout; a pool file of 1,100 entries works (one socket, a connection per
endpoint) or is refused clearly when the process may not open enough files; rolling operations
in batches stop at the first failure, say where and print the command that resumes; a rolling
restart of a watcher without --node/--tag/--all is refused; a node whose circusd calls itself
by another name fails its turn (non-zero exit, nothing sent to it).
"""
from __future__ import annotations

import asyncio
import json
import os
import pty
import resource
import select
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import zmq

from conftest import Circusd, Raw, proc_state

pytestmark = pytest.mark.real

PY = sys.executable
META = os.path.join(os.path.dirname(sys.executable), "circusmeta")
NAMES = tuple(f"n{k}" for k in range(1, 7))
T = 1.0                                   # [meta] timeout of the pools here

NODE = """
[circus]
endpoint = ipc://{d}/control.sock
pubsub_endpoint = ipc://{d}/events.sock
statsd = false

[watcher:web]
cmd = sh -c 'test -e {d}/ready && exec sleep 3600; echo not this time >&2; exit 1'
numprocesses = 1
graceful_timeout = 1
min_uptime = 0.3
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BlackHole:
    """A TCP listener on 127.0.0.1 that accepts connections and never reads or writes."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.endpoint = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if select.select([self.sock], [], [], 0.1)[0]:
                conn, _ = self.sock.accept()
                self.accepted.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self.accepted:
            conn.close()
        self.sock.close()


class Fleet:
    def __init__(self, root: Path, daemons: dict[str, Circusd]) -> None:
        self.root, self.daemons = root, daemons
        self.ctx = zmq.Context()
        self.raw = {n: Raw(self.ctx, self.endpoint(n)) for n in daemons}

    def endpoint(self, name: str) -> str:
        return f"ipc://{self.root / name}/control.sock"

    def pids(self, name: str) -> list[int]:
        assert self.daemons[name].proc.poll() is None, f"{name}'s circusd died"
        return sorted(self.raw[name].call("list", wait=10, name="web")["pids"])

    def all_pids(self) -> dict[str, list[int]]:
        return {n: self.pids(n) for n in self.daemons}

    def pool(self, path: Path, entries: list[tuple[str, str]], timeout: float = T) -> Path:
        text = f"[meta]\ntimeout = {timeout:g}\n" + "".join(
            f"\n[node:{name}]\nendpoint = {endpoint}\n" for name, endpoint in entries)
        path.write_text(text)
        return path

    def plain_pool(self, path: Path, names=NAMES, **kw) -> Path:
        return self.pool(path, [(n, self.endpoint(n)) for n in names], **kw)

    def close(self) -> None:
        for c in self.raw.values():
            c.close()
        self.ctx.term()


def meta(pool: Path, *args: str, timeout: float = 60, **kw) -> tuple[int, str, str, float]:
    start = time.monotonic()
    r = subprocess.run([META, "--pool", str(pool), *args], capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL, **kw)
    return r.returncode, r.stdout, r.stderr, time.monotonic() - start


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    daemons: dict[str, Circusd] = {}
    f = None
    try:
        for name in NAMES:
            d = Circusd(root / name)
            d.dir.mkdir()
            (d.dir / "ready").touch()
            d.start(textwrap.dedent(NODE.format(d=d.dir)), "--name", name)
            daemons[name] = d
        for name, d in daemons.items():
            d.wait(lambda d=d: (d.dir / "control.sock").exists(), 20, f"{name}'s control socket")
        f = Fleet(root, daemons)
        for name, d in daemons.items():
            d.wait(lambda name=name: len(f.pids(name)) == 1, 20, f"{name}: web running")
        yield f
    finally:
        if f is not None:
            f.close()
        for d in daemons.values():
            if d.proc is not None and d.proc.poll() is None:
                os.kill(d.pid, signal.SIGCONT)          # a test that froze it may have failed
                d.proc.terminate()
        for d in daemons.values():
            d.stop()
            d.cleanup()


@pytest.fixture
def ready(fleet):
    """Every node's web can restart (its ready flag file is there)."""
    for d in fleet.daemons.values():
        (d.dir / "ready").touch()
    return fleet


@pytest.fixture
def black_hole():
    hole = BlackHole()
    yield hole
    hole.close()


@pytest.fixture
def frozen(fleet):
    """n6's circusd stopped with SIGSTOP; resumed at the end."""
    d = fleet.daemons["n6"]
    os.kill(d.pid, signal.SIGSTOP)
    d.wait(lambda: proc_state(d.pid) == "T", what="n6 stopped")
    yield d
    os.kill(d.pid, signal.SIGCONT)
    d.wait(lambda: proc_state(d.pid) != "T", what="n6 running again")
    d.wait(lambda: fleet.pids("n6"), what="n6 answering again")


# -- one timeout per missing node, in parallel -----------------------------------------------------

def test_dead_black_hole_and_frozen_nodes_cost_one_timeout_together(fleet, black_hole, frozen,
                                                                    tmp_path):
    dead = f"tcp://127.0.0.1:{free_port()}"
    pool = fleet.pool(tmp_path / "pool.ini", [(n, fleet.endpoint(n)) for n in NAMES]
                      + [("dead", dead), ("hole", black_hole.endpoint)])
    code, out, err, wall = meta(pool, "--json", "status")
    assert code == 4, out + err
    nodes = json.loads(out)["nodes"]
    states = {n: r["state"] for n, r in nodes.items()}
    assert states == {**{n: "active" for n in NAMES[:5]}, "n6": "unresponsive",
                      "dead": "not_available", "hole": "unresponsive"}, nodes
    # a timeout is a timeout (not "the node uses CURVE?")
    assert nodes["hole"]["reason"] == (f"connected to {black_hole.endpoint}, but no answer to "
                                       f"'status' within 1 s")
    assert nodes["dead"]["reason"].startswith(f"cannot connect to {dead} within 1 s: the "
                                              f"connection is refused")
    assert "CURVE" not in out
    # three missing nodes cost one timeout, not three (the start of the process aside)
    assert wall < 3 * T, wall


def test_an_open_pool_does_not_wait_again_for_a_node_that_stayed_silent(fleet, black_hole,
                                                                        tmp_path):
    from circusmeta import Pool

    pool = fleet.pool(tmp_path / "pool.ini", [("n1", fleet.endpoint("n1")),
                                              ("n6", fleet.endpoint("n6")),
                                              ("hole", black_hole.endpoint)])
    d = fleet.daemons["n6"]

    async def session():
        async with Pool.from_file(str(pool)) as p:
            first = await p.call("status")             # n6 answers: it is connected
            os.kill(d.pid, signal.SIGSTOP)
            try:
                t0 = time.monotonic()
                second = await p.call("status")        # both silent: one timeout
                t1 = time.monotonic()
                third = await p.call("list")           # not waited for again
                t2 = time.monotonic()
            finally:
                os.kill(d.pid, signal.SIGCONT)
            # n6 resumed answers the call it had pending: heard from again, asked again
            deadline = time.monotonic() + 10
            while True:
                fourth = await p.call("list", nodes=["n6"])
                if fourth["n6"].ok or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            return first, second, third, fourth, t1 - t0, t2 - t1

    first, second, third, fourth, t_second, t_third = asyncio.run(session())
    assert first["n6"].ok and first["hole"].state == "unresponsive"
    assert second["n1"].ok and second["n6"].state == "unresponsive", second
    assert t_second < 2 * T, t_second
    assert third["n1"].ok, third
    for name in ("n6", "hole"):
        assert third[name].state == "unresponsive" and third[name].reason.endswith(
            "'list' not sent"), third[name]
    assert t_third < 0.5 * T, t_third
    assert fourth["n6"].ok, fourth


# -- the socket and file limits --------------------------------------------------------------------

def test_a_pool_of_1100_entries_works_on_one_socket(fleet, tmp_path):
    entries = [(f"e{k}", fleet.endpoint(NAMES[k % 3])) for k in range(1100)]
    pool = fleet.pool(tmp_path / "big.ini", entries, timeout=5)
    code, out, err, _ = meta(pool, "--json", "list")
    assert "Traceback" not in err, err
    nodes = json.loads(out)["nodes"]
    assert len(nodes) == 1100 and all(r["ok"] for r in nodes.values()), err[-2000:]
    # every entry's circusd calls itself otherwise: said, per entry
    assert code == 0
    assert [r["reported_name"] for r in nodes.values()] == [NAMES[k % 3] for k in range(1100)]


def _limit(soft: int, hard: int):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_more_nodes_than_open_files_is_refused_clearly_or_the_limit_raised(fleet, tmp_path):
    # 1,100 distinct endpoints (socket files nobody made) and one real node
    entries = [("n1", fleet.endpoint("n1"))] + [(f"dead{k}", f"ipc://{tmp_path}/dead{k}.sock")
                                                 for k in range(1100)]
    pool = fleet.pool(tmp_path / "big.ini", entries, timeout=1)
    code, out, err, _ = meta(pool, "list", preexec_fn=_limit(512, 512))
    assert code == 2 and "Traceback" not in err, err
    assert err.startswith("circusmeta list: 1101 nodes need about "), err
    assert "open files (a connection each), and this process may open 512 (its RLIMIT_NOFILE " \
           "hard limit): raise it" in err
    # a soft limit below what is needed is raised to the hard one, as circusd does
    code, out, err, _ = meta(pool, "--json", "list", preexec_fn=_limit(512, 4096))
    assert code == 4 and "Traceback" not in err, err
    states = {n: r["state"] for n, r in json.loads(out)["nodes"].items()}
    assert states.pop("n1") == "active" and set(states.values()) == {"not_available"}


# -- rolling operations ----------------------------------------------------------------------------

def test_a_rolling_restart_in_batches_stops_at_the_failure_and_says_how_to_resume(ready,
                                                                                  tmp_path):
    fleet = ready
    pool = fleet.plain_pool(tmp_path / "pool.ini")
    (fleet.daemons["n4"].dir / "ready").unlink()          # n4's replacement fails to start
    before = fleet.all_pids()
    code, out, err, _ = meta(pool, "restart", "--rolling", "--batch", "2", "web", "--all",
                             "--step-timeout", "20")
    assert code == 4, out + err
    lines = out.splitlines()
    assert lines[0] == "rolling restart of web: 6 items in 3 steps (batch 2)"
    assert lines[1].startswith("[1/3] n1:web, n2:web restart ... ok (")
    assert lines[2].startswith("[2/3] n3:web, n4:web restart ... failed (") and \
        lines[2].endswith("; ok: n3:web"), out
    assert lines[3].startswith("  n4:web: ") and "exit code 1" in lines[3], out
    assert lines[-1].startswith("done: n1:web, n2:web, n3:web; failed: n4:web (") and \
        lines[-1].endswith("; not done: n5:web, n6:web"), out
    after = fleet.all_pids()
    for name in ("n1", "n2", "n3"):
        assert after[name] != before[name], name
    for name in ("n5", "n6"):
        assert after[name] == before[name], name                 # untouched
    hint = err.splitlines()
    at = hint.index("stopped at step 2 of 3 (n4:web failed); 3 of 6 items done. To resume:")
    resume = hint[at + 1].strip()
    assert resume == (f"circusmeta --pool {pool} restart --rolling --batch 2 web --all "
                      f"--step-timeout 20 --from n4:web"), err
    assert hint[at + 2].strip() == (f"(or, leaving n4:web out: circusmeta --pool {pool} "
                                    f"restart --rolling --batch 2 web --all --step-timeout 20 "
                                    f"--from n5:web)")
    # the node fixed, the printed command goes on from there
    (fleet.daemons["n4"].dir / "ready").touch()
    argv = shlex.split(resume)
    r = subprocess.run([META, *argv[1:]], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[0] == ("rolling restart of web: 3 items in 2 steps (batch 2), "
                                        "from n4:web (3 items before it left out)")
    assert r.stdout.splitlines()[-1] == "done: n4:web, n5:web, n6:web"
    final = fleet.all_pids()
    for name in ("n4", "n5", "n6"):
        assert final[name] and final[name] != before[name], name
    for name in ("n1", "n2", "n3"):
        assert final[name] == after[name], name                  # not restarted twice


def test_a_rolling_restart_of_a_watcher_needs_a_selection(ready, tmp_path):
    fleet = ready
    pool = fleet.plain_pool(tmp_path / "pool.ini")
    before = fleet.all_pids()
    code, out, err, _ = meta(pool, "restart", "--rolling", "web")
    assert (code, out) == (2, ""), err
    assert err == ("circusmeta restart: restart --rolling web changes the nodes: say where "
                   "with --node N, --tag T or --all\n")
    code, out, err, _ = meta(pool, "restart", "web")            # as plain restart is
    assert code == 2 and "say where with --node N, --tag T or --all" in err
    assert fleet.all_pids() == before
    code, out, err, _ = meta(pool, "restart", "--rolling", "web", "--node", "n2")
    assert code == 0 and out.splitlines()[-1] == "done: n2:web", out + err


def test_a_node_calling_itself_otherwise_fails_its_turn(ready, tmp_path):
    fleet = ready
    pool = fleet.pool(tmp_path / "pool.ini", [("web1", fleet.endpoint("n1")),
                                              ("web2", fleet.endpoint("n2"))])
    before = fleet.all_pids()
    code, out, err, _ = meta(pool, "restart", "--rolling", "web", "--all")
    assert code == 3, out + err
    assert "web1: the circusd there calls itself 'n1': its turn fails, nothing is sent to it" \
        in err
    assert out.splitlines()[-1].startswith(
        "failed: web1:web (the circusd at ipc://") and "calls itself 'n1', not 'web1'" in out
    assert out.splitlines()[-1].endswith("not done: web2:web"), out
    assert fleet.all_pids() == before                            # nothing was restarted


def test_a_rolling_restart_does_not_wait_again_for_a_node_that_did_not_answer(ready,
                                                                              black_hole,
                                                                              tmp_path):
    fleet = ready
    pool = fleet.pool(tmp_path / "pool.ini", [("n1", fleet.endpoint("n1")),
                                              ("hole", black_hole.endpoint)])
    code, out, err, wall = meta(pool, "--json", "restart", "--rolling", "web", "--all",
                                "--step-timeout", "30")
    assert code == 4, out + err
    report = json.loads(out)
    assert report["done"] == ["n1:web"]
    failed = report["failed"]["hole:web"]
    assert failed["state"] == "unresponsive"
    assert failed["reason"].startswith(f"unresponsive: no answer to 'list' within 1 s, and "
                                       f"nothing heard from {black_hole.endpoint} since"), failed
    assert failed["reason"].endswith("'restart' not sent"), failed
    assert wall < 15, wall                  # the list's timeout once, not the step's 30 s


def test_progress_on_a_terminal_is_one_line_updated(ready, tmp_path):
    fleet = ready
    pool = fleet.plain_pool(tmp_path / "pool.ini", names=NAMES[:3])
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([META, "--pool", str(pool), "restart", "--rolling", "web",
                                 "--all"], stdout=slave, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
        os.close(slave)
        slave = -1
        seen = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:                  # the other side closed
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        code = proc.wait(30)
        err = proc.stderr.read().decode()
        proc.stderr.close()
        assert code == 0, err
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    text = seen.decode().replace("\r\n", "\n")
    # each step's line is written, then rewritten in place with its outcome
    assert "\r\x1b[K[1/3] n1:web restart ..." in text, text
    finals = [part.split("\n")[0] for part in text.split("\r\x1b[K") if " ... ok (" in part]
    assert [f.split(" ... ")[0] for f in finals] == ["[1/3] n1:web restart",
                                                      "[2/3] n2:web restart",
                                                      "[3/3] n3:web restart"], text
    assert text.rstrip("\n").split("\n")[-1] == "done: n1:web, n2:web, n3:web"
