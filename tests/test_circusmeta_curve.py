"""circusmeta and CURVE: the pool file's keys, real CURVE circusd nodes on ipc:// in tmp_path.

- the pool file: key paths relative to it, the pairing rules, key files missing or malformed
  (pool errors naming file, section and key);
- two CURVE nodes: ``status --all`` with an admin key; a readonly key is ``forbidden`` (every
  node refused: exit 3; one node refused, one did it: exit 4); a wrong ``server_key`` or a key
  the node does not admit makes that node ``not_available`` while the other answers (exit 4);
- ``circusmeta proxy`` as a CURVE server: a keyed subscriber gets the nodes' events, an unkeyed
  one nothing; a network bind without CURVE is refused (exit 2);
- ``examples/curve-pool``: its make-keys.sh, both nodes from its configs, ``circusmeta status``.

circusmeta runs as a subprocess, as an operator runs it; the daemons are ended by pid.
"""
from __future__ import annotations

import json
import os
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
import zmq

from circus.config import ConfigError
from circus.security.keys import ClientKeys, load_public, write_keypair
from conftest import ROOT, Circusd, proc_alive

META = [sys.executable, "-c", "import sys; from circusmeta.cli import main; sys.exit(main())"]
TIMEOUT = 1.0                      # the pools' [meta] timeout
WATCHER = """
[watcher:sleeper]
cmd = sleep 3611
graceful_timeout = 1
"""


@dataclass(repr=False)
class Run:
    code: int
    out: str
    err: str

    def json(self) -> dict:
        return json.loads(self.out)

    def __str__(self) -> str:
        return f"exit {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}"

    __repr__ = __str__


def meta(pool: Path, *args: str, deadline: float = 30.0) -> Run:
    proc = subprocess.run([*META, "--pool", str(pool), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=deadline, stdin=subprocess.DEVNULL)
    return Run(proc.returncode, proc.stdout, proc.stderr)


# -- keys and nodes -----------------------------------------------------------------------------

@dataclass
class Keys:
    """Node pairs node1/node2, client pairs admin/readonly/stranger, and each node's clients
    directory (admin/admin.key, readonly/readonly.key; stranger is in none)."""

    root: Path

    @classmethod
    def make(cls, root: Path) -> "Keys":
        for node in ("node1", "node2"):
            write_keypair(str(root / "nodes"), node)
            for role in ("admin", "readonly"):
                (root / node / "clients" / role).mkdir(parents=True)
        for name in ("admin", "readonly", "stranger"):
            write_keypair(str(root / "own"), name)
        for node in ("node1", "node2"):
            for role in ("admin", "readonly"):
                shutil.copy(root / "own" / f"{role}.key", root / node / "clients" / role)
        return cls(root)

    def public(self, node: str) -> Path:
        return self.root / "nodes" / f"{node}.key"

    def secret(self, name: str) -> Path:
        return self.root / "own" / f"{name}.key_secret"

    def node_secret(self, node: str) -> Path:
        return self.root / "nodes" / f"{node}.key_secret"

    def clients(self, node: str) -> Path:
        return self.root / node / "clients"


def answers(endpoint: str, keys: ClientKeys, timeout: float = 0.5) -> bool:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    try:
        keys.apply(sock)
        sock.connect(endpoint)
        sock.send(json.dumps({"id": "probe", "command": "nodeinfo", "properties": {}}).encode())
        return bool(sock.poll(int(timeout * 1000)))
    finally:
        sock.close()


def start_node(directory: Path, name: str, keys: Keys) -> Circusd:
    directory.mkdir(parents=True, exist_ok=True)
    d = Circusd(directory)
    d.write(f"""
        [circus]
        endpoint = ipc://{directory}/control.sock
        pubsub_endpoint = ipc://{directory}/events.sock
        curve_secret_key = {keys.node_secret(name)}
        curve_clients = {keys.clients(name)}
        """ + WATCHER)
    d.start(None, "--name", name)
    admin = ClientKeys.load(str(keys.secret("admin")), str(keys.public(name)))
    d.wait(lambda: answers(f"ipc://{directory}/control.sock", admin), 20, f"{name} answering")
    d.wait(lambda: d.children("sleep"), 10, f"{name}'s sleeper")
    return d


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    """Two CURVE nodes sharing the client keys; (keys, {name: Circusd})."""
    root = tmp_path_factory.mktemp("curve")
    keys = Keys.make(root / "keys")
    daemons: dict[str, Circusd] = {}
    try:
        for name in ("node1", "node2"):
            daemons[name] = start_node(root / name, name, keys)
        yield keys, daemons
    finally:
        for d in daemons.values():
            d.cleanup()


def write_pool(path: Path, daemons: dict[str, Circusd], meta_lines: str = "",
               node_lines: dict[str, str] | None = None) -> Path:
    text = f"[meta]\ntimeout = {TIMEOUT:g}\n{textwrap.dedent(meta_lines)}"
    for name, d in daemons.items():
        text += (f"\n[node:{name}]\nendpoint = ipc://{d.dir}/control.sock\n"
                 f"pubsub_endpoint = ipc://{d.dir}/events.sock\n"
                 + textwrap.dedent((node_lines or {}).get(name, "")))
    path.write_text(text)
    return path


def keyed_pool(path: Path, keys: Keys, daemons: dict[str, Circusd], client: str = "admin",
               server: dict[str, str] | None = None, meta_lines: str = "",
               node_lines: dict[str, str] | None = None) -> Path:
    """Each node with its server_key (``server`` maps a node to another node's public key),
    ``[meta] client_key`` the pair ``client``."""
    server = server or {}
    lines = {n: f"server_key = {keys.public(server.get(n, n))}\n" + (node_lines or {}).get(n, "")
             for n in daemons}
    return write_pool(path, daemons, f"client_key = {keys.secret(client)}\n"
                      + textwrap.dedent(meta_lines), lines)


# -- the pool file (no daemon) ------------------------------------------------------------------

def test_key_paths_are_relative_to_the_pool_file_and_a_node_may_have_its_own_client_key(tmp_path):
    from circusmeta.pool import client_keys_for, load_pool, parse_pool
    keys = Keys.make(tmp_path / "etc" / "keys")
    pool = tmp_path / "etc" / "pool.ini"
    pool.write_text(textwrap.dedent("""
        [meta]
        client_key = keys/own/readonly.key_secret
        [node:node1]
        endpoint = ipc:///nowhere/1
        server_key = keys/nodes/node1.key
        [node:node2]
        endpoint = ipc:///nowhere/2
        server_key = keys/nodes/node2.key
        client_key = keys/own/admin.key_secret
        [node:plain]
        endpoint = ipc:///nowhere/3
        """))
    config = load_pool(str(pool))
    assert config.nodes["node1"].server_key == str(keys.public("node1"))
    one, two = client_keys_for(config, "node1"), client_keys_for(config, "node2")
    assert one.server == load_public(str(keys.public("node1"))).public
    assert one.public == load_public(str(keys.secret("readonly"))).public
    assert two.public == load_public(str(keys.secret("admin"))).public
    assert client_keys_for(config, "plain") is None
    with pytest.raises(KeyError, match="no node 'ghost'"):
        client_keys_for(config, "ghost")
    # parse_pool is pure: it resolves the paths without reading them
    parsed = parse_pool(pool.read_text(), str(pool))
    assert parsed.nodes["node2"].client_key == str(keys.secret("admin"))


def test_pairing_rules_are_pool_errors_naming_section_and_key():
    from circusmeta.pool import parse_pool
    text = textwrap.dedent("""
        [meta]
        proxy_secret_key = /k/proxy.key_secret
        proxy_key = /k/proxy.key
        insecure = perhaps
        [node:a]
        endpoint = ipc:///x/a
        server_key = /k/a.key
        [node:b]
        endpoint = ipc:///x/b
        client_key = /k/b.key_secret
        """)
    with pytest.raises(ConfigError) as info:
        parse_pool(text, "pool.ini")
    lines = str(info.value).splitlines()
    assert any(line.startswith("pool.ini:3: [meta] proxy_secret_key: needs proxy_clients too")
               for line in lines), lines
    assert any(line.startswith("pool.ini:4: [meta] proxy_key: needs client_key too")
               for line in lines), lines
    assert "pool.ini:5: [meta] insecure: expected true or false, got 'perhaps'" in lines, lines
    assert any(line.startswith("pool.ini:8: [node:a] server_key: needs a client key too: set "
                               "[meta] client_key") for line in lines), lines
    assert any(line.startswith("pool.ini:11: [node:b] client_key: needs server_key too")
               for line in lines), lines
    assert len(lines) == 5, lines


def test_missing_and_malformed_key_files_are_pool_errors(tmp_path):
    keys = Keys.make(tmp_path / "keys")
    (tmp_path / "bad.key").write_text("public-key = \"tooshort\"\n")
    pool = tmp_path / "pool.ini"
    pool.write_text(textwrap.dedent(f"""
        [meta]
        client_key = keys/own/nothere.key_secret
        [node:node1]
        endpoint = ipc:///nowhere/1
        server_key = bad.key
        [node:node2]
        endpoint = ipc:///nowhere/2
        server_key = {keys.public("node2")}
        client_key = keys/own/admin.key
        [node:node3]
        endpoint = ipc:///nowhere/3
        server_key = keys/nodes/node3.key
        """))
    run = meta(pool, "status")
    assert run.code == 2, run
    lines = run.err.splitlines()
    missing = tmp_path / "keys" / "own" / "nothere.key_secret"
    assert f"{pool}:3: [meta] client_key: {missing}: no such key file" in lines, run
    assert f"{pool}:6: [node:node1] server_key: {tmp_path}/bad.key: the public-key is not a " \
           f"40-character Z85 CURVE key" in lines, run
    assert f"{pool}:10: [node:node2] client_key: {keys.root}/own/admin.key: holds only a " \
           f"public key; give the .key_secret file" in lines, run
    assert f"{pool}:13: [node:node3] server_key: {keys.root}/nodes/node3.key: no such key " \
           f"file" in lines, run
    assert len(lines) == 4 and "Traceback" not in run.err, run


def test_handshake_failure_reasons():
    from circusmeta.fanout import handshake_failure
    assert "refused this client's CURVE key" in \
        handshake_failure(zmq.EVENT_HANDSHAKE_FAILED_AUTH, True, "ipc://x")
    assert "the server_key is not this node's public key" in \
        handshake_failure(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, True, "ipc://x")
    assert "give its server_key" in \
        handshake_failure(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, False, "ipc://x")


def test_exposure_rule_of_the_proxy():
    from circusmeta.live import exposure_problem
    local = {"stats": "ipc:///run/s", "events": "tcp://127.0.0.1:5571"}
    wide = {"stats": "ipc:///run/s", "events": "tcp://0.0.0.0:5571"}
    assert exposure_problem(local, False, False) is None
    assert exposure_problem(wide, True, False) is None
    refusal = exposure_problem(wide, False, False)
    assert refusal.startswith("tcp://0.0.0.0:5571 is reachable from other machines")
    assert "[meta] proxy_secret_key and proxy_clients" in refusal
    assert "[meta] insecure = true" in refusal
    assert exposure_problem(wide, False, True).startswith("[meta] insecure = true: tcp://0.0.0.0")


# -- two CURVE nodes ----------------------------------------------------------------------------

def test_status_all_with_an_admin_key(nodes, tmp_path):
    keys, daemons = nodes
    pool = keyed_pool(tmp_path / "pool.ini", keys, daemons)
    run = meta(pool, "status", "--all")
    assert run.code == 0, run
    assert "node1  sleeper  active" in run.out and "node2  sleeper  active" in run.out, run
    run = meta(pool, "--json", "nodes")
    assert run.code == 0, run
    assert {r["node"]: r["state"] for r in run.json()["nodes"]} == \
        {"node1": "active", "node2": "active"}, run


def test_without_keys_a_curve_node_is_not_available(nodes, tmp_path):
    keys, daemons = nodes
    pool = write_pool(tmp_path / "pool.ini", daemons)
    run = meta(pool, "--json", "nodes")
    assert run.code == 1, run
    rows = {r["node"]: r for r in run.json()["nodes"]}
    assert {n: r["state"] for n, r in rows.items()} == \
        {"node1": "not_available", "node2": "not_available"}, run
    assert "give its server_key" in rows["node1"]["error"], run


def test_a_readonly_key_is_forbidden_to_add(nodes, tmp_path):
    keys, daemons = nodes
    pool = keyed_pool(tmp_path / "pool.ini", keys, daemons, client="readonly")
    run = meta(pool, "status", "--all")
    assert run.code == 0, run                       # reading is allowed
    run = meta(pool, "--json", "add", "intruder", "sleep 1", "--node", "node1")
    assert run.code == 3, run                       # every node it went to refused
    assert [(p["node"], p["reply"]["code"]) for p in run.json()["placed"]] == \
        [("node1", "forbidden")], run
    run = meta(pool, "add", "intruder", "sleep 1", "--spread", "2")
    assert run.code == 3, run
    assert "intruder -> node1: failed: forbidden: 'add' needs the admin role" in run.out, run
    assert "intruder -> node2: failed: forbidden: " in run.out, run
    run = meta(pool, "--json", "--all", "incr", "sleeper")
    assert run.code == 3, run
    assert {n: r["reply"]["code"] for n, r in run.json()["nodes"].items()} == \
        {"node1": "forbidden", "node2": "forbidden"}, run
    run = meta(pool, "--all", "incr", "sleeper")
    assert run.code == 3, run
    assert "node1: error: forbidden: 'incr' needs the operator role" in run.out, run
    run = meta(pool, "list")
    assert run.code == 0 and "intruder" not in run.out, run


def test_admin_on_one_node_readonly_on_the_other_is_partial(nodes, tmp_path):
    keys, daemons = nodes
    pool = keyed_pool(tmp_path / "pool.ini", keys, daemons, client="readonly",
                      node_lines={"node1": f"client_key = {keys.secret('admin')}\n"})
    run = meta(pool, "--json", "--all", "incr", "sleeper")
    try:
        assert run.code == 4, run
        results = run.json()["nodes"]
        assert results["node1"]["ok"], run
        assert results["node2"]["reply"]["code"] == "forbidden", run
        counts = meta(pool, "--json", "numprocesses", "sleeper").json()["nodes"]
        assert {n: r["reply"]["numprocesses"] for n, r in counts.items()} == \
            {"node1": 2, "node2": 1}, counts
    finally:
        meta(pool, "--node", "node1", "decr", "sleeper")


def test_a_wrong_server_key_or_an_unknown_client_key_makes_that_node_not_available(nodes,
                                                                                  tmp_path):
    keys, daemons = nodes
    pool = keyed_pool(tmp_path / "wrong.ini", keys, daemons, server={"node2": "node1"})
    start = time.monotonic()
    run = meta(pool, "--json", "status", "--all")
    wall = time.monotonic() - start
    assert run.code == 4, run
    results = run.json()["nodes"]
    assert results["node1"]["state"] == "active" and results["node1"]["ok"], run
    assert results["node2"]["state"] == "not_available", run
    assert "the server_key is not this node's public key" in results["node2"]["error"], run
    assert wall < 20, run                           # against hanging only

    pool = keyed_pool(tmp_path / "stranger.ini", keys, daemons,
                      node_lines={"node2": f"client_key = {keys.secret('stranger')}\n"})
    run = meta(pool, "--json", "nodes")
    assert run.code == 4, run
    rows = {r["node"]: r for r in run.json()["nodes"]}
    assert rows["node1"]["state"] == "active", run
    assert rows["node2"]["state"] == "not_available", run
    assert "refused this client's CURVE key" in rows["node2"]["error"], run
    run = meta(pool, "status")
    assert run.code == 4, run
    assert "node1  sleeper  active" in run.out and "node2: not_available: " in run.out, run


def test_a_world_readable_client_key_is_warned_about(nodes, tmp_path):
    keys, daemons = nodes
    loose = tmp_path / "loose.key_secret"
    shutil.copy(keys.secret("admin"), loose)
    loose.chmod(0o644)
    pool = keyed_pool(tmp_path / "pool.ini", keys, daemons)
    pool.write_text(pool.read_text().replace(str(keys.secret("admin")), str(loose)))
    run = meta(pool, "list")
    assert run.code == 0, run
    assert f"warning: {loose}: secret key file has mode 0644" in run.err, run


# -- the proxy ----------------------------------------------------------------------------------

class Sub:
    def __init__(self, ctx: zmq.Context, endpoint: str, keys: ClientKeys | None) -> None:
        self.sock = ctx.socket(zmq.SUB)
        self.sock.linger = 0
        if keys is not None:
            keys.apply(self.sock)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(endpoint)

    def drain(self, seconds: float) -> list[str]:
        topics: list[str] = []
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self.sock.poll(int(left * 1000)):
                topics.append(self.sock.recv_multipart()[0].decode())
        return topics


@pytest.fixture
def proxy_run(tmp_path):
    procs: list[subprocess.Popen] = []

    def start(pool: Path, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen([*META, "--pool", str(pool), "proxy", *args], cwd=ROOT,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        return proc
    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            stream.close()


def test_the_proxy_with_curve_serves_keyed_subscribers_only(nodes, tmp_path, proxy_run):
    keys, daemons = nodes
    write_keypair(str(tmp_path / "proxy"), "proxy")
    (tmp_path / "subscribers" / "readonly").mkdir(parents=True)
    shutil.copy(keys.root / "own" / "readonly.key", tmp_path / "subscribers" / "readonly")
    events = f"ipc://{tmp_path}/proxy-events.sock"
    pool = keyed_pool(tmp_path / "pool.ini", keys, daemons, meta_lines=f"""
        pubsub_endpoint = {events}
        stats_endpoint = ipc://{tmp_path}/proxy-stats.sock
        proxy_secret_key = proxy/proxy.key_secret
        proxy_clients = subscribers
        """)
    proc = proxy_run(pool, "--no-stats")
    ctx = zmq.Context()
    try:
        keyed = Sub(ctx, events, ClientKeys.load(str(keys.secret("readonly")),
                                                 str(tmp_path / "proxy" / "proxy.key")))
        bare = Sub(ctx, events, None)
        stranger = Sub(ctx, events, ClientKeys.load(str(keys.secret("stranger")),
                                                    str(tmp_path / "proxy" / "proxy.key")))
        deadline, got, seen_bare = time.monotonic() + 15, [], []
        while not any(t.startswith("node2/watcher.sleeper.") for t in got):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, f"no node2 event through the proxy: {got}"
            run = meta(pool, "--node", "node2", "restart", "sleeper")
            assert run.code == 0, run
            got += keyed.drain(0.3)
            seen_bare += bare.drain(0.05) + stranger.drain(0.05)
        run = meta(pool, "--node", "node1", "restart", "sleeper")
        assert run.code == 0, run
        end = time.monotonic() + 5
        while not any(t.startswith("node1/watcher.sleeper.") for t in got):
            assert time.monotonic() < end, f"no node1 event through the proxy: {got}"
            got += keyed.drain(0.2)
        seen_bare += bare.drain(0.3) + stranger.drain(0.1)
        assert seen_bare == [], seen_bare
    finally:
        ctx.destroy(linger=0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "subscribers need CURVE" in err and "node1 (ipc://" in err and ", CURVE)" in err, err
    assert "refused a CURVE client" in err, err


def test_the_proxy_refuses_a_network_bind_without_curve(nodes, tmp_path, proxy_run):
    keys, daemons = nodes
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pool = keyed_pool(tmp_path / "pool.ini", keys, daemons,
                      meta_lines=f"stats_endpoint = ipc://{tmp_path}/s.sock\n")
    run = meta(pool, "proxy", "--no-stats", "--pubsub-endpoint", f"tcp://0.0.0.0:{port}",
               deadline=15)
    assert run.code == 2, run
    assert f"tcp://0.0.0.0:{port} is reachable from other machines and the proxy has no " \
           f"CURVE: set [meta] proxy_secret_key and proxy_clients" in run.err, run

    insecure = keyed_pool(tmp_path / "insecure.ini", keys, daemons,
                          meta_lines=f"stats_endpoint = ipc://{tmp_path}/s.sock\n"
                                     f"insecure = true\n")
    proc = proxy_run(insecure, "--no-stats", "--pubsub-endpoint", f"tcp://0.0.0.0:{port}")
    deadline = time.monotonic() + 10
    lines = []            # "connected" is logged once it runs (its SIGTERM handler is set)
    while not any(": events connected (" in line for line in lines):
        assert proc.poll() is None, "".join(lines) + proc.stderr.read()
        assert time.monotonic() < deadline, lines
        lines.append(proc.stderr.readline())
    assert any("warning: [meta] insecure = true: tcp://0.0.0.0" in line for line in lines), lines
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=10)
    assert proc.returncode == 0


# -- the example ----------------------------------------------------------------------------------

def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


EXAMPLE_PORTS = (5610, 5611, 5612, 5620, 5621, 5622, 5630, 5631)


def test_the_curve_pool_example(tmp_path):
    example = tmp_path / "curve-pool"
    shutil.copytree(ROOT / "examples" / "curve-pool", example)
    ports = dict(zip(EXAMPLE_PORTS, _free_ports(len(EXAMPLE_PORTS))))
    for name in ("pool.ini", "pool-readonly.ini", "node1.ini", "node2.ini"):
        path = example / name
        text = path.read_text()
        for old, new in ports.items():
            text = text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
        path.write_text(text)
    env = {**os.environ, "PYTHON": sys.executable}
    made = subprocess.run(["sh", str(example / "make-keys.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert made.returncode == 0, made.stdout + made.stderr
    for node in ("node1", "node2"):
        assert (example / "keys" / f"{node}.key_secret").stat().st_mode & 0o077 == 0
        assert (example / "clients" / node / "admin" / "admin.key").exists()
        assert (example / "clients" / node / "readonly" / "readonly.key").exists()
    again = subprocess.run(["sh", str(example / "make-keys.sh")], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert again.returncode != 0 and "exists" in again.stderr, again.stdout + again.stderr

    daemons = []
    try:
        for node in ("node1", "node2"):
            d = Circusd(example)
            d.config = example / f"{node}.ini"
            d.log = tmp_path / f"{node}.log"
            daemons.append(d.start())
        pool = example / "pool.ini"
        deadline = time.monotonic() + 30
        while True:
            for d in daemons:
                assert d.proc.poll() is None, d.proc.stdout.read().decode() + d.log_text()
            run = meta(pool, "status")
            rows = [line.split()[:4] for line in run.out.splitlines()]
            if run.code == 0 and rows.count(["node1", "worker", "active", "-"]) + \
                    rows.count(["node2", "worker", "active", "-"]) == 2:
                break
            assert time.monotonic() < deadline, run
            time.sleep(0.2)
        readonly = example / "pool-readonly.ini"
        run = meta(readonly, "--all", "incr", "worker")
        assert run.code == 3 and run.out.count("forbidden") == 2, run
        # the stats endpoints are CURVE servers too, with the node's key: top reads them
        run = meta(readonly, "top", "--once", "--json", "--wait", "10")
        assert run.code == 0, run
        assert run.out.count('"watcher": "worker"') >= 2, run
        assert '"node": "node1"' in run.out and '"node": "node2"' in run.out, run
        # the proxy of pool.ini (a CURVE server), read with pool-readonly.ini's proxy_key
        proxy = subprocess.Popen([*META, "--pool", str(pool), "proxy"], cwd=ROOT,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
        try:
            run = meta(readonly, "top", "--proxy", "--once", "--json", "--wait", "10")
            assert proxy.poll() is None, proxy.stderr.read()
            assert run.code == 0, run
            assert '"node": "node1"' in run.out and '"node": "node2"' in run.out, run
        finally:
            proxy.send_signal(signal.SIGTERM)
            _, err = proxy.communicate(timeout=10)
        assert proxy.returncode == 0, err
    finally:
        for d in daemons:
            if d.proc is not None and d.proc.poll() is None:
                d.stop()
            d.cleanup()
            assert not proc_alive(d.pid)


def test_curve_and_plain_nodes_share_one_socket(nodes, circusd, tmp_path):
    """The keys are set per connection of circusmeta's one socket: plain, CURVE, plain, CURVE
    in a row, each reached as it should be."""
    keys, daemons = nodes
    plain = []
    for k in range(2):
        d = circusd(None, start=False)
        d.write(f"[circus]\nendpoint = ipc://{d.dir}/plain.sock\n"
                f"pubsub_endpoint = ipc://{d.dir}/plain-events.sock\n" + WATCHER)
        d.start(None, "--name", f"plain{k}")
        d.wait(lambda d=d: (d.dir / "plain-events.sock").exists(), 20, "plain sockets")
        plain.append(d)
    text = f"[meta]\ntimeout = {TIMEOUT:g}\nclient_key = {keys.secret('admin')}\n"
    for name, endpoint, server in (
            ("plain0", f"ipc://{plain[0].dir}/plain.sock", None),
            ("node1", f"ipc://{daemons['node1'].dir}/control.sock", keys.public("node1")),
            ("plain1", f"ipc://{plain[1].dir}/plain.sock", None),
            ("node2", f"ipc://{daemons['node2'].dir}/control.sock", keys.public("node2"))):
        text += f"\n[node:{name}]\nendpoint = {endpoint}\n" + (
            f"server_key = {server}\n" if server else "")
    pool = tmp_path / "mixed.ini"
    pool.write_text(text)
    run = meta(pool, "--json", "nodes")
    assert run.code == 0, [(r["node"], r["state"], r.get("error")) for r in run.json()["nodes"]]
    assert {r["node"]: r["state"] for r in run.json()["nodes"]} == {
        "plain0": "active", "node1": "active", "plain1": "active", "node2": "active"}, run
