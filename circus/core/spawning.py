"""Spawning one process of a watcher: the OS seam's ``spawn`` with everything around it (its
pipes and readiness probe, the lineage marker, its records in the watcher and the arbiter)."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from circus.core.command import build_spec, spawn_values
from circus.core.process import Process
from circus.core.states import ProcessEvent
from circus.errors import SpawnError
from circus.records import replace

__all__ = ["spawn_slot"]

log = logging.getLogger("circus")


def spawn_slot(w: Any, p: Process) -> None:
    """Fork and exec the process of slot ``p`` of watcher ``w``: its pipes and probe set up, its
    state moved to starting (or running when it has no probe), every record of it made at once;
    a spawn that fails leaves the slot in backoff with the reason (``spawn_error``)."""
    loop = asyncio.get_running_loop()
    now = loop.time()
    io = None
    try:
        context = w.host.spawn_context(w)
        io = w._make_io(w.cfg.ready, spawn_values(w.cfg, p.wid, context["sockets"]))
        spec = build_spec(w.cfg, wid=p.wid, extra_env=io.env if io else None, **context)
        spec = replace(spec, env={**spec.env, **w.host.child_env()})
        if io is not None:
            spec = replace(spec, stdout_fd=io.stdout_w, stderr_fd=io.stderr_w)
        pid = w.host.os.spawn(spec)
    except SpawnError as exc:
        if io is not None:
            io.abandon()
        log.error("%s: could not spawn process %d: %s", w.name, p.wid, exc)
        p.spawn_error = str(exc)
        w._after_exit(p, None, None, str(exc))
        return
    p.spawn_error = ""
    w.host.track(pid, io.read_ends if io is not None else {})
    if io is not None:
        io.spawned(pid, w.host.pump)
    p.io, p.abort_reason = io, ""
    p.start_ticks, p.adopted = None, False
    probed = io is not None and io.probe is not None
    p.ready_waiter = None              # without a probe a process is ready once spawned
    if probed:
        p.ready_waiter = loop.create_future()
        p.ready_waiter.add_done_callback(lambda f: f.cancelled() or f.exception())
    p.apply(ProcessEvent.SPAWN)
    p.pid, p.started_at, p.create_time = pid, now, time.time()
    p.spawns += 1
    if p.spawns > 1:
        w.restarts += 1
    p.stop_deadline, p.retry_at = None, None
    p.exited = loop.create_future()
    p.expires_at = None
    if w.cfg.max_age > 0:
        p.expires_at = now + w.cfg.max_age + w.host.random() * w.cfg.max_age_variance
        w._timer(p.expires_at)
    w._by_pid[pid] = p
    w.host.claim(pid, w)
    log.debug("%s: spawned process %d (wid %d)", w.name, pid, p.wid)
    w.host.emit(w.name, "spawn", {"process_pid": pid, "time": p.create_time})
    if not probed:
        p.apply(ProcessEvent.READY)
    else:
        w._own(loop.create_task(w._become_ready(p, pid)))
