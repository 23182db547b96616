"""Tier 1: the transition tables and the restart policy (pure)."""
import itertools

import pytest

from circus.core.policy import RestartPolicy, Verdict, after_exit, backoff_delay, describe_exit
from circus.core.states import (PROCESS_TRANSITIONS, WATCHER_TRANSITIONS, ProcessEvent, ProcessState,
                                WatcherEvent, WatcherState, apply, to_dot, to_rst_table)
from circus.errors import IllegalTransition


@pytest.mark.parametrize("state,event", list(itertools.product(ProcessState, ProcessEvent)))
def test_process_table_is_total_or_raises(state, event):
    if (state, event) in PROCESS_TRANSITIONS:
        assert apply(PROCESS_TRANSITIONS, state, event) is PROCESS_TRANSITIONS[(state, event)]
    else:
        with pytest.raises(IllegalTransition) as info:
            apply(PROCESS_TRANSITIONS, state, event, "process 1")
        assert str(event) in str(info.value) and str(state) in str(info.value)


@pytest.mark.parametrize("state,event", list(itertools.product(WatcherState, WatcherEvent)))
def test_watcher_table_is_total_or_raises(state, event):
    if (state, event) in WATCHER_TRANSITIONS:
        assert apply(WATCHER_TRANSITIONS, state, event) is WATCHER_TRANSITIONS[(state, event)]
    else:
        with pytest.raises(IllegalTransition):
            apply(WATCHER_TRANSITIONS, state, event)


def test_every_process_state_is_reachable_and_can_be_left():
    reached = {ProcessState.STOPPED} | set(PROCESS_TRANSITIONS.values())
    assert reached == set(ProcessState)
    sources = {src for src, _ in PROCESS_TRANSITIONS}
    assert sources == set(ProcessState)


def test_a_live_process_cannot_be_discarded_or_respawned():
    for state in (ProcessState.STARTING, ProcessState.RUNNING, ProcessState.STOPPING):
        with pytest.raises(IllegalTransition):
            apply(PROCESS_TRANSITIONS, state, ProcessEvent.DISCARD)
        with pytest.raises(IllegalTransition):
            apply(PROCESS_TRANSITIONS, state, ProcessEvent.SPAWN)


def test_diagram_and_table_render_every_transition():
    dot = to_dot(PROCESS_TRANSITIONS, "process")
    rst = to_rst_table(WATCHER_TRANSITIONS)
    assert dot.count("->") == len(PROCESS_TRANSITIONS)
    assert rst.count("   * - ") == len(WATCHER_TRANSITIONS) + 1


def decide(**kw):
    base = dict(exit_code=1, uptime=0.1, failures=0, policy=RestartPolicy.ALWAYS, min_uptime=1.0,
                max_retry=5, backoff_initial=0.1, backoff_max=30.0, jitter=0.5)
    base.update(kw)
    return after_exit(**base)


def test_a_healthy_process_is_respawned_at_once_and_resets_the_count():
    d = decide(uptime=5.0, failures=4)
    assert d == after_exit(exit_code=1, uptime=5.0, failures=4, policy=RestartPolicy.ALWAYS,
                           min_uptime=1.0, max_retry=5, backoff_initial=0.1, backoff_max=30.0,
                           jitter=0.5)
    assert (d.verdict, d.failures, d.delay) == (Verdict.RESPAWN, 0, 0.0)


def test_fast_crashes_back_off_exponentially_up_to_the_max():
    delays = [decide(failures=n, max_retry=-1).delay for n in range(12)]
    assert delays[:4] == pytest.approx([0.1, 0.2, 0.4, 0.8])
    assert delays[-1] == pytest.approx(30.0)
    assert all(b >= a for a, b in zip(delays, delays[1:]))


def test_jitter_spreads_twenty_percent_each_way():
    assert backoff_delay(3, 0.1, 30, 0.0) == pytest.approx(0.32)
    assert backoff_delay(3, 0.1, 30, 0.999999) == pytest.approx(0.48, rel=1e-4)
    assert backoff_delay(0, 0.1, 30, 0.5) == 0.0


def test_give_up_after_max_retry_consecutive_failed_starts():
    assert decide(failures=4).verdict is Verdict.RESPAWN     # 5th failure: still allowed
    assert decide(failures=5).verdict is Verdict.GIVE_UP     # 6th: over max_retry=5
    assert decide(failures=1000, max_retry=-1).verdict is Verdict.RESPAWN
    assert decide(failures=0, max_retry=0).verdict is Verdict.GIVE_UP


def test_spawn_failure_counts_as_failed_start():
    d = decide(exit_code=None, uptime=None, failures=2)
    assert (d.verdict, d.failures) == (Verdict.RESPAWN, 3)


@pytest.mark.parametrize("policy,code,verdict", [
    (RestartPolicy.NEVER, 1, Verdict.FINISH),
    (RestartPolicy.NEVER, 0, Verdict.FINISH),
    (RestartPolicy.ON_FAILURE, 0, Verdict.FINISH),
    (RestartPolicy.ON_FAILURE, 3, Verdict.RESPAWN),
    (RestartPolicy.ON_FAILURE, -9, Verdict.RESPAWN),
    (RestartPolicy.ALWAYS, 0, Verdict.RESPAWN),
])
def test_restart_policy(policy, code, verdict):
    assert decide(policy=policy, exit_code=code, uptime=10.0).verdict is verdict


def test_describe_exit():
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(None) == "did not start"
