"""Tier 3: plugins other people wrote for Circus 0.19, from PyPI, under a real Circus 0.19.0
circusd (the control, from its own venv) and under ours, with the same configuration file.

Each plugin either does its job on a daemon or it does not; ours must do it exactly where 0.19
does (most of these packages are Python 2 code and fail on 0.19 as well):

- tsuru-circus ``ProcfileWatcher``: runs and stays up (its job is to be there);
- a ``Logger`` as 0.19's writing-plugins docs describe it (written here): every event in a file;
- tsuru-circus ``StatusReporter``: POSTs the unit's status to ``$TSURU_HOST`` — fails on both
  (on 0.19 its 3-argument ``PeriodicCallback`` raises ``TypeError``; on ours it runs, then
  ``dict.iteritems`` raises);
- tsuru-circus ``Stats``: statsd gauges to ``$STATSD_HOST`` — fails on both;
- circus-logstash: its module does not even import on Python 3 (both).

The packages go in a ``pip --target`` directory (tests/pyenvs.py) on both daemons' PYTHONPATH.
"""
from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import pytest
import zmq

from conftest import Raw, proc_alive, proc_children
from pyenvs import cached_target
from test_compat_circus019 import circus019  # noqa: F401  (the fixture: a 0.19 venv)

pytestmark = pytest.mark.real

PACKAGES = ("--no-deps tsuru-circus==0.8.18 circus-logstash==0.0.5", "requests==2.32.3")

LOGGER = '''
"""A plugin that writes every event circusd publishes to the file given as ``filename``."""
from circus.plugins import CircusPlugin


class Logger(CircusPlugin):
    name = "logger"

    def __init__(self, *args, **config):
        super(Logger, self).__init__(*args, **config)
        self.path = config.get("filename")
        self.out = None

    def handle_init(self):
        self.out = open(self.path, "a", buffering=1)

    def handle_stop(self):
        self.out.close()

    def handle_recv(self, data):
        watcher, action, msg = self.split_data(data)
        self.out.write("%s %s::%r\\n" % (action, watcher, self.load_message(msg)))
'''

CONFIG = """
[circus]
endpoint = ipc://{dir}/control.sock
pubsub_endpoint = ipc://{dir}/events.sock
check_delay = 1

[watcher:web]
cmd = sleep 120

[plugin:procfile]
use = tsuru.plugins.ProcfileWatcher

[plugin:logger]
use = rcplugins.logger.Logger
filename = {dir}/events.log

[plugin:status]
use = tsuru.plugins.StatusReporter
loop_rate = 1

[plugin:tsurustats]
use = tsuru.plugins.statsd.Stats
loop_rate = 1
"""


@pytest.fixture(scope="module")
def packages() -> Path:
    return cached_target("thirdparty-plugins", PACKAGES)


class Listeners:
    """What the plugins report to: an HTTP server for tsuru's status, a UDP socket for statsd."""

    def __init__(self) -> None:
        self.posts: list[str] = []
        posts = self.posts

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                posts.append(self.path)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass
        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.settimeout(0.02)
        self.datagrams: list[str] = []

    def read_udp(self) -> list[str]:
        while True:
            try:
                self.datagrams.append(self.udp.recv(65536).decode(errors="replace"))
            except TimeoutError:
                return self.datagrams

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.udp.close()


class Daemon:
    """A circusd (ours, or 0.19's from its venv) on the config in ``directory``, its output in
    ``out.log``; stopped by pid."""

    def __init__(self, argv: list[str], directory: Path, env: dict[str, str]) -> None:
        self.dir = directory
        self.out = directory / "out.log"
        (directory / "circus.ini").write_text(textwrap.dedent(CONFIG.format(dir=directory)))
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen([*argv, str(directory / "circus.ini")], cwd=directory,
                                         env=env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)
        self.ctx = zmq.Context()
        self.client: Raw | None = None

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def call(self, command: str, **props):
        if self.client is None:
            self.client = Raw(self.ctx, f"ipc://{self.dir}/control.sock")
        return self.client.call(command, **props)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        kids = proc_children(self.proc.pid)
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for pid in kids:
            if proc_alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self.client is not None:
            self.client.close()
        self.ctx.term()


def pids(d: Daemon, name: str) -> list[int]:
    reply = d.call("list", name=name)
    return sorted(reply.get("pids", ())) if reply.get("status") == "ok" else []


def test_019_plugins_from_pypi_work_on_ours_exactly_where_they_work_on_019(
        circus019, packages, tmp_path):
    plugins_dir = tmp_path / "mods"
    (plugins_dir / "rcplugins").mkdir(parents=True)
    (plugins_dir / "rcplugins" / "__init__.py").write_text("")
    (plugins_dir / "rcplugins" / "logger.py").write_text(LOGGER)
    listeners = Listeners()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
           "PYTHONPATH": f"{plugins_dir}:{packages}", "PYTHONNOUSERSITE": "1",
           "TSURU_HOST": f"http://127.0.0.1:{listeners.http.server_address[1]}",
           "TSURU_APPNAME": "rcapp", "TSURU_APP_TOKEN": "token",
           "TSURU_METRICS_BACKEND": "statsd", "STATSD_HOST": "127.0.0.1",
           "STATSD_PORT": str(listeners.udp.getsockname()[1])}
    import sys
    daemons = {}
    for side, argv in (("0.19", [str(circus019 / "bin" / "circusd")]),
                       ("ours", [sys.executable, "-m", "circus.cli.circusd"])):
        (tmp_path / side).mkdir()
        daemons[side] = Daemon(argv, tmp_path / side, env)
    try:
        for side, d in daemons.items():
            deadline = time.monotonic() + 20
            while not (pids(d, "web") if (d.dir / "control.sock").exists() else []):
                assert d.alive(), f"{side} circusd exited:\n{d.text()[-3000:]}"
                assert time.monotonic() < deadline, f"{side}: web never ran\n{d.text()[-3000:]}"
                time.sleep(0.05)
        first = {side: pids(d, "plugin:procfile") for side, d in daemons.items()}
        # let every plugin have several rounds (loop_rate = 1) and see a restart of web
        deadline = time.monotonic() + 6
        restarted: set[str] = set()
        while time.monotonic() < deadline:
            for side, d in daemons.items():
                assert d.alive(), f"{side} circusd exited:\n{d.text()[-3000:]}"
                logged = d.dir / "events.log"
                if side not in restarted and logged.exists():
                    assert d.call("restart", name="web")["status"] == "ok"
                    restarted.add(side)
            listeners.read_udp()
            time.sleep(0.1)
        time.sleep(1)                    # the last restart's events reach the logger
        datagrams = listeners.read_udp()
        results = {}
        for side, d in daemons.items():
            logged = d.dir / "events.log"
            events = logged.read_text() if logged.exists() else ""
            procfile = pids(d, "plugin:procfile")
            results[side] = {
                "procfile": bool(procfile) and procfile == first[side] and proc_alive(procfile[0]),
                "logger": "spawn web::" in events and "kill web::" in events,
            }
        # the two failing plugins of each daemon report to the same listeners: nothing came
        assert results["0.19"] == {"procfile": True, "logger": True}, daemons["0.19"].text()[-3000:]
        assert results["ours"] == results["0.19"], daemons["ours"].text()[-3000:]
        assert listeners.posts == [], listeners.posts          # StatusReporter: no report
        assert not any(line.startswith("tsuru.rcapp.") for line in datagrams), datagrams
        # why: 0.19's plugin runner (its circusd discards the plugins' output) says TypeError
        # for both; ours ran StatusReporter, whose report() then fails every round
        for fqn in ("tsuru.plugins.StatusReporter", "tsuru.plugins.statsd.Stats"):
            d = daemons["0.19"]
            r = subprocess.run([str(circus019 / "bin" / "circus-plugin"), "--endpoint",
                                f"ipc://{d.dir}/control.sock", "--pubsub",
                                f"ipc://{d.dir}/events.sock", "--config", "loop_rate:1", fqn],
                               env=env, cwd="/", capture_output=True, text=True, timeout=30)
            assert r.returncode != 0 and "TypeError" in r.stderr, (fqn, r.stderr[-2000:])
        ours = ours_output(daemons["ours"])
        assert "'dict' object has no attribute 'iteritems'" in ours
        assert "TypeError" in ours or "No module named 'circus.util'" in ours   # tsuru Stats
    finally:
        for d in daemons.values():
            d.stop()
        listeners.close()


def ours_output(d: Daemon) -> str:
    """Our circusd's log and what its plugins printed (kept in each watcher's recent lines)."""
    lines = [d.text()]
    for name in ("plugin:status", "plugin:tsurustats"):
        reply = d.call("tail", name=name, lines=200)
        lines.extend(str(line.get("line", line)) for line in reply.get("lines", ()))
    return "\n".join(lines)


@pytest.mark.parametrize("side", ["0.19", "ours"])
def test_circus_logstash_imports_on_neither(circus019, packages, side):
    import sys
    python = str(circus019 / "bin" / "python") if side == "0.19" else sys.executable
    r = subprocess.run([python, "-c", "import circus_logstash.circus_logstash"], cwd="/",
                       env={**os.environ, "PYTHONPATH": str(packages)}, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "SyntaxError" in r.stderr, r.stderr
