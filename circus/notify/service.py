"""The notifier inside circusd: matches events and output lines, throttles, delivers, retries.

One :class:`~circus.notify.channel.Channel` per ``[notify:NAME]`` section, each with its own throttle, a bounded queue
of messages and one delivery task at a time, so a slow or dead destination delays only its own
messages. Matching runs on the loop and is cheap (a dict lookup per event, one regex search per
output line of the covered watchers); delivery never runs on it: smtp and webhooks go to a small
thread pool, exec commands through the arbiter's reaper.

A failed delivery is logged and published as ``notify.<name>.failed`` (``reason``, ``attempt``,
``retry_in``: seconds, or null when it gives up), then retried after ``retry_delay`` seconds,
doubled each time up to :data:`MAX_RETRY_DELAY`, ``retries`` times. A delivered message is
published as ``notify.<name>.sent``. When the queue is full the oldest message is dropped, and
the next message says so.

The channels, with the rules and the senders, are loaded with the first notification a
configuration has (:meth:`Notifier.configure`): a circusd without ``[notify:]`` sections keeps
only this module.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Protocol

if TYPE_CHECKING:
    from circus.config import NotifyConfig
    from circus.notify.channel import Channel
    from circus.notify.senders import Sender

__all__ = ["Notifier", "Channel", "QUEUE_SIZE", "MAX_RETRY_DELAY", "CLOSE_GRACE"]

log = logging.getLogger("circus")

#: messages waiting per notification before the oldest is dropped
QUEUE_SIZE = 100
#: the longest wait between two delivery attempts (seconds)
MAX_RETRY_DELAY = 600.0
#: at shutdown, how long pending messages (and the digests of held-back ones) get to go out
CLOSE_GRACE = 5.0
#: safety net around a sender, beyond the notification's own timeout (seconds)
SLACK = 5.0

SenderFactory = Callable[["NotifyConfig"], "Sender"]


def __getattr__(name: str) -> Any:
    if name == "Channel":                       # loaded with the first notification
        from circus.notify.channel import Channel
        return Channel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class NotifyHost(Protocol):
    node: str
    environ: Mapping[str, str]

    def publish(self, topic: str, payload: dict) -> None: ...
    async def run_command(self, spec: Any, timeout: float) -> int: ...


class Notifier:
    """Every notification of one circusd; an arbiter listener (events) and output listener."""

    def __init__(self, host: NotifyHost, make: SenderFactory | None = None,
                 executor: Executor | None = None) -> None:
        self.host = host
        self._executor = executor
        self._make = make
        self.channels: dict[str, Channel] = {}
        self.closed = False

    def _pool(self) -> Executor:
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(4, thread_name_prefix="circus-notify")
        return self._executor

    def configure(self, configs: Iterable[NotifyConfig]) -> None:
        """Use these notifications from now on: unchanged ones keep their state, the others are
        replaced (a replaced or removed one's pending messages are dropped)."""
        wanted = {cfg.name: cfg for cfg in configs}
        for name, channel in list(self.channels.items()):
            if wanted.get(name) != channel.cfg:
                channel.cancel()
                del self.channels[name]
        if not wanted:
            return
        # the channels' module, with the rules and the senders, is for a notification only
        from circus.notify.channel import Channel, make_sender

        for name, cfg in wanted.items():
            if name not in self.channels:
                sender = self._make(cfg) if self._make is not None else \
                    make_sender(cfg, self.host, self._pool())
                self.channels[name] = Channel(cfg, sender, self.host)

    def wants_output(self, watcher: str) -> bool:
        """Does a notification search this watcher's output lines?"""
        return any(c.rule.wants_lines(watcher) for c in self.channels.values())

    def on_event(self, topic: str, payload: dict) -> None:
        """Arbiter listener: ``watcher.<name>.<event>`` events."""
        if self.closed or not self.channels or not topic.startswith("watcher."):
            return
        key, _, event = topic[len("watcher."):].rpartition(".")
        found = getattr(self.host, "watchers", {}).get(key)
        watcher = found.name if found is not None else key
        wall = time.time()
        for channel in self.channels.values():
            occurrence = channel.rule.on_event(watcher, event, payload, wall)
            if occurrence is not None:
                channel.offer(occurrence)

    def on_lines(self, watcher: str, pid: int, stream: str, lines: list[bytes]) -> None:
        """Output listener: lines a process of ``watcher`` wrote (never raises)."""
        if self.closed:
            return
        channels = [c for c in self.channels.values() if c.rule.wants_lines(watcher)]
        if not channels:
            return
        try:
            wall = time.time()
            for line in lines:
                text = line.decode(errors="replace").rstrip("\r")
                for channel in channels:
                    occurrence = channel.rule.on_line(watcher, pid, stream, text, wall)
                    if occurrence is not None:
                        channel.offer(occurrence)
        except Exception:  # the output goes on to its stream whatever happens here
            log.exception("notify: output lines of %s", watcher)

    async def close(self, grace: float = CLOSE_GRACE) -> None:
        """Send what is pending (held-back counts included) for up to ``grace`` s, then stop.
        A notification already waiting to retry a failed delivery is not waited for."""
        self.closed = True
        channels = list(self.channels.values())
        for channel in channels:
            if not channel.waiting_retry:
                channel.flush_held()
        tasks = [c.task for c in channels if c.task is not None and not c.task.done()
                 and not c.waiting_retry]
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        every = [c.task for c in channels if c.task is not None]
        for channel in channels:
            channel.cancel()
        if every:
            await asyncio.gather(*every, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
