"""The pool file: which nodes make the pool, how to reach them, and named collections.

Pure: :func:`parse_pool` takes the file's text; :func:`locate_pool` takes the environment.
Errors are :class:`circus.config.ConfigError`, one ``file:line: [section] key: reason`` per
problem, all of them at once, like a bad circusd configuration::

    [meta]
    strategy = least_loaded      ; default placement strategy
    timeout = 3                  ; per-node deadline, seconds
    stats_endpoint = tcp://127.0.0.1:5570    ; where `circusmeta proxy` republishes
    pubsub_endpoint = tcp://127.0.0.1:5571
    log_dir = /var/log/circusmeta           ; an audit file per changing run
    [node:web1]
    endpoint = tcp://10.0.0.11:5555
    pubsub_endpoint = tcp://10.0.0.11:5556
    stats_endpoint = tcp://10.0.0.11:5557
    tags = web, eu
    [collection:frontend]
    members = web1:nginx, web2:nginx, backend   ; node:watcher items or other collections
    mode = sequential            ; or parallel
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from circus.config.errors import ConfigError, Issues, did_you_mean
from circus.config.ini import IniSection, IniValue, parse_ini

__all__ = ["NodeSpec", "Member", "Collection", "MetaOptions", "PoolConfig", "parse_pool",
           "load_pool", "locate_pool", "STRATEGIES", "DEFAULT_PATHS"]

STRATEGIES = ("round_robin", "least_loaded", "least_memory", "fewest_processes", "random")
MODES = ("sequential", "parallel")
DEFAULT_PATHS = ("~/.config/circus/pool.ini", "/etc/circus/pool.ini")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_ENDPOINT = re.compile(r"(tcp|ipc)://\S+")


@dataclass(frozen=True)
class NodeSpec:
    name: str
    endpoint: str
    pubsub_endpoint: str | None = None
    stats_endpoint: str | None = None
    tags: tuple[str, ...] = ()
    server_key: str | None = None
    timeout: float | None = None       # this node's deadline; None: [meta] timeout


@dataclass(frozen=True)
class Member:
    """A collection's item: a watcher on one node (``web1:nginx``) or another collection."""

    node: str | None
    watcher: str | None
    collection: str | None = None

    def __str__(self) -> str:
        return self.collection if self.collection else f"{self.node}:{self.watcher}"


@dataclass(frozen=True)
class Collection:
    name: str
    members: tuple[Member, ...]
    mode: str = "sequential"


@dataclass(frozen=True)
class MetaOptions:
    strategy: str = "least_loaded"
    timeout: float = 3.0
    stats_endpoint: str = "tcp://127.0.0.1:5570"
    pubsub_endpoint: str = "tcp://127.0.0.1:5571"
    log_dir: str | None = None
    client_key: str | None = None


@dataclass(frozen=True)
class PoolConfig:
    meta: MetaOptions
    nodes: Mapping[str, NodeSpec]
    collections: Mapping[str, Collection] = field(default_factory=dict)
    file: str = "<pool>"

    def deadline(self, node: NodeSpec) -> float:
        return node.timeout if node.timeout is not None else self.meta.timeout

    def expand(self, collection: str) -> list[Member]:
        """A collection's watcher members, nested collections expanded in order (each once)."""
        out: list[Member] = []
        seen: set[str] = set()

        def walk(name: str) -> None:
            if name in seen:
                return
            seen.add(name)
            for member in self.collections[name].members:
                if member.collection:
                    walk(member.collection)
                elif member not in out:
                    out.append(member)
        walk(collection)
        return out


# -- reading -------------------------------------------------------------------------------------

_NODE_KEYS = ("endpoint", "pubsub_endpoint", "stats_endpoint", "tags", "server_key", "timeout")
_META_KEYS = ("strategy", "timeout", "stats_endpoint", "pubsub_endpoint", "log_dir", "client_key")
_COLLECTION_KEYS = ("members", "mode")


class _Reader:
    def __init__(self, sections: list[IniSection], issues: Issues, filename: str) -> None:
        self.sections, self.issues, self.filename = sections, issues, filename

    def bad(self, section: IniSection, value: IniValue | None, reason: str) -> None:
        line = value.line if value else section.line
        self.issues.add(value.file if value else section.file, line, section.header,
                        value.key if value else None, reason)

    def known(self, section: IniSection, keys: tuple[str, ...]) -> dict[str, IniValue]:
        out = {}
        for value in section.values.values():
            key = value.key.lower()
            if key not in keys:
                self.bad(section, value, f"unknown option{did_you_mean(key, keys)}")
            else:
                out[key] = value
        return out

    def number(self, section: IniSection, value: IniValue) -> float | None:
        try:
            number = float(value.value)
        except ValueError:
            number = -1.0
        if not number > 0:
            self.bad(section, value, f"expected a number of seconds > 0, got {value.value!r}")
            return None
        return number

    def endpoint(self, section: IniSection, value: IniValue | None) -> str | None:
        if value is None:
            return None
        text = value.value.strip()
        if not _ENDPOINT.fullmatch(text):
            self.bad(section, value, f"expected an endpoint like tcp://HOST:PORT or ipc://PATH, "
                     f"got {value.value!r}")
            return None
        return text

    def meta(self, section: IniSection | None) -> MetaOptions:
        if section is None:
            return MetaOptions()
        values, kwargs = self.known(section, _META_KEYS), {}
        if "strategy" in values:
            strategy = values["strategy"].value.strip().lower()
            if strategy not in STRATEGIES:
                self.bad(section, values["strategy"], f"unknown strategy {strategy!r}; one of "
                         f"{', '.join(STRATEGIES)}{did_you_mean(strategy, STRATEGIES)}")
            else:
                kwargs["strategy"] = strategy
        if "timeout" in values and (number := self.number(section, values["timeout"])):
            kwargs["timeout"] = number
        for key in ("stats_endpoint", "pubsub_endpoint"):
            if key in values and (endpoint := self.endpoint(section, values[key])):
                kwargs[key] = endpoint
        for key in ("log_dir", "client_key"):
            if key in values and values[key].value.strip():
                kwargs[key] = os.path.expanduser(values[key].value.strip())
        return MetaOptions(**kwargs)

    def node(self, name: str, section: IniSection) -> NodeSpec | None:
        values = self.known(section, _NODE_KEYS)
        if "endpoint" not in values:
            self.bad(section, None, "no endpoint (the node's control endpoint, e.g. "
                     "tcp://10.0.0.11:5555)")
            return None
        endpoint = self.endpoint(section, values["endpoint"])
        timeout = self.number(section, values["timeout"]) if "timeout" in values else None
        tags = tuple(t for t in re.split(r"[\s,]+", values["tags"].value.strip()) if t) \
            if "tags" in values else ()
        key = values.get("server_key")
        if endpoint is None:
            return None
        return NodeSpec(name, endpoint, self.endpoint(section, values.get("pubsub_endpoint")),
                        self.endpoint(section, values.get("stats_endpoint")), tags,
                        os.path.expanduser(key.value.strip()) if key and key.value.strip() else None,
                        timeout)

    def collection(self, name: str, section: IniSection) -> Collection | None:
        values = self.known(section, _COLLECTION_KEYS)
        mode = values["mode"].value.strip().lower() if "mode" in values else "sequential"
        if mode not in MODES:
            self.bad(section, values["mode"], f"expected sequential or parallel, got {mode!r}")
        if "members" not in values:
            self.bad(section, None, "no members (node:watcher items or collection names)")
            return None
        members = []
        for item in (i for i in re.split(r"[\s,]+", values["members"].value.strip()) if i):
            node, sep, watcher = item.partition(":")
            members.append(Member(node, watcher) if sep else Member(None, None, item))
            if sep and not (node and watcher):
                self.bad(section, values["members"], f"member {item!r}: expected NODE:WATCHER")
        return Collection(name, tuple(members), mode if mode in MODES else "sequential")


def parse_pool(text: str, filename: str) -> PoolConfig:
    """The pool described by ``text``; raises ConfigError naming every problem."""
    issues = Issues()
    sections = parse_ini(text, filename, issues)
    reader = _Reader(sections, issues, filename)
    meta_section = None
    nodes: dict[str, NodeSpec] = {}
    collections: dict[str, Collection] = {}
    for section in sections:
        kind, sep, name = (part.strip() for part in section.header.partition(":"))
        kind = kind.lower()
        if kind == "meta" and not sep:
            meta_section = section
            continue
        if kind not in ("node", "collection") or not sep:
            reader.bad(section, None, "unknown section; expected [meta], [node:NAME] or "
                       "[collection:NAME]")
            continue
        if not _NAME.fullmatch(name):
            reader.bad(section, None, "a name has 1 to 64 letters, digits, '.', '_' or '-'")
            continue
        table: dict = nodes if kind == "node" else collections
        if name in table:
            reader.bad(section, None, f"{kind} {name!r} is defined twice")
            continue
        item = reader.node(name, section) if kind == "node" else reader.collection(name, section)
        if item is not None:
            table[name] = item
    meta = reader.meta(meta_section)
    if not nodes and not issues:
        issues.add(filename, None, None, None, "no [node:NAME] section: the pool is empty")
    _check_collections(sections, collections, nodes, issues)
    issues.raise_if_any([filename])
    return PoolConfig(meta, nodes, collections, filename)


def _check_collections(sections: list[IniSection], collections: dict[str, Collection],
                       nodes: Mapping[str, NodeSpec], issues: Issues) -> None:
    where = {s.header.partition(":")[2].strip(): s for s in sections
             if s.header.lower().startswith("collection:")}
    for name, coll in collections.items():
        section = where[name]
        value = next((v for v in section.values.values() if v.key.lower() == "members"), None)
        for member in coll.members:
            if member.collection and member.collection not in collections:
                issues.add(section.file, value.line if value else section.line, section.header,
                           "members", f"{member.collection!r} is neither NODE:WATCHER nor a "
                           f"collection{did_you_mean(member.collection, collections)}")
            elif member.node and member.node not in nodes:
                issues.add(section.file, value.line if value else section.line, section.header,
                           "members", f"unknown node {member.node!r} in {member}"
                           f"{did_you_mean(member.node, nodes)}")
    # cycles: a collection reaching itself
    for name in collections:
        todo, seen = [name], set()
        while todo:
            current = todo.pop()
            for member in collections.get(current, Collection(current, ())).members:
                if member.collection == name:
                    section = where[name]
                    issues.add(section.file, section.line, section.header, "members",
                               f"collection {name!r} contains itself (through {current!r})")
                    todo = []
                    break
                if member.collection and member.collection not in seen:
                    seen.add(member.collection)
                    todo.append(member.collection)


def locate_pool(given: str | None, environ: Mapping[str, str],
                candidates: Iterable[str] = DEFAULT_PATHS) -> str:
    """``--pool``, else ``$CIRCUSMETA_POOL``, else the first existing default path; raises
    ConfigError when none is given and none exists."""
    if given:
        return given
    if environ.get("CIRCUSMETA_POOL"):
        return environ["CIRCUSMETA_POOL"]
    home = environ.get("HOME", "~")
    tried = []
    for path in candidates:
        full = path.replace("~", home, 1) if path.startswith("~") else path
        tried.append(full)
        if os.path.exists(full):
            return full
    raise ConfigError([_issue("<pool>", "no pool file: give --pool FILE or set CIRCUSMETA_POOL "
                                        f"(looked for {', '.join(tried)})")])


def load_pool(path: str) -> PoolConfig:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError([_issue(path, f"cannot read the pool file: {exc.strerror or exc}")]) \
            from None
    return parse_pool(text, path)


def _issue(file: str, reason: str):
    from circus.config.errors import ConfigIssue
    return ConfigIssue(file, None, None, None, reason)
