"""Tier 2: circusd-stats run by a real circusd over real children; the stream, /metrics, the
``stats`` and ``processes`` commands."""
from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import psutil
import pytest
import zmq
from prometheus_client.parser import text_string_to_metric_families

from conftest import Raw, proc_alive
from statsfeed import StatsFeed

pytestmark = pytest.mark.real

PY = sys.executable
MEM_CHILD = f"{PY} -c \"import time; x = bytearray(30 << 20); time.sleep(300)\""
BUSY_CHILD = f"{PY} -c \"while True: pass\""


def head(tmp_path, extra: str = "") -> str:
    return textwrap.dedent(f"""
        [circus]
        endpoint = ipc://{tmp_path}/control.sock
        pubsub_endpoint = ipc://{tmp_path}/events.sock
        stats_endpoint = ipc://{tmp_path}/stats.sock
        stats_interval = 0.2
    """) + textwrap.dedent(extra)


class _Ctx:
    """A zmq context whose Raw clients are closed at the end of the test."""

    def __init__(self) -> None:
        self.ctx = zmq.Context()
        self.clients: list[Raw] = []

    def client(self, endpoint: str) -> Raw:
        raw = Raw(self.ctx, endpoint)
        self.clients.append(raw)
        return raw

    def close(self) -> None:
        for raw in self.clients:
            raw.close()
        self.ctx.term()


@pytest.fixture
def zctx():
    ctx = _Ctx()
    yield ctx
    ctx.close()


@pytest.fixture
def feeds():
    made: list[StatsFeed] = []

    def make(endpoint: str, topics: tuple[str, ...] = ("",)) -> StatsFeed:
        feed = StatsFeed(endpoint, topics)
        made.append(feed)
        return feed
    yield make
    for feed in made:
        feed.close()


def start(circusd, tmp_path, zctx, text: str, *extra: str):
    d = circusd(text, *extra)
    d.wait(lambda: (tmp_path / "control.sock").exists(), what="control socket")
    return d, zctx.client(f"ipc://{tmp_path}/control.sock")


def alive(d):
    return lambda: d.proc.poll() is None


def pids_of(c: Raw, name: str) -> list[int]:
    return sorted(c.call("list", name=name)["pids"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_stream_topics_are_node_prefixed_with_sane_numbers(circusd, tmp_path, zctx, feeds):
    d, c = start(circusd, tmp_path, zctx, head(tmp_path, f"""
        statsd = true
        [watcher:mem]
        cmd = {MEM_CHILD}
        numprocesses = 2
        working_dir = {tmp_path}
        [watcher:busy]
        cmd = {BUSY_CHILD}
    """), "--name", "statnode")
    try:
        feed = feeds(f"ipc://{tmp_path}/stats.sock")
        mem = d.wait(lambda: len(pids_of(c, "mem")) == 2 and pids_of(c, "mem"), what="mem pids")
        busy = pids_of(c, "busy")[0]
        wanted = [f"statnode/stat.mem.{p}" for p in mem] + [f"statnode/stat.busy.{busy}",
                                                              "statnode/stat.node",
                                                              "statnode/stat.circus"]
        feed.wait(lambda f: all(t in f.latest for t in wanted), what="every topic",
                  alive=alive(d))
        assert all(t.startswith("statnode/stat.") for t in feed.topics_seen)
        total = psutil.virtual_memory().total
        for pid in mem:
            info = feed.latest[f"statnode/stat.mem.{pid}"]
            assert (info["node"], info["watcher"], info["pid"], info["subtopic"]) == \
                ("statnode", "mem", pid, pid)
            assert 30 << 20 <= info["rss"] < total and info["vms"] >= info["rss"]
            assert abs(info["mem"] - info["rss"] * 100 / total) < 0.01
            assert 0 <= info["age"] < 120 and abs(info["create_time"] - time.time()) < 120
            assert info["username"] == getpass.getuser()
            assert info["cmdline"] == os.path.basename(PY)
            assert info["num_fds"] >= 3 and info["num_threads"] >= 1
            assert info["io"]["read_bytes"] >= 0 and info["io"]["write_count"] >= 0
            assert info["mem_info1"].endswith("M") and info["children"] == []
            assert info["children_total"]["count"] == 0
        agg = feed.latest["statnode/stat.mem"]
        assert sorted(agg["pid"]) == mem and agg["numprocesses"] == 2
        assert agg["rss"] >= 60 << 20
        # the busy loop: CPU measured between two samples, bounded by one core (+ rounding)
        feed.wait(lambda f: f.latest[f"statnode/stat.busy.{busy}"]["cpu"] > 20,
                  what="busy cpu > 20 %", alive=alive(d))
        assert feed.latest[f"statnode/stat.busy.{busy}"]["cpu"] <= 110
        circus = feed.latest["statnode/stat.circus"]
        stats_pid = pids_of(c, "circusd-stats")[0]
        feed.wait(lambda f: {f"statnode/stat.circus.{d.pid}", f"statnode/stat.circus.{stats_pid}"}
                  <= f.latest.keys(), what="circusd's and circusd-stats' own topics",
                  alive=alive(d))
        assert sorted(circus["pid"]) == sorted([d.pid, stats_pid])
        own = feed.latest[f"statnode/stat.circus.{d.pid}"]
        assert own["name"] == "circusd" and own["watcher"] == "circus" and own["rss"] > 0
        assert feed.latest[f"statnode/stat.circus.{stats_pid}"]["name"] == "circusd-stats"
        node = feed.latest["statnode/stat.node"]
        assert len(node["load"]) == 3 and node["mem_total"] == total
        assert 0 < node["mem_used"] < total and 0 <= node["cpu"] <= 100
        assert node["watchers"] == 2 and node["circus_processes"] == 5
        assert node["processes"] >= 5 and str(tmp_path) in node["disk"]
        assert 0 < node["disk"][str(tmp_path)]["total"]
        assert not any(t.startswith("stat.") for t in feed.topics_seen)  # legacy is off
    finally:
        d.stop()


def test_the_stream_carries_each_watchers_state_and_trouble(circusd, tmp_path, zctx, feeds):
    d, c = start(circusd, tmp_path, zctx, head(tmp_path, f"""
        statsd = true
        [watcher:ok]
        cmd = sleep 300
        numprocesses = 2
        [watcher:crasher]
        cmd = {PY} -c "import sys; sys.exit(3)"
        min_uptime = 1
        backoff_initial = 30
        [watcher:off]
        cmd = sleep 300
        autostart = false
    """), "--name", "sn")
    try:
        feed = feeds(f"ipc://{tmp_path}/stats.sock")
        ok_pids = d.wait(lambda: len(pids_of(c, "ok")) == 2 and pids_of(c, "ok"), what="ok's pids")
        feed.wait(lambda f: (f.latest.get("sn/stat.crasher") or {}).get("trouble") == "backoff"
                  and (f.latest.get("sn/stat.node") or {}).get("in_trouble") == 1
                  and {"sn/stat.ok", "sn/stat.off", *(f"sn/stat.ok.{p}" for p in ok_pids)}
                  <= f.latest.keys(), what="the crasher in backoff in the stream", alive=alive(d))
        crasher = feed.latest["sn/stat.crasher"]
        assert (crasher["state"], crasher["wanted"], crasher["pid"]) == ("active", 1, [])
        assert "in backoff" in crasher["reason"] and crasher["restarts"] >= 0
        ok = feed.latest["sn/stat.ok"]
        assert (ok["state"], ok["trouble"], ok["wanted"], ok["numprocesses"]) == \
            ("active", None, 2, 2)
        assert feed.latest["sn/stat.off"]["state"] == "stopped"
        for pid in ok_pids:
            assert feed.latest[f"sn/stat.ok.{pid}"]["state"] == "running"
        node = feed.latest["sn/stat.node"]
        assert node["watcher_processes"] == 2 and node["watchers"] == 3
        assert node["processes"] > node["watcher_processes"]          # the machine's count
    finally:
        d.stop()


def test_new_pids_followed_and_children_summed(circusd, tmp_path, zctx, feeds):
    d, c = start(circusd, tmp_path, zctx, head(tmp_path, """
        statsd = true
        [watcher:fam]
        cmd = sh -c 'sleep 300 & sleep 300 & wait'
        stop_children = true
    """))
    try:
        feed = feeds(f"ipc://{tmp_path}/stats.sock")
        old = d.wait(lambda: pids_of(c, "fam"), what="fam pid")[0]
        key = f"{socket.gethostname()}/stat.fam.{old}"
        feed.wait(lambda f: f.latest.get(key, {}).get("children_total", {}).get("count") == 2,
                  what="two children summed", alive=alive(d))
        assert feed.latest[key]["children_total"]["rss"] > 0
        os.kill(old, signal.SIGKILL)
        new = d.wait(lambda: (p := pids_of(c, "fam")) and p[0] != old and p[0], what="respawn")
        agg = f"{socket.gethostname()}/stat.fam"
        feed.wait(lambda f: f.latest.get(agg, {}).get("pid") == [new], what="the new pid",
                  alive=alive(d))
        # the stats command lists a process's real children (0.19's shape)
        reply = c.call("stats", name="fam")
        info = reply["info"][str(new)]
        assert len(info["children"]) == 2 and all(ch["cmdline"] == "sleep" for ch in info["children"])
        assert isinstance(info["rss"], int)
    finally:
        d.stop()


def test_legacy_topics_for_old_subscribers(circusd, tmp_path, zctx, feeds):
    d, c = start(circusd, tmp_path, zctx, head(tmp_path, """
        statsd = true
        legacy_stats_topics = true
        [watcher:sleeper]
        cmd = sleep 300
    """))
    try:
        feed = feeds(f"ipc://{tmp_path}/stats.sock", ("stat.",))     # 0.19's subscription
        pid = d.wait(lambda: pids_of(c, "sleeper"), what="pid")[0]
        feed.wait(lambda f: {f"stat.sleeper.{pid}", "stat.sleeper", "stat.sockets",
                             "stat.circus"} <= f.topics_seen, what="0.19 topics", alive=alive(d))
        assert "stat.node" not in feed.topics_seen
        assert feed.latest["stat.sleeper"]["pid"] == [pid]
        assert feed.latest[f"stat.sleeper.{pid}"]["cmdline"] == "sleep"
    finally:
        d.stop()


def test_socket_stats_count_waiting_connections(circusd, tmp_path, zctx, feeds):
    d, c = start(circusd, tmp_path, zctx, head(tmp_path, """
        statsd = true
        [socket:web]
        host = 127.0.0.1
        port = 0
    """))
    clients = []
    try:
        feed = feeds(f"ipc://{tmp_path}/stats.sock")
        sock = c.call("listsockets")["sockets"][0]
        node = socket.gethostname()
        topic = f"{node}/stat.sockets.{sock['fd']}"
        feed.wait(lambda f: topic in f.latest, what="socket stats", alive=alive(d))
        assert feed.latest[topic]["queue"] == 0 and feed.latest[topic]["connections"] == 0
        assert feed.latest[topic]["address"] == f"127.0.0.1:{sock['port']}"
        for _ in range(3):              # nobody accepts them: they wait in the accept queue
            clients.append(socket.create_connection(("127.0.0.1", sock["port"]), timeout=5))
        total_topic = f"{node}/stat.sockets"       # published after the sockets of its round
        feed.wait(lambda f: f.latest[topic]["queue"] == 3
                  and f.latest.get(total_topic, {}).get("queue") == 3, what="queue of 3",
                  alive=alive(d))
        assert feed.latest[topic]["connections"] == 3
        total = feed.latest[total_topic]
        assert total["queue"] == 3 and total["addresses"] == [f"127.0.0.1:{sock['port']}"]
    finally:
        for s in clients:
            s.close()
        d.stop()


def test_prometheus_metrics_parse_and_count_restarts(circusd, tmp_path, zctx):
    port = free_port()
    d, c = start(circusd, tmp_path, zctx, head(tmp_path, f"""
        prometheus_endpoint = 127.0.0.1:{port}
        [watcher:web]
        cmd = sleep 300
        numprocesses = 2
    """), "--name", "promnode")
    try:
        pids = d.wait(lambda: len(pids_of(c, "web")) == 2 and pids_of(c, "web"), what="pids")
        os.kill(pids[0], signal.SIGKILL)
        d.wait(lambda: len(set(pids_of(c, "web")) - set(pids)) == 1, what="respawn")
        current = pids_of(c, "web")

        def scrape():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
            except OSError:
                return None
            metrics = {m.name: m for m in text_string_to_metric_families(text)}
            rss = metrics.get("circus_process_resident_memory_bytes")
            if rss is None or sorted(int(s.labels["pid"]) for s in rss.samples
                                     if s.labels["watcher"] == "web") != current:
                return None
            return metrics
        metrics = d.wait(scrape, timeout=20, what="/metrics with the current pids")

        def value(name, **labels):
            family = metrics[name]
            found = [s.value for s in family.samples
                     if all(s.labels.get(k) == v for k, v in labels.items())]
            assert found, f"no {name} {labels}"
            return found[0]
        assert value("circus_stats_up", node="promnode") == 1
        assert value("circus_watcher_restarts", watcher="web", node="promnode") == 1
        assert value("circus_watcher_exits", watcher="web", code="-9") == 1
        assert value("circus_watcher_processes", watcher="web") == 2
        assert value("circus_watcher_desired_processes", watcher="web") == 2
        assert value("circus_watcher_state", watcher="web", state="active") == 1
        for pid in current:
            assert value("circus_process_ready", watcher="web", pid=str(pid)) == 1
            assert value("circus_process_state", pid=str(pid), state="running") == 1
            assert 0 <= value("circus_process_uptime_seconds", pid=str(pid)) < 120
            assert value("circus_process_resident_memory_bytes", pid=str(pid)) > 0
        assert value("circus_node_memory_total_bytes") == psutil.virtual_memory().total
        assert {s.labels["period"] for s in metrics["circus_node_load"].samples} == \
            {"1m", "5m", "15m"}
        # counters and labels per the exposition format's rules
        assert metrics["circus_watcher_restarts"].type == "counter"
    finally:
        d.stop()


def test_reloadconfig_turns_circusd_stats_on_and_off(circusd, tmp_path, zctx, feeds):
    base = head(tmp_path, """
        statsd = false
        [watcher:sleeper]
        cmd = sleep 300
    """)                                # (an explicit stats_endpoint alone turns it on, as 0.19)
    d, c = start(circusd, tmp_path, zctx, base)
    try:
        assert "circusd-stats" not in c.call("list")["watchers"]
        d.write(base.replace("statsd = false", "statsd = true"))
        assert c.call("reloadconfig", waiting=True, wait=30)["status"] == "ok"
        assert "circusd-stats" in c.call("list")["watchers"]
        feed = feeds(f"ipc://{tmp_path}/stats.sock")
        pid = pids_of(c, "sleeper")[0]
        feed.wait(lambda f: f"{socket.gethostname()}/stat.sleeper.{pid}" in f.latest,
                  what="stats after reloadconfig", alive=alive(d))
        stats_pid = pids_of(c, "circusd-stats")[0]
        d.write(base)
        assert c.call("reloadconfig", waiting=True, wait=30)["status"] == "ok"
        assert "circusd-stats" not in c.call("list")["watchers"]
        d.wait(lambda: not proc_alive(stats_pid), what="circusd-stats stopped")
    finally:
        d.stop()


def test_circusd_stats_standalone(circusd, tmp_path, zctx, feeds):
    d, c = start(circusd, tmp_path, zctx, head(tmp_path, """
        [watcher:sleeper]
        cmd = sleep 300
    """), "--name", "solo")
    proc = subprocess.Popen([PY, "-m", "circus.cli.stats",
                             "--endpoint", f"ipc://{tmp_path}/control.sock",
                             "--pubsub", f"ipc://{tmp_path}/events.sock",
                             "--statspoint", f"ipc://{tmp_path}/solo-stats.sock",
                             "--interval", "0.2"], stderr=subprocess.PIPE)
    try:
        feed = feeds(f"ipc://{tmp_path}/solo-stats.sock")
        pid = d.wait(lambda: pids_of(c, "sleeper"), what="pid")[0]
        # circusd-stats' own topic may come later in the round than the sleeper's
        feed.wait(lambda f: {f"solo/stat.sleeper.{pid}", f"solo/stat.circus.{proc.pid}"}
                  <= f.latest.keys(), what="standalone stream", alive=lambda: proc.poll() is None)
        stat = feed.latest[f"solo/stat.circus.{proc.pid}"]
        assert stat["name"] == "circusd-stats"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()
        d.stop()


def test_circusd_stats_bad_arguments(tmp_path):
    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([PY, "-m", "circus.cli.stats", "--endpoint",
                               f"ipc://{tmp_path}/none", *argv],
                              capture_output=True, text=True, timeout=30)
    out = run("--prometheus", "not a port")
    assert out.returncode == 1 and "cannot serve /metrics on not a port" in out.stdout
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        out = run("--statspoint", f"tcp://127.0.0.1:{taken.getsockname()[1]}")
    assert out.returncode == 1 and "cannot publish on tcp://127.0.0.1:" in out.stdout
    assert run("--interval", "0").returncode == 2
    assert run("--ssh", "me@host").returncode == 2


def test_processes_command_reports_states_and_restarts(circusd, tmp_path, zctx):
    d, c = start(circusd, tmp_path, zctx, head(tmp_path, """
        [watcher:w]
        cmd = sleep 300
        numprocesses = 2
    """))
    try:
        pids = d.wait(lambda: len(pids_of(c, "w")) == 2 and pids_of(c, "w"), what="pids")
        rec = c.call("processes", name="w")["watchers"]["w"]
        assert rec["restarts"] == 0 and rec["exits"] == {} and rec["numprocesses"] == 2
        assert sorted(p["pid"] for p in rec["processes"]) == pids
        assert all(p["ready"] and p["state"] == "running" for p in rec["processes"])
        os.kill(pids[1], signal.SIGTERM)
        d.wait(lambda: c.call("processes")["watchers"]["w"]["restarts"] == 1, what="a restart")
        rec = c.call("processes")["watchers"]["w"]
        assert rec["exits"] == {"-15": 1}
        slot = next(p for p in rec["processes"] if p["last_exit"] == -15)
        assert slot["restarts"] == 1 and slot["pid"] not in pids
        assert c.call("processes", name="nope")["status"] == "error"
    finally:
        d.stop()


def test_stats_command_on_many_processes(circusd, tmp_path, zctx):
    """``stats`` of 200 processes: every one sampled, numbers for each (blocking is measured in
    benchmarks/statsbench.py, not here)."""
    d, c = start(circusd, tmp_path, zctx, head(tmp_path, """
        [watcher:many]
        cmd = sleep 300
        numprocesses = 200
    """))
    try:
        pids = d.wait(lambda: len(pids_of(c, "many")) == 200 and pids_of(c, "many"), timeout=60,
                      what="200 processes")
        reply = c.call("stats", name="many", wait=30)
        assert reply["status"] == "ok" and sorted(int(p) for p in reply["info"]) == pids
        assert all(isinstance(i["rss"], int) and i["cmdline"] == "sleep"
                   for i in reply["info"].values())
        everything = c.call("stats", wait=30)["infos"]
        assert sorted(int(p) for p in everything["many"]) == pids
    finally:
        d.stop(timeout=60)
