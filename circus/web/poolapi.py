"""The pool's watchers and jobs in the JSON API, and the watchers page's WebSocket.

``GET /api/watchers``, ``POST /api/rolling``, ``POST /api/add``, ``GET /api/jobs[/ID]`` take
the API's users and roles (:mod:`.api`); ``/ws/pool?tag=T`` pushes to a page what changed in
its rows (summed on the server for the nodes in its view) and in the jobs::

    {"type": "watchers", "rows": [...], "gone": [...], "answered": 5, "unanswered": {...}}
    {"type": "job", "id", "seq", ...}                                  (see :mod:`.jobs`)
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any


from circus.protocol.limits import check_depth

from .api import MAX_BODY, ApiHandler, QueuedSocket
from .poolactions import BadRequest, add_request, required_role, rolling_request
from .poolpages import refuse_busy, watchers_view
from .poolview import Change, nodes_with_tag, pool_tags
from .watchers import SORT_KEYS, row_changes

__all__ = ["WatchersApi", "RollingApi", "AddApi", "JobsApi", "JobApi", "PoolSocket"]

log = logging.getLogger("circus.web")


class WatchersApi(ApiHandler):
    async def get(self) -> None:
        tag = self.get_query_argument("tag", "").strip() or None
        if tag is not None and tag not in pool_tags(self.web.backend.pool.config):
            self.fail(404, "not found", reason=f"no node has tag {tag!r} in this pool")
            return
        by = self.get_query_argument("sort", "name")
        if by not in SORT_KEYS:
            self.fail(400, "bad request", reason=f"cannot sort by {by!r}: one of "
                                                 f"{', '.join(SORT_KEYS)}")
            return
        view = await watchers_view(self.web, tag, self.get_query_argument("name", "").strip(),
                                   by, self.get_query_argument("order", ""))
        self.finish({"watchers": view["rows"], "nodes": view["nodes"],
                     "answered": view["answered"], "unanswered": view["unanswered"],
                     "refresh": view["refresh"], "tag": tag, "sort": view["sort"],
                     "order": view["order"]})


class _JobPost(ApiHandler):
    def body(self) -> dict[str, Any] | None:
        if len(self.request.body) > MAX_BODY:
            self.fail(413, "bad request", reason=f"the body is larger than {MAX_BODY} bytes")
            return None
        try:
            body = json.loads(self.request.body or b"null")
        except ValueError as exc:
            self.fail(400, "bad request", reason=f"the body is not JSON: {exc}")
            return None
        if not isinstance(body, dict) or not check_depth(body):
            self.fail(400, "bad request", reason="expected a JSON object")
            return None
        return body

    def allowed(self, command: str) -> bool:
        user, needed = self.current_user, required_role(command)
        if user.role >= needed:
            return True
        log.warning("API: refused a pool-wide %s for %s (%s)", command, user.name,
                    user.role_name)
        self.fail(403, "forbidden", reason=f"{command} needs the {needed.name.lower()} role; "
                                           f"{user.name} is {user.role_name}")
        return False

    def answer(self, job: Any) -> None:
        if job.state == "refused":
            self.set_status(409)
            self.finish({"error": "refused", "reason": (job.banner or {}).get("reason", ""),
                         "job": job.message()})
            return
        self.set_status(202)
        self.finish({"job": job.message(), "url": f"/api/jobs/{job.id}"})

    def wait(self) -> float:
        return self.web.backend.pool.config.meta.timeout + 2.0


class RollingApi(_JobPost):
    """``{"watcher", "action": "restart" | "reload", "batch", "step_timeout", "tag",
    "nodes"}``."""

    async def post(self) -> None:
        body = self.body()
        if body is None or not self.allowed("restart"):
            return
        unknown = sorted(set(body) - {"watcher", "action", "batch", "step_timeout", "tag",
                                      "nodes"})
        if unknown:
            self.fail(400, "bad request", reason=f"unknown field {unknown[0]!r}")
            return
        try:
            req = rolling_request(body.get, self.web.backend.pool.config)
        except BadRequest as exc:
            self.fail(400, "bad request", reason=str(exc))
            return
        if not self.allowed(req.action):
            return
        busy = refuse_busy(self.web, req.watcher)
        if busy:
            self.fail(409, "busy", reason=busy)
            return
        self.answer(await self.web.runner.rolling(req, self.current_user.name, self.wait()))


class AddApi(_JobPost):
    """``{"name", "cmd", "numprocesses", "strategy", "tag", "spread", "node", "start"}``."""

    async def post(self) -> None:
        body = self.body()
        if body is None or not self.allowed("add"):
            return
        unknown = sorted(set(body) - {"name", "cmd", "numprocesses", "strategy", "tag",
                                      "spread", "node", "start"})
        if unknown:
            self.fail(400, "bad request", reason=f"unknown field {unknown[0]!r}")
            return
        try:
            req = add_request(body.get, self.web.backend.pool.config)
        except BadRequest as exc:
            self.fail(400, "bad request", reason=str(exc))
            return
        busy = refuse_busy(self.web, req.name)
        if busy:
            self.fail(409, "busy", reason=busy)
            return
        self.answer(await self.web.runner.add(req, self.current_user.name, self.wait()))


class JobsApi(ApiHandler):
    def get(self) -> None:
        self.finish({"jobs": [{k: v for k, v in j.message().items() if k not in
                               ("items", "order")} for j in self.web.jobs.recent()]})


class JobApi(ApiHandler):
    def get(self, job_id: str) -> None:
        job = self.web.jobs.get(job_id)
        if job is None:
            self.fail(404, "not found", reason=f"no job {job_id!r}")
            return
        self.finish(job.message())


class PoolSocket(QueuedSocket):
    """``/ws/pool[?tag=T]``: what changes in the watchers' rows over the nodes with ``tag``,
    and in the jobs. While one is open the pool view keeps asking the nodes."""

    def missing(self) -> str | None:
        tag = self.get_argument("tag", "").strip()
        if tag and tag not in pool_tags(self.web.backend.pool.config):
            return f"no node has tag {tag!r}"
        return None

    def open(self, *args: Any, **kwargs: Any) -> None:
        view = self.web.pool_view
        self.nodes = nodes_with_tag(view.pool.config, self.get_argument("tag", "").strip())
        self.start_sending()
        view.watch(self.changed)
        self.web.jobs.listeners.add(self.offer)
        self.offer({"type": "hello", "refresh_every": view.refresh_every,
                    "answered": sum(1 for n in self.nodes if n in view.records)})

    def changed(self, change: Change) -> None:
        view = self.web.pool_view
        rows, gone = row_changes(view.records, self.nodes, change.watchers)
        if not rows and not gone and not change.answers:
            return
        message: dict[str, Any] = {"type": "watchers", "rows": rows, "gone": gone,
                                   "answered": sum(1 for n in self.nodes if n in view.records),
                                   "time": time.time()}
        if change.answers:
            inview = set(self.nodes)
            message["unanswered"] = {n: {"state": s, "reason": r}
                                     for n, (s, r) in view.unanswered().items() if n in inview}
        self.offer(message)

    def offer(self, message: dict[str, Any]) -> None:
        self.put(message)

    def on_close(self) -> None:
        web = self.web
        web.pool_view.unwatch(getattr(self, "changed", None))
        web.jobs.listeners.discard(getattr(self, "offer", None))
        self.stop_sending()
