"""One ``[notify:NAME]`` section at work: its rule, throttle, queue and delivery task.

Loaded with a configuration's first notification (:meth:`circus.notify.service.Notifier.configure`):
with the rules and the senders it needs, so that a circusd without ``[notify:]`` sections does
not hold them.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING

from circus.notify.rules import Batch, Occurrence, Rule, Throttle, render_data, render_text
from circus.notify.senders import DeliveryError, Message, Sender, make_sender
from circus.notify.service import MAX_RETRY_DELAY, QUEUE_SIZE, SLACK

if TYPE_CHECKING:
    from circus.config import NotifyConfig
    from circus.notify.service import NotifyHost

__all__ = ["Channel", "make_sender"]

log = logging.getLogger("circus")


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
