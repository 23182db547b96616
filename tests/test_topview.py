"""circus-top's model and rows, without ZeroMQ or curses: merging, expiry, order, filter, nodes."""
from __future__ import annotations

import json

import pytest

from circus.stats.health import Tone, in_trouble, paint, state_word, tone, use_colour
from circus.stats.toprows import (Style, coloured, human_age, human_bytes, move_selection, rows,
                                  selectable, snapshot, title)
from circus.stats.topview import Kind, Model, SortKey, View, parse_topic, visible_groups


def proc(node, watcher, pid, cpu=0.0, mem=0.1, age=10.0, rss=8 * 1024 * 1024, name=None, **extra):
    payload = {"node": node, "watcher": watcher, "pid": pid, "subtopic": pid, "name": name,
               "cpu": cpu, "mem": mem, "age": age, "rss": rss, "vms": 2 * rss, "cmdline": "python3",
               "mem_info1": "8.0M", "mem_info2": "16.0M", "ctime": "0:00.10", "username": "root",
               "nice": 0, "num_fds": 4, "num_threads": 1, "children": [],
               "io": {"read_bytes": 0, "write_bytes": 4096, "read_count": 1, "write_count": 1},
               "children_total": {"count": 0, "cpu": 0.0, "rss": 0}}
    payload.update(extra)
    return f"{node}/stat.{watcher}.{pid}", payload


def agg(node, watcher, pids, cpu=0.0, mem=0.0, age=0.0, **state):
    """A watcher's aggregate; ``state`` adds the fields circusd-stats takes from ``processes``
    (state, trouble, reason, wanted, restarts)."""
    return f"{node}/stat.{watcher}", {"node": node, "watcher": watcher, "pid": pids, "cpu": cpu,
                                      "mem": mem, "age": age, "rss": 0, "numprocesses": len(pids),
                                      **state}


def node_stat(node, load=(0.5, 0.25, 0.125)):
    return f"{node}/stat.node", {"node": node, "time": 1.0, "load": list(load), "cpu": 12.5,
                                 "cpu_count": 4, "mem_used": 2 * 1024 ** 3,
                                 "mem_total": 8 * 1024 ** 3, "mem_percent": 25.0, "disk": {},
                                 "processes": 300, "watchers": 2, "circus_processes": 3}


def fed(*messages, now=0.0, timeout=3.0):
    model = Model(timeout)
    for topic, payload in messages:
        assert model.feed(topic, payload, now) is not None, topic
    return model


def texts(model, view=View(), now=0.0):
    return [r.text for r in rows(model, view, now)]


def test_topics_without_node_prefix_are_ignored():
    assert parse_topic("stat.sleeper.4") is None
    assert parse_topic("web1/stat.sleeper.4") == ("web1", "sleeper.4")
    model = Model()
    assert model.feed(b"stat.sleeper.4", {"pid": 4, "subtopic": 4}, 0.0) is None
    assert model.feed("web1/stat.x", ["not", "a", "dict"], 0.0) is None
    assert model.nodes == {}


def test_messages_are_classified_by_payload():
    model = Model()
    assert model.feed(*node_stat("n"), 0.0) is Kind.NODE
    assert model.feed(*proc("n", "a.b", 7), 0.0) is Kind.PROCESS     # dotted watcher name
    assert model.feed(*agg("n", "node", [8]), 0.0) is Kind.AGGREGATE  # a watcher called "node"
    assert model.feed("n/stat.sockets.5", {"fd": 5, "address": "x:1"}, 0.0) is Kind.SOCKET
    assert model.feed("n/stat.sockets", {"addresses": ["x:1"]}, 0.0) is Kind.SOCKETS
    assert set(model.nodes["n"].groups) == {"a.b", "node"}


def test_latest_sample_wins_and_group_rows_show_aggregate():
    model = fed(node_stat("n"), proc("n", "web", 10, cpu=1.0), proc("n", "web", 10, cpu=42.0),
                agg("n", "web", [10], cpu=42.0, mem=0.1, age=75))
    out = texts(model)
    assert out[0].startswith("n  load 0.50 0.25 0.12  cpu 12.5%  mem 2.0G/8.0G (25.0%)")
    # an older circusd-stats: the machine's count, said as such; no state known
    assert out[0].endswith("watchers 2  processes on the machine 300")
    group = next(t for t in out if t.startswith("web (1)"))
    assert group.split()[2:7] == ["-", "42.0", "0.1", "0B", "1m15s"]
    line = next(t for t in out if t.strip().startswith("10 "))
    assert line.split() == ["10", "42.0", "0.1", "8.0M", "10s", "python3"]


def test_aggregate_drops_pids_it_no_longer_lists():
    model = fed(proc("n", "web", 1), proc("n", "web", 2), agg("n", "web", [2]))
    assert list(model.nodes["n"].groups["web"].processes) == [2]


def test_timeout_drops_silent_pids_then_the_watcher():
    model = fed(proc("n", "web", 1), proc("n", "web", 2), agg("n", "web", [1, 2]))
    model.feed(*proc("n", "web", 2), 2.5)
    model.feed(*agg("n", "web", [1, 2]), 2.5)
    assert model.expire(3.0) == 0
    assert model.expire(3.5) == 1
    assert list(model.nodes["n"].groups["web"].processes) == [2]
    model.expire(10.0)
    assert "web" not in model.nodes["n"].groups
    assert "[no data for 7s]" in texts(model, now=10.0)[0]


def test_timeout_zero_keeps_everything():
    model = fed(proc("n", "web", 1), timeout=0)
    assert model.expire(1e6) == 0 and 1 in model.nodes["n"].groups["web"].processes


def test_slow_stream_stretches_the_timeout():
    model = Model(3.0)
    for t in (0.0, 5.0, 10.0):
        model.feed(*node_stat("n"), t)
    model.feed(*proc("n", "web", 1), 10.0)
    assert model.timeout_for(model.nodes["n"]) == 12.5
    assert model.expire(14.0) == 0


def test_sort_by_cpu_memory_age_and_reverse():
    model = fed(proc("n", "w", 1, cpu=5, mem=3, age=1), proc("n", "w", 2, cpu=9, mem=1, age=3),
                proc("n", "w", 3, cpu="N/A", mem=2, age=2))
    def pids(view):
        return [t.split()[0] for t in texts(model, view) if t.startswith("  ") and t.split()[0].isdigit()]
    view = View()
    assert pids(view) == ["2", "1", "3"]                      # N/A last
    assert pids(view.sorted_by(SortKey.CPU)) == ["1", "2", "3"]   # pressed again: reversed
    assert pids(view.sorted_by(SortKey.MEM)) == ["1", "3", "2"]
    assert pids(view.sorted_by(SortKey.AGE)) == ["2", "3", "1"]
    assert view.sorted_by(SortKey.AGE).sorted_by(SortKey.AGE).reverse is True
    assert view.sorted_by(SortKey.AGE).sorted_by(SortKey.MEM).reverse is False


def test_watchers_sorted_circus_group_last():
    model = fed(agg("n", "idle", [1], cpu=0.0), agg("n", "busy", [2], cpu=50.0),
                agg("n", "circus", [3], cpu=99.0))
    names = [g.name for g in visible_groups(model.nodes["n"], View())]
    assert names == ["busy", "idle", "circus"]
    names = [g.name for g in visible_groups(model.nodes["n"], View(sort=SortKey.NAME))]
    assert names == ["busy", "idle", "circus"]


def test_filter_by_watcher_name_substring():
    model = fed(agg("n", "web", [1]), agg("n", "worker", [2]), agg("n", "db", [3]),
                ("n/stat.sockets.5", {"fd": 5, "address": "127.0.0.1:80", "reads": 1}))
    out = texts(model, View(filter="W"))
    assert any(t.startswith("web (1)") for t in out) and any(t.startswith("worker (1)") for t in out)
    assert not any(t.startswith(("db", "sockets")) for t in out)
    assert any("no watcher matches 'zz'" in t for t in texts(model, View(filter="zz")))
    assert "filter 'W'" in title(View(filter="W"), model)


def test_circus_group_labels_pids_and_hides_helper_copies():
    model = fed(proc("n", "circus", 100, name="circusd"), proc("n", "circus", 101, name="circusd-stats"),
                agg("n", "circus", [100, 101]),
                proc("n", "circusd-stats", 101), agg("n", "circusd-stats", [101]))
    out = texts(model)
    assert any(t.strip().startswith("100 (circusd) ") for t in out)
    assert any(t.strip().startswith("101 (circusd-stats) ") for t in out)
    assert not any(t.startswith("circusd-stats") for t in out)
    # a user's own watcher of that name, with other pids, is shown
    model.feed(*proc("n", "circushttpd", 555), 0.0)
    assert any(t.startswith("circushttpd (") for t in texts(model))


def test_na_values_are_shown_not_crashed_on():
    model = fed(proc("n", "w", 1, cpu="N/A", mem="N/A", age="N/A", rss="N/A", cmdline="N/A",
                     io="N/A", children_total="N/A", nice="Zombie"),
                ("n/stat.node", {"node": "n", "load": "N/A", "cpu": "N/A", "mem_used": "N/A",
                                 "mem_total": "N/A", "mem_percent": "N/A", "processes": "N/A"}))
    out = texts(model)
    assert "cpu N/A%" in out[0]
    line = next(t for t in out if t.strip().startswith("1 "))
    assert line.split() == ["1", "N/A", "N/A", "N/A", "N/A", "N/A"]
    detail = texts(model, View(detail=("n", "w")))
    assert any("Zombie" in t for t in detail)


def test_several_nodes_are_grouped_by_node_and_can_be_limited():
    model = fed(node_stat("web2"), agg("web2", "app", [20]), proc("web2", "app", 20),
                node_stat("web1"), agg("web1", "app", [10]), proc("web1", "app", 10))
    out = texts(model)
    heads = [i for i, t in enumerate(out) if t.startswith("web")]
    assert [out[i].split()[0] for i in heads] == ["web1", "web2"]
    first, second = out[heads[0]:heads[1]], out[heads[1]:]
    assert any(t.strip().startswith("10 ") for t in first)
    assert any(t.strip().startswith("20 ") for t in second)
    only = texts(model, View(nodes=frozenset({"web2"})))
    assert not any(t.startswith("web1") for t in only)
    assert selectable(rows(model, View(), 0.0)) == [("web1", "app"), ("web2", "app")]


def test_selection_moves_within_bounds():
    keys = [("n", "a"), ("n", "b"), ("n", "c")]
    assert move_selection(keys, None, 1) == ("n", "a")
    assert move_selection(keys, ("n", "a"), 1) == ("n", "b")
    assert move_selection(keys, ("n", "c"), 5) == ("n", "c")
    assert move_selection(keys, ("n", "b"), -10) == ("n", "a")
    assert move_selection([], ("n", "a"), 1) is None


def test_detail_view_lists_every_field():
    model = fed(node_stat("n"), proc("n", "web", 42, cpu=3.0), agg("n", "web", [42]))
    out = rows(model, View(detail=("n", "web")), 0.0)
    assert out[0].style is Style.NODE
    assert any("FDS" in r.text and "WRITE" in r.text for r in out if r.style is Style.HEADER)
    line = next(r.text for r in out if r.style is Style.PROCESS)
    assert line.split()[:6] == ["42", "3.0", "0.1", "8.0M", "16.0M", "4"]
    assert "4.0K" in line and "root" in line
    gone = rows(model, View(detail=("n", "nope")), 0.0)
    assert "no longer published" in gone[0].text


def test_sockets_rows():
    model = fed(("n/stat.sockets.5", {"fd": 5, "address": "127.0.0.1:8080", "reads": 3, "queue": 1,
                                      "backlog": 128, "connections": 7}),
                ("n/stat.sockets.6", {"fd": 6, "address": "/tmp/s.sock", "reads": 0, "queue": None,
                                      "backlog": None, "connections": 0}),
                ("n/stat.sockets", {"addresses": [], "reads": 3, "queue": 1, "connections": 7}))
    out = texts(model)
    assert next(t for t in out if t.startswith("sockets (2)")).split()[2:] == ["7", "1", "3"]
    header = next(t for t in out if "CONNS" in t)
    line = next(t for t in out if "8080" in t)
    assert line.index(" 7") + 2 == header.index("CONNS") + 5      # the columns line up
    assert next(t for t in out if "8080" in t).split() == ["127.0.0.1:8080", "7", "1", "3"]
    assert next(t for t in out if "s.sock" in t).split() == ["/tmp/s.sock", "0", "-", "0"]


def test_snapshot_is_json_and_follows_the_view():
    model = fed(node_stat("n"), proc("n", "web", 1), agg("n", "web", [1]), agg("n", "db", [2]))
    data = json.loads(json.dumps(snapshot(model, View(filter="we"))))
    assert list(data["nodes"]["n"]["watchers"]) == ["web"]
    assert data["nodes"]["n"]["watchers"]["web"]["processes"][0]["pid"] == 1
    assert data["nodes"]["n"]["watchers"]["web"]["state"] == "-"      # not in the stream
    assert data["nodes"]["n"]["node"]["load"] == [0.5, 0.25, 0.125]
    assert "sockets" not in data["nodes"]["n"]


def test_waiting_note_and_human_units():
    assert texts(Model()) == ["(waiting for the stats stream)"]
    assert [human_bytes(v) for v in (512, 2048, 5 * 1024 ** 3, "N/A", None)] == \
        ["512B", "2.0K", "5.0G", "N/A", "-"]
    assert [human_age(v) for v in (5.9, 185, 7380, 3 * 86400 + 7200)] == \
        ["5s", "3m05s", "2h03m", "3d02h"]


# -- states and trouble ----------------------------------------------------------------------

def troubled_model():
    view = {**node_stat("n")[1], "watcher_processes": 3, "in_trouble": 2}
    return fed(("n/stat.node", view),
               agg("n", "busy", [1, 2], cpu=50.0, state="active", trouble=None, wanted=2,
                   restarts=0, reason=""),
               proc("n", "busy", 1, cpu=60.0, state="running"),
               proc("n", "busy", 2, cpu=40.0, state="stopping"),
               agg("n", "crasher", [], state="active", trouble="backoff", wanted=1, restarts=53,
                   reason="1 process(es) in backoff: exit code 1; respawn in 10.87 s"),
               agg("n", "web2", [], state="fatal", trouble="fatal", wanted=1, restarts=5,
                   reason="exited 6 times in 4.5 s: exit code 1"),
               agg("n", "idle", [3], cpu=0.0, state="active", trouble=None, wanted=1),
               proc("n", "idle", 3, state="running"),
               agg("n", "off", [], state="stopped", trouble=None, wanted=2))


def test_a_watcher_in_trouble_never_looks_idle():
    out = texts(troubled_model())
    assert out[0].endswith("watchers 2 (2 in trouble)  processes 3 (300 on the machine)")
    assert out[1].split() == ["WATCHER", "/", "PID", "STATE", "CPU%", "MEM%", "RSS", "AGE",
                              "COMMAND"]
    groups = [t.split() for t in out if t[:1].isalpha()][2:]
    # trouble first (fatal, then backoff), then the others by CPU; stopped on purpose: (0)
    assert groups == [["web2", "(0/1)", "fatal", "-", "-", "-", "-"],
                      ["crasher", "(0/1)", "backoff", "-", "-", "-", "-"],
                      ["busy", "(2)", "active", "50.0", "0.0", "0B", "0s"],
                      ["idle", "(1)", "active", "0.0", "0.0", "0B", "0s"],
                      ["off", "(0)", "stopped", "-", "-", "-", "-"]]
    assert next(t for t in out if t.strip().startswith("2 ")).split()[:2] == ["2", "stopping"]
    assert "2 watchers in trouble" in title(View(), troubled_model())
    # the order holds whatever the sort key
    names = [g.name for g in visible_groups(troubled_model().nodes["n"], View(sort=SortKey.NAME))]
    assert names == ["web2", "crasher", "busy", "idle", "off"]


def test_states_are_coloured_spans():
    all_rows = rows(troubled_model(), View(), 0.0)
    by_name = {r.key[1]: r for r in all_rows if r.key}
    for name, word, expected in (("web2", "fatal", Tone.BAD), ("crasher", "backoff", Tone.WARN),
                                 ("busy", "active", Tone.GOOD)):
        (start, end, got), = by_name[name].spans
        assert by_name[name].text[start:end] == word and got is expected
    assert by_name["off"].spans == ()                          # stopped on purpose: plain
    node = all_rows[0]
    (start, end, got), = node.spans
    assert node.text[start:end] == "(2 in trouble)" and got is Tone.BAD
    stopping = next(r for r in all_rows if r.text.strip().startswith("2 "))
    assert [stopping.text[a:b] for a, b, _ in stopping.spans] == ["stopping"]
    running = next(r for r in all_rows if r.text.strip().startswith("1 "))
    assert running.spans == ()                                  # the normal case is not painted
    text = coloured(by_name["web2"], True)
    assert "\x1b[31mfatal\x1b[0m" in text and coloured(by_name["web2"], False) == by_name["web2"].text


def test_detail_says_the_state_why_and_where_the_output_is():
    out = texts(troubled_model(), View(detail=("n", "crasher")))
    assert out[2] == ("  state backoff (circusd's state: active): 1 process(es) in backoff: "
                      "exit code 1; respawn in 10.87 s; 53 restarts")
    assert out[3] == "  its last output lines: circusctl status crasher (on n)"
    assert "STATE" in out[4]


def test_snapshot_gives_state_and_trouble():
    data = snapshot(troubled_model(), View())
    watchers = data["nodes"]["n"]["watchers"]
    assert {n: (w["state"], w["trouble"]) for n, w in watchers.items()} == {
        "web2": ("fatal", "fatal"), "crasher": ("backoff", "backoff"), "busy": ("active", None),
        "idle": ("active", None), "off": ("stopped", None)}


def test_health_words_tones_and_colour_rules():
    assert state_word("active", "backoff") == "backoff" and state_word("active", None) == "active"
    assert state_word(None, None) == "-" and state_word("stopped", "bogus") == "stopped"
    assert [tone(w) for w in ("fatal", "exited", "backoff", "active", "stopped", "?")] == \
        [Tone.BAD, Tone.BAD, Tone.WARN, Tone.GOOD, Tone.IDLE, Tone.UNKNOWN]
    assert in_trouble({"state": "fatal"}) == "fatal"            # a circusd without "trouble"
    assert in_trouble({"state": "active", "trouble": "exited"}) == "exited"
    assert in_trouble({"state": "active", "trouble": None}) is None and in_trouble(None) is None
    assert paint("x", Tone.BAD, False) == "x" and paint("x", Tone.IDLE, True) == "x"

    class Tty:
        def isatty(self):
            return True
    assert use_colour(Tty(), {}) and not use_colour(Tty(), {"NO_COLOR": "1"})
    assert use_colour(Tty(), {"NO_COLOR": ""}) and not use_colour(Tty(), {"TERM": "dumb"})
    with open(__file__) as not_a_tty:
        assert not use_colour(not_a_tty, {})


@pytest.mark.parametrize("name", ["a-very-long-watcher-name-indeed", "w"])
def test_the_state_span_follows_a_long_label(name):
    model = fed(agg("n", name, [], state="fatal", trouble="fatal", wanted=1))
    row = next(r for r in rows(model, View(), 0.0) if r.key)
    (start, end, _), = row.spans
    assert row.text[start:end] == "fatal"


# -- many nodes ---------------------------------------------------------------------------------

def test_nodes_in_natural_order_and_a_node_filter():
    from circus.stats.topview import natural_key
    names = ["node10", "node2", "node1", "Node3", "node100", "web-b", "web-a", "db"]
    assert sorted(names, key=natural_key) == ["db", "node1", "node2", "Node3", "node10",
                                               "node100", "web-a", "web-b"]
    model = fed(*[m for n in ("node10", "node2", "node1") for m in
                  (node_stat(n), agg(n, "app", [1]), proc(n, "app", 1))])
    heads = [t.split()[0] for t in texts(model) if t.startswith("node")]
    assert heads == ["node1", "node2", "node10"]
    assert list(snapshot(model, View())["nodes"]) == ["node1", "node2", "node10"]
    only = View(node_filter="NODE1")
    assert [t.split()[0] for t in texts(model, only) if t.startswith("node")] == \
        ["node1", "node10"]
    assert title(only, model).startswith("circus-top  nodes 2 of 3  ") and "nodes 'NODE1'" in \
        title(only, model)
    assert texts(model, View(node_filter="zz")) == ["(no node matches 'zz')"]


def test_the_pool_wide_view_sorts_across_nodes():
    model = fed(agg("a", "web", [1], cpu=5.0), agg("b", "web", [2], cpu=50.0),
                agg("b", "db", [3], cpu=1.0), agg("c", "web", [4], cpu=20.0, trouble="backoff"),
                agg("a", "db", [5], cpu=9.0))
    view = View(pool=True)
    lines = texts(model, view)
    assert lines[0].startswith("NODE/WATCHER")
    assert [line.split()[0] for line in lines[1:]] == ["c/web", "b/web", "a/db", "a/web", "b/db"]
    assert selectable(rows(model, view, 0.0))[0] == ("c", "web")      # trouble first, then CPU
    by_name = [t.split()[0] for t in texts(model, View(pool=True, sort=SortKey.NAME))[1:]]
    assert by_name == ["c/web", "a/db", "b/db", "a/web", "b/web"]
    assert "sort cpu desc pool-wide" in title(view, model)
    assert texts(model, View(pool=True, filter="zz"))[1:] == ["(no watcher matches 'zz')"]


def test_a_degraded_proxy_notice_is_shown_on_its_node_and_expires():
    notice = ("web1/stat.degraded", {"node": "web1", "degraded": True, "by": "circusmeta proxy",
                                      "dropped": 3, "reason": "..."})
    model = fed(node_stat("web1"), agg("web1", "degraded", [7]), notice)
    assert model.nodes["web1"].degraded is not None
    assert "degraded" in model.nodes["web1"].groups          # a watcher of that name stays one
    head = next(r for r in rows(model, View(), 0.0) if r.style is Style.NODE)
    assert "[proxy: aggregates only]" in head.text
    assert any(tone is Tone.WARN for _, _, tone in head.spans)
    assert "1 degraded by the proxy" in title(View(), model)
    assert snapshot(model, View())["nodes"]["web1"]["degraded"]["dropped"] == 3
    model.feed("web1/stat.degraded", {**notice[1], "degraded": False}, 1.0)
    assert model.nodes["web1"].degraded is None
    model.feed(*notice, 2.0)
    model.expire(10.0)
    assert model.nodes["web1"].degraded is None


def test_a_scrolled_window_keeps_its_node_header():
    from circus.stats.toprows import Row, page_selection, scroll_to, window
    body = []
    for n in range(5):
        if body:
            body.append(Row("", Style.NOTE))
        body += [Row(f"n{n}", Style.NODE), Row("WATCHER", Style.HEADER),
                 Row(f"w{n}", Style.GROUP, (f"n{n}", "w")), Row(f"  {n}", Style.PROCESS),
                 Row(f"x{n}", Style.GROUP, (f"n{n}", "x")), Row(f"  {n}", Style.PROCESS)]
    assert window(body, 0, 4) == (None, body[0:4])
    sticky, shown = window(body, 3, 4)                # inside n0's block
    assert sticky.text == "n0" and shown == body[3:6]
    assert window(body, 7, 4) == (None, body[7:11])  # a block's own header first
    assert window(body, 6, 4) == (None, body[6:10])  # the blank line before it
    # the selection stays visible under the sticky header; the end of the list is reachable
    index = body.index(next(r for r in body if r.key == ("n1", "x")))
    top = scroll_to(body, 0, 4, index)
    sticky, shown = window(body, top, 4)
    assert body[index] in shown
    last = scroll_to(body, 100, 4, None)             # as far as it goes: the last row shown
    sticky, shown = window(body, last, 4)
    assert shown[-1] is body[-1] and sticky.text == "n4" and len(shown) == 3
    assert body[len(body) - 2] in window(body, scroll_to(body, 0, 4, len(body) - 2), 4)[1]
    assert page_selection(body, ("n0", "w"), 7) == ("n1", "w")
    assert page_selection(body, ("n4", "x"), 7) == ("n4", "x")
    assert page_selection(body, ("n2", "w"), -7) == ("n1", "w")
    assert page_selection(body, None, -1) == ("n4", "x")
