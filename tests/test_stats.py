"""Tier 1: the stats stream's payloads, the kernel-table parsers, /metrics rendering, the helper
watchers a configuration asks for, and the sampler on this very process."""
from __future__ import annotations

import os
import shlex
import sys

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from circus.config import ConfigError, parse_config_text
from circus.config.plugin_watchers import plugin_config_arg
from circus.config.stats_watcher import stats_watcher
from circus.stats import payloads as pl
from circus.stats.procinfo import NO_SUCH_PROCESS, Sampler, human_size
from circus.stats.prometheus import SnapshotCollector
from circus.stats.sockstats import SocketSampler, parse_tcp, parse_unix
from circus.stats.streamer import Snapshot, Streamer

# -- payloads ------------------------------------------------------------------------------------


def test_topics_are_node_prefixed_and_map_to_019s():
    assert pl.process_topic("web1", "api", 42) == "web1/stat.api.42"
    assert pl.watcher_topic("web1", "api") == "web1/stat.api"
    assert pl.socket_topic("web1", 7) == "web1/stat.sockets.7"
    assert pl.socket_topic("web1") == "web1/stat.sockets"
    assert pl.legacy_topic("web1/stat.api.42") == "stat.api.42"
    assert pl.legacy_topic("web1/stat.circus") == "stat.circus"
    assert pl.legacy_topic("web1/stat.node") is None       # 0.19 would read "node" as a watcher
    assert pl.legacy_topic("stat.api") is None
    assert pl.split_topic("web1/stat.api.42") == ("web1", "api", "42")
    assert pl.split_topic("web1/stat.plugin:x") == ("web1", "plugin:x", None)
    assert pl.split_topic("web1/stat.node") == ("web1", "node", None)
    assert pl.split_topic("watcher.api.spawn") is None


def test_forms_published_follow_the_subscriptions():
    assert pl.wanted_forms([], "web1") == (False, False)                  # nobody: nothing
    assert pl.wanted_forms([""], "web1") == (True, False)                 # everything: ours
    assert pl.wanted_forms(["stat."], "web1") == (False, True)            # 0.19's clients
    assert pl.wanted_forms(["stat.api"], "web1") == (False, True)
    assert pl.wanted_forms(["st"], "web1") == (False, True)
    assert pl.wanted_forms(["web1/stat."], "web1") == (True, False)
    assert pl.wanted_forms(["web1/"], "web1") == (True, False)
    assert pl.wanted_forms(["web1/stat.api.4"], "web1") == (True, False)
    assert pl.wanted_forms(["web2/stat."], "web1") == (False, False)      # another node's
    assert pl.wanted_forms(["watcher."], "web1") == (False, False)
    assert pl.wanted_forms(["s"], "srv") == (True, True)                  # a prefix of both
    assert pl.wanted_forms(["", "stat."], "web1") == (True, True)


def test_aggregate_keeps_019s_fields_and_sums_numbers():
    infos = [{"pid": 1, "cpu": 10.0, "mem": 1.5, "age": 3.0, "rss": 100, "vms": 1000,
              "num_fds": 4, "num_threads": 1},
             {"pid": 2, "cpu": 30.0, "mem": 0.5, "age": 9.0, "rss": "N/A", "vms": 2000,
              "num_fds": 5, "num_threads": 2}]
    agg = pl.aggregate("n", "w", infos)
    assert agg["pid"] == [1, 2] and agg["cpu"] == 20.0 and agg["cpu_sum"] == 40.0
    assert agg["mem"] == 2.0 and agg["age"] == 9.0 and agg["numprocesses"] == 2
    assert (agg["rss"], agg["vms"], agg["num_fds"], agg["num_threads"]) == (100, 3000, 9, 3)
    empty = pl.aggregate("n", "w", [])
    assert empty["pid"] == [] and empty["cpu"] == 0.0 and empty["age"] == 0.0


def test_process_payload_carries_node_watcher_and_019s_subtopic():
    out = pl.process_payload("n", "w", {"pid": 5, "cpu": 1.0}, name="circusd")
    assert out == {"pid": 5, "cpu": 1.0, "node": "n", "watcher": "w", "subtopic": 5,
                   "name": "circusd"}


def test_watcher_state_process_states_and_node_counts_come_from_processes():
    records = {"web": {"state": "active", "numprocesses": 2, "restarts": 4, "reason": "",
                       "trouble": None, "processes": [{"wid": 1, "pid": 11, "state": "running"},
                                                      {"wid": 2, "pid": 12, "state": "stopping"}]},
               "crasher": {"state": "active", "numprocesses": 1, "restarts": 53,
                           "reason": "1 process(es) in backoff: exit code 1", "trouble": "backoff",
                           "processes": [{"wid": 1, "pid": None, "state": "backoff"}]},
               "circusd-stats": {"state": "active", "trouble": "backoff", "processes": []}}
    assert pl.watcher_state(records["crasher"]) == {
        "state": "active", "trouble": "backoff", "reason": "1 process(es) in backoff: exit code 1",
        "wanted": 1, "restarts": 53}
    assert pl.watcher_state(None) == {}                  # removed meanwhile: nothing said
    assert pl.process_states(records) == {11: "running", 12: "stopping"}
    assert pl.node_counts({"web": [11, 12], "crasher": [], "circusd-stats": [99]}, records,
                          "circusd-stats") == {"watcher_processes": 2, "in_trouble": 1}
    out = pl.process_payload("n", "w", {"pid": 5}, state="running")
    assert out["state"] == "running" and "state" not in pl.process_payload("n", "w", {"pid": 5})


def test_sockets_aggregate_sums_what_is_known():
    socks = [{"address": "a:1", "reads": 2, "queue": 1, "connections": 3},
             {"address": "/p", "reads": 1, "queue": None, "connections": 2}]
    agg = pl.sockets_aggregate("n", socks)
    assert agg == {"node": "n", "addresses": ["a:1", "/p"], "reads": 3, "queue": 1,
                   "connections": 5}
    assert pl.sockets_aggregate("n", [])["queue"] is None


# -- kernel tables -------------------------------------------------------------------------------

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000002 00:00000000 00000000     0        0 1234 1
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 0 1
   2: 0100007F:1F90 0100007F:D432 01 00000000:00000000 00:00000000 00000000     0        0 0 1
   3: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 99 1
   garbage line
"""

UNIX = """\
Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 5000 /run/app.sock
0000000000000000: 00000003 00000000 00000000 0001 03 5001 /run/app.sock
0000000000000000: 00000003 00000000 00000000 0001 03 5002
"""


def test_parse_tcp_reads_ports_states_and_queues():
    entries = parse_tcp(TCP)
    assert len(entries) == 4
    listen = entries[0]
    assert (listen.port, listen.state, listen.rx_queue, listen.inode) == (8080, "0A", 2, 1234)
    assert entries[1].remote == "0100007F:D431"


def test_parse_unix_groups_by_path():
    table = parse_unix(UNIX)
    assert table == {"/run/app.sock": [(True, "01", 5000), (False, "03", 5001)]}


def test_socket_sampler_counts_queue_connections_and_arrivals(tmp_path):
    (tmp_path / "tcp").write_text(TCP)
    (tmp_path / "tcp6").write_text("header\n")
    (tmp_path / "unix").write_text(UNIX)
    sampler = SocketSampler(str(tmp_path))
    socks = [{"fd": 3, "name": "web", "host": "127.0.0.1", "port": 8080, "backlog": 128},
             {"fd": 4, "name": "app", "path": "/run/app.sock", "backlog": 5}]
    first = sampler.sample(socks)
    assert first[0] == {"fd": 3, "name": "web", "address": "127.0.0.1:8080", "queue": 2,
                        "backlog": 128, "connections": 2, "accepted": 0, "reads": 0}
    assert first[1]["address"] == "/run/app.sock" and first[1]["connections"] == 1
    assert first[1]["queue"] is None
    (tmp_path / "tcp").write_text(TCP.replace("0100007F:D432 01", "0100007F:D433 01"))
    second = sampler.sample(socks)
    assert second[0]["accepted"] == 1 and second[0]["reads"] == 1      # D433 is new
    assert sampler.sample([])== [] and sampler.sample(socks)[0]["accepted"] == 0


# -- /metrics ------------------------------------------------------------------------------------

def _snapshot() -> Snapshot:
    info = {"pid": 11, "cpu": 12.5, "mem": 0.5, "rss": 2048, "vms": 4096, "num_fds": 7,
            "num_threads": 2, "age": 30.0}
    records = {"api": {"state": "active", "numprocesses": 2, "restarts": 3,
                       "exits": {"0": 1, "-9": 2},
                       "processes": [{"wid": 1, "pid": 11, "state": "running", "ready": True},
                                     {"wid": 2, "pid": None, "state": "backoff",
                                      "ready": False}]}}
    node = {"load": [0.5, 0.25, 0.1], "cpu": 3.0, "mem_used": 10, "mem_total": 100,
            "processes": 50, "disk": {"/srv": {"percent": 25.0}}}
    sockets = [{"name": "web", "address": "127.0.0.1:80", "queue": 4, "connections": 9}]
    return Snapshot("n1", {"api": {11: info}}, {}, node, sockets, records)


def _scrape(collector: SnapshotCollector) -> dict:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {m.name: m for m in text_string_to_metric_families(text)}


def _value(metrics, name, **labels):
    found = [s.value for s in metrics[name].samples
             if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, metrics[name].samples)
    return found[0]


def test_metrics_before_the_first_sample_say_not_up():
    metrics = _scrape(SnapshotCollector())
    assert _value(metrics, "circus_stats_up") == 0 and len(metrics) == 1


def test_metrics_render_the_snapshot_with_labels():
    collector = SnapshotCollector()
    collector.update(_snapshot())
    m = _scrape(collector)
    proc = {"node": "n1", "watcher": "api", "pid": "11", "wid": "1"}
    assert _value(m, "circus_process_cpu_percent", **proc) == 12.5
    assert _value(m, "circus_process_resident_memory_bytes", **proc) == 2048
    assert _value(m, "circus_process_uptime_seconds", **proc) == 30
    assert _value(m, "circus_process_ready", **proc) == 1
    assert _value(m, "circus_process_state", state="running", **proc) == 1
    assert _value(m, "circus_process_state", state="backoff", **proc) == 0
    assert _value(m, "circus_watcher_restarts", watcher="api") == 3
    assert m["circus_watcher_restarts"].type == "counter"
    assert _value(m, "circus_watcher_exits", watcher="api", code="-9") == 2
    assert _value(m, "circus_watcher_processes", watcher="api") == 1
    assert _value(m, "circus_watcher_desired_processes", watcher="api") == 2
    assert _value(m, "circus_watcher_state", watcher="api", state="active") == 1
    assert _value(m, "circus_node_load", period="5m") == 0.25
    assert _value(m, "circus_node_disk_used_ratio", path="/srv") == 0.25
    assert _value(m, "circus_socket_accept_queue", socket="web") == 4
    assert _value(m, "circus_socket_connections", socket="web") == 9


# -- helper watchers -----------------------------------------------------------------------------

def _cfg(text: str):
    return parse_config_text(text, "circus.ini", {})


def test_statsd_and_prometheus_each_start_circusd_stats():
    assert [w.name for w in _cfg("[watcher:a]\ncmd = a\n").watchers] == ["a"]
    stats = {w.name: w for w in _cfg("[circus]\nstatsd = true\n").watchers}["circusd-stats"]
    argv = shlex.split(stats.cmd)
    assert argv[:3] == [sys.executable, "-m", "circus.cli.stats"]
    assert argv[argv.index("--interval") + 1] == "1.0" and "--prometheus" not in argv
    assert stats.singleton and stats.copy_env and stats.copy_path
    prom = _cfg("[circus]\nprometheus_endpoint = 9200\nlegacy_stats_topics = true\n"
                "stats_interval = 2.5\n").watchers[0]
    argv = shlex.split(prom.cmd)
    assert argv[argv.index("--prometheus") + 1] == "127.0.0.1:9200"
    assert "--legacy-topics" in argv and argv[argv.index("--interval") + 1] == "2.5"


def test_plugin_sections_run_as_plugin_watchers():
    config = _cfg("[circus]\ncheck_delay = 2\n[plugin:Flap]\nuse = circus.plugins.flapping."
                  "Flapping\nattempts = 3\npriority = 4\n")
    helper = config.watchers[0]
    assert helper.name == "plugin:flap" and helper.priority == 4
    assert helper.restart_policy == "on-failure"
    argv = shlex.split(helper.cmd)
    assert argv[-1] == "circus.plugins.flapping.Flapping"
    assert argv[argv.index("--config") + 1] == "name:flap:::attempts:3"
    assert argv[argv.index("--check-delay") + 1] == "2.0"
    assert plugin_config_arg(config.plugins[0]) == "name:flap:::attempts:3"
    assert stats_watcher(config.circus, "py") is None


@pytest.mark.parametrize("text, reason", [
    ("[circus]\nstats_interval = 0\n", "stats_interval"),
    ("[circus]\nprometheus_endpoint = host:port\n", "HOST:PORT"),
    ("[circus]\nprometheus_endpoint = 127.0.0.1:99999\n", "HOST:PORT"),
    ("[circus]\nstatsd = true\n[watcher:circusd-stats]\ncmd = x\n", "taken by circusd's own"),
])
def test_bad_stats_options_are_named(text, reason):
    with pytest.raises(ConfigError) as err:
        _cfg(text)
    assert reason in str(err.value) and "circus.ini" in str(err.value)


# -- the sampler on real processes ---------------------------------------------------------------

def test_sampler_on_this_process_and_a_gone_one():
    sampler = Sampler()
    me = os.getpid()
    info = sampler.collect([me])[me]
    assert info["pid"] == me and info["rss"] > 0 and info["num_fds"] > 0
    assert info["cmdline"] == os.path.basename(sys.executable)
    assert info["mem_info1"] == human_size(info["rss"])
    assert isinstance(info["children"], list)
    total = sampler.info(me, children="total")
    assert total["children"] == [] and set(total["children_total"]) >= {"count", "cpu", "rss"}
    assert sampler.collect([2 ** 22 + 12345]) == {2 ** 22 + 12345: NO_SUCH_PROCESS}


def test_human_sizes_as_019():
    assert human_size(512) == "512" and human_size(8.22 * 1024 ** 2) == "8.22M"
    assert human_size(3 * 1024 ** 3) == "3.00G"


def test_streamer_follows_spawn_and_reap_and_resyncs_on_the_rest():
    s = Streamer("ipc:///nowhere", "ipc:///nowhere", "ipc:///nowhere")
    s.watchers, s._by_topic, s._dirty = {"My App": {1}}, {"my_app": "My App"}, False
    s.on_event("watcher.my_app.spawn", {"process_pid": 2})
    s.on_event("watcher.my_app.reap", {"process_pid": 1})
    s.on_event("watcher.my_app.state", {"state": "active"})
    assert s.watchers == {"My App": {2}} and not s._dirty
    s.on_event("watcher.my_app.updated", {})
    assert s._dirty
    s._dirty = False
    s.on_event("watcher.other.spawn", {"process_pid": 3})       # unknown watcher: ask again
    assert s._dirty
    s._dirty = False
    s.on_event("arbiter.n.reloadconfig", {})
    assert s._dirty
    s._executor.shutdown()
    s._context.term()
