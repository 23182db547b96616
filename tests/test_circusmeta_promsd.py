"""Prometheus service discovery from the pool (circusmeta/promsd.py, circusmeta/httpsd.py).

The real part: Debian's ``prometheus`` (installed with apt-get when missing, promtool with it)
started by the test on a free port with its own data directory, scraping three real circusd
through a file_sd file written by ``circusmeta prometheus-sd --out`` and through the http_sd of
``circusmeta proxy --http-sd`` and of ``prometheus-sd --listen``; ``promtool check metrics`` on
every node's ``/metrics``; ``promtool check config`` on the scrape configurations of the docs.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import stat
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from circus.config.errors import ConfigError, ConfigIssue
from circusmeta.httpsd import MAX_HEAD, SdServer
from circusmeta.pool import parse_pool
from circusmeta.promsd import check_address, render, split_address, targets, write_atomically
from conftest import ROOT
from sdnodes import (META, Daemon, ensure_tool, free_ports, http_get, run_meta, start_nodes,
                     stop_nodes, try_get, wait_for)

LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


# -- targets and the file (pure, and one file) ---------------------------------------------------

def test_targets_carry_node_and_tags_as_labels():
    config = parse_pool("""
[node:web1]
endpoint = tcp://10.0.0.11:5555
prometheus_endpoint = 10.0.0.11:9101
tags = web, eu, web
[node:db1]
endpoint = tcp://10.0.0.21:5555
prometheus_endpoint = [fd00::21]:9101
[node:old]
endpoint = tcp://10.0.0.31:5555
""", "p.ini")
    groups, skipped = targets(config.nodes.values())
    assert groups == [
        {"targets": ["10.0.0.11:9101"], "labels": {"circus_node": "web1",
                                                   "circus_tags": ",eu,web,"}},
        {"targets": ["[fd00::21]:9101"], "labels": {"circus_node": "db1"}}]
    assert skipped == ["old"]
    for group in groups:
        assert all(LABEL_NAME.fullmatch(k) and not k.startswith("__") for k in group["labels"])
    assert json.loads(render(groups)) == groups


def test_the_metrics_address_is_checked_in_the_pool_file():
    for good in ("10.0.0.1:9101", "node-1.example.test:9101", "[::1]:9101", "localhost:1"):
        assert check_address(good) is None, good
    for bad in ("9101", "10.0.0.1", "10.0.0.1:0", "10.0.0.1:70000", "http://x:1/metrics",
                "[zz]:1", "a b:1", "::1:9101"):
        assert check_address(bad), bad
    with pytest.raises(ConfigError, match=r"p.ini:3: \[node:a\] prometheus_endpoint: expected "
                                          r"HOST:PORT"):
        parse_pool("[node:a]\nendpoint = tcp://127.0.0.1:1\nprometheus_endpoint = 9101\n",
                   "p.ini")
    assert split_address("0.0.0.0:0", any_port=True) == ("0.0.0.0", 0)


def test_the_file_is_replaced_whole_and_keeps_its_mode(tmp_path):
    path = tmp_path / "circus.json"
    old = os.umask(0o022)
    try:
        write_atomically(str(path), b"[]\n")
    finally:
        os.umask(old)
    assert path.read_bytes() == b"[]\n" and stat.S_IMODE(path.stat().st_mode) == 0o644
    path.chmod(0o640)
    inode = path.stat().st_ino
    write_atomically(str(path), b"[1]\n")
    assert path.read_bytes() == b"[1]\n" and stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.stat().st_ino != inode                   # a new file renamed over the old one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["circus.json"]
    with pytest.raises(OSError):
        write_atomically(str(tmp_path / "missing" / "x.json"), b"[]")


def write_pool(path: Path, nodes, *, tags=None, extra: str = "") -> Path:
    text = "[meta]\ntimeout = 3\n" + extra
    for node in nodes:
        text += (f"[node:{node.name}]\nendpoint = {node.endpoint}\n"
                 f"stats_endpoint = tcp://127.0.0.1:{node.stats}\n"
                 f"pubsub_endpoint = tcp://127.0.0.1:{node.pubsub}\n"
                 f"prometheus_endpoint = {node.metrics_address}\n")
        if tags and tags.get(node.name):
            text += f"tags = {tags[node.name]}\n"
    path.write_text(text)
    return path


def test_the_command_refuses_what_prometheus_could_not_use(tmp_path):
    pool = tmp_path / "pool.ini"
    pool.write_text("[node:a]\nendpoint = tcp://127.0.0.1:1\n")
    code, out, err = run_meta(str(pool), "prometheus-sd")
    assert code == 2 and "no selected node has a prometheus_endpoint" in err
    assert "no prometheus_endpoint for a" in err
    pool.write_text("[node:a]\nendpoint = tcp://127.0.0.1:1\nprometheus_endpoint = h.test:9\n"
                    "tags = x\n[node:b]\nendpoint = tcp://127.0.0.1:2\n"
                    "prometheus_endpoint = h.test:10\n")
    code, _, err = run_meta(str(pool), "prometheus-sd", "--out", str(tmp_path / "t.txt"))
    assert code == 2 and "name it .json" in err
    code, _, err = run_meta(str(pool), "prometheus-sd", "--out", str(tmp_path / "no" / "t.json"))
    assert code == 1 and "cannot write" in err
    code, _, err = run_meta(str(pool), "prometheus-sd", "--listen", "nowhere")
    assert code == 2 and "--listen" in err
    code, out, err = run_meta(str(pool), "prometheus-sd", "--tag", "x", "--out",
                              str(tmp_path / "t.json"))
    assert code == 0 and out.strip() == f"{tmp_path / 't.json'}: 1 target", err
    assert json.loads((tmp_path / "t.json").read_text()) == [
        {"targets": ["h.test:9"], "labels": {"circus_node": "a", "circus_tags": ",x,"}}]
    code, _, err = run_meta(str(pool), "prometheus-sd", "--node", "zz")
    assert code == 2 and "zz" in err


# -- the http_sd server (in-process, a real socket) ----------------------------------------------

async def ask(port: int, raw: bytes) -> tuple[int, dict, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def test_the_http_sd_server_answers_prometheus_and_nothing_else():
    state = {"groups": [{"targets": ["h:1"], "labels": {"circus_node": "a"}}], "fail": None,
             "reads": 0}
    logged: list[str] = []

    def load():
        state["reads"] += 1
        if state["fail"]:
            raise ConfigError([ConfigIssue("p.ini", 3, "node:a", "endpoint", state["fail"])])
        return state["groups"], ["b"]

    async def main() -> None:
        server = SdServer(load, logged.append, timeout=1.0)
        port = int((await server.start("127.0.0.1:0")).rsplit(":", 1)[1])
        try:
            get = b"GET /targets HTTP/1.1\r\nHost: x\r\nX-Prometheus-Refresh-Interval-Seconds: 60" \
                  b"\r\n\r\n"
            code, headers, body = await ask(port, get)
            assert code == 200 and headers["Content-Type"] == "application/json"
            assert json.loads(body) == state["groups"]
            assert int(headers["Content-Length"]) == len(body)
            await ask(port, get)                                 # the same: logged once
            assert logged == ["serving 1 target (no prometheus_endpoint: b)"]
            code, headers, body = await ask(port, b"HEAD /targets?x=1 HTTP/1.1\r\n\r\n")
            assert code == 200 and body == b"" and int(headers["Content-Length"]) > 2
            assert (await ask(port, b"GET / HTTP/1.1\r\n\r\n"))[0] == 404
            code, headers, _ = await ask(port, b"POST /targets HTTP/1.1\r\n\r\n")
            assert code == 405 and headers["Allow"] == "GET, HEAD"
            assert (await ask(port, b"hello\r\n\r\n"))[0] == 400
            assert (await ask(port, b"GET /targets HTTP/1.1\r\nX: " + b"a" * MAX_HEAD +
                              b"\r\n\r\n"))[0] == 431
            reads = state["reads"]
            state["fail"] = "no endpoint"
            code, _, body = await ask(port, get)
            assert code == 503 and b"p.ini:3: [node:a] endpoint: no endpoint" in body
            assert logged[-1].startswith("cannot read the pool, answering 503: p.ini:3")
            state["fail"] = None
            state["groups"] = []
            code, _, body = await ask(port, get)
            assert code == 200 and json.loads(body) == []
            assert state["reads"] == reads + 2
            # a client that sends nothing is dropped at the timeout, others still served
            _, idle = await asyncio.open_connection("127.0.0.1", port)
            assert (await ask(port, get))[0] == 200
            await asyncio.sleep(1.2)
            idle.close()
        finally:
            await server.close()
        assert server.served == 5
    asyncio.run(main())


# -- real nodes, promtool, prometheus ------------------------------------------------------------

@pytest.fixture(scope="module")
def prometheus_bin() -> tuple[str, str]:
    prometheus = ensure_tool("prometheus", "prometheus")
    promtool = ensure_tool("promtool", "prometheus")
    return prometheus, promtool


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    found = start_nodes(tmp_path_factory.mktemp("nodes"), ["n1", "n2", "n3"])
    yield found
    stop_nodes(found)


@pytest.mark.real
def test_promtool_accepts_every_node_metrics(nodes, prometheus_bin):
    _, promtool = prometheus_bin
    for node in nodes:
        # the crashing watcher has exited at least once: its exits counter is in the output
        body = wait_for(lambda n=node: (b := try_get(f"http://{n.metrics_address}/metrics"))
                        and "circus_watcher_exits_total{" in b and b, 30,
                        f"{node.name}'s exits counter")
        assert 'circus_socket_accept_queue{address="127.0.0.1:' in body
        r = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0 and r.stdout == "" and r.stderr == "", (r.stdout, r.stderr)


PROMETHEUS_CONFIG = """
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: circus-file
    file_sd_configs:
      - files: ["{file}"]
        refresh_interval: 1s
  - job_name: circus-proxy
    http_sd_configs:
      - url: http://127.0.0.1:{proxy}/targets
        refresh_interval: 1s
  - job_name: circus-sd
    http_sd_configs:
      - url: http://127.0.0.1:{listen}/targets
        refresh_interval: 1s
"""
JOBS = ("circus-file", "circus-proxy", "circus-sd")


def api(port: int, path: str, **query: str):
    url = f"http://127.0.0.1:{port}/api/v1/{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    try:
        status, body, _ = http_get(url, 3)
    except OSError:
        return None
    return json.loads(body)["data"] if status == 200 else None


def health(port: int) -> dict[tuple[str, str], str]:
    """(job, circus_node) -> health ("up", "down", "unknown") of every active target."""
    data = api(port, "targets", state="active") or {"activeTargets": []}
    return {(t["labels"]["job"], t["labels"].get("circus_node", "?")): t["health"]
            for t in data["activeTargets"]}


def up_targets(port: int) -> dict[str, dict[str, dict]]:
    """job -> circus_node -> the target's labels, of the active targets whose health is up."""
    data = api(port, "targets", state="active") or {"activeTargets": []}
    out: dict[str, dict[str, dict]] = {}
    for target in data["activeTargets"]:
        if target["health"] == "up":
            labels = target["labels"]
            out.setdefault(labels["job"], {})[labels.get("circus_node", "?")] = labels
    return out


@pytest.mark.real
def test_prometheus_scrapes_every_node_through_file_sd_and_http_sd(nodes, prometheus_bin,
                                                                   tmp_path):
    prometheus, _ = prometheus_bin
    tags = {"n1": "web, eu", "n2": "web", "n3": "db"}
    pool = write_pool(tmp_path / "pool.ini", nodes, tags=tags)
    sd_file = tmp_path / "sd" / "circus.json"
    sd_file.parent.mkdir()
    code, out, err = run_meta(str(pool), "prometheus-sd", "--out", str(sd_file))
    assert code == 0 and out.strip() == f"{sd_file}: 3 targets", err
    ports = dict(zip(("proxy", "listen", "web", "stats", "pubsub"), free_ports(5)))
    meta = [META or "circusmeta", "--pool", str(pool)]
    started = [
        Daemon([*meta, "proxy", "--http-sd", f"127.0.0.1:{ports['proxy']}", "--stats-endpoint",
                f"tcp://127.0.0.1:{ports['stats']}", "--pubsub-endpoint",
                f"tcp://127.0.0.1:{ports['pubsub']}"], tmp_path / "proxy.log"),
        Daemon([*meta, "prometheus-sd", "--listen", f"127.0.0.1:{ports['listen']}"],
               tmp_path / "listen.log")]
    try:
        for daemon, port in zip(started, (ports["proxy"], ports["listen"])):
            wait_for(lambda p=port: try_get(f"http://127.0.0.1:{p}/targets"), 20,
                     "http_sd answering", daemon.dead)
        config = tmp_path / "prometheus.yml"
        config.write_text(PROMETHEUS_CONFIG.format(file=sd_file, **ports))
        prom = Daemon([prometheus, f"--config.file={config}",
                       f"--storage.tsdb.path={tmp_path / 'data'}",
                       f"--web.listen-address=127.0.0.1:{ports['web']}", "--log.level=warn"],
                      tmp_path / "prometheus.log")
        started.append(prom)
        web = ports["web"]

        def every_node_up() -> bool:
            found = up_targets(web)
            return all(set(found.get(job, {})) == {"n1", "n2", "n3"} for job in JOBS)
        wait_for(every_node_up, 90, "every node up in every job", prom.dead, step=0.25)
        found = up_targets(web)
        for job in JOBS:
            labels = found[job]
            assert labels["n1"]["circus_tags"] == ",eu,web," and "circus_tags" in labels["n2"]
            assert labels["n3"]["circus_tags"] == ",db,"
            assert {n: v["instance"] for n, v in labels.items()} == \
                {n.name: n.metrics_address for n in nodes}

        # a query of a circus metric: every node, through every job, with both node labels
        def sleepers() -> dict | None:
            data = api(web, "query", query='circus_watcher_processes{watcher="sl"}')
            result = data["result"] if data else []
            got = {(r["metric"]["job"], r["metric"]["circus_node"], r["metric"]["node"]):
                   r["value"][1] for r in result}
            return got if len(got) == 9 else None
        got = wait_for(sleepers, 30, "circus_watcher_processes of every node", prom.dead)
        assert got == {(job, n, n): "2" for job in JOBS for n in ("n1", "n2", "n3")}

        # the pool changes: the file is rewritten, the http_sd servers read the pool again
        write_pool(pool, nodes[:2], tags={"n1": "web", "n2": "api"})
        code, out, err = run_meta(str(pool), "prometheus-sd", "--out", str(sd_file))
        assert code == 0 and out.strip() == f"{sd_file}: 2 targets", err

        def changed() -> bool:
            found = up_targets(web)
            return all(set(found.get(job, {})) == {"n1", "n2"} and
                       found[job]["n2"].get("circus_tags") == ",api," and
                       found[job]["n1"].get("circus_tags") == ",web," for job in JOBS)
        wait_for(changed, 60, "Prometheus following the pool's change", prom.dead, step=0.25)
        # a node that stops stays a target, down (what an alert on up == 0 needs)
        nodes[1].daemon.stop()

        def n2_down() -> bool:
            now = health(web)
            return all(now.get((job, "n2")) == "down" and now.get((job, "n1")) == "up"
                       for job in JOBS)
        wait_for(n2_down, 60, "n2 down in every job", prom.dead, step=0.25)
        # a pool that cannot be read: 503, Prometheus keeps the targets it had
        pool.write_text("[node:broken\n")
        status, body, _ = http_get(f"http://127.0.0.1:{ports['listen']}/targets")
        assert status == 503 and "pool.ini" in body
        assert {n for (job, n) in health(web) if job == "circus-sd"} == {"n1", "n2"}
    finally:
        for daemon in reversed(started):
            daemon.stop()
    assert "cannot read the pool, answering 503" in (tmp_path / "listen.log").read_text()
    assert "http_sd on http://127.0.0.1:" in (tmp_path / "proxy.log").read_text()
    for daemon in started:
        assert daemon.proc.returncode == 0, daemon.log.read_text()[-2000:]


@pytest.mark.real
def test_the_docs_scrape_configs_pass_promtool(prometheus_bin, tmp_path):
    """The copy-paste configurations of docs/circusmeta.rst are valid Prometheus config."""
    _, promtool = prometheus_bin
    text = (ROOT / "docs" / "circusmeta.rst").read_text()
    blocks = re.findall(r"\.\. code-block:: yaml\n\n((?:    .*\n|\n)+)", text)
    configs = [b for b in blocks if "scrape_configs" in b]
    assert len(configs) >= 2, "the docs give a file_sd and an http_sd scrape config"
    kinds = set()
    for index, block in enumerate(configs):
        body = "\n".join(line[4:] for line in block.splitlines())
        kinds |= {k for k in ("file_sd_configs", "http_sd_configs") if k in body}
        path = tmp_path / f"prometheus{index}.yml"
        path.write_text(body)
        r = subprocess.run([promtool, "check", "config", "--syntax-only", str(path)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (body, r.stdout, r.stderr)
    assert kinds == {"file_sd_configs", "http_sd_configs"}



def test_an_http_sd_address_in_use_or_malformed_is_refused(tmp_path):
    """``proxy --http-sd`` and ``prometheus-sd --listen``: exit 1 when the address is taken,
    2 when it is not HOST:PORT; no node needs to run for that."""
    stats, pubsub, metrics = free_ports(3)
    pool = tmp_path / "pool.ini"
    pool.write_text(f"[node:a]\nendpoint = tcp://127.0.0.1:1\nstats_endpoint = tcp://127.0.0.1:"
                    f"{stats}\nprometheus_endpoint = 127.0.0.1:{metrics}\n")
    proxy_binds = [f"--stats-endpoint=tcp://127.0.0.1:{p}" for p in free_ports(1)] + \
        ["--no-events"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        code, _, err = run_meta(str(pool), "proxy", *proxy_binds, "--http-sd", address)
        assert code == 1 and f"--http-sd {address}: " in err and "in use" in err, err
        code, _, err = run_meta(str(pool), "prometheus-sd", "--listen", address)
        assert code == 1 and f"cannot listen on {address}" in err, err
    code, _, err = run_meta(str(pool), "proxy", *proxy_binds, "--http-sd", "9180")
    assert code == 2 and "--http-sd" in err and "HOST:PORT" in err, err
