"""Tier 1: the state document (circus.core.persist) and the lineage marker, without processes."""
from __future__ import annotations

import json
import logging
import os
import time
from types import SimpleNamespace

import pytest

from circus.config.options import watcher_from_options
from circus.core.lineage import Lineage, read_marker, start_ticks
from circus.core.persist import VERSION, StateFile, plan_restore, snapshot


def cfg(name: str, cmd: str = "sleep 1", **options):
    return watcher_from_options(name, cmd, None, options, {})


def watcher(config, numprocesses=None, state="active", procs=()):
    slots = {wid: SimpleNamespace(wid=wid, pid=pid, start_ticks=ticks, create_time=1.0, live=live)
             for wid, pid, ticks, live in procs}
    return SimpleNamespace(name=config.name, cfg=config, state=state, slots=slots,
                           numprocesses=config.numprocesses if numprocesses is None else numprocesses)


FILE = [cfg("web", numprocesses=2, graceful_timeout=3), cfg("db"), cfg("gone")]


def test_snapshot_records_only_what_differs_from_the_file():
    now = [watcher(cfg("web", numprocesses=2, graceful_timeout=7), numprocesses=5,
                   procs=[(1, 100, 11, True), (2, 101, 12, True), (3, 102, None, True),
                          (4, 103, 13, False)]),
           watcher(FILE[1], state="stopped"),
           watcher(cfg("extra", "sleep 9", numprocesses=2))]
    doc = snapshot("n1", "abc.1.2", FILE, now)
    assert doc["version"] == VERSION and doc["node"] == "n1" and doc["lineage"] == "abc.1.2"
    assert doc["set"] == {"web": {"graceful_timeout": [3, 7]}}
    assert doc["added"]["extra"]["cmd"] == "sleep 9" and doc["added"]["extra"]["numprocesses"] == 2
    assert doc["removed"] == ["gone"]
    assert doc["numprocesses"] == {"web": 5, "db": 1, "extra": 2}
    assert doc["stopped"] == ["db"]
    # a slot without start ticks (gone before it could be read) or not live is not recorded
    assert [(r["pid"], r["wid"], r["ticks"]) for r in doc["processes"]["web"]] == \
        [(100, 1, 11), (101, 2, 12)]
    json.dumps(doc)                                   # JSON all the way


def test_restore_applies_the_runtime_changes_on_top_of_the_file():
    now = [watcher(cfg("web", numprocesses=2, graceful_timeout=7), numprocesses=5,
                   procs=[(1, 100, 11, True)]),
           watcher(FILE[1], state="stopped"), watcher(cfg("extra", "sleep 9"))]
    doc = json.loads(json.dumps(snapshot("n1", "", FILE, now)))
    plan = plan_restore(doc, FILE, {})
    by = {c.name: c for c in plan.watchers}
    assert sorted(by) == ["db", "extra", "web"]
    assert by["web"].graceful_timeout == 7 and by["extra"].cmd == "sleep 9"
    assert plan.numprocesses["web"] == 5
    assert plan.stopped == {"db"}
    assert plan.processes["web"][0]["pid"] == 100
    assert plan.notes == []


def test_the_file_wins_where_it_changed_since_the_runtime_set():
    doc = {"version": 1, "set": {"web": {"graceful_timeout": [3, 7], "max_retry": [5, 9]}}}
    edited = [cfg("web", numprocesses=2, graceful_timeout=4)]
    plan = plan_restore(doc, edited, {})
    assert plan.watchers[0].graceful_timeout == 4          # edited in the file: kept
    assert plan.watchers[0].max_retry == 9                 # untouched in the file: restored
    assert any("graceful_timeout changed in the file" in n for n in plan.notes)


def test_an_added_watcher_the_file_now_defines_is_the_files():
    doc = {"version": 1, "added": {"db": {"cmd": "sleep 77"}}}
    plan = plan_restore(doc, FILE, {})
    assert next(c for c in plan.watchers if c.name == "db").cmd == "sleep 1"
    assert any("the file wins" in n for n in plan.notes)


@pytest.mark.parametrize("doc", [
    {"version": 1, "added": {"x": {"cmd": "sleep 1", "numprocesses": "many"}}},
    {"version": 1, "added": {"x": "not an object"}, "set": {"web": "nope"}},
    {"version": 1, "set": {"web": {"graceful_timeout": "bad pair"}}},
    {"version": 1, "numprocesses": {"web": -3, "db": "x", "nobody": 4}},
    {"version": 1, "processes": {"web": [{"pid": "1"}, {"pid": 1, "wid": 1, "ticks": 1},
                                         {"pid": 50, "wid": 0, "ticks": 1}, None, 7,
                                         {"pid": True, "wid": 1, "ticks": 1}],
                                 "nobody": [{"pid": 50, "wid": 1, "ticks": 1}]}},
    {"version": 1, "removed": ["GONE", 7], "stopped": ["nobody"]},
])
def test_a_damaged_document_never_raises_and_restores_nothing_wrong(doc):
    plan = plan_restore(doc, FILE, {})
    names = {c.name for c in plan.watchers}
    assert {"web", "db"} <= names and "x" not in names
    assert all(v >= 0 for v in plan.numprocesses.values())
    assert set(plan.numprocesses) <= {"web", "db", "gone"}
    assert plan.processes.get("web", []) == [] and "nobody" not in plan.processes
    assert plan.stopped <= names


def test_removed_watchers_stay_removed():
    plan = plan_restore({"version": 1, "removed": ["GONE"]}, FILE, {})
    assert "gone" not in {c.name for c in plan.watchers}


# -- the file -------------------------------------------------------------------------------------

def test_state_file_round_trip_and_atomic_replace(tmp_path):
    f = StateFile(str(tmp_path / "s.json"))
    assert f.load() is None
    assert f.write_now({"version": VERSION, "processes": {}})
    assert f.load() == {"version": VERSION, "processes": {}}
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]       # no temporary file left
    assert (tmp_path / "s.json").stat().st_mode & 0o777 == 0o600


def test_a_corrupt_or_foreign_state_file_is_not_used(tmp_path, caplog):
    path = tmp_path / "s.json"
    path.write_text("{not json")
    with caplog.at_level(logging.ERROR, "circus"):
        assert StateFile(str(path)).load() is None
    assert "not valid JSON" in caplog.text
    assert not path.exists() and list(tmp_path.glob("s.json.corrupt-*"))
    path.write_text(json.dumps({"version": 99}))
    assert StateFile(str(path)).load() is None
    assert path.exists()                       # another version: left for the tool that wrote it


def test_an_unwritable_state_file_is_reported_once_and_recovers(tmp_path, caplog):
    if os.geteuid() == 0:
        target = tmp_path / "missing-dir" / "s.json"       # root writes anywhere: no dir at all
    else:
        (tmp_path / "ro").mkdir(mode=0o500)
        target = tmp_path / "ro" / "s.json"
    f = StateFile(str(target))
    with caplog.at_level(logging.ERROR, "circus"):
        assert not f.write_now({"version": VERSION})
        assert not f.write_now({"version": VERSION})
    assert caplog.text.count("cannot write state_file") == 1
    target.parent.mkdir(exist_ok=True, mode=0o700)
    target.parent.chmod(0o700)
    assert f.write_now({"version": VERSION}) and f.load() == {"version": VERSION}


# -- the lineage marker ---------------------------------------------------------------------------

def test_lineage_is_per_configuration_file_and_round_trips(tmp_path):
    a = Lineage.for_config(str(tmp_path / "a.ini"))
    b = Lineage.for_config(str(tmp_path / "b.ini"))
    assert a.node_id != b.node_id and a.pid == b.pid == os.getpid()
    assert Lineage.parse(a.value) == a and a.alive()
    assert Lineage.parse("x.1") is None and Lineage.parse("x.y.z") is None
    assert not Lineage(a.node_id, a.pid, a.ticks + 1).alive()       # same pid, other start


def test_start_ticks_and_markers_of_real_processes(tmp_path):
    import subprocess
    child = subprocess.Popen(["sleep", "30"], env={"CIRCUS_ARBITER": "n.1.2", "PATH": os.environ["PATH"]})
    try:
        ticks = start_ticks(child.pid)
        assert isinstance(ticks, int) and ticks >= start_ticks(os.getpid())
        deadline = time.monotonic() + 5      # /proc/PID/environ is empty for a moment after exec
        while read_marker(child.pid) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert read_marker(child.pid) == "n.1.2"
        assert read_marker(os.getpid()) is None or "CIRCUS_ARBITER" in os.environ
    finally:
        child.kill()
        child.wait()
    assert start_ticks(child.pid) is None


def test_processes_of_another_boot_are_not_adopted():
    doc = {"version": 1, "boot_id": "old-boot", "processes": {"db": [{"pid": 50, "wid": 1, "ticks": 9}]}}
    plan = plan_restore(doc, FILE, {}, boot="this-boot")
    assert plan.processes == {} and any("another boot" in n for n in plan.notes)
    assert plan_restore(doc, FILE, {}, boot="old-boot").processes["db"][0]["pid"] == 50
