"""Every example runs as its header says: the ``$ COMMAND`` lines of each file's header are read,
checked to be the ones this test knows, and run as written, from the root of a copy of the
examples in a network namespace of its own (``examplebox.py``), each to what the header
promises: the watchers active (or completed), the commands answering, no request lost where a
header says so, and nothing left running once it was stopped as the header says (Ctrl-C: SIGINT
to the foreground job). The pool, the CURVE pool and the systemd unit: test_examples_pool.py.
"""
from __future__ import annotations

import json
import re
import signal
import subprocess

import pytest

from conftest import ROOT
from examplebox import Sandbox, header

pytestmark = [pytest.mark.real, pytest.mark.slow]

EXAMPLES = ROOT / "examples"
#: every file of examples/ and the test that runs it (a new example needs one)
COVERED = {
    "demo.ini": "test_demo", "dependencies.ini": "test_dependencies", "stats.ini": "test_stats",
    "streams.ini": "test_streams", "tools.ini": "test_tools", "upgrade.ini": "test_upgrade",
    "zero-downtime.ini": "test_zero_downtime", "plugins.ini": "test_plugins",
    "web.ini": "test_web", "notifications.ini": "test_notifications",
    "circus-0.19.ini": "test_circus_019", "conf.d/worker.ini": "test_circus_019",
    "apphooks.py": "test_circus_019", "webapp.py": "test_zero_downtime",
    "heartbeat.py": "test_plugins", "logs/.gitignore": "test_streams",
    "pool.ini": "test_examples_pool.py::test_the_pool_quick_start",
    "pool/web1.ini": "test_examples_pool.py::test_the_pool_quick_start",
    "pool/web2.ini": "test_examples_pool.py::test_the_pool_quick_start",
    "pool/batch1.ini": "test_examples_pool.py::test_the_pool_quick_start",
    "pool/run.sh": "test_examples_pool.py::test_the_pool_quick_start",
    "curve-pool/README.rst": "test_examples_pool.py::test_the_curve_pool_readme",
    "curve-pool/make-keys.sh": "test_examples_pool.py::test_the_curve_pool_readme",
    "curve-pool/node1.ini": "test_examples_pool.py::test_the_curve_pool_readme",
    "curve-pool/node2.ini": "test_examples_pool.py::test_the_curve_pool_readme",
    "curve-pool/pool.ini": "test_examples_pool.py::test_the_curve_pool_readme",
    "curve-pool/pool-readonly.ini": "test_examples_pool.py::test_the_curve_pool_readme",
    "curve-pool/.gitignore": "test_examples_pool.py::test_the_curve_pool_readme",
    "circusd.service": "test_examples_pool.py::test_the_systemd_unit_reloads_the_configuration",
    "circusd.socket": "test_docs_examples.py (loads; socket activation: test_sockets_real.py)",
}


def test_every_example_is_run_by_a_test():
    tracked = subprocess.run(["git", "ls-files", "examples"], cwd=ROOT, capture_output=True,
                             text=True, timeout=30).stdout.split()
    files = {p[len("examples/"):] for p in tracked} | {
        str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob("*")
        if p.is_file() and not subprocess.run(["git", "check-ignore", "-q", str(p)], cwd=ROOT,
                                              timeout=30).returncode == 0}
    assert files == set(COVERED)


@pytest.fixture
def sb(tmp_path):
    box = Sandbox(tmp_path)
    yield box
    box.close()             # kills what a failed test left; a passing one checked there is none


def stopped_with_ctrl_c(sb: Sandbox, daemon: subprocess.Popen) -> str:
    """Ctrl-C the foreground circusd: exit 0 and nothing of it left; its log."""
    assert sb.interrupt(daemon) == 0, sb.output(daemon)[-3000:]
    log = sb.output(daemon)
    assert "circusd stopped" in log
    assert sb.leftovers() == []
    return log


def test_demo(sb):
    assert header(EXAMPLES / "demo.ini") == [
        "make run", ".venv/bin/circusctl status", ".venv/bin/circus-top"]
    make, ctl, top = header(EXAMPLES / "demo.ini")
    recipe = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, env={"PATH": sb.env["PATH"]})
    assert recipe.returncode == 0, recipe.stderr
    assert recipe.stdout.splitlines()[-1] == ".venv/bin/circusd examples/demo.ini"  # make run's
    daemon = sb.spawn(recipe.stdout.splitlines()[-1])
    sb.wait_states({"sleepers": "active", "ticker": "active", "circusd-stats": "active"}, (daemon,))
    r = sb.run(ctl)
    assert r.returncode == 0, r.stderr
    assert "sleepers: active" in r.stdout and "ticker: active" in r.stdout
    # "kill one with kill -9 and watch it come back at once"
    pids = sb.wait(lambda: (lambda p: p if len(p) == 3 else None)(sb.pids("sleepers")),
                   "3 sleepers", alive=(daemon,))
    sb.run(f"kill -9 {pids[0]}")
    sb.wait(lambda: (lambda p: len(p) == 3 and pids[0] not in p)(sb.pids("sleepers")),
            "the killed sleeper replaced", timeout=10, alive=(daemon,))
    screen = sb.screen(top)
    try:
        screen.shows("sleepers (3)", "ticker (1)", "demo")
        screen.type(b"q")
        assert screen.exit_code() == 0
    finally:
        screen.close()
    # the crasher keeps retrying without hurting the others
    assert sb.statuses()["crasher"] not in ("fatal", "stopped")
    assert "crasher: giving up" in sb.output(daemon)
    stopped_with_ctrl_c(sb, daemon)


def test_dependencies(sb):
    assert header(EXAMPLES / "dependencies.ini") == [
        ".venv/bin/circusd examples/dependencies.ini", ".venv/bin/circusctl status"]
    start, ctl = header(EXAMPLES / "dependencies.ini")
    daemon = sb.spawn(start)
    sb.wait_states({"db": "active", "migrate": "stopped", "app": "active"}, (daemon,))
    r = sb.run(ctl)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["app: active", "db: active",
                                     "migrate: stopped (all processes exited)"]
    log = sb.output(daemon)
    assert log.index("db: process") < log.index("migrate: starting") < log.index("app: starting")
    assert "migrate: process" in log and "exit code 0" in log        # it completed
    log = stopped_with_ctrl_c(sb, daemon)
    assert log.index("app: stopped") < log.index("db: stopping")


def test_stats(sb):
    assert header(EXAMPLES / "stats.ini") == [
        ".venv/bin/circusd examples/stats.ini", ".venv/bin/circus-top",
        ".venv/bin/circus-top --once", "curl -s http://127.0.0.1:9101/metrics"]
    start, top, once, curl = header(EXAMPLES / "stats.ini")
    daemon = sb.spawn(start)
    sb.wait_states({"web": "active", "cache": "active", "circusd-stats": "active"}, (daemon,))
    screen = sb.screen(top)
    try:
        screen.shows("stats-demo", "web (2)", "cache (1)")
        screen.type(b"q")
        assert screen.exit_code() == 0
    finally:
        screen.close()
    r = sb.run(once)
    assert r.returncode == 0, r.stderr
    assert "cache (1)" in r.stdout and "web (2)" in r.stdout
    metrics = sb.wait(lambda: (lambda r: r.returncode == 0 and 'watcher="web"} 2.0' in r.stdout
                               and r.stdout)(sb.run(curl)), "/metrics", alive=(daemon,))
    assert 'circus_watcher_processes{node="stats-demo",watcher="web"} 2.0' in metrics
    stopped_with_ctrl_c(sb, daemon)


def test_streams(sb):
    assert header(EXAMPLES / "streams.ini") == [
        ".venv/bin/circusd examples/streams.ini", ".venv/bin/circusctl tail worker --follow",
        ".venv/bin/circusctl reopen"]
    start, tail, reopen = header(EXAMPLES / "streams.ini")
    logs = sb.dir / "examples" / "logs"
    daemon = sb.spawn(start)
    sb.wait_states({"web": "active", "worker": "active", "container-style": "active",
                    "dev": "active"}, (daemon,))
    sb.wait(lambda: b"tick 1\n" in (logs / "worker.log").read_bytes(), "two ticks", alive=(daemon,))
    web_out = sb.wait(lambda: (logs / "web.out.log").read_text(), "web's first line", alive=(daemon,))
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[\d+\] \| ready\n", web_out), web_out
    follower = sb.spawn(tail)
    sb.wait(lambda: len(re.findall(r"stdout \| tick \d+", sb.output(follower))) >= 2,
            "tail --follow printing ticks", alive=(follower,))
    assert sb.interrupt(follower) == 0, sb.output(follower)
    (logs / "worker.log").rename(logs / "worker.log.1")       # what logrotate does, then:
    r = sb.run(reopen)
    assert r.returncode == 0, r.stderr
    sb.wait(lambda: (logs / "worker.log").exists() and b"tick" in (logs / "worker.log").read_bytes(),
            "ticks in the new worker.log", alive=(daemon,))
    out = sb.output(daemon)
    warn = next(json.loads(line) for line in out.splitlines() if line.startswith("{"))
    assert (warn["watcher"], warn["stream"], warn["line"]) == ("container-style", "stderr", "warn 0")
    assert "\x1b[36m" in out and "hello 0" in out
    stopped_with_ctrl_c(sb, daemon)


def test_tools(sb):
    assert header(EXAMPLES / "tools.ini") == [
        ".venv/bin/circusd examples/tools.ini", ".venv/bin/circusctl tools",
        ".venv/bin/circusctl tool disk-usage", ".venv/bin/circusctl tool processes",
        ".venv/bin/circusctl tool rotate-keys api"]
    start, tools, du, ps, rotate = header(EXAMPLES / "tools.ini")
    daemon = sb.spawn(start)
    sb.wait_states({"web": "active"}, (daemon,))
    r = sb.run(tools)
    assert r.returncode == 0, r.stderr
    assert [line.split()[0] for line in r.stdout.splitlines()] == [
        "disk-usage", "processes", "rotate-keys"], r.stdout
    r = sb.run(du)
    assert r.returncode == 0 and r.stdout.rstrip().endswith("\t."), r.stdout + r.stderr
    r = sb.run(ps)
    assert r.returncode == 0 and r.stdout.split()[:4] == ["PID", "ELAPSED", "RSS", "COMMAND"], r.stdout
    r = sb.run(rotate)
    assert r.returncode == 0 and r.stdout.startswith("rotating api keys at "), r.stdout + r.stderr
    r = sb.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8090/")
    assert r.stdout == "200"
    stopped_with_ctrl_c(sb, daemon)


def _counting(sb: Sandbox, loop: subprocess.Popen, more: int, what: str) -> None:
    """Wait until the curl loop made ``more`` more requests."""
    start = len(sb.curl_exits())
    sb.wait(lambda: len(sb.curl_exits()) >= start + more, what, alive=(loop,))


def test_upgrade(sb):
    assert header(EXAMPLES / "upgrade.ini") == [
        ".venv/bin/circusd examples/upgrade.ini",
        "while true; do curl -s http://127.0.0.1:8000/; done",
        ".venv/bin/circusctl quit --keep", ".venv/bin/circusd examples/upgrade.ini"]
    start, loop_cmd, quit_keep, again = header(EXAMPLES / "upgrade.ini")
    daemon = sb.spawn(start)
    sb.wait_states({"web": "active"}, (daemon,))
    first = sb.pids("web")
    assert len(first) == 2
    loop = sb.spawn(loop_cmd)
    _counting(sb, loop, 5, "requests served")
    r = sb.run(quit_keep)
    assert r.returncode == 0, r.stderr
    assert daemon.wait(30) == 0
    _counting(sb, loop, 10, "requests served while no circusd runs")
    daemon = sb.spawn(again)
    sb.wait_states({"web": "active"}, (daemon,))
    assert sb.pids("web") == first                           # re-adopted: the same pids
    assert "adopted process" in sb.output(daemon)
    _counting(sb, loop, 5, "requests served by the new circusd's workers")
    sb.interrupt(loop, sig=signal.SIGTERM)
    exits = sb.curl_exits()
    assert exits and set(exits) <= {0, 143}, exits          # 143: the one the loop's end cut
    assert exits.count(0) >= 20 and exits[:-1].count(143) == 0, exits
    stopped_with_ctrl_c(sb, daemon)


def test_zero_downtime(sb):
    assert header(EXAMPLES / "zero-downtime.ini") == [
        ".venv/bin/circusd examples/zero-downtime.ini",
        "while true; do curl -s http://127.0.0.1:8000/; done",
        ".venv/bin/circusctl restart web --graceful --batch 1"]
    start, loop_cmd, restart = header(EXAMPLES / "zero-downtime.ini")
    daemon = sb.spawn(start)
    sb.wait_states({"web": "active"}, (daemon,))
    old = sb.wait(lambda: (lambda p: p if len(p) == 4 else None)(sb.pids("web")), "4 workers",
                  alive=(daemon,))
    loop = sb.spawn(loop_cmd)
    _counting(sb, loop, 5, "requests served")
    before = len(sb.curl_exits())
    r = sb.run(restart)
    assert r.returncode == 0, r.stderr
    sb.wait(lambda: (lambda p: len(p) == 4 and not set(p) & set(old))(sb.pids("web")),
            "4 new workers", timeout=90, alive=(daemon,))
    _counting(sb, loop, 5, "requests served by the new workers")
    sb.interrupt(loop, sig=signal.SIGTERM)
    exits = sb.curl_exits()
    during = exits[before:-1]
    assert len(during) >= 10 and set(during) == {0}, exits      # no request failed
    assert "hello from worker" in sb.output(loop)
    assert "web: rolling restart 4/4" in sb.output(daemon)
    stopped_with_ctrl_c(sb, daemon)


def test_plugins(sb):
    assert header(EXAMPLES / "plugins.ini") == [
        ".venv/bin/circusd examples/plugins.ini", ".venv/bin/circusctl status"]
    start, ctl = header(EXAMPLES / "plugins.ini")
    daemon = sb.spawn(start)
    plugins = ("plugin:statsd", "plugin:memory", "plugin:heartbeat", "plugin:flapping")
    sb.wait_states({"worker": "active", **{p: "active" for p in plugins}}, (daemon,))
    sb.wait(lambda: len(sb.pids("worker")) == 2, "2 workers", alive=(daemon,))
    r = sb.run(ctl)
    assert r.returncode == 0, r.stderr
    assert {f"{p}: active" for p in (*plugins, "worker")} <= set(r.stdout.splitlines()), r.stdout
    stopped_with_ctrl_c(sb, daemon)


def test_web(sb):
    assert header(EXAMPLES / "web.ini") == [
        ".venv/bin/circushttpd adduser admin --role admin --users examples/circushttpd.users",
        ".venv/bin/circusd examples/web.ini"]
    adduser, start = header(EXAMPLES / "web.ini")
    screen = sb.screen(adduser)                                  # it asks for the password
    try:
        screen.shows("Password:")
        screen.type(b"correct horse battery\n")
        screen.shows("Again:")
        screen.type(b"correct horse battery\n")
        assert screen.exit_code() == 0, screen.vt.text()
    finally:
        screen.close()
    daemon = sb.spawn(start)
    sb.wait_states({"web": "active", "ticker": "active", "circushttpd": "active"}, (daemon,))
    page = sb.wait(lambda: (lambda r: r.returncode == 0 and 'id="login-form"' in r.stdout
                            and r.stdout)(sb.run("curl -sL http://127.0.0.1:8080/")),
                   "the dashboard's login page", alive=(daemon,))
    assert "circushttpd" in page or "login" in page
    token = sb.run(".venv/bin/circushttpd token admin --users examples/circushttpd.users")
    assert token.returncode == 0, token.stderr
    r = sb.run(f"curl -s -H 'Authorization: Bearer {token.stdout.strip()}' "
               f"http://127.0.0.1:8080/api/status")
    assert '"web"' in r.stdout and '"ticker"' in r.stdout, r.stdout
    made = [sb.dir / "examples" / "circushttpd.users", sb.dir / "examples" / "circushttpd.secret"]
    assert all(p.exists() for p in made)
    ignored = subprocess.run(["git", "check-ignore", *(f"examples/{p.name}" for p in made)],
                             cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert ignored.stdout.split() == [f"examples/{p.name}" for p in made]     # git ignores them
    stopped_with_ctrl_c(sb, daemon)


def test_notifications(sb):
    assert header(EXAMPLES / "notifications.ini") == [
        ".venv/bin/circusd --check-config examples/notifications.ini",
        ".venv/bin/circusd examples/notifications.ini"]
    check, start = header(EXAMPLES / "notifications.ini")
    r = sb.run(check)
    assert r.returncode == 0, r.stderr
    assert all(name in r.stdout for name in ("ops-mail", "errors", "pager")), r.stdout
    daemon = sb.spawn(start)
    sb.wait_states({"api": "active", "worker": "active"}, (daemon,))
    assert len(sb.pids("api")) == 2                              # two processes, one port
    r = sb.run("curl -s http://127.0.0.1:8080/")
    assert r.stdout.startswith("hello from worker"), r.stdout + r.stderr
    sb.wait(lambda: re.search(r"notify errors: .*hooks\.example\.com", sb.output(daemon)),
            "the errors rule's webhook attempt", timeout=45, alive=(daemon,))
    assert sb.statuses()["api"] == "active"
    stopped_with_ctrl_c(sb, daemon)


def test_circus_019(sb):
    assert header(EXAMPLES / "circus-0.19.ini") == [
        "PYTHONPATH=examples .venv/bin/circusd --check-config examples/circus-0.19.ini",
        "PYTHONPATH=examples .venv/bin/circusd examples/circus-0.19.ini",
        ".venv/bin/circusctl status", "curl -s http://127.0.0.1:8888/"]
    check, start, ctl, curl = header(EXAMPLES / "circus-0.19.ini")
    r = sb.run(check)
    assert r.returncode == 0, r.stderr
    assert "web" in r.stdout and "worker" in r.stdout
    daemon = sb.spawn(start)
    sb.wait_states({"web": "active", "worker": "active"}, (daemon,))
    r = sb.run(ctl)
    assert r.returncode == 0 and {"web: active", "worker: active"} <= set(r.stdout.splitlines())
    r = sb.run(curl)
    assert r.returncode == 0 and r.stdout.startswith("hello from worker"), r.stdout + r.stderr
    log = sb.output(daemon)
    assert "web: before_start hook of examples/apphooks.py" in log, log
    assert "hook_failure" not in log and "failed" not in log.split("web: starting")[-1], log
    out = sb.dir / "examples" / "logs" / "circus-0.19-web.log"
    sb.wait(lambda: out.exists() and out.read_text().count("ready") == 2, "both workers' ready",
            alive=(daemon,))
    assert len(sb.pids("web")) == 2
    stopped_with_ctrl_c(sb, daemon)
