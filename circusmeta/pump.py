"""The proxy's stats path: libzmq forwards, a thread of ours decides when it cannot.

One thread owns the upstream SUB socket (connected to every node's stats endpoint) and the
stats PUB socket. While the pool offers at most ``max_rate`` messages a second it runs
``zmq.proxy_steerable``: libzmq moves every message from one to the other, Python sees none of
them. The proxy's main thread asks it for its counts every :data:`~circusmeta.shedding.TICK`
seconds over a control pair (``STATISTICS``) and, when the rate over
:data:`~circusmeta.shedding.DEGRADE_WINDOW` is above ``max_rate``, stops it (``TERMINATE``).
The thread then reads the same socket itself — no reconnection, nothing lost in the switch —
and forwards only what :func:`~circusmeta.streamtopics.is_detail` does not call detail, with a
notice per node (:class:`~circusmeta.shedding.Shedding`), until the rate is low again; then it
hands the sockets back to libzmq. It tells the main thread of each change over the same pair
(``MODE``, the mode and a line for the log).
"""
from __future__ import annotations

import signal
import struct
import threading
import time
from typing import Callable

import zmq

from .shedding import (DEGRADE_WINDOW, NOTICE_EVERY, RECOVER_WINDOW, SATURATED_AFTER, TICK,
                       RateMeter, Shedding, should_degrade, should_recover)
from .streamtopics import is_detail

__all__ = ["StatsPump", "FULL", "DEGRADED"]

FULL, DEGRADED = "full", "degraded"
_BATCH = 20_000                 # messages read in a row before the clock is looked at again
_MODE = b"MODE"
#: delivered to the process's other threads: an interrupted libzmq proxy starts again, counts
#: reset (pyzmq retries it on EINTR)
_BLOCKED = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD,
            signal.SIGWINCH, signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE, signal.SIGALRM}


class StatsPump:
    """The thread forwarding ``sub`` to ``pub`` (both then belong to it until :meth:`stop`).

    :meth:`tick` (every TICK seconds) and :meth:`stop` are called from the thread that made
    the pump; they return the lines to log.
    """

    def __init__(self, context: zmq.Context, sub: zmq.Socket, pub: zmq.Socket, max_rate: int,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.sub, self.pub, self.max_rate = sub, pub, max_rate
        self.clock, self.wall = clock, wall
        address = f"inproc://circusmeta-pump-{id(self):x}"
        self._ctl = context.socket(zmq.PAIR)           # ours
        self._ctl.linger = 0
        self._ctl.bind(address)
        self._their_ctl = context.socket(zmq.PAIR)     # the thread's
        self._their_ctl.linger = 0
        self._their_ctl.connect(address)
        self.mode = FULL                               # as this side knows it
        # written by the thread, read by the caller (whole ints: no lock needed)
        self.periods = 0                               # degraded periods so far
        self.not_forwarded = 0                         # messages dropped while degraded
        self._forwarded_full = 0                       # by libzmq, in earlier full periods
        self._forwarded_now = 0                        # by libzmq, in this full period
        self._forwarded_degraded = 0
        self._stopping = False
        self._meter = RateMeter(DEGRADE_WINDOW)
        self._thread = threading.Thread(target=self._run, name="circusmeta-stats", daemon=True)
        self.error: BaseException | None = None
        self.stopped = False                           # stop() ended the thread
        self._dropped_before = self._forwarded_before = 0   # earlier degraded periods

    @property
    def forwarded(self) -> int:
        return self._forwarded_full + self._forwarded_now + self._forwarded_degraded

    def start(self) -> None:
        self._thread.start()

    # -- the calling thread ---------------------------------------------------------------

    def tick(self) -> list[str]:
        """Read what the thread said; in full mode ask for its counts and stop it when the
        rate is above max_rate. Returns the lines to log."""
        lines = self._messages()
        if self.mode != FULL or self._stopping or not self._thread.is_alive():
            return lines
        count = self._statistics()
        if count is None:
            return lines
        now = self.clock()
        if count < self._forwarded_now:            # the libzmq proxy started again: new counts
            self._forwarded_full += self._forwarded_now
            self._meter.reset()
        self._forwarded_now = count
        self._meter.add(now, count)
        if self._meter.full(now) and should_degrade(self._meter.rate(), self.max_rate):
            self.mode = "leaving"                  # until the thread says it degraded
            self._ctl.send(b"TERMINATE")
        return lines

    def stop(self, timeout: float = 5.0) -> list[str]:
        """Stop the thread and wait for it; the sockets are the caller's again."""
        lines = self._messages()
        if self.mode == FULL and self._thread.is_alive():
            count = self._statistics()
            if count is not None:
                self._forwarded_now = count
        self._stopping = True
        if self._thread.is_alive():
            self._ctl.send(b"TERMINATE")
            self._thread.join(timeout)
        if self._thread.is_alive():
            lines.append(f"the stats thread did not stop within {timeout:g} s")
            return lines
        lines += self._messages()
        self._ctl.close(0)
        self._their_ctl.close(0)
        self.stopped = True
        return lines

    def _statistics(self) -> int | None:
        """Messages the running libzmq proxy took in (frames / 2: a topic and a payload)."""
        self._ctl.send(b"STATISTICS")
        if not self._ctl.poll(1000):
            return None
        frames = self._ctl.recv_multipart()
        if frames[0] == _MODE:                     # not expected in full mode; keep it
            self._handle_mode(frames)
            return None
        return struct.unpack("=Q", frames[0])[0] // 2

    def _messages(self) -> list[str]:
        lines = []
        while True:
            try:
                frames = self._ctl.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return lines
            if frames[0] == _MODE:
                lines.append(self._handle_mode(frames))

    def _handle_mode(self, frames: list[bytes]) -> str:
        if frames[1].decode() == FULL:
            self.mode = FULL
            self._forwarded_full += self._forwarded_now
            self._forwarded_now = 0
            self._meter.reset()                    # libzmq's counts start again
        else:
            self.mode = DEGRADED
        return frames[2].decode()

    # -- the thread -----------------------------------------------------------------------

    def _say(self, mode: str, line: str) -> None:
        self._their_ctl.send_multipart([_MODE, mode.encode(), line.encode()])

    def _run(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCKED)
        try:
            while not self._stopping:
                zmq.proxy_steerable(self.sub, self.pub, None, self._their_ctl)
                if self._stopping:
                    return
                shed = Shedding(self.max_rate, self.wall())
                self.periods += 1
                self._say(DEGRADED, "degraded: " + shed.reason(self._meter.rate(), False))
                if not self._degraded(shed):
                    return
        except zmq.ContextTerminated:
            return
        except BaseException as exc:              # said by the caller, not lost in a thread
            self.error = exc
            raise

    def _degraded(self, shed: Shedding) -> bool:
        """Forward the aggregates only until the rate is low (True) or a stop (False)."""
        sub, pub, ctl = self.sub, self._pub_send(), self._their_ctl
        # two recv calls cost a third of one recv_multipart (pyzmq's is Python); a frame read
        # where a topic is expected and that ends its message is skipped: in step again
        recv, more, MORE, NOBLOCK, detail = sub.recv, sub.getsockopt, zmq.RCVMORE, \
            zmq.NOBLOCK, is_detail
        dropped, kept, notice = shed.dropped, shed.kept, shed.notice
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        poller.register(ctl, zmq.POLLIN)
        meter = RateMeter(RECOVER_WINDOW)
        now = started = self.clock()
        meter.add(now, 0)
        offered = forwarded = 0
        last_empty, saturated = now, False
        next_tick, next_notice = now + TICK, now + NOTICE_EVERY
        shed.update(self._meter.rate(), False)
        while True:
            wait = max(0.0, next_tick - now)
            ready = dict(poller.poll(max(1, int(wait * 1000)) if wait else 0))
            if ctl in ready:
                while ctl.poll(0):
                    if ctl.recv_multipart()[0] == b"TERMINATE":
                        self._note(shed, forwarded)
                        return False               # STATISTICS: not answered in this mode
            n = 0
            while n < _BATCH:
                try:
                    topic = recv(NOBLOCK)
                except zmq.Again:
                    last_empty = None
                    break
                n += 1
                if not more(MORE):
                    continue
                body = recv(NOBLOCK)
                node = topic.partition(b"/")[0]
                if detail(topic, body):
                    dropped[node] = dropped.get(node, 0) + 1
                else:
                    kept[node] = kept.get(node, 0) + 1
                    if topic.endswith(b"/stat.node"):      # a round's end: its notice first
                        pub(*notice(node))
                    pub(topic, body)
                    forwarded += 1
            offered += n
            now = self.clock()
            if last_empty is None:
                last_empty = now
            if now < next_tick:
                continue
            next_tick = now + TICK
            meter.add(now, offered)
            behind = now - last_empty > SATURATED_AFTER
            if behind != saturated:
                saturated = behind
                self._say(DEGRADED, "saturated: the proxy reads slower than the nodes publish; "
                          "the nodes' publishers drop what its queue cannot hold"
                          if saturated else "no longer saturated")
            shed.update(meter.rate(), saturated)
            if now >= next_notice:                     # the nodes without a node view
                next_notice = now + NOTICE_EVERY
                for topic, body in shed.notices():
                    pub(topic, body)
                self._note(shed, forwarded)
            rate = meter.rate()
            if (now - started >= RECOVER_WINDOW and meter.full(now)
                    and should_recover(rate, self.max_rate)):
                for topic, body in shed.ended(rate, self.wall()):
                    pub(topic, body)
                self._note(shed, forwarded)
                self._say(FULL, f"full detail again: {shed.recovered(rate)} "
                                f"({shed.total:,} messages were not forwarded meanwhile)")
                return True

    def _note(self, shed: Shedding, forwarded: int) -> None:
        self.not_forwarded = self._dropped_before + shed.total
        self._forwarded_degraded = self._forwarded_before + forwarded

    def _pub_send(self) -> Callable[[bytes, bytes], None]:
        self._dropped_before = self.not_forwarded
        self._forwarded_before = self._forwarded_degraded
        send, MORE, NOBLOCK = self.pub.send, zmq.SNDMORE, zmq.NOBLOCK

        def pub(topic: bytes, body: bytes) -> None:
            send(topic, MORE | NOBLOCK)            # a PUB drops rather than block
            send(body, NOBLOCK)
        return pub
