"""Tier 2: hooks written for Circus 0.19 in a real circusd. They have 0.19's signature and read
what 0.19's own examples read (its uwsgi lossless-reload hooks: ``watcher.processes[pid].wid``
and ``.started``, ``watcher._options``, ``len(watcher.processes)``, ``watcher.numprocesses``,
``watcher.send_signal``), and the module starts with ``from circus import logger``. The
watcher stays active, and each hook sees what 0.19 showed it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.real

HOOKS = '''
from circus import logger           # the first line of many 0.19 hook modules
import json, os, signal, time

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hooks.jsonl")


def _record(**kw):
    with open(OUT, "a") as fh:
        fh.write(json.dumps(kw) + "\\n")


def look_around(watcher, arbiter, hook_name, **kwargs):
    same = arbiter.get_watcher(watcher.name)
    _record(hook=hook_name, names=[w.name for w in arbiter.watchers], same=same.name,
            cmd=watcher.cmd, args=watcher.args, endpoint=arbiter.endpoint,
            pubsub=arbiter.pubsub_endpoint, sockets=sorted(arbiter.sockets),
            fds={name: s.fileno() for name, s in arbiter.sockets.items()},
            watcher_sockets=sorted(watcher.sockets), env=watcher.env.get("HOOKED"),
            options=watcher._options, numprocesses=watcher.numprocesses,
            stdout=watcher.stdout_stream is not None, stderr=watcher.stderr_stream is None,
            status=watcher.status(), processes=len(watcher.processes))
    return True


def children_started(watcher, arbiter, hook_name, pid, **kwargs):
    process = watcher.processes[pid]
    base = int(watcher._options.get("uwsgi.stats_base_port", 8090))
    _record(hook=hook_name, pid=pid, wid=process.wid, started=process.started,
            status=process.status, port=base + process.wid)
    logger.info("children_started: %s wid %s", pid, process.wid)
    watcher.stdout_stream({"data": f"hook saw {pid}\\n".encode(), "pid": pid, "name": "stdout"})
    return process.wid >= 1


def clean_stop(watcher, arbiter, hook_name, pid, signum, **kwargs):
    if len(watcher.processes) > watcher.numprocesses and signum == signal.SIGTERM:
        started = watcher.processes[pid].started
        newer = [p for p, w in watcher.processes.items() if p != pid and w.started > started]
        watcher.send_signal(pid, signal.SIGUSR1)      # 0.19's example: SIGTSTP to uWSGI
        acked = os.path.join(os.path.dirname(OUT), "usr1.txt")
        deadline = time.monotonic() + 10               # ... then waits for it to pause
        while time.monotonic() < deadline and not (
                os.path.exists(acked) and str(pid) in open(acked).read().split()):
            time.sleep(0.01)
        _record(hook=hook_name, pid=pid, newer=len(newer))
    return True


def extended_stats(watcher, arbiter, hook_name, pid, stats, **kwargs):
    stats["wid_seen"] = watcher.processes[pid].wid
    stats["load"] = 0.5
    return True


def before_reap(watcher, arbiter, hook_name, process_pid, **kwargs):
    process = watcher.processes.get(process_pid)
    _record(hook=hook_name, pid=process_pid, found=process is not None,
            status=process.status if process else None)
    return True


def after_reap(watcher, arbiter, hook_name, process_pid, exit_code, process_status, **kwargs):
    from circus.process import DEAD_OR_ZOMBIE, UNEXISTING
    _record(hook=hook_name, pid=process_pid, exit_code=exit_code, status=process_status,
            crashed=process_status in (DEAD_OR_ZOMBIE, UNEXISTING),
            still=process_pid in watcher.processes)
    return True
'''

WORKER = '''
import os, signal, sys, time
here = os.path.dirname(os.path.abspath(__file__))

def usr1(signum, frame):
    with open(os.path.join(here, "usr1.txt"), "a") as fh:
        fh.write(f"{os.getpid()}\\n")

signal.signal(signal.SIGUSR1, usr1)
print("worker", sys.argv[1], os.getpid(), flush=True)
while True:
    time.sleep(1)
'''


def records(path, hook=None):
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if hook is None or r["hook"] == hook]


def test_0_19_hooks_keep_the_watcher_active_and_see_0_19s_objects(control_node, tmp_path):
    (tmp_path / "myhooks.py").write_text(HOOKS)
    (tmp_path / "worker.py").write_text(WORKER)
    out = tmp_path / "hooks.jsonl"
    body = f"""
        [socket:web]
        host = 127.0.0.1
        port = 0

        [watcher:hooked]
        cmd = {sys.executable} {tmp_path}/worker.py $(circus.wid)
        numprocesses = 2
        use_sockets = true
        graceful_timeout = 5
        uwsgi.stats_base_port = 9100
        stdout_stream.class = FileStream
        stdout_stream.filename = {tmp_path}/out.log
        hooks.before_start = myhooks.look_around
        hooks.after_spawn = myhooks.children_started
        hooks.before_signal = myhooks.clean_stop
        hooks.extended_stats = myhooks.extended_stats
        hooks.before_reap = myhooks.before_reap
        hooks.after_reap = myhooks.after_reap

        [env:hooked]
        HOOKED = yes
    """
    d, c = control_node(body)
    d.wait(lambda: len(records(out, "after_spawn")) == 2, what="two after_spawn hooks")
    d.wait(lambda: c.call("status", name="hooked")["status"] == "active", what="active")
    first = d.children(sys.executable)
    assert len(first) == 2

    (seen,) = records(out, "before_start")
    fd = c.call("listsockets")["sockets"][0]["fd"]
    assert seen["names"] == ["hooked"] and seen["same"] == "hooked"
    assert seen["cmd"] == f"{sys.executable} {tmp_path}/worker.py $(circus.wid)"
    assert seen["endpoint"] == f"ipc://{tmp_path}/control.sock"
    assert seen["pubsub"] == f"ipc://{tmp_path}/events.sock"
    assert seen["sockets"] == ["web"] and seen["fds"] == {"web": fd}
    assert seen["watcher_sockets"] == ["web"] and seen["env"] == "yes"
    assert seen["options"] == {"uwsgi.stats_base_port": "9100"}
    assert seen["numprocesses"] == 2 and seen["stdout"] and seen["stderr"]
    assert (seen["status"], seen["processes"]) == ("stopped", 0)

    spawned = {r["pid"]: r for r in records(out, "after_spawn")}
    assert sorted(spawned) == first
    assert sorted(r["wid"] for r in spawned.values()) == [1, 2]
    assert all(r["status"] == 0 and abs(r["started"] - time.time()) < 60 for r in spawned.values())
    assert sorted(r["port"] for r in spawned.values()) == [9101, 9102]
    d.wait_log("children_started: ")          # `from circus import logger` logs to circusd's log

    # extended_stats adds keys (0.19's example adds 'load' and what it found by wid)
    info = c.call("stats", name="hooked", extended=True)["info"]
    assert sorted(info[str(pid)]["wid_seen"] for pid in first) == [1, 2]
    assert all(info[str(pid)]["load"] == 0.5 for pid in first)

    # (the workers print once their SIGUSR1 handler is set)
    def output():
        return (tmp_path / "out.log").read_text().splitlines() if (tmp_path / "out.log").exists() else []
    d.wait(lambda: len([x for x in output() if x.startswith("worker")]) == 2, what="workers ready")
    # a hook writes to the watcher's (built-in) stream through watcher.stdout_stream
    d.wait(lambda: sorted(x for x in output() if x.startswith("hook saw")) ==
           sorted(f"hook saw {pid}" for pid in first), what="the hook's lines")

    # a graceful reload: new processes first, then the old ones get the stop signal, and the
    # before_signal hook sees the surplus and the newer processes, as in 0.19's lossless reload
    r = c.call("reload", name="hooked", waiting=True, wait=30)
    assert r["status"] == "ok", r
    signalled = records(out, "before_signal")
    assert sorted(s["pid"] for s in signalled) == first
    assert all(s["newer"] >= 2 for s in signalled)       # the two new ones at least
    d.wait(lambda: (tmp_path / "usr1.txt").exists() and
           sorted(map(int, (tmp_path / "usr1.txt").read_text().split())) == first,
           what="SIGUSR1 sent by the hook through watcher.send_signal")
    second = d.wait(lambda: len(d.children(sys.executable)) == 2 and
                    set(d.children(sys.executable)).isdisjoint(first) and
                    d.children(sys.executable), what="the new processes alone")
    assert c.call("status", name="hooked")["status"] == "active"

    # circusd stopped these: after_reap says process_status None (0.19)
    stopped = [r for r in records(out, "after_reap") if r["pid"] in first]
    assert sorted(r["pid"] for r in stopped) == first
    assert all(r["status"] is None and not r["crashed"] and not r["still"] for r in stopped)

    # a crash: before_reap still finds the process, with status UNEXISTING; after_reap gets
    # process_status UNEXISTING (2), and the process is replaced
    victim = second[0]
    os.kill(victim, signal.SIGKILL)
    d.wait(lambda: [r for r in records(out, "after_reap") if r["pid"] == victim], what="after_reap")
    (crash,) = [r for r in records(out, "after_reap") if r["pid"] == victim]
    assert (crash["status"], crash["exit_code"], crash["crashed"], crash["still"]) == \
        (2, -9, True, False)
    (before,) = [r for r in records(out, "before_reap") if r["pid"] == victim]
    assert before["found"] and before["status"] == 2
    d.wait(lambda: len(d.children(sys.executable)) == 2 and victim not in d.children(sys.executable),
           what="the replacement")
    assert c.call("status", name="hooked")["status"] == "active"
    assert "hook_failure" not in d.log_text() and "stopping the watcher" not in d.log_text()
    d.stop()


def test_a_hook_module_starting_with_from_circus_import_logger_checks_and_runs(control_node,
                                                                                tmp_path):
    (tmp_path / "loggedhooks.py").write_text(
        "from circus import logger\n\n"
        "def hello(watcher, arbiter, hook_name, **kwargs):\n"
        "    logger.warning('hook %s for %s', hook_name, watcher.name)\n"
        "    return True\n")
    body = """
        [watcher:logged]
        cmd = sleep 3681
        hooks.after_start = loggedhooks.hello
    """
    from conftest import IPC_HEAD
    ini = tmp_path / "check.ini"
    ini.write_text(IPC_HEAD.format(dir=tmp_path) + body.replace("\n        ", "\n"))
    r = subprocess.run([sys.executable, "-m", "circus.cli.circusd", "--check-config", str(ini)],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    d, c = control_node(body)
    d.wait_log("hook after_start for logged")
    assert c.call("status", name="logged")["status"] == "active"
    assert d.children("sleep 3681")
    d.stop()


def test_a_hook_module_that_does_not_import_fails_its_hook_only(control_node, tmp_path):
    # in a file it is a configuration error (test_config_compat_real.py); added at run time it
    # fails its hook only
    (tmp_path / "badhooks.py").write_text("def f(watcher, arbiter, hook_name, **kw):\n    return 'x\n")
    d, c = control_node("""
        [watcher:other]
        cmd = sleep 3685
    """)
    d.wait(lambda: d.children("sleep 3685"), what="the other watcher")
    c.call("add", name="refused", cmd="sleep 3684", start=True,
           options={"hooks": {"before_start": ["badhooks.f", False]}})
    d.wait_log("hook before_start (badhooks.f) failed: cannot import 'badhooks': SyntaxError")
    assert c.call("status", name="refused")["status"] == "stopped"
    assert not d.children("sleep 3684")
    d.stop()
