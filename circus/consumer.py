"""The blocking events consumer, with Circus 0.19's name and signature.

``for topic, message in CircusConsumer(["watcher.web."], endpoint=...)`` yields the two frames of
each event as bytes (``b"watcher.web.spawn"``, ``b'{"process_pid": ...}'``). It waits forever for
the next event, in slices of ``timeout`` seconds so that Ctrl-C is noticed. The asyncio variant is
:class:`circus.client.AsyncConsumer`.
"""
from __future__ import annotations

from typing import Any, Iterator

import zmq

from circus.client.wire import DEFAULT_ENDPOINT_SUB, connect, setup_sub

__all__ = ["CircusConsumer"]


class CircusConsumer:
    def __init__(self, topics: list[str] | tuple[str, ...], context: zmq.Context | None = None,
                 endpoint: str = DEFAULT_ENDPOINT_SUB, ssh_server: str | None = None,
                 timeout: float = 1.0, ssh_keyfile: str | None = None, curve: Any = None) -> None:
        self.topics = list(topics) or [""]
        self.endpoint = endpoint
        self.timeout = float(timeout)
        self._own_context = context is None
        self.context = context if context is not None else zmq.Context()
        self.pubsub_socket = setup_sub(self.context.socket(zmq.SUB), self.topics, curve)
        try:
            connect(self.pubsub_socket, endpoint, ssh_server, ssh_keyfile)
        except BaseException:
            self.stop()
            raise
        self._poller = zmq.Poller()
        self._poller.register(self.pubsub_socket, zmq.POLLIN)

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return self.iter_messages()

    def iter_messages(self) -> Iterator[tuple[bytes, bytes]]:
        """Yield ``(topic, message)`` frames until the consumer is stopped."""
        while not self.pubsub_socket.closed:
            if not self.next_ready(self.timeout):
                continue
            frames = self.pubsub_socket.recv_multipart()
            if len(frames) >= 2:
                yield frames[0], frames[1]

    def next_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for an event to be readable."""
        try:
            return bool(self._poller.poll(max(0, int(timeout * 1000))))
        except zmq.ZMQError:
            if self.pubsub_socket.closed:
                return False
            raise

    def stop(self) -> None:
        sock = getattr(self, "pubsub_socket", None)
        if sock is not None and not sock.closed:
            sock.close(linger=0)
        if self._own_context and not self.context.closed:
            self.context.term()

    close = stop

    def __enter__(self) -> "CircusConsumer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
