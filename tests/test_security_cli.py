"""The command-line tools and circusd's helper processes under CURVE, tier 2: one real circusd
with CURVE on ipc:// endpoints in tmp_path (circusd-stats and a statsd plugin started by it), the
tools run as subprocesses with keys written by ``circusctl keygen``'s library function."""
from __future__ import annotations

import os
import select
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from circus.security.keys import ClientKeys, load_keypair, load_public, write_keypair
from conftest import Circusd

pytestmark = pytest.mark.real

PY = sys.executable
NODE = "secnode"


def tool(module: str, *args: str, env: dict | None = None, cwd: Path | None = None,
         timeout: float = 20.0) -> subprocess.CompletedProcess:
    full = {**os.environ, **(env or {})}
    for var in ("CIRCUSCTL_CURVE_KEY", "CIRCUSCTL_SERVER_KEY", "CIRCUSCTL_ENDPOINT"):
        if env is None or var not in env:
            full.pop(var, None)
    return subprocess.run([PY, "-m", module, *args], capture_output=True, text=True, env=full,
                          cwd=cwd, timeout=timeout)


def ctl(*args: str, **kw) -> subprocess.CompletedProcess:
    return tool("circus.cli.circusctl", *args, **kw)


class Node:
    """The CURVE node: its endpoints, key files and clients directory."""

    def __init__(self, root: Path, udp: socket.socket) -> None:
        self.root = root
        self.udp = udp
        self.keys = root / "keys"
        self.clients = root / "clients"
        for role in ("admin", "operator", "readonly"):
            (self.clients / role).mkdir(parents=True)
        write_keypair(str(root), "node")
        for name, role in (("admin", "admin"), ("ro", "readonly"), ("viewer", "readonly")):
            public, _ = write_keypair(str(self.keys), name)
            os.link(public, self.clients / role / f"{name}.key")
        write_keypair(str(self.keys), "late")           # authorized later, by a test
        write_keypair(str(self.keys), "stranger")       # never authorized
        self.control = f"ipc://{root}/control.sock"
        self.events = f"ipc://{root}/events.sock"
        self.stats = f"ipc://{root}/stats.sock"
        self.daemon = Circusd(root)

    def key(self, name: str) -> list[str]:
        return ["--curve-key", str(self.keys / f"{name}.key_secret"),
                "--server-key", str(self.root / "node.key")]

    def client_keys(self, name: str) -> ClientKeys:
        return ClientKeys.load(str(self.keys / f"{name}.key_secret"), str(self.root / "node.key"))

    def ctl(self, name: str | None, *args: str, **kw) -> subprocess.CompletedProcess:
        keys = self.key(name) if name else []
        return ctl("--endpoint", self.control, *keys, *args, **kw)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    root = tmp_path_factory.mktemp("curve")
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.05)
    n = Node(root, udp)
    n.daemon.start(f"""
        [circus]
        name = {NODE}
        endpoint = {n.control}
        pubsub_endpoint = {n.events}
        stats_endpoint = {n.stats}
        statsd = true
        stats_interval = 0.2
        multicast_endpoint =
        curve_secret_key = node.key_secret
        curve_clients = clients

        [watcher:sleeper]
        cmd = sleep 300

        [plugin:fs]
        use = circus.plugins.statsd.FullStats
        host = 127.0.0.1
        port = {udp.getsockname()[1]}
        application_name = sec
        loop_rate = 0.2

        [plugin:ev]
        use = circus.plugins.statsd.StatsdEmitter
        host = 127.0.0.1
        port = {udp.getsockname()[1]}
        application_name = sec
    """)
    n.daemon.wait(lambda: (root / "control.sock").exists(), what="control socket")
    try:
        yield n
    finally:
        try:
            n.daemon.stop()
        finally:
            n.daemon.cleanup()
            udp.close()


class Sub:
    """A SUB socket on the stats endpoint, keyed or not; every wait has a deadline."""

    def __init__(self, ctx: zmq.Context, endpoint: str, keys: ClientKeys | None) -> None:
        self.sock = ctx.socket(zmq.SUB)
        self.sock.linger = 0
        if keys is not None:
            keys.apply(self.sock)
        self.sock.subscribe(b"")
        self.sock.connect(endpoint)
        self.count = 0
        self.last = 0.0

    def pump(self, seconds: float) -> int:
        """Read for ``seconds``; returns how many messages came."""
        got = 0
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if self.sock.poll(max(0, int(left * 1000))):
                while True:
                    try:
                        self.sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    got += 1
                self.last = time.monotonic()
            if left <= 0:
                break
        self.count += got
        return got

    def wait_message(self, timeout: float = 10.0, what: str = "stats") -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.pump(0.1):
                return
        pytest.fail(f"no {what} within {timeout} s")


@pytest.fixture
def sub():
    """``sub(endpoint, keys)`` -> a Sub; all closed at the end."""
    ctx = zmq.Context()
    made: list[Sub] = []

    def make(endpoint: str, keys: ClientKeys | None) -> Sub:
        made.append(Sub(ctx, endpoint, keys))
        return made[-1]
    yield make
    for s in made:
        s.sock.close(0)
    ctx.term()


# -- keygen and the key flags (no daemon) ---------------------------------------------------------

def test_keygen_writes_loadable_files_and_refuses_to_overwrite(tmp_path):
    res = ctl("keygen", "alice", "--dir", str(tmp_path / "k"))
    assert res.returncode == 0, res.stderr
    public, secret = tmp_path / "k" / "alice.key", tmp_path / "k" / "alice.key_secret"
    assert str(public) in res.stdout and str(secret) in res.stdout
    assert "curve_clients/<role>/" in res.stdout
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    pair = load_keypair(str(secret))
    assert load_public(str(public)).public == pair.public
    first = secret.read_bytes()

    again = ctl("keygen", "alice", "--dir", str(tmp_path / "k"))
    assert again.returncode == 2 and "exists" in again.stderr and "--force" in again.stderr
    assert secret.read_bytes() == first                       # untouched

    forced = ctl("keygen", "alice", "--dir", str(tmp_path / "k"), "--force")
    assert forced.returncode == 0 and load_keypair(str(secret)).public != pair.public

    here = ctl("keygen", "bob", cwd=tmp_path)                  # default: the current directory
    assert here.returncode == 0 and (tmp_path / "bob.key_secret").exists()
    bad = ctl("keygen", "../evil", cwd=tmp_path)
    assert bad.returncode == 2 and "invalid key name" in bad.stderr
    listing = ctl("help")
    assert listing.returncode == 0 and "keygen" in listing.stdout
    assert "--curve-key" in listing.stdout and "--server-key" in listing.stdout


def test_key_flags_usage_errors(tmp_path):
    _, secret = write_keypair(str(tmp_path), "me")
    public, _ = write_keypair(str(tmp_path), "srv")
    endpoint = f"ipc://{tmp_path}/nobody.sock"
    half = ctl("--endpoint", endpoint, "--curve-key", secret, "list")
    assert half.returncode == 2 and "needs --server-key" in half.stderr
    half_env = ctl("--endpoint", endpoint, "list", env={"CIRCUSCTL_SERVER_KEY": public})
    assert half_env.returncode == 2 and "needs --curve-key" in half_env.stderr
    missing = ctl("--endpoint", endpoint, "--curve-key", str(tmp_path / "none.key_secret"),
                  "--server-key", public, "list")
    assert missing.returncode == 2 and "none.key_secret: no such key file" in missing.stderr
    public_only = ctl("--endpoint", endpoint, "--curve-key", public, "--server-key", public, "list")
    assert public_only.returncode == 2 and "holds only a public key" in public_only.stderr
    assert "Traceback" not in missing.stderr + public_only.stderr
    for module in ("circus.cli.top", "circus.cli.stats"):
        res = tool(module, "--curve-key", secret, "--once" if module.endswith("top") else
                   "--interval=1")
        assert res.returncode == 2 and "needs --server-key" in res.stderr, (module, res.stderr)
    res = tool("circus.cli.stats", "--curve-clients", str(tmp_path))
    assert res.returncode == 2 and "--curve-clients needs --curve-key" in res.stderr
    res = tool("circus.cli.plugin", "--curve-key", str(tmp_path / "x"), "--server-key", public,
               "circus.plugins.statsd.StatsdEmitter")
    assert res.returncode == 2 and "no such key file" in res.stderr


def test_helper_command_lines_carry_the_node_key():
    from circus.config.plugin_watchers import plugin_argv
    from circus.config.schema import CircusOptions, PluginConfig
    from circus.config.stats_watcher import stats_argv
    plain = CircusOptions()
    assert "--curve-key" not in stats_argv(plain, "py")
    curve = CircusOptions(curve_secret_key="/k/n.key_secret", curve_clients="/k/clients")
    argv = stats_argv(curve, "py")
    assert argv[argv.index("--curve-key") + 1] == argv[argv.index("--server-key") + 1] \
        == "/k/n.key_secret"
    assert argv[argv.index("--curve-clients") + 1] == "/k/clients"
    argv = plugin_argv(curve, PluginConfig("p", "pkg.Plugin"), "py")
    assert argv[-1] == "pkg.Plugin" and "--curve-clients" not in argv
    assert argv[argv.index("--curve-key") + 1] == argv[argv.index("--server-key") + 1] \
        == "/k/n.key_secret"


def test_clients_directory_reread_only_on_change(tmp_path):
    from circus.security.keyring import Keyring
    from circus.stats.streamer import ClientsDirectory
    (tmp_path / "c" / "readonly").mkdir(parents=True)
    own, _ = write_keypair(str(tmp_path), "node")
    a, _ = write_keypair(str(tmp_path / "k"), "a")
    os.link(a, tmp_path / "c" / "readonly" / "a.key")
    server = load_public(own).public
    watch = ClientsDirectory(Keyring.load(str(tmp_path / "c"), server), server)
    assert watch.reread() is None                        # nothing changed
    b, _ = write_keypair(str(tmp_path / "k"), "b")
    os.link(b, tmp_path / "c" / "readonly" / "b.key")
    assert watch.reread() == set()                       # added, none removed
    assert {i.name for i in watch.keyring.keys.values()} == {"a", "b", "circusd"}
    os.unlink(tmp_path / "c" / "readonly" / "a.key")
    assert watch.reread() == {load_public(a).public.decode()}
    (tmp_path / "c" / "readonly" / "bad.key").write_text("garbage\n")
    assert watch.reread() is None                        # unusable: the keys in force are kept
    assert {i.name for i in watch.keyring.keys.values()} == {"b", "circusd"}


# -- circusctl against the CURVE node -------------------------------------------------------------

def test_admin_key_works_and_no_key_times_out(node):
    res = node.ctl("admin", "status")
    assert res.returncode == 0, res.stderr
    assert "sleeper: active" in res.stdout and "circusd-stats: active" in res.stdout
    env = {"CIRCUSCTL_CURVE_KEY": str(node.keys / "admin.key_secret"),
           "CIRCUSCTL_SERVER_KEY": str(node.root / "node.key")}
    from_env = ctl("--endpoint", node.control, "list", env=env)
    assert from_env.returncode == 0 and "sleeper" in from_env.stdout
    after = node.ctl(None, "list", *node.key("admin"))          # the flags after the command
    assert after.returncode == 0 and "sleeper" in after.stdout, after.stderr
    plain = node.ctl(None, "--timeout", "0.5", "list")
    assert plain.returncode == 1 and "needs CURVE keys (--curve-key/--server-key)" in plain.stderr
    stranger = node.ctl("stranger", "--timeout", "0.5", "list")
    assert stranger.returncode == 1


def test_readonly_key_reads_but_cannot_add(node):
    listed = node.ctl("ro", "list")
    assert listed.returncode == 0 and "sleeper" in listed.stdout
    status = node.ctl("ro", "status", "sleeper")
    assert status.returncode == 0 and "active" in status.stdout
    add = node.ctl("ro", "add", "intruder", "sleep 1")
    assert add.returncode == 3 and "forbidden" in add.stderr + add.stdout
    after = node.ctl("admin", "list")
    assert "intruder" not in after.stdout


def test_listen_and_progress_with_keys(node):
    listen = subprocess.Popen([PY, "-m", "circus.cli.circusctl", "--endpoint", node.events,
                               *node.key("ro"), "listen", "watcher.sleeper."],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        seen = b""
        deadline = time.monotonic() + 15
        while b"watcher.sleeper.spawn" not in seen:   # restart until the subscription is in place
            assert time.monotonic() < deadline, f"no event from listen: {seen!r}"
            assert listen.poll() is None, listen.stderr.read()
            res = node.ctl("admin", "restart", "sleeper")
            assert res.returncode == 0, res.stderr
            end = time.monotonic() + 0.5
            while (left := end - time.monotonic()) > 0:
                if select.select([listen.stdout], [], [], left)[0]:
                    seen += os.read(listen.stdout.fileno(), 65536)
    finally:
        listen.send_signal(signal.SIGINT)
        try:
            listen.wait(5)
        except subprocess.TimeoutExpired:
            listen.kill()
            listen.wait(5)
        listen.stdout.close()
        listen.stderr.close()
    # the progress lines of a waiting command come from a keyed subscriber too
    res = node.ctl("admin", "--progress", "restart", "sleeper", "--waiting")
    assert res.returncode == 0, res.stderr
    assert "sleeper: started process" in res.stderr


# -- the helpers started by circusd ---------------------------------------------------------------

def test_circusd_stats_serves_keyed_subscribers_only(node, sub):
    keyed = sub(node.stats, node.client_keys("ro"))
    keyed.wait_message()
    plain = sub(node.stats, None)
    stranger = sub(node.stats, node.client_keys("stranger"))
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        keyed.pump(0.05)
        plain.pump(0.0)
        stranger.pump(0.0)
    assert keyed.count > 10
    assert plain.count == 0 and stranger.count == 0


def test_circusd_stats_rereads_the_clients_directory(node, sub):
    admin = sub(node.stats, node.client_keys("admin"))
    viewer = sub(node.stats, node.client_keys("viewer"))
    admin.wait_message()
    viewer.wait_message()
    # revoked: the viewer's stream stops, the admin's goes on after reconnecting
    os.rename(node.clients / "readonly" / "viewer.key", node.root / "viewer.key.revoked")
    deadline = time.monotonic() + 10
    while True:
        mark = time.monotonic()
        admin.pump(0.05)
        viewer.pump(0.0)
        if mark - viewer.last > 1.5 and mark - admin.last < 0.5:
            break
        assert time.monotonic() < deadline, "the revoked key still receives stats"
    # added: a new key is admitted without restarting anything
    os.link(node.keys / "late.key", node.clients / "readonly" / "late.key")
    late = sub(node.stats, node.client_keys("late"))
    t0 = time.monotonic()
    while late.count == 0:
        # refused before the re-read, a subscriber gives up: a fresh one then
        if late.pump(0.3) == 0 and time.monotonic() - t0 > 0.6:
            late = sub(node.stats, node.client_keys("late"))
            t0 = time.monotonic()
        assert time.monotonic() < deadline + 10, "the added key never received stats"


def test_plugin_started_by_circusd_is_connected(node):
    """StatsdEmitter counts events (its subscription) and FullStats sends gauges from ``stats``
    calls (its control client): both under CURVE."""
    received: list[str] = []
    deadline = time.monotonic() + 15
    while not (any(line.startswith("circus.sec.watcher._stats.sleeper.watchers_num:1|g")
                   for line in received) and
               any(line.startswith("circus.sec.watcher.sleeper.spawn:1|c") for line in received)):
        assert time.monotonic() < deadline, f"no metrics from the plugin: {received[-5:]}"
        assert node.ctl("admin", "restart", "sleeper").returncode == 0
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            try:
                received.append(node.udp.recv(65536).decode())
            except TimeoutError:
                pass
    argv = node.ctl("admin", "get", "plugin:fs", "cmd").stdout
    assert "--curve-key" in argv and "--server-key" in argv


def test_circus_top_once_with_keys(node):
    res = tool("circus.cli.top", "--once", "--wait", "10", "--endpoint", node.stats,
               *node.key("ro"))
    assert res.returncode == 0, res.stderr
    assert NODE in res.stdout and "sleeper" in res.stdout
    plain = tool("circus.cli.top", "--once", "--wait", "0.5", "--endpoint", node.stats)
    assert plain.returncode == 1 and "CURVE" in plain.stderr


def test_pool_file_keys_for_circusctl_node_and_circus_top(node, tmp_path):
    pool = tmp_path / "pool.ini"
    node_section = (f"[node:{NODE}]\nendpoint = {node.control}\npubsub_endpoint = {node.events}\n"
                    f"stats_endpoint = {node.stats}\nserver_key = {node.root / 'node.key'}\n")
    pool.write_text(f"[meta]\nclient_key = {node.keys / 'ro.key_secret'}\n" + node_section)
    res = ctl("--pool", str(pool), "--node", NODE, "list")
    assert res.returncode == 0 and "sleeper" in res.stdout, res.stderr
    res = tool("circus.cli.top", "--once", "--wait", "10", "--pool", str(pool))
    assert res.returncode == 0 and NODE in res.stdout, res.stderr
    # the flags win over the pool's keys
    res = ctl("--pool", str(pool), "--node", NODE, "--timeout", "0.5", *node.key("stranger"), "list")
    assert res.returncode == 1
    pool.write_text(node_section)                       # a server key, no client key
    res = ctl("--pool", str(pool), "--node", NODE, "list")
    assert res.returncode == 2 and "client_key" in res.stderr
    res = tool("circus.cli.top", "--once", "--pool", str(pool))
    assert res.returncode == 2 and "client_key" in res.stderr
