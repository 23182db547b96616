"""``[circus] state_file``: what circusd must not forget when it restarts.

The state is a JSON document written atomically (temporary file in the same directory, fsync,
rename) a moment after anything changed (:data:`DEBOUNCE`): the runtime changes of the
configuration and the processes that run. It says what circusd runs, and as whom: it is read only
when it is a regular file (never through a symbolic link, nor through a link in a directory that
others can change), with one link, owned by root or circusd's user, writable by nobody else; it
is written mode 0600 (see :mod:`circus.security.safepath`).

* ``added``: watchers created with ``add`` (every option), re-created at the next start unless the
  file now defines a watcher of that name (the file wins);
* ``set``: options changed with ``set`` on a watcher of the file, each as ``[file value, runtime
  value]``: restored only if the file still says what it said then (a file edited since wins);
* ``removed``: watchers of the file removed with ``rm``;
* ``numprocesses`` and ``stopped`` per watcher;
* ``processes``: ``{watcher: [{pid, wid, ticks, create_time}]}``, the identity of each live
  process (pid + start time in clock ticks, see :mod:`circus.core.lineage`).

:func:`snapshot` and :func:`plan_restore` are pure (no I/O but the reads of ``/proc`` done by the
caller); :class:`StateFile` does the file, writing it from one thread off the event loop.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from circus.config import ConfigError, WatcherConfig
from circus.config.options import watcher_from_options
from circus.config.view import watcher_options
from circus.security.safepath import UnsafePath, read_private, replace_private, walk

__all__ = ["StateFile", "snapshot", "plan_restore", "RestorePlan", "DEBOUNCE", "VERSION"]

log = logging.getLogger("circus")

VERSION = 1
#: seconds between a change and the write that records it (changes in between are coalesced)
DEBOUNCE = 0.2
#: bytes of a state file circusd reads (a larger one is not circusd's: ignored)
MAX_STATE_BYTES = 64 * 1024 * 1024


def _options(cfg: WatcherConfig) -> dict[str, Any]:
    return {k: v for k, v in watcher_options(cfg).items() if v is not None}


def snapshot(node: str, lineage: str, file_watchers: Iterable[WatcherConfig],
             watchers: Iterable[Any], boot: str = "") -> dict:
    """The state document of now. ``watchers`` are the arbiter's (``cfg``, ``numprocesses``,
    ``state``, ``slots``); a slot's ``start_ticks`` must be filled in by the caller."""
    base = {cfg.name.lower(): cfg for cfg in file_watchers}
    added: dict[str, dict] = {}
    changed: dict[str, dict] = {}
    counts: dict[str, int] = {}
    stopped: list[str] = []
    processes: dict[str, list[dict]] = {}
    present = set()
    for w in watchers:
        key = w.name.lower()
        present.add(key)
        now = _options(w.cfg)
        origin = base.get(key)
        if origin is None:
            added[w.name] = now
        else:
            then = _options(origin)
            diff = {k: [then.get(k), v] for k, v in now.items() if then.get(k) != v}
            diff.update({k: [v, None] for k, v in then.items() if k not in now})
            if diff:
                changed[w.name] = diff
        counts[w.name] = w.numprocesses
        if str(w.state) == "stopped":
            stopped.append(w.name)
        live = [{"pid": p.pid, "wid": p.wid, "ticks": p.start_ticks, "create_time": p.create_time}
                for p in w.slots.values()
                if p.live and p.pid is not None and p.start_ticks is not None]
        if live:
            processes[w.name] = sorted(live, key=lambda r: r["wid"])
    removed = sorted(cfg.name for key, cfg in base.items() if key not in present)
    return {"version": VERSION, "node": node, "lineage": lineage, "boot_id": boot, "written": time.time(),
            "added": added, "set": changed, "removed": removed, "numprocesses": counts,
            "stopped": sorted(stopped), "processes": processes}


@dataclass
class RestorePlan:
    """What a state document means for the configuration loaded now."""

    watchers: list[WatcherConfig]                      # the file's, with runtime changes applied
    numprocesses: dict[str, int] = field(default_factory=dict)     # by lower-case name
    stopped: set[str] = field(default_factory=set)                 # lower-case names
    processes: dict[str, list[dict]] = field(default_factory=dict)  # lower-case name -> records
    notes: list[str] = field(default_factory=list)                  # what was not restored, why


def _mapping(state: Mapping[str, Any], key: str) -> dict:
    value = state.get(key)
    return dict(value) if isinstance(value, Mapping) else {}


def _names(state: Mapping[str, Any], key: str) -> set[str]:
    value = state.get(key)
    return {n.lower() for n in value if isinstance(n, str)} if isinstance(value, list) else set()


def plan_restore(state: Mapping[str, Any], file_watchers: list[WatcherConfig],
                 environ: Mapping[str, str], boot: str = "") -> RestorePlan:
    """Apply a state document to the watchers of the file (pure; bad entries become notes).
    ``boot``: this boot's id; processes recorded in another boot are not ours (pids restart)."""
    notes: list[str] = []
    by_key = {cfg.name.lower(): cfg for cfg in file_watchers}
    removed = _names(state, "removed")
    for key in removed & set(by_key):
        del by_key[key]
    for name, diff in _mapping(state, "set").items():
        cfg = by_key.get(name.lower())
        if cfg is None or not isinstance(diff, Mapping):
            continue
        current = _options(cfg)
        merged = dict(current)
        kept = []
        for key, pair in diff.items():
            if not (isinstance(pair, list) and len(pair) == 2):
                continue
            then, value = pair
            if current.get(key) != then:
                notes.append(f"{cfg.name}: {key} changed in the file since it was set at runtime: "
                             "the file's value is kept")
                continue
            kept.append(key)
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        if kept:
            rebuilt = _build(cfg.name, merged, environ, notes)
            if rebuilt is not None:
                by_key[cfg.name.lower()] = rebuilt
    for name, options in _mapping(state, "added").items():
        if name.lower() in by_key:
            notes.append(f"{name}: added at runtime, but the file now defines it: the file wins")
            continue
        cfg = _build(name, dict(options), environ, notes) if isinstance(options, Mapping) else None
        if cfg is not None:
            by_key[name.lower()] = cfg
    plan = RestorePlan(list(by_key.values()), notes=notes)
    for name, count in _mapping(state, "numprocesses").items():
        if name.lower() in by_key and isinstance(count, int) and not isinstance(count, bool) \
                and count >= 0:
            plan.numprocesses[name.lower()] = count
    plan.stopped = {n for n in _names(state, "stopped") if n in by_key}
    processes = _mapping(state, "processes")
    if processes and boot and state.get("boot_id") != boot:
        notes.append("the recorded processes are of another boot of the machine: none adopted")
        processes = {}
    for name, records in processes.items():
        if name.lower() in by_key and isinstance(records, list):
            plan.processes[name.lower()] = [r for r in records if _record_ok(r)]
    return plan


def _record_ok(record: object) -> bool:
    return isinstance(record, Mapping) and all(isinstance(record.get(k), int) and
                                               not isinstance(record.get(k), bool)
                                               for k in ("pid", "wid", "ticks")) \
        and record["pid"] > 1 and record["wid"] >= 1 \
        and isinstance(record.get("create_time", 0.0), (int, float))


def _build(name: str, options: dict, environ: Mapping[str, str], notes: list[str]) -> WatcherConfig | None:
    options = dict(options)
    cmd, args = options.pop("cmd", None), options.pop("args", None)
    try:
        return watcher_from_options(name, cmd, args, options, environ)
    except ConfigError as exc:
        notes.append(f"{name}: its recorded options are no longer valid, not restored: {exc}")
        return None


class StateFile:
    """Reads and (debounced, atomically) writes the state document."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._handle: asyncio.TimerHandle | None = None
        self._make = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="circus-state")
        self.writes = 0
        self.failed = False

    def load(self) -> dict | None:
        """The recorded state; None when there is none. A corrupt file is renamed aside."""
        try:
            raw = read_private(self.path, MAX_STATE_BYTES)
        except FileNotFoundError:
            return None
        except UnsafePath as exc:
            log.error("state_file %s is ignored: %s (it says what circusd runs)",
                      self.path, exc.strerror)
            return None
        except OSError as exc:
            log.error("state_file %s cannot be read (%s): starting from the configuration only",
                      self.path, exc.strerror)
            return None
        try:
            data = json.loads(raw)
        except ValueError as exc:
            log.error("state_file %s is not valid JSON (%s): starting from the configuration only",
                      self.path, exc)
            self.set_aside()
            return None
        if not isinstance(data, dict) or data.get("version") != VERSION:
            log.error("state_file %s: unknown format (version %r): ignored", self.path,
                      data.get("version") if isinstance(data, dict) else None)
            return None
        return data

    def set_aside(self) -> None:
        aside = f"{self.path}.corrupt-{int(time.time())}"
        try:
            dfd, name, _ = walk(self.path, follow_last=False)
            try:
                os.replace(name, os.path.basename(aside), src_dir_fd=dfd, dst_dir_fd=dfd)
            finally:
                os.close(dfd)
            log.error("state_file %s moved to %s", self.path, aside)
        except OSError:
            pass

    def write_now(self, document: dict) -> bool:
        try:
            replace_private(self.path, json.dumps(document, separators=(",", ":")).encode(),
                            prefix=".circus-state.")
        except OSError as exc:
            if not self.failed:
                log.error("cannot write state_file %s: %s (runtime changes would be lost at a "
                          "restart)", self.path, exc.strerror or exc)
            self.failed = True
            return False
        if self.failed:
            log.info("state_file %s written again", self.path)
        self.failed = False
        self.writes += 1
        return True

    def changed(self, make) -> None:
        """Something changed: write ``make()`` soon (coalesced)."""
        self._make = make
        if self._handle is None:
            loop = asyncio.get_running_loop()
            self._handle = loop.call_later(DEBOUNCE, self._flush)

    def _flush(self) -> None:
        self._handle = None
        if self._make is not None:
            document = self._make()            # on the loop: it reads the arbiter's state
            # the write and its fsync (milliseconds, more on a slow disk) off the loop; one
            # writer thread keeps the writes in order
            self._writer.submit(self.write_now, document)

    def flush(self, document: dict) -> None:
        """Write ``document`` now, after any write in progress, instead of anything pending (at
        shutdown)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._make = None
        self._writer.shutdown(wait=True)
        self.write_now(document)
