"""Tier 1: a watcher's slot table hands out the lowest free wid without scanning."""
from __future__ import annotations

import pytest

from circus.core.process import Process
from circus.core.slots import MAX_WID, SlotTable


def test_wids_are_dense_and_the_lowest_free_one_is_reused():
    t = SlotTable()
    made = [t.new() for _ in range(5)]
    assert [p.wid for p in made] == [1, 2, 3, 4, 5]
    t.remove(made[3])
    t.remove(made[1])
    assert [t.new().wid, t.new().wid, t.new().wid] == [2, 4, 6]
    assert sorted(t) == [1, 2, 3, 4, 5, 6] and len(t) == 6


def test_removing_a_replaced_slot_does_nothing():
    t = SlotTable()
    p = t.new()
    t.remove(p)
    q = t.new()
    assert q.wid == p.wid
    t.remove(p)                     # p is no longer the slot's process
    assert t[q.wid] is q


def test_put_keeps_an_adopted_wid_and_frees_the_ones_below():
    t = SlotTable()
    t.put(Process(4))
    assert [t.new().wid for _ in range(4)] == [1, 2, 3, 5]
    with pytest.raises(ValueError, match="taken"):
        t.put(Process(2))
    with pytest.raises(ValueError, match="out of range"):
        t.put(Process(MAX_WID + 1))
    with pytest.raises(ValueError, match="out of range"):
        t.put(Process(0))


def test_two_hundred_thousand_slots_cost_no_scan():
    """The old allocator scanned every wid for each new slot: quadratic, which froze circusd
    on a huge numprocesses. This one is O(log n) per slot: 200,000 of them take a moment."""
    t = SlotTable()
    slots = [t.new() for _ in range(200_000)]
    assert slots[-1].wid == 200_000
    for p in slots[::2]:
        t.remove(p)
    assert t.new().wid == 1 and len(t) == 100_001
