"""Tier 2/3: what Circus 0.19's stats subscribers get from our circusd-stats with no setting.

The stats socket publishes a form of topics only while somebody is subscribed to it: 0.19's
``stat....`` for subscribers of ``stat.``, the node-prefixed ``<node>/stat....`` for subscribers
of ``""`` or of the node's prefix. Checked with our own SUB sockets, with 0.19's ``StatsClient``
and with 0.19's ``circus-top`` on a pseudo-terminal (both from their own venv); and ``stats``
keeps 0.19's ``wid`` and ``started`` in each process's info.
"""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from statsfeed import StatsFeed
from test_compat_circus019 import circus019  # noqa: F401  (the fixture: a 0.19 venv)
from test_stats_real import alive, feeds, head, pids_of, start, zctx  # noqa: F401

pytestmark = pytest.mark.real

NODE = "statnode"
BODY = """
    statsd = true
    [watcher:sleeper]
    cmd = sleep 300
    numprocesses = 2
    [socket:web]
    host = 127.0.0.1
    port = 0
"""


def rounds(feed: StatsFeed, n: int, d, what: str) -> None:
    """Read until ``n`` more complete rounds (``stat.node`` closes each) reached ``feed``."""
    seen = {"n": 0}
    topic = f"{NODE}/stat.node"
    original = feed.pump

    def pump(seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if feed.sock.poll(int(left * 1000) + 1):
                name, body = feed.sock.recv_multipart()
                feed.latest[name.decode()] = json.loads(body)
                feed.topics_seen.add(name.decode())
                seen["n"] += name.decode() == topic
    feed.pump = pump
    try:
        feed.wait(lambda f: seen["n"] >= n, what=what, alive=alive(d))
    finally:
        feed.pump = original


def test_019_topics_go_to_their_subscribers_only(circusd, tmp_path, zctx, feeds):
    d, c = start(circusd, tmp_path, zctx, head(tmp_path, BODY), "--name", NODE)
    try:
        endpoint = f"ipc://{tmp_path}/stats.sock"
        everything = feeds(endpoint)                         # ours: circus-top, circusmeta
        pids = d.wait(lambda: len(pids_of(c, "sleeper")) == 2 and pids_of(c, "sleeper"),
                      what="2 sleepers")
        rounds(everything, 3, d, "3 rounds to the '' subscriber")
        assert f"{NODE}/stat.sleeper.{pids[0]}" in everything.topics_seen
        assert not any(t.startswith("stat.") for t in everything.topics_seen)   # nobody asked

        old = feeds(endpoint, ("stat.",))                    # 0.19's subscription
        old.wait(lambda f: {f"stat.sleeper.{pids[0]}", f"stat.sleeper.{pids[1]}", "stat.sleeper",
                            "stat.circus", "stat.sockets"} <= f.topics_seen
                 and any(t.startswith("stat.sockets.") for t in f.topics_seen),
                 what="0.19's topics", alive=alive(d))
        assert all(t.startswith("stat.") for t in old.topics_seen)
        assert "stat.node" not in old.topics_seen             # 0.19 would read a watcher "node"
        assert old.latest["stat.sleeper"]["pid"] == pids
        info = old.latest[f"stat.sleeper.{pids[0]}"]
        assert info["cmdline"] == "sleep" and info["subtopic"] == pids[0] and info["name"] is None
        rounds(everything, 2, d, "rounds while 0.19's form is on")
        assert "stat.sleeper" in everything.topics_seen      # '' gets every published form

        mine = feeds(endpoint, (f"{NODE}/stat.sleeper",))    # one node's watcher
        mine.wait(lambda f: f"{NODE}/stat.sleeper" in f.topics_seen, what="prefixed",
                  alive=alive(d))
        assert all(t.startswith(f"{NODE}/stat.sleeper") for t in mine.topics_seen)

        old.close()                                          # the last 0.19 subscriber leaves
        rounds(everything, 2, d, "rounds in flight")
        everything.topics_seen.clear()
        rounds(everything, 3, d, "rounds after the 0.19 subscriber left")
        assert not any(t.startswith("stat.") for t in everything.topics_seen)
        assert f"{NODE}/stat.sleeper" in everything.topics_seen
    finally:
        d.stop()


def test_stats_command_keeps_wid_and_started(circusd, tmp_path, zctx):
    d, c = start(circusd, tmp_path, zctx, head(tmp_path, BODY))
    try:
        pids = d.wait(lambda: len(pids_of(c, "sleeper")) == 2 and pids_of(c, "sleeper"),
                      what="2 sleepers")
        now = time.time()
        by_name = c.call("stats", name="sleeper")["info"]
        every = c.call("stats")["infos"]["sleeper"]
        one = c.call("stats", name="sleeper", process=pids[1])["info"]
        for infos in (by_name, every):
            assert sorted(int(p) for p in infos) == pids
            assert sorted(i["wid"] for i in infos.values()) == [1, 2]
            for info in infos.values():
                assert now - 60 < info["started"] <= now
                assert abs(info["started"] - info["create_time"]) < 2
        assert one["wid"] == by_name[str(pids[1])]["wid"]
        assert one["started"] == by_name[str(pids[1])]["started"]
    finally:
        d.stop()


STATS_CLIENT_019 = """
import json, sys
from circus.stats.client import StatsClient
seen = {}
client = StatsClient(endpoint=sys.argv[1])
for watcher, subtopic, stat in client:
    seen.setdefault(watcher, {})[str(subtopic)] = stat
    if "sleeper" in seen and len(seen["sleeper"]) >= 3 and "circus" in seen \\
            and "sockets" in seen:
        break
print(json.dumps(seen))
"""


def test_019_stats_client_reads_our_stream(circus019, circusd, tmp_path, zctx):
    d, c = start(circusd, tmp_path, zctx, head(tmp_path, BODY))
    try:
        pids = d.wait(lambda: len(pids_of(c, "sleeper")) == 2 and pids_of(c, "sleeper"),
                      what="2 sleepers")
        r = subprocess.run([str(circus019 / "bin" / "python"), "-c", STATS_CLIENT_019,
                            f"ipc://{tmp_path}/stats.sock"], capture_output=True, text=True,
                           timeout=30, cwd="/")
        assert r.returncode == 0, r.stderr
        seen = json.loads(r.stdout)
        assert set(seen["sleeper"]) >= {str(pids[0]), str(pids[1]), "None"}
        assert seen["sleeper"]["None"]["pid"] == pids
        assert seen["sleeper"][str(pids[0])]["cmdline"] == "sleep"
        assert "node" not in seen                            # the node view is not 0.19's
    finally:
        d.stop()


def test_019_circus_top_shows_our_watchers(circus019, circusd, tmp_path, zctx):
    from tests.test_top_real import Term
    d, c = start(circusd, tmp_path, zctx, head(tmp_path, BODY))
    t = None
    try:
        pids = d.wait(lambda: len(pids_of(c, "sleeper")) == 2 and pids_of(c, "sleeper"),
                      what="2 sleepers")
        t = Term([str(circus019 / "bin" / "circus-top"), "--endpoint",
                  f"ipc://{tmp_path}/stats.sock"], rows=40, cols=120)
        # the socket rows come with their own stats message, after the heading may be painted
        t.has("sleeper", str(pids[0]), str(pids[1]), f"{d.pid} (circusd)", "sockets",
              "127.0.0.1:", timeout=20)
    finally:
        if t is not None:
            t.close()
        d.stop()
