"""Plugins, tier 1: option parsing, counters, detectors, the base class's event loop (with a real
PUB socket, no circusd), and circus-plugin's usage errors."""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import zmq

from circus.client import CallTimeout
from circus.cli.plugin import load_plugin_class
from circus.plugins import CircusPlugin, PluginConfigError, PluginError
from circus.plugins.command_reloader import program_state, resolve_program
from circus.plugins.flapping import FlapDetector, FlapSettings, Verdict
from circus.plugins.options import Amount, parse_amount, parse_config_arg
from circus.plugins.resource_watcher import Counters, Limits, ResourceWatcher, Usage
from circus.plugins.statsd import FullStats, StatsdClient, StatsdEmitter, watcher_gauges
from circus.plugins.watchdog import WatchDog, is_exempt

EP, PUB = "ipc:///nonexistent/c.sock", "ipc:///nonexistent/p.sock"


# -- --config and options -------------------------------------------------------------------------

def test_config_arg_is_split_on_triple_colons_and_values_keep_their_colons():
    assert parse_config_arg("name:fl:::url:http://h:80/x:::empty:") == {
        "name": "fl", "url": "http://h:80/x", "empty": ""}
    assert parse_config_arg("") == {}
    with pytest.raises(ValueError, match="key:value"):
        parse_config_arg("name:x:::novalue")


@pytest.mark.parametrize("raw,amount", [
    ("90", Amount(90, False)), ("90%", Amount(90, False)), ("12.5", Amount(12.5, False)),
    ("200M", Amount(200 * 2**20, True)), ("1.5g", Amount(1.5 * 2**30, True)),
    ("512KB", Amount(512 * 1024, True)), ("1GiB", Amount(2**30, True)), ("100B", Amount(100, True)),
])
def test_memory_amounts_are_percentages_bare_and_bytes_with_a_unit(raw, amount):
    assert parse_amount(raw) == amount


@pytest.mark.parametrize("raw", ["", "abc", "12X", "1.2.3M", "-5"])
def test_bad_memory_amounts_are_refused(raw):
    with pytest.raises(ValueError):
        parse_amount(raw)


def test_min_mem_with_a_unit_compares_bytes_not_percent():
    limits = Limits(max_cpu=None, max_mem=None, health_threshold=None, min_mem=parse_amount("50M"))
    assert limits.failed(Usage(cpu=0, mem=99.0, rss=10 * 2**20)) == {"under_memory"}
    assert limits.failed(Usage(cpu=0, mem=0.1, rss=60 * 2**20)) == set()


def test_limits_report_every_failed_check():
    limits = Limits(max_cpu=50, min_cpu=5, max_mem=parse_amount("10"), health_threshold=40)
    assert limits.failed(Usage(cpu=80, mem=20, rss=1)) == {"over_cpu", "over_memory", "over_health"}
    assert limits.failed(Usage(cpu=1, mem=1, rss=1)) == {"under_cpu"}
    assert Limits().failed(Usage(cpu=10, mem=10, rss=2**40)) == set()   # 0.19's defaults


def test_resource_watcher_options_are_checked_when_it_is_built():
    with pytest.raises(PluginConfigError, match="'watcher' is required"):
        ResourceWatcher(EP, PUB, 5)
    assert ResourceWatcher(EP, PUB, 5, service="web").watcher == "web"      # 0.19's old name
    with pytest.raises(PluginConfigError, match="max_mem"):
        ResourceWatcher(EP, PUB, 5, watcher="w", max_mem="lots")
    with pytest.raises(PluginConfigError, match="child_signal"):
        ResourceWatcher(EP, PUB, 5, watcher="w", child_signal="SIGNOPE")
    rw = ResourceWatcher(EP, PUB, 5, watcher="w", child_signal="hup", max_mem="1G", loop_rate="2")
    assert (rw.child_signal, rw.limits.max_mem, rw.loop_rate) == (1, Amount(2**30, True), 2.0)
    rw.statsd.stop()


def test_counters_count_consecutive_failures_and_a_pass_resets_them():
    c = Counters()
    for _ in range(3):
        c.record("w", {"over_cpu"})
    assert c.exceeded("w", 3) == []
    c.record("w", {"over_cpu", "over_memory"})
    assert c.exceeded("w", 3) == ["over_cpu"]
    c.record("w", set())
    assert c.counts["w"]["over_cpu"] == 0 and c.exceeded("w", 0) == []
    c.record(11, {"over_memory"})
    c.keep([])
    assert c.counts == {}


# -- statsd -----------------------------------------------------------------------------------------

def test_statsd_lines_are_prefixed_sanitized_and_carry_the_sample_rate():
    s = StatsdClient("127.0.0.1", 8125, prefix="circus.app", rng=lambda: 0.0)
    assert s.line("watcher.web.spawn", 1, "c") == "circus.app.watcher.web.spawn:1|c"
    assert s.line("watcher.plugin:fl x.reap", 1, "c", 0.5) == "circus.app.watcher.plugin_fl_x.reap:1|c|@0.5"
    assert s.line("_stats.w.cpu_sum", 12.5, "g") == "circus.app._stats.w.cpu_sum:12.5|g"
    assert s.line("_stats.w.mem_sum", 3.0e9, "g") == "circus.app._stats.w.mem_sum:3000000000|g"
    s.stop()


def test_statsd_sampling_drops_what_the_rate_says():
    with socket_pair() as (server, port):
        rolls = iter([0.9, 0.1])
        s = StatsdClient("127.0.0.1", port, prefix="p", sample_rate=0.5, rng=lambda: next(rolls))
        s.increment("a")          # 0.9 >= 0.5: dropped
        s.increment("b")          # 0.1 < 0.5: sent
        server.settimeout(5)
        assert server.recv(100) == b"p.b:1|c|@0.5"
        s.stop()


def test_statsd_options_and_gauges():
    e = StatsdEmitter(EP, PUB, 5, application_name="shop", port="9125", sample_rate="0.25")
    assert (e.statsd.prefix, e.statsd.address[1], e.statsd.sample_rate) == \
        ("circus.shop.watcher", 9125, 0.25)                      # 0.19's prefix
    e.statsd.stop()
    with pytest.raises(PluginConfigError, match="sample_rate"):
        StatsdEmitter(EP, PUB, 5, sample_rate="2")
    with pytest.raises(PluginConfigError, match="loop_rate"):
        FullStats(EP, PUB, 5, loop_rate="0")
    gauges = watcher_gauges({"1": {"cpu": 10.0, "mem": 1.5, "rss": 1000},
                             "2": {"cpu": 30.0, "mem": 0.5, "rss": "N/A"},
                             "3": "No such process (stopped?)"})
    assert gauges == {"watchers_num": 2, "cpu_max": 30.0, "cpu_sum": 40.0, "mem_pct_max": 1.5,
                      "mem_pct_sum": 2.0, "mem_max": 1000.0, "mem_sum": 1000.0}
    assert watcher_gauges({}) == {"watchers_num": 0}             # 0.19 sends only that one
    assert watcher_gauges({"3": "No such process (stopped?)"}) == {"watchers_num": 0}


# -- flapping ---------------------------------------------------------------------------------------

def test_flapping_detects_reaps_within_the_window_and_gives_up_after_max_retry():
    d, s = FlapDetector(), FlapSettings(attempts=2, window=1.0, max_retry=2)
    assert d.reap("w", 0.0, s) == (Verdict.CALM, 0)
    assert d.reap("w", 0.5, s) == (Verdict.RETRY, 1)
    assert d.reap("w", 10.0, s) == (Verdict.CALM, 0)          # the timeline restarted
    assert d.reap("w", 10.2, s) == (Verdict.RETRY, 2)
    d.reap("w", 20.0, s)
    assert d.reap("w", 20.1, s) == (Verdict.GIVE_UP, 2)
    d.reap("w", 30.0, s)
    assert d.reap("w", 30.1, s) == (Verdict.RETRY, 1)          # counting starts over


def test_reaps_farther_apart_than_the_window_end_a_series_of_rounds():
    d, s = FlapDetector(), FlapSettings(attempts=2, window=1.0, max_retry=1)
    d.reap("w", 0.0, s)
    assert d.reap("w", 0.1, s)[0] is Verdict.RETRY
    d.reap("w", 5.0, s)
    assert d.reap("w", 7.0, s)[0] is Verdict.CALM               # calm: tries reset
    assert d.reap("w", 7.5, s) == (Verdict.RETRY, 1)
    forever = FlapSettings(max_retry=-1)
    for i in range(20):
        d.reap("x", i * 10.0, forever)
        assert d.reap("x", i * 10.0 + 0.1, forever)[0] is Verdict.RETRY


def test_flapping_settings_per_watcher_override_and_bad_ones_are_ignored():
    base = FlapSettings.from_config({"attempts": "3", "retry_in": "0.5"}, "plugin flapping")
    assert base == FlapSettings(attempts=3, window=1.0, retry_in=0.5, max_retry=5)
    own = base.for_watcher({"flapping.max_retry": 1, "flapping.window": "2.5", "cmd": "x"}, "w")
    assert own == FlapSettings(attempts=3, window=2.5, retry_in=0.5, max_retry=1)
    assert base.for_watcher({"flapping.attempts": "zero"}, "w") == base
    assert base.active and not base.for_watcher({"flapping.active": "False"}, "w").active
    assert base.for_watcher({"flapping.active": "maybe"}, "w") == base
    with pytest.raises(PluginConfigError, match="max_retry"):
        FlapSettings.from_config({"max_retry": "-2"}, "plugin flapping")


# -- watchdog, command reloader ---------------------------------------------------------------------

def test_watchdog_options():
    with pytest.raises(PluginConfigError, match="pid"):
        WatchDog(EP, PUB, 5, msg_regex="^(.*);(.*)$")
    with pytest.raises(PluginConfigError, match="watchers_regex"):
        WatchDog(EP, PUB, 5, watchers_regex="(")
    w = WatchDog(EP, PUB, 5, loop_rate="2", max_count="4", watchers_regex="web")
    assert w.silence_limit == 8.0 and (w.ip, w.port) == ("127.0.0.1", 1664)
    assert w.watches("web-2") and not w.watches("api") and not w.watches("plugin:web")
    assert is_exempt("circusd-stats") and not is_exempt("web")


def test_the_program_of_a_command_with_arguments_is_resolved(tmp_path):
    script = tmp_path / "bin" / "worker.sh"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    link = tmp_path / "current"
    link.symlink_to(script)
    assert resolve_program("worker.sh --port 80", None, str(script.parent)) == str(script)
    assert resolve_program("./bin/worker.sh 'a b'", str(tmp_path)) == str(script)
    assert resolve_program(f"{link} 1 2", "/") == str(script)
    assert resolve_program("no-such-program-here x", None, str(tmp_path)) is None
    assert resolve_program("", None) is None
    state = program_state({"cmd": "worker.sh 30", "env": {"PATH": str(script.parent)}})
    assert state == (str(script), os.stat(script).st_mtime_ns)
    assert program_state({"cmd": "worker.sh 30", "env": {"PATH": "/nonexistent"}}) is None


# -- the base class ---------------------------------------------------------------------------------

def test_split_data_keeps_dotted_and_plugin_watcher_names():
    p = CircusPlugin(EP, PUB, 5)
    assert p.split_data((b"watcher.web.reap", b'{"process_pid": 3}')) == ("web", "reap", {"process_pid": 3})
    assert p.split_data((b"watcher.api.v2.spawn", b"{}"))[:2] == ("api.v2", "spawn")
    assert p.split_data((b"watcher.plugin:fl.kill", b"{}"))[0] == "plugin:fl"
    assert p.load_message({"a": 1}) == {"a": 1}          # 0.19 code re-loading a dict still works
    with pytest.raises(ValueError):
        p.split_data((b"watcher.x", b"{}"))
    with pytest.raises(ValueError):
        p.load_message(b"[1]")


def test_config_values_are_strings_and_active_false_does_not_start():
    p = CircusPlugin(EP, PUB, "2.5", name="mine", active=False, loop_rate=3)
    assert p.config == {"name": "mine", "active": "False", "loop_rate": "3"}
    assert (p.name, p.check_delay, p.active) == ("mine", 2.5, False)
    p.start()                                # returns at once: no loop, no sockets
    assert p.loop is None
    with pytest.raises(PluginConfigError, match="active"):
        CircusPlugin(EP, PUB, 5, active="maybe")


def test_every_needs_the_running_plugin():
    with pytest.raises(PluginError, match="running loop"):
        CircusPlugin(EP, PUB, 5).every(1, lambda: None)


def test_call_has_a_deadline_and_says_what_did_not_answer(tmp_path):
    p = CircusPlugin(f"ipc://{tmp_path}/nobody.sock", PUB, 5, name="mine")
    started = time.monotonic()
    with pytest.raises(CallTimeout, match=r"plugin mine: circusd at ipc://.*nobody.sock did not "
                                          r"answer 'list' within 0.2 s"):
        p.call("list", timeout=0.2)
    assert time.monotonic() - started < 2
    p.stop()


class Recorder(CircusPlugin):
    """Raises on 'boom' events, records the others; ticks with every(), the second tick raises;
    stops at the first tick after 'last' (from the third on)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.seen: list[tuple[str, str, dict]] = []
        self.ticks = 0
        self.stopped = False
        self.got_boom = threading.Event()

    def handle_init(self):
        self.every(0.01, self.tick)

    def tick(self):
        self.ticks += 1
        if self.ticks == 2:
            raise RuntimeError("a failing tick")
        if self.ticks > 2 and self.seen and self.seen[-1][1] == "last":
            self.stop()             # ticks went on after a tick failed

    async def handle_recv(self, data):
        watcher, action, msg = self.split_data(data)
        if action == "boom":
            self.got_boom.set()
            raise RuntimeError("boom")
        self.seen.append((watcher, action, msg))

    def handle_stop(self):
        self.stopped = True


def test_a_raising_handler_is_logged_and_the_plugin_goes_on(tmp_path, caplog):
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.linger = 0
    pub.bind(f"ipc://{tmp_path}/p.sock")
    plugin = Recorder(EP, f"ipc://{tmp_path}/p.sock", 5, name="rec")
    thread = threading.Thread(target=plugin.start)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not plugin.got_boom.is_set():       # until the subscription has propagated
            assert time.monotonic() < deadline, "the plugin never got an event"
            pub.send_multipart([b"watcher.w.boom", b"{}"])
            pub.send_multipart([b"other.w.ignored", b"{}"])
            time.sleep(0.01)
        pub.send_multipart([b"watcher.w.spawn", b'{"process_pid": 7}'])
        pub.send_multipart([b"watcher.w.last", b"{}"])
        thread.join(10)
        assert not thread.is_alive(), "the plugin did not stop"
    finally:
        plugin.stop()
        thread.join(10)
        pub.close()
        ctx.term()
    assert plugin.seen == [("w", "spawn", {"process_pid": 7}), ("w", "last", {})]
    assert plugin.stopped and plugin.ticks >= 3 and not plugin.running
    assert "handle_recv failed on b'watcher.w.boom'" in caplog.text
    assert "a failing tick" in caplog.text


@pytest.mark.skipif(importlib.util.find_spec("tornado") is None, reason="tornado not installed")
def test_a_tornado_periodic_callback_runs_on_the_plugins_loop(tmp_path):
    from tornado.ioloop import PeriodicCallback

    class Old(CircusPlugin):
        calls = 0

        def handle_init(self):
            self.pc = PeriodicCallback(self.tick, 10)
            self.pc.start()

        def tick(self):
            self.calls += 1
            if self.calls == 3:
                self.pc.stop()
                self.stop()

        def handle_recv(self, data):
            pass

    plugin = Old(EP, f"ipc://{tmp_path}/p.sock", 5)
    thread = threading.Thread(target=plugin.start)
    thread.start()
    thread.join(10)
    assert not thread.is_alive() and plugin.calls == 3


# -- circus-plugin ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fqn,message", [
    ("nosuchmodule.Plugin", "cannot import module 'nosuchmodule'"),
    ("circus.plugins.NoSuch", "has no attribute 'NoSuch'"),
    ("os.path", "not a subclass of circus.plugins.CircusPlugin"),
    ("circus.plugins.options.Amount", "not a subclass"),
    ("Flapping", "not a fully qualified class name"),
])
def test_a_bad_fqn_is_named(fqn, message):
    with pytest.raises(PluginError, match=message):
        load_plugin_class(fqn)
    assert load_plugin_class("circus.plugins.flapping:Flapping").__name__ == "Flapping"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "circus.cli.plugin", *args], capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("args,code,message", [
    (("os.path",), 2, "not a subclass"),
    (("--ssh", "me@host", "circus.plugins.flapping.Flapping"), 2, "--ssh is not supported"),
    (("--config", "broken", "circus.plugins.flapping.Flapping"), 2, "key:value"),
    (("circus.plugins.resource_watcher.ResourceWatcher",), 2, "'watcher' is required"),
    (("--config", "name:x:::active:false", "circus.plugins.flapping.Flapping"), 0, "active = false"),
])
def test_circus_plugin_exit_codes(args, code, message):
    r = run_cli(*args)
    assert r.returncode == code, r.stdout + r.stderr
    assert message in r.stdout + r.stderr


class socket_pair:
    """A UDP server socket on 127.0.0.1, port 0: ``with socket_pair() as (sock, port)``."""

    def __enter__(self):
        import socket
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        return self.sock, self.sock.getsockname()[1]

    def __exit__(self, *exc):
        self.sock.close()



@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP"])
def test_circus_plugin_stops_cleanly_on_a_signal(tmp_path, sig):
    log = tmp_path / "plugin.log"
    proc = subprocess.Popen([sys.executable, "-m", "circus.cli.plugin", "--endpoint",
                             f"ipc://{tmp_path}/c.sock", "--pubsub", f"ipc://{tmp_path}/p.sock",
                             "--config", "name:sig:::loop_rate:0.05", "--log-level", "debug",
                             "--log-output", str(log), "circus.plugins.statsd.FullStats"],
                            stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while "plugin sig (circus.plugins.statsd.FullStats) starting" not in (
                log.read_text() if log.exists() else ""):
            assert proc.poll() is None, "circus-plugin exited early"
            assert time.monotonic() < deadline, "circus-plugin did not start"
            time.sleep(0.01)
        proc.send_signal(getattr(signal, sig))
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = log.read_text()
    assert f"{sig} received, stopping" in text and "plugin sig stopped" in text


def test_a_plugin_that_cannot_start_exits_1_with_the_reason(tmp_path):
    with socket_pair() as (taken, port):
        r = run_cli("--endpoint", f"ipc://{tmp_path}/c.sock", "--pubsub", f"ipc://{tmp_path}/p.sock",
                    "--config", f"port:{port}", "circus.plugins.watchdog.WatchDog")
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"cannot listen for heartbeats on 127.0.0.1:{port}" in r.stdout


# -- the observers' pure parts ----------------------------------------------------------------------

def test_redis_urls_as_redis_py_reads_them():
    from circus.plugins.redis_info import RedisTarget, parse_url
    assert parse_url("redis://localhost:6379/0") == RedisTarget()
    assert parse_url("redis://:pw@10.0.0.1/4") == RedisTarget(host="10.0.0.1", db=4, password="pw")
    assert parse_url("rediss://me:p%40ss@cache:6380") == RedisTarget(
        host="cache", port=6380, username="me", password="p@ss", tls=True)
    assert parse_url("unix:///run/redis.sock?db=2&password=x") == RedisTarget(
        path="/run/redis.sock", db=2, password="x")
    for bad, word in (("http://x/", "redis://"), ("redis://x/zero", "not a number"),
                      ("redis://x:99999/", "port"), ("unix://", "no socket path")):
        with pytest.raises(ValueError, match=word):
            parse_url(bad)


def test_redis_info_and_commands():
    from circus.plugins.redis_info import encode_command, parse_info
    text = "# Server\r\nredis_version:7.0.15\r\nuptime_in_seconds:12\r\n\r\n# Memory\r\n" \
           "mem_fragmentation_ratio:1.25\r\ndb0:keys=1,expires=0\r\n"
    assert parse_info(text) == {"redis_version": "7.0.15", "uptime_in_seconds": 12,
                                "mem_fragmentation_ratio": 1.25, "db0": "keys=1,expires=0"}
    assert encode_command("AUTH", "pw") == b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n"


def test_observers_read_019s_options():
    from circus.plugins.http_observer import HttpObserver
    from circus.plugins.redis_observer import RedisObserver
    h = HttpObserver(EP, PUB, 5)
    assert (h.check_url, h.request_timeout, h.restart_on_error, h.loop_rate) == \
        ("http://localhost/", 10.0, None, 60.0)
    assert h.statsd.prefix == "circus.http_observer.watcher"      # 0.19's default_app_name
    h.handle_stop()
    r = RedisObserver(EP, PUB, 5, restart_on_timeout="cache", application_name="x")
    assert (str(r.target), r.redis_timeout, r.restart_on_timeout) == ("localhost:6379", 5.0, "cache")
    assert r.statsd.prefix == "circus.x.watcher"
    r.handle_stop()
    assert RedisObserver(EP, PUB, 5, restart_on_error="db").restart_on_timeout == "db"
    with pytest.raises(PluginConfigError, match="redis_url"):
        RedisObserver(EP, PUB, 5, redis_url="localhost:6379")
