#!/usr/bin/env python3
"""reliability_bench: arbiter leaks under spawn churn, 1,000-process start/stop, and the
control round trip under load -- ours (this repository's circusd) side by side with
Circus 0.19.0 and Supervisor 4.3.0 (their venvs from setup_peers.sh), interleaved, in
one run (see benchmarks/README.md, "Reliability").

Scenarios (each repetition runs every system once, the order rotating):

  churn     a watcher/program of --churn-procs `true` respawned as fast as the system does
            (ours: min_uptime = 0, so an exit is a normal one and respawns at once; Circus
            0.19 respawns at its periodic check, `check_delay` = --circus-check-delay;
            Supervisor: autorestart = true, startsecs = 0).  Spawns are counted from the
            `watcher.churn.spawn` events on the pubsub endpoint (circus, ours) or the
            "spawned:" lines of supervisord's log.  The arbiter's VmRSS (/proc/PID/status)
            and open fds (/proc/PID/fd) are read after --churn-warmup spawns and again
            after --churn-spawns spawns (or --churn-max-seconds, whichever first);
            spawns/s between the two.
  start     --start-n (1000) `sleep 3600` in a watcher/program that does not autostart;
            the daemon is up and answering; from the `start` command sent (circus JSON
            protocol from an already connected DEALER; supervisor XML-RPC
            startProcessGroup(wait=False) over a kept-alive unix socket) to all N children
            exec'd `sleep`, then from `stop` sent to all N dead and reaped.  The floor: this
            process subprocess.Popen()s N `sleep 3600` (start_new_session=True, stdout and
            stderr pipes) until all exec'd, then SIGTERMs and wait()s them.
  load      circus and ours: watcher `sl` of 5 `sleep 3600` plus --load-crashers watchers
            crash-looping (`sh -c 'exit 1'`, max_retry = -1, backoff 0.05-0.5 s; 0.19:
            check_delay 0.5); --load-clients client processes (peerbench's S8 client, a
            pyzmq DEALER each) send --load-requests requests each, one at a time, equal
            numbers of list / status sl / incr sl / decr sl; latency of every reply;
            busy refusals ("arbiter is already running X command") counted apart.

Usage:
  PEERS=/tmp/peers bash benchmarks/setup_peers.sh
  .venv/bin/python benchmarks/reliability_bench.py run [--scenarios churn,start,load] \\
      [--reps 3] [--out-json F] [--out-md F]
  .venv/bin/python benchmarks/reliability_bench.py report F.json > F.md
"""
from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import xmlrpc.client

HERE = os.path.dirname(os.path.abspath(__file__))
SELF = os.path.abspath(__file__)
sys.path.insert(0, HERE)
import peerbench as pb  # noqa: E402  (stdlib only at import time)

now = time.perf_counter
log = pb.log
SYSTEMS = ("ours", "circus", "supervisor")
SCENARIOS = ("churn", "start", "load")
TARGET_RSS_GROWTH_MB = 5.0
TARGET_START_VS_FLOOR = 1.5
TARGET_P99_S = 0.050
TRUE = shutil.which("true") or "/bin/true"
CRASH_OPTS = ["max_retry = -1", "backoff_initial = 0.05", "backoff_max = 0.5"]


# --------------------------------------------------------------------------
# helpers run in a system's venv python (they need pyzmq)
# --------------------------------------------------------------------------

def helper_sub(endpoint, topic, outfile, max_seconds):
    """Count pubsub events of `topic`; write "count t_first t_last" to outfile every 0.1 s."""
    import zmq
    ctx = zmq.Context()
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVHWM, 0)
    s.setsockopt(zmq.SUBSCRIBE, topic.encode())
    s.connect(endpoint)
    count, t_first, t_last, t_write = 0, 0.0, 0.0, 0.0
    end = time.monotonic() + max_seconds
    ppid = os.getppid()
    while time.monotonic() < end and os.getppid() == ppid:
        if s.poll(50):
            while True:
                try:
                    s.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                count += 1
                t_last = time.monotonic()
                t_first = t_first or t_last
        t = time.monotonic()
        if t - t_write >= 0.1:
            tmp = outfile + ".tmp"
            with open(tmp, "w") as f:
                f.write(f"{count} {t_first} {t_last}\n")
            os.replace(tmp, outfile)
            t_write = t


def helper_ctl(endpoint):
    """Connect a DEALER, check with `list`, print "ready"; then one JSON command per stdin line
    ({"command": C, "properties": P}), one JSON reply per stdout line."""
    import uuid
    import zmq
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.IDENTITY, uuid.uuid4().hex.encode())
    s.connect(endpoint)
    prefix, seq = uuid.uuid4().hex[:16], 0

    def call(cmd, props, wait=30.0):
        nonlocal seq
        seq += 1
        mid = f"{prefix}{seq:08d}"
        s.send(json.dumps({"id": mid, "command": cmd, "properties": props}).encode())
        end = time.monotonic() + wait
        while True:
            left = end - time.monotonic()
            if left <= 0 or not s.poll(max(1, int(left * 1000))):
                return {"status": "error", "reason": "timeout"}
            r = json.loads(s.recv())
            if r.get("id") == mid:
                return r

    deadline = time.monotonic() + 30
    while True:
        r = call("list", {}, 2.0)
        if r.get("status") == "ok" or time.monotonic() > deadline:
            break
    print("ready" if r.get("status") == "ok" else "notready " + json.dumps(r), flush=True)
    for line in sys.stdin:
        if not line.strip():
            break
        req = json.loads(line)
        print(json.dumps(call(req["command"], req.get("properties", {}))), flush=True)


# --------------------------------------------------------------------------
# /proc readings
# --------------------------------------------------------------------------

def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def nfds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def nthreads(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return None


def dead(pid, parent):
    """True when pid is no longer a live process (gone, zombie, or not parent's child)."""
    st = pb.read_stat(pid)
    return st is None or st[1] in ("Z", "X")


# --------------------------------------------------------------------------
# configs
# --------------------------------------------------------------------------

def circus_header(ad, inst, check_delay=None):
    lines = ad._header(inst)
    inst.pubsub = [x for x in lines if x.startswith("pubsub_endpoint")][0].split("=", 1)[1].strip()
    if check_delay is not None:
        lines.insert(-1, f"check_delay = {check_delay:g}")
    return lines


def write(inst, name, lines):
    inst.conf = os.path.join(inst.wd, name)
    with open(inst.conf, "w") as f:
        f.write("\n".join(lines) + "\n")


def churn_config(ad, inst, a):
    if ad.family == "supervisor":
        lines = ad._header(inst)
        lines += ["[program:churn]", f"command = {TRUE}", f"numprocs = {a.churn_procs}",
                  "process_name = %(program_name)s_%(process_num)04d", "autostart = true",
                  "autorestart = true", "startsecs = 0", "startretries = 3",
                  "stdout_logfile = NONE", "stderr_logfile = NONE"]
        return write(inst, "supervisord.conf", lines)
    cd = a.circus_check_delay if ad.family == "circus" else None
    lines = circus_header(ad, inst, cd)
    lines += ["[watcher:churn]", f"cmd = {TRUE}", f"numprocesses = {a.churn_procs}"]
    if ad.family == "ours":
        lines += ["min_uptime = 0", "max_retry = -1"]
    write(inst, "circus.ini", lines)


def start_config(ad, inst, n):
    argv = " ".join(pb.SLEEP_ARGV)
    if ad.family == "supervisor":
        lines = ad._header(inst)
        lines += ["[program:sl]", f"command = {argv}", f"numprocs = {n}",
                  "process_name = %(program_name)s_%(process_num)04d", "autostart = false",
                  "autorestart = true", "startsecs = 0", "stdout_logfile = NONE",
                  "stderr_logfile = NONE"]
        return write(inst, "supervisord.conf", lines)
    lines = circus_header(ad, inst)
    lines += ["[watcher:sl]", f"cmd = {argv}", f"numprocesses = {n}", "autostart = false"]
    write(inst, "circus.ini", lines)


def load_config(ad, inst, a):
    lines = circus_header(ad, inst, a.load_check_delay)
    lines += ["[watcher:sl]", f"cmd = {' '.join(pb.SLEEP_ARGV)}", f"numprocesses = {a.load_procs}", ""]
    for i in range(a.load_crashers):
        lines += [f"[watcher:crash{i}]", f"cmd = {pb.S8_CRASH_CMD}", "numprocesses = 1",
                  *CRASH_OPTS, ""]
    write(inst, "circus.ini", lines)


# --------------------------------------------------------------------------
# control channels
# --------------------------------------------------------------------------

class CircusCtl:
    """A connected DEALER in a helper process of the system's own python."""

    def __init__(self, ad, inst):
        self.p = pb.spawn([ad.python, SELF, "_ctl", inst.endpoint], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        line = self._readline(40)
        if line != "ready":
            raise RuntimeError(f"control helper: {line!r}")

    def _readline(self, timeout):
        if not select.select([self.p.stdout], [], [], timeout)[0]:
            raise RuntimeError("control helper: no answer")
        return self.p.stdout.readline().decode().strip()

    def send(self, cmd, props):
        self.p.stdin.write((json.dumps({"command": cmd, "properties": props}) + "\n").encode())
        self.p.stdin.flush()

    def reply(self, timeout=60):
        return json.loads(self._readline(timeout))

    def start(self, name):
        self.send("start", {"name": name, "waiting": False})

    def stop(self, name):
        self.send("stop", {"name": name, "waiting": False})

    def close(self):
        try:
            self.p.stdin.close()
            self.p.wait(timeout=5)
        except Exception:
            self.p.kill()
            self.p.wait()


class SupervisorCtl:
    """XML-RPC over one kept-alive unix-socket connection, from this process; the call
    runs in a thread so that the timing starts when the request is sent."""

    def __init__(self, ad, inst):
        sockpath = inst.sock

        class UConn(http.client.HTTPConnection):
            def connect(self):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(sockpath)
                self.sock = s

        class UTransport(xmlrpc.client.Transport):
            def make_connection(self, host):
                if self._connection and host == self._connection[0]:
                    return self._connection[1]
                self._connection = host, UConn("localhost")
                return self._connection[1]

        self.proxy = xmlrpc.client.ServerProxy("http://localhost", transport=UTransport())
        deadline = now() + 40
        while True:
            try:
                if self.proxy.supervisor.getState()["statename"] == "RUNNING":
                    break
            except (OSError, xmlrpc.client.Error):
                pass
            if now() > deadline or not inst.alive():
                raise RuntimeError("supervisord does not answer")
            time.sleep(0.05)
        self.result = None

    def _call(self, fn, *args):
        import threading

        def run():
            try:
                self.result = fn(*args)
            except Exception as e:
                self.result = {"error": repr(e)}
        self.result = None
        self.t = threading.Thread(target=run, daemon=True)
        self.t.start()

    def start(self, name):
        self._call(self.proxy.supervisor.startProcessGroup, name, False)

    def stop(self, name):
        self._call(self.proxy.supervisor.stopProcessGroup, name, False)

    def reply(self, timeout=60):
        self.t.join(timeout)
        return self.result

    def close(self):
        pass


# --------------------------------------------------------------------------
# the bench
# --------------------------------------------------------------------------

class Bench:
    def __init__(self, a):
        self.a = a
        self.samples, self.errors = [], []
        self.root = tempfile.mkdtemp(prefix="relbench-")
        self.counter = 0
        venvs = {"ours": a.ours_venv, "circus": a.circus_venv, "supervisor": a.supervisor_venv}
        cls = {"ours": pb.OursAdapter, "circus": pb.CircusAdapter,
               "supervisor": pb.SupervisorAdapter}
        self.ads = {s: cls[s](venvs[s]) for s in a.systems}
        for ad in self.ads.values():
            ad.label = ad.name = ad.family

    def new_instance(self, ad, tag):
        self.counter += 1
        wd = os.path.join(self.root, f"{self.counter:04d}-{tag}-{ad.family}")
        os.makedirs(wd)
        return pb.Instance(ad, wd)

    def add(self, scenario, system, rep, **values):
        self.samples.append({"scenario": scenario, "system": system, "rep": rep, **values})

    def err(self, scenario, system, rep, e):
        msg = f"{type(e).__name__}: {e}".replace(self.root, "<workdir>")
        log(f"  ! {scenario} {system} rep{rep}: {msg}")
        self.errors.append({"scenario": scenario, "system": system, "rep": rep,
                            "error": msg[:2000]})

    def stop_insisting(self, ad, inst, tries=10):
        """SIGTERM once a second until the daemon exits (0.19 can drop one), then Adapter.stop,
        which kills by pid whatever is left."""
        n = 0
        while inst.proc is not None and inst.proc.poll() is None and n < tries:
            inst.proc.send_signal(signal.SIGTERM)
            n += 1
            try:
                inst.proc.wait(timeout=1.0 if n < tries else 5.0)
            except subprocess.TimeoutExpired:
                pass
        ad.stop(inst, timeout=5)
        return n

    # ---- churn -------------------------------------------------------------
    def churn(self, ad, rep):
        a = self.a
        inst = self.new_instance(ad, "churn")
        sub = None
        try:
            churn_config(ad, inst, a)
            if ad.family == "supervisor":
                logpath = os.path.join(inst.wd, "supervisord.log")
                state = {"pos": 0, "count": 0, "buf": b""}

                def count():
                    try:
                        with open(logpath, "rb") as f:
                            f.seek(state["pos"])
                            data = state["buf"] + f.read()
                            state["pos"] = f.tell()
                    except OSError:
                        return 0
                    cut = data.rfind(b"\n") + 1
                    state["count"] += data[:cut].count(b"spawned: 'churn_")
                    state["buf"] = data[cut:]
                    return state["count"]
            else:
                cfile = os.path.join(inst.wd, "spawn-count")
                # connected before the daemon binds: zmq reconnects until it is up
                sub = pb.spawn([ad.python, SELF, "_sub", inst.pubsub, "watcher.churn.spawn", cfile,
                                str(a.churn_max_seconds + 120)], stdout=subprocess.DEVNULL,
                               stderr=open(os.path.join(inst.wd, "sub.err"), "wb"))
                time.sleep(0.3)

                def count():
                    try:
                        with open(cfile) as f:
                            return int(f.read().split()[0])
                    except (OSError, ValueError, IndexError):
                        return 0
            pid0 = last_pid()
            ad.start(inst)
            t_launch = now()
            deadline = t_launch + 60
            while count() < a.churn_warmup:
                if not inst.alive():
                    raise RuntimeError("daemon exited during the warm-up")
                if now() > deadline:
                    raise RuntimeError(f"only {count()} spawns in 60 s of warm-up")
                time.sleep(0.05)
            c0, t0 = count(), now()
            r0, f0, th0 = rss_kb(inst.pid), nfds(inst.pid), nthreads(inst.pid)
            peak, peak_fd = r0, f0
            end = t0 + a.churn_max_seconds
            c1 = c0
            while c1 < a.churn_spawns and now() < end:
                if not inst.alive():
                    raise RuntimeError("daemon exited during the churn")
                time.sleep(0.2)
                c1 = count()
                r, fd = rss_kb(inst.pid), nfds(inst.pid)
                peak = max(peak, r or 0)
                peak_fd = max(peak_fd, fd or 0)
            t1 = now()
            r1, f1, th1 = rss_kb(inst.pid), nfds(inst.pid), nthreads(inst.pid)
            c1 = count()
            pid1 = last_pid()
            capped = c1 < a.churn_spawns
            rate = (c1 - c0) / (t1 - t0)
            self.add("churn", ad.family, rep, spawns=c1, spawns_after_warmup=c1 - c0,
                     seconds=t1 - t0, spawns_per_s=rate, capped=capped,
                     rss0_kb=r0, rss1_kb=r1, rss_growth_kb=r1 - r0, rss_peak_kb=peak,
                     fds0=f0, fds1=f1, fd_growth=f1 - f0, fds_peak=peak_fd,
                     threads0=th0, threads1=th1, pids_allocated=pid1 - pid0 if pid0 and pid1 else None)
            log(f"  churn {ad.family}: {c1} spawns ({rate:.0f}/s{' CAPPED' if capped else ''}), "
                f"RSS {r0 / 1024:.1f} -> {r1 / 1024:.1f} MB (peak {peak / 1024:.1f}), "
                f"fds {f0} -> {f1} (peak {peak_fd}), threads {th0} -> {th1}")
        except Exception as e:
            self.err("churn", ad.family, rep, e)
            log(inst.log_tail(800))
        finally:
            self.stop_insisting(ad, inst)
            if sub is not None and sub.poll() is None:
                sub.kill()
                sub.wait()

    # ---- start/stop of N -------------------------------------------------------
    def wait_reaped(self, parent, pids, timeout):
        """Poll until every pid is dead (t_dead) and no longer a child of parent (t_reaped)."""
        pids = set(pids)
        t_dead = None
        deadline = now() + timeout
        while True:
            t = now()
            if t_dead is None:
                alive = {p for p in pids if not dead(p, parent)}
                if not alive:
                    t_dead = t
            if t_dead is not None:
                kids = set(pb.children_of(parent))
                if not kids & pids:
                    return t_dead, t
            if t > deadline:
                raise pb.Timeout(f"children not gone after {timeout}s")
            time.sleep(0.005)

    def start_stop(self, ad, rep):
        a, n = self.a, self.a.start_n
        inst = self.new_instance(ad, "start")
        ctl = None
        try:
            start_config(ad, inst, n)
            ad.start(inst)
            ctl = (SupervisorCtl if ad.family == "supervisor" else CircusCtl)(ad, inst)
            time.sleep(a.settle)
            r_idle, f_idle = rss_kb(inst.pid), nfds(inst.pid)
            t0 = now()
            ctl.start("sl")
            t_done, t_first, good = pb.wait_children(inst.pid, n, timeout=a.start_timeout,
                                                     poll=0.005, alive=inst.alive)
            rep_start = ctl.reply()
            ok = pb.psutil_verify(inst.pid, list(good))
            time.sleep(a.settle)
            r_full, f_full = rss_kb(inst.pid), nfds(inst.pid)
            t1 = now()
            ctl.stop("sl")
            t_dead, t_reaped = self.wait_reaped(inst.pid, good, a.start_timeout)
            rep_stop = ctl.reply()
            self.add("start", ad.family, rep, n=n, start_s=t_done - t0, first_s=t_first - t0,
                     stop_dead_s=t_dead - t1, stop_reaped_s=t_reaped - t1, psutil_verified=ok,
                     rss_idle_kb=r_idle, rss_full_kb=r_full, fds_idle=f_idle, fds_full=f_full,
                     start_reply=str(rep_start)[:200], stop_reply=str(rep_stop)[:200])
            log(f"  start {ad.family} N={n}: all running {t_done - t0:.3f}s (first "
                f"{t_first - t0:.3f}s), stop: dead {t_dead - t1:.3f}s reaped {t_reaped - t1:.3f}s; "
                f"fds {f_idle} -> {f_full}, RSS {r_idle / 1024:.1f} -> {r_full / 1024:.1f} MB")
        except Exception as e:
            self.err("start", ad.family, rep, e)
            log(inst.log_tail(800))
        finally:
            if ctl is not None:
                ctl.close()
            self.stop_insisting(ad, inst)

    def start_floor(self, rep, pipes=True):
        n = self.a.start_n
        name = "floor" if pipes else "floor-devnull"
        out = subprocess.PIPE if pipes else subprocess.DEVNULL
        procs = []
        try:
            t0 = now()
            for _ in range(n):
                procs.append(subprocess.Popen(pb.SLEEP_ARGV, stdin=subprocess.DEVNULL,
                                              stdout=out, stderr=out,
                                              start_new_session=True))
            t_spawned = now()
            t_done, t_first, good = pb.wait_children(os.getpid(), n, timeout=self.a.start_timeout,
                                                     poll=0.005)
            fds_full = nfds(os.getpid())
            t1 = now()
            for p in procs:
                p.terminate()
            t_dead = None
            for p in procs:
                p.wait()
            t_reaped = now()
            for p in procs:
                for f in (p.stdout, p.stderr):
                    if f is not None:
                        f.close()
            self.add("start", name, rep, n=n, start_s=t_done - t0, first_s=t_first - t0,
                     popen_return_s=t_spawned - t0, stop_reaped_s=t_reaped - t1,
                     fds_full=fds_full)
            log(f"  start {name}:Popen N={n}: all running {t_done - t0:.3f}s (Popen loop "
                f"{t_spawned - t0:.3f}s), SIGTERM+wait {t_reaped - t1:.3f}s, fds {fds_full}")
            del t_dead
        except Exception as e:
            self.err("start", name, rep, e)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
                for f in (p.stdout, p.stderr):
                    if f is not None and not f.closed:
                        f.close()

    # ---- control under load ---------------------------------------------------
    def load(self, ad, rep):
        a = self.a
        inst = self.new_instance(ad, "load")
        clients = []
        results = []
        sigterms = None
        try:
            load_config(ad, inst, a)
            ad.start(inst)
            pb.wait_children(inst.pid, a.load_procs, timeout=a.start_timeout, alive=inst.alive)
            time.sleep(1.0)
            for i in range(a.load_clients):
                errf = open(os.path.join(inst.wd, f"client{i:02d}.err"), "wb")
                try:
                    clients.append(pb.spawn(ad.load_client_argv(
                        inst, a.load_requests, a.load_timeout, a.load_client_deadline, i),
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errf))
                finally:
                    errf.close()
            deadline = now() + 60
            for i, c in enumerate(clients):
                if not select.select([c.stdout], [], [], max(0.1, deadline - now()))[0] or \
                        c.stdout.readline().strip() != b"ready":
                    raise RuntimeError(f"client {i} not ready (rc={c.poll()})")
            for c in clients:
                c.stdin.write(b"go\n")
                c.stdin.flush()
            t_end = now() + a.load_client_deadline + a.load_timeout + 30
            for i, c in enumerate(clients):
                out, _ = c.communicate(timeout=max(1.0, t_end - now()))
                if c.returncode:
                    raise RuntimeError(f"client {i} rc={c.returncode}")
                results.append(json.loads(out))
            alive = inst.alive()
        except Exception as e:
            self.err("load", ad.family, rep, e)
            log(inst.log_tail(800))
            return
        finally:
            for c in clients:
                if c.poll() is None:
                    c.kill()
                    c.wait()
            sigterms = self.stop_insisting(ad, inst)
        lat = sorted(x for r in results for x in r["lat"])
        lat_ok = sorted(x for r in results for x in r["lat_ok"])
        tot = {k: sum(r[k] for r in results) for k in
               ("sent", "unsent", "ok", "errors", "busy", "timeouts", "net_incr")}
        wall = max(r["t_end"] for r in results) - min(r["t_start"] for r in results)
        reasons = {}
        per_op = {}
        for r in results:
            for k, v in r["reasons"].items():
                reasons[k] = reasons.get(k, 0) + v
            for op, xs in r["per_op"].items():
                per_op.setdefault(op, []).extend(xs)
        self.add("load", ad.family, rep, replies=len(lat), wall_s=wall,
                 rps=len(lat) / wall if wall else None, **tot,
                 p50=q(lat, .50), p95=q(lat, .95), p99=q(lat, .99), max=lat[-1] if lat else None,
                 ok_p50=q(lat_ok, .50), ok_p99=q(lat_ok, .99),
                 ok_max=lat_ok[-1] if lat_ok else None,
                 per_op={op: {"p50": q(sorted(xs), .5), "p99": q(sorted(xs), .99),
                              "max": max(xs)} for op, xs in sorted(per_op.items())},
                 reasons=dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:10]),
                 daemon_alive_after=alive, sigterms_to_stop=sigterms)
        log(f"  load {ad.family}: {len(lat)} replies in {wall:.1f}s, p50 {ms(q(lat, .5))} "
            f"p95 {ms(q(lat, .95))} p99 {ms(q(lat, .99))} max {ms(lat[-1] if lat else None)}; "
            f"{tot['errors']} errors ({tot['busy']} busy), {tot['timeouts']} timeouts")

    # ---- driver -------------------------------------------------------------------
    def run(self):
        a = self.a
        order = list(self.ads)
        t_all = now()
        for rep in range(a.reps):
            rot = order[rep % len(order):] + order[:rep % len(order)]
            log(f"=== rep {rep + 1}/{a.reps} (elapsed {now() - t_all:.0f}s), order {rot}")
            if "start" in a.scenarios:
                floors = [True, False] if a.devnull_floor else [True]
                if rep % 2 == 0:
                    for pipes in floors:
                        self.start_floor(rep, pipes)
                for s in rot:
                    self.start_stop(self.ads[s], rep)
                if rep % 2 == 1:
                    for pipes in floors[::-1]:
                        self.start_floor(rep, pipes)
            if "load" in a.scenarios:
                for s in rot:
                    if s != "supervisor":
                        self.load(self.ads[s], rep)
            if "churn" in a.scenarios and rep < a.churn_reps:
                for s in rot:
                    self.churn(self.ads[s], rep)
            pb.reap_orphans()
        return now() - t_all


def last_pid():
    """The kernel's last allocated pid (system-wide: an upper bound of the spawns)."""
    try:
        with open("/proc/loadavg") as f:
            return int(f.read().split()[4])
    except (OSError, ValueError, IndexError):
        return None


def q(xs, f):
    """Quantile of a sorted list (nearest rank)."""
    if not xs:
        return None
    return xs[min(len(xs) - 1, int(round(f * (len(xs) - 1))))]


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------

def ms(x):
    if x is None:
        return "-"
    if x >= 10:
        return f"{x:.1f} s"
    if x >= 1:
        return f"{x:.2f} s"
    return f"{x * 1000:.1f} ms" if x >= 0.001 else f"{x * 1e6:.0f} µs"


def med(samples, system, key):
    xs = [s[key] for s in samples if s["system"] == system and s.get(key) is not None]
    return statistics.median(xs) if xs else None


def rng(samples, system, key, fmt):
    xs = sorted(s[key] for s in samples if s["system"] == system and s.get(key) is not None)
    if not xs:
        return "-"
    if len(xs) == 1:
        return fmt(xs[0])
    return f"{fmt(statistics.median(xs))} [{fmt(xs[0])} – {fmt(xs[-1])}]"


def ratio(x, y):
    return f"{x / y:.2f}x" if x is not None and y else "-"


NAMES = {"ours": "ours", "circus": "circus 0.19.0", "supervisor": "supervisor 4.3.0",
         "floor": "floor: Popen, pipes", "floor-devnull": "floor: Popen, /dev/null"}


def checks(res):
    out = []
    s = res["samples"]
    ch = [x for x in s if x["scenario"] == "churn"]
    g = med(ch, "ours", "rss_growth_kb")
    if g is not None:
        worst = max(x["rss_growth_kb"] for x in ch if x["system"] == "ours")
        spawns = min(x["spawns"] for x in ch if x["system"] == "ours")
        out.append((f"churn: ours' RSS growth from {res['args']['churn_warmup']} to "
                    f"{spawns:,}+ spawns (worst repetition)", f"{worst / 1024:.2f} MB",
                    f"< {TARGET_RSS_GROWTH_MB:g} MB", worst / 1024 < TARGET_RSS_GROWTH_MB))
    st = [x for x in s if x["scenario"] == "start"]
    o, f = med(st, "ours", "start_s"), med(st, "floor", "start_s")
    if o is not None and f:
        out.append((f"start: ours, {res['args']['start_n']} processes, / Popen floor (medians)",
                    f"{o / f:.2f}x ({ms(o)} / {ms(f)})", f"<= {TARGET_START_VS_FLOOR:g}x",
                    o / f <= TARGET_START_VS_FLOOR))
    o, f = med(st, "ours", "stop_reaped_s"), med(st, "floor", "stop_reaped_s")
    if o is not None and f:
        out.append((f"stop: ours, {res['args']['start_n']} processes, / floor (medians)",
                    f"{o / f:.2f}x ({ms(o)} / {ms(f)})", "(no target)", None))
    ld = [x for x in s if x["scenario"] == "load" and x["system"] == "ours"]
    if ld:
        mid = statistics.median(x["p99"] for x in ld)
        worst = max(x["p99"] for x in ld)
        out.append(("load: ours' p99 round trip (median of the repetitions)", ms(mid),
                    f"< {TARGET_P99_S * 1000:g} ms", mid < TARGET_P99_S))
        out.append(("load: ours' p99 round trip (worst repetition)", ms(worst),
                    f"< {TARGET_P99_S * 1000:g} ms", worst < TARGET_P99_S))
    return out


def render_md(res):
    out = []
    w = out.append
    m, a, s = res["meta"], res["args"], res["samples"]
    systems = [x for x in SYSTEMS if x in a["systems"]]
    w("# Reliability: arbiter leaks under churn, 1,000-process start/stop, control under load\n")
    w(f"- Date: {m['date']}; run time {m['run_seconds'] / 60:.1f} min; `benchmarks/reliability_bench.py`")
    w(f"- Machine: nproc={m['nproc']}, {m['os']}, Python {m['python']} (harness), "
      f"{m['mem_gb']:.1f} GB RAM, RLIMIT_NOFILE soft/hard {m['nofile'][0]}/{m['nofile'][1]} "
      f"(the soft limit raised to the hard one, inherited by the daemons); load average at "
      f"start {m['loadavg_start']}, at end {m['loadavg_end']}; shared with other jobs")
    w("- Versions: " + "; ".join(f"{k}: " + ", ".join(f"{kk} {vv}" for kk, vv in v.items())
                                  for k, v in m["versions"].items()))
    w(f"- {a['reps']} repetitions (churn: {min(a['churn_reps'], a['reps'])}), systems "
      "interleaved with the order rotating each repetition; median [min – max]; ratios are of "
      "medians of the same run")
    for note in m.get("notes") or []:
        w(f"- Note: {note}")
    w("")
    w("## Targets\n")
    w("| what | measured | target | met |")
    w("|---|---|---|---|")
    for what, value, target, met in checks(res):
        w(f"| {what} | {value} | {target} | "
          f"{'-' if met is None else 'yes' if met else '**no**'} |")
    w("")
    ch = [x for x in s if x["scenario"] == "churn"]
    if ch:
        w(f"## 1. Arbiter RSS and fds under spawn churn ({a['churn_procs']} x `true`, "
          f"{a['churn_spawns']:,} spawns or {a['churn_max_seconds']:g} s)\n")
        w(f"Ours: `min_uptime = 0`, `max_retry = -1` (each exit is a normal one, respawned at "
          f"once). Circus 0.19: respawns at its periodic check, `check_delay = "
          f"{a['circus_check_delay']:g}`. Supervisor: `autorestart = true`, `startsecs = 0`. "
          f"RSS/fds: after {a['churn_warmup']} spawns (warm-up) and at the end; the peak of "
          "readings every 0.2 s. Spawns: `spawn` events on the pubsub endpoint (circus, ours), "
          "`spawned:` lines of supervisord's log.\n")
        cols = [("spawns", "spawns counted", lambda x: f"{x:,.0f}"),
                ("spawns_per_s", "spawns/s", lambda x: f"{x:.0f}"),
                ("rss0_kb", "RSS after warm-up", mb), ("rss1_kb", "RSS at the end", mb),
                ("rss_growth_kb", "RSS growth", mb), ("rss_peak_kb", "RSS peak", mb),
                ("fds0", "fds after warm-up", num), ("fds1", "fds at the end", num),
                ("fds_peak", "fds peak", num)]
        w("| system | " + " | ".join(c[1] for c in cols) + " |")
        w("|---|" + "---|" * len(cols))
        for sy in systems:
            if any(x["system"] == sy for x in ch):
                w(f"| {NAMES[sy]} | " + " | ".join(rng(ch, sy, k, f) for k, _, f in cols) + " |")
        capped = sorted({x["system"] for x in ch if x.get("capped")})
        w("")
        if capped:
            w("Capped by time (fewer spawns than asked): " + ", ".join(NAMES[c] for c in capped)
              + "; its growth is over the spawns it did.\n")
        o = med(ch, "ours", "spawns_per_s")
        for sy in ("circus", "supervisor"):
            p = med(ch, sy, "spawns_per_s")
            if o and p:
                w(f"- spawns/s ours / {NAMES[sy]}: {o / p:.1f}x; RSS growth ours {mb(med(ch, 'ours', 'rss_growth_kb'))}, "
                  f"{NAMES[sy]} {mb(med(ch, sy, 'rss_growth_kb'))}")
        w("")
    st = [x for x in s if x["scenario"] == "start"]
    if st:
        w(f"## 2. Start and stop {a['start_n']:,} processes (`sleep 3600`)\n")
        w("Start: from the `start` command sent (the daemon up and answering, the watcher/"
          "program not autostarted; circus JSON protocol from an already connected DEALER, "
          "supervisor XML-RPC `startProcessGroup(sl, wait=False)`) until all N are running "
          "children exec'd `sleep`. Stop: from `stop` sent until all N are dead and reaped. "
          "Floor: `subprocess.Popen` of N `sleep 3600` with `start_new_session=True` and "
          "stdout/stderr pipes from the harness until all exec'd; SIGTERM and `wait()`; the "
          "same with stdout/stderr to /dev/null (as ours and circus 0.19 run a watcher "
          "without output streams: their fd count does not move). The target is against "
          "the floor with pipes.\n")
        cols = [("start_s", "start: all running", ms), ("first_s", "first running", ms),
                ("stop_dead_s", "stop: all dead", ms), ("stop_reaped_s", "stop: all reaped", ms),
                ("fds_idle", "daemon fds idle", num), ("fds_full", f"fds with N running", num),
                ("rss_full_kb", "RSS with N running", mb)]
        w("| system | " + " | ".join(c[1] for c in cols) + " | start / floor | stop / floor |")
        w("|---|" + "---|" * (len(cols) + 2))
        f_st, f_sp = med(st, "floor", "start_s"), med(st, "floor", "stop_reaped_s")
        for sy in [*systems, "floor", "floor-devnull"]:
            if any(x["system"] == sy for x in st):
                w(f"| {NAMES[sy]} | " + " | ".join(rng(st, sy, k, f) for k, _, f in cols) +
                  f" | {ratio(med(st, sy, 'start_s'), f_st)} | "
                  f"{ratio(med(st, sy, 'stop_reaped_s'), f_sp)} |")
        w("")
        o = med(st, "ours", "start_s")
        for sy in ("circus", "supervisor"):
            p = med(st, sy, "start_s")
            if o and p:
                w(f"- start ours / {NAMES[sy]}: {o / p:.2f}x; stop ours / {NAMES[sy]}: "
                  f"{ratio(med(st, 'ours', 'stop_reaped_s'), med(st, sy, 'stop_reaped_s'))}")
        w("")
    ld = [x for x in s if x["scenario"] == "load"]
    if ld:
        w(f"## 3. Control round trip under load ({a['load_clients']} clients x "
          f"{a['load_requests']:,} requests, {a['load_crashers']} crash-looping watchers)\n")
        w(f"Watcher `sl` of {a['load_procs']} `sleep 3600` and {a['load_crashers']} watchers "
          f"`crashI` (`sh -c 'exit 1'`, max_retry = -1, backoff 0.05–0.5 s; `check_delay = "
          f"{a['load_check_delay']:g}` for both). Each client (peerbench's S8 client, its own "
          "process, a pyzmq DEALER, started together behind a barrier) sends its requests one at "
          "a time: equal numbers of `list`, `status sl`, `incr sl`, `decr sl` (`waiting: false`). "
          "Latency: send to reply, every reply (busy refusals included; `ok` = successful "
          f"replies only). Timeout {a['load_timeout']:g} s per request.\n")
        cols = [("p50", "p50", ms), ("p95", "p95", ms), ("p99", "p99", ms), ("max", "max", ms),
                ("ok_p99", "p99 ok only", ms), ("rps", "replies/s", lambda x: f"{x:.0f}"),
                ("errors", "error replies", num), ("busy", "busy refusals", num),
                ("timeouts", "timeouts", num)]
        w("| system | " + " | ".join(c[1] for c in cols) + " |")
        w("|---|" + "---|" * len(cols))
        for sy in systems:
            if any(x["system"] == sy for x in ld):
                w(f"| {NAMES[sy]} | " + " | ".join(rng(ld, sy, k, f) for k, _, f in cols) + " |")
        w("")
        o, p = med(ld, "ours", "p99"), med(ld, "circus", "p99")
        if o and p:
            w(f"- p99 ours / circus 0.19.0: {o / p:.2f}x; p50 "
              f"{ratio(med(ld, 'ours', 'p50'), med(ld, 'circus', 'p50'))}; replies/s "
              f"{ratio(med(ld, 'ours', 'rps'), med(ld, 'circus', 'rps'))}")
        for sy in systems:
            rs = {}
            for x in ld:
                if x["system"] == sy:
                    for k, v in x["reasons"].items():
                        rs[k] = rs.get(k, 0) + v
            if rs:
                w(f"- {NAMES[sy]} error replies (all repetitions): " +
                  "; ".join(f"`{k}` x {v}" for k, v in list(rs.items())[:5]))
        for sy in systems:
            po = [x["per_op"] for x in ld if x["system"] == sy]
            if po:
                w(f"- {NAMES[sy]} p99 per command (median over repetitions): " + ", ".join(
                    f"{op} {ms(statistics.median(d[op]['p99'] for d in po if op in d))}"
                    for op in sorted(po[0])))
        w("")
    if res["errors"]:
        w("## Errors\n")
        for e in res["errors"]:
            w(f"- {e['scenario']} {e['system']} rep {e['rep']}: `{e['error'][:400]}`")
        w("")
    return "\n".join(out) + "\n"


def mb(kb):
    return "-" if kb is None else f"{kb / 1024:.2f} MB"


def num(x):
    return "-" if x is None else f"{x:g}"


# --------------------------------------------------------------------------

def main_run(a):
    import psutil
    for k in ("ours_venv", "circus_venv", "supervisor_venv", "out_json", "out_md"):
        setattr(a, k, os.path.abspath(getattr(a, k)))
    a.systems = [x for x in a.systems.split(",") if x]
    a.scenarios = [x for x in a.scenarios.split(",") if x]
    for x in a.systems:
        if x not in SYSTEMS:
            raise SystemExit(f"unknown system {x}")
    for x in a.scenarios:
        if x not in SCENARIOS:
            raise SystemExit(f"unknown scenario {x}")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    need = 2 * a.start_n + 200
    if hard < need:
        log(f"! RLIMIT_NOFILE hard limit {hard} < {need} needed for {a.start_n} piped children")
    pb.become_subreaper()
    b = Bench(a)
    versions = {}
    for s, ad in b.ads.items():
        versions[s] = {k: v for k, v in ad.versions().items() if k in
                       ("circus", "pyzmq", "libzmq", "supervisor", "circusd --version")}
    log(f"versions: {versions}; work dir {b.root}")

    def on_term(*_):
        raise SystemExit(130)
    signal.signal(signal.SIGTERM, on_term)
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    la0 = os.getloadavg()
    try:
        took = b.run()
    finally:
        pb.final_cleanup()
    res = {"meta": {"date": date, "run_seconds": took, "nproc": os.cpu_count(),
                    "python": platform.python_version(),
                    "os": f"{platform.system()} {platform.release()} {platform.machine()}",
                    "mem_gb": psutil.virtual_memory().total / 2**30,
                    "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
                    "loadavg_start": " ".join(f"{x:.2f}" for x in la0),
                    "loadavg_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
                    "versions": versions, "notes": a.note or []},
           "args": {k: v for k, v in vars(a).items()
                    if k not in ("ours_venv", "circus_venv", "supervisor_venv", "out_json",
                                 "out_md", "note", "cmd")},
           "samples": b.samples, "errors": b.errors}
    for f in (a.out_json, a.out_md):
        os.makedirs(os.path.dirname(f), exist_ok=True)
    with open(a.out_json, "w") as f:
        json.dump(res, f, indent=1)
    with open(a.out_md, "w") as f:
        f.write(render_md(res))
    if not a.keep:
        shutil.rmtree(b.root, ignore_errors=True)
    log(f"done in {took / 60:.1f} min; {len(b.samples)} samples, {len(b.errors)} errors; "
        f"{a.out_md}")
    return 1 if b.errors else 0


def main():
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        mode, rest = sys.argv[1], sys.argv[2:]
        if mode == "_sub":
            return helper_sub(rest[0], rest[1], rest[2], float(rest[3]))
        if mode == "_ctl":
            return helper_ctl(rest[0])
        raise SystemExit(f"unknown helper {mode}")
    peers = pb.PEERS_DEFAULT
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--ours-venv", default=os.path.join(os.path.dirname(HERE), ".venv"))
    r.add_argument("--circus-venv", default=os.path.join(peers, "circus"))
    r.add_argument("--supervisor-venv", default=os.path.join(peers, "supervisor"))
    r.add_argument("--systems", default=",".join(SYSTEMS))
    r.add_argument("--scenarios", default=",".join(SCENARIOS))
    r.add_argument("--reps", type=int, default=3)
    r.add_argument("--settle", type=float, default=1.0, help="wait before/after the timed steps")
    r.add_argument("--start-timeout", type=float, default=120.0)
    r.add_argument("--churn-reps", type=int, default=2, help="churn runs at most this many reps")
    r.add_argument("--churn-procs", type=int, default=10)
    r.add_argument("--churn-warmup", type=int, default=200)
    r.add_argument("--churn-spawns", type=int, default=10000)
    r.add_argument("--churn-max-seconds", type=float, default=150.0)
    r.add_argument("--circus-check-delay", type=float, default=0.1,
                   help="churn: circus 0.19's check_delay (it respawns only at its check)")
    r.add_argument("--start-n", type=int, default=1000)
    r.add_argument("--no-devnull-floor", dest="devnull_floor", action="store_false",
                   help="start: leave out the second floor, Popen with stdout/stderr to /dev/null")
    r.add_argument("--load-clients", type=int, default=20)
    r.add_argument("--load-requests", type=int, default=1000)
    r.add_argument("--load-crashers", type=int, default=5)
    r.add_argument("--load-procs", type=int, default=5)
    r.add_argument("--load-check-delay", type=float, default=0.5)
    r.add_argument("--load-timeout", type=float, default=5.0)
    r.add_argument("--load-client-deadline", type=float, default=180.0)
    r.add_argument("--note", action="append")
    r.add_argument("--keep", action="store_true")
    r.add_argument("--out-json", default=os.path.join(HERE, "results", "reliability.json"))
    r.add_argument("--out-md", default=os.path.join(HERE, "results", "reliability.md"))
    rp = sub.add_parser("report")
    rp.add_argument("json")
    a = p.parse_args()
    if a.cmd == "run":
        return main_run(a)
    with open(a.json) as f:
        sys.stdout.write(render_md(json.load(f)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
