"""A watcher's process slots by worker id, with the lowest free ``wid`` found in O(log n).

``$(circus.wid)`` is 1 to numprocesses, the lowest free one first (0.19's numbering): a slot
that goes away gives its wid back, and the next new slot takes the lowest wid given back, or
the next never used. Pure: no loop, no I/O.
"""
from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping

from circus.core.process import Process
from circus.protocol.limits import MAX_NUMPROCESSES_CEILING

__all__ = ["SlotTable", "MAX_WID"]

#: the largest wid a slot may have (twice the largest numprocesses: replacements of a rollout
#: take new wids while the old ones still run)
MAX_WID = 2 * MAX_NUMPROCESSES_CEILING + 1


class SlotTable(Mapping[int, Process]):
    """``wid -> Process``; changed only through :meth:`new`, :meth:`put` and :meth:`remove`."""

    def __init__(self) -> None:
        self._slots: dict[int, Process] = {}
        self._free: list[int] = []          # wids given back, below _next (a heap)
        self._next = 1                      # lowest wid never handed out

    def __getitem__(self, wid: int) -> Process:
        return self._slots[wid]

    def __iter__(self) -> Iterator[int]:
        return iter(self._slots)

    def __len__(self) -> int:
        return len(self._slots)

    def new(self) -> Process:
        """A new, stopped slot with the lowest free wid."""
        while self._free:
            wid = heapq.heappop(self._free)
            if wid not in self._slots:
                break
        else:
            wid = self._next
            while wid in self._slots:          # only after put() of wids above _next
                wid += 1
            self._next = wid + 1
        p = self._slots[wid] = Process(wid)
        return p

    def put(self, p: Process) -> None:
        """Take ``p`` under its own wid (an adopted process keeps the wid it had)."""
        if p.wid in self._slots and self._slots[p.wid] is not p:
            raise ValueError(f"wid {p.wid} is taken")
        if not 1 <= p.wid <= MAX_WID:
            raise ValueError(f"wid {p.wid} is out of range (1 to {MAX_WID})")
        for wid in range(self._next, p.wid):    # the wids skipped stay free
            heapq.heappush(self._free, wid)
        self._next = max(self._next, p.wid + 1)
        self._slots[p.wid] = p

    def remove(self, p: Process) -> None:
        """Forget ``p`` (if it is still the slot's process) and give its wid back."""
        if self._slots.get(p.wid) is p:
            del self._slots[p.wid]
            heapq.heappush(self._free, p.wid)
