"""A circusd started again: take back what an earlier one left running, end the rest.

:class:`Restore` holds what the state file recorded about processes and what the keeper handed
over (their pipes); :meth:`Restore.adopt` re-adopts each recorded process that still runs *and* is
the same process (same start time in clock ticks: a reused pid is another process), then
:func:`sweep_strays` ends every other live process marked by a dead circusd of this node: the
processes nobody supervises any more (``--fresh``, no state file, a process started after the
last write of the state). Descendants that stayed in an adopted process's group or session are
part of it and are left alone.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field
from typing import Any

from circus.core.keeper import Handover
from circus.core.lineage import Lineage, running, scan, start_ticks

__all__ = ["Restore", "sweep_strays", "STRAY_GRACE"]

log = logging.getLogger("circus")

#: seconds a stray process gets between SIGTERM and SIGKILL
STRAY_GRACE = 2.0


@dataclass
class Restore:
    handover: Handover
    processes: dict[str, list[dict]] = field(default_factory=dict)   # lower-case watcher name

    def adopt(self, arbiter: Any) -> set[int]:
        """Adopt what still runs; return the adopted pids. Pipes nobody claims are closed."""
        adopted: set[int] = set()
        for key, records in self.processes.items():
            watcher = arbiter.watchers.get(key)
            if watcher is None:
                continue
            wids: set[int] = set()
            for record in records:
                pid, wid = record["pid"], record["wid"]
                if wid in wids or pid in adopted:
                    continue
                if start_ticks(pid) != record["ticks"]:
                    log.info("%s: recorded process %d is gone (or its pid was reused): not adopted",
                             watcher.name, pid)
                    continue
                watcher.adopt(wid, pid, record["ticks"], float(record.get("create_time") or 0.0),
                              self.handover.pipes.pop(pid, None))
                wids.add(wid)
                adopted.add(pid)
        if adopted:
            log.info("adopted %d running process(es) of the previous circusd", len(adopted))
        self.handover.close()
        return adopted


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


async def sweep_strays(os_: Any, me: Lineage, adopted: set[int]) -> int:
    """End the processes of dead instances of this node that were not adopted; return how many."""
    loop = asyncio.get_running_loop()
    strays = [s for s in scan(me)
              if s.pid not in adopted and s.pgid not in adopted and _session(s.pid) not in adopted]
    if not strays:
        return 0
    log.warning("ending %d process(es) left running by a previous circusd of this node (pids %s)",
                len(strays), " ".join(str(s.pid) for s in strays[:20]))
    for stray in strays:
        os_.kill(stray.pid, signal.SIGTERM)
    deadline = loop.time() + STRAY_GRACE
    left = strays
    while left and loop.time() < deadline:
        await asyncio.sleep(0.05)
        left = [s for s in left if start_ticks(s.pid) == s.ticks and running(s.pid)]
    for stray in left:
        if start_ticks(stray.pid) == stray.ticks:
            os_.kill(stray.pid, signal.SIGKILL)
    return len(strays)

