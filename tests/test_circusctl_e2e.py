"""Tier 2: the circusctl program against a real circusd with real children, on ipc:// in tmp_path.

Every command's success path and its error path, by running ``python -m circus.cli.circusctl``.
"""
from __future__ import annotations

import os
import re
import selectors
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.real

CONFIG = """
[circus]
endpoint = ipc://{dir}/control.sock
pubsub_endpoint = ipc://{dir}/events.sock
multicast_endpoint =

[watcher:sleeper]
cmd = sleep 3600
numprocesses = 2
graceful_timeout = 2

[watcher:idle]
cmd = sleep 3600
autostart = False

[watcher:crasher]
cmd = sh -c "exit 1"
max_retry = 1

[watcher:stubborn]
cmd = {python} -c "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(3600)"
graceful_timeout = 1.5

[socket:web]
host = 127.0.0.1
port = 0
"""


class Ctl:
    def __init__(self, daemon) -> None:
        self.daemon = daemon
        self.endpoint = f"ipc://{daemon.dir}/control.sock"
        self.events = f"ipc://{daemon.dir}/events.sock"

    def argv(self, *args: str, endpoint: str | None = None) -> list[str]:
        return [sys.executable, "-m", "circus.cli.circusctl", "--endpoint", endpoint or self.endpoint,
                *args]

    def __call__(self, *args: str, timeout: float = 30) -> tuple[int, str, str]:
        env = {k: v for k, v in os.environ.items() if k != "CIRCUSCTL_ENDPOINT"}
        proc = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout, env=env)
        return proc.returncode, proc.stdout, proc.stderr

    def ok(self, *args: str) -> str:
        code, out, err = self(*args)
        assert (code, err) == (0, ""), f"circusctl {' '.join(args)} -> {code}: {err}"
        return out

    def unhealthy(self, *args: str) -> str:
        """A ``status`` that says something is not active: exit 3, its text on stdout."""
        code, out, err = self(*args)
        assert (code, err) == (3, ""), f"circusctl {' '.join(args)} -> {code}: {out}{err}"
        return out

    def refused(self, *args: str) -> str:
        code, out, err = self(*args)
        assert (code, out) == (3, ""), f"circusctl {' '.join(args)} -> {code}: {out}{err}"
        assert err.startswith("error: ")
        return err

    def pids(self, name: str) -> list[int]:
        out = self.ok("list", name).strip()
        return [int(p) for p in out.split(",")] if out else []


@pytest.fixture
def ctl(circusd, tmp_path):
    daemon = circusd(CONFIG.format(dir=tmp_path, python=sys.executable))
    c = Ctl(daemon)
    daemon.wait(lambda: c("status", "sleeper")[1] == "active\n" and len(c.pids("sleeper")) == 2,
                timeout=15, what="sleeper active")
    daemon.wait(lambda: c("status", "crasher")[1].startswith("fatal"), timeout=15, what="crasher fatal")
    daemon.wait(lambda: c("status", "stubborn")[1] == "active\n", timeout=15, what="stubborn active")
    return c


def test_read_only_commands(ctl):
    assert ctl.ok("list") == "crasher,idle,sleeper,stubborn\n"
    pids = ctl.pids("sleeper")
    assert sorted(pids) == ctl.daemon.children("sleep")
    assert ctl.ok("numwatchers") == "4\n"
    assert ctl.ok("numprocesses", "sleeper") == "2\n"
    assert ctl.ok("numprocesses") == "3\n"
    assert "\ncmd: sleep 3600\n" in "\n" + ctl.ok("options", "sleeper")
    assert ctl.ok("get", "sleeper", "numprocesses", "cmd") == "numprocesses: 2\ncmd: sleep 3600\n"
    assert f"endpoint: {ctl.endpoint}\n" in ctl.ok("globaloptions")
    assert ctl.ok("globaloptions", "pubsub_endpoint") == f"pubsub_endpoint: {ctl.events}\n"
    sockets = ctl.ok("listsockets").splitlines()
    assert len(sockets) == 1 and " socket 'web' at 127.0.0.1:" in sockets[0].replace(":socket", " socket")
    stats = [line.split() for line in ctl.ok("stats", "sleeper").splitlines()]
    assert stats[0] == ["WATCHER", "PID", "CPU%", "MEM%", "RSS", "VMS", "AGE", "CMD"]
    assert [(row[0], int(row[1]), row[-1]) for row in stats[1:]] == [("sleeper", p, "sleep") for p in pids]
    one = ctl.ok("stats", "sleeper", str(pids[0])).splitlines()
    assert len(one) == 2 and one[1].split()[:2] == ["sleeper", str(pids[0])]
    assert {line.split()[0] for line in ctl.ok("stats").splitlines()[1:]} == {"sleeper", "stubborn"}
    dstats = ctl.ok("dstats").splitlines()
    assert dstats[0].split()[:2] == ["WATCHER", "PID"] and dstats[1].split()[:2] == ["circusd", str(ctl.daemon.pid)]


def test_status_rich_and_0_19_forms(ctl):
    lines = ctl.unhealthy("status").splitlines()         # crasher fatal, idle stopped: exit 3
    assert lines[1:] == ["idle: stopped", "sleeper: active", "stubborn: active"]
    assert lines[0].startswith("crasher: fatal (") and "exit code 1" in lines[0]
    assert ctl.ok("status", "sleeper") == "active\n"
    assert ctl.unhealthy("status", "crasher").startswith("fatal (")
    assert ctl.ok("status", "s*") == "sleeper: active\nstubborn: active\n"


def test_unknown_watcher_is_refused(ctl):
    for args in (["status", "nope"], ["list", "nope"], ["numprocesses", "nope"], ["options", "nope"],
                 ["get", "nope", "cmd"], ["stats", "nope"], ["incr", "nope"], ["decr", "nope"],
                 ["set", "nope", "numprocesses", "1"], ["rm", "nope"], ["kill", "nope"],
                 ["signal", "nope", "hup"], ["start", "nope"], ["stop", "nope"], ["restart", "nope"],
                 ["reload", "nope"]):
        assert "nope" in ctl.refused(*args)


def test_other_refusals(ctl):
    pid = ctl.pids("sleeper")[0]
    assert "'nope'" in ctl.refused("get", "sleeper", "nope")
    assert "'nope'" in ctl.refused("globaloptions", "nope")
    assert "1" in ctl.refused("stats", "sleeper", "1")
    assert ctl.refused("kill", "sleeper", "1")
    assert ctl.refused("signal", "sleeper", "bogus")
    assert ctl.refused("signal", "sleeper", "1", "hup")
    assert ctl.refused("set", "sleeper", "numprocesses", "-1")
    assert ctl.refused("set", "sleeper", "no_such_option", "1")
    assert ctl.refused("add", "sleeper", "sleep 1")
    assert "not supported" in ctl.refused("ipython")
    assert ctl.pids("sleeper")[0] == pid


def test_resize_and_set(ctl):
    assert ctl.ok("incr", "sleeper", "--waiting") == "3\n"
    assert ctl.ok("decr", "sleeper", "2", "--waiting") == "1\n"
    assert ctl.ok("incr", "sleeper") == "ok\n"
    ctl.daemon.wait(lambda: len(ctl.pids("sleeper")) == 2, what="two sleepers")
    assert ctl.ok("set", "sleeper", "numprocesses", "3", "graceful_timeout", "1.5", "--waiting") == "ok\n"
    assert ctl.ok("get", "sleeper", "numprocesses", "graceful_timeout") == \
        "numprocesses: 3\ngraceful_timeout: 1.5\n"
    ctl.daemon.wait(lambda: len(ctl.pids("sleeper")) == 3, what="three sleepers")


def test_start_stop_restart_reload(ctl):
    assert ctl.ok("start", "idle", "--waiting") == "ok\n"
    assert ctl.ok("status", "idle") == "active\n" and len(ctl.pids("idle")) == 1
    old = ctl.pids("idle")
    assert ctl.ok("restart", "idle", "--waiting") == "ok\n"
    assert ctl.pids("idle") != old
    old = ctl.pids("idle")
    assert ctl.ok("reload", "idle", "--waiting") == "ok\n"
    assert ctl.pids("idle") != old
    assert ctl.ok("reload", "idle", "--terminate", "--sequential", "--waiting") == "ok\n"
    assert ctl.ok("stop", "i*", "--waiting") == "ok\n"
    assert ctl.unhealthy("status", "idle") == "stopped\n" and ctl.pids("idle") == []
    assert ctl.ok("start", "^id", "--match", "regex", "--waiting") == "ok\n"
    assert ctl.ok("status", "idle") == "active\n"


def test_add_and_rm(ctl):
    assert ctl.ok("add", "--start", "extra", "sleep", "3600") == "ok\n"
    ctl.daemon.wait(lambda: len(ctl.pids("extra")) == 1, what="extra started")
    assert "extra" in ctl.ok("list").strip().split(",")
    assert ctl.ok("rm", "extra", "--waiting") == "ok\n"
    assert "extra" not in ctl.ok("list").strip().split(",")


def test_kill_and_signal(ctl):
    pid = ctl.pids("sleeper")[0]
    assert ctl.ok("kill", "sleeper", str(pid), "--waiting") == "ok\n"
    ctl.daemon.wait(lambda: pid not in ctl.pids("sleeper") and len(ctl.pids("sleeper")) == 2,
                    what="killed sleeper replaced")
    pid = ctl.pids("sleeper")[0]
    assert ctl.ok("signal", "sleeper", str(pid), "term") == "ok\n"
    ctl.daemon.wait(lambda: pid not in ctl.pids("sleeper"), what="signalled sleeper gone")


def test_reloadconfig_dry_run_then_apply(ctl):
    config = ctl.daemon.config
    config.write_text(config.read_text() + "\n[watcher:later]\ncmd = sleep 3600\n")
    assert ctl.ok("reloadconfig", "--dry-run") == "+ watcher later (added)\n"
    assert "later" not in ctl.ok("list")
    out = ctl.ok("reloadconfig", "--waiting")
    assert out.splitlines()[0] == "ok"
    ctl.daemon.wait(lambda: len(ctl.pids("later")) == 1, what="later started")
    assert ctl.ok("reloadconfig", "--dry-run") == "no change\n"


def test_reopen(ctl):
    assert ctl.ok("reopen") == "ok\n"


def test_json_output(ctl):
    import json
    reply = json.loads(ctl.ok("--json", "status", "sleeper"))
    assert reply["status"] == "active" and reply["state"] == "active"
    code, out, _ = ctl("--json", "status", "nope")
    assert code == 3 and json.loads(out)["status"] == "error"


def test_timeout_bounds_a_waiting_stop(ctl):
    start = time.monotonic()
    code, out, err = ctl("--timeout", "0.5", "stop", "stubborn", "--waiting")
    assert (code, err) == (1, f"circusctl: no answer from {ctl.endpoint} to 'stop' within 0.5 s: "
                           "circusd is connected but busy or slow (for a waiting command, give a "
                           "larger --timeout)\n")
    assert time.monotonic() - start < 2.5


def test_listen_prints_events(ctl):
    proc = subprocess.Popen(ctl.argv("listen", "watcher.sleeper.", endpoint=ctl.events),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 15
        line = b""
        while time.monotonic() < deadline and not line:
            ctl.ok("incr", "sleeper", "--waiting")
            if sel.select(0.5):
                line = proc.stdout.readline()
        sel.close()
        assert re.fullmatch(rb"watcher\.sleeper\.spawn  process_pid=\d+ time=\d\d:\d\d:\d\d\.\d{3} "
                            rb"node=\S+\n", line), line
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


def test_shell_against_circusd(ctl):
    proc = subprocess.run(ctl.argv(), input="list\nstatus sleeper\nstatus nope\n", capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0
    assert "(circusctl) crasher,idle,sleeper,stubborn\n(circusctl) active\n" in proc.stdout
    assert "error: program nope not found: " in proc.stderr


def test_quit(ctl):
    assert ctl.ok("quit", "--waiting") == "ok\n"
    assert ctl.daemon.proc.wait(15) == 0
    code, _, err = ctl("--timeout", "0.3", "list")
    assert code == 1 and err.startswith(f"circusctl: cannot connect to {ctl.endpoint}: "), err
