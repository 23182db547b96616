"""``circusmeta proxy`` at pool size, as an operator runs it, over real circusd nodes (ipc:// in
tmp_path, each with its name and circusd-stats): every message of every node arrives, stats
and events, with a CURVE node among plain ones; above ``--max-rate`` the proxy forwards the
aggregates only and says so in ``<node>/stat.degraded``, then everything again; and a pool of
hundreds of endpoints, most of them black holes or nobody, starts (its limits sized), or is
refused with the limit named when the process may not open enough files.

Every wait has a deadline and fails as soon as a child died; what is started is stopped by pid.
"""
from __future__ import annotations

import json
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq

from circus.security.keys import ClientKeys, write_keypair
from tests.conftest import ROOT

META = [sys.executable, "-m", "circusmeta.cli"]
SLEEP = f'{sys.executable} -c "import time; time.sleep(3600)"'
NODE_INI = """
[circus]
endpoint = ipc://{dir}/control.sock
pubsub_endpoint = ipc://{dir}/events.sock
stats_endpoint = ipc://{dir}/stats.sock
statsd = true
stats_interval = {interval}
{curve}
[watcher:w{name}]
cmd = {sleep}
numprocesses = {procs}
"""


class Fleet:
    """Real circusd nodes and their pool file (``[meta]`` endpoints where the proxy binds)."""

    def __init__(self, circusd, tmp_path: Path, names: list[str], interval: float = 0.2,
                 procs: int = 2, curve: tuple[str, ...] = ()) -> None:
        self.tmp = tmp_path
        self.nodes = {}
        self.keys: dict[str, ClientKeys] = {}
        keydir = tmp_path / "keys"
        if curve:
            write_keypair(str(keydir), "client")
        sections = [f"[meta]\nstats_endpoint = ipc://{tmp_path}/proxy-stats.sock\n"
                    f"pubsub_endpoint = ipc://{tmp_path}/proxy-events.sock\n"]
        for name in names:
            d = circusd(start=False)
            extra = keyed = ""
            if name in curve:
                write_keypair(str(keydir), name)
                clients = d.dir / "clients" / "admin"
                clients.mkdir(parents=True)
                shutil.copy(keydir / "client.key", clients)
                extra = (f"curve_secret_key = {keydir}/{name}.key_secret\n"
                         f"curve_clients = {d.dir}/clients\n")
                keyed = (f"server_key = {keydir}/{name}.key\n"
                         f"client_key = {keydir}/client.key_secret\n")
                self.keys[name] = ClientKeys.load(f"{keydir}/client.key_secret",
                                                  f"{keydir}/{name}.key")
            d.write(NODE_INI.format(dir=d.dir, interval=interval, curve=extra, name=name,
                                    sleep=SLEEP, procs=procs))
            d.start(None, "--name", name)
            self.nodes[name] = d
            sections.append(f"[node:{name}]\nendpoint = ipc://{d.dir}/control.sock\n"
                            f"pubsub_endpoint = ipc://{d.dir}/events.sock\n"
                            f"stats_endpoint = ipc://{d.dir}/stats.sock\n{keyed}")
        for name, d in self.nodes.items():
            d.wait(lambda d=d: (d.dir / "stats.sock").exists(), 20, f"{name}'s stats socket")
            d.wait(lambda d=d: len(d.children(sys.executable + " -c")) >= procs, 20,
                   f"{name}'s sleepers")
        self.file = tmp_path / "pool.ini"
        self.file.write_text("\n".join(sections))

    def sub(self, ctx: zmq.Context, endpoint: str, keys: ClientKeys | None = None) -> zmq.Socket:
        sock = ctx.socket(zmq.SUB)
        sock.linger = 0
        sock.rcvhwm = 0
        if keys is not None:
            keys.apply(sock)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(endpoint)
        return sock


class Proxy:
    """``circusmeta --pool P proxy ...``, its output in a file."""

    def __init__(self, pool: Path, tmp: Path, *args: str, limits=None) -> None:
        self.log = tmp / f"proxy-{time.monotonic_ns()}.log"
        self.fh = self.log.open("w")
        self.proc = subprocess.Popen([*META, "--pool", str(pool), "proxy", *args], cwd=ROOT,
                                     stdin=subprocess.DEVNULL, stdout=self.fh,
                                     stderr=subprocess.STDOUT, preexec_fn=limits)

    def text(self) -> str:
        return self.log.read_text()

    def alive(self) -> None:
        if self.proc.poll() is not None:
            pytest.fail(f"the proxy exited ({self.proc.returncode})\n{self.text()[-4000:]}")

    def wait_log(self, text: str, timeout: float = 15.0, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while self.text().count(text) < count:
            self.alive()
            if time.monotonic() > deadline:
                pytest.fail(f"no {text!r} (x{count}) in the proxy's log within {timeout} s\n"
                            f"{self.text()[-4000:]}")
            time.sleep(0.02)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            pytest.fail(f"the proxy did not stop on SIGTERM within 15 s\n{self.text()[-4000:]}")
        finally:
            self.fh.close()


@pytest.fixture
def proxies():
    started: list[Proxy] = []

    def start(*args, **kwargs) -> Proxy:
        proxy = Proxy(*args, **kwargs)
        started.append(proxy)
        return proxy
    yield start
    for proxy in started:
        proxy.stop()


def drain(sock: zmq.Socket, into: list, seconds: float) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if sock.poll(max(1, int(left * 1000))):
            while True:
                try:
                    into.append(tuple(sock.recv_multipart(zmq.NOBLOCK)))
                except zmq.Again:
                    break


def until(proxy: Proxy, sock: zmq.Socket, got: list, want, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not want(got):
        proxy.alive()
        if time.monotonic() > deadline:
            topics = sorted({t.decode(errors="replace") for t, *_ in got})
            pytest.fail(f"timed out after {timeout} s waiting for {what}; topics: {topics[:60]}"
                        f"\n{proxy.text()[-3000:]}")
        drain(sock, got, 0.1)


# -- every message --------------------------------------------------------------------------------

def test_every_message_of_every_node_arrives_stats_and_events(circusd, tmp_path, proxies):
    names = ["n1", "n2", "n3", "n4"]
    fleet = Fleet(circusd, tmp_path, names, curve=("n3",))
    proxy = proxies(fleet.file, tmp_path)
    proxy.wait_log(": stats connected", count=4)
    ctx = zmq.Context()
    try:
        stats = fleet.sub(ctx, f"ipc://{tmp_path}/proxy-stats.sock")
        events = fleet.sub(ctx, f"ipc://{tmp_path}/proxy-events.sock")
        got: list = []
        until(proxy, stats, got, lambda g: {t for t, _ in g} >= {f"{n}/stat.node".encode()
                                                                 for n in names},
              20, "a node view of every node through the proxy")
        # the same stream read at each node: every message of it must come through the proxy
        direct = {n: fleet.sub(ctx, f"ipc://{d.dir}/stats.sock", fleet.keys.get(n))
                  for n, d in fleet.nodes.items()}
        seen: dict[str, list] = {n: [] for n in names}
        deadline = time.monotonic() + 20
        while not all(any(t.endswith(b"/stat.node") for t, _ in seen[n]) for n in names):
            assert time.monotonic() < deadline, {n: len(v) for n, v in seen.items()}
            for n, sock in direct.items():
                drain(sock, seen[n], 0.02)
            drain(stats, got, 0.01)
        for n, sock in direct.items():                # a little more: several rounds each
            drain(sock, seen[n], 0.3)
            sock.close()
        # (the unprefixed copies a node sends while the proxy's probe for 0.19 nodes listens
        # are for 0.19's subscribers: the proxy does not republish them)
        wanted = {(t, b) for n in names for t, b in seen[n] if not t.startswith(b"stat.")}
        until(proxy, stats, got, lambda g: wanted <= set(g), 10,
              f"the {len(wanted)} messages read at the nodes")
        for n in names:
            assert all(t.startswith((f"{n}/stat.".encode(), b"stat.")) for t, _ in seen[n]), n
            processes = {t for t, _ in seen[n] if t.startswith(f"{n}/stat.w{n}.".encode())}
            assert len(processes) >= 2, (n, sorted(processes))
        assert not [t for t, _ in got if not any(t.startswith(f"{n}/stat.".encode())
                                                 for n in names)]

        # events: each node's spawn, as the node publishes it, prefixed with its name
        direct_events = {n: fleet.sub(ctx, f"ipc://{d.dir}/events.sock", fleet.keys.get(n))
                         for n, d in fleet.nodes.items()}
        time.sleep(0.3)                               # the subscriptions reach the nodes
        for n in names:
            res = subprocess.run([*META, "--pool", str(fleet.file), "--node", n, "incr", f"w{n}"],
                                 capture_output=True, text=True, timeout=30, cwd=ROOT)
            assert res.returncode == 0, res.stdout + res.stderr
        at_nodes: dict[str, list] = {n: [] for n in names}
        deadline = time.monotonic() + 15
        while not all(any(t == f"watcher.w{n}.spawn".encode() for t, _ in at_nodes[n])
                      for n in names):
            assert time.monotonic() < deadline, at_nodes
            for n, sock in direct_events.items():
                drain(sock, at_nodes[n], 0.05)
        wanted_events = {(f"{n}/".encode() + t, b) for n in names for t, b in at_nodes[n]}
        republished: list = []
        until(proxy, events, republished, lambda g: wanted_events <= set(g), 10,
              "every event through the proxy")
        assert {t.split(b"/")[0] for t, _ in republished} <= {n.encode() for n in names}
    finally:
        ctx.destroy(linger=0)
    assert proxy.stop() == 0
    text = proxy.text()
    assert "Traceback" not in text and "stopped (" in text
    assert "n3 (ipc://" in text and ", CURVE)" in text


# -- above the ceiling ------------------------------------------------------------------------------

def _detail(topic: bytes, body: bytes) -> bool:
    last = topic.rpartition(b".")[2]
    return last.isdigit() and b'"pid": [' not in body


def test_above_max_rate_only_aggregates_with_a_notice_then_everything_again(circusd, tmp_path,
                                                                            proxies):
    names = ["n1", "n2", "n3"]
    # 7 messages a round (1 process, its aggregate, circusd and circusd-stats, their
    # aggregate, the sockets' totals, the node view) 10 times a second: about 210 msg/s
    fleet = Fleet(circusd, tmp_path, names, interval=0.1, procs=1)
    proxy = proxies(fleet.file, tmp_path, "--no-events", "--max-rate", "100")
    proxy.wait_log(": stats connected", count=3)
    proxy.wait_log("stats in full up to 100 messages/s")
    ctx = zmq.Context()
    try:
        stats = fleet.sub(ctx, f"ipc://{tmp_path}/proxy-stats.sock")
        got: list = []

        def notified(g):
            return {json.loads(b)["node"] for t, b in g
                    if t.endswith(b"/stat.degraded") and json.loads(b)["degraded"]} >= set(names)
        until(proxy, stats, got, notified, 20, "a degraded notice of every node")
        proxy.wait_log("stats degraded: the pool's stats arrive at")
        notice = next(json.loads(b) for t, b in got if t == b"n1/stat.degraded")
        assert notice["by"] == "circusmeta proxy" and notice["max_rate"] == 100
        assert notice["rate"] > 100 and "above the proxy's max_rate of 100" in notice["reason"]
        # after its first notice, a node's per-process messages stop; its aggregates go on
        first = {}
        for i, (t, b) in enumerate(got):
            node = t.split(b"/")[0].decode()
            if t.endswith(b"/stat.degraded"):
                first.setdefault(node, i)
        later: list = []
        drain(stats, later, 2.0)
        after = [(t, b) for i, (t, b) in enumerate(got) if i > first[t.split(b"/")[0].decode()]]
        after += later
        assert not [t for t, b in after if _detail(t, b)], "per-process messages while degraded"
        for n in names:
            topics = {t for t, _ in later}
            assert {f"{n}/stat.w{n}".encode(), f"{n}/stat.circus".encode(),
                    f"{n}/stat.node".encode(), f"{n}/stat.sockets".encode()} <= topics, n
            counted = [json.loads(b) for t, b in later if t == f"{n}/stat.degraded".encode()]
            assert counted and sum(c["dropped"] for c in counted) > 0, n

        # circusmeta top through the degraded proxy: the watchers are there, said degraded
        res = subprocess.run([*META, "--pool", str(fleet.file), "top", "--proxy", "--once",
                              "--wait", "10"], capture_output=True, text=True, timeout=30,
                             cwd=ROOT)
        assert res.returncode == 0, res.stdout + res.stderr
        for n in names:
            line = next(line for line in res.stdout.splitlines() if line.startswith(f"{n}  "))
            assert "[proxy: aggregates only]" in line, res.stdout
            assert f"w{n} (1)" in res.stdout

        # two nodes go: about 70 msg/s, under 0.8 x 100: everything is forwarded again
        for n in ("n2", "n3"):
            assert fleet.nodes[n].stop() == 0
        back: list = []
        until(proxy, stats, back, lambda g: any(t == b"n1/stat.degraded"
                                                and json.loads(b)["degraded"] is False
                                                for t, b in g), 20, "n1's last notice")
        proxy.wait_log("stats full detail again")
        until(proxy, stats, back, lambda g: any(t.startswith(b"n1/stat.wn1.") for t, _ in g), 10,
              "n1's processes again")
    finally:
        ctx.destroy(linger=0)
    assert proxy.stop() == 0
    text = proxy.text()
    assert "stopped (" in text and "degraded 1 time, " in text and "Traceback" not in text


# -- hundreds of endpoints -------------------------------------------------------------------------

class BlackHoles:
    """Listening TCP ports that accept and never read or write (a frozen peer)."""

    def __init__(self, count: int) -> None:
        self.selector = selectors.DefaultSelector()
        self.listeners, self.accepted = [], []
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(16)
            s.setblocking(False)
            self.selector.register(s, selectors.EVENT_READ)
            self.listeners.append(s)
        self.ports = [s.getsockname()[1] for s in self.listeners]
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            for key, _ in self.selector.select(0.1):
                try:
                    conn, _ = key.fileobj.accept()
                except OSError:
                    continue
                self.accepted.append(conn)

    def close(self) -> None:
        self.done.set()
        self.thread.join(5)
        for s in self.listeners + self.accepted:
            s.close()
        self.selector.close()


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _soft_nofile(limit: int):
    def apply() -> None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    return apply


def _nofile(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    return apply


def test_hundreds_of_endpoints_most_of_them_dead_start_or_are_refused_clearly(
        circusd, tmp_path, proxies):
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 4096:
        pytest.skip("this test needs a hard RLIMIT_NOFILE of 4096 or more to raise the soft one")
    fleet = Fleet(circusd, tmp_path, ["live1", "live2"])
    holes = BlackHoles(100)
    try:
        free = _free_ports(98)
        pool = fleet.file.read_text()
        for i, port in enumerate(holes.ports):
            pool += (f"\n[node:hole{i}]\nendpoint = tcp://127.0.0.1:{port}\n"
                     f"stats_endpoint = tcp://127.0.0.1:{port}\n"
                     f"pubsub_endpoint = tcp://127.0.0.1:{port}\n")
        for i, port in enumerate(free):
            pool += (f"\n[node:nobody{i}]\nendpoint = tcp://127.0.0.1:{port}\n"
                     f"stats_endpoint = tcp://127.0.0.1:{port}\n"
                     f"pubsub_endpoint = tcp://127.0.0.1:{port}\n")
        big = tmp_path / "big.ini"
        big.write_text(pool)

        # with events, from a soft limit of 1024: the proxy raises it and follows the live ones
        proxy = proxies(big, tmp_path, limits=_soft_nofile(1024))
        proxy.wait_log("200 nodes: ")
        proxy.wait_log("open files limit (RLIMIT_NOFILE) raised from 1,024 to ")
        ctx = zmq.Context()
        try:
            stats = fleet.sub(ctx, f"ipc://{tmp_path}/proxy-stats.sock")
            events = fleet.sub(ctx, f"ipc://{tmp_path}/proxy-events.sock")
            got: list = []
            until(proxy, stats, got, lambda g: {b"live1/stat.node", b"live2/stat.node"} <=
                  {t for t, _ in g}, 20, "both live nodes' stats")
            time.sleep(0.3)
            res = subprocess.run([*META, "--pool", str(fleet.file), "incr", "wlive2", "--all"],
                                 capture_output=True, text=True, timeout=30, cwd=ROOT)
            assert "live2" in res.stdout + res.stderr
            seen: list = []
            until(proxy, events, seen, lambda g: any(t == b"live2/watcher.wlive2.spawn"
                                                     for t, _ in g), 15, "live2's spawn event")
        finally:
            ctx.destroy(linger=0)
        assert proxy.stop() == 0
        text = proxy.text()
        assert "Traceback" not in text and "Too many open files" not in text, text[-3000:]
        assert text.count(": stats connected") >= 102       # the live ones and the black holes

        # 400 nodes of events alone: a monitor each, 1,200 sockets, past libzmq's 1,023
        nobody = tmp_path / "nobody.ini"
        nobody.write_text(f"[meta]\nstats_endpoint = ipc://{tmp_path}/s.sock\n"
                          f"pubsub_endpoint = ipc://{tmp_path}/e.sock\n" + "".join(
                              f"[node:x{i}]\nendpoint = ipc://{tmp_path}/none/{i}.sock\n"
                              f"pubsub_endpoint = ipc://{tmp_path}/none/e{i}.sock\n"
                              for i in range(400)))
        proxy = proxies(nobody, tmp_path, "--no-stats")
        proxy.wait_log("400 nodes: 1,2")
        assert proxy.stop() == 0
        assert "Traceback" not in proxy.text()

        # a hard limit too low for the pool: refused, the limit and the way out named
        res = subprocess.run([*META, "--pool", str(big), "proxy"], capture_output=True,
                             text=True, timeout=30, cwd=ROOT, preexec_fn=_nofile(1024))
        assert res.returncode == 2, res.stdout + res.stderr
        assert "following 200 nodes needs about " in res.stderr
        assert "this process may open 1,024 (RLIMIT_NOFILE hard limit)" in res.stderr
        assert "Traceback" not in res.stderr and "Too many open files" not in res.stderr
    finally:
        holes.close()
