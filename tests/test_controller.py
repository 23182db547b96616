"""Tier 2: the control and events sockets of a real circusd, spoken to in raw 0.19 JSON frames."""
from __future__ import annotations

import json
import os
import stat
import sys
import time
import uuid

import pytest
import zmq

from conftest import Raw

pytestmark = pytest.mark.real

CONFIG = """
[circus]
endpoint = ipc://{dir}/control.sock
pubsub_endpoint = ipc://{dir}/events.sock
name = node-a

[watcher:sleeper]
cmd = sleep 3600
numprocesses = 2
graceful_timeout = 2

[watcher:stubborn]
cmd = {python} -c "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(3600)"
graceful_timeout = 1

[watcher:other]
cmd = {python} -c "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(3600)"
graceful_timeout = 1
"""


def ignores_sigterm(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            mask = next(line for line in fh if line.startswith("SigIgn:")).split()[1]
    except (OSError, StopIteration):
        return False
    return bool(int(mask, 16) & (1 << (15 - 1)))


@pytest.fixture
def node(circusd, tmp_path):
    d = circusd(CONFIG.format(dir=tmp_path, python=sys.executable))
    d.wait(lambda: (tmp_path / "control.sock").exists() and len(d.children()) == 4
           and sum(ignores_sigterm(p) for p in d.children()) == 2, what="node up")
    ctx = zmq.Context()
    clients: list[Raw] = []

    def client(kind: int = zmq.DEALER) -> Raw:
        c = Raw(ctx, f"ipc://{tmp_path}/control.sock", kind)
        clients.append(c)
        return c

    d.client = client
    yield d
    for c in clients:
        c.close()
    ctx.term()


def test_list_status_and_0_19_reply_shapes(node):
    c = node.client()
    r = c.call("list")
    assert r["status"] == "ok" and r["watchers"] == ["other", "sleeper", "stubborn"]
    assert r["node"] == "node-a" and isinstance(r["time"], float)
    r = c.call("status", name="SLEEPER")               # case-insensitive, 0.19's quirk kept
    assert r["status"] == "active" and r["state"] == "active"
    r = c.call("list", name="sleeper")
    assert len(r["pids"]) == 2
    r = c.call("status")
    assert r["statuses"] == {"other": "active", "sleeper": "active", "stubborn": "active"}
    r = c.call("numwatchers")
    assert r["numwatchers"] == 3
    r = c.call("numprocesses", name="sleeper")
    assert r["numprocesses"] == 2
    r = c.call("globaloptions")
    assert r["options"]["endpoint"].endswith("control.sock")


def test_errors_carry_errno_code_and_no_traceback(node):
    c = node.client()
    c.send_raw(b"not json")
    r = c.recv()
    assert (r["status"], r["errno"], r["code"], r["id"], r["tb"]) == ("error", 1, "invalid_json", None, None)
    r = c.call("frobnicate")
    assert (r["errno"], r["code"]) == (2, "unknown_command") and "frobnicate" in r["reason"]
    r = c.call("status", name="nope")
    assert (r["errno"], r["code"]) == (3, "unknown_watcher")
    assert r["reason"] == "program nope not found: the watchers are other, sleeper, stubborn"
    r = c.call("set", name="sleeper", options={"numprocesses": "2"})
    assert (r["errno"], r["code"]) == (3, "invalid_option") and "numprocesses" in r["reason"]
    r = c.call("incr")
    assert (r["errno"], r["code"]) == (3, "missing_property")
    r = c.call("get", name="sleeper", keys=["nope"])
    assert r["code"] == "unknown_option"
    r = c.call("listen")
    assert r["reason"] == "invalid message. use a pub/sub socket"


def test_a_burst_of_garbage_then_a_normal_request_is_answered(node):
    c = node.client()
    garbage = [b"", b" ", b"\xff\xfe", b"[]", b"{}", b'{"command": 3}', b'{"id": 1}',
               b'{"command": "list", "properties": []}', b"{" * 10000, b"x" * (2 << 20)]
    for body in garbage:
        c.send_raw(body)
    c.sock.send_multipart([b"a", b"b", b"c"])         # odd framing too
    errors = [c.recv() for _ in garbage]
    assert all(r["status"] == "error" for r in errors)
    assert {r["code"] for r in errors} >= {"invalid_json", "invalid_message", "oversize"}
    assert c.sock.poll(5000)                            # 3 frames: the last is the body, the others
    stray = c.sock.recv_multipart()                     # are routing frames, echoed back
    assert stray[:2] == [b"a", b"b"] and json.loads(stray[-1])["code"] == "invalid_json"
    assert c.call("list")["status"] == "ok"


def test_casts_get_no_reply_and_are_executed(node):
    c = node.client()
    c.send_raw(json.dumps({"id": "c1", "command": "incr", "msg_type": "cast",
                           "properties": {"name": "sleeper"}}).encode())
    c.send_raw(json.dumps({"id": "c2", "command": "nope", "msg_type": "cast"}).encode())
    node.wait(lambda: c.call("numprocesses", name="sleeper")["numprocesses"] == 3, what="cast applied")
    assert c.sock.poll(200) == 0 or json.loads(c.sock.recv())["id"] not in ("c1", "c2")


def test_a_req_socket_works_too(node):
    c = node.client(zmq.REQ)
    r = c.call("numwatchers")
    assert r["numwatchers"] == 3


def test_waiting_commands_return_results(node):
    c = node.client()
    r = c.call("incr", name="sleeper", nb=2, waiting=True)
    assert r["numprocesses"] == 4
    assert len(c.call("list", name="sleeper")["pids"]) == 4
    r = c.call("decr", name="sleeper", nb=3, waiting=True)
    assert r["numprocesses"] == 1
    old = c.call("list", name="sleeper")["pids"]
    r = c.call("restart", name="sleeper", waiting=True)
    assert r["info"]["stopped"] == old and len(r["info"]["started"]) == 1
    assert c.call("status")["statuses"]["sleeper"] == "active"      # cached until an event
    r = c.call("stop", name="sleeper", waiting=True)
    assert r["status"] == "ok" and r["info"] is None
    assert c.call("status", name="sleeper")["status"] == "stopped"
    assert c.call("status")["statuses"]["sleeper"] == "stopped"
    r = c.call("start", name="sleeper", waiting=True)
    assert len(r["info"]["started"]) == 1


def test_different_watchers_overlap_same_watcher_serializes_reads_never_wait(node):
    a, b, reader = node.client(), node.client(), node.client()
    t0 = time.monotonic()
    a.send_raw(json.dumps({"id": "a", "command": "stop", "properties": {"name": "stubborn", "waiting": True}}).encode())
    b.send_raw(json.dumps({"id": "b", "command": "stop", "properties": {"name": "other", "waiting": True}}).encode())
    time.sleep(0.1)
    t_read = time.monotonic()
    assert reader.call("list")["status"] == "ok"
    assert time.monotonic() - t_read < 0.5            # not stuck behind the two 1 s stops
    ra, rb = a.recv(), b.recv()
    elapsed = time.monotonic() - t0
    assert ra["status"] == rb["status"] == "ok"
    assert 0.9 < elapsed < 1.9                         # both 1 s graceful timeouts ran together (not 2 s)
    # same watcher: start then stop queue one behind the other, none is refused
    a.send_raw(json.dumps({"id": "s1", "command": "start", "properties": {"name": "stubborn", "waiting": True}}).encode())
    b.send_raw(json.dumps({"id": "s2", "command": "stop", "properties": {"name": "stubborn", "waiting": True}}).encode())
    replies = [a.recv(), b.recv()]
    assert [r["status"] for r in replies] in (["ok", "ok"], ["error", "ok"])
    assert reader.call("status", name="stubborn")["status"] == "stopped"


def test_events_are_published_with_the_node_name(node, tmp_path):
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.linger = 0
    sub.setsockopt(zmq.SUBSCRIBE, b"watcher.sleeper.")
    sub.connect(f"ipc://{tmp_path}/events.sock")
    try:
        c = node.client()
        seen: list[tuple[str, dict]] = []
        deadline = time.monotonic() + 10
        while not any(t.endswith(".spawn") for t, _ in seen):     # slow joiner: retry the incr
            assert time.monotonic() < deadline, seen
            c.call("incr", name="sleeper")
            while sub.poll(200):
                topic, body = sub.recv_multipart()
                seen.append((topic.decode(), json.loads(body)))
        topic, payload = next((t, p) for t, p in seen if t.endswith(".spawn"))
        assert topic == "watcher.sleeper.spawn"
        assert payload["node"] == "node-a" and isinstance(payload["process_pid"], int)
    finally:
        sub.close()
        ctx.term()


def test_ipc_endpoints_are_private(node, tmp_path):
    for name in ("control.sock", "events.sock"):
        mode = stat.S_IMODE(os.stat(tmp_path / name).st_mode)
        assert mode == 0o600, oct(mode)


def test_add_set_get_options_rm(node):
    c = node.client()
    r = c.call("add", name="added", cmd="sleep 3607", options={"numprocesses": 2}, start=True, waiting=True)
    assert r["status"] == "ok"
    assert len(c.call("list", name="added")["pids"]) == 2
    r = c.call("add", name="ADDED", cmd="sleep 1")
    assert (r["code"], r["errno"]) == ("already_exists", 5)
    r = c.call("set", name="added", options={"graceful_timeout": 3, "numprocesses": 1}, waiting=True)
    assert r["status"] == "ok"
    r = c.call("get", name="added", keys=["graceful_timeout", "numprocesses"])
    assert r["options"] == {"graceful_timeout": 3.0, "numprocesses": 1}
    old = c.call("list", name="added")["pids"]
    r = c.call("set", name="added", options={"env": {"X": "1"}}, waiting=True)   # needs new processes
    assert c.call("list", name="added")["pids"] != old
    assert c.call("options", name="added")["options"]["env"] == {"X": "1"}
    r = c.call("rm", name="added", waiting=True)
    assert r["status"] == "ok"
    assert "added" not in c.call("list")["watchers"]


def test_signal_kill_and_stats(node):
    c = node.client()
    pid = c.call("list", name="sleeper")["pids"][0]
    r = c.call("stats", name="sleeper")
    assert str(pid) in r["info"] and r["info"][str(pid)]["cmdline"] == "sleep"
    assert isinstance(r["info"][str(pid)]["rss"], int)
    r = c.call("dstats")
    assert r["info"]["pid"] == node.pid
    r = c.call("signal", name="sleeper", pid=pid, signum="kill")
    assert r["status"] == "ok"
    node.wait(lambda: pid not in c.call("list", name="sleeper")["pids"]
              and len(c.call("list", name="sleeper")["pids"]) == 2, what="respawn after signal")
    pid2 = c.call("list", name="sleeper")["pids"][0]
    r = c.call("kill", name="sleeper", pid=pid2, waiting=True)
    assert r["status"] == "ok"
    r = c.call("signal", name="sleeper", signum="NOPE")
    assert r["code"] == "invalid_property"


def test_quit_waiting_replies_then_circusd_exits(node):
    c = node.client()
    kids = node.children()
    r = c.call("quit", waiting=True, wait=10)
    assert r["status"] == "ok"
    assert node.proc.wait(10) == 0
    from conftest import proc_alive
    assert not any(proc_alive(k) for k in kids)


def test_multicast_discovery_answers_only_when_configured(circusd, tmp_path):
    import socket
    port = 12000 + os.getpid() % 1000
    group = "237.219.251.97"
    d = circusd(f"""
        [circus]
        endpoint = ipc://{tmp_path}/control.sock
        pubsub_endpoint = ipc://{tmp_path}/events.sock
        multicast_endpoint = udp://{group}:{port}
        name = findme
        [watcher:w]
        cmd = sleep 3615
    """)
    d.wait_log("answering discovery")
    assert len(udp_inodes_of(d.pid)) == 1            # the check below sees discovery sockets
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        s.settimeout(5)
        s.sendto(b"?", (group, port))
        data, _ = s.recvfrom(4096)
    finally:
        s.close()
    assert json.loads(data) == {"endpoint": f"ipc://{tmp_path}/control.sock", "node": "findme"}
    d.stop()


def udp_inodes_of(pid: int) -> set[str]:
    """Inodes of the UDP sockets process ``pid`` holds."""
    mine = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            mine.add(target[len("socket:["):-1])
    udp = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as fh:
            udp |= {line.split()[9] for line in fh.readlines()[1:]}
    return mine & udp


def test_no_discovery_socket_by_default(node, circusd, tmp_path):
    assert udp_inodes_of(node.pid) == set()


def test_an_operation_queued_past_its_deadline_fails_with_timeout_and_does_nothing(node):
    a, b = node.client(), node.client()
    a.send_raw(json.dumps({"id": "slow", "command": "stop",
                           "properties": {"name": "stubborn", "waiting": True}}).encode())
    time.sleep(0.1)
    r = b.call("incr", name="stubborn", waiting=True, timeout=0.3)
    assert (r["status"], r["code"], r["errno"]) == ("error", "timeout", 5)
    assert a.recv()["status"] == "ok"
    options = b.call("options", name="stubborn")["options"]
    assert options["numprocesses"] == 1                 # the incr was not done


def test_read_commands_are_answered_while_hundreds_of_processes_start(circusd, tmp_path):
    d = circusd(f"""
        [circus]
        endpoint = ipc://{tmp_path}/control.sock
        pubsub_endpoint = ipc://{tmp_path}/events.sock
        [watcher:many]
        cmd = sleep 3680
        numprocesses = 300
        autostart = false
    """)
    d.wait(lambda: (tmp_path / "control.sock").exists(), what="control socket")
    ctx = zmq.Context()
    a, b = Raw(ctx, f"ipc://{tmp_path}/control.sock"), Raw(ctx, f"ipc://{tmp_path}/control.sock")
    try:
        a.send_raw(b'{"id": "s", "command": "start", "properties": {"name": "many", "waiting": true}}')
        seen = []
        while len(seen) < 300 and len(d.children("sleep 3680")) < 300:
            seen.append(b.call("numprocesses", name="many", wait=5)["numprocesses"])
        assert a.recv(60)["status"] == "ok"
        assert any(0 < n < 300 for n in seen), seen[:20]     # answered in the middle of the start
    finally:
        a.close()
        b.close()
        ctx.term()
    d.stop(timeout=60)
