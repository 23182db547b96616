"""Tier 2: hooks in a real circusd: 0.19 semantics, command hooks, and a hung hook that does not
delay the control socket."""
from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.real

HOOKS = '''
import time

def refuse(watcher, arbiter, hook_name, **kw):
    return False

def hang(watcher, arbiter, hook_name, **kw):
    time.sleep(3)
    return True

def extend(watcher, arbiter, hook_name, pid, stats, **kw):
    stats["extra"] = f"from hook for {pid}"
    return True
'''


def test_a_failing_before_start_hook_keeps_the_watcher_stopped(control_node, tmp_path):
    (tmp_path / "myhooks.py").write_text(HOOKS)
    d, c = control_node("""
        [watcher:refused]
        cmd = sleep 3670
        hooks.before_start = myhooks.refuse
        [watcher:ok]
        cmd = sleep 3671
    """)
    d.wait(lambda: d.children("sleep 3671"), what="the other watcher")
    d.wait_log("hook before_start (myhooks.refuse) failed: returned a false value")
    assert c.call("status", name="refused")["status"] == "stopped"
    r = c.call("start", name="refused", waiting=True)
    assert r["status"] == "error" and "before_start hook failed" in r["reason"]
    assert not d.children("sleep 3670")
    d.stop()


def test_command_hooks_get_watcher_node_and_pid(control_node, tmp_path):
    out = tmp_path / "hook.out"
    d, c = control_node(f"""
        [watcher:w]
        cmd = sleep 3672
        hooks.after_spawn = exec:sh -c 'echo "$CIRCUS_HOOK $CIRCUS_WATCHER $CIRCUS_PID" >> {out}'
    """)
    d.wait(lambda: out.exists() and out.read_text().strip(), what="hook output")
    pid = d.children("sleep 3672")[0]
    assert out.read_text().split() == ["after_spawn", "w", str(pid)]
    d.stop()


def test_a_hanging_hook_does_not_delay_the_control_socket(control_node, tmp_path):
    (tmp_path / "myhooks.py").write_text(HOOKS)
    d, c = control_node("""
        [watcher:slow]
        cmd = sleep 3673
        hooks.before_start = myhooks.hang
        hook_timeout = 2
        autostart = false
    """)
    c.send_raw(b'{"id": "s", "command": "start", "properties": {"name": "slow", "waiting": true}}')
    time.sleep(0.2)
    worst = 0.0
    for _ in range(20):                        # while the hook hangs
        t0 = time.monotonic()
        assert c.call("list")["status"] == "ok"
        worst = max(worst, time.monotonic() - t0)
        time.sleep(0.05)
    assert worst < 0.05, f"list took {worst * 1000:.1f} ms while a hook hung"
    r = c.recv(10)
    assert r["status"] == "error" and "before_start hook failed" in r["reason"]
    assert "timed out after 2 s" in d.log_text()
    d.stop()


def test_extended_stats_hook_adds_keys(control_node, tmp_path):
    (tmp_path / "myhooks.py").write_text(HOOKS)
    d, c = control_node("""
        [watcher:w]
        cmd = sleep 3674
        hooks.extended_stats = myhooks.extend
    """)
    d.wait(lambda: d.children("sleep 3674"), what="worker")
    pid = d.children("sleep 3674")[0]
    r = c.call("stats", name="w", extended=True)
    assert r["info"][str(pid)]["extra"] == f"from hook for {pid}"
    r = c.call("stats", name="w")
    assert "extra" not in r["info"][str(pid)]
    d.stop()
