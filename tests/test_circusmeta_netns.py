"""Tier 3: circusmeta against real circusd nodes, each node's state seen from outside.

- ``test_loopback_*`` (any user): three circusd on ``ipc://`` endpoints plus a pool entry on a
  ``tcp://127.0.0.1`` port nobody listens on (``not_available``); a SIGSTOPped circusd accepts
  the connection but never answers (``unresponsive``).
- ``test_netns_*`` (root, ``ip`` from iproute2): three network namespaces joined to the root
  namespace by veth pairs on a bridge, in a private 10.231.X.0/24 subnet that only these
  interfaces carry; one circusd per namespace on ``tcp://<its address>:5555``, a CURVE node
  (its key pair and clients directory made in tmp_path, the pool file with its ``server_key``
  and an admin ``client_key``: a network address without CURVE would be refused). A node is
  cut off by setting its host-side veth down, frozen by SIGSTOP, and brought back; a client
  without keys gets no answer over the namespace address.

circusmeta always runs as a subprocess, as an operator runs it. Every wait has a deadline; the
daemons are ended by pid (with their children) and the namespaces and links deleted in the
fixtures' teardown, whatever happened.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ROOT, proc_alive, proc_children, proc_cmdline, proc_state

pytestmark = [pytest.mark.real, pytest.mark.slow]

TIMEOUT = 1.0                     # the pool's [meta] timeout
WALL_BOUND = TIMEOUT + 2.0        # against hanging only; not a performance assertion
META = [sys.executable, "-c", "import sys; from circusmeta.cli import main; sys.exit(main())"]


# -- helpers ---------------------------------------------------------------------------------------

@dataclass(repr=False)
class Run:
    code: int
    out: str
    err: str
    wall: float

    def json(self) -> dict:
        return json.loads(self.out)

    def states(self) -> dict[str, str]:
        """``--json nodes``: state by node."""
        return {row["node"]: row["state"] for row in self.json()["nodes"]}

    def __str__(self) -> str:
        return f"exit {self.code} in {self.wall:.2f} s\nstdout:\n{self.out}\nstderr:\n{self.err}"

    __repr__ = __str__


def meta(pool: Path, *args: str, deadline: float = 20.0) -> Run:
    start = time.monotonic()
    proc = subprocess.run([*META, "--pool", str(pool), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=deadline, stdin=subprocess.DEVNULL)
    return Run(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)


def wait_states(pool: Path, wanted: dict[str, str], timeout: float = 15.0) -> Run:
    """``nodes`` again and again until the nodes in ``wanted`` are in those states."""
    deadline = time.monotonic() + timeout
    while True:
        run = meta(pool, "--json", "nodes")
        if run.code in (0, 1, 4) and all(run.states().get(n) == s for n, s in wanted.items()):
            return run
        if time.monotonic() > deadline:
            pytest.fail(f"after {timeout} s the nodes are not {wanted}\n{run}")
        time.sleep(0.2)


def answers(endpoint: str, timeout: float = 0.5, curve=None) -> bool:
    """One ``nodeinfo`` round trip to ``endpoint`` within ``timeout`` (``curve``: ClientKeys)."""
    import zmq
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    try:
        if curve is not None:
            curve.apply(sock)
        sock.connect(endpoint)
        sock.send(json.dumps({"id": secrets.token_hex(8), "command": "nodeinfo",
                              "properties": {}}).encode())
        return bool(sock.poll(int(timeout * 1000)))
    finally:
        sock.close()


def free_port() -> int:
    """A tcp port of 127.0.0.1 that nobody listens on (bound then closed, never listened)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_pool(path: Path, nodes: list[tuple[str, str, str]], client_key: Path | None = None,
               server_keys: dict[str, Path] | None = None) -> Path:
    text = f"[meta]\ntimeout = {TIMEOUT:g}\n"
    if client_key is not None:
        text += f"client_key = {client_key}\n"
    for name, endpoint, tags in nodes:
        text += f"\n[node:{name}]\nendpoint = {endpoint}\ntags = {tags}\n"
        if server_keys and name in server_keys:
            text += f"server_key = {server_keys[name]}\n"
    path.write_text(text)
    return path


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        for kid in proc_children(todo.pop()):
            out.append(kid)
            todo.append(kid)
    return out


def wait_stopped(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while proc_state(pid) != "T":
        assert time.monotonic() < deadline, f"pid {pid} not stopped after {timeout} s"
        time.sleep(0.01)


WATCHER = """
[watcher:sl]
cmd = sleep 3607
"""


# -- loopback: any user ----------------------------------------------------------------------------

@pytest.fixture
def loopback_pool(circusd, tmp_path):
    """Three circusd on ipc endpoints (node1..node3) and ``ghost``, a tcp port nobody listens
    on; returns (pool file, {name: Circusd})."""
    daemons = {}
    for k in (1, 2, 3):
        d = circusd(None, start=False)
        d.write(f"[circus]\nendpoint = ipc://{d.dir}/control.sock\n"
                f"pubsub_endpoint = ipc://{d.dir}/events.sock\n" + WATCHER)
        d.start(None, "--name", f"node{k}")
        daemons[f"node{k}"] = d
    for name, d in daemons.items():
        d.wait(lambda: answers(f"ipc://{d.dir}/control.sock"), 15, f"{name} answering")
    pool = write_pool(tmp_path / "pool.ini",
                      [(n, f"ipc://{d.dir}/control.sock", "real") for n, d in daemons.items()]
                      + [("ghost", f"tcp://127.0.0.1:{free_port()}", "gone")])
    yield pool, daemons
    for d in daemons.values():            # a stopped circusd would not act on its SIGTERM
        if d.proc is not None and d.proc.poll() is None:
            d.signal(signal.SIGCONT)


def test_loopback_states_and_exit_codes(loopback_pool):
    pool, daemons = loopback_pool

    run = meta(pool, "--json", "nodes")
    assert run.code == 4, run
    assert run.states() == {"node1": "active", "node2": "active", "node3": "active",
                            "ghost": "not_available"}, run
    assert run.wall < WALL_BOUND, run
    rows = {row["node"]: row for row in run.json()["nodes"]}
    assert all(rows[n]["info"]["name"] == n for n in daemons), run
    assert "cannot connect" in rows["ghost"]["error"], run

    run = meta(pool, "nodes", "--tag", "real")
    assert run.code == 0, run
    assert [line.split()[:2] for line in run.out.splitlines()[1:]] == \
        [["node1", "active"], ["node2", "active"], ["node3", "active"]], run

    run = meta(pool, "--node", "ghost", "list")
    assert run.code == 1, run
    assert "ghost: not_available" in run.out, run

    run = meta(pool, "--all", "incr", "sl")
    assert run.code == 4, run                       # ghost: partial
    run = meta(pool, "--tag", "real", "--json", "numprocesses", "sl")
    assert run.code == 0, run
    assert {n: r["reply"]["numprocesses"] for n, r in run.json()["nodes"].items()} == \
        {"node1": 2, "node2": 2, "node3": 2}, run

    frozen = daemons["node2"]
    frozen.signal(signal.SIGSTOP)
    try:
        wait_stopped(frozen.pid)
        run = meta(pool, "--json", "nodes")
        assert run.code == 4, run
        assert run.states() == {"node1": "active", "node2": "unresponsive", "node3": "active",
                                "ghost": "not_available"}, run
        assert run.wall < WALL_BOUND, run
        assert "no answer" in {r["node"]: r for r in run.json()["nodes"]}["node2"]["error"], run

        run = meta(pool, "status")
        assert run.code == 4, run
        rows = [line.split()[:3] for line in run.out.splitlines()]
        assert ["node1", "sl", "active"] in rows and ["node3", "sl", "active"] in rows, run
        assert "node2: unresponsive" in run.out and "ghost: not_available" in run.out, run

        run = meta(pool, "--node", "node2", "status")
        assert run.code == 1, run                   # nothing reachable answered
    finally:
        frozen.signal(signal.SIGCONT)
    wait_states(pool, {"node1": "active", "node2": "active", "node3": "active"})


def test_loopback_node_gone_during_a_session(circusd, tmp_path):
    """A circusd that stops while a Pool is open is not_available (not unresponsive), and
    costs its deadline once: the next call does not wait again."""
    import asyncio

    from circusmeta import Pool

    d = circusd(None, start=False)
    d.write(f"[circus]\nendpoint = ipc://{d.dir}/control.sock\n"
            f"pubsub_endpoint = ipc://{d.dir}/events.sock\n" + WATCHER)
    d.start(None, "--name", "solo")
    d.wait(lambda: answers(f"ipc://{d.dir}/control.sock"), 15, "solo answering")
    pool = write_pool(tmp_path / "pool.ini", [("solo", f"ipc://{d.dir}/control.sock", "x")])

    async def session():
        async with Pool.from_file(str(pool)) as p:
            first = (await p.call("nodeinfo"))["solo"]
            d.stop()
            deadline = time.monotonic() + 5
            while p.connected("solo"):                # the monitor sees the disconnection
                assert time.monotonic() < deadline, "no disconnection seen within 5 s"
                await asyncio.sleep(0.01)
            start = time.monotonic()
            second = (await p.call("nodeinfo"))["solo"]
            middle = time.monotonic()
            third = (await p.call("nodeinfo"))["solo"]
            return first, second, third, middle - start, time.monotonic() - middle

    first, second, third, t2, t3 = asyncio.run(session())
    assert first.state == "active", first
    assert second.state == "not_available", second
    assert third.state == "not_available", third
    assert t2 < WALL_BOUND and t3 < 0.5 * TIMEOUT, (t2, t3)


# -- network namespaces: root ----------------------------------------------------------------------

def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=15,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: exit {proc.returncode}: "
                           f"{(proc.stderr or proc.stdout).strip()}")
    return proc


@pytest.fixture(scope="session")
def ip_tool() -> str:
    """The ``ip`` command, installed with apt-get (iproute2) when missing; a skip with the
    reason when it cannot be had."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (CI runs as root)")
    found = shutil.which("ip")
    if found:
        return found
    if not shutil.which("apt-get"):
        pytest.skip("`ip` (iproute2) is not installed and there is no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends",
                                         "iproute2"]):
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            pytest.skip(f"`ip` (iproute2) missing and `{' '.join(argv)}` took over 300 s")
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            pytest.skip(f"`ip` (iproute2) missing and `{' '.join(argv)}` failed "
                        f"(exit {proc.returncode}): {' / '.join(tail)}")
    found = shutil.which("ip")
    if not found:
        pytest.skip("apt-get installed iproute2 but there is still no `ip` on PATH")
    return found


def _pick_subnet() -> str:
    used = ip("-o", "-4", "addr").stdout + ip("-4", "route").stdout
    for _ in range(50):
        prefix = f"10.231.{secrets.randbelow(254) + 1}"
        if f"{prefix}." not in used:
            return prefix
    raise RuntimeError("no free 10.231.X.0/24 subnet")


@dataclass
class NsNode:
    name: str
    netns: str
    host_veth: str
    address: str
    dir: Path
    proc: subprocess.Popen | None = None
    pid: int = 0

    @property
    def endpoint(self) -> str:
        return f"tcp://{self.address}:5555"

    @property
    def log(self) -> Path:
        return self.dir / "circusd.log"

    @property
    def public_key(self) -> Path:
        return self.dir / "keys" / f"{self.name}.key"

    @property
    def secret_key(self) -> Path:
        return self.dir / "keys" / f"{self.name}.key_secret"

    @property
    def clients(self) -> Path:
        return self.dir / "clients"

    def log_text(self) -> str:
        return self.log.read_text()[-3000:] if self.log.exists() else ""


class Netns:
    """Namespaces, veths and a bridge made for one test; ``close`` deletes exactly those."""

    def __init__(self, tmp_path: Path, count: int = 3) -> None:
        self.tag = secrets.token_hex(3)[:5]
        self.bridge = f"cmb-{self.tag}"
        self.nodes: list[NsNode] = []
        self.netns: list[str] = []
        self.links: list[str] = []
        self.tmp = tmp_path
        self.count = count
        self.admin_key = tmp_path / "operator" / "admin.key_secret"

    def admin(self, node: NsNode):
        from circus.security.keys import ClientKeys
        return ClientKeys.load(str(self.admin_key), str(node.public_key))

    def setup(self) -> None:
        prefix = _pick_subnet()
        self.host_address = f"{prefix}.254"
        ip("link", "add", "name", self.bridge, "type", "bridge", "forward_delay", "0",
           "stp_state", "0")
        self.links.append(self.bridge)
        ip("addr", "add", f"{self.host_address}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for k in range(1, self.count + 1):
            ns, host, peer = f"cmeta-{self.tag}-{k}", f"cmh-{self.tag}-{k}", f"cmn-{self.tag}-{k}"
            ip("netns", "add", ns)
            self.netns.append(ns)
            ip("link", "add", host, "type", "veth", "peer", "name", peer)
            self.links.append(host)
            ip("link", "set", peer, "netns", ns)
            ip("link", "set", host, "master", self.bridge)
            ip("link", "set", host, "up")
            address = f"{prefix}.{10 + k}"
            ip("-n", ns, "addr", "add", f"{address}/24", "dev", peer)
            ip("-n", ns, "link", "set", peer, "up")
            ip("-n", ns, "link", "set", "lo", "up")
            d = self.tmp / f"node{k}"
            d.mkdir()
            self.nodes.append(NsNode(f"node{k}", ns, host, address, d))
        self.make_keys()

    def make_keys(self) -> None:
        """A key pair per node, one admin client key admitted by every node."""
        from circus.security.keys import write_keypair
        public, _ = write_keypair(str(self.admin_key.parent), "admin")
        for node in self.nodes:
            write_keypair(str(node.dir / "keys"), node.name)
            (node.clients / "admin").mkdir(parents=True)
            shutil.copy(public, node.clients / "admin" / "admin.key")

    def start(self, node: NsNode) -> None:
        config = node.dir / "circus.ini"
        config.write_text(textwrap.dedent(f"""\
            [circus]
            endpoint = {node.endpoint}
            pubsub_endpoint = tcp://{node.address}:5556
            curve_secret_key = {node.secret_key}
            curve_clients = {node.clients}
            """) + WATCHER)
        node.proc = subprocess.Popen(
            ["ip", "netns", "exec", node.netns, sys.executable, "-m", "circus.cli.circusd",
             "--name", node.name, "--log-level", "debug", "--log-output", str(node.log),
             str(config)], cwd=node.dir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        node.pid = node.proc.pid          # `ip netns exec` execs the command (no fork)

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        todo = list(self.nodes)
        while todo:
            node = todo[0]
            if node.proc.poll() is not None:
                out = node.proc.stdout.read().decode() if node.proc.stdout else ""
                pytest.fail(f"{node.name}: circusd exited ({node.proc.returncode})\n{out}\n"
                            f"{node.log_text()}")
            if answers(node.endpoint, curve=self.admin(node)):
                todo.pop(0)
                continue
            if time.monotonic() > deadline:
                pytest.fail(f"{node.name} does not answer at {node.endpoint} after {timeout} s\n"
                            f"{node.log_text()}")
        for node in self.nodes:           # the pid we signal is circusd itself
            cmd = " ".join(proc_cmdline(node.pid))
            if "circus.cli.circusd" not in cmd:
                kids = [p for p in proc_children(node.pid)
                        if "circus.cli.circusd" in " ".join(proc_cmdline(p))]
                assert kids, f"{node.name}: no circusd under pid {node.pid} ({cmd})"
                node.pid = kids[0]

    def close(self) -> list[str]:
        problems: list[str] = []
        for node in self.nodes:
            if node.proc is None:
                continue
            family = [node.pid, *descendants(node.pid)]
            for pid in family:
                try:
                    os.kill(pid, signal.SIGCONT)
                except OSError:
                    pass
            if node.proc.poll() is None:
                try:
                    os.kill(node.pid, signal.SIGTERM)
                except OSError:
                    pass
        deadline = time.monotonic() + 8
        for node in self.nodes:
            if node.proc is None:
                continue
            family = [node.pid, *descendants(node.pid)]
            try:
                node.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                problems.append(f"{node.name}: circusd did not stop on SIGTERM")
            for pid in family:
                if proc_alive(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
            if node.proc.poll() is None:
                node.proc.kill()
                node.proc.wait(10)
            if node.proc.stdout:
                node.proc.stdout.close()
        for link in reversed(self.links):
            proc = ip("link", "del", link, check=False)
            if proc.returncode != 0 and "Cannot find device" not in proc.stderr:
                problems.append(f"ip link del {link}: {proc.stderr.strip()}")
        for ns in self.netns:
            proc = ip("netns", "del", ns, check=False)
            if proc.returncode != 0:
                problems.append(f"ip netns del {ns}: {proc.stderr.strip()}")
        return problems


@pytest.fixture
def netns_pool(ip_tool, tmp_path):
    net = Netns(tmp_path)
    try:
        try:
            net.setup()
        except RuntimeError as exc:
            pytest.skip(f"cannot set up network namespaces here: {exc}")
        for node in net.nodes:
            net.start(node)
        net.wait_ready()
        pool = write_pool(tmp_path / "pool.ini",
                          [(n.name, n.endpoint, f"ns, n{k}") for k, n in
                           enumerate(net.nodes, 1)], net.admin_key,
                          {n.name: n.public_key for n in net.nodes})
        yield pool, net
    finally:
        problems = net.close()
        left = set(ip("netns", "list", check=False).stdout.split()) & set(net.netns)
        assert not left, f"namespaces left behind: {left}"
        assert not problems, problems


def test_netns_cut_frozen_and_back(netns_pool):
    pool, net = netns_pool
    names = [n.name for n in net.nodes]
    cut, frozen, healthy = net.nodes[2], net.nodes[1], net.nodes[0]

    run = meta(pool, "nodes")
    assert run.code == 0, run
    table = [line.split() for line in run.out.splitlines()[1:]]
    assert [row[:3] for row in table] == [[n.name, "active", n.endpoint] for n in net.nodes], run
    run = meta(pool, "--json", "nodes")
    assert {row["node"]: row["info"]["name"] for row in run.json()["nodes"]} == \
        {n: n for n in names}, run

    run = meta(pool, "--all", "incr", "sl")
    assert run.code == 0, run
    run = meta(pool, "--json", "numprocesses", "sl")
    assert run.code == 0, run
    assert {n: r["reply"]["numprocesses"] for n, r in run.json()["nodes"].items()} == \
        {n: 2 for n in names}, run

    ip("link", "set", cut.host_veth, "down")
    try:
        run = meta(pool, "--json", "nodes")
        assert run.code == 4, run
        assert run.states() == {healthy.name: "active", frozen.name: "active",
                                cut.name: "not_available"}, run
        assert run.wall < WALL_BOUND, run

        run = meta(pool, "status")
        assert run.code == 4, run
        rows = [line.split()[:3] for line in run.out.splitlines()]
        assert [healthy.name, "sl", "active"] in rows, run
        assert [frozen.name, "sl", "active"] in rows, run
        assert f"{cut.name}: not_available" in run.out, run
        assert run.wall < WALL_BOUND, run

        run = meta(pool, "--node", cut.name, "list")
        assert run.code == 1, run

        os.kill(frozen.pid, signal.SIGSTOP)
        try:
            wait_stopped(frozen.pid)
            run = meta(pool, "--json", "nodes")
            assert run.code == 4, run
            assert run.states() == {healthy.name: "active", frozen.name: "unresponsive",
                                    cut.name: "not_available"}, run
            assert run.wall < WALL_BOUND, run
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
    finally:
        ip("link", "set", cut.host_veth, "up")
    run = wait_states(pool, {n: "active" for n in names})
    assert run.code == 0, run


def test_netns_a_client_without_keys_gets_no_answer(netns_pool, tmp_path):
    """Over the node's real namespace address: no keys, or keys it does not admit, get nothing
    (circusmeta: not_available, with the handshake's reason), while the keyed pool works."""
    from circus.security.keys import ClientKeys, write_keypair

    pool, net = netns_pool
    node = net.nodes[0]
    assert answers(node.endpoint, 1.0, net.admin(node))
    assert not answers(node.endpoint, 1.0)
    _, stranger = write_keypair(str(tmp_path / "stranger"), "stranger")
    assert not answers(node.endpoint, 1.0, ClientKeys.load(stranger, str(node.public_key)))

    bare = write_pool(tmp_path / "bare.ini", [(n.name, n.endpoint, "ns") for n in net.nodes])
    run = meta(bare, "--json", "nodes")
    assert run.code == 1, run
    assert set(run.states().values()) == {"not_available"}, run
    assert all("give its server_key" in r["error"] for r in run.json()["nodes"]), run

    run = meta(pool, "--json", "nodes")
    assert run.code == 0, run
    assert set(run.states().values()) == {"active"}, run
