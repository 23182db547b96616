"""Tier 1: watcher and arbiter logic on the fake OS with a virtual clock (milliseconds each)."""
from __future__ import annotations

import asyncio
import random
import signal
import textwrap

import pytest

from circus.config import parse_config_text
from circus.core.arbiter import Arbiter
from circus.core.states import ProcessState, WatcherState
from circus.errors import SpawnError, WatcherError
from circus.testing import FakeOS, run_virtual


def make(ini: str, fake: FakeOS | None = None) -> tuple[Arbiter, FakeOS, list[tuple[float, str, dict]]]:
    config = parse_config_text(textwrap.dedent(ini), "test.ini", {})
    fake = fake or FakeOS()
    arbiter = Arbiter(config, os_=fake, environ={}, node_name="n1", rng=random.Random(4))
    events: list[tuple[float, str, dict]] = []
    arbiter.listeners.append(lambda topic, payload: events.append(
        (asyncio.get_running_loop().time(), topic, payload)))
    return arbiter, fake, events


def topics(events, suffix=""):
    return [t for _, t, _ in events if t.endswith(suffix)]


async def until(predicate, timeout=60.0, step=0.01):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(step)


ONE = """
[watcher:web]
cmd = server --wid $(circus.wid)
numprocesses = 3
graceful_timeout = 5
"""


def test_start_spawns_numprocesses_with_substituted_argv():
    async def main():
        arbiter, fake, events = make(ONE)
        await arbiter.start()
        web = arbiter.get("WEB")                        # names are case-insensitive
        assert web.state is WatcherState.ACTIVE
        assert len(web.pids()) == 3
        assert sorted(p.spec.argv for p in fake.spawned) == [
            ("server", "--wid", "1"), ("server", "--wid", "2"), ("server", "--wid", "3")]
        assert topics(events).count("watcher.web.spawn") == 3
        assert "watcher.web.start" in topics(events)
        assert all(p["node"] == "n1" for _, _, p in events)
        await arbiter.quit()
        assert fake.alive() == []
    run_virtual(main())


def test_a_crash_of_a_healthy_process_is_respawned_at_once():
    async def main():
        arbiter, fake, events = make(ONE)
        await arbiter.start()
        await asyncio.sleep(10)
        web = arbiter.get("web")
        victim = fake.processes[web.pids()[0]]
        victim.exit(-9)
        t0 = asyncio.get_running_loop().time()
        await until(lambda: len(web.pids()) == 3 and victim.pid not in web.pids())
        assert asyncio.get_running_loop().time() - t0 < 0.05
        reap = [p for _, t, p in events if t == "watcher.web.reap"]
        assert reap == [{"process_pid": victim.pid, "time": reap[0]["time"], "exit_code": -9, "node": "n1"}]
        await arbiter.quit()
    run_virtual(main())


def test_crash_loop_backs_off_then_goes_fatal_with_the_reason_and_others_keep_running():
    async def main():
        arbiter, fake, events = make("""
            [watcher:bad]
            cmd = crash
            max_retry = 3
            [watcher:good]
            cmd = fine
        """)
        fake.behaviour = lambda proc: proc.exit_after(0.01, 1) if proc.spec.argv[0] == "crash" else None
        await arbiter.start()
        bad = arbiter.get("bad")
        await until(lambda: bad.state is WatcherState.FATAL)
        spawns = [t for t, topic, _ in events if topic == "watcher.bad.spawn"]
        assert len(spawns) == 4                        # first start + max_retry respawns
        gaps = [b - a for a, b in zip(spawns, spawns[1:])]
        assert gaps[0] < gaps[1] < gaps[2]             # exponential backoff
        assert gaps[0] == pytest.approx(0.11, abs=0.05)
        assert bad.describe().startswith("fatal (exited 4 times in ")
        assert bad.describe().endswith(": exit code 1)")
        state_events = [p for _, t, p in events if t == "watcher.bad.state"]
        assert state_events[-1]["state"] == "fatal" and "exit code 1" in state_events[-1]["reason"]
        assert arbiter.get("good").state is WatcherState.ACTIVE and len(arbiter.get("good").pids()) == 1
        await arbiter.quit()
    run_virtual(main())


def test_max_retry_minus_one_retries_forever_without_starving_the_loop():
    async def main():
        arbiter, fake, events = make("""
            [watcher:bad]
            cmd = crash
            max_retry = -1
            backoff_max = 2
        """)
        fake.behaviour = lambda proc: proc.exit_after(0, 1)
        await arbiter.start()
        await asyncio.sleep(600)
        bad = arbiter.get("bad")
        assert bad.state is WatcherState.ACTIVE
        n = len(topics(events, "bad.spawn"))
        assert 250 < n < 400                           # about one per backoff_max (+-20 %)
        await arbiter.quit()
    run_virtual(main())


def test_spawn_failure_is_retried_then_fatal_alone():
    async def main():
        arbiter, fake, _ = make("""
            [watcher:missing]
            cmd = /nonexistent
            max_retry = 2
            [watcher:ok]
            cmd = fine
        """)

        def behave(proc):
            if proc.spec.argv[0] == "/nonexistent":
                raise SpawnError("command not found: '/nonexistent'")
        fake.behaviour = behave
        await arbiter.start()
        missing = arbiter.get("missing")
        await until(lambda: missing.state is WatcherState.FATAL)
        assert "failed to start 3 times" in missing.reason
        assert "command not found: '/nonexistent'" in missing.reason
        assert arbiter.get("ok").state is WatcherState.ACTIVE
        await arbiter.quit()
    run_virtual(main())


def test_stop_sends_the_stop_signal_then_sigkill_after_graceful_timeout():
    async def main():
        arbiter, fake, events = make("""
            [watcher:w]
            cmd = stubborn
            stop_signal = INT
            graceful_timeout = 7
        """)
        fake.behaviour = lambda proc: setattr(proc, "stubborn", True)
        await arbiter.start()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await arbiter.get("w").stop()
        assert loop.time() - t0 == pytest.approx(7, abs=0.1)
        proc = fake.spawned[0]
        assert proc.signals[0] == signal.SIGINT and signal.SIGKILL in proc.signals
        assert not proc.alive
        assert topics(events, ".kill") == ["watcher.w.kill", "watcher.w.kill"]
        assert topics(events)[-1] == "watcher.w.stop"
        assert arbiter.get("w").state is WatcherState.STOPPED
        await arbiter.quit()
    run_virtual(main())


def test_decr_stops_the_oldest_and_incr_adds():
    async def main():
        arbiter, fake, _ = make(ONE)
        await arbiter.start()
        web = arbiter.get("web")
        await asyncio.sleep(1)
        assert await web.set_numprocesses(5) == 5
        assert len(web.pids()) == 5
        oldest = sorted(fake.spawned, key=lambda p: p.spawned_at)[:3]
        assert await web.set_numprocesses(2) == 2
        assert len(web.pids()) == 2
        assert sum(not p.alive for p in oldest) == 3
        await arbiter.quit()
    run_virtual(main())


def test_restart_policy_never_and_on_failure():
    async def main():
        arbiter, fake, events = make("""
            [watcher:once]
            cmd = job
            respawn = false
            [watcher:onfail]
            cmd = job2
            restart_policy = on-failure
            numprocesses = 2
        """)
        await arbiter.start()
        once, onfail = arbiter.get("once"), arbiter.get("onfail")
        await asyncio.sleep(5)
        fake.processes[once.pids()[0]].exit(0)
        await until(lambda: once.state is WatcherState.STOPPED)
        assert len(topics(events, "once.spawn")) == 1
        a, b = onfail.pids()
        fake.processes[a].exit(0)          # success: not respawned
        fake.processes[b].exit(2)          # failure: respawned
        await asyncio.sleep(0.1)
        assert len(onfail.pids()) == 1 and onfail.pids() != [b]
        assert sorted(str(p.state) for p in onfail.slots.values()) == sorted(
            ["exited", "running"])
        await arbiter.quit()
    run_virtual(main())


def test_stop_preempts_a_slow_start_and_nothing_is_left_running():
    async def main():
        arbiter, fake, _ = make("""
            [watcher:slow]
            cmd = x
            numprocesses = 5
            warmup_delay = 10
        """)
        w = arbiter.get("slow")
        loop = asyncio.get_running_loop()
        arbiter._loop = loop
        fake.start_reaping(loop, arbiter._on_exit)
        start = loop.create_task(w.start())
        await asyncio.sleep(15)
        await w.stop()
        with pytest.raises(WatcherError, match="interrupted by a stop"):
            await start
        assert len(fake.spawned) == 2 and fake.alive() == []
        assert w.state is WatcherState.STOPPED
    run_virtual(main())


def test_operations_on_one_watcher_serialize_and_on_two_watchers_overlap():
    async def main():
        arbiter, fake, _ = make("""
            [watcher:a]
            cmd = x
            numprocesses = 2
            warmup_delay = 4
            autostart = false
            [watcher:b]
            cmd = y
            numprocesses = 2
            warmup_delay = 4
            autostart = false
        """)
        await arbiter.start()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.gather(arbiter.get("a").start(), arbiter.get("b").start())
        assert loop.time() - t0 == pytest.approx(4, abs=0.1)         # overlapped
        t0 = loop.time()
        a = arbiter.get("a")
        reload = loop.create_task(a.reload(sequential=True))
        await asyncio.sleep(0)
        resized = loop.create_task(a.set_numprocesses(3))
        await asyncio.sleep(1)
        assert not resized.done() and len(a.pids()) == 2            # queued behind the reload
        await asyncio.gather(reload, resized)                       # none refused
        assert loop.time() - t0 == pytest.approx(4, abs=0.1)
        assert len(a.pids()) == 3
        await arbiter.quit()
    run_virtual(main())


def test_graceful_reload_starts_new_processes_before_stopping_old_ones():
    async def main():
        arbiter, fake, events = make(ONE)
        await arbiter.start()
        web = arbiter.get("web")
        old = web.pids()
        events.clear()
        info = await web.reload()
        assert info["stopped"] == old and len(info["started"]) == 3
        order = [t.rsplit(".", 1)[1] for _, t, _ in events if t.rsplit(".", 1)[1] in ("spawn", "kill")]
        assert order == ["spawn"] * 3 + ["kill"] * 3
        assert set(web.pids()).isdisjoint(old)
        await arbiter.quit()
    run_virtual(main())


def test_max_age_replaces_processes():
    async def main():
        arbiter, fake, _ = make("""
            [watcher:aging]
            cmd = x
            max_age = 100
            max_age_variance = 10
        """)
        await arbiter.start()
        w = arbiter.get("aging")
        first = w.pids()[0]
        await asyncio.sleep(99)
        assert w.pids() == [first]
        await asyncio.sleep(12)
        assert len(w.pids()) == 1 and w.pids() != [first]
        assert not fake.processes[first].alive
        await arbiter.quit()
    run_virtual(main())


def test_priority_orders_start_and_stop():
    async def main():
        arbiter, fake, events = make("""
            [watcher:low]
            cmd = low
            priority = 1
            [watcher:high]
            cmd = high
            priority = 10
            [watcher:lazy]
            cmd = lazy
            autostart = false
        """)
        await arbiter.start()
        assert [p.spec.argv[0] for p in fake.spawned] == ["high", "low"]
        await arbiter.quit()
        stops = [t for t in topics(events, ".stop") if t.startswith("watcher.")]
        assert stops == ["watcher.low.stop", "watcher.high.stop"]
    run_virtual(main())


def test_singleton_ignores_resizes():
    async def main():
        arbiter, fake, _ = make("""
            [watcher:one]
            cmd = x
            singleton = true
        """)
        await arbiter.start()
        assert await arbiter.get("one").set_numprocesses(4) == 1
        assert len(arbiter.get("one").pids()) == 1
        await arbiter.quit()
    run_virtual(main())


def test_sigterm_is_a_quit_that_preempts_a_start_in_flight():
    async def main():
        arbiter, fake, events = make("""
            [watcher:slow]
            cmd = x
            numprocesses = 10
            warmup_delay = 5
        """)
        serve = asyncio.get_running_loop().create_task(arbiter.serve())
        await asyncio.sleep(12)
        arbiter.handle_signal(signal.SIGTERM)
        code = await serve
        assert code == 0
        assert fake.alive() == [] and 2 <= len(fake.spawned) <= 4
        assert "arbiter.n1.stop" in topics(events)
    run_virtual(main())
