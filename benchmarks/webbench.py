#!/usr/bin/env python3
"""webbench: circushttpd's watchers page (``/watchers``) over pools of real circusd, in a real
headless Chromium (see benchmarks/README.md, "circushttpd at pool size").

All the nodes are circusd processes of this repository on this machine (``ipc://`` sockets in
a temporary directory), each with one watcher ``sl`` of 2 ``sleep 3600``, no circusd-stats
(the page needs only the control and events endpoints; 200 circusd-stats would load the shared
machine for nothing). They are all started first (a few at a time), each waited for until it
answers, then one circushttpd per pool size (the first N nodes, sharing one users file and
cookie secret), then the sizes are measured interleaved, repetition after repetition:

  load    a cold load of ``/watchers`` (the browser away on about:blank for longer than the
          page's cache is kept, so circushttpd asks every node): time to first byte, to
          DOMContentLoaded, to the first contentful paint, the HTML's size; then a warm reload
          (what is kept is fresh: no question);
  live    with the page open, ``incr sl`` (then ``decr sl``) sent to one node by a DEALER of
          this process, and the time until the page shows the row's new process count (a
          MutationObserver in the page notes the time; same wall clock);
  cpu     circushttpd's CPU (utime + stime of /proc/PID/stat) over ``--cpu-window`` seconds
          with the page open and nothing happening, divided by the full rounds of questions
          it made meanwhile, and the last round's own wall and CPU time as circushttpd
          reports it (``/api/watchers``: ``refresh``).

Every wait has a deadline; every process started is stopped by pid (SIGTERM, then SIGKILL of
it and its descendants), the browser through its driver; the harness is a child subreaper.

Usage:
  .venv/bin/python benchmarks/webbench.py run [--sizes 8,50,200] [--reps 5] \\
      [--out-json benchmarks/results/web.json] [--out-md benchmarks/results/web.md]
  .venv/bin/python benchmarks/webbench.py report benchmarks/results/web.json
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import glob
import json
import os
import platform
import re
import secrets
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))

import webdriver  # noqa: E402  (tests/webdriver.py: the W3C client over Debian's chromedriver)

PASSWORD = "webbench-password"
STARTED: list[subprocess.Popen] = []
TICKS = os.sysconf("SC_CLK_TCK")


def log(*a: object) -> None:
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def load() -> float:
    return round(os.getloadavg()[0], 2)


class BenchError(Exception):
    pass


# -- processes ---------------------------------------------------------------------------------

def children(pid: int) -> list[int]:
    out = []
    for f in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            with open(f) as fh:
                out.extend(int(x) for x in fh.read().split())
        except OSError:
            pass
    return out


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        for c in children(todo.pop()):
            out.append(c)
            todo.append(c)
    return out


def kill(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for p in pids:
        try:
            os.kill(p, sig)
        except OSError:
            pass


def stop_all(timeout: float = 30.0, group: int = 10) -> None:
    """SIGTERM every process started, ``group`` at a time (200 circusd stopping at once load
    the shared machine far more than their work is worth), wait, then SIGKILL what is left
    and its descendants."""
    family = {p.pid: descendants(p.pid) for p in STARTED if p.poll() is None}
    alive = [p for p in STARTED if p.poll() is None]
    for i in range(0, len(alive), group):
        batch = alive[i:i + group]
        kill([p.pid for p in batch], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in batch:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"  ! {p.pid} ignored SIGTERM; killing it")
    for p in STARTED:
        kill(family.get(p.pid, []) + ([p.pid] if p.poll() is None else []))
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            pass
    for c in children(os.getpid()):                 # orphans reparented to us
        kill(descendants(c) + [c])
        try:
            os.waitpid(c, os.WNOHANG)
        except OSError:
            pass


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Node:
    def __init__(self, k: int, base: str) -> None:
        self.name = f"node{k}"
        self.dir = os.path.join(base, self.name)
        os.makedirs(self.dir)
        self.endpoint = f"ipc://{self.dir}/c.sock"
        self.pubsub = f"ipc://{self.dir}/p.sock"
        self.config = os.path.join(self.dir, "circus.ini")
        with open(self.config, "w") as f:
            f.write(f"[circus]\nendpoint = {self.endpoint}\npubsub_endpoint = {self.pubsub}\n"
                    "loglevel = warning\n\n[watcher:sl]\ncmd = sleep 3600\nnumprocesses = 2\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "circus.cli.circusd", "--name", self.name, "--log-output",
             os.path.join(self.dir, "circusd.log"), self.config], cwd=self.dir,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        STARTED.append(self.proc)


def call(ctx: zmq.Context, endpoint: str, command: str, timeout: float = 5.0,
         **props: object) -> dict | None:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        msg_id = secrets.token_hex(8)
        sock.send(json.dumps({"id": msg_id, "command": command, "properties": props}).encode())
        if sock.poll(int(timeout * 1000)):
            reply = json.loads(sock.recv())
            if reply.get("id") == msg_id:
                return reply
        return None
    finally:
        sock.close()


def start_nodes(ctx: zmq.Context, n: int, base: str, parallel: int, timeout: float
                ) -> list[Node]:
    nodes = [Node(k, base) for k in range(1, n + 1)]
    deadline = time.monotonic() + timeout
    for i in range(0, n, parallel):
        group = nodes[i:i + parallel]
        for node in group:
            node.start()
        for node in group:
            while True:
                assert node.proc is not None
                if node.proc.poll() is not None:
                    raise BenchError(f"{node.name}: circusd exited ({node.proc.returncode})")
                reply = call(ctx, node.endpoint, "list", 0.5, name="sl") \
                    if os.path.exists(node.endpoint[6:]) else None
                if reply and len(reply.get("pids") or ()) == 2:
                    break
                if time.monotonic() > deadline:
                    raise BenchError(f"{node.name} not running its 2 processes within "
                                     f"{timeout:g} s")
                time.sleep(0.05)
        if (i // parallel) % 10 == 0:
            log(f"  {i + len(group)} of {n} nodes up (load {load()})")
    return nodes


class Httpd:
    def __init__(self, base: str, size: int, nodes: list[Node], users: str, secret: str
                 ) -> None:
        self.size = size
        self.pool = os.path.join(base, f"pool-{size}.ini")
        with open(self.pool, "w") as f:
            f.write("[meta]\ntimeout = 5\n")
            for node in nodes[:size]:
                f.write(f"[node:{node.name}]\nendpoint = {node.endpoint}\n"
                        f"pubsub_endpoint = {node.pubsub}\n")
        self.log = os.path.join(base, f"httpd-{size}.log")
        self.argv = [sys.executable, "-m", "circus.cli.httpd", "--pool", self.pool, "--port", "0",
                     "--users", users, "--secret-file", secret, "--log-level", "warning",
                     "--log-output", self.log]
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout: float = 60.0) -> None:
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        STARTED.append(self.proc)
        assert self.proc.stdout is not None
        line, deadline = b"", time.monotonic() + timeout
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise BenchError(f"circushttpd ({self.size}) did not start: {line!r}")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                line += os.read(self.proc.stdout.fileno(), 4096)
        m = re.search(rb"listening on (http://127\.0\.0\.1:\d+)/", line)
        if not m:
            raise BenchError(f"circushttpd said {line!r}")
        self.url = m.group(1).decode()

    def api(self, token: str, path: str) -> dict:
        req = urllib.request.Request(self.url + path,
                                     headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())


# -- the page ----------------------------------------------------------------------------------

TIMING = """
    const nav = performance.getEntriesByType('navigation')[0];
    const paint = performance.getEntriesByType('paint')
        .find(p => p.name === 'first-contentful-paint');
    return {ttfb: nav.responseStart, dcl: nav.domContentLoadedEventEnd,
            load: nav.loadEventEnd, fcp: paint ? paint.startTime : null,
            html: nav.decodedBodySize, wire: nav.encodedBodySize,
            rows: document.querySelectorAll('#pool-watchers tr[data-watcher]').length,
            entries: document.querySelectorAll('ul.entries li').length};"""

OBSERVE = """
    window.__seen = [];
    const tr = document.querySelector('#pool-watchers tr[data-watcher="sl"]');
    new MutationObserver(() => window.__seen.push([Date.now(), +tr.dataset.alive]))
        .observe(tr, {attributes: true, attributeFilter: ['data-alive']});
    return +tr.dataset.alive;"""


def login(b: webdriver.Session, url: str) -> None:
    b.get(url + "/login")
    form = b.find("#login-form")
    form.find("input[name=username]").send_keys("bench")
    form.find("input[name=password]").send_keys(PASSWORD)
    b.find("#login-submit").click()
    b.wait_until(lambda: b.exists("#whoami"), timeout=30, what="logged in")


def timing(b: webdriver.Session) -> dict:
    """The navigation's timings; the first paint is reported a moment after the load."""
    try:
        b.wait_until(lambda: b.execute("return performance.getEntriesByType('paint')"
                                       ".some(p => p.name === 'first-contentful-paint')"),
                     timeout=3, what="the first paint reported", interval=0.02)
    except webdriver.WaitTimeout:
        pass
    return b.execute(TIMING)


def page_load(b: webdriver.Session, httpd: Httpd, away: float) -> dict:
    b.get("about:blank")
    time.sleep(away)                      # longer than the page's cache is kept
    b.get(httpd.url + "/watchers")
    b.wait_until(lambda: b.execute("return document.readyState") == "complete", timeout=60,
                 what="the page loaded")
    cold = timing(b)
    b.refresh()
    b.wait_until(lambda: b.execute("return document.readyState") == "complete", timeout=60,
                 what="the page reloaded")
    warm = timing(b)
    return {"cold": cold, "warm": warm}


def live_update(b: webdriver.Session, ctx: zmq.Context, httpd: Httpd, node: Node,
                samples: int) -> list[float]:
    b.wait_until(lambda: b.execute("return document.body.dataset.live") == "open", timeout=30,
                 what="the page's socket")
    out = []
    for i in range(samples):
        command = "incr" if i % 2 == 0 else "decr"
        before = b.execute(OBSERVE)
        want = before + (1 if command == "incr" else -1)
        t0 = time.time()
        reply = call(ctx, node.endpoint, command, 10.0, name="sl", nb=1)
        if not reply or reply.get("status") != "ok":
            raise BenchError(f"{command} on {node.name}: {reply}")
        seen = b.wait_until(lambda: next((t for t, v in b.execute("return window.__seen")
                                          if v == want), None), timeout=30,
                            what=f"{node.name}'s {command} on the page", interval=0.01)
        out.append(seen - t0 * 1000)
    return out


def cpu_per_round(httpd: Httpd, token: str, window: float) -> dict:
    assert httpd.proc is not None
    first = httpd.api(token, "/api/watchers")["refresh"]
    c0, t0 = cpu_seconds(httpd.proc.pid), time.monotonic()
    time.sleep(window)
    c1, t1 = cpu_seconds(httpd.proc.pid), time.monotonic()
    last = httpd.api(token, "/api/watchers")["refresh"]
    rounds = last["count"] - first["count"]
    return {"window": round(t1 - t0, 2), "cpu": round(c1 - c0, 3), "rounds": rounds,
            "cpu_per_round": round((c1 - c0) / rounds, 4) if rounds else None,
            "round_took": last["took"], "round_cpu": last["cpu"]}


# -- running -----------------------------------------------------------------------------------

def run(a: argparse.Namespace) -> dict:
    sizes = sorted({int(s) for s in a.sizes.split(",")})
    base = tempfile.mkdtemp(prefix="webbench-")
    ctx = zmq.Context()
    results: dict = {"meta": {"date": datetime.datetime.now().isoformat(timespec="seconds"),
                              "commit": subprocess.run(["git", "-C", REPO, "rev-parse",
                                                        "--short", "HEAD"], capture_output=True,
                                                       text=True).stdout.strip(),
                              "python": platform.python_version(), "cpus": os.cpu_count(),
                              "sizes": sizes, "reps": a.reps, "load_start": load()},
                     "samples": []}
    driver = None
    try:
        try:
            ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)     # child subreaper
        except Exception:
            pass
        log(f"starting {max(sizes)} circusd (load {load()})")
        t0 = time.monotonic()
        nodes = start_nodes(ctx, max(sizes), base, a.parallel, a.start_timeout)
        results["meta"]["nodes_up_s"] = round(time.monotonic() - t0, 1)
        results["meta"]["load_nodes_up"] = load()
        users, secret = os.path.join(base, "users"), os.path.join(base, "secret")
        r = subprocess.run([sys.executable, "-m", "circus.cli.httpd", "adduser", "bench",
                            "--role", "readonly", "--users", users, "--password-stdin"],
                           input=PASSWORD + "\n", capture_output=True, text=True, timeout=60)
        if r.returncode:
            raise BenchError(f"adduser: {r.stderr}")
        token = subprocess.run([sys.executable, "-m", "circus.cli.httpd", "token", "bench",
                                "--users", users], capture_output=True, text=True,
                               timeout=60).stdout.split()[-1]
        httpds = {n: Httpd(base, n, nodes, users, secret) for n in sizes}
        for h in httpds.values():
            h.start()
        driver = webdriver.Driver.start(webdriver.ensure_browser(),
                                        os.path.join(base, "chromedriver.log"))
        b = driver.session()
        login(b, httpds[sizes[0]].url)            # one secret: the session works on each
        for rep in range(a.reps):
            for size in sizes:
                h = httpds[size]
                sample: dict = {"size": size, "rep": rep, "load": load()}
                sample["page"] = page_load(b, h, a.away)
                node = nodes[(rep * 7 + size - 1) % size]          # a different node each time
                sample["live_node"] = node.name
                sample["live_ms"] = live_update(b, ctx, h, node, a.live_samples)
                if rep < a.cpu_reps:
                    sample["cpu"] = cpu_per_round(h, token, a.cpu_window)
                sample["load_end"] = load()
                results["samples"].append(sample)
                p = sample["page"]["cold"]
                log(f"  {size:>4} nodes rep {rep + 1}: cold DCL {p['dcl']:.0f} ms, FCP "
                    f"{p['fcp'] or 0:.0f} ms, warm DCL {sample['page']['warm']['dcl']:.0f} ms, "
                    f"live {statistics.median(sample['live_ms']):.0f} ms"
                    + (f", cpu/round {sample['cpu']['cpu_per_round']}" if 'cpu' in sample
                       else "") + f" (load {sample['load']})")
        results["meta"]["load_end"] = load()
    finally:
        if driver is not None:
            driver.stop()
        stop_all()
        ctx.destroy(linger=0)
        left = [p for p in glob.glob("/proc/[0-9]*/cmdline") if _mentions(p, base)]
        if left:
            log(f"  ! processes still mention {base}: {left}")
        shutil.rmtree(base, ignore_errors=True)
    return results


def _mentions(path: str, text: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return text.encode() in fh.read()
    except OSError:
        return False


# -- the report --------------------------------------------------------------------------------

def _med(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    return f"{statistics.median(values):.0f} [{min(values):.0f}–{max(values):.0f}]"


def report(results: dict) -> str:
    meta, samples = results["meta"], results["samples"]
    lines = [f"# circushttpd's watchers page over pools of real circusd ({meta['date']})", "",
             f"Commit {meta['commit']}, Python {meta['python']}, {meta['cpus']} CPUs; "
             f"{max(meta['sizes'])} circusd up in {meta.get('nodes_up_s')} s; 1-minute load "
             f"{meta['load_start']} at the start, {meta.get('load_nodes_up')} with the nodes up, "
             f"{meta.get('load_end')} at the end. {meta['reps']} repetitions, sizes "
             "interleaved; medians [min–max], times in ms.", "",
             "| nodes | cold: TTFB | cold: DOMContentLoaded | cold: first paint | warm: "
             "DOMContentLoaded | HTML (gzip) | live update | load |",
             "|---|---|---|---|---|---|---|---|"]
    for size in meta["sizes"]:
        mine = [s for s in samples if s["size"] == size]
        if not mine:
            continue
        cold = [s["page"]["cold"] for s in mine]
        warm = [s["page"]["warm"] for s in mine]
        live = [v for s in mine for v in s["live_ms"]]
        html = statistics.median(c["html"] for c in cold) / 1024
        wire = statistics.median(c["wire"] for c in cold) / 1024
        loads = [s["load"] for s in mine]
        lines.append(f"| {size} | {_med([c['ttfb'] for c in cold])} | "
                     f"{_med([c['dcl'] for c in cold])} | {_med([c['fcp'] for c in cold])} | "
                     f"{_med([w['dcl'] for w in warm])} | {html:.0f} KB ({wire:.0f} KB) | "
                     f"{_med(live)} (n={len(live)}) | {min(loads)}–{max(loads)} |")
    lines += ["", "circushttpd's CPU with the page open and nothing happening (a full round "
              "of `processes` questions every 10 s):", "",
              "| nodes | window | CPU in it | rounds | CPU per round | last round: wall / CPU "
              "as circushttpd measures it |", "|---|---|---|---|---|---|"]
    for size in meta["sizes"]:
        for s in samples:
            if s["size"] == size and "cpu" in s:
                c = s["cpu"]
                per = f"{c['cpu_per_round'] * 1000:.0f} ms" if c["cpu_per_round"] else "–"
                lines.append(f"| {size} | {c['window']} s | {c['cpu'] * 1000:.0f} ms | "
                             f"{c['rounds']} | {per} | {(c['round_took'] or 0) * 1000:.0f} ms / "
                             f"{(c['round_cpu'] or 0) * 1000:.0f} ms |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="webbench")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--sizes", default="8,50,200")
    r.add_argument("--reps", type=int, default=5)
    r.add_argument("--live-samples", type=int, default=4, help="incr/decr per repetition")
    r.add_argument("--cpu-reps", type=int, default=2, help="repetitions with a CPU window")
    r.add_argument("--cpu-window", type=float, default=21.0)
    r.add_argument("--away", type=float, default=2.5, help="seconds on about:blank before a "
                   "cold load (more than the page cache's 2 s)")
    r.add_argument("--parallel", type=int, default=4, help="circusd started at a time")
    r.add_argument("--start-timeout", type=float, default=600.0)
    r.add_argument("--out-json")
    r.add_argument("--out-md")
    rep = sub.add_parser("report")
    rep.add_argument("json")
    a = p.parse_args(argv)
    if a.cmd == "report":
        with open(a.json) as f:
            print(report(json.load(f)), end="")
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        results = run(a)
    except BenchError as exc:
        log(f"webbench: {exc}")
        return 1
    text = report(results)
    for path, data in ((a.out_json, json.dumps(results, indent=1)), (a.out_md, text)):
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "w") as f:
                f.write(data)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
