"""Helpers for tests of a CURVE-protected circusd: keys per role, keyed DEALER and SUB sockets.

The circusd processes themselves come from conftest's ``circusd`` fixture (or its ``Circusd``
class, for module-scoped nodes); a client here is conftest's ``Raw`` with CURVE keys applied
before it connects.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import zmq

from circus.security.keys import ClientKeys, write_keypair
from conftest import Raw

ROLES = ("admin", "operator", "readonly")

CURVE_HEAD = """
[circus]
endpoint = ipc://{dir}/control.sock
pubsub_endpoint = ipc://{dir}/events.sock
curve_secret_key = {node_secret}
curve_clients = {clients}
"""

PLAIN_HEAD = """
[circus]
endpoint = ipc://{dir}/control.sock
pubsub_endpoint = ipc://{dir}/events.sock
"""


@dataclass
class NodeKeys:
    """A node key pair, a clients directory with one key per role (named after the role), and
    the client secret files, kept outside the clients directory."""

    root: Path
    node_public: str
    node_secret: str
    clients: Path

    @classmethod
    def make(cls, root: Path) -> "NodeKeys":
        node_public, node_secret = write_keypair(str(root / "node"), "node")
        clients = root / "clients"
        for role in ROLES:
            public, _ = write_keypair(str(root / "own"), role)
            (clients / role).mkdir(parents=True, exist_ok=True)
            os.replace(public, clients / role / f"{role}.key")
        return cls(root, node_public, node_secret, clients)

    def client(self, name: str) -> ClientKeys:
        return ClientKeys.load(str(self.root / "own" / f"{name}.key_secret"), self.node_public)

    def stranger(self) -> ClientKeys:
        """A valid key pair that is in no role directory."""
        if not (self.root / "own" / "stranger.key_secret").exists():
            write_keypair(str(self.root / "own"), "stranger")
        return self.client("stranger")

    def head(self, directory: Path) -> str:
        return CURVE_HEAD.format(dir=directory, node_secret=self.node_secret, clients=self.clients)


class Keyed(Raw):
    """conftest's Raw DEALER, with CURVE keys (or none) set before connecting."""

    def __init__(self, ctx: zmq.Context, endpoint: str, keys: ClientKeys | None = None) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        if keys is not None:
            keys.apply(self.sock)
        self.sock.connect(endpoint)

    def silent(self, command: str, wait: float = 0.5, **props) -> bool:
        """Send ``command``; True if no reply came within ``wait`` seconds."""
        self.send_raw(json.dumps({"id": "x", "command": command, "properties": props}).encode())
        return not self.sock.poll(int(wait * 1000))


class Events:
    """A SUB on circusd's events socket, optionally keyed. ``sync()`` waits until circusd has
    seen the subscription (an ``output.`` subscription is answered with a ``subscribed`` event)."""

    SYNC = "output.sync-topic."

    def __init__(self, ctx: zmq.Context, endpoint: str, topics: tuple[str, ...],
                 keys: ClientKeys | None = None) -> None:
        self.sock = ctx.socket(zmq.SUB)
        self.sock.linger = 0
        if keys is not None:
            keys.apply(self.sock)
        for topic in (*topics, self.SYNC):
            self.sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self.sock.connect(endpoint)

    def next(self, timeout: float) -> tuple[str, dict] | None:
        if not self.sock.poll(int(timeout * 1000)):
            return None
        topic, body = self.sock.recv_multipart()
        return topic.decode(), json.loads(body)

    def sync(self, timeout: float = 5.0) -> None:
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            got = self.next(left)
            if got and got[0] == self.SYNC:
                return
        raise AssertionError(f"the events subscription was not seen within {timeout} s")

    def collect(self, until, timeout: float = 5.0) -> list[tuple[str, dict]]:
        """Events until ``until(topic, payload)`` is true for one; fail at the deadline."""
        seen: list[tuple[str, dict]] = []
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            got = self.next(left)
            if got is None:
                break
            seen.append(got)
            if until(*got):
                return seen
        raise AssertionError(f"no matching event within {timeout} s; seen: {[t for t, _ in seen]}")

    def drain(self, seconds: float) -> list[tuple[str, dict]]:
        """Every event within ``seconds``."""
        seen = []
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            got = self.next(left)
            if got is not None:
                seen.append(got)
        return seen

    def close(self) -> None:
        self.sock.close()
