"""The pool file: which nodes make the pool, how to reach them, and named collections.

Pure: :func:`parse_pool` takes the file's text; :func:`locate_pool` takes the environment.
:func:`load_pool` reads the file and the key files it names. Errors are
:class:`circus.config.ConfigError`, one ``file:line: [section] key: reason`` per problem, all
of them at once, like a bad circusd configuration::

    [meta]
    strategy = least_loaded      ; default placement strategy
    timeout = 3                  ; per-node deadline, seconds
    stats_endpoint = tcp://127.0.0.1:5570    ; where `circusmeta proxy` republishes
    pubsub_endpoint = tcp://127.0.0.1:5571
    log_dir = /var/log/circusmeta           ; an audit file per changing run
    client_key = keys/alice.key_secret      ; this client's CURVE key pair
    [node:web1]
    endpoint = tcp://10.0.0.11:5555
    pubsub_endpoint = tcp://10.0.0.11:5556
    stats_endpoint = tcp://10.0.0.11:5557
    server_key = keys/web1.key   ; the node's public key: CURVE on all three endpoints
    prometheus_endpoint = 10.0.0.11:9101    ; its /metrics, for prometheus-sd (promsd.py)
    tags = web, eu
    [collection:frontend]
    members = web1:nginx, web2:nginx, backend   ; node:watcher items or other collections
    mode = sequential            ; or parallel

``[meta] srv`` (and ``dns_server``) adds the nodes of DNS SRV records, when the file is loaded
(:mod:`circusmeta.srv`); a ``[node:NAME]`` without ``endpoint`` then pins keys for DNS's NAME.

CURVE keys (see the security page of the docs). A node has one key pair for its control,
events and stats endpoints, so its ``server_key`` serves all three. A node with a
``server_key`` is reached with the client key pair of its section's ``client_key``, else of
``[meta] client_key`` (a per-node one lets the same person be admin on one node and readonly on
another, or keep one key per site); a node without ``server_key`` is reached without CURVE.
``circusmeta proxy`` is a CURVE server when ``[meta] proxy_secret_key`` (its key pair) and
``proxy_clients`` (a clients directory, any role may subscribe) are set; its subscribers
(``circusmeta top --proxy``) use ``[meta] client_key`` and ``proxy_key``, the proxy's public key
(default: the public half of ``proxy_secret_key``, when this file has it). ``[meta] insecure =
true`` lets the proxy bind an address reachable from other machines without CURVE. Relative
paths are relative to the pool file. :func:`load_pool` checks the files of the node keys, the
client keys and ``proxy_key``; the proxy's own files are checked by :func:`proxy_server_keys`
(who runs ``circusmeta status`` need not be able to read the proxy's secret key).
"""
from __future__ import annotations

import os
import re
from typing import Iterable, Mapping

from circus.config.errors import ConfigError, Issues, did_you_mean
from circus.config.ini import IniSection, IniValue, parse_ini
from circus.records import Factory, Record, record, replace

# the key files (poolkeys.py); their functions stay importable from here
from .poolkeys import (check_key_files, client_keys_for, key_warnings, node_keys,
                       proxy_client_keys, proxy_server_keys)

__all__ = ["NodeSpec", "Member", "Collection", "MetaOptions", "PoolConfig", "parse_pool",
           "load_pool", "locate_pool", "client_keys_for", "node_keys", "proxy_client_keys",
           "proxy_server_keys", "key_warnings", "pool_warnings", "STRATEGIES", "DEFAULT_PATHS"]

STRATEGIES = ("round_robin", "least_loaded", "least_memory", "fewest_processes", "random")
MODES = ("sequential", "parallel")
DEFAULT_PATHS = ("~/.config/circus/pool.ini", "/etc/circus/pool.ini")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_ENDPOINT = re.compile(r"(tcp|ipc)://\S+")


@record
class NodeSpec(Record):
    name: str
    endpoint: str
    pubsub_endpoint: str | None = None
    stats_endpoint: str | None = None
    tags: tuple[str, ...] = ()
    server_key: str | None = None      # the node's public key file: CURVE
    timeout: float | None = None       # this node's deadline; None: [meta] timeout
    client_key: str | None = None      # this client's key pair for this node; None: [meta]'s
    prometheus_endpoint: str | None = None  # HOST:PORT of its /metrics, for Prometheus SD


@record
class Member(Record):
    """A collection's item: a watcher on one node (``web1:nginx``) or another collection."""

    node: str | None
    watcher: str | None
    collection: str | None = None

    def __str__(self) -> str:
        return self.collection if self.collection else f"{self.node}:{self.watcher}"


@record
class Collection(Record):
    name: str
    members: tuple[Member, ...]
    mode: str = "sequential"


@record
class MetaOptions(Record):
    strategy: str = "least_loaded"
    timeout: float = 3.0
    stats_endpoint: str = "tcp://127.0.0.1:5570"
    pubsub_endpoint: str = "tcp://127.0.0.1:5571"
    log_dir: str | None = None
    client_key: str | None = None       # this client's key pair (NAME.key_secret)
    proxy_secret_key: str | None = None  # the proxy's key pair: its PUB sockets are CURVE servers
    proxy_clients: str | None = None    # who may subscribe to the proxy (a clients directory)
    proxy_key: str | None = None        # the proxy's public key, for its subscribers
    insecure: bool = False              # the proxy may bind a network address without CURVE
    srv: tuple[str, ...] = ()           # DNS SRV names whose records are nodes (srv.py)
    dns_server: str | None = None       # HOST:PORT asked for them; None: resolv.conf's


@record
class Origin(Record):
    """Where an option was set: for errors about the file it names."""

    file: str
    line: int | None
    section: str


@record(hidden=("origins",), uncompared=("origins",))
class PoolConfig(Record):
    meta: MetaOptions
    nodes: Mapping[str, NodeSpec]
    collections: Mapping[str, Collection] = Factory(dict)
    file: str = "<pool>"
    #: (section, key) -> where it is set, for the key options ("meta" or "node:NAME")
    origins: Mapping[tuple[str, str], Origin] = Factory(dict)
    #: [node:NAME] sections without endpoint: what the file pins for DNS's node NAME (keys)
    pins: Mapping[str, NodeSpec] = Factory(dict)
    warnings: tuple[str, ...] = ()      # about where the nodes came from (DNS)

    def origin(self, section: str, key: str) -> Origin:
        return self.origins.get((section, key), Origin(self.file, None, section))

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

_NODE_KEYS = ("endpoint", "pubsub_endpoint", "stats_endpoint", "tags", "server_key", "timeout",
              "client_key", "prometheus_endpoint")
_KEY_FILES = ("client_key", "proxy_secret_key", "proxy_clients", "proxy_key")
_META_KEYS = ("strategy", "timeout", "stats_endpoint", "pubsub_endpoint", "log_dir",
              *_KEY_FILES, "insecure", "srv", "dns_server")
_COLLECTION_KEYS = ("members", "mode")
_TRUE, _FALSE = ("1", "yes", "true", "on"), ("0", "no", "false", "off")


class _Reader:
    def __init__(self, sections: list[IniSection], issues: Issues, filename: str) -> None:
        self.sections, self.issues, self.filename = sections, issues, filename
        self.origins: dict[tuple[str, str], Origin] = {}

    def path(self, where: str, section: IniSection, value: IniValue) -> str | None:
        """A file option's value: ``~`` expanded, relative to the file that sets it."""
        text = value.value.strip()
        if not text:
            return None
        self.origins[(where, value.key.lower())] = Origin(value.file, value.line, section.header)
        text = os.path.expanduser(text)
        if not os.path.isabs(text) and value.file and not value.file.startswith("<"):
            text = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(value.file)),
                                                 text))
        return text

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
        if "log_dir" in values and values["log_dir"].value.strip():
            kwargs["log_dir"] = os.path.expanduser(values["log_dir"].value.strip())
        for key in _KEY_FILES:
            if key in values and (path := self.path("meta", section, values[key])):
                kwargs[key] = path
        if "insecure" in values:
            word = values["insecure"].value.strip().lower()
            if word not in _TRUE + _FALSE:
                self.bad(section, values["insecure"], f"expected true or false, got "
                         f"{values['insecure'].value!r}")
            kwargs["insecure"] = word in _TRUE
        if bool(kwargs.get("proxy_secret_key")) != bool(kwargs.get("proxy_clients")):
            given = "proxy_secret_key" if kwargs.get("proxy_secret_key") else "proxy_clients"
            missing = "proxy_clients" if given == "proxy_secret_key" else "proxy_secret_key"
            self.bad(section, values[given], f"needs {missing} too (a CURVE proxy needs its "
                     f"key pair and the directory of the client keys it admits)")
        if "srv" in values or "dns_server" in values:
            from .srv import read_meta
            kwargs.update(read_meta(values, lambda v, why: self.bad(section, v, why)))
        if kwargs.get("proxy_key") and not kwargs.get("client_key"):
            self.bad(section, values["proxy_key"], "needs client_key too (the key pair this "
                     "client subscribes to the proxy with)")
        return MetaOptions(**kwargs)

    def node(self, name: str, section: IniSection) -> NodeSpec | None:
        values = self.known(section, _NODE_KEYS)
        # no endpoint: a pin for DNS's node of that name (parse_pool checks there is [meta] srv)
        endpoint = self.endpoint(section, values["endpoint"]) if "endpoint" in values else ""
        timeout = self.number(section, values["timeout"]) if "timeout" in values else None
        tags = tuple(t for t in re.split(r"[\s,]+", values["tags"].value.strip()) if t) \
            if "tags" in values else ()
        where = f"node:{name}"
        server_key = self.path(where, section, values["server_key"]) \
            if "server_key" in values else None
        client_key = self.path(where, section, values["client_key"]) \
            if "client_key" in values else None
        if client_key and not server_key:
            self.bad(section, values["client_key"], "needs server_key too (the node's public "
                     "key, its NODE.key file)")
        if endpoint is None:
            return None
        metrics = values.get("prometheus_endpoint")
        if metrics is not None:
            from .promsd import check_address
            if (why := check_address(metrics.value)) is not None:
                self.bad(section, metrics, why)
        return NodeSpec(name, endpoint, self.endpoint(section, values.get("pubsub_endpoint")),
                        self.endpoint(section, values.get("stats_endpoint")), tags,
                        server_key, timeout, client_key,
                        metrics.value.strip() if metrics is not None else None)

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
    node_sections: dict[str, IniSection] = {}     # for the errors found later
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
            if kind == "node":
                node_sections[name] = section
    meta = reader.meta(meta_section)
    pins = {name: spec for name, spec in nodes.items() if not spec.endpoint}
    for name in pins:
        del nodes[name]
        if not meta.srv:
            reader.bad(node_sections[name], None, "no endpoint (the node's control endpoint, e.g. "
                       "tcp://10.0.0.11:5555; a section without one is for a node from DNS, "
                       "with [meta] srv)")
    if not nodes and not meta.srv and not issues:
        issues.add(filename, None, None, None, "no [node:NAME] section: the pool is empty")
    for name, spec in {**nodes, **pins}.items():
        if spec.server_key and not (spec.client_key or meta.client_key):
            where = reader.origins[(f"node:{name}", "server_key")]
            issues.add(where.file, where.line, where.section, "server_key", "needs a client key "
                       "too: set [meta] client_key (or client_key in this section) to this "
                       "client's NAME.key_secret file")
    _check_collections(sections, collections, None if meta.srv else nodes, issues)
    # a pool file is circusmeta's own format: what 0.19 let pass in circus.ini (a section or
    # key given twice) is an error here, without circusd's --no-strict hint
    issues.items = [replace(i, lenient=None) for i in issues.items]
    issues.raise_if_any([filename])
    return PoolConfig(meta, nodes, collections, filename, reader.origins, pins)


def _check_collections(sections: list[IniSection], collections: dict[str, Collection],
                       nodes: Mapping[str, NodeSpec] | None, issues: Issues) -> None:
    """``nodes`` None: the nodes are not known yet (from DNS: :func:`srv.resolve_pool`)."""
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
            elif member.node and nodes is not None and member.node not in nodes:
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
    """The pool file at ``path`` (or ``srv://...``: a pool from DNS), its nodes from DNS when it
    says ``[meta] srv``, its node and client key files checked (ConfigError naming file,
    section and key for each one that is missing or malformed; its subclass
    :class:`circusmeta.srv.PoolUnavailable` when the DNS server does not answer)."""
    if path[:4].lower() == "srv:":                       # (srv.py: imported only for DNS)
        from .srv import pool_from_url
        config = pool_from_url(path)
    else:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise ConfigError([_issue(path, f"cannot read the pool file: "
                                            f"{exc.strerror or exc}")]) from None
        except UnicodeDecodeError as exc:
            raise ConfigError([_issue(path, f"the pool file is not UTF-8 text (byte "
                                            f"{exc.start})")]) from None
        config = parse_pool(text, path)
        if config.meta.srv:
            from .srv import resolve_pool
            config = resolve_pool(config)
    check_key_files(config)
    return config


def pool_warnings(config: PoolConfig) -> list[str]:
    """Where the nodes came from (DNS) and :func:`key_warnings`: for stderr."""
    return [*config.warnings, *key_warnings(config)]


def _issue(file: str, reason: str):
    from circus.config.errors import ConfigIssue
    return ConfigIssue(file, None, None, None, reason)
