"""Restart policy and backoff: what to do when a process exits. Pure functions.

A process that exits before ``min_uptime`` seconds (or fails to spawn) counts as a *failed start*.
Consecutive failed starts of a slot grow its respawn delay exponentially from ``backoff_initial``
up to ``backoff_max``, with +-20 % jitter so that many crashing slots do not respawn in lockstep.
A process that ran at least ``min_uptime`` resets the count and is respawned at once. When the
count exceeds ``max_retry`` (``-1`` = never give up) the slot gives up and the watcher is fatal.

Whether an exit is respawned at all is the ``restart_policy``: ``always``, ``on-failure`` (exit
code other than 0, or killed by a signal) or ``never``.
"""
from __future__ import annotations

import enum
import math

from circus.records import Record, record

__all__ = ["RestartPolicy", "Decision", "after_exit", "backoff_delay", "describe_exit", "batch_size"]


class RestartPolicy(enum.Enum):
    ALWAYS = "always"
    ON_FAILURE = "on-failure"
    NEVER = "never"


class Verdict(enum.Enum):
    RESPAWN = "respawn"
    FINISH = "finish"
    GIVE_UP = "give_up"


@record
class Decision(Record):
    verdict: Verdict
    failures: int          # the slot's new count of consecutive failed starts
    delay: float = 0.0     # seconds before the respawn (RESPAWN only)


def backoff_delay(failures: int, initial: float, maximum: float, jitter: float) -> float:
    """Delay before respawn number ``failures`` (1-based); ``jitter`` in [0, 1) spreads +-20 %."""
    if failures <= 0:
        return 0.0
    base = min(maximum, initial * (2 ** (failures - 1)))
    return max(0.0, base * (0.8 + 0.4 * jitter))


def after_exit(
    *,
    exit_code: int | None,
    uptime: float | None,
    failures: int,
    policy: RestartPolicy,
    min_uptime: float,
    max_retry: int,
    backoff_initial: float,
    backoff_max: float,
    jitter: float,
) -> Decision:
    """Decide the fate of a slot whose process exited (``exit_code``) or never spawned (None).

    ``exit_code`` follows ``os.waitstatus_to_exitcode``: negative means killed by that signal.
    ``uptime`` is None when the spawn itself failed.
    """
    failed_start = uptime is None or uptime < min_uptime
    count = failures + 1 if failed_start else 0
    if exit_code is not None:
        if policy is RestartPolicy.NEVER:
            return Decision(Verdict.FINISH, count)
        if policy is RestartPolicy.ON_FAILURE and exit_code == 0:
            return Decision(Verdict.FINISH, count)
    if max_retry >= 0 and count > max_retry:
        return Decision(Verdict.GIVE_UP, count)
    return Decision(Verdict.RESPAWN, count, backoff_delay(count, backoff_initial, backoff_max, jitter))


def describe_exit(exit_code: int | None) -> str:
    """Human words for an exit code as returned by ``os.waitstatus_to_exitcode``."""
    import signal

    if exit_code is None:
        return "did not start"
    if exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        return f"killed by {name}"
    return f"exit code {exit_code}"


def batch_size(spec: int | str | None, total: int) -> int:
    """Processes replaced per step of a rolling restart: ``N``, ``"N%"`` of ``total``, or all."""
    if total <= 0:
        return 1
    if spec is None:
        return total
    if isinstance(spec, str):
        text = spec.strip()
        if text.endswith("%"):
            percent = float(text[:-1])
            if not 0 < percent <= 100:
                raise ValueError(f"batch {spec!r}: a percentage must be in (0, 100]")
            return max(1, min(total, math.ceil(total * percent / 100)))
        spec = int(text)
    if spec < 1:
        raise ValueError(f"batch {spec!r}: must be at least 1")
    return min(total, spec)
