"""The JSON API (``/api/``), ``/metrics`` and the page's WebSocket (``/ws``).

Same users and roles as the pages: a session cookie (a POST then needs the ``X-XSRFToken``
header) or ``Authorization: Bearer TOKEN``. Anonymous: 401 ``{"error": "login required"}``.
``POST /api/command`` runs any control command on one node when the user's role is at least
the command's :class:`~circus.protocol.Role`, else 403 ``{"error": "forbidden"}``.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import tornado.web
import tornado.websocket

from circus.protocol import ProtocolError, get_command
from circus.protocol.limits import check_depth

from .auth import AuthMixin
from .metrics import CONTENT_TYPE, render_metrics

__all__ = ["ApiHandler", "QueuedSocket", "StatusHandler", "CommandHandler", "NodesHandler", "MetricsHandler",
           "LiveSocket"]

log = logging.getLogger("circus.web")

MAX_BODY = 64 * 1024
MAX_DEADLINE = 300.0
#: names no command has, taken by the way a call is made: refused as properties
RESERVED = ("node", "nodes", "command", "deadline", "user", "props_for")


class ApiHandler(AuthMixin, tornado.web.RequestHandler):
    allow_token = True

    def prepare(self) -> None:
        self.set_header("Cache-Control", "no-store")
        if self.current_user is None:
            self.fail(401, "login required")

    def fail(self, status: int, error: str, **extra: Any) -> None:
        self.set_status(status)
        self.finish({"error": error, **extra})

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        reason = exc[1].log_message if exc and isinstance(exc[1], tornado.web.HTTPError) \
            and exc[1].log_message else self._reason
        error = {401: "login required", 403: "forbidden", 404: "not found"}.get(
            status_code, "error")
        self.finish({"error": error, "reason": reason})


class NotFoundHandler(ApiHandler):
    def get(self, *args: Any) -> None:
        self.fail(404, "not found", reason=f"no API path {self.request.path}")

    post = get


class StatusHandler(ApiHandler):
    async def get(self) -> None:
        self.finish(await self.web.backend.status())


class NodesHandler(ApiHandler):
    """Each node's state, load, memory, watcher and process counts (the overview)."""

    async def get(self) -> None:
        self.finish({"nodes": await self.web.backend.overview()})


class CommandHandler(ApiHandler):
    async def post(self) -> None:
        if len(self.request.body) > MAX_BODY:
            self.fail(413, "bad request", reason=f"the body is larger than {MAX_BODY} bytes")
            return
        try:
            body = json.loads(self.request.body or b"null")
        except ValueError as exc:
            self.fail(400, "bad request", reason=f"the body is not JSON: {exc}")
            return
        if not isinstance(body, dict) or not check_depth(body):
            self.fail(400, "bad request", reason='expected {"node": NAME, "command": NAME, '
                                                 '"properties": {...}}')
            return
        node, props = body.get("node"), body.get("properties", {})
        deadline = body.get("deadline", 10.0)
        try:
            command = get_command(body.get("command"))
        except ProtocolError as exc:
            self.fail(400, "bad request", reason=str(exc))
            return
        if not isinstance(props, dict):
            self.fail(400, "bad request", reason="'properties' must be an object")
            return
        taken = sorted(k for k in props if k in RESERVED)
        if taken:
            self.fail(400, "bad request", reason=f"no command has a property {taken[0]!r}")
            return
        if isinstance(deadline, bool) or not isinstance(deadline, (int, float)) \
                or not 0 < deadline <= MAX_DEADLINE:
            self.fail(400, "bad request", reason=f"'deadline' is seconds, > 0 and at most "
                                                 f"{MAX_DEADLINE:g}")
            return
        names = self.web.backend.names
        if node is None and len(names) == 1:
            node = names[0]
        if not isinstance(node, str) or not self.web.backend.has(node):
            self.fail(404, "not found", reason=f"no node {node!r} in this pool (nodes: "
                                               f"{', '.join(names)})")
            return
        user = self.current_user
        if user.role < command.role:
            log.warning("API: refused %s for %s (%s)", command.name, user.name, user.role_name)
            self.fail(403, "forbidden", reason=f"{command.name} needs the "
                      f"{command.role.name.lower()} role; {user.name} is {user.role_name}")
            return
        result = await self.web.backend.call(node, command.name, deadline=float(deadline),
                                             user=user.name, **props)
        if not command.readonly:
            log.info("API: %s (%s) on %s: %s -> %s", user.name, user.role_name, node,
                     command.name, "ok" if result.ok else result.state)
        if result.reply is None:
            self.set_status(504 if result.state == "unresponsive" else 502)
        self.finish(result.to_dict())


class MetricsHandler(ApiHandler):
    async def get(self) -> None:
        web = self.web
        if not web.live_enabled or not web.live.has_stats:
            self.fail(404, "not found", reason="no node of this pool has a stats endpoint")
            return
        results = await web.backend.pool.call("processes")
        records = {n: r.reply.get("watchers", {}) for n, r in results.items()
                   if r.ok and r.reply}
        up = {n: r.ok for n, r in results.items()}
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(render_metrics(web.live.state, records, up))


class QueuedSocket(AuthMixin, tornado.websocket.WebSocketHandler):
    """A websocket that only sends: a session is required (the cookie is sent by the browser;
    SameSite=Strict and the Origin check keep other sites out), messages wait in a bounded
    queue (a page that does not read loses updates, never the server's memory)."""

    QUEUE = 1000

    def missing(self) -> str | None:
        """Why the thing asked for does not exist (a 404), or None."""
        return None

    async def get(self, *args: Any, **kwargs: Any) -> None:
        if self.current_user is None:
            self.set_status(401)
            self.finish({"error": "login required"})
            return
        reason = self.missing()
        if reason is not None:
            self.set_status(404)
            self.finish({"error": "not found", "reason": reason})
            return
        await super().get(*args, **kwargs)

    def start_sending(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self.QUEUE)
        self.sender = asyncio.get_running_loop().create_task(self._send())

    def put(self, message: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            pass

    async def _send(self) -> None:
        try:
            while True:
                message = await self.queue.get()
                await self.write_message(json.dumps(message))
        except (tornado.websocket.WebSocketClosedError, asyncio.CancelledError):
            return

    def on_message(self, message: str | bytes) -> None:
        pass                                  # nothing is read from the page

    def stop_sending(self) -> None:
        sender = getattr(self, "sender", None)
        if sender is not None:
            sender.cancel()


class LiveSocket(QueuedSocket):
    """``/ws?node=NAME[&watcher=W]``: the node's stats aggregates, sockets, machine view and
    events; with a watcher, also its processes' samples and its output lines."""

    def missing(self) -> str | None:
        node = self.get_argument("node", "")
        if node and not self.web.backend.has(node):
            return f"no node {node!r} in this pool"
        return None

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.node = self.get_argument("node", "") or None
        self.watcher = self.get_argument("watcher", "") or None
        self.start_sending()
        self.web.live.listeners.add(self.offer)
        self.following = bool(self.node and self.watcher and
                              self.web.live.follow_output(self.node, self.watcher))

    def offer(self, message: dict[str, Any]) -> None:
        if self.node is not None and message.get("node") != self.node:
            return
        if message["type"] == "output" and message.get("watcher") != self.watcher:
            return
        if message["type"] == "stats" and "pid" in message and \
                (self.watcher is None or message.get("watcher") != self.watcher):
            return
        self.put(message)

    def on_close(self) -> None:
        self.web.live.listeners.discard(self.offer)
        if getattr(self, "following", False):
            self.following = False
            self.web.live.unfollow_output(self.node, self.watcher)
        self.stop_sending()

