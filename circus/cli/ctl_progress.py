"""Progress lines for waiting commands: while ``circusctl start web --waiting`` (or restart,
reload, incr...) waits for its reply, the watcher's events are followed and printed to stderr as
they come (``web: process 4121 ready``, ``web: rolling restart 2/4``). stdout keeps exactly what
0.19 printed, so scripts are not affected; progress is shown when stderr is a terminal, or with
``--progress``."""
from __future__ import annotations

import fnmatch
import json
import threading
import time
from typing import Any, TextIO

import zmq

from circus.client.wire import setup_sub

__all__ = ["Progress", "PROGRESS_COMMANDS", "describe"]

PROGRESS_COMMANDS = frozenset({"start", "stop", "restart", "reload", "incr", "decr", "kill", "rm",
                               "reloadconfig", "quit", "add"})


def describe(topic: str, payload: dict) -> str | None:
    """One progress line for an event, or None for events not worth a line."""
    parts = topic.split(".")
    if len(parts) < 3 or parts[0] != "watcher":
        return None
    name, event = ".".join(parts[1:-1]), parts[-1]
    pid = payload.get("process_pid")
    if event == "spawn":
        return f"{name}: started process {pid}"
    if event == "ready":
        return f"{name}: process {pid} ready"
    if event == "kill":
        return f"{name}: stopping process {pid}"
    if event == "reap":
        return f"{name}: process {pid} exited ({payload.get('exit_code')})"
    if event == "progress":
        failed = payload.get("failed")
        return f"{name}: rolling restart {payload.get('done')}/{payload.get('total')}" + \
            (f" stopped: {failed}" if failed else "")
    if event == "state":
        reason = payload.get("reason")
        return f"{name}: {payload.get('state')}" + (f" ({reason})" if reason else "")
    return None


#: how long the command waits for the events connection (its handshake, CURVE's included), so
#: that the first events are not published before the subscription is in place
CONNECT_WAIT = 1.0
_HANDSHAKE_DONE = zmq.EVENT_HANDSHAKE_SUCCEEDED
_HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL |
                     zmq.EVENT_HANDSHAKE_FAILED_AUTH)


def _connect_and_wait(sub: zmq.Socket, endpoint: str, timeout: float) -> None:
    """Connect, and return once the handshake is done (or failed, or ``timeout`` passed)."""
    from zmq.utils.monitor import recv_monitor_message

    monitor = sub.get_monitor_socket(_HANDSHAKE_DONE | _HANDSHAKE_FAILED)
    try:
        sub.connect(endpoint)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0 and monitor.poll(int(left * 1000) + 1):
            if recv_monitor_message(monitor)["event"] & (_HANDSHAKE_DONE | _HANDSHAKE_FAILED):
                return
    finally:
        sub.disable_monitor()
        monitor.close(linger=0)


class Progress(threading.Thread):
    """Follows a pubsub endpoint in a thread and prints progress lines until stopped."""

    def __init__(self, endpoint: str, pattern: str | None, err: TextIO, curve: Any = None) -> None:
        """``curve``: the ClientKeys of a CURVE-protected circusd, or ``None``."""
        super().__init__(name="circusctl-progress", daemon=True)
        self.endpoint, self.err, self.curve = endpoint, err, curve
        self.pattern = (pattern or "*").lower()
        self._stop_event = threading.Event()
        self._ready = threading.Event()

    def run(self) -> None:
        ctx = zmq.Context.instance()
        sub = ctx.socket(zmq.SUB)
        try:
            setup_sub(sub, ["watcher."], self.curve)
            _connect_and_wait(sub, self.endpoint, CONNECT_WAIT)
            self._ready.set()
            # once stopped (the reply came), events already on their way are still read: the
            # last step's event is published just before the reply and may arrive after it
            while True:
                if not sub.poll(100):
                    if self._stop_event.is_set():
                        break
                    continue
                topic, body = sub.recv_multipart()[:2]
                try:
                    payload = json.loads(body)
                except ValueError:
                    continue
                watcher = topic.decode(errors="replace").split(".")[1:-1]
                if not fnmatch.fnmatchcase(".".join(watcher).lower(), self.pattern):
                    continue
                line = describe(topic.decode(errors="replace"), payload)
                if line:
                    self.err.write(line + "\n")
                    self.err.flush()
        finally:
            self._ready.set()
            sub.close()

    def __enter__(self) -> "Progress":
        self.start()
        self._ready.wait(CONNECT_WAIT + 0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_event.set()
        self.join(1.0)
