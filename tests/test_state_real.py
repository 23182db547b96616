"""Tier 2: circusd survives its own restart ([circus] state_file), and without a state file a
SIGKILLed circusd leaves nothing running (its keeper ends the processes, the next start sweeps).

Real circusd processes, SIGKILLed for real; every process seen is killed by pid at teardown."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from circus.client import CircusClient
from circus.core.lineage import MARKER, boot_id, read_marker, start_ticks
from conftest import Circusd, proc_alive, proc_children, proc_state

pytestmark = [pytest.mark.real, pytest.mark.fault]

HEAD = """
[circus]
endpoint = ipc://{dir}/c.sock
pubsub_endpoint = ipc://{dir}/p.sock
{state}
"""


def _live(pid: int) -> bool:
    return proc_alive(pid) and proc_state(pid) not in ("Z", "X")


class Node:
    """Successive circusd instances on one configuration file (a restart is a new instance)."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.instances: list[Circusd] = []
        self.seen: set[int] = set()

    @property
    def current(self) -> Circusd:
        return self.instances[-1]

    def start(self, text: str | None = None, *extra: str) -> Circusd:
        d = Circusd(self.dir)
        d.log = self.dir / f"circusd-{len(self.instances)}.log"
        if text is not None:
            d.write(text)
        d.start(None, *extra)
        self.instances.append(d)
        d.wait(lambda: (self.dir / "c.sock").exists() and "circusd stopped" not in d.log_text()
               and self.call("status")["status"] == "ok", what="control socket")
        return d

    def call(self, command: str, timeout: float = 10.0, **props) -> dict:
        with CircusClient(endpoint=f"ipc://{self.dir}/c.sock", timeout=timeout) as client:
            reply = client.call({"command": command, "properties": props})
        assert reply is not None, f"no reply to {command}"
        return reply

    def pids(self, watcher: str) -> list[int]:
        reply = self.call("list", name=watcher)
        found = sorted(int(p) for p in reply.get("pids", []))
        self.seen.update(found)
        return found

    def wait_pids(self, watcher: str, count: int, timeout: float = 20.0) -> list[int]:
        self.current.wait(lambda: len(self.pids(watcher)) == count and
                          all(_live(p) for p in self.pids(watcher)), timeout,
                          f"{count} processes of {watcher}")
        return self.pids(watcher)

    def kill9(self) -> None:
        """SIGKILL the current circusd (only it: its keeper is a separate process)."""
        d = self.current
        self.seen.update(proc_children(d.pid))
        d.proc.kill()
        d.proc.wait(10)
        (self.dir / "c.sock").unlink(missing_ok=True)

    def keeper_pid(self, d: Circusd | None = None) -> int:
        d = d or self.current
        d.wait(lambda: re.search(r"keeper process (\d+)", d.log_text()), what="keeper pid")
        return int(re.search(r"keeper process (\d+)", d.log_text()).group(1))

    def cleanup(self) -> None:
        for d in self.instances:
            d.cleanup()
        for pid in self.seen | {k for d in self.instances for k in _keepers(d)}:
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except OSError:
                    pass


def _keepers(d: Circusd) -> set[int]:
    return {int(m) for m in re.findall(r"keeper process (\d+)", d.log_text())}


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path)
    yield n
    n.cleanup()


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def _recorded(tmp_path: Path) -> dict:
    try:
        return json.loads((tmp_path / "state.json").read_text())["processes"]
    except FileNotFoundError:
        return {}


def recorded(tmp_path: Path, watcher: str | None = None, count: int | None = None) -> None:
    """Wait until the state file records ``count`` processes of ``watcher`` (any when None)."""
    if watcher is None:
        wait_until(lambda: _recorded(tmp_path), 10, "processes recorded in the state file")
    else:
        wait_until(lambda: len(_recorded(tmp_path).get(watcher, [])) == count, 10,
                   f"{count} processes of {watcher} recorded in the state file")


def grandchildren(pids: list[int]) -> list[int]:
    return sorted(g for p in pids for g in proc_children(p))


# a process with a grandchild: sh waits for its sleep
FAMILY = "sh -c 'sleep {secs} & wait'"


def families(tmp_path, state: str, n: int) -> str:
    return HEAD.format(dir=tmp_path, state=state) + f"""
[watcher:fam]
cmd = {FAMILY.format(secs=3600)}
numprocesses = {n}
graceful_timeout = 2
"""


# -- with a state file: SIGKILL, restart, same processes ---------------------------------------

def test_sigkill_with_100_children_and_grandchildren_then_restart_adopts_them_all(node, tmp_path):
    node.start(families(tmp_path, "state_file = state.json", 100))
    before = node.wait_pids("fam", 100, timeout=60)
    wait_until(lambda: len(grandchildren(before)) == 100, 20, "100 grandchildren")
    kids = grandchildren(before)
    node.seen.update(kids)
    recorded(tmp_path, "fam", 100)
    keeper = node.keeper_pid()
    node.kill9()
    assert all(_live(p) for p in before + kids), "the processes must outlive a SIGKILLed circusd"
    assert _live(keeper)

    d2 = node.start()
    after = node.wait_pids("fam", 100, timeout=30)
    assert after == before                              # re-adopted: no duplicates, no new ones
    assert "spawned process" not in d2.log_text()
    assert d2.log_text().count("adopted process") == 100
    assert all(_live(p) for p in kids)
    wait_until(lambda: not _live(keeper), 10, "the old keeper to leave after the handover")
    assert node.call("status", name="fam")["status"] == "active"

    assert d2.stop(30) == 0
    wait_until(lambda: not any(_live(p) for p in before + kids), 10, "every process ended")


def test_an_adopted_process_that_dies_is_seen_at_once_and_replaced(node, tmp_path):
    node.start(families(tmp_path, "state_file = state.json", 2))
    before = node.wait_pids("fam", 2)
    recorded(tmp_path, "fam", 2)
    node.kill9()
    node.start()
    assert node.wait_pids("fam", 2) == before
    os.killpg(before[0], signal.SIGKILL)
    wait_until(lambda: before[0] not in node.pids("fam") and len(node.pids("fam")) == 2, 10,
               "a replacement for the adopted process")
    assert "status unknown: an adopted process" in node.current.log_text()
    assert node.current.stop() == 0


def test_output_of_adopted_processes_keeps_flowing_into_their_stream(node, tmp_path):
    out = tmp_path / "out.log"
    node.start(HEAD.format(dir=tmp_path, state="state_file = state.json") + f"""
[watcher:talker]
cmd = sh -c 'while true; do echo "line $$"; sleep 0.05; done'
stdout_stream.class = FileStream
stdout_stream.filename = {out}
""")
    [pid] = node.wait_pids("talker", 1)
    wait_until(lambda: out.exists() and f"line {pid}" in out.read_text(), 10, "first lines")
    recorded(tmp_path)
    node.kill9()
    size = out.stat().st_size
    time.sleep(0.3)            # the process keeps writing into the pipe the keeper holds
    assert _live(pid)
    node.start()
    assert node.wait_pids("talker", 1) == [pid]
    wait_until(lambda: out.stat().st_size > size + 200, 10, "lines after the restart")
    lines = out.read_text().splitlines()
    assert lines[-1] == f"line {pid}"
    assert node.current.stop() == 0
    assert not _live(pid)


def web_on_a_socket(tmp_path, extra: str = "") -> str:
    """An HTTP worker on a port-0 socket circusd binds, with a state file."""
    worker = Path(__file__).parent / "workers" / "httpworker.py"
    return HEAD.format(dir=tmp_path, state="state_file = state.json") + f"""
[socket:web]
host = 127.0.0.1
port = 0

[watcher:web]
cmd = {sys.executable} {worker} --fd $(circus.sockets.web)
use_sockets = true
{extra}
"""


def test_a_listening_socket_is_kept_across_the_restart(node, tmp_path):
    node.start(web_on_a_socket(tmp_path))
    [pid] = node.wait_pids("web", 1)
    port = _port(node)
    assert _get(port) == str(pid)
    recorded(tmp_path)
    node.kill9()
    assert _get(port) == str(pid)          # still served while no circusd runs
    node.start()
    assert node.wait_pids("web", 1) == [pid]
    assert _port(node) == port             # the same socket, not a new ephemeral port
    assert "socket web: kept from the previous circusd" in node.current.log_text()
    node.call("incr", name="web")
    pids = node.wait_pids("web", 2)
    new = next(p for p in pids if p != pid)
    seen = {_get(port) for _ in range(40)}
    assert str(pid) in seen or str(new) in seen
    assert node.current.stop() == 0


def _port(node: Node) -> int:
    reply = node.call("listsockets")
    return int(next(s for s in reply["sockets"] if s["name"] == "web")["port"])


def _get(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data.split(b"\r\n\r\n", 1)[1].decode().strip()


def test_runtime_changes_survive_a_clean_restart(node, tmp_path):
    text = HEAD.format(dir=tmp_path, state="state_file = state.json") + """
[watcher:resized]
cmd = sleep 3601
numprocesses = 1

[watcher:tuned]
cmd = sleep 3602
graceful_timeout = 3

[watcher:doomed]
cmd = sleep 3603

[watcher:paused]
cmd = sleep 3604
"""
    d1 = node.start(text)
    node.wait_pids("resized", 1)
    assert node.call("incr", name="resized", nb=2)["status"] == "ok"
    assert node.call("set", name="tuned", options={"graceful_timeout": 7})["status"] == "ok"
    assert node.call("rm", name="doomed")["status"] == "ok"
    assert node.call("stop", name="paused")["status"] == "ok"
    assert node.call("add", name="extra", cmd="sleep 3605", start=True,
                     options={"numprocesses": 2})["status"] == "ok"
    node.wait_pids("extra", 2)
    assert d1.stop() == 0                      # a clean stop: every process ends...
    assert not any(_live(p) for p in node.seen)

    node.start()                               # ...and the changes come back
    assert len(node.wait_pids("resized", 3)) == 3
    assert node.call("get", name="tuned", keys=["graceful_timeout"])["options"]["graceful_timeout"] == 7
    names = node.call("list")["watchers"]
    assert "doomed" not in names and "extra" in names
    assert len(node.wait_pids("extra", 2)) == 2
    assert node.call("status", name="paused")["status"] == "stopped"
    assert node.current.stop() == 0


def test_the_file_wins_over_a_runtime_set_when_it_changed_since(node, tmp_path):
    text = HEAD.format(dir=tmp_path, state="state_file = state.json") + """
[watcher:tuned]
cmd = sleep 3602
graceful_timeout = 3
max_retry = 4
"""
    d1 = node.start(text)
    node.call("set", name="tuned", options={"graceful_timeout": 7, "max_retry": 9})
    assert d1.stop() == 0
    d1.write(text.replace("graceful_timeout = 3", "graceful_timeout = 5"))
    d2 = node.start()
    got = node.call("get", name="tuned", keys=["graceful_timeout", "max_retry"])["options"]
    assert got == {"graceful_timeout": 5, "max_retry": 9}
    assert "graceful_timeout changed in the file since it was set at runtime" in d2.log_text()
    assert d2.stop() == 0


def test_fresh_ignores_the_state_and_ends_what_the_dead_circusd_left(node, tmp_path):
    node.start(families(tmp_path, "state_file = state.json", 3))
    old = node.wait_pids("fam", 3)
    kids = grandchildren(old)
    node.call("incr", name="fam")
    old = node.wait_pids("fam", 4)
    recorded(tmp_path, "fam", 4)
    node.kill9()
    d2 = node.start(None, "--fresh")
    new = node.wait_pids("fam", 3)             # the file's numprocesses, not the runtime 4
    assert not set(new) & set(old)
    wait_until(lambda: not any(_live(p) for p in old + kids), 10, "the old processes ended")
    assert "--fresh: the state in" in d2.log_text()
    assert "left running by a previous circusd" in d2.log_text()
    assert d2.stop() == 0


def test_a_reused_pid_is_not_adopted(node, tmp_path):
    """The state names a live process that is not ours (another start time): it is left alone."""
    stranger = subprocess.Popen(["sleep", "3600"], start_new_session=True)
    try:
        state = {"version": 1, "node": "x", "lineage": "", "boot_id": boot_id(),
                 "written": time.time(), "added": {},
                 "set": {}, "removed": [], "numprocesses": {"fam": 1}, "stopped": [],
                 "processes": {"fam": [{"pid": stranger.pid, "wid": 1,
                                        "ticks": start_ticks(stranger.pid) - 1,
                                        "create_time": time.time()}]}}
        (tmp_path / "state.json").write_text(json.dumps(state))
        d = node.start(families(tmp_path, "state_file = state.json", 1))
        [pid] = node.wait_pids("fam", 1)
        assert pid != stranger.pid
        assert "is gone (or its pid was reused): not adopted" in d.log_text()
        assert d.stop() == 0
        assert stranger.poll() is None         # never signalled
    finally:
        stranger.kill()
        stranger.wait()


def test_a_corrupt_state_file_is_set_aside_and_circusd_starts(node, tmp_path):
    (tmp_path / "state.json").write_text('{"version": 1, "processes": {')
    d = node.start(families(tmp_path, "state_file = state.json", 1))
    node.wait_pids("fam", 1)
    assert "is not valid JSON" in d.log_text()
    assert list(tmp_path.glob("state.json.corrupt-*"))
    recorded(tmp_path)
    assert d.stop() == 0


def test_the_state_file_is_always_whole_while_processes_churn(node, tmp_path):
    node.start(HEAD.format(dir=tmp_path, state="state_file = state.json") + """
[watcher:churn]
cmd = sh -c 'sleep 0.05'
numprocesses = 5
""")
    path = tmp_path / "state.json"
    wait_until(path.exists, 10, "the state file")
    reads = 0
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        json.loads(path.read_text())           # never a torn write
        reads += 1
    assert reads > 20
    assert node.current.stop() == 0
    assert not list(tmp_path.glob(".circus-state.*"))     # no temporary file left


# -- without a state file: nothing keeps running unsupervised ----------------------------------

def test_without_a_state_file_a_sigkilled_circusd_takes_its_100_families_with_it(node, tmp_path):
    node.start(families(tmp_path, "", 100))
    pids = node.wait_pids("fam", 100, timeout=60)
    wait_until(lambda: len(grandchildren(pids)) == 100, 20, "100 grandchildren")
    kids = grandchildren(pids)
    node.seen.update(kids)
    assert all(read_marker(p) for p in pids + kids)      # the lineage marker is inherited
    keeper = node.keeper_pid()
    t0 = time.monotonic()
    node.kill9()
    wait_until(lambda: not any(_live(p) for p in pids + kids), 10, "every process ended")
    sys.stderr.write(f"[state] 200 processes ended {time.monotonic() - t0:.2f} s after the SIGKILL\n")
    wait_until(lambda: not _live(keeper), 10, "the keeper to leave")


def test_without_a_state_file_stubborn_processes_get_sigkill(node, tmp_path):
    node.start(HEAD.format(dir=tmp_path, state="") + """
[watcher:stubborn]
cmd = sh -c 'trap "" TERM; while true; do sleep 0.1; done'
numprocesses = 2
""")
    pids = node.wait_pids("stubborn", 2)
    node.kill9()
    wait_until(lambda: not any(_live(p) for p in pids), 10, "SIGKILL after the grace period")


def test_leftovers_of_a_circusd_killed_with_its_keeper_are_ended_at_the_next_start(node, tmp_path):
    text = families(tmp_path, "", 3)
    node.start(text)
    pids = node.wait_pids("fam", 3)
    kids = grandchildren(pids)
    keeper = node.keeper_pid()
    os.kill(keeper, signal.SIGKILL)             # e.g. an OOM kill of both
    node.kill9()
    assert all(_live(p) for p in pids + kids)   # nobody ended them yet...
    d2 = node.start()
    wait_until(lambda: not any(_live(p) for p in pids + kids), 10, "swept at the next start")
    assert "left running by a previous circusd of this node" in d2.log_text()
    assert len(node.wait_pids("fam", 3)) == 3
    assert d2.stop() == 0


def test_the_sweep_spares_processes_of_other_nodes_and_of_live_instances(node, tmp_path):
    """A second node (another config file) and an unrelated marked process survive a start."""
    other = Node(tmp_path / "other")
    (tmp_path / "other").mkdir()
    try:
        other.start(families(tmp_path / "other", "", 1))
        [theirs] = other.wait_pids("fam", 1)
        node.start(families(tmp_path, "", 1))
        node.wait_pids("fam", 1)
        time.sleep(0.3)
        assert _live(theirs)
        assert read_marker(theirs) != read_marker(node.pids("fam")[0])
        with open(f"/proc/{theirs}/environ", "rb") as fh:
            assert MARKER.encode() + b"=" in fh.read()
    finally:
        other.cleanup()


def test_quit_keep_leaves_everything_running_for_the_next_circusd(node, tmp_path):
    """An upgrade of circusd: ``quit --keep``, start the new one, nothing restarted."""
    out = tmp_path / "out.log"
    node.start(families(tmp_path, "state_file = state.json", 3) + f"""
[watcher:talker]
cmd = sh -c 'while true; do echo "line $$"; sleep 0.05; done'
stdout_stream.class = FileStream
stdout_stream.filename = {out}
""")
    fam = node.wait_pids("fam", 3)
    [talker] = node.wait_pids("talker", 1)
    ctl = subprocess.run([sys.executable, "-m", "circus.cli.circusctl", "--endpoint",
                          f"ipc://{tmp_path}/c.sock", "quit", "--keep"],
                         capture_output=True, text=True, timeout=30)
    assert ctl.returncode == 0, ctl.stdout + ctl.stderr
    assert node.current.proc.wait(15) == 0
    assert all(_live(p) for p in fam + [talker])
    assert "leaving 4 process(es) running" in node.current.log_text()
    d2 = node.start()
    assert node.wait_pids("fam", 3) == fam and node.wait_pids("talker", 1) == [talker]
    size = out.stat().st_size
    wait_until(lambda: out.stat().st_size > size + 100, 10, "output after the upgrade")
    assert d2.stop() == 0
    assert not any(_live(p) for p in fam + [talker])


def test_quit_keep_needs_a_state_file(node, tmp_path):
    node.start(families(tmp_path, "", 1))
    [pid] = node.wait_pids("fam", 1)
    reply = node.call("quit", keep=True)
    assert reply["status"] == "error" and "state_file" in reply["reason"]
    assert node.pids("fam") == [pid]           # refused: nothing changed, still serving
    assert node.current.stop() == 0


def test_an_adopted_process_is_health_checked_like_the_others(node, tmp_path):
    flag = tmp_path / "healthy"
    flag.touch()
    node.start(HEAD.format(dir=tmp_path, state="state_file = state.json") + f"""
[watcher:checked]
cmd = sleep 3600
health = exec:test -e {flag}
health_interval = 0.2
health_failures = 2
graceful_timeout = 1
""")
    [pid] = node.wait_pids("checked", 1)
    recorded(tmp_path, "checked", 1)
    node.kill9()
    d2 = node.start()
    assert node.wait_pids("checked", 1) == [pid]
    flag.unlink()
    wait_until(lambda: pid not in node.pids("checked") and len(node.pids("checked")) == 1, 15,
               "the unhealthy adopted process replaced")
    assert f"process {pid}: " in d2.log_text()
    flag.touch()
    assert d2.stop() == 0


def test_a_state_file_others_may_write_is_not_trusted(node, tmp_path):
    """It says what circusd runs: group/world-writable, it is ignored."""
    (tmp_path / "state.json").write_text(json.dumps({
        "version": 1, "added": {"evil": {"cmd": "sleep 3700"}}}))
    (tmp_path / "state.json").chmod(0o666)
    d = node.start(families(tmp_path, "state_file = state.json", 1))
    node.wait_pids("fam", 1)
    assert "evil" not in node.call("list")["watchers"]
    assert "is ignored: writable by others" in d.log_text()
    assert d.stop() == 0


def test_a_state_document_of_the_wrong_shape_never_stops_circusd(node, tmp_path):
    (tmp_path / "state.json").write_text(json.dumps({
        "version": 1, "set": [], "numprocesses": "x", "removed": 5, "written": "x",
        "processes": {"fam": [{"pid": 1, "wid": 1, "ticks": 1, "create_time": "soon"}]}}))
    d = node.start(families(tmp_path, "state_file = state.json", 1))
    node.wait_pids("fam", 1)
    assert d.stop() == 0


def test_a_handover_path_that_is_not_a_socket_is_left_alone(node, tmp_path):
    (tmp_path / "state.json.keeper").mkdir()
    d = node.start(families(tmp_path, "state_file = state.json", 1))
    node.wait_pids("fam", 1)
    assert "is not a socket: no handover" in d.log_text()
    assert (tmp_path / "state.json.keeper").is_dir()
    assert d.stop() == 0


def test_adopted_processes_of_an_on_demand_watcher_are_supervised_and_stopped(node, tmp_path):
    node.start(web_on_a_socket(tmp_path, "on_demand = true"))
    port = _port(node)
    wait_until(lambda: _get(port), 20, "a worker started on demand")
    [pid] = node.wait_pids("web", 1)
    recorded(tmp_path, "web", 1)
    node.kill9()
    d2 = node.start()
    assert node.wait_pids("web", 1) == [pid]           # not merely armed: supervised
    assert node.call("status", name="web")["status"] == "active"
    assert d2.stop() == 0
    assert not _live(pid)                              # a clean stop ends it
