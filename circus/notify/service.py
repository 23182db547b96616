"""The notifier inside circusd: matches events and output lines, throttles, delivers, retries.

One :class:`Channel` per ``[notify:NAME]`` section, each with its own throttle, a bounded queue
of messages and one delivery task at a time, so a slow or dead destination delays only its own
messages. Matching runs on the loop and is cheap (a dict lookup per event, one regex search per
output line of the covered watchers); delivery never runs on it: smtp and webhooks go to a small
thread pool, exec commands through the arbiter's reaper.

A failed delivery is logged and published as ``notify.<name>.failed`` (``reason``, ``attempt``,
``retry_in``: seconds, or null when it gives up), then retried after ``retry_delay`` seconds,
doubled each time up to :data:`MAX_RETRY_DELAY`, ``retries`` times. A delivered message is
published as ``notify.<name>.sent``. When the queue is full the oldest message is dropped, and
the next message says so.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Mapping, Protocol

from circus.config import NotifyConfig
from circus.notify.rules import Batch, Occurrence, Rule, Throttle, render_data, render_text
from circus.notify.senders import DeliveryError, Message, Sender, make_sender

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

SenderFactory = Callable[[NotifyConfig], Sender]


class NotifyHost(Protocol):
    node: str
    environ: Mapping[str, str]

    def publish(self, topic: str, payload: dict) -> None: ...
    async def run_command(self, spec: Any, timeout: float) -> int: ...


class Channel:
    """One notification: its rule, throttle, queue and delivery task."""

    def __init__(self, cfg: NotifyConfig, sender: Sender, host: NotifyHost) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.rule = Rule(cfg)
        self.throttle = Throttle(cfg.name, cfg.throttle)
        self.sender = sender
        self.host = host
        self.queue: deque[Batch] = deque()
        self.dropped = 0
        self.task: asyncio.Task | None = None
        self.waiting_retry = False        # the delivery task sleeps before its next attempt
        self._timer: asyncio.TimerHandle | None = None

    # -- occurrences ------------------------------------------------------------------------------

    def offer(self, occurrence: Occurrence) -> None:
        loop = asyncio.get_running_loop()
        batch = self.throttle.offer(occurrence, loop.time())
        if batch is None:
            log.debug("notify %s: held back by the throttle: %s %s", self.name,
                      occurrence.watcher, occurrence.event)
        else:
            self._enqueue(batch)
        self._arm(loop)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        due = self.throttle.due()
        if due is not None and self._timer is None:
            self._timer = loop.call_at(due, self._window_ended)

    def _window_ended(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        batch = self.throttle.flush(loop.time())
        if batch is not None:
            self._enqueue(batch)
        self._arm(loop)

    def _enqueue(self, batch: Batch) -> None:
        if len(self.queue) >= QUEUE_SIZE:
            self.queue.popleft()
            self.dropped += 1
            log.warning("notify %s: queue full (%d messages): dropped the oldest", self.name,
                        QUEUE_SIZE)
        self.queue.append(batch)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._work(),
                                                               name=f"notify:{self.name}")

    # -- delivery ---------------------------------------------------------------------------------

    async def _work(self) -> None:
        while self.queue:
            batch = self.queue.popleft()
            try:
                await self._deliver(batch)
            except Exception:   # a bug here must not end the channel's deliveries
                log.exception("notify %s: delivery failed", self.name)

    def message(self, batch: Batch) -> Message:
        node = self.host.node
        title, text = render_text(batch, node, self.dropped)
        first = (batch.occurrences or batch.held or (None,))[0]
        env = {"CIRCUS_NOTIFY": self.name, "CIRCUS_NODE": node, "CIRCUS_SUBJECT": title,
               "CIRCUS_WATCHER": first.watcher if first else "",
               "CIRCUS_EVENT": ("digest" if batch.digest else first.event) if first else "",
               "CIRCUS_SUPPRESSED": str(batch.suppressed)}
        return Message(title, text, render_data(batch, node, self.dropped), env)

    async def _deliver(self, batch: Batch) -> None:
        message = self.message(batch)
        cfg = self.cfg
        attempt = 0
        while True:
            attempt += 1
            try:
                await asyncio.wait_for(self.sender.send(message), cfg.timeout + SLACK)
            except DeliveryError as exc:
                reason = str(exc)
            except TimeoutError:
                reason = f"{cfg.destination}: no answer after {cfg.timeout + SLACK:g} s"
            else:
                self.dropped = 0
                log.info("notify %s: sent %r to %s", self.name, message.subject, cfg.destination)
                self.host.publish(f"notify.{self.name}.sent", {
                    "time": time.time(), "subject": message.subject, "attempt": attempt})
                return
            retry_in = None if attempt > cfg.retries else \
                min(MAX_RETRY_DELAY, cfg.retry_delay * 2 ** (attempt - 1))
            if retry_in is None:
                log.error("notify %s: giving up on %r after %d attempt(s): %s", self.name,
                          message.subject, attempt, reason)
            else:
                log.warning("notify %s: attempt %d failed (%s); retrying in %g s", self.name,
                            attempt, reason, retry_in)
            self.host.publish(f"notify.{self.name}.failed", {
                "time": time.time(), "reason": reason, "attempt": attempt, "retry_in": retry_in,
                "subject": message.subject})
            if retry_in is None:
                return
            self.waiting_retry = True
            try:
                await asyncio.sleep(retry_in)
            finally:
                self.waiting_retry = False

    # -- end ----------------------------------------------------------------------------------------

    def flush_held(self) -> None:
        """Queue a digest of what the throttle holds back now (shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch = self.throttle.flush(asyncio.get_running_loop().time(), force=True)
        if batch is not None:
            self._enqueue(batch)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.queue:
            log.warning("notify %s: %d message(s) not sent", self.name, len(self.queue))
            self.queue.clear()


class Notifier:
    """Every notification of one circusd; an arbiter listener (events) and output listener."""

    def __init__(self, host: NotifyHost, make: SenderFactory | None = None,
                 executor: Executor | None = None) -> None:
        self.host = host
        self._executor = executor
        self._make = make or (lambda cfg: make_sender(cfg, host, self._pool()))
        self.channels: dict[str, Channel] = {}
        self.closed = False

    def _pool(self) -> Executor:
        if self._executor is None:
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
        for name, cfg in wanted.items():
            if name not in self.channels:
                self.channels[name] = Channel(cfg, self._make(cfg), self.host)

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
