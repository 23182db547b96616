"""The hook runner: 0.19's semantics, off the loop, bounded by a timeout."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import hookfuncs  # noqa: E402

from circus.hooks import HookRunner, resolve  # noqa: E402


async def run_command(argv, env, timeout):
    """A stand-in for the arbiter's run_command, with real processes."""
    proc = subprocess.Popen(argv, env={**env, "PATH": "/usr/bin:/bin"})
    try:
        return await asyncio.wait_for(asyncio.to_thread(proc.wait), timeout)
    except TimeoutError:
        proc.kill()
        proc.wait()
        raise


def make(hooks, timeout=1.0):
    events = []
    runner = HookRunner(hooks, timeout=timeout, run_command=run_command,
                        emit=lambda event, payload: events.append((event, payload)))
    return runner, events


def test_a_python_hook_gets_0_19_kwargs_and_success_is_published():
    runner, events = make({"before_start": ("hookfuncs.ok", False)})
    assert asyncio.run(runner.run("before_start", watcher="W", arbiter="A"))
    assert hookfuncs.calls[-1] == {"hook_name": "before_start", "watcher": "W", "arbiter": "A"}
    assert events[0][0] == "hook_success" and events[0][1]["name"] == "before_start"


@pytest.mark.parametrize("target,error", [("hookfuncs.falsy", "returned a false value"),
                                          ("hookfuncs.boom", "RuntimeError: boom"),
                                          ("hookfuncs.nope", "has no 'nope'"),
                                          ("nosuchmodule.x", "cannot import")])
def test_failures_are_reported_and_block_unless_ignored(target, error):
    runner, events = make({"before_start": (target, False), "after_start": (target, True),
                           "before_stop": (target, False)})
    assert asyncio.run(runner.run("before_start")) is False
    assert asyncio.run(runner.run("after_start")) is True      # ", true": failure ignored
    assert asyncio.run(runner.run("before_stop")) is True      # always ignored (0.19)
    assert events[0][0] == "hook_failure" and error in events[0][1]["error"]


def test_a_hanging_hook_times_out_without_blocking_the_loop():
    runner, events = make({"before_start": ("hookfuncs.slow", False)}, timeout=0.3)

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1
        t = asyncio.create_task(ticker())
        t0 = time.monotonic()
        ok = await runner.run("before_start")
        t.cancel()
        return ok, time.monotonic() - t0, ticks
    ok, elapsed, ticks = asyncio.run(main())
    assert ok is False and 0.3 <= elapsed < 1.0
    assert ticks > 10                                      # the loop kept running meanwhile
    assert "timed out after 0.3 s" in events[0][1]["error"]


def test_command_hooks_get_the_environment_and_their_exit_code_counts(tmp_path):
    out = tmp_path / "env"
    runner, events = make({"after_spawn": (f"exec:sh -c 'echo $CIRCUS_HOOK $CIRCUS_PID > {out}'", False),
                           "before_spawn": ("exec:sh -c 'exit 3'", False),
                           "before_start": ("exec:sleep 5", False)}, timeout=0.5)
    assert asyncio.run(runner.run("after_spawn", env={"CIRCUS_PID": "42"}))
    assert out.read_text().split() == ["after_spawn", "42"]
    assert asyncio.run(runner.run("before_spawn")) is False
    assert events[-1][1]["error"] == "exit code 3"
    t0 = time.monotonic()
    assert asyncio.run(runner.run("before_start")) is False
    assert time.monotonic() - t0 < 2 and "timed out" in events[-1][1]["error"]


def test_resolve_accepts_both_dotted_forms():
    assert resolve("hookfuncs.ok") is hookfuncs.ok
    assert resolve("hookfuncs:ok") is hookfuncs.ok
    with pytest.raises(ValueError):
        resolve("nodots")
