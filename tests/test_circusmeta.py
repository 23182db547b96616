"""Tier 1: the pool file, placement strategies, exit codes and selection (no sockets)."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from circus.config import ConfigError
from circusmeta import NodeResult, Pool, SelectionError, exit_code, locate_pool, parse_pool
from circusmeta.audit import audit_name, write_audit
from circusmeta.cli import Usage, take_selection
from circusmeta.placement import NodeView, PlacementError, place, rank

POOL = """\
[meta]
strategy = round_robin
timeout = 2.5
stats_endpoint = tcp://127.0.0.1:5570
log_dir = /var/log/circusmeta

[node:web1]
endpoint = tcp://10.0.0.11:5555
pubsub_endpoint = tcp://10.0.0.11:5556
stats_endpoint = tcp://10.0.0.11:5557
tags = web, eu

[node:web2]
endpoint = tcp://10.0.0.12:5555
tags = web
timeout = 7

[node:db]
endpoint = ipc:///run/circus/db.sock

[collection:backend]
members = db:postgres

[collection:frontend]
members = web1:nginx, web2:nginx, backend
mode = parallel
"""


def test_pool_file_read_whole():
    pool = parse_pool(POOL, "pool.ini")
    assert pool.meta.strategy == "round_robin" and pool.meta.timeout == 2.5
    assert pool.meta.stats_endpoint == "tcp://127.0.0.1:5570"
    assert pool.meta.pubsub_endpoint == "tcp://127.0.0.1:5571"          # the default
    assert pool.meta.log_dir == "/var/log/circusmeta"
    assert list(pool.nodes) == ["web1", "web2", "db"]
    web1 = pool.nodes["web1"]
    assert web1.tags == ("web", "eu") and web1.stats_endpoint == "tcp://10.0.0.11:5557"
    assert pool.deadline(pool.nodes["web2"]) == 7 and pool.deadline(web1) == 2.5
    front = pool.collections["frontend"]
    assert front.mode == "parallel" and [str(m) for m in front.members] == \
        ["web1:nginx", "web2:nginx", "backend"]
    assert [str(m) for m in pool.expand("frontend")] == ["web1:nginx", "web2:nginx", "db:postgres"]
    assert pool.collections["backend"].mode == "sequential"


@pytest.mark.parametrize("text, expected", [
    ("[node:a]\nendpont = tcp://h:1\n", "pool.ini:2: [node:a] endpont: unknown option (did you "
                                       "mean 'endpoint'?)"),
    ("[node:a]\ntags = x\n", "pool.ini:1: [node:a] no endpoint"),
    ("[node:a]\nendpoint = http://h\n", "pool.ini:2: [node:a] endpoint: expected an endpoint"),
    ("[meta]\nstrategy = fastest\n[node:a]\nendpoint = tcp://h:1\n",
     "pool.ini:2: [meta] strategy: unknown strategy 'fastest'"),
    ("[meta]\ntimeout = -1\n[node:a]\nendpoint = tcp://h:1\n",
     "pool.ini:2: [meta] timeout: expected a number of seconds > 0"),
    ("[nodes:a]\nendpoint = tcp://h:1\n", "pool.ini:1: [nodes:a] unknown section"),
    ("[node:a b]\nendpoint = tcp://h:1\n", "a name has 1 to 64"),
    ("[node:a]\nendpoint = tcp://h:1\n[collection:c]\nmembers = b:web\n",
     "pool.ini:4: [collection:c] members: unknown node 'b' in b:web"),
    ("[node:a]\nendpoint = tcp://h:1\n[collection:c]\nmembers = a:web, d\n",
     "'d' is neither NODE:WATCHER nor a collection"),
    ("[node:a]\nendpoint = tcp://h:1\n[collection:c]\nmembers = d\n[collection:d]\nmembers = c\n",
     "collection 'c' contains itself"),
    ("[node:a]\nendpoint = tcp://h:1\n[collection:c]\nmembers = a:w\nmode = random\n",
     "[collection:c] mode: expected sequential or parallel"),
    ("[meta]\ntimeout = 3\n", "no [node:NAME] section"),
])
def test_bad_pool_files_name_file_line_section_key(text, expected):
    with pytest.raises(ConfigError) as err:
        parse_pool(text, "pool.ini")
    assert expected in str(err.value)


def test_duplicate_node_header_in_one_file_is_an_error_naming_both_lines():
    # two nodes pasted under one name: merging them would drop one without a word
    with pytest.raises(ConfigError) as err:
        parse_pool("[node:a]\nendpoint = tcp://h:1\n[node:a]\nendpoint = tcp://h:2\n", "p.ini")
    text = str(err.value)
    assert "p.ini:3: [node:a] section started again (first at line 1)" in text
    assert "no-strict" not in text


def test_every_problem_reported_at_once():
    with pytest.raises(ConfigError) as err:
        parse_pool("[meta]\nstrategy = x\n[node:a]\nendpoint = nope\ncolour = red\n", "p.ini")
    assert len(err.value.issues) == 3


def test_locating_the_pool_file(tmp_path):
    home = tmp_path / "home"
    (home / ".config" / "circus").mkdir(parents=True)
    assert locate_pool("given.ini", {"CIRCUSMETA_POOL": "env.ini"}) == "given.ini"
    assert locate_pool(None, {"CIRCUSMETA_POOL": "env.ini"}) == "env.ini"
    default = home / ".config" / "circus" / "pool.ini"
    candidates = ("~/.config/circus/pool.ini", str(tmp_path / "etc.ini"))
    with pytest.raises(ConfigError, match="no pool file"):
        locate_pool(None, {"HOME": str(home)}, candidates)
    (tmp_path / "etc.ini").write_text("")
    assert locate_pool(None, {"HOME": str(home)}, candidates) == str(tmp_path / "etc.ini")
    default.write_text("")
    assert locate_pool(None, {"HOME": str(home)}, candidates) == str(default)


# -- placement -----------------------------------------------------------------------------------

NODES = [
    NodeView("a", ("web",), watchers=3, processes=10, load1=1.0, cpu_count=2,
             mem_total=100, mem_available=20),
    NodeView("b", ("web", "eu"), watchers=1, processes=30, load1=3.0, cpu_count=8,
             mem_total=100, mem_available=70),
    NodeView("c", (), watchers=1, processes=5, load1=0.1, cpu_count=1,
             mem_total=100, mem_available=50),
]


@pytest.mark.parametrize("strategy, order", [
    ("round_robin", ["b", "c", "a"]),           # fewest watchers, ties by name
    ("least_loaded", ["c", "b", "a"]),          # 0.1/1 < 3/8 < 1/2
    ("least_memory", ["b", "c", "a"]),          # 30 % < 50 % < 80 % used
    ("fewest_processes", ["c", "a", "b"]),
])
def test_strategies_rank_by_their_number(strategy, order):
    assert [n.name for n, _ in rank(strategy, NODES)] == order
    first = place(strategy, NODES)
    assert [c.node for c in first] == order[:1] and first[0].reason.startswith(strategy)


def test_random_strategy_uses_the_given_generator():
    picks = {place("random", NODES, rng=random.Random(seed))[0].node for seed in range(30)}
    assert picks == {"a", "b", "c"}
    assert place("random", NODES, rng=random.Random(4)) == place("random", NODES,
                                                                 rng=random.Random(4))


def test_tags_and_spread():
    assert [c.node for c in place("least_loaded", NODES, tag="web")] == ["b"]
    assert [c.node for c in place("round_robin", NODES, spread=3)] == ["b", "c", "a"]
    with pytest.raises(PlacementError, match="needs 3 distinct nodes, 2 can take it"):
        place("round_robin", NODES, tag="web", spread=3)
    with pytest.raises(PlacementError, match="no reachable node has tag 'us'"):
        place("round_robin", NODES, tag="us")
    with pytest.raises(PlacementError, match="at least 1"):
        place("round_robin", NODES, spread=0)
    with pytest.raises(PlacementError, match="unknown strategy"):
        place("fastest", NODES)


def test_node_view_from_nodeinfo():
    view = NodeView.from_nodeinfo("x", ["t"], {"load": [2.0, 1, 1], "cpu_count": 4,
                                               "watchers": 2, "processes": 9,
                                               "mem_total": 200, "mem_available": 50})
    assert view.load_per_cpu == 0.5 and view.mem_used_ratio == 0.75 and view.tags == ("t",)


# -- results and exit codes ----------------------------------------------------------------------

def _r(name, state="active", status="ok"):
    reply = {"status": status, "node": name} if state == "active" else None
    return NodeResult(name, state, reply)


def test_exit_codes_follow_design():
    assert exit_code([_r("a"), _r("b")]) == 0
    assert exit_code([_r("a", "not_available"), _r("b", "unresponsive")]) == 1
    assert exit_code([_r("a", status="error"), _r("b", status="error")]) == 3
    assert exit_code([_r("a"), _r("b", "not_available")]) == 4
    # nobody did it: the ones that answered refused, the rest were not reached
    assert exit_code([_r("a", status="error"), _r("b", "not_available")]) == 3
    assert exit_code([_r("a"), _r("b", status="error")]) == 4
    assert exit_code([]) == 1


def test_a_state_in_status_is_not_an_error_and_names_are_checked():
    assert _r("a", status="active").ok                         # status name=W's 0.19 reply
    moved = NodeResult("web1", "active", {"status": "ok", "node": "web9"})
    assert moved.name_mismatch and moved.to_dict()["reported_name"] == "web9"
    assert not _r("web1").name_mismatch


def test_selection():
    pool = Pool(parse_pool(POOL, "pool.ini"))
    assert pool.select() == ["web1", "web2", "db"]
    assert pool.select(tag="web") == ["web1", "web2"]
    assert pool.select(tag=["web", "eu"]) == ["web1"]
    assert pool.select(node=["db", "web1"]) == ["web1", "db"]
    with pytest.raises(SelectionError, match="no node 'web3'"):
        pool.select(node="web3")
    with pytest.raises(SelectionError, match="no node has tag"):
        pool.select(tag="us")
    assert take_selection(["restart", "--node", "a", "web", "--tag=t", "--all"]) == \
        (["restart", "web"], ["a"], ["t"], True)
    with pytest.raises(Usage):
        take_selection(["--node"])


def test_audit_files_are_named_by_time_command_and_arguments(tmp_path):
    assert audit_name("restart", ["--rolling", "web/x"], 0).endswith("-restart-rolling-web_x.log")
    first = write_audit(str(tmp_path / "log"), "incr", ["web"], {"a": _r("a")}, 0, when=100.0)
    second = write_audit(str(tmp_path / "log"), "incr", ["web"], {"a": _r("a")}, 0, when=100.0)
    assert first != second and second.endswith("-2.log")
    lines = Path(first).read_text().splitlines()
    assert '"command": "incr"' in lines[0] and '"node": "a"' in lines[1] and '"exit": 0' in lines[2]


# -- add NAME CMD...: the command keeps its own options ------------------------------------------

def _add(*words: str):
    from circusmeta.placing import add_parser, split_words
    parser = add_parser()
    argv, suspicious = split_words(parser, list(words))
    ns = parser.parse_args(argv)
    return ns.name, " ".join(ns.cmd), ns, suspicious


@pytest.mark.parametrize("words, name, cmd, start, tags", [
    # examples/pool.ini's line: -m and --bind are the command's, --tag and --start add's
    (("api", "python3", "-m", "http.server", "8201", "--bind", "127.0.0.1", "--tag", "web",
      "--start"), "api", "python3 -m http.server 8201 --bind 127.0.0.1", True, ["web"]),
    (("--start", "api", "sleep", "10", "--tag=batch"), "api", "sleep 10", True, ["batch"]),
    # after --, every word is the command's, add's options included (as circusctl add)
    (("api", "--", "python3", "app.py", "--start", "--tag", "x"), "api",
     "python3 app.py --start --tag x", False, []),
    (("--tag", "web", "api", "--start", "--", "prog", "--start"), "api", "prog --start", True,
     ["web"]),
    (("--", "api", "python3", "-m", "x"), "api", "python3 -m x", False, []),
])
def test_add_reads_name_and_command_as_circusctl_does(words, name, cmd, start, tags):
    got_name, got_cmd, ns, suspicious = _add(*words)
    assert (got_name, got_cmd, ns.start, ns.tag) == (name, cmd, start, tags)
    assert suspicious == []


def test_add_options_with_values_and_near_misses():
    name, cmd, ns, suspicious = _add("job", "sleep", "5", "--numprocesses", "2", "--option",
                                     "autostart=false", "--spread=2", "--strategi", "random")
    assert (name, cmd) == ("job", "sleep 5 --strategi random")   # no option of add: kept
    assert (ns.numprocesses, ns.option, ns.spread) == (2, ["autostart=false"], 2)
    assert suspicious == [("--strategi", "--strategy")]
    from circusmeta.placing import _Usage
    with pytest.raises(_Usage, match="unknown option --strat "):
        _add("--strat", "random", "job", "sleep", "5")           # before NAME: an error
    with pytest.raises(_Usage):
        _add("api", "--num", "2", "--", "sleep", "5")            # no abbreviated option
