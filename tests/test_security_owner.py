"""``endpoint_owner`` on an ipc:// control endpoint: whoever can write to the socket is that user,
so ``add`` and ``set`` may only make watchers run as that user, and never load code into circusd
(hooks, custom stream classes); ``set`` of keys that change nothing about what runs is allowed.

As root with ``endpoint_owner = nobody`` (requests sent by a process running as nobody): the
owner gets exactly nobody's privileges: circusd opens, creates and rotates nobody's stream files
as nobody, enters the working directory as nobody, and refuses what would run with more (group
root, circusd's environment, its sockets, raised hard limits)."""
from __future__ import annotations

import os
import pwd
import resource
import stat
from dataclasses import fields

import pytest
import zmq

from asnobody import NOBODY, call_as_nobody, owned_dir, scratch, sh_as_nobody
from circus.config.schema import WatcherConfig
from conftest import Raw, proc_children, proc_cmdline

OWNER = pwd.getpwuid(os.getuid()).pw_name
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")

BODY = """
[watcher:root_job]
cmd = sleep 120
"""


def _start(circusd, tmp_path):
    d = circusd(f"[circus]\nendpoint = ipc://{tmp_path}/control.sock\n"
                f"pubsub_endpoint = ipc://{tmp_path}/events.sock\nendpoint_owner = {OWNER}\n" + BODY)
    d.wait(lambda: (tmp_path / "control.sock").exists(), what="control socket")
    return d, zmq.Context.instance()


def test_add_and_set_under_endpoint_owner(circusd, tmp_path):
    d, ctx = _start(circusd, tmp_path)
    assert os.stat(tmp_path / "control.sock").st_uid == os.getuid()
    raw = Raw(ctx, f"ipc://{tmp_path}/control.sock")
    try:
        refused = raw.call("add", name="other", cmd="sleep 1")
        assert refused["status"] == "error" and refused["code"] == "forbidden", refused
        assert OWNER in refused["reason"]
        hooked = raw.call("add", name="hooked", cmd="sleep 1",
                          options={"uid": OWNER, "hooks.before_start": "os.getcwd"})
        assert hooked["code"] == "forbidden" and "hooks" in hooked["reason"], hooked
        assert raw.call("add", name="mine", cmd="sleep 1", options={"uid": OWNER})["status"] == "ok"
        assert sorted(raw.call("list")["watchers"]) == ["mine", "root_job"]

        # a config watcher (no uid): only the keys that change nothing about what runs
        assert raw.call("set", name="root_job", options={"graceful_timeout": 3})["status"] == "ok"
        changed = raw.call("set", name="root_job", options={"cmd": "sh -c 'id > /tmp/x'"})
        assert changed["code"] == "forbidden", changed
        assert raw.call("get", name="root_job", keys=["cmd"])["options"]["cmd"] == "sleep 120"
    finally:
        raw.close()


def test_every_watcher_option_has_an_owner_rule():
    from circus.security.owner import OWNER_RULES
    assert set(OWNER_RULES) == {f.name for f in fields(WatcherConfig)}


# -- a root circusd, owned by nobody -------------------------------------------------------------

@pytest.fixture
def shared():
    with scratch() as path:
        owned_dir(path / "own")
        target = path / "target"                       # a root-only file
        target.write_bytes(b"root-only data\n")
        target.chmod(0o600)
        yield path


def _owned_node(circusd, shared, extra: str = "", body: str = BODY):
    d = circusd(f"[circus]\nendpoint = ipc://{shared}/control.sock\n"
                f"pubsub_endpoint = ipc://{shared}/events.sock\nendpoint_owner = nobody\n"
                + extra + body)
    sock = shared / "control.sock"
    d.wait(lambda: sock.exists() and sock.stat().st_uid == NOBODY.pw_uid, what="nobody's socket")
    return d


def _mine(shared, **stream) -> dict:
    """Options of a legitimate watcher of nobody's."""
    options = {"uid": "nobody", "working_dir": str(shared / "own")}
    if stream:
        options["stdout_stream"] = {"class": "FileStream", **stream}
    return options


def _calls(shared, *requests):
    return call_as_nobody(f"ipc://{shared}/control.sock", list(requests), shared)


@root_only
def test_the_owner_cannot_append_to_a_root_file_and_a_legitimate_add_works(circusd, shared):
    d = _owned_node(circusd, shared)
    attack, legit, reset = _calls(
        shared,
        ("add", {"name": "esc", "cmd": "/bin/echo", "args": "ssh-ed25519 AAAA-attacker nobody@evil",
                 "start": True, "options": _mine(shared, filename=str(shared / "target"))}),
        ("add", {"name": "mine", "cmd": "/bin/echo", "args": "hello from nobody", "start": True,
                 "waiting": True, "options": {**_mine(shared, filename=str(shared / "own" / "out.log")),
                                              "restart_policy": "never"}}),   # a job: one echo
        ("set", {"name": "mine", "options": {"stdout_stream.filename": str(shared / "target")}}))
    assert attack["status"] == "error" and attack["code"] == "forbidden", attack
    assert "Permission denied" in attack["reason"] and "'nobody'" in attack["reason"], attack
    assert legit["status"] == "ok", legit
    assert reset["status"] == "error" and reset["code"] == "forbidden", reset
    out = shared / "own" / "out.log"
    d.wait(lambda: out.exists() and b"hello from nobody" in out.read_bytes(), what="nobody's output")
    st = out.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode) & 0o027) == (NOBODY.pw_uid, 0)
    assert (shared / "target").read_bytes() == b"root-only data\n"
    assert stat.S_IMODE((shared / "target").stat().st_mode) == 0o600


@root_only
def test_a_path_changed_after_the_check_is_still_opened_as_the_owner(circusd, shared):
    _owned_node(circusd, shared)
    late = shared / "own" / "late.log"
    added, = _calls(shared, ("add", {"name": "late", "cmd": "/bin/echo", "args": "attacker line",
                                     "options": _mine(shared, filename=str(late))}))
    assert added["status"] == "ok", added
    sh_as_nobody(f"ln -s {shared}/target {late}", shared)
    started, = _calls(shared, ("start", {"name": "late", "waiting": True}))
    assert started["status"] == "error" and "Permission denied" in started["reason"], started
    assert "'nobody'" in started["reason"]
    assert (shared / "target").read_bytes() == b"root-only data\n"


@root_only
def test_rotation_happens_as_the_owner(circusd, shared):
    """nobody swaps the directory of its own log for a link to a root-only directory: root
    would rename root's file; as nobody the rotation fails and nothing of root's moves."""
    d = _owned_node(circusd, shared)
    owned_dir(shared / "own" / "sub")
    rootdir = shared / "rootdir"
    rootdir.mkdir(mode=0o700)
    (rootdir / "out.log").write_bytes(b"root's log\n")
    loop = "while true; do echo 0123456789; sleep 0.02; done"
    added, = _calls(shared, ("add", {
        "name": "rot", "cmd": "/bin/sh", "args": ["-c", loop], "start": True,
        "options": _mine(shared, filename=str(shared / "own" / "sub" / "out.log"),
                         max_bytes=64, backup_count=2)}))
    assert added["status"] == "ok", added
    d.wait(lambda: (shared / "own" / "sub" / "out.log.1").exists(), what="a first rotation")
    sh_as_nobody(f"cd {shared}/own && mv sub sub.old && ln -s {rootdir} sub", shared)
    d.wait(lambda: "rot stdout" in d.log_text() and "write failed" in d.log_text()
           or sorted(p.name for p in rootdir.iterdir()) != ["out.log"], 20, "the rotation to fail")
    assert sorted(p.name for p in rootdir.iterdir()) == ["out.log"]
    assert (rootdir / "out.log").read_bytes() == b"root's log\n"


@root_only
def test_a_restored_watcher_of_the_owner_is_still_opened_as_the_owner(circusd, shared, tmp_path):
    d = _owned_node(circusd, shared, extra=f"state_file = {tmp_path}/state.json\n")
    kept = shared / "own" / "kept.log"
    added, = _calls(shared, ("add", {"name": "kept", "cmd": "/bin/echo", "args": "one",
                                     "start": True, "options": _mine(shared, filename=str(kept))}))
    assert added["status"] == "ok", added
    d.wait(lambda: kept.exists() and kept.read_bytes(), what="kept.log")
    d.wait(lambda: (tmp_path / "state.json").exists() and
           "kept" in (tmp_path / "state.json").read_text(), what="the state file")
    assert d.stop() == 0
    d.proc.stdout.close()
    sh_as_nobody(f"rm {kept} && ln -s {shared}/target {kept}", shared)
    d.start()
    target = shared / "target"
    d.wait(lambda: "kept: fatal (stdout_stream: cannot open" in d.log_text()
           and "Permission denied (as 'nobody')" in d.log_text()
           or target.read_bytes() != b"root-only data\n", what="kept to fail")
    assert target.read_bytes() == b"root-only data\n"


@root_only
def test_the_owner_gets_no_group_environment_socket_or_limit_of_roots(circusd, shared):
    d = _owned_node(circusd, shared, body=BODY + "\n[socket:web]\nhost = 127.0.0.1\nport = 0\n")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    base = _mine(shared)
    refused = {
        "group root + copy_env": {**base, "gid": "root", "copy_env": True},
        "group root": {**base, "gid": 0},
        "copy_env": {**base, "copy_env": True},
        "circusd's environment": {**base, "env": {"STOLEN": "$PATH"}},
        "a root-only working_dir": {**base, "working_dir": "/root"},
        "a raised hard limit": {**base, "rlimit_nofile": hard + 1},
        "circusd's sockets": {**base, "use_sockets": True},
        "a socket on stdin": {**base, "stdin_socket": "web"},
        "QueueStream": {**base, "stdout_stream": {"class": "QueueStream"}},
        "a custom stream": {**base, "stdout_stream": {"class": "os.getcwd"}},
    }
    requests = [("add", {"name": f"x{i}", "cmd": "/bin/sh", "args": ["-c", "id; sleep 60"],
                         "start": True, "options": options})
                for i, options in enumerate(refused.values())]
    requests.append(("add", {"name": "sock", "cmd": "cat $(circus.sockets.web)", "options": base}))
    requests.append(("add", {"name": "ok", "cmd": "sleep 61", "start": True, "options": base}))
    requests.append(("set", {"name": "ok", "options": {"gid": "root"}}))
    replies = _calls(shared, *requests)
    for what, reply in zip([*refused, "$(circus.sockets.web)"], replies):
        assert reply["status"] == "error" and reply["code"] == "forbidden", (what, reply)
    assert replies[-2]["status"] == "ok", replies[-2]
    assert replies[-1]["code"] == "forbidden", replies[-1]
    d.wait(lambda: d.children("sleep 61"), what="nobody's process")
    for kid in proc_children(d.pid):                     # nothing of nobody's in group root
        uid, gid, groups = _ids(kid)
        if uid == NOBODY.pw_uid:
            assert gid == NOBODY.pw_gid and 0 not in groups, proc_cmdline(kid)
            with open(f"/proc/{kid}/environ", "rb") as fh:
                assert b"PATH=" not in fh.read()          # not circusd's environment
    assert [k for k in proc_children(d.pid) if "id; sleep 60" in proc_cmdline(k)] == []


def _ids(pid: int) -> tuple[int, int, list[int]]:
    with open(f"/proc/{pid}/status") as fh:
        ids = dict(line.split(":", 1) for line in fh if ":" in line)
    return int(ids["Uid"].split()[0]), int(ids["Gid"].split()[0]), \
        [int(g) for g in ids["Groups"].split()]


@root_only
def test_the_working_directory_is_entered_as_the_owner(circusd, shared):
    d = _owned_node(circusd, shared)
    owned_dir(shared / "own" / "wd")
    log = shared / "own" / "pwd.log"
    added, = _calls(shared, ("add", {
        "name": "wd", "cmd": "/bin/sh", "args": ["-c", "pwd; sleep 60"],
        "options": {"uid": "nobody", "working_dir": str(shared / "own" / "wd"), "max_retry": 1,
                    "stdout_stream": {"class": "FileStream", "filename": str(log)}}}))
    assert added["status"] == "ok", added
    sh_as_nobody(f"cd {shared}/own && mv wd wd.old && ln -s /root wd", shared)
    _calls(shared, ("start", {"name": "wd"}))
    d.wait(lambda: "entering working_dir" in d.log_text() or log.exists() and log.read_bytes(),
           what="the spawn to fail")
    assert b"/root" not in (log.read_bytes() if log.exists() else b"")
    assert "entering working_dir" in d.log_text()
    assert d.children("/bin/sh -c pwd") == []


def test_a_tool_runs_through_the_owners_socket_only_as_the_owner(circusd, tmp_path):
    d = circusd(f"[circus]\nendpoint = ipc://{tmp_path}/control.sock\n"
                f"pubsub_endpoint = ipc://{tmp_path}/events.sock\nendpoint_owner = {OWNER}\n" + BODY
                + f"\n[tool:asroot]\ncmd = echo\n\n[tool:mine]\ncmd = echo\nuid = {OWNER}\n")
    d.wait(lambda: (tmp_path / "control.sock").exists(), what="control socket")
    raw = Raw(zmq.Context.instance(), f"ipc://{tmp_path}/control.sock")
    try:
        refused = raw.call("tool", name="asroot", args=["x"], waiting=True)
        assert refused["status"] == "error" and refused["code"] == "forbidden", refused
        assert "circusd's user" in refused["reason"] and OWNER in refused["reason"]
        ran = raw.call("tool", name="mine", args=["hello"], waiting=True, wait=20)
        assert ran["status"] == "ok" and "hello" in ran["output"], ran
    finally:
        raw.close()
