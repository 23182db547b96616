"""circusmeta's live side: ``top`` over the pool and the ``proxy`` republishing the pool's stats
and events; first the pure rewriting and parsing, then real circusd nodes on ipc:// endpoints in
tmp_path, each with its own name and circusd-stats (``discover``: test_circusmeta_discover.py).

Every wait has a deadline and fails as soon as a child died; what is started is stopped by pid.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq

from circusmeta.live import FeedState, event_topic, stats_topic
from circusmeta.proxysize import (PER_NODE_MAX, PER_NODE_MIN, fd_refusal, plan, queue_per_node,
                                  socket_refusal)
from circusmeta.shedding import RateMeter, Shedding, should_degrade, should_recover
from circusmeta.streamtopics import is_detail, not_starting_with
from tests.conftest import ROOT

META = [sys.executable, "-m", "circusmeta.cli"]
CTL = [sys.executable, "-m", "circus.cli.circusctl"]
SLEEP = f'{sys.executable} -c "import time; time.sleep(3600)"'


# -- pure ----------------------------------------------------------------------------------------

def test_stats_topics_keep_their_prefix_and_legacy_ones_get_the_pool_name():
    state = FeedState()
    assert stats_topic("web1", b"stat.api.7", b'{"pid": 7}', state) == b"web1/stat.api.7"
    assert stats_topic("web1", b"web1a/stat.api.7", b"{}", state) == b"web1a/stat.api.7"
    assert state.prefixed
    # once prefixed topics came, unprefixed ones are the legacy_stats_topics copies
    assert stats_topic("web1", b"stat.api.7", b'{"pid": 7}', state) is None
    fresh = FeedState()
    assert stats_topic("web1", b"stat.api.7", b'{"node": "web1", "pid": 7}', fresh) is None
    assert stats_topic("web1", b"stat.api", b"not json", fresh) is None
    assert stats_topic("web1", b"something.else", b"{}", fresh) is None


def test_event_topics_are_prefixed_with_the_name_the_node_gives():
    body = b'{"process_pid": 12, "node": "web1a"}'
    assert event_topic("web1", b"watcher.web.spawn", body) == b"web1a/watcher.web.spawn"
    assert event_topic("web1", b"watcher.web.spawn", b'{"pid": 1}') == b"web1/watcher.web.spawn"
    assert event_topic("web1", b"watcher.web.spawn", b"\xff") == b"web1/watcher.web.spawn"
    assert event_topic("web1", b"watcher.web.spawn", b'{"node": "a/b"}') == \
        b"web1/watcher.web.spawn"


def test_the_upstream_subscriptions_are_every_topic_but_the_unprefixed_ones():
    prefixes = not_starting_with(b"stat.")
    assert len(prefixes) == 5 * 255 and len(set(prefixes)) == len(prefixes)

    def received(topic: bytes) -> bool:
        return any(topic.startswith(p) for p in prefixes)
    for topic in (b"web1/stat.api.7", b"s/stat.x", b"st/stat.x", b"stat/stat.x", b"statX",
                  b"\xffnode/stat.node", b"sta.x/stat.node", b"Stat.x/stat.node"):
        assert received(topic), topic
    for topic in (b"stat.api.7", b"stat.", b"stat.circus", b"sta", b""):
        assert not received(topic), topic


def test_what_a_degraded_proxy_calls_detail():
    assert is_detail(b"web1/stat.api.4242", b'{"pid": 4242, "cpu": 3.0}')
    assert is_detail(b"web1/stat.sockets.7", b'{"fd": 7, "address": "x"}')
    assert is_detail(b"web1/stat.circus.12", b'{"pid": 12}')
    assert not is_detail(b"web1/stat.api", b'{"pid": [1, 2], "cpu": 1}')
    assert not is_detail(b"web1/stat.web.2", b'{"pid": [1, 2], "numprocesses": 2}')
    assert not is_detail(b"web1/stat.node", b'{"load": [0, 0, 0]}')
    assert not is_detail(b"web1/stat.sockets", b'{"addresses": []}')
    assert not is_detail(b"web1/stat.degraded", b"{}")


def test_rates_and_the_rule_that_degrades_and_recovers():
    meter = RateMeter(2.0)
    assert meter.rate() is None and not meter.full(0.0)
    for i in range(9):                           # 1,000 messages every 0.25 s: 4,000/s
        meter.add(i * 0.25, i * 1000)
    assert meter.full(2.0) and meter.rate() == pytest.approx(4000)
    meter.add(2.25, 8000)                        # nothing for a while: the rate falls
    assert meter.rate() == pytest.approx(3500)
    assert should_degrade(4001, 4000) and not should_degrade(4000, 4000)
    assert not should_degrade(None, 1)
    assert should_recover(3199, 4000) and not should_recover(3200, 4000)
    meter.reset()
    assert meter.rate() is None


def test_the_notices_of_a_degraded_period():
    shed = Shedding(1000, since=1765000000.0)
    shed.update(2500.4, saturated=False)
    shed.dropped[b"web1"] = 40
    shed.kept[b"web1"] = 5
    topic, body = shed.notice(b"web1")             # a round of web1 ends: its notice
    one = json.loads(body)
    assert topic == b"web1/stat.degraded"
    assert one["node"] == "web1" and one["degraded"] is True and one["by"] == "circusmeta proxy"
    assert (one["dropped"], one["dropped_total"], one["rate"], one["max_rate"]) == \
        (40, 40, 2500, 1000)
    assert "2,500 messages/s, above the proxy's max_rate of 1,000" in one["reason"]
    assert not one["saturated"] and one["since"] == 1765000000.0
    shed.kept[b"old"] = 3                           # a node without node views (0.19)
    shed.dropped[b"web1"] = 1
    shed.kept[b"web1"] = 1
    assert [t for t, _ in shed.notices()] == [b"old/stat.degraded"]   # web1 was told
    assert [t for t, _ in shed.notices()] == [b"web1/stat.degraded"]  # not since: now
    assert shed.notices() == []                     # nobody heard since
    shed.update(None, saturated=True)
    shed.dropped[b"web1"] = 10
    again = json.loads(shed.notice(b"web1")[1])
    assert again["dropped"] == 10 and again["dropped_total"] == 51 and again["saturated"]
    assert "publishers drop" in again["reason"] and again["rate"] is None
    shed.dropped[b"web1"] = 2
    assert shed.total == 53
    ended = {t: json.loads(b) for t, b in shed.ended(100, until=1765000009.0)}
    assert set(ended) == {b"web1/stat.degraded", b"old/stat.degraded"}
    assert ended[b"web1/stat.degraded"]["degraded"] is False
    assert ended[b"web1/stat.degraded"]["dropped_total"] == 53
    assert "every message is forwarded again" in ended[b"web1/stat.degraded"]["reason"]


def test_the_proxy_is_sized_for_the_pool():
    assert queue_per_node(1) == PER_NODE_MAX
    assert queue_per_node(200) == 1000 and queue_per_node(200, 100_000) == PER_NODE_MIN
    assert queue_per_node(10_000) == PER_NODE_MIN
    small, big = plan(3, 3, 0, 2), plan(1000, 1000, 0, 2)
    assert small.queued == 3 * PER_NODE_MAX and big.queued == 1000 * PER_NODE_MIN
    assert 1023 < big.sockets < 2100 and big.fds > big.sockets + 3000
    assert plan(0, 200, 200, 1).queued == 0 and plan(0, 200, 200, 1).sockets > 600
    # the soft limit is raised when the hard one allows; refused, with the numbers, if not
    assert fd_refusal(500, 1024, 4096, 10) == (None, None)
    assert fd_refusal(5000, 1024, 20000, 1000) == (20000, None)
    assert fd_refusal(5000, 1024, -1, 1000) == (1 << 20, None)
    new, why = fd_refusal(5000, 1024, 4096, 1000)
    assert new is None and "1,000 nodes needs about 5,000 file descriptors" in why
    assert "4,096 (RLIMIT_NOFILE hard limit)" in why and "ulimit -Hn" in why
    assert socket_refusal(60_000, 65_535, 20_000) is None
    assert "70,000 ZeroMQ sockets" in socket_refusal(70_000, 65_535, 30_000)


# -- real nodes ----------------------------------------------------------------------------------

NODE_INI = """
[circus]
endpoint = ipc://{dir}/control.sock
pubsub_endpoint = ipc://{dir}/events.sock
stats_endpoint = ipc://{dir}/stats.sock
statsd = true
stats_interval = 0.2

[watcher:{watcher}]
cmd = {sleep}
numprocesses = 2
"""


def meta(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess:
    return subprocess.run([*META, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


class Pool:
    """Two circusd nodes, web1 (watcher alpha) and web2 (watcher beta), and their pool file."""

    def __init__(self, circusd, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.nodes = {}
        for name, watcher in (("web1", "alpha"), ("web2", "beta")):
            d = circusd(start=False)
            d.write(NODE_INI.format(dir=d.dir, watcher=watcher, sleep=SLEEP))
            d.start(None, "--name", name)
            self.nodes[name] = d
        for name in self.nodes:
            self.ready(name)
        self.file = tmp_path / "pool.ini"
        sections = [f"[meta]\nstats_endpoint = ipc://{tmp_path}/proxy-stats.sock\n"
                    f"pubsub_endpoint = ipc://{tmp_path}/proxy-events.sock\n"]
        for name, d in self.nodes.items():
            sections.append(f"[node:{name}]\nendpoint = ipc://{d.dir}/control.sock\n"
                            f"pubsub_endpoint = ipc://{d.dir}/events.sock\n"
                            f"stats_endpoint = ipc://{d.dir}/stats.sock\n")
        self.sections = sections
        self.write()

    def write(self, extra: str = "") -> None:
        self.file.write_text("\n".join(self.sections) + extra)

    def ready(self, name: str) -> None:
        d = self.nodes[name]
        d.wait(lambda: (d.dir / "stats.sock").exists(), 20, f"{name}'s stats socket")
        d.wait(lambda: len(d.children(sys.executable + " -c")) >= 2, 20, f"{name}'s sleepers")

    def pids(self, name: str) -> set[int]:
        return set(self.nodes[name].children(sys.executable + " -c"))


@pytest.fixture
def pool(circusd, tmp_path):
    return Pool(circusd, tmp_path)


def test_top_once_shows_every_node_grouped_with_its_real_pids(pool):
    pool.write("\n[node:web3]\nendpoint = ipc:///nonexistent/control.sock\n")
    res = meta("--pool", str(pool.file), "top", "--once", "--wait", "10")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "web3: no stats_endpoint" in res.stderr
    lines = out.splitlines()
    heads = [i for i, line in enumerate(lines) if line.startswith(("web1  ", "web2  "))]
    assert [lines[i].split()[0] for i in heads] == ["web1", "web2"], out
    web1, web2 = "\n".join(lines[heads[0]:heads[1]]), "\n".join(lines[heads[1]:])
    assert "alpha (2)" in web1 and "beta" not in web1, out
    assert "beta (2)" in web2 and "alpha" not in web2, out
    for name, text in (("web1", web1), ("web2", web2)):
        shown = {int(line.split()[0]) for line in text.splitlines()
                 if line.startswith("  ") and line.split()[0].isdigit()}
        assert pool.pids(name) <= shown, (name, out)
        assert pool.nodes[name].pid in shown, (name, out)

    res = meta("--pool", str(pool.file), "--json", "top", "--once", "--wait", "10",
               "--node", "web2", "--filter", "bet")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert list(data["nodes"]) == ["web2"]
    watchers = data["nodes"]["web2"]["watchers"]
    assert list(watchers) == ["beta"]
    assert {p["pid"] for p in watchers["beta"]["processes"]} == pool.pids("web2")

    # a node that stays silent: partial (4), named on stderr with its endpoint
    pool.write(f"\n[node:web3]\nendpoint = ipc://{pool.tmp}/none.sock\n"
               f"stats_endpoint = ipc://{pool.tmp}/silent.sock\n")
    res = meta("--pool", str(pool.file), "top", "--once", "--wait", "2")
    assert res.returncode == 4, res.stderr
    assert f"web3 (ipc://{pool.tmp}/silent.sock)" in res.stderr
    res = meta("--pool", str(pool.file), "top", "--once", "--node", "web3", "--wait", "1")
    assert res.returncode == 1 and "no stats received" in res.stderr
    res = meta("--pool", str(pool.file), "top", "--once", "--endpoint", "tcp://x:1")
    assert res.returncode == 2


class Proxy:
    def __init__(self, pool: Pool, *args: str) -> None:
        self.log = pool.tmp / "proxy.log"
        self.fh = self.log.open("w")
        self.proc = subprocess.Popen([*META, "--pool", str(pool.file), "proxy", *args],
                                     cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self.fh,
                                     stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text()

    def wait_log(self, text: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.text():
            if self.proc.poll() is not None:
                pytest.fail(f"the proxy exited ({self.proc.returncode}) waiting for {text!r}\n"
                            f"{self.text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {text!r} in the proxy's log within {timeout} s\n{self.text()}")
            time.sleep(0.02)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            pytest.fail(f"the proxy did not stop on SIGTERM within 10 s\n{self.text()}")
        finally:
            self.fh.close()


class OldNode:
    """A 0.19-style stats publisher: unprefixed topics, no "node" in the payloads."""

    def __init__(self, ctx: zmq.Context, endpoint: str) -> None:
        self.sock = ctx.socket(zmq.PUB)
        self.sock.linger = 0
        self.sock.bind(endpoint)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(0.1):
            self.sock.send_multipart([b"stat.legacy.77", json.dumps({"pid": 77}).encode()])

    def stop(self) -> None:
        self.done.set()
        self.thread.join(5)
        self.sock.close()


def collect(sock: zmq.Socket, proxy: Proxy, want, timeout: float = 10.0) -> dict[str, dict]:
    """Topics (and their last payload) read until ``want(topics)`` is true."""
    seen: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while not want(seen):
        if proxy.proc.poll() is not None:
            pytest.fail(f"the proxy exited ({proxy.proc.returncode})\n{proxy.text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s; topics seen: {sorted(seen)[:40]}\n"
                        f"{proxy.text()}")
        while sock.poll(50):
            topic, body = sock.recv_multipart()
            seen[topic.decode()] = json.loads(body)
    return seen


def test_proxy_republishes_stats_and_events_and_follows_a_restarted_node(pool):
    ctx = zmq.Context()
    old = OldNode(ctx, f"ipc://{pool.tmp}/old-stats.sock")
    pool.write(f"\n[node:old]\nendpoint = ipc://{pool.tmp}/old.sock\n"
               f"stats_endpoint = ipc://{pool.tmp}/old-stats.sock\n")
    proxy = Proxy(pool)
    subs = []
    try:
        proxy.wait_log("events on")
        log = proxy.text()
        assert f"stats on ipc://{pool.tmp}/proxy-stats.sock, from web1 (ipc://" in log
        assert "web2 (ipc://" in log and "old (ipc://" in log
        assert "old: no pubsub_endpoint" in log
        stats, events = ctx.socket(zmq.SUB), ctx.socket(zmq.SUB)
        subs += [stats, events]
        for sock, name in ((stats, "stats"), (events, "events")):
            sock.linger = 0
            sock.setsockopt(zmq.SUBSCRIBE, b"")
            sock.connect(f"ipc://{pool.tmp}/proxy-{name}.sock")

        def both(seen):
            return ({t.split(".")[1] for t in seen if t.startswith("web1/stat.")} >= {"alpha"}
                    and any(t.startswith("web2/stat.beta") for t in seen)
                    and "web1/stat.node" in seen and "web2/stat.node" in seen
                    and "old/stat.legacy.77" in seen)
        seen = collect(stats, proxy, both)
        assert not [t for t in seen if t.startswith("stat.") or t.count("/") > 1], sorted(seen)
        pids1 = {int(t.rsplit(".", 1)[1]) for t in seen if t.startswith("web1/stat.alpha.")}
        assert pids1 <= pool.pids("web1") and pids1
        assert seen["old/stat.legacy.77"] == {"pid": 77}          # payload unchanged

        # an event: circusctl incr on web1 -> web1/watcher.alpha.spawn through the proxy
        time.sleep(0.3)                        # the subscription reaches the proxy
        res = subprocess.run([*CTL, "--endpoint", f"ipc://{pool.nodes['web1'].dir}/control.sock",
                              "incr", "alpha"], capture_output=True, text=True, timeout=20)
        assert res.returncode == 0, res.stdout + res.stderr
        got = collect(events, proxy, lambda s: "web1/watcher.alpha.spawn" in s)
        assert got["web1/watcher.alpha.spawn"]["node"] == "web1"
        assert "process_pid" in got["web1/watcher.alpha.spawn"]

        # circusmeta top through the proxy: both nodes, only web2 with --node
        res = meta("--pool", str(pool.file), "top", "--proxy", "--once", "--wait", "10",
                   "--node", "web1", "--node", "web2")
        assert res.returncode == 0, res.stderr
        assert "alpha (3)" in res.stdout and "beta (2)" in res.stdout, res.stdout
        res = meta("--pool", str(pool.file), "--json", "top", "--proxy", "--once", "--wait", "10",
                   "--node", "web2")
        assert res.returncode == 0, res.stderr
        assert list(json.loads(res.stdout)["nodes"]) == ["web2"]

        # web1 stops and starts again on the same endpoints: the proxy follows it again
        web1 = pool.nodes["web1"]
        assert web1.stop() == 0
        web1.proc.stdout.close()
        proxy.wait_log("web1: stats disconnected")
        web1.start(None, "--name", "web1")
        pool.ready("web1")
        new = pool.pids("web1")
        assert not new & pids1

        def back(seen):
            return any(int(t.rsplit(".", 1)[1]) in new for t in seen
                       if t.startswith("web1/stat.alpha."))
        collect(stats, proxy, back, timeout=15)
        res = subprocess.run([*CTL, "--endpoint", f"ipc://{web1.dir}/control.sock", "incr",
                              "alpha"], capture_output=True, text=True, timeout=20)
        assert res.returncode == 0, res.stdout + res.stderr
        collect(events, proxy, lambda s: "web1/watcher.alpha.spawn" in s)
        assert proxy.text().count("web1: stats connected") >= 2

        assert proxy.stop() == 0
        assert "stopped (" in proxy.text()
    finally:
        proxy.stop()
        for sock in subs:
            sock.close()
        old.stop()
        ctx.term()


def test_proxy_usage_and_bind_errors(tmp_path):
    file = tmp_path / "pool.ini"
    file.write_text(f"[node:a]\nendpoint = ipc://{tmp_path}/a.sock\n"
                    f"stats_endpoint = ipc://{tmp_path}/a-stats.sock\n")
    res = meta("--pool", str(file), "proxy", "--no-stats", "--no-events")
    assert res.returncode == 2 and "nothing to republish" in res.stderr
    res = meta("--pool", str(file), "proxy", "--no-stats")
    assert res.returncode == 2 and "no pubsub_endpoint" in res.stderr, res.stderr
    bad = f"ipc://{tmp_path}/no/such/dir/s.sock"
    res = meta("--pool", str(file), "proxy", "--stats-endpoint", bad, timeout=10)
    assert res.returncode == 1 and f"cannot bind stats on {bad}" in res.stderr, res.stderr
    res = meta("--pool", str(file), "proxy", "--stats-endpoint", f"ipc://{tmp_path}/a-stats.sock")
    assert res.returncode == 2 and "is where the proxy binds" in res.stderr
