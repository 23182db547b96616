"""Circus 0.19's ``circus.stats.client.StatsClient``: a subscriber of the stats endpoint that
yields ``(watcher, subtopic, stat)`` for 0.19's ``stat.<watcher>[.<subtopic>]`` topics
(``subtopic`` is the pid, or None for a watcher's aggregate; ``stat`` the decoded payload).
circus-top is :mod:`circus.cli.top`.
"""
from __future__ import annotations

import json
from typing import Any, Iterator

import zmq

from circus.client.wire import DEFAULT_ENDPOINT_STATS
from circus.consumer import CircusConsumer

__all__ = ["StatsClient"]


class StatsClient(CircusConsumer):
    def __init__(self, endpoint: str = DEFAULT_ENDPOINT_STATS, ssh_server: str | None = None,
                 context: zmq.Context | None = None) -> None:
        super().__init__(["stat."], context, endpoint, ssh_server)

    def iter_messages(self) -> Iterator[tuple[str, str | None, Any]]:  # type: ignore[override]
        for topic, stat in super().iter_messages():
            parts = topic.decode(errors="replace").split(".")
            if len(parts) == 3:
                yield parts[1], parts[2], json.loads(stat)
            elif len(parts) == 2:
                yield parts[1], None, json.loads(stat)
