"""What circusctl follows on circusd's events socket: ``listen`` and ``tail --follow``.

``listen [TOPIC...]`` prints one line per event, flushed: ``<topic>  key=value ...`` (the
payload's fields in order, ``time`` as local time; strings with spaces quoted as JSON), or with
``--json`` one JSON object per line, ``{"topic": ..., "data": <payload>}``.

``tail [NAME] --follow`` subscribes to ``output.<watcher>.`` (``output.`` without a name: every
watcher), waits for circusd's confirmation of the subscription, then asks for the last lines,
so that no line falls between the two; a line seen twice is recognised by its ``seq``. Without a
name each line starts with its watcher's name, aligned, as ``pm2 logs`` does.

Before the first connection, a missing socket file, a refused connection or a failed handshake
ends the command at once (exit 1, the reason named, as for control calls); afterwards, circusd
going away and coming back is said on stderr and following goes on.
"""
from __future__ import annotations

import json
import time
from typing import Any, Mapping

import zmq

from circus.cli.ctl_color import Paint
from circus.client.errors import CallTimeout, Unreachable
from circus.client.reach import ConnectionWatch, socket_file_problem
from circus.client.wire import connect, setup_sub

__all__ = ["Subscriber", "event_line", "event_json", "listen", "follow_tail"]


def _value(key: str, value: Any) -> str:
    if key == "time" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return time.strftime("%H:%M:%S", time.localtime(value)) + f".{int(value * 1000) % 1000:03d}"
    if isinstance(value, str):
        if value and not any(c.isspace() or c in "\"=" for c in value):
            return value
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"))


def _decode(message: bytes) -> Any:
    try:
        return json.loads(message)
    except ValueError:
        return message.decode(errors="replace")


def event_line(topic: bytes, message: bytes, paint: Paint) -> str:
    """``<topic>  key=value key=value ...``."""
    name = topic.decode(errors="replace")
    payload = _decode(message)
    if isinstance(payload, Mapping):
        body = " ".join(f"{k}={_value(str(k), v)}" for k, v in payload.items())
    else:
        body = payload if isinstance(payload, str) else json.dumps(payload)
    return f"{paint.bold(name)}  {body}".rstrip()


def event_json(topic: bytes, message: bytes) -> str:
    return json.dumps({"topic": topic.decode(errors="replace"), "data": _decode(message)})


class Subscriber:
    """A SUB socket on ``endpoint`` whose connection is watched (not through ssh)."""

    def __init__(self, endpoint: str, topics: list[str], options: Any) -> None:
        self.endpoint = endpoint
        self.context = zmq.Context()
        self.sock = setup_sub(self.context.socket(zmq.SUB), topics, options.curve)
        self.watch: ConnectionWatch | None = None
        self._mark = 0
        self._up = False                   # connected (and the handshake done) at least once
        try:
            if not options.ssh:
                problem = socket_file_problem(endpoint)
                if problem:
                    raise Unreachable(f"cannot connect to {endpoint}: {problem}")
                self.watch = ConnectionWatch(self.sock, endpoint, keyed=options.curve is not None)
            connect(self.sock, endpoint, options.ssh, options.ssh_keyfile)
        except BaseException:
            self.close()
            raise
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        if self.watch is not None:
            self.poller.register(self.watch.monitor, zmq.POLLIN)

    def wait_connected(self, timeout: float) -> None:
        """Return once connected; Unreachable at a failure, CallTimeout at ``timeout``."""
        if self.watch is None:
            return
        deadline = time.monotonic() + timeout
        while not self._ready():
            problem = self.watch.failed_since(self._mark)
            if problem:
                raise Unreachable(problem)
            left = deadline - time.monotonic()
            if left <= 0:
                raise CallTimeout(self.watch.timed_out(timeout))
            self.watch.monitor.poll(max(1, int(left * 1000)))
        self._up = True

    def _ready(self) -> bool:
        assert self.watch is not None
        self.watch.feed()
        seen = self.watch.seen
        return seen.connected and seen.handshake == zmq.EVENT_HANDSHAKE_SUCCEEDED

    def next(self, timeout: float, notice: Any = None) -> list[bytes] | None:
        """The next event's frames within ``timeout`` seconds, or None. ``notice(text)`` is told
        when the connection goes away and comes back."""
        ready = dict(self.poller.poll(max(0, int(timeout * 1000))))
        if self.watch is not None and self.watch.monitor in ready:
            was = self.watch.seen.connected
            self.watch.feed()
            now = self.watch.seen.connected
            if notice is not None and was != now:
                notice(f"circusctl: {'reconnected to' if now else 'lost the connection to'} "
                       f"{self.endpoint}" + ("" if now else "; waiting for it to come back"))
        if self.sock in ready:
            try:
                return self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return None
        return None

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()
            self.watch = None
        if not self.sock.closed:
            self.sock.close(linger=0)
        self.context.term()


def listen(session: Any, topics: list[str], endpoint: str, options: Any) -> int:
    """Print events until interrupted."""
    paint = session.paint_out
    sub = Subscriber(endpoint, topics, options)
    try:
        sub.wait_connected(options.timeout)
        while True:
            frames = sub.next(1.0, notice=lambda text: session.print(text, error=True))
            if frames is None or len(frames) < 2:
                continue
            topic, message = frames[0], frames[1]
            session.print(event_json(topic, message) if options.json
                          else event_line(topic, message, paint))
    except KeyboardInterrupt:
        return 0
    finally:
        sub.close()


def follow_tail(session: Any, props: dict[str, Any], options: Any) -> int:
    """The last lines, then every new one until interrupted."""
    from circus.cli.ctl_output import name_width, tail_lines
    from circus.client.wire import make_message
    from circus.protocol import output_topic

    name = props.get("name")
    stream = props.get("stream") or ""
    topic = output_topic(name, stream) if name else "output."
    endpoint = session.pubsub_endpoint(options)
    width = 0
    if not name and not options.json:           # align on every watcher's name
        listed = session.client(options).call(make_message("list"))
        width = name_width((listed or {}).get("watchers") or ())
    sub = Subscriber(endpoint, [topic], options)
    try:
        sub.wait_connected(options.timeout)
        deadline = time.monotonic() + options.timeout
        while True:           # circusd answers a new output subscription on that very topic
            left = deadline - time.monotonic()
            if left <= 0:
                session.print(f"circusctl: no confirmation of the subscription to {topic} from "
                              f"{endpoint} within {options.timeout:g} s", error=True)
                return 1
            frames = sub.next(left)
            event = _decode(frames[-1]) if frames else None
            if isinstance(event, dict) and event.get("subscribed") == topic:
                break
        last = session.request("tail", props, options)
        if last.get("status") != "ok":
            session._print_reply("tail", last, props, options)
            return 3
        paint = session.paint_out
        if options.json:
            session.print(json.dumps(last))
        else:
            width = max(width, name_width(e.get("watcher", "") for e in last.get("lines") or ()))
            for line in tail_lines(last.get("lines"), paint, width, by_watcher=not name):
                session.print(line)
        # the last seq printed per watcher: events up to it were in the reply; once a newer
        # line of a watcher came, its events are all new
        seqs: dict[Any, int] = {}
        for entry in last.get("lines") or []:
            key = entry.get("watcher")
            seqs[key] = max(seqs.get(key, 0), entry.get("seq", 0))
        notice = lambda text: session.print(text, error=True)     # noqa: E731
        while True:
            frames = sub.next(1.0, notice)
            if not frames or len(frames) < 2:
                continue
            try:
                event = json.loads(frames[-1])
            except ValueError:
                continue
            if not isinstance(event, dict) or "line" not in event:
                continue
            if stream and event.get("stream") != stream:
                continue
            key = event.get("watcher")
            if key in seqs:
                if event.get("seq", 0) <= seqs[key]:
                    continue              # already printed from the reply
                del seqs[key]
            width = max(width, len(str(key or "")))
            if options.json:
                session.print(json.dumps(event))
            else:
                session.print(tail_lines([event], paint, width, by_watcher=not name)[0])
    except KeyboardInterrupt:
        return 0
    finally:
        sub.close()
