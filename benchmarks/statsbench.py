#!/usr/bin/env python3
"""statsbench: the stats side of ours vs Circus 0.19, side by side, interleaved.

Scenarios (see benchmarks/README.md, "Stats"):

  cpu      circusd-stats' CPU (utime + stime of /proc/PID/stat) over a window (default 30 s)
           with one watcher of N `sleep 3600` (N = 100, 500), sampling every 1 s, after a
           warm-up (all children up, stats flowing, then --warmup seconds).  A SUB socket
           subscribed to everything counts the messages published during the window.
           circusd's own CPU in the same window too.  One fresh daemon per repetition,
           ours and 0.19 interleaved.
  command  latency of `stats name=W` (one watcher of 300 children; ours also 500), while a
           second DEALER sends `numwatchers` in a tight loop: the arbiter's blocked time is
           the longest `numwatchers` round trip that overlaps the `stats` call minus the
           median idle round trip (measured just before).  circusd-stats is off there.

Both daemons speak 0.19's protocol: DEALER, JSON {"id", "command", "properties"}.
All endpoints are TCP on 127.0.0.1 with ports chosen free at run time; 0.19's UDP
multicast discovery is turned off.  Every wait has a deadline; every process started is
stopped by pid (SIGTERM, then SIGKILL of it and its descendants) in finally blocks.

Needs pyzmq and psutil in the harness's python (our .venv has both); it never imports
`circus`, so the same python can drive both systems.

Usage:
  .venv/bin/python benchmarks/statsbench.py run [--circus-venv /tmp/peers/circus] ...
  .venv/bin/python benchmarks/statsbench.py report results.json > results.md
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
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import zmq

#: a per-process topic of the measured watcher: ours `NODE/stat.sl.PID`, 0.19 `stat.sl.PID`
PID_TOPIC = re.compile(rb"(^|/)stat\.sl\.(\d+)$")
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PEERS_DEFAULT = os.environ.get("PEERBENCH_PEERS") or os.path.join(tempfile.gettempdir(), "peers")
CLK_TCK = os.sysconf("SC_CLK_TCK")
STATS_WATCHER = "circusd-stats"
WATCHER = "sl"
now = time.perf_counter

TARGET_CPU_RATIO = 0.5       # ours' circusd-stats CPU <= 0.5 x 0.19's
TARGET_BLOCKED_S = 0.020     # the arbiter never blocked > 20 ms by `stats`
TARGET_STATS_500_S = 0.100   # `stats` of 500 processes answered within 100 ms


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# ----------------------------------------------------------------------------------------------
# /proc and processes
# ----------------------------------------------------------------------------------------------

def proc_stat(pid):
    """(comm, state, utime+stime seconds) from /proc/PID/stat, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            s = f.read()
    except OSError:
        return None
    l, r = s.find(b"("), s.rfind(b")")
    rest = s[r + 2:].split()
    # fields after ")": state(3) ... utime(14) stime(15): rest[0] is field 3
    return (s[l + 1:r].decode(errors="replace"), rest[0].decode(),
            (int(rest[11]) + int(rest[12])) / CLK_TCK)


def cpu_seconds(pid):
    st = proc_stat(pid)
    if st is None:
        raise BenchError(f"process {pid} is gone")
    return st[2]


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def children(pid):
    out = []
    for f in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            with open(f) as fh:
                out.extend(int(x) for x in fh.read().split())
        except OSError:
            pass
    return out


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        for c in children(todo.pop()):
            out.append(c)
            todo.append(c)
    return out


def running_sleepers(pid):
    n = 0
    for c in children(pid):
        st = proc_stat(c)
        if st and st[0] == "sleep" and st[1] not in ("Z", "X"):
            n += 1
    return n


def become_subreaper():
    """Orphans of a daemon that died hard are reparented to us, so they can be ended by pid."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0
    except Exception:
        return False


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


STARTED = []                 # Popen objects of the daemons


def kill_pids(pids, sig=signal.SIGKILL):
    for p in pids:
        try:
            os.kill(p, sig)
        except OSError:
            pass


def reap_orphans():
    tracked = {p.pid for p in STARTED if p.returncode is None}
    for c in children(os.getpid()):
        if c in tracked:
            continue
        kill_pids(descendants(c) + [c])
        try:
            os.waitpid(c, os.WNOHANG)
        except OSError:
            pass


def final_cleanup():
    for p in STARTED:
        if p.poll() is None:
            kill_pids(descendants(p.pid) + [p.pid])
    for p in STARTED:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    for _ in range(3):
        reap_orphans()
        time.sleep(0.2)


# ----------------------------------------------------------------------------------------------
# the circus protocol (0.19's wire format), as a client
# ----------------------------------------------------------------------------------------------

class Client:
    """A DEALER on the control endpoint; one request at a time."""

    def __init__(self, ctx, endpoint):
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)

    def call(self, command, timeout=10.0, **props):
        mid = uuid.uuid4().hex
        self.sock.send(json.dumps({"id": mid, "command": command, "properties": props}).encode())
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.poller.poll(left * 1000):
                raise TimeoutError(f"no reply to {command} within {timeout} s")
            frames = self.sock.recv_multipart()
            reply = json.loads(frames[-1])
            if reply.get("id") == mid:
                return reply
            # a late reply to an earlier request that timed out: skip it

    def close(self):
        self.sock.close(linger=0)


# ----------------------------------------------------------------------------------------------
# the systems
# ----------------------------------------------------------------------------------------------

class System:
    def __init__(self, family, venv):
        self.family, self.venv = family, venv
        self.circusd = os.path.join(venv, "bin", "circusd")
        if not os.access(self.circusd, os.X_OK):
            raise SystemExit(f"statsbench: {self.circusd} not found")

    def version(self):
        py = os.path.join(self.venv, "bin", "python")
        code = ("import importlib.metadata as m, zmq, psutil; "
                "print(m.version('circus'), zmq.__version__, zmq.zmq_version(), psutil.__version__)")
        try:
            out = subprocess.run([py, "-I", "-c", code], capture_output=True, text=True,
                                 timeout=30, cwd=tempfile.gettempdir()).stdout.split()
            return dict(zip(("circus", "pyzmq", "libzmq", "psutil"), out))
        except (OSError, subprocess.TimeoutExpired):
            return {}


class Daemon:
    """One circusd in its own work dir."""

    def __init__(self, system, wd, n, statsd, log_level=None):
        self.system, self.wd, self.n, self.statsd = system, wd, n, statsd
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.pubsub = f"tcp://127.0.0.1:{free_port()}"
        self.statspoint = f"tcp://127.0.0.1:{free_port()}"
        lines = ["[circus]", f"endpoint = {self.endpoint}", f"pubsub_endpoint = {self.pubsub}",
                 f"stats_endpoint = {self.statspoint}",
                 # 0.19 otherwise joins a UDP multicast group on 0.0.0.0 (off loopback)
                 "multicast_endpoint = ",
                 f"statsd = {'True' if statsd else 'False'}", "",
                 f"[watcher:{WATCHER}]", "cmd = sleep 3600", f"numprocesses = {n}", ""]
        self.conf = os.path.join(wd, "circus.ini")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines))
        self.log_level = log_level
        self.proc = None
        self.logf = None

    @property
    def pid(self):
        return self.proc.pid

    def start(self):
        self.logf = open(os.path.join(self.wd, "circusd.log"), "wb")
        argv = [self.system.circusd, *(["--log-level", self.log_level] if self.log_level else []),
                self.conf]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT, cwd=self.wd,
                                     start_new_session=True)
        STARTED.append(self.proc)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n=1500):
        try:
            with open(os.path.join(self.wd, "circusd.log"), errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def wait_children(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            k = running_sleepers(self.pid)
            if k >= self.n:
                return
            if not self.alive():
                raise BenchError(f"circusd exited: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"only {k}/{self.n} children after {timeout} s")
            time.sleep(0.05)

    def wait_control(self, client, timeout):
        deadline = time.monotonic() + timeout
        while True:
            try:
                r = client.call("numwatchers", timeout=2.0)
                if r.get("status") == "ok":
                    return
            except TimeoutError:
                pass
            if not self.alive():
                raise BenchError(f"circusd exited: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"control endpoint silent after {timeout} s")

    def stats_pid(self, client, timeout):
        """circusd-stats' pid: `list name=circusd-stats`, else the child of circusd whose
        command line names circusd-stats / circus.cli.stats / `circus import stats`."""
        deadline = time.monotonic() + timeout
        while True:
            pids = []
            try:
                r = client.call("list", name=STATS_WATCHER, timeout=2.0)
                pids = [p for p in r.get("pids", ()) if proc_stat(p)]
            except TimeoutError:
                pass
            if not pids:
                pids = [c for c in children(self.pid)
                        if any(s in cmdline(c) for s in
                               ("circusd-stats", "circus.cli.stats", "import stats"))]
            if len(pids) == 1:
                return pids[0]
            if time.monotonic() > deadline:
                raise BenchError(f"circusd-stats not found (candidates {pids})")
            time.sleep(0.1)

    def stop(self, timeout=30.0):
        if self.proc is None:
            return
        kids = descendants(self.pid)
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except OSError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log(f"  ! {self.system.family}: circusd did not stop in {timeout} s, killing")
                kill_pids(descendants(self.pid) + [self.pid])
                self.proc.wait(timeout=10)
        # whatever it left (it should leave nothing)
        left = [k for k in kids if proc_stat(k) and proc_stat(k)[1] not in ("Z", "X")]
        if left:
            log(f"  ! {self.system.family}: {len(left)} processes left after stop, killing")
            kill_pids(left)
        reap_orphans()
        if self.logf:
            self.logf.close()


# ----------------------------------------------------------------------------------------------
# scenario 1: circusd-stats CPU
# ----------------------------------------------------------------------------------------------

def run_cpu(system, n, a, wd):
    d = Daemon(system, wd, n, statsd=True, log_level=a.log_level)
    ctx = zmq.Context()
    client = sub = None
    try:
        d.start()
        client = Client(ctx, d.endpoint)
        d.wait_control(client, a.start_timeout)
        d.wait_children(a.start_timeout)
        spid = d.stats_pid(client, a.start_timeout)
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVHWM, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(d.statspoint)
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        # warm-up: stats flowing, then every one of the N children in the stream (the pids
        # of one 1 s bucket), and at least --warmup seconds since the first message
        restarts = 0
        t_first = None
        deadline = time.monotonic() + a.start_timeout
        covered, bucket, bucket_end = 0, set(), None
        warm_msgs = 0
        while True:
            t = time.monotonic()
            if t_first is not None and covered >= n and t - t_first >= a.warmup:
                break
            if t > deadline:
                raise BenchError("no stats message within the start timeout" if t_first is None
                                 else f"stats cover only {covered}/{n} children")
            if t_first is not None and t - t_first > a.coverage_timeout:
                log(f"    ! only {covered}/{n} children in the stream after "
                    f"{a.coverage_timeout:g} s: measuring anyway")
                break
            if not d.alive():
                raise BenchError(f"circusd exited during the warm-up: {d.log_tail()}")
            if not proc_stat(spid):
                restarts += 1
                if restarts > 3:
                    raise BenchError("circusd-stats keeps exiting during the warm-up")
                spid = d.stats_pid(client, a.start_timeout)
                log(f"    ! circusd-stats exited during the warm-up, now pid {spid}")
            if poller.poll(100):
                while True:
                    try:
                        frames = sub.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    warm_msgs += 1
                    if t_first is None:
                        t_first = bucket_end = time.monotonic()
                    m = PID_TOPIC.search(frames[0])
                    if m:
                        bucket.add(m.group(2))
            if bucket_end is not None and time.monotonic() >= bucket_end + 1.0:
                covered, bucket, bucket_end = len(bucket), set(), time.monotonic()
        warmup_s = time.monotonic() - (t_first or time.monotonic())
        # the window
        msgs, topics, pid_msgs, pids_seen = 0, set(), 0, set()
        c0_stats, c0_d = cpu_seconds(spid), cpu_seconds(d.pid)
        t0 = time.monotonic()
        end = t0 + a.window
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            if poller.poll(min(left, 0.5) * 1000):
                while True:
                    try:
                        frames = sub.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    msgs += 1
                    if len(topics) < 10_000:
                        topics.add(frames[0])
                    m = PID_TOPIC.search(frames[0])
                    if m:
                        pid_msgs += 1
                        pids_seen.add(m.group(2))
        c1_stats, c1_d = cpu_seconds(spid), cpu_seconds(d.pid)
        t1 = time.monotonic()
        if running_sleepers(d.pid) < n:
            raise BenchError("children died during the window")
        el = t1 - t0
        return {"system": system.family, "n": n, "window_s": el,
                "stats_cpu_s": c1_stats - c0_stats, "stats_cpu_pct": 100 * (c1_stats - c0_stats) / el,
                "circusd_cpu_s": c1_d - c0_d, "circusd_cpu_pct": 100 * (c1_d - c0_d) / el,
                "messages": msgs, "messages_per_s": msgs / el, "distinct_topics": len(topics),
                "process_messages": pid_msgs, "processes_seen": len(pids_seen),
                "coverage_before_window": covered, "warmup_s": warmup_s,
                "stats_restarts": restarts,
                "cpu_us_per_process_sample": (1e6 * (c1_stats - c0_stats) / pid_msgs
                                              if pid_msgs else None),
                "warmup_messages": warm_msgs,
                "stats_pid": spid, "stats_cmdline": cmdline(spid)[:200]}
    finally:
        if sub is not None:
            sub.close(linger=0)
        if client is not None:
            client.close()
        ctx.term()
        d.stop()


# ----------------------------------------------------------------------------------------------
# scenario 2: the `stats` command and the arbiter's blocked time
# ----------------------------------------------------------------------------------------------

class Pinger(threading.Thread):
    """`numwatchers` in a tight loop on its own DEALER: (t_sent, t_replied) of each."""

    def __init__(self, ctx, endpoint, timeout):
        super().__init__(daemon=True)
        self.client = Client(ctx, endpoint)
        self.timeout = timeout
        self.samples = []
        self.stop_flag = threading.Event()
        self.error = None

    def run(self):
        try:
            while not self.stop_flag.is_set():
                t0 = now()
                r = self.client.call("numwatchers", timeout=self.timeout)
                t1 = now()
                if r.get("status") != "ok":
                    raise BenchError(f"numwatchers: {r}")
                self.samples.append((t0, t1))
        except Exception as e:      # reported by the main thread
            self.error = e
        finally:
            self.client.close()


def run_command(system, n, a, wd):
    d = Daemon(system, wd, n, statsd=False, log_level=a.log_level)
    ctx = zmq.Context()
    client = None
    reps = []
    try:
        d.start()
        client = Client(ctx, d.endpoint)
        d.wait_control(client, a.start_timeout)
        d.wait_children(a.start_timeout)
        time.sleep(a.settle)
        for i in range(a.cmd_reps):
            # first alone (nothing else asks circusd anything), then under the pings
            t_q = now()
            rq = client.call("stats", timeout=a.cmd_timeout, name=WATCHER)
            quiet = now() - t_q
            if rq.get("status") != "ok":
                raise BenchError(f"stats: {rq}")
            time.sleep(a.cmd_gap)
            pinger = Pinger(ctx, d.endpoint, a.cmd_timeout)
            pinger.start()
            try:
                time.sleep(a.idle_ping)
                t_s = now()
                r = client.call("stats", timeout=a.cmd_timeout, name=WATCHER)
                t_r = now()
                time.sleep(0.05)          # the ping in flight at the reply comes back
            finally:
                pinger.stop_flag.set()
                pinger.join(a.cmd_timeout + 5)
            if pinger.error is not None:
                raise BenchError(f"pinger: {pinger.error!r}")
            if r.get("status") != "ok":
                raise BenchError(f"stats: {r}")
            infos = r.get("info", {})
            nproc = len(infos) if isinstance(infos, dict) else 0
            idle = [t1 - t0 for t0, t1 in pinger.samples if t1 < t_s]
            during = [t1 - t0 for t0, t1 in pinger.samples if t0 < t_r and t1 > t_s]
            if len(idle) < 10:
                raise BenchError(f"only {len(idle)} idle pings")
            idle_med = statistics.median(idle)
            max_during = max(during) if during else 0.0
            reps.append({"rep": i, "latency_s": t_r - t_s, "quiet_latency_s": quiet, "processes_in_reply": nproc,
                         "reply_bytes": len(json.dumps(r)),
                         "idle_rtt_median_s": idle_med, "idle_rtt_max_s": max(idle),
                         "idle_pings": len(idle), "pings_during": len(during),
                         "max_rtt_during_s": max_during,
                         "blocked_s": max(0.0, max_during - idle_med)})
            log(f"    rep {i + 1}: stats alone {1000 * quiet:.1f} ms, "
                f"under pings {1000 * (t_r - t_s):.1f} ms ({nproc} procs), "
                f"pings during {len(during)}, blocked {1000 * reps[-1]['blocked_s']:.1f} ms")
            time.sleep(a.cmd_gap)
        return {"system": system.family, "n": n, "reps": reps}
    finally:
        if client is not None:
            client.close()
        ctx.term()
        d.stop()


# ----------------------------------------------------------------------------------------------
# driving, results
# ----------------------------------------------------------------------------------------------

def summarize(xs):
    xs = sorted(xs)
    if not xs:
        return None
    return {"count": len(xs), "median": statistics.median(xs), "min": xs[0], "max": xs[-1]}


def main_run(a):
    become_subreaper()
    systems = {"ours": System("ours", a.ours_venv), "circus": System("circus", a.circus_venv)}
    t_start = time.monotonic()
    res = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": {"nproc": os.cpu_count(), "uname": " ".join(platform.uname()[i] for i in (0, 2, 4)),
                       "python": platform.python_version(), "loadavg_start": os.getloadavg()},
           "versions": {k: s.version() for k, s in systems.items()},
           "args": vars(a), "cpu": [], "command": [], "errors": []}
    base = tempfile.mkdtemp(prefix="statsbench-")
    try:
        if "cpu" in a.scenarios:
            for n in a.cpu_ns:
                for rep in range(a.reps):
                    order = ("ours", "circus") if rep % 2 == 0 else ("circus", "ours")
                    for fam in order:
                        log(f"cpu: {fam} N={n} rep {rep + 1}/{a.reps}")
                        wd = tempfile.mkdtemp(dir=base, prefix=f"cpu-{fam}-{n}-")
                        try:
                            r = run_cpu(systems[fam], n, a, wd)
                            r["rep"] = rep
                            res["cpu"].append(r)
                            log(f"    circusd-stats {r['stats_cpu_pct']:.2f} % of a core, "
                                f"circusd {r['circusd_cpu_pct']:.2f} %, {r['messages']} msgs "
                                f"({r['messages_per_s']:.0f}/s)")
                        except (BenchError, TimeoutError, zmq.ZMQError) as e:
                            log(f"  ! {e}")
                            res["errors"].append({"scenario": "cpu", "system": fam, "n": n,
                                                  "rep": rep, "error": str(e)[:2000]})
        if "command" in a.scenarios:
            cases = [(fam, n) for n in a.cmd_ns for fam in ("ours", "circus")]
            cases += [("ours", n) for n in a.cmd_ours_ns if n not in a.cmd_ns]
            for fam, n in cases:
                log(f"command: {fam} N={n}, {a.cmd_reps} reps")
                wd = tempfile.mkdtemp(dir=base, prefix=f"cmd-{fam}-{n}-")
                try:
                    res["command"].append(run_command(systems[fam], n, a, wd))
                except (BenchError, TimeoutError, zmq.ZMQError) as e:
                    log(f"  ! {e}")
                    res["errors"].append({"scenario": "command", "system": fam, "n": n,
                                          "error": str(e)[:2000]})
    finally:
        final_cleanup()
        if not a.keep:
            subprocess.run(["rm", "-rf", base], check=False)
        else:
            log(f"work dir kept: {base}")
    res["machine"]["loadavg_end"] = os.getloadavg()
    res["total_minutes"] = (time.monotonic() - t_start) / 60
    for path in (a.out_json, a.out_md):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(a.out_json, "w") as f:
        json.dump(res, f, indent=1)
    with open(a.out_md, "w") as f:
        f.write(render_md(res))
    log(f"wrote {a.out_json} and {a.out_md}")
    return 1 if res["errors"] else 0


def fmt_ms(s):
    if s is None:
        return "-"
    ms = s * 1000
    return f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms" if ms < 1000 else f"{s:.2f} s"


def med_range(xs, f):
    s = summarize(xs)
    if s is None:
        return "-"
    return f"{f(s['median'])} [{f(s['min'])} - {f(s['max'])}]"


def render_md(res):
    out = []
    w = out.append
    v = res["versions"]
    w("# circusd-stats and `stats`: ours vs Circus 0.19\n")
    w(f"- Date: {res['date']}; total run time {res['total_minutes']:.1f} min")
    m = res["machine"]
    w(f"- Machine: nproc={m['nproc']}, {m['uname']}, Python {m['python']} (harness), "
      f"load average at start {m['loadavg_start'][0]:.2f}, at end {m['loadavg_end'][0]:.2f}")
    for k, label in (("ours", "ours"), ("circus", "Circus 0.19")):
        w(f"- {label}: " + ", ".join(f"{a}={b}" for a, b in v.get(k, {}).items()))
    a = res["args"]
    w(f"- cpu: one watcher of N `sleep 3600`, `[circus] statsd = true` (1 s period for both), "
      f"warm-up {a['warmup']:g} s after the first stats message, window {a['window']:g} s, "
      f"{a['reps']} repetitions, a fresh daemon each, ours and 0.19 interleaved; CPU = utime + "
      f"stime of /proc/PID/stat (10 ms ticks) over the window; a SUB socket subscribed to "
      f"everything counts the messages of the window")
    w(f"- command: `stats name={WATCHER}` over a DEALER, {a['cmd_reps']} calls in one daemon "
      f"(statsd off), {a['idle_ping']:g} s of `numwatchers` pings in a tight loop on a second "
      f"DEALER before each call; blocked = longest ping overlapping the call - median idle ping")
    w("- Noisy shared machine: compare the two systems of the same run.\n")

    cpu = res["cpu"]
    cmd = {(c["system"], c["n"]): c["reps"] for c in res["command"]}

    def cpu_med(fam, n, key):
        xs = [r[key] for r in cpu if r["system"] == fam and r["n"] == n]
        return statistics.median(xs) if xs else None

    w("## Targets\n")
    w("| metric | ours | Circus 0.19 | ours / 0.19 | target | met |")
    w("|---|---|---|---|---|---|")
    for n in sorted({r["n"] for r in cpu}):
        o, c = cpu_med("ours", n, "stats_cpu_pct"), cpu_med("circus", n, "stats_cpu_pct")
        ratio = o / c if o is not None and c else None
        met = "-" if ratio is None else ("yes" if ratio <= TARGET_CPU_RATIO else "**no**")
        w(f"| circusd-stats CPU, {n} children (median, % of a core) | "
          f"{'-' if o is None else f'{o:.2f} %'} | {'-' if c is None else f'{c:.2f} %'} | "
          f"{'-' if ratio is None else f'{ratio:.3f}x'} | <= {TARGET_CPU_RATIO}x | {met} |")
    for (fam, n), reps in sorted(cmd.items()):
        if fam != "ours":
            continue
        bl = max(r["blocked_s"] for r in reps)
        cb = cmd.get(("circus", n))
        cbl = fmt_ms(max(r["blocked_s"] for r in cb)) if cb else "-"
        w(f"| arbiter blocked by `stats`, {n} children (max) | {fmt_ms(bl)} | {cbl} | - | "
          f"<= {fmt_ms(TARGET_BLOCKED_S)} | {'yes' if bl <= TARGET_BLOCKED_S else '**no**'} |")
    for key, label in (("quiet_latency_s", "alone"), ("latency_s", "under pings")):
        for (fam, n), reps in sorted(cmd.items()):
            if fam != "ours":
                continue
            lat = [r[key] for r in reps]
            cb = cmd.get(("circus", n))
            cl = statistics.median([r[key] for r in cb]) if cb else None
            ratio = f"{statistics.median(lat) / cl:.3f}x" if cl else "-"
            tgt = f"<= {fmt_ms(TARGET_STATS_500_S)}" if n == 500 else "-"
            met = ("yes" if max(lat) <= TARGET_STATS_500_S else "**no**") if n == 500 else "-"
            cs = "-" if cl is None else f"{fmt_ms(cl)}; {fmt_ms(max(r[key] for r in cb))}"
            w(f"| `stats` latency {label}, {n} children (median; max) | "
              f"{fmt_ms(statistics.median(lat))}; {fmt_ms(max(lat))} | {cs} | {ratio} | {tgt} | {met} |")
    w("")

    w("## circusd-stats CPU (median [min - max] over the repetitions)\n")
    w("| system | N | circusd-stats CPU % | circusd CPU % | messages / s | children in the stream | circusd-stats CPU per process sample | warm-up |")
    w("|---|---|---|---|---|---|---|---|")
    for n in sorted({r["n"] for r in cpu}):
        for fam in ("ours", "circus"):
            rs = [r for r in cpu if r["system"] == fam and r["n"] == n]
            if not rs:
                continue
            pct = lambda x: f"{x:.2f}"
            w(f"| {fam} | {n} | {med_range([r['stats_cpu_pct'] for r in rs], pct)} | "
              f"{med_range([r['circusd_cpu_pct'] for r in rs], pct)} | "
              f"{med_range([r['messages_per_s'] for r in rs], lambda x: f'{x:.0f}')} | "
              f"{med_range([r['processes_seen'] for r in rs], lambda x: f'{x:.0f}')} | "
              f"{med_range([r['cpu_us_per_process_sample'] or 0 for r in rs], lambda x: f'{x:.0f} µs')} | "
              f"{med_range([r['warmup_s'] for r in rs], lambda x: f'{x:.0f} s')} |")
    w("")
    w("Raw samples:\n")
    w("| system | N | rep | window | circusd-stats CPU | circusd CPU | messages | per-process messages (children seen) | children in the stream before the window |")
    w("|---|---|---|---|---|---|---|---|---|")
    for r in sorted(cpu, key=lambda r: (r["n"], r["rep"], r["system"])):
        w(f"| {r['system']} | {r['n']} | {r['rep'] + 1} | {r['window_s']:.1f} s | "
          f"{r['stats_cpu_s']:.2f} s ({r['stats_cpu_pct']:.2f} %) | "
          f"{r['circusd_cpu_s']:.2f} s ({r['circusd_cpu_pct']:.2f} %) | {r['messages']} | "
          f"{r['process_messages']} ({r['processes_seen']}) | {r['coverage_before_window']} |")
    w("")

    w("## `stats name=W` latency and the arbiter's blocked time\n")
    w("| system | N | latency alone median [min - max] | latency under pings median [min - max] | blocked median [min - max] | idle ping median | pings during the call (median) | processes in reply | reply size |")
    w("|---|---|---|---|---|---|---|---|---|")
    for (fam, n), reps in sorted(cmd.items(), key=lambda kv: (kv[0][1], kv[0][0] != "ours")):
        w(f"| {fam} | {n} | {med_range([r['quiet_latency_s'] for r in reps], fmt_ms)} | "
          f"{med_range([r['latency_s'] for r in reps], fmt_ms)} | "
          f"{med_range([r['blocked_s'] for r in reps], fmt_ms)} | "
          f"{fmt_ms(statistics.median([r['idle_rtt_median_s'] for r in reps]))} | "
          f"{statistics.median([r['pings_during'] for r in reps]):.0f} | "
          f"{reps[0]['processes_in_reply']} | {reps[0]['reply_bytes'] / 1024:.0f} KiB |")
    w("")
    w("Raw samples (ms; latency alone / latency under pings / blocked / longest ping during the call / pings during):\n")
    for (fam, n), reps in sorted(cmd.items(), key=lambda kv: (kv[0][1], kv[0][0] != "ours")):
        w(f"- {fam}, {n}: " + ", ".join(
            f"{1000 * r['quiet_latency_s']:.1f}/{1000 * r['latency_s']:.1f}/{1000 * r['blocked_s']:.1f}/"
            f"{1000 * r['max_rtt_during_s']:.1f}/{r['pings_during']}" for r in reps))
    w("")
    if res["errors"]:
        w("## Errors\n")
        for e in res["errors"]:
            w(f"- {e['scenario']} {e['system']} N={e['n']}: {e['error'][:500]}")
        w("")
    for note in res["args"].get("note") or ():
        w(f"- {note}")
    return "\n".join(out) + "\n"


def ints(s):
    return [int(x) for x in s.split(",") if x.strip()]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the benchmark")
    r.add_argument("--ours-venv", default=os.path.join(REPO, ".venv"))
    r.add_argument("--circus-venv", default=os.path.join(PEERS_DEFAULT, "circus"))
    r.add_argument("--scenarios", default="cpu,command", type=lambda s: s.split(","),
                   help="cpu,command (default both)")
    r.add_argument("--cpu-ns", default="100,500", type=ints, help="children of the cpu scenario")
    r.add_argument("--reps", type=int, default=3, help="repetitions of the cpu scenario")
    r.add_argument("--window", type=float, default=30.0, help="cpu measuring window (s)")
    r.add_argument("--warmup", type=float, default=5.0,
                   help="cpu: seconds of stats flowing before the window")
    r.add_argument("--coverage-timeout", type=float, default=60.0,
                   help="cpu: longest wait for all N children to be in the stream")
    r.add_argument("--cmd-ns", default="300", type=ints, help="children of `stats`, both systems")
    r.add_argument("--cmd-ours-ns", default="500", type=ints,
                   help="children of `stats`, ours only")
    r.add_argument("--cmd-reps", type=int, default=10, help="`stats` calls per daemon")
    r.add_argument("--cmd-timeout", type=float, default=30.0, help="deadline of each call (s)")
    r.add_argument("--cmd-gap", type=float, default=1.0, help="pause between two `stats` calls")
    r.add_argument("--idle-ping", type=float, default=0.5,
                   help="seconds of idle pings before each `stats` call")
    r.add_argument("--settle", type=float, default=2.0,
                   help="command: wait once the children run")
    r.add_argument("--start-timeout", type=float, default=120.0)
    r.add_argument("--log-level", default=None, help="passed to both circusd")
    r.add_argument("--keep", action="store_true", help="keep the work dirs (configs, logs)")
    r.add_argument("--note", action="append")
    r.add_argument("--out-json", default=os.path.join(HERE, "results", "stats.json"))
    r.add_argument("--out-md", default=os.path.join(HERE, "results", "stats.md"))
    rp = sub.add_parser("report", help="re-render the Markdown from a results JSON")
    rp.add_argument("json")
    a = p.parse_args()
    if a.cmd == "report":
        with open(a.json) as f:
            sys.stdout.write(render_md(json.load(f)))
        return 0
    try:
        return main_run(a)
    except KeyboardInterrupt:
        final_cleanup()
        return 130


if __name__ == "__main__":
    sys.exit(main())
