"""Tier 3 on loopback: circusmeta against three real circusd nodes (ipc:// endpoints)."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from circusmeta import Pool
from statsfeed import StatsFeed

pytestmark = pytest.mark.real

PY = sys.executable


class Nodes:
    def __init__(self, circusd, tmp_path: Path) -> None:
        self.circusd, self.tmp = circusd, tmp_path
        self.daemons = {}
        self.pool = tmp_path / "pool.ini"

    def start(self, name: str, watchers: str, extra: str = "") -> None:
        sock = self.tmp / name
        text = textwrap.dedent(f"""
            [circus]
            endpoint = ipc://{sock}-c.sock
            pubsub_endpoint = ipc://{sock}-p.sock
            stats_endpoint = ipc://{sock}-s.sock
        """) + textwrap.dedent(extra or "statsd = false\n") + textwrap.dedent(watchers)
        d = self.circusd(text, "--name", name)
        d.wait(lambda: Path(f"{sock}-c.sock").exists(), what=f"{name}'s control socket")
        self.daemons[name] = d

    def endpoint(self, name: str) -> str:
        return f"ipc://{self.tmp / name}-c.sock"

    def write_pool(self, tags: dict[str, str], extra: str = "") -> Path:
        text = "[meta]\ntimeout = 2\nstrategy = round_robin\n"
        for name in self.daemons:
            text += f"[node:{name}]\nendpoint = {self.endpoint(name)}\n"
            text += f"stats_endpoint = ipc://{self.tmp / name}-s.sock\n"
            if tags.get(name):
                text += f"tags = {tags[name]}\n"
        self.pool.write_text(text + extra)
        return self.pool

    def meta(self, *args: str, timeout: float = 60) -> tuple[int, str, str]:
        r = subprocess.run([PY, "-m", "circusmeta.cli", "--pool", str(self.pool), *args],
                           capture_output=True, text=True, timeout=timeout)
        return r.returncode, r.stdout, r.stderr

    def ctl(self, name: str, *args: str) -> tuple[int, str]:
        r = subprocess.run([PY, "-m", "circus.cli.circusctl", "--endpoint", self.endpoint(name),
                            *args], capture_output=True, text=True, timeout=30)
        return r.returncode, r.stdout.strip() or r.stderr.strip()

    def stop(self) -> None:
        for d in self.daemons.values():
            d.stop()


@pytest.fixture
def nodes(circusd, tmp_path):
    n = Nodes(circusd, tmp_path)
    n.start("n1", "[watcher:sl]\ncmd = sleep 300\n[watcher:extra]\ncmd = sleep 300\n")
    n.start("n2", "[watcher:sl]\ncmd = sleep 300\n")
    n.start("n3", "[watcher:sl]\ncmd = sleep 300\n[watcher:other]\ncmd = sleep 300\n")
    n.write_pool({"n1": "web, eu", "n2": "web", "n3": "db"})
    for name in n.daemons:
        n.daemons[name].wait(lambda name=name: n.ctl(name, "numprocesses")[1] not in ("", "0"),
                             what=f"{name} started")
    yield n
    n.stop()


def test_nodes_shows_every_node_and_flags_a_wrong_name(nodes):
    code, out, err = nodes.meta("nodes")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["NODE", "STATE", "ADDRESS", "TAGS"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {"n1", "n2", "n3"} and all(r[1] == "active" for r in rows.values())
    assert rows["n1"][3] == "web,eu"
    code, out, _ = nodes.meta("--json", "nodes")
    data = {n["node"]: n for n in json.loads(out)["nodes"]}
    assert data["n1"]["info"]["watchers"] == 2 and data["n2"]["info"]["processes"] == 1
    assert data["n3"]["info"]["name"] == "n3" and data["n2"]["rtt"] > 0
    # an entry whose address is another node's: flagged
    nodes.write_pool({}, f"[node:web9]\nendpoint = {nodes.endpoint('n2')}\n")
    code, out, _ = nodes.meta("nodes")
    assert "web9 (reports 'n2')" in out and code == 0


def test_status_list_stats_are_merged_and_keyed_by_node(nodes):
    code, out, err = nodes.meta("status")
    assert code == 0 and err == ""
    assert out.splitlines() == ["NODE  WATCHER  STATE   TROUBLE  REASON",
                                "n1    extra    active  -",
                                "n1    sl       active  -",
                                "n2    sl       active  -",
                                "n3    other    active  -",
                                "n3    sl       active  -"]
    code, out, _ = nodes.meta("list", "--tag", "web")
    assert out.splitlines() == ["NODE  WATCHER", "n1    extra", "n1    sl", "n2    sl"]
    code, out, _ = nodes.meta("stats", "--node", "n2")
    pid = nodes.ctl("n2", "list", "sl")[1]
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["NODE", "WATCHER", "PID", "CPU%", "MEM%", "RSS",
                                              "AGE"]
    assert lines[1].split()[:3] == ["n2", "sl", pid] and len(lines) == 2


def test_control_commands_fan_out_with_results_per_node(nodes, tmp_path):
    code, _, err = nodes.meta("incr", "sl")
    assert code == 2 and "--node N, --tag T or --all" in err
    code, out, err = nodes.meta("--log-dir", str(tmp_path / "audit"), "--all", "incr", "sl")
    assert code == 0, err
    assert sorted(out.splitlines()) == ["n1: ok", "n2: ok", "n3: ok"]   # 0.19's reply
    assert [nodes.ctl(n, "numprocesses", "sl")[1] for n in ("n1", "n2", "n3")] == ["2"] * 3
    audit = list((tmp_path / "audit").glob("*-incr-sl.log"))
    assert len(audit) == 1
    entries = [json.loads(line) for line in audit[0].read_text().splitlines()]
    assert entries[0]["run"]["command"] == "incr"
    assert {e["node"] for e in entries[1:-1]} == {"n1", "n2", "n3"} and entries[-1]["exit"] == 0
    code, out, _ = nodes.meta("--tag", "web", "decr", "sl")
    assert code == 0 and nodes.ctl("n3", "numprocesses", "sl")[1] == "2"
    assert nodes.ctl("n2", "numprocesses", "sl")[1] == "1"
    # a watcher only some nodes have: partial; a watcher nobody has: every node refused
    code, out, _ = nodes.meta("--all", "stop", "other")
    assert code == 4 and "n3: ok" in out and "n1: error:" in out
    code, out, _ = nodes.meta("--all", "stop", "nobody")
    assert code == 3
    assert not list((tmp_path / "audit").glob("*status*"))      # read-only runs leave none


def test_add_places_by_strategy_and_refuses_existing_names(nodes):
    code, out, err = nodes.meta("add", "job", "sleep", "200", "--start")
    assert code == 0, err
    assert out.strip() == "job -> n2: added (round_robin: fewest watchers (1))"
    nodes.daemons["n2"].wait(lambda: nodes.ctl("n2", "list", "job")[1], what="job running")
    code, _, err = nodes.meta("add", "job", "sleep", "200")
    assert code == 3 and "already exists on n2" in err
    code, out, err = nodes.meta("--json", "add", "pair", "sleep", "200", "--spread", "2",
                                "--tag", "web", "--numprocesses", "2", "--start")
    assert code == 0, err
    placed = json.loads(out)["placed"]
    assert sorted(p["node"] for p in placed) == ["n1", "n2"]
    nodes.daemons["n1"].wait(lambda: nodes.ctl("n1", "numprocesses", "pair")[1] == "2",
                             what="pair on n1")
    code, _, err = nodes.meta("add", "three", "sleep", "1", "--spread", "3", "--tag", "web")
    assert code == 3 and "needs 3 distinct nodes" in err
    code, out, err = nodes.meta("add", "pinned", "sleep", "1", "--node", "n3",
                                "--option", "autostart=false")
    assert code == 0 and out.startswith("pinned -> n3: added (given with --node)")
    code, _, err = nodes.meta("add", "x", "sleep", "1", "--node", "n3", "--spread", "2")
    assert code == 2, err


def test_add_keeps_the_commands_own_options_and_dash_dash_makes_words_literal(nodes):
    code, out, err = nodes.meta("add", "own", "sh", "-c", "exec sleep 301", "--node", "n1",
                                "--start")
    assert code == 0 and out.startswith("own -> n1: added"), out + err
    code, out = nodes.ctl("n1", "--json", "get", "own", "cmd")
    assert json.loads(out)["options"]["cmd"] == "sh -c 'exec sleep 301'"   # one word stays one
    nodes.daemons["n1"].wait(lambda: nodes.ctl("n1", "list", "own")[1], what="own started")
    # --node before the command, then --: every later word is the command's
    code, out, err = nodes.meta("--node", "n3", "add", "lit", "--", "sleep", "302", "--start")
    assert code == 0 and out.startswith("lit -> n3: added (given with --node)"), out + err
    code, out = nodes.ctl("n3", "--json", "get", "lit", "cmd")
    assert json.loads(out)["options"]["cmd"] == "sleep 302 --start"
    assert nodes.ctl("n3", "status", "lit")[1].startswith("stopped")
    code, _, err = nodes.meta("add", "typo", "sleep", "1", "--node", "n2", "--strategi", "x")
    assert code == 0 and "warning: --strategi is given to the command (did you mean " \
        "--strategy?)" in err, err
    code, _, err = nodes.meta("add", "--bogus", "x", "sleep", "1")
    assert code == 2 and "unknown option --bogus" in err, err
    code, _, err = nodes.meta("--all", "add", "every", "sleep", "1")
    assert code == 2 and "no --all" in err, err


def test_circusctl_node_and_rename(nodes):
    r = subprocess.run([PY, "-m", "circus.cli.circusctl", "--pool", str(nodes.pool), "--node",
                        "n3", "list"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "other,sl"
    r = subprocess.run([PY, "-m", "circus.cli.circusctl", "--pool", str(nodes.pool), "--node",
                        "n7", "list"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "no node 'n7'" in r.stderr
    assert nodes.ctl("n2", "rename", "n2b") == (0, "ok")
    code, out, _ = nodes.meta("nodes")
    assert "n2 (reports 'n2b')" in out
    code, out = nodes.ctl("n2", "--json", "nodeinfo")
    assert json.loads(out)["name"] == "n2b"
    code, out = nodes.ctl("n2", "rename", "bad/name")
    assert code == 3 and "1 to 64 letters" in out


def test_rename_moves_the_stats_prefix(circusd, tmp_path):
    n = Nodes(circusd, tmp_path)
    n.start("s1", "[watcher:sl]\ncmd = sleep 300\n", extra="statsd = true\nstats_interval = 0.2\n")
    feed = StatsFeed(f"ipc://{tmp_path}/s1-s.sock")
    try:
        alive = lambda: n.daemons["s1"].proc.poll() is None  # noqa: E731
        feed.wait(lambda f: "s1/stat.node" in f.latest, what="s1 stats", alive=alive)
        assert n.ctl("s1", "rename", "renamed") == (0, "ok")
        feed.wait(lambda f: "renamed/stat.node" in f.latest, what="stats under the new name",
                  alive=alive)
        assert feed.latest["renamed/stat.node"]["node"] == "renamed"
    finally:
        feed.close()
        n.stop()


def test_library_gives_a_result_per_node(nodes):
    async def run():
        async with Pool.from_file(str(nodes.pool)) as pool:
            results = await pool.call("numprocesses", name="sl", nodes=pool.select(tag="web"))
            where = await pool.where("other")
            info = await pool.nodes()
            return results, where, info
    results, where, info = asyncio.run(run())
    assert {n: r.reply["numprocesses"] for n, r in results.items()} == {"n1": 1, "n2": 1}
    assert all(r.ok and r.state == "active" for r in results.values())
    assert where == ["n3"] and {r.reply["name"] for r in info.values()} == {"n1", "n2", "n3"}
