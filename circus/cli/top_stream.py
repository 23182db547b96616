"""circus-top's inputs: SUB sockets on the stats endpoints, and the pool file naming them.

One SUB socket per endpoint, so that ``--once`` knows which endpoint has delivered a full round
and which stayed silent (one socket connected to all of them could not tell). Reading never
blocks: the callers block in ``zmq.Poller.poll`` with a timeout, on these sockets and the
terminal together.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import zmq

from circus.client.wire import setup_sub
from circus.protocol import read_event
from circus.config.errors import Issues
from circus.config.ini import parse_ini
from circus.stats.topview import Kind, Model

__all__ = ["Endpoint", "Stream", "PoolError", "read_pool", "read_pool_keys", "DEFAULT_ENDPOINT"]

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5557"   # circusd-stats 0.19's --statspoint
_DRAIN = 5000                               # messages read per socket before the screen repaints


@dataclass
class Endpoint:
    """One stats endpoint and what it delivered so far.

    A round is complete when the node stats and a watcher aggregate were seen and some topic
    came a second time: everything published between its two arrivals was one full interval,
    whatever order the publisher uses and wherever the subscription started.
    """

    address: str
    socket: zmq.Socket
    label: str | None = None      # the node behind it, when the caller knows (a pool file)
    prefixed: bool = False        # it published node-prefixed topics
    messages: int = 0
    topics: set[str] = field(default_factory=set)
    got_node: bool = False
    got_aggregate: bool = False
    wrapped: bool = False

    @property
    def name(self) -> str:
        return f"{self.label} ({self.address})" if self.label else self.address

    @property
    def complete(self) -> bool:
        return self.got_node and self.got_aggregate and self.wrapped

    def note(self, topic: str, kind: Kind) -> None:
        self.messages += 1
        if topic in self.topics:
            self.wrapped = True
        self.topics.add(topic)
        self.got_node |= kind is Kind.NODE
        self.got_aggregate |= kind is Kind.AGGREGATE


class Stream:
    """SUB sockets on the endpoints; ``prefixes`` limit them to some nodes' topics.

    ``labels`` names the node behind an endpoint: its 0.19 topics (``stat.web.42``, from a
    circusd-stats 0.19) are read as ``<label>/stat.web.42``. A 0.19 topic whose payload carries
    ``node``, or from an endpoint that published prefixed topics, is the copy that
    ``legacy_stats_topics`` adds to a prefixed one, and is skipped.
    """

    def __init__(self, addresses: Iterable[str], prefixes: Iterable[str] = (),
                 labels: Mapping[str, str] | None = None, curve: Any = None) -> None:
        """``curve``: ClientKeys for every endpoint, or a mapping address -> ClientKeys (an
        address not in it, or mapped to None, is read without CURVE)."""
        addresses = list(addresses)
        self.context = zmq.Context()
        _size_for(self.context, len(addresses))
        self.endpoints: list[Endpoint] = []
        subscriptions = [p.encode() for p in prefixes] or [b""]
        try:
            for address in addresses:
                sock = self.context.socket(zmq.SUB)
                keys = curve.get(address) if isinstance(curve, Mapping) else curve
                setup_sub(sock, subscriptions, keys)
                self.endpoints.append(Endpoint(address, sock, (labels or {}).get(address)))
                sock.connect(address)
        except zmq.ZMQError:
            self.close()
            raise

    def register(self, poller: zmq.Poller) -> None:
        for endpoint in self.endpoints:
            poller.register(endpoint.socket, zmq.POLLIN)

    def drain(self, model: Model, now: float) -> int:
        """Merge every message waiting on any socket; returns how many were used."""
        used = 0
        for endpoint in self.endpoints:
            for _ in range(_DRAIN):
                try:
                    frames = endpoint.socket.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                event = read_event(frames)
                if event is None:
                    continue
                topic, payload = event
                if topic.startswith("stat."):
                    if (endpoint.prefixed or not endpoint.label or not isinstance(payload, dict)
                            or "node" in payload):
                        continue
                    topic = f"{endpoint.label}/{topic}"
                else:
                    endpoint.prefixed = True
                kind = model.feed(topic, payload, now)
                if kind is not None:
                    endpoint.note(topic, kind)
                    used += 1
        return used

    def close(self) -> None:
        for endpoint in self.endpoints:
            endpoint.socket.close(0)
        self.context.term()


def _size_for(context: zmq.Context, sockets: int) -> None:
    """Room for a socket per endpoint: libzmq's 1,023 sockets per context, and the soft limit
    of open files (a socket and a connection each), raised when the hard one allows; a
    :class:`zmq.ZMQError` saying so when it does not."""
    import errno
    import resource

    context.set(zmq.MAX_SOCKETS, max(1023, sockets + 16))
    need = 2 * sockets + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        raise zmq.ZMQError(errno.EMFILE, f"{sockets:,} endpoints need about {need:,} open files "
                                         f"and this process may open {hard:,} (RLIMIT_NOFILE "
                                         f"hard limit): raise it, or watch fewer nodes")
    target = need if hard == resource.RLIM_INFINITY else min(hard, max(need, 4096))
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class PoolError(Exception):
    """The pool file cannot be used; the message says file:line and why."""


def read_pool(path: str, only: Iterable[str] = ()) -> dict[str, str]:
    """The ``stats_endpoint`` of each ``[node:NAME]`` of a pool file, by node name.

    A minimal reader until circusmeta's pool module exists; other sections and keys (tags,
    control endpoints, keys) are left to circusmeta. ``only`` keeps some nodes, and naming a
    node the file does not have is an error.
    """
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise PoolError(f"{path}: cannot read the pool file: {exc.strerror or exc}") from exc
    issues = Issues()
    sections = parse_ini(text, path, issues)
    if issues:
        raise PoolError("\n".join(str(i) for i in issues.items))
    nodes: dict[str, str] = {}
    for section in sections:
        kind, sep, name = section.header.partition(":")
        if kind.strip() != "node":
            continue
        name = name.strip()
        if not sep or not name:
            raise PoolError(f"{section.file}:{section.line}: [{section.header}]: a node section "
                            f"needs a name, as in [node:web1]")
        value = section.values.get("stats_endpoint")
        if value is None or not value.value.strip():
            raise PoolError(f"{section.file}:{section.line}: [{section.header}]: no stats_endpoint"
                            f" (the node's circusd-stats endpoint, e.g. tcp://web1:5557)")
        if "://" not in value.value:
            raise PoolError(f"{value.file}:{value.line}: [{section.header}] stats_endpoint: "
                            f"{value.value!r} is not an endpoint (tcp://HOST:PORT or ipc://PATH)")
        nodes[name] = value.value.strip()
    if not nodes:
        raise PoolError(f"{path}: no [node:NAME] section")
    wanted = list(only)
    missing = [n for n in wanted if n not in nodes]
    if missing:
        raise PoolError(f"{path}: no [node:{missing[0]}] section (nodes: {', '.join(nodes)})")
    return {n: e for n, e in nodes.items() if not wanted or n in wanted}


def read_pool_keys(path: str, nodes: Iterable[str]) -> dict[str, Any]:
    """The CURVE keys of some nodes of a pool file, by node name, read as circusmeta reads them:
    ClientKeys from the node's ``server_key`` and its own ``client_key``, else the ``[meta]``
    one (relative paths are relative to the pool file); None for a node without ``server_key``.
    A node with a server key needs a client key; a key file that cannot be used is an error
    (:class:`PoolError`, naming the file and the section)."""
    import os

    from circus.security.keys import ClientKeys, KeyFileError
    issues = Issues()
    sections = parse_ini(Path(path).read_text(), path, issues)
    base = os.path.dirname(os.path.abspath(path))

    def value(section: Any, key: str) -> tuple[str, str] | None:
        found = section.values.get(key)
        if found is None or not found.value.strip():
            return None
        file = os.path.join(base, os.path.expanduser(found.value.strip()))
        return file, f"{found.file}:{found.line}"

    meta_client = None
    node_keys: dict[str, tuple[Any, Any]] = {}
    for section in sections:
        kind, _, name = section.header.partition(":")
        if kind.strip() == "meta":
            meta_client = value(section, "client_key")
        elif kind.strip() == "node":
            node_keys[name.strip()] = (value(section, "server_key"), value(section, "client_key"))
    out: dict[str, Any] = {}
    for name in nodes:
        server, client = node_keys.get(name, (None, None))
        if server is None:
            out[name] = None
            continue
        client = client or meta_client
        if client is None:
            raise PoolError(f"{server[1]}: [node:{name}] has a server_key but no client_key "
                            f"(in the node's section or [meta]: this client's .key_secret file)")
        try:
            out[name] = ClientKeys.load(client[0], server[0])
        except KeyFileError as exc:
            raise PoolError(f"{path}: [node:{name}]: {exc}") from None
    return out
