"""``endpoint_owner`` on an ipc:// control endpoint: whoever can write to the socket is that user,
so ``add`` and ``set`` may only make watchers run as that user, and never load code into circusd
(hooks, custom stream classes); ``set`` of keys that change nothing about what runs is allowed."""
from __future__ import annotations

import os
import pwd

import zmq
from conftest import Raw

OWNER = pwd.getpwuid(os.getuid()).pw_name

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
