"""Tier 2: reloadconfig applies exactly the plan, in order; dry_run only reports it."""
from __future__ import annotations

import pytest
import zmq

from conftest import Raw

pytestmark = pytest.mark.real

BEFORE = """
[circus]
endpoint = ipc://{dir}/control.sock
pubsub_endpoint = ipc://{dir}/events.sock
name = before

[watcher:keep]
cmd = sleep 3610

[watcher:resize]
cmd = sleep 3611
numprocesses = 1

[watcher:change]
cmd = sleep 3612

[watcher:remove]
cmd = sleep 3613
"""

AFTER = """
[circus]
endpoint = ipc://{dir}/control.sock
pubsub_endpoint = ipc://{dir}/events.sock
name = after

[watcher:keep]
cmd = sleep 3610

[watcher:resize]
cmd = sleep 3611
numprocesses = 3

[watcher:change]
cmd = sleep 3622

[watcher:new]
cmd = sleep 3614
"""


def test_reloadconfig_applies_only_what_changed(circusd, tmp_path):
    d = circusd(BEFORE.format(dir=tmp_path))
    d.wait(lambda: len(d.children()) == 4, what="4 workers")
    ctx = zmq.Context()
    c = Raw(ctx, f"ipc://{tmp_path}/control.sock")
    try:
        keep = c.call("list", name="keep")["pids"]
        resize = c.call("list", name="resize")["pids"]
        c.call("incr", name="keep", waiting=True)          # a runtime change on an unchanged watcher
        keep = c.call("list", name="keep")["pids"]
        d.write(AFTER.format(dir=tmp_path))
        r = c.call("reloadconfig", dry_run=True)
        assert r["status"] == "ok"
        text = "\n".join(r["changes"])
        assert "new" in text and "remove" in text and "change" in text and "resize" in text
        assert c.call("list")["watchers"] == ["change", "keep", "remove", "resize"]   # nothing done
        r = c.call("reloadconfig", waiting=True, wait=20)
        assert r["status"] == "ok", r
        assert c.call("list")["watchers"] == ["change", "keep", "new", "resize"]
        assert c.call("list", name="keep")["pids"] == keep               # untouched, runtime change kept
        pids = c.call("list", name="resize")["pids"]
        assert len(pids) == 3 and set(resize) <= set(pids)              # resized in place
        assert d.children("sleep 3622") and not d.children("sleep 3612") and not d.children("sleep 3613")
        assert d.children("sleep 3614")
        assert c.call("list")["node"] == "after"                        # [circus] applied
        d.write("[watcher:broken]\ncmd = sleep 1\nnumprocesses = many\n")
        r = c.call("reloadconfig", waiting=True)
        assert r["status"] == "error" and r["code"] == "config_error" and "numprocesses" in r["reason"]
        assert c.call("list")["watchers"] == ["change", "keep", "new", "resize"]   # nothing lost
    finally:
        c.close()
        ctx.term()
    d.stop()
