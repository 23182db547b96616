"""How a client puts requests on the wire and recognises its replies; shared by every client.

Both the asyncio client and the blocking one use these helpers, so the message shapes, the id
matching and the socket options are written once. Nothing here waits.

* A request is one frame of JSON sent from a DEALER with a random identity and ``LINGER 0``.
* Each call gets a fresh uuid ``id``; a reply whose ``id`` differs is stale (the answer to an
  earlier call that timed out) and is skipped.
* Casts (``msg_type: "cast"``) are never answered.
"""
from __future__ import annotations

import uuid
from typing import Any, Mapping

import zmq

from circus.client.errors import CallError, TunnelError
from circus.protocol import decode, encode, make_request

__all__ = ["DEFAULT_ENDPOINT_DEALER", "DEFAULT_ENDPOINT_SUB", "DEFAULT_ENDPOINT_STATS",
           "make_message", "cast_message", "make_json", "prepare_call", "is_cast", "read_reply",
           "setup_dealer", "setup_sub", "connect"]

DEFAULT_ENDPOINT_DEALER = "tcp://127.0.0.1:5555"
DEFAULT_ENDPOINT_SUB = "tcp://127.0.0.1:5556"
DEFAULT_ENDPOINT_STATS = "tcp://127.0.0.1:5557"


def make_message(command: str, **props: Any) -> dict[str, Any]:
    """A request for ``command`` with ``props`` as its properties (an id is set at call time)."""
    return make_request(command, props)


def cast_message(command: str, **props: Any) -> dict[str, Any]:
    """A fire-and-forget request: circusd runs it and never answers."""
    return make_request(command, props, cast=True)


def make_json(command: str, **props: Any) -> str:
    """``make_message`` as a JSON string."""
    return encode(make_message(command, **props)).decode()


def is_cast(message: Mapping[str, Any]) -> bool:
    return message.get("msg_type") == "cast"


def prepare_call(message: Mapping[str, Any]) -> tuple[str, bytes]:
    """A copy of ``message`` with a fresh id, encoded; the caller's dict is left untouched."""
    if not isinstance(message, Mapping):
        raise TypeError(f"a call takes a message mapping, not {type(message).__name__}")
    if "command" not in message:
        raise ValueError("a message needs a 'command'")
    call_id = uuid.uuid4().hex
    body = dict(message)
    body.setdefault("properties", {})
    body["id"] = call_id
    return call_id, encode(body)


def read_reply(frames: list[bytes], call_id: str) -> dict[str, Any] | None:
    """The reply in ``frames`` if it answers ``call_id``; ``None`` for a stale reply."""
    try:
        reply = decode(frames[-1])
    except ValueError:
        raise CallError(f"circusd sent a reply that is not JSON: {frames[-1][:200]!r}") from None
    if not isinstance(reply, dict):
        raise CallError(f"circusd sent a reply that is not a JSON object: {frames[-1][:200]!r}")
    if reply.get("id") != call_id:
        return None
    return reply


def _identity() -> bytes:
    return uuid.uuid4().hex.encode()


def setup_dealer(sock: zmq.Socket, curve: Any = None) -> zmq.Socket:
    """``curve``: a :class:`circus.security.keys.ClientKeys` for a CURVE server, or ``None``."""
    sock.setsockopt(zmq.IDENTITY, _identity())
    sock.setsockopt(zmq.LINGER, 0)
    if curve is not None:
        curve.apply(sock)
    return sock


def setup_sub(sock: zmq.Socket, topics: list[str] | tuple[str, ...], curve: Any = None) -> zmq.Socket:
    sock.setsockopt(zmq.LINGER, 0)
    if curve is not None:
        curve.apply(sock)
    for topic in topics or ("",):
        sock.setsockopt(zmq.SUBSCRIBE, topic.encode() if isinstance(topic, str) else topic)
    return sock


def _ssh_available() -> bool:
    from importlib.util import find_spec
    return find_spec("pexpect") is not None or find_spec("paramiko") is not None


def connect(sock: zmq.Socket, endpoint: str, ssh_server: str | None = None,
            ssh_keyfile: str | None = None) -> None:
    """Connect ``sock`` to ``endpoint``, through an ssh tunnel to ``ssh_server`` if given.

    Tunnels use pyzmq's ``zmq.ssh``, which needs ``pexpect`` or ``paramiko``; neither is a
    dependency of Circus, so asking for a tunnel without them fails here, with that said.
    """
    if not ssh_server:
        sock.connect(endpoint)
        return
    if not _ssh_available():
        raise TunnelError(f"an ssh tunnel to {ssh_server} needs pexpect or paramiko (used by "
                          "pyzmq's zmq.ssh), and neither is installed: pip install pexpect")
    from zmq import ssh
    try:
        ssh.tunnel_connection(sock, endpoint, ssh_server, keyfile=ssh_keyfile)
    except (OSError, RuntimeError, ValueError, ImportError) as exc:
        raise TunnelError(f"cannot open an ssh tunnel to {endpoint} via {ssh_server}: {exc}") from None
