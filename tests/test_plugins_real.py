"""Plugins, tier 2: each built-in plugin run by ``circus-plugin`` against a real circusd with
real children, on ipc endpoints in tmp_path. statsd metrics go to a UDP socket the test binds on
127.0.0.1 port 0. Every wait has a deadline and fails fast when circusd or the plugin died."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable

import pytest

from conftest import proc_alive, proc_children

pytestmark = pytest.mark.real

PY = sys.executable

HEAD = """
[circus]
endpoint = ipc://{dir}/control.sock
pubsub_endpoint = ipc://{dir}/events.sock
multicast_endpoint =
"""


class PluginProc:
    """``circus-plugin FQN`` as a subprocess on the node's endpoints; its log in a file."""

    def __init__(self, tmp_path: Path, fqn: str, **config: object) -> None:
        name = str(config.setdefault("name", fqn.rsplit(".", 1)[-1].lower()))
        self.log = tmp_path / f"plugin-{name}.log"
        items = ":::".join(f"{k}:{v}" for k, v in config.items())
        argv = [PY, "-m", "circus.cli.plugin", "--endpoint", f"ipc://{tmp_path}/control.sock",
                "--pubsub", f"ipc://{tmp_path}/events.sock", "--check-delay", "5",
                "--config", items, "--log-level", "debug", "--log-output", str(self.log), fqn]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def check(self) -> None:
        if self.proc.poll() is not None:
            out = self.proc.stdout.read().decode() if self.proc.stdout else ""
            pytest.fail(f"the plugin exited ({self.proc.returncode})\n{out}\n{self.text()[-3000:]}")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(10)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()


@pytest.fixture
def node(circusd, tmp_path):
    """``start(body)`` → (circusd, Raw control client, plugin(fqn, **config), wait(pred, ...))."""
    import zmq

    from conftest import Raw
    ctx = zmq.Context()
    plugins: list[PluginProc] = []
    clients: list[Raw] = []

    def start(body: str):
        d = circusd(HEAD.format(dir=tmp_path) + textwrap.dedent(body))
        d.wait(lambda: (tmp_path / "control.sock").exists(), what="control socket")
        c = Raw(ctx, f"ipc://{tmp_path}/control.sock")
        clients.append(c)

        def plugin(fqn: str, **config: object) -> PluginProc:
            p = PluginProc(tmp_path, fqn, **config)
            plugins.append(p)
            return p

        def wait(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition"):
            def checked():
                for p in plugins:
                    p.check()
                return predicate()
            return d.wait(checked, timeout, what)

        return d, c, plugin, wait

    yield start
    for p in plugins:
        p.cleanup()
    for c in clients:
        c.close()
    ctx.term()


@pytest.fixture
def udp():
    """A UDP socket on 127.0.0.1, port 0 (a statsd server or a free port for heartbeats)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    yield sock
    sock.close()


def metrics(sock: socket.socket) -> list[str]:
    """Every statsd line received so far (none waiting: returns after 50 ms)."""
    out = []
    while True:
        try:
            out.append(sock.recv(65536).decode())
        except TimeoutError:
            return out


def pids(c, watcher: str) -> list[int]:
    reply = c.call("list", name=watcher)
    assert reply["status"] == "ok", reply
    return sorted(reply["pids"])


def running(c, watcher: str, n: int = 1) -> list[int]:
    found = pids(c, watcher)
    return found if len(found) == n else []


def write_script(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


# -- statsd -----------------------------------------------------------------------------------------

def test_statsd_emitter_sends_a_counter_per_event(node, udp):
    d, c, plugin, wait = node("""
        [watcher:web]
        cmd = sleep 60
    """)
    wait(lambda: running(c, "web"), what="web running")
    p = plugin("circus.plugins.statsd.StatsdEmitter", host="127.0.0.1",
               port=udp.getsockname()[1], application_name="shop")
    received: list[str] = []

    def spawned_seen():                  # events before the plugin subscribed are not seen
        assert c.call("restart", name="web")["status"] == "ok"
        received.extend(metrics(udp))
        return "circus.shop.watcher.web.spawn:1|c" in received
    wait(spawned_seen, what="a spawn counter")
    # the subscription may have landed inside that restart (after its kill and start): once
    # the plugin sees events, one more restart has all three
    assert c.call("restart", name="web")["status"] == "ok"
    wait(lambda: received.extend(metrics(udp)) or
         {"circus.shop.watcher.web.kill:1|c", "circus.shop.watcher.web.start:1|c"} <= set(received),
         what="kill and start counters")
    assert all(line.startswith("circus.shop.watcher.") and line.endswith(":1|c") for line in received)
    assert p.stop() == 0
    assert "plugin statsdemitter stopped" in p.text()


GAUGES_019 = {"watchers_num", "cpu_max", "cpu_sum", "mem_pct_max", "mem_pct_sum", "mem_max",
              "mem_sum"}


def test_full_stats_sends_019s_gauges_of_every_watcher(node, udp):
    d, c, plugin, wait = node("""
        [watcher:pair]
        cmd = sleep 60
        numprocesses = 2
        [watcher:idle]
        cmd = sleep 60
        numprocesses = 0
        [plugin:quiet]
        use = circus.plugins.statsd.StatsdEmitter
        active = false
    """)
    wait(lambda: running(c, "pair", 2), what="pair running")
    plugin("circus.plugins.statsd.FullStats", host="127.0.0.1", port=udp.getsockname()[1],
           application_name="app", loop_rate="0.2")
    gauges: dict[str, float] = {}
    others: list[str] = []

    def all_gauges():
        for line in metrics(udp):
            name, _, rest = line.partition(":")
            value, kind = rest.split("|")[:2]
            if kind == "g":
                gauges[name] = float(value)
            else:
                others.append(line)
        return all(f"circus.app.watcher._stats.pair.{k}" in gauges for k in GAUGES_019) \
            and "circus.app.watcher._stats.idle.watchers_num" in gauges
    wait(all_gauges, what="the gauges of pair")
    c.call("stop", name="pair", waiting=True)
    c.call("start", name="pair", waiting=True)           # events: 0.19's FullStats counts none
    wait(lambda: running(c, "pair", 2), what="pair running again")
    gauges.clear()
    wait(all_gauges, what="a round after the events")
    # exactly 0.19's names: the watcher's gauges (only watchers_num without processes), no
    # event counters, nothing for the plugins' watchers
    assert {n for n in gauges if n.startswith("circus.app.watcher._stats.")} == \
        {f"circus.app.watcher._stats.pair.{k}" for k in GAUGES_019} | \
        {"circus.app.watcher._stats.idle.watchers_num"}
    assert not others and not any("plugin" in n for n in gauges)
    g = {k.rsplit(".", 1)[1]: v for k, v in gauges.items()
         if k.startswith("circus.app.watcher._stats.pair.")}
    assert 0 < g["mem_max"] <= g["mem_sum"] < 2**30              # bytes (RSS of two sleeps)
    assert g["mem_max"] * 2 >= g["mem_sum"]
    assert 0 <= g["mem_pct_max"] <= g["mem_pct_sum"] < 100
    assert 0 <= g["cpu_max"] <= g["cpu_sum"]


# -- resource watcher -------------------------------------------------------------------------------

HOG = "import time; x = b'x' * (48 << 20); time.sleep(60)"
SPIN = "while True: pass"


@pytest.mark.parametrize("cmd,limits,check", [
    (HOG, {"max_mem": "20M", "max_cpu": "1000"}, "over_memory"),
    (SPIN, {"max_mem": "100", "max_cpu": "30"}, "over_cpu"),
], ids=["max_mem", "max_cpu"])
def test_resource_watcher_restarts_a_watcher_over_its_limit(node, udp, tmp_path, cmd, limits, check):
    script = write_script(tmp_path / "hog.py", cmd)
    d, c, plugin, wait = node(f"""
        [watcher:hog]
        cmd = {PY} {script}
        [watcher:calm]
        cmd = sleep 60
    """)
    before = wait(lambda: running(c, "hog"), what="hog running")
    calm = wait(lambda: running(c, "calm"), what="calm running")
    plugin("circus.plugins.resource_watcher.ResourceWatcher", watcher="hog", max_count="1",
           loop_rate="0.2", health_threshold="1000", host="127.0.0.1",
           port=udp.getsockname()[1], **limits)
    wait(lambda: (now := running(c, "hog")) and now != before, timeout=15, what="hog restarted")
    lines = metrics(udp)
    assert f"circus.app.watcher._resource_watcher.hog.{check}:1|c" in lines
    assert "circus.app.watcher._resource_watcher.hog.restarting:1|c" in lines
    assert running(c, "calm") == calm


PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; x = b'x' * (48 << 20); time.sleep(60)"])
child.wait()
time.sleep(60)
"""


def test_resource_watcher_with_process_children_signals_only_the_child(node, udp, tmp_path):
    script = write_script(tmp_path / "parent.py", PARENT)
    d, c, plugin, wait = node(f"""
        [watcher:parent]
        cmd = {PY} {script}
    """)
    parent = wait(lambda: running(c, "parent"), what="parent running")[0]
    child = wait(lambda: proc_children(parent), what="the child")[0]
    p = plugin("circus.plugins.resource_watcher.ResourceWatcher", watcher="parent",
               process_children="true", max_mem="20M", max_cpu="1000", health_threshold="1000",
               max_count="1", loop_rate="0.2", child_signal="SIGUSR1", host="127.0.0.1",
               port=udp.getsockname()[1])
    wait(lambda: not proc_alive(child), timeout=15, what="the child killed")
    assert running(c, "parent") == [parent] and proc_alive(parent)
    assert f"child {child} of parent's process {parent}" in p.text()
    assert "signal 10" in p.text()
    assert "circus.app.watcher._resource_watcher.parent.over_memory:1|c" in metrics(udp)


# -- watchdog -----------------------------------------------------------------------------------------

BEAT = """
import os, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
while True:
    s.sendto(f"{os.getpid()};{time.time()}".encode(), ("127.0.0.1", int(sys.argv[1])))
    time.sleep(0.05)
"""


def test_watchdog_kills_the_silent_processes_and_spares_the_ones_that_beat(node, udp, tmp_path):
    port = udp.getsockname()[1]
    udp.close()                          # a free port for the plugin to listen on
    script = write_script(tmp_path / "beat.py", BEAT)
    d, c, plugin, wait = node(f"""
        [watcher:good]
        cmd = {PY} {script} {port}
        [watcher:silent]
        cmd = sleep 60
        numprocesses = 3
        [watcher:other]
        cmd = sleep 60
    """)
    good = wait(lambda: running(c, "good"), what="good running")
    silent = wait(lambda: running(c, "silent", 3), what="silent running")
    other = wait(lambda: running(c, "other"), what="other running")
    p = plugin("circus.plugins.watchdog.WatchDog", port=port, loop_rate="0.5", max_count="1",
               watchers_regex="good|silent")
    wait(lambda: f"listening for heartbeats on 127.0.0.1:{port}" in p.text(), what="listening")
    wait(lambda: not set(silent) <= set(pids(c, "silent")), what="a silent process killed")
    # all three in the same round (0.19 killed one per round): well before the next one
    wait(lambda: not set(silent) & set(pids(c, "silent")), timeout=0.4, what="all three killed")
    replaced = wait(lambda: running(c, "silent", 3), what="silent replaced")
    wait(lambda: not set(replaced) & set(pids(c, "silent")), what="the replacements killed too")
    assert running(c, "good") == good
    assert running(c, "other") == other               # not matched by watchers_regex
    assert p.text().count("sent no heartbeat") >= 6


# -- command reloader ---------------------------------------------------------------------------------

def test_command_reloader_restarts_a_watcher_whose_program_changed(node, tmp_path):
    script = write_script(tmp_path / "worker.sh", '#!/bin/sh\nexec sleep "$1"\n')
    script.chmod(0o755)
    d, c, plugin, wait = node(f"""
        [watcher:app]
        cmd = ./worker.sh 60
        working_dir = {tmp_path}
        [watcher:other]
        cmd = sleep 60
    """)
    before = wait(lambda: running(c, "app"), what="app running")
    other = wait(lambda: running(c, "other"), what="other running")
    p = plugin("circus.plugins.command_reloader.CommandReloader", loop_rate="0.2")
    wait(lambda: f"app runs {script}" in p.text() and "other runs" in p.text(), what="first look")
    mtime = script.stat().st_mtime_ns
    os.utime(script, ns=(mtime + 2 * 10**9, mtime + 2 * 10**9))
    wait(lambda: (now := running(c, "app")) and now != before, what="app restarted")
    assert f"app: {script} changed, restarting it" in p.text()
    assert running(c, "other") == other
    assert p.stop() == 0


# -- flapping -----------------------------------------------------------------------------------------

def test_flapping_stops_a_crash_looping_watcher_retries_then_gives_up(node, tmp_path):
    d, c, plugin, wait = node(f"""
        [watcher:crash]
        cmd = {PY} -c "import sys; sys.exit(3)"
        max_retry = -1
        backoff_initial = 0.05
        backoff_max = 0.05
        flapping.max_retry = 1
        [watcher:exempt]
        cmd = {PY} -c "import sys; sys.exit(3)"
        max_retry = -1
        backoff_initial = 0.05
        backoff_max = 0.05
        flapping.active = False
        [watcher:steady]
        cmd = sleep 60
    """)
    steady = wait(lambda: running(c, "steady"), what="steady running")
    p = plugin("circus.plugins.flapping.Flapping", attempts="2", window="1", retry_in="0.3",
               max_retry="5")
    wait(lambda: "still flapping after 1 retries" in p.text(), timeout=15, what="giving up")
    wait(lambda: c.call("status", name="crash")["status"] == "stopped", what="crash stopped")
    text = p.text()
    assert "crash is flapping" in text and "retry 1 of 1" in text and "starting crash again" in text
    assert "refused" not in text and "failed" not in text
    assert running(c, "steady") == steady
    # flapping.active = False on a watcher: crash-looping as fast, never touched (0.19's switch)
    assert "exempt" not in text and c.call("status", name="exempt")["status"] == "active"


# -- [plugin:NAME] ------------------------------------------------------------------------------------

def test_a_plugin_section_runs_the_plugin_as_watcher_plugin_name(node, udp):
    from conftest import proc_cmdline
    d, c, plugin, wait = node(f"""
        check_delay = 2
        [watcher:web]
        cmd = sleep 60
        [plugin:Counter]
        use = circus.plugins.statsd.StatsdEmitter
        host = 127.0.0.1
        port = {udp.getsockname()[1]}
        application_name = sect
    """)
    assert "plugin:counter" in c.call("list")["watchers"]
    helper = wait(lambda: running(c, "plugin:counter"), what="the plugin's process")[0]
    argv = proc_cmdline(helper)
    assert argv[1:3] == ["-m", "circus.cli.plugin"] and argv[-1] == "circus.plugins.statsd.StatsdEmitter"
    assert argv[argv.index("--check-delay") + 1] == "2.0"          # 0.19 did not pass it on
    assert argv[argv.index("--config") + 1].startswith("name:counter:::")
    wait(lambda: running(c, "web"), what="web running")
    received: list[str] = []

    def counted():
        assert c.call("restart", name="web")["status"] == "ok"
        received.extend(metrics(udp))
        return "circus.sect.watcher.web.spawn:1|c" in received
    wait(counted, what="the section's plugin counting events")
    assert d.stop() == 0
    assert not proc_alive(helper)


def test_the_plugins_example_runs(node, udp, tmp_path):
    root = Path(__file__).parent.parent
    beat = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    beat.bind(("127.0.0.1", 0))
    port = beat.getsockname()[1]
    beat.close()
    text = (root / "examples" / "plugins.ini").read_text()
    body = text[text.index("[watcher:"):]
    body = body.replace("python3 examples/heartbeat.py 1664", f"{PY} {root}/examples/heartbeat.py {port}")
    body = body.replace("port = 1664", f"port = {port}").replace("port = 8125", f"port = {udp.getsockname()[1]}")
    d, c, plugin, wait = node(body)
    names = ("plugin:statsd", "plugin:gauges", "plugin:memory", "plugin:heartbeat",
             "plugin:flapping")
    helpers = {n: wait(lambda n=n: running(c, n), what=n) for n in names}
    wait(lambda: running(c, "worker", 2), what="the workers")
    received: list[str] = []

    def counted():      # 'set' of a free-form key: an 'updated' event, and no process stops
        reply = c.call("set", name="worker", options={"flapping.window": "1"})
        assert reply["status"] == "ok", reply
        received.extend(metrics(udp))
        return "circus.example.watcher.worker.updated:1|c" in received
    wait(counted, what="StatsdEmitter counting the worker's events")
    assert {n: running(c, n) for n in names} == helpers        # no plugin died meanwhile
    assert c.call("status", name="worker")["status"] == "active"
