"""Tier 2: [tool:NAME] operator tools run by a real circusd, driven by the real circusctl.

Listing, argv exactness (no shell: spaces, ';' and '$(...)' arrive as they were typed), working
directory, exit codes passed through circusctl, the timeout killing the whole process group,
output streamed while the tool runs, and circusd answering other commands meanwhile.
"""
from __future__ import annotations

import json
import re
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from circus.client.sync import CircusClient
from circus.consumer import CircusConsumer

from conftest import proc_alive

pytestmark = pytest.mark.real

ARGV = "import json, os, sys; print(json.dumps({'argv': sys.argv[1:], 'cwd': os.getcwd(), " \
       "'tool': os.environ.get('CIRCUS_TOOL'), 'node': os.environ.get('CIRCUS_NODE'), " \
       "'env': os.environ.get('FROM_ENV')}))"

CONFIG = """
[circus]
endpoint = ipc://{dir}/c.sock
pubsub_endpoint = ipc://{dir}/p.sock
multicast_endpoint =
name = node-t

[env]
FROM_ENV = yes

[watcher:sleeper]
cmd = sleep 60

[tool:show-args]
cmd = {python} {dir}/argv.py --fixed
description = Print the arguments it was given
working_dir = {dir}/work

[tool:fail]
cmd = sh -c "echo oops >&2; echo out; exit 7"
description = Exits 7

[tool:signaled]
cmd = sh -c "kill -TERM $$"

[tool:hang]
cmd = sh -c "echo started; sleep 30 & echo $! > {dir}/child.pid; wait"
timeout = 1

[tool:stream]
cmd = {python} -u -c "import time; print('one'); time.sleep(2); print('two')"
"""


@pytest.fixture
def node(circusd, tmp_path):
    (tmp_path / "work").mkdir()
    (tmp_path / "argv.py").write_text(ARGV)
    d = circusd(CONFIG.format(dir=tmp_path, python=sys.executable))
    d.wait_log("sleeper: active")
    return d


def ctl(d, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CIRCUSCTL_ENDPOINT"}
    return subprocess.run([sys.executable, "-m", "circus.cli.circusctl", "--endpoint",
                           f"ipc://{d.dir}/c.sock", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_tools_are_listed_with_their_description(node):
    r = ctl(node, "tools")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.splitlines() == [
        "fail       Exits 7", "hang", "show-args  Print the arguments it was given", "signaled",
        "stream"]
    assert "Run an operator tool" in ctl(node, "help").stdout


def test_arguments_arrive_as_argv_items_never_through_a_shell(node, tmp_path):
    r = ctl(node, "tool", "Show-Args", "a b; touch pwned", "$(id)", "--flag", "-x", "", "--")
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    got = json.loads(r.stdout)
    assert got["argv"] == ["--fixed", "a b; touch pwned", "$(id)", "--flag", "-x", "", "--"]
    assert got["cwd"] == str(tmp_path / "work")
    assert (got["tool"], got["node"], got["env"]) == ("show-args", "node-t", "yes")
    assert not (tmp_path / "work" / "pwned").exists()
    r = ctl(node, "--timeout", "9", "tool", "--", "show-args", "--timeout")   # flags before NAME
    assert json.loads(r.stdout)["argv"] == ["--fixed", "--timeout"]


def test_the_exit_code_is_circusctls_and_output_is_merged(node):
    r = ctl(node, "tool", "fail")
    assert (r.returncode, r.stdout, r.stderr) == (7, "oops\nout\n", "")
    assert ctl(node, "tool", "signaled").returncode == 128 + 15


def test_the_timeout_kills_the_whole_group(node, tmp_path):
    started = time.monotonic()
    r = ctl(node, "tool", "hang")
    assert time.monotonic() - started < 10
    assert r.returncode == 124
    assert r.stdout == "started\n" and "killed after its timeout" in r.stderr
    child = int((tmp_path / "child.pid").read_text())
    node.wait(lambda: not proc_alive(child), timeout=5, what="the tool's child killed")
    assert "tool hang (run " in node.log_text() and "killed after 1 s" in node.log_text()


def test_output_is_streamed_while_the_tool_runs(node):
    env = {k: v for k, v in os.environ.items() if k != "CIRCUSCTL_ENDPOINT"}
    proc = subprocess.Popen([sys.executable, "-m", "circus.cli.circusctl", "--endpoint",
                             f"ipc://{node.dir}/c.sock", "tool", "stream"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = proc.stdout.readline()
        assert first == "one\n"
        assert proc.poll() is None                 # the tool is still running
        rest, err = proc.communicate(timeout=20)
    finally:
        proc.kill() if proc.poll() is None else None
    assert (rest, err, proc.returncode) == ("two\n", "", 0)


def test_unknown_tool_and_the_protocol(node):
    r = ctl(node, "tool", "nope")
    assert r.returncode == 3 and "unknown tool 'nope'" in r.stderr and "show-args" in r.stderr
    with CircusClient(endpoint=f"ipc://{node.dir}/c.sock", timeout=10) as c, \
            CircusConsumer(["tool.fail."], endpoint=f"ipc://{node.dir}/p.sock") as events:
        time.sleep(0.2)                            # let the subscription reach circusd
        reply = c.send_message("tool", name="fail", args=[], waiting=True, run_id="r1")
        assert reply["status"] == "ok" and reply["exit_code"] == 7 and not reply["timed_out"]
        assert (reply["output"], reply["first_line"], reply["lines"]) == ("oops\nout\n", 1, 2)
        seen = []
        while len(seen) < 3 and events.next_ready(5):
            topic, body = events.pubsub_socket.recv_multipart()
            seen.append((topic.decode(), json.loads(body)))
        assert [t for t, _ in seen] == ["tool.fail.r1"] * 3
        assert [p.get("line") for _, p in seen[:2]] == ["oops", "out"]
        assert seen[2][1]["done"] and seen[2][1]["exit_code"] == 7

        # not waiting: the run id at once, the tool runs on; circusd answers meanwhile
        reply = c.send_message("tool", name="hang")
        assert reply["status"] == "ok" and reply["tool"] == "hang" and len(reply["run_id"]) == 12
        started = time.monotonic()
        assert c.send_message("list")["watchers"] == ["sleeper"]
        assert time.monotonic() - started < 0.5
        bad = c.send_message("tool", name="fail", args=["ok", 3])
        assert bad["status"] == "error" and "list of strings" in bad["reason"]
        bad = c.send_message("tool", name="fail", run_id="no spaces")
        assert bad["status"] == "error" and "run_id" in bad["reason"]
    assert node.stop() == 0


def test_the_tools_example_runs(circusd, tmp_path):
    text = (Path(__file__).parent.parent / "examples" / "tools.ini").read_text()
    text = text.replace("tcp://127.0.0.1:5555", f"ipc://{tmp_path}/c.sock")
    text = text.replace("tcp://127.0.0.1:5556", f"ipc://{tmp_path}/p.sock")
    text = text.replace("python3 -m http.server 8080", "sleep 60")
    d = circusd(text)
    d.wait_log("web: active")
    assert ctl(d, "tools").stdout.split("\n")[0].startswith("disk-usage ")
    r = ctl(d, "tool", "rotate-keys", "signing")
    assert r.returncode == 0 and re.fullmatch(r"rotating signing keys at \d\d:\d\d:\d\d\n", r.stdout), r
    r = ctl(d, "tool", "disk-usage", str(tmp_path))      # not a directory others write in
    assert r.returncode == 0 and r.stdout.endswith(f"{tmp_path}\n")
    assert d.stop() == 0
