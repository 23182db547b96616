"""Tier 3: circus-web 1.0.0 (the 0.19-era dashboard, ``circushttpd``) against our circusd, with
Circus 0.19.0's circusd as the control, driven in headless Chromium.

circus-web 1.0.0 is Python 2 code and runs on no Circus unchanged. The venv built here (outside
the repository, tests/pyenvs.py) holds circus-web 1.0.0 and what it needs (tornado 4.5.3,
TornadIO2 0.0.4, tomako, Mako, pyzmq, and Circus 0.19.0's library, which circus-web imports),
made to run on Python 3 by :data:`EDITS` below (str/bytes, ``iteritems``, ``b64encode``, the
cookie, tornado 4.5's ``get_arguments``), 2to3 on TornadIO2 with three fixes (its event table,
its session ordering, its session key), and two shims: ``collections`` aliases for tornado 4.5 and
a ``circus/py3compat.py`` for circus-web's one import of it. Nothing of the protocol is touched.

The same scenario runs on both daemons: connect with the form, the index and its live charts
(stats pushed over socket.io from the ``stat.`` subscription), a watcher's page and its
per-process live charts, the sockets page, and the buttons: incr, decr, kill a process, stop and
start, reload the configuration. The flash messages and effects must be the same.
"""
from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import zmq

import webdriver
from conftest import Raw, proc_alive, proc_children
from pyenvs import cached_venv
from test_compat_circus019 import circus019  # noqa: F401  (the fixture: a 0.19 venv)

pytestmark = [pytest.mark.real, pytest.mark.slow]

REQUIREMENTS = ("tornado==4.5.3 Mako==1.4.3 MarkupSafe==3.0.4 six==1.17.0 pyzmq==27.3.0 "
                "psutil==7.2.2",
                "--no-deps circus==0.19.0 circus-web==1.0.0 tomako==0.1.0.post1 tornadio2==0.0.4")

#: (file under site-packages, text, replacement): the Python 3 patch, each text found once
EDITS = [
    ("circusweb/client.py", "socket.setsockopt(zmq.IDENTITY, uuid.uuid4().hex)",
     "socket.setsockopt(zmq.IDENTITY, uuid.uuid4().hex.encode())"),
    ("circusweb/client.py", "            socket.send(cmd)\n", "            socket.send(cmd.encode())\n"),
    ("circusweb/stats_client.py", "setsockopt(zmq.SUBSCRIBE, topic)",
     "setsockopt(zmq.SUBSCRIBE, topic.encode())"),
    ("circusweb/stats_client.py", "        topic = topic.split('.')",
     "        topic = topic.decode().split('.')"),
    ("circusweb/namespace.py", "from base64 import b64encode, b64decode\n",
     "from base64 import b64encode as _b64e, b64decode as _b64d\n\n\n"
     "def b64encode(text):\n    return _b64e(text.encode()).decode()\n\n\n"
     "def b64decode(text):\n    return _b64d(text).decode()\n"),
    ("circusweb/circushttpd.py", "from base64 import b64encode, b64decode\n",
     "from circusweb.namespace import b64encode, b64decode\n"),
    ("circusweb/circushttpd.py", "        session_id = self.get_secure_cookie('session_id')\n",
     "        session_id = self.get_secure_cookie('session_id')\n"
     "        session_id = session_id.decode() if session_id else None\n"),
    ("circusweb/circushttpd.py", "self.get_arguments('endpoint_list', [])",
     "self.get_arguments('endpoint_list')"),
    ("circusweb/circushttpd.py", "self.get_arguments('endpoint_direct', [])",
     "self.get_arguments('endpoint_direct')"),
    ("circusweb/circushttpd.py", "            raise StopIteration()\n", "            return\n"),
    ("circusweb/circushttpd.py",
     "kwargs=dict((k, v[0]) for k, v in\n                        self.request.arguments.iteritems()),",
     "kwargs=dict((k, v[0].decode()) for k, v in\n                        self.request.arguments.items()),"),
    ("circusweb/templates/index.html", "${dumps(endpoints.values())}",
     "${dumps(list(endpoints.values()))}"),
    ("circusweb/templates/sockets.html", "${dumps(sockets.keys())}", "${dumps(list(sockets.keys()))}"),
    ("tornadio2/sessioncontainer.py", "i.update('%s%s' % (random(), time()))",
     "i.update(('%s%s' % (random(), time())).encode())"),
    ("tornadio2/sessioncontainer.py",
     "    def __cmp__(self, other):\n        return cmp(self.expiry_date, other.expiry_date)\n",
     "    def __lt__(self, other):\n        return self.expiry_date < other.expiry_date\n"),
    ("tornadio2/conn.py", "from inspect import ismethod, getmembers\n",
     "from inspect import isfunction, ismethod, getmembers\n"),
    ("tornadio2/conn.py", "is_event = lambda x: ismethod(x) and hasattr(x, '_event_name')",
     "is_event = lambda x: (isfunction(x) or ismethod(x)) and hasattr(x, '_event_name')"),
]

SITECUSTOMIZE = """\
# tornado 4.5 reads these names from collections (gone in Python 3.10)
import collections
import collections.abc
for _name in ("Mapping", "MutableMapping", "MutableSet", "Sequence", "MutableSequence",
              "Callable", "Iterable", "Hashable"):
    setattr(collections, _name, getattr(collections.abc, _name))
"""


def _make_py3(venv: Path) -> None:
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (site / "circus" / "py3compat.py").write_text("string_types = (str,)\n")
    r = subprocess.run([str(venv / "bin" / "python"), "-W", "ignore", "-m", "lib2to3", "-w", "-n",
                        str(site / "tornadio2")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    for rel, old, new in EDITS:
        path = site / rel
        text = path.read_text()
        assert text.count(old) == 1, f"{rel}: {old!r} found {text.count(old)} times"
        path.write_text(text.replace(old, new))


@pytest.fixture(scope="module")
def circusweb() -> Path:
    return cached_venv("circus-web-1.0.0", REQUIREMENTS, then=_make_py3,
                       tag=repr((EDITS, SITECUSTOMIZE)))


@pytest.fixture(scope="module")
def browser():
    try:
        found = webdriver.ensure_browser()
    except webdriver.BrowserUnavailable as exc:
        pytest.fail(f"no browser: {exc}")
    driver = webdriver.Driver.start(found)
    yield driver
    driver.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def url_safe_endpoint() -> str:
    """A tcp endpoint whose base64 has no '/' (circus-web puts it in a URL path segment)."""
    while True:
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        if "/" not in base64.b64encode(endpoint.encode()).decode():
            return endpoint


SERVER = """
import http.server, socket, sys
server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler,
                                bind_and_activate=False)
server.socket.close()
server.socket = socket.socket(fileno=int(sys.argv[1]))
server.serve_forever()
"""

CONFIG = """
[circus]
endpoint = {endpoint}
pubsub_endpoint = tcp://127.0.0.1:{pubsub}
stats_endpoint = tcp://127.0.0.1:{stats}
statsd = true
check_delay = 1

[watcher:sleeper]
cmd = sleep 3600
numprocesses = 2
graceful_timeout = 1

[socket:web]
host = 127.0.0.1
port = {web}

[watcher:web]
cmd = {python} {dir}/server.py $(circus.sockets.web)
use_sockets = true
"""


class Node:
    """A circusd (ours or 0.19's) and a circushttpd of the patched venv in front of it."""

    def __init__(self, side: str, circusd_argv: list[str], web_python: Path, tmp: Path) -> None:
        self.side, self.dir = side, tmp / side
        self.dir.mkdir()
        (self.dir / "server.py").write_text(SERVER)
        self.endpoint = url_safe_endpoint()
        self.web_port, self.socket_port = free_port(), free_port()
        (self.dir / "circus.ini").write_text(textwrap.dedent(CONFIG.format(
            endpoint=self.endpoint, pubsub=free_port(), stats=free_port(), web=self.socket_port,
            python=sys.executable, dir=self.dir)))
        self.argv, self.web_python = circusd_argv, web_python
        self.daemon: subprocess.Popen | None = None
        self.web: subprocess.Popen | None = None
        self.ctx = zmq.Context()
        self.client = Raw(self.ctx, self.endpoint)
        self.url = f"http://127.0.0.1:{self.web_port}"
        self.b64 = base64.b64encode(self.endpoint.encode()).decode()

    def start(self) -> None:
        circusd_argv, web_python = self.argv, self.web_python
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        self.daemon = self._spawn([*circusd_argv, str(self.dir / "circus.ini")], "circusd.log",
                                  env)
        self.wait(lambda: len(self.pids("sleeper")) == 2 and self.pids("web"), "the watchers")
        self.web = self._spawn([str(web_python / "bin" / "python"), "-m", "circusweb.circushttpd",
                                "--host", "127.0.0.1", "--port", str(self.web_port),
                                "--multicast", f"udp://127.0.0.1:{free_port()}"], "web.log", env)
        self.wait(self._web_up, "circushttpd listening")

    def _spawn(self, argv: list[str], log: str, env: dict) -> subprocess.Popen:
        with open(self.dir / log, "wb") as out:
            return subprocess.Popen(argv, cwd=self.dir, env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT)

    def _web_up(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.web_port), timeout=1).close()
            return True
        except OSError:
            return False

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{(self.dir / name).read_text(errors='replace')[-3000:]}"
                         for name in ("circusd.log", "web.log") if (self.dir / name).exists())

    def wait(self, predicate, what: str, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while True:
            for proc in (self.daemon, self.web):
                if proc is not None and proc.poll() is not None:
                    pytest.fail(f"{self.side}: a process exited ({proc.returncode}) waiting for "
                                f"{what}\n{self.logs()}")
            try:
                value = predicate()
            except AssertionError:
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"{self.side}: timed out after {timeout} s waiting for {what}\n"
                            f"{self.logs()}")
            time.sleep(0.05)

    def pids(self, name: str) -> list[int]:
        reply = self.client.call("list", name=name)
        return sorted(reply.get("pids", ()))

    def status(self, name: str) -> str:
        return self.client.call("status", name=name).get("status")

    def stop(self) -> None:
        kids = proc_children(self.daemon.pid) if self.daemon is not None else []
        for proc in (self.web, self.daemon):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        for pid in kids:
            if proc_alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.client.close()
        self.ctx.term()


def metrics(s) -> dict[str, str]:
    return s.execute("var out = {}; document.querySelectorAll('.metric_value, .age-stat')"
                     ".forEach(function (e) { out[e.id] = e.textContent.trim(); }); return out;")


def click(s, css: str) -> None:
    assert s.execute("var e = document.querySelector(arguments[0]); if (!e) return false; "
                     "e.click(); return true;", css), f"no {css} on {s.url}"


def page_text(s) -> str:
    return s.execute("return document.body.innerText;")


def scenario(node: Node, driver) -> dict:
    """What a person sees and does on circus-web in front of ``node``; the flash messages and the
    effects, with pids left out."""
    seen: dict = {"messages": []}
    s = driver.session()
    try:
        s.get(f"{node.url}/connect/")
        s.execute("document.getElementById('endpoint').value = arguments[0]; "
                  "document.getElementById('connector').submit();", node.endpoint)
        s.wait_until(lambda: s.url.rstrip("/") == node.url, 15, "the index after connecting")
        text = page_text(s)
        seen["index"] = all(w in text for w in ("sleeper", "web", "sleep 3600"))
        stats_b64 = next(k for k in metrics(s) if k.startswith("circus-")).split("-", 1)[1] \
            .rsplit("_last_", 1)[0]
        # live charts: circusd's and circusd-stats' numbers arrive over socket.io
        s.wait_until(lambda: (m := metrics(s)).get(f"circus-{stats_b64}_last_age", "")
                     .startswith("(") and m.get(f"circusd-stats-{stats_b64}_last_age", "")
                     .startswith("("), 20, "live stats on the index")
        seen["index_live"] = metrics(s)[f"circus-{stats_b64}_last_cpu"].endswith("%")

        s.get(f"{node.url}/{node.b64}/watcher/sleeper/")
        pids = node.pids("sleeper")
        s.wait_until(lambda: all(metrics(s).get(f"sleeper-{p}-{stats_b64}_last_age", "")
                                 .startswith("(") for p in pids), 20, "per-process live stats")
        seen["watcher_live"] = True

        s.get(f"{node.url}/sockets/")
        seen["sockets"] = f"127.0.0.1:{node.socket_port}" in page_text(s)

        def press(where: str, css: str, message: str, effect) -> None:
            def shown() -> bool:        # circus-web empties its watcher list while it re-reads
                s.get(where)            # it after a command: a page may come without the row
                return s.exists(css)
            s.wait_until(shown, 15, f"{css} on {where}", interval=0.3)
            click(s, css)
            s.wait_until(lambda: message in page_text(s), 15, f"the message {message!r}")
            seen["messages"].append(message)
            node.wait(effect, f"the effect of {message!r}")

        watcher_page = f"{node.url}/{node.b64}/watcher/sleeper/"
        press(watcher_page, "a.add_process", "added one process to the sleeper pool",
              lambda: len(node.pids("sleeper")) == 3)
        press(watcher_page, "a[href*='/process/decr/']", "removed one process from the sleeper pool",
              lambda: len(node.pids("sleeper")) == 2)
        victim = node.pids("sleeper")[0]
        press(watcher_page, f"a[href*='/process/kill/{victim}/']",
              f"process {victim} killed sucessfully",
              lambda: victim not in node.pids("sleeper") and len(node.pids("sleeper")) == 2)
        seen["messages"][-1] = "process PID killed sucessfully"
        press(f"{node.url}/", "a[href*='/watcher/sleeper/switch_status/']", "status switched",
              lambda: node.status("sleeper") == "stopped")
        press(f"{node.url}/", "a[href*='/watcher/sleeper/switch_status/']", "status switched",
              lambda: node.status("sleeper") == "active" and len(node.pids("sleeper")) == 2)
        press(f"{node.url}/", "a.reloadconfig", "reload the configuration",
              lambda: node.status("sleeper") == "active")
        seen["errors"] = "An error happened" in page_text(s)
    finally:
        s.quit()
    return seen


def test_circus_web_1_0_0_works_on_ours_as_on_019(circusweb, circus019, browser, circusd,
                                                  tmp_path):
    results = {}
    for side, argv in (("0.19", [str(circus019 / "bin" / "circusd")]),
                       ("ours", [sys.executable, "-m", "circus.cli.circusd"])):
        node = Node(side, argv, circusweb, tmp_path)
        try:
            node.start()
            results[side] = scenario(node, browser)
        except BaseException:
            print(node.logs(), file=sys.stderr)
            raise
        finally:
            node.stop()
    expected = {"index": True, "index_live": True, "watcher_live": True, "sockets": True,
                "errors": False,
                "messages": ["added one process to the sleeper pool",
                             "removed one process from the sleeper pool",
                             "process PID killed sucessfully", "status switched",
                             "status switched", "reload the configuration"]}
    assert results["0.19"] == expected
    assert results["ours"] == results["0.19"]
