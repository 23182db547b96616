"""The pool's watchers page (``/watchers``), its forms (a rolling restart, an add with
placement) and the page of a job (``/jobs/ID``).

The rows are summed here, from what :class:`.poolview.PoolView` keeps (one ``processes``
question per node per round, never one per page); the page's script then gets only what
changes, over ``/ws/pool``. Every form post is checked here for the role its command needs
(``restart``: operator, ``add``: admin), whatever the page showed.
"""
from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import tornado.web

from circusmeta.pool import STRATEGIES

from .handlers import PageHandler
from .poolactions import BadRequest, add_request, required_role, rolling_request
from .poolview import nodes_with_tag, pool_tags
from .watchers import SORT_KEYS, filter_rows, sort_rows, watcher_rows

__all__ = ["WatchersPage", "RollingPost", "AddPost", "JobPage", "watchers_view",
           "refuse_busy", "RECENT_JOBS"]

log = logging.getLogger("circus.web")

#: jobs listed on the watchers page
RECENT_JOBS = 5


def _order(by: str, order: str) -> bool:
    return SORT_KEYS.get(by, False) if order not in ("asc", "desc") else order == "desc"


async def watchers_view(web: Any, tag: str | None, name: str = "", by: str = "name",
                        order: str = "") -> dict[str, Any]:
    """The rows for nodes with ``tag`` (all: None), names containing ``name``, sorted; what
    the nodes that did not answer are; when it was asked."""
    view = web.pool_view
    await view.fresh()
    config = view.pool.config
    nodes = nodes_with_tag(config, tag)
    rows = watcher_rows(view.records, nodes)
    shown = sort_rows(filter_rows(rows, name), by, _order(by, order))
    missing = {n: {"state": s, "reason": r} for n, (s, r) in view.unanswered().items()
               if n in nodes}
    return {"rows": shown, "total_rows": len(rows), "nodes": nodes,
            "answered": sum(1 for n in nodes if n in view.records), "unanswered": missing,
            "refresh": view.stats.to_dict(), "tag": tag, "name": name, "sort": by,
            "order": "desc" if _order(by, order) else "asc"}


class _PoolPage(PageHandler):
    def query(self) -> tuple[str | None, str, str, str]:
        tag = self.get_query_argument("tag", "").strip() or None
        if tag is not None and tag not in pool_tags(self.web.backend.pool.config):
            raise tornado.web.HTTPError(404, f"no node has tag {tag!r} in this pool")
        by = self.get_query_argument("sort", "name")
        if by not in SORT_KEYS:
            raise tornado.web.HTTPError(400, f"cannot sort by {by!r}: one of "
                                             f"{', '.join(SORT_KEYS)}")
        return tag, self.get_query_argument("name", "").strip(), by, \
            self.get_query_argument("order", "")


class WatchersPage(_PoolPage):
    async def get(self) -> None:
        tag, name, by, order = self.query()
        view = await watchers_view(self.web, tag, name, by, order)
        config = self.web.backend.pool.config

        def sort_link(key: str) -> str:
            desc = _order(key, "")
            if key == view["sort"]:
                desc = view["order"] != "desc"
            args = {k: v for k, v in (("name", name), ("tag", tag or ""), ("sort", key),
                                      ("order", "desc" if desc else "asc")) if v}
            return "/watchers?" + urlencode(args)
        self.render_page("watchers.html", page="watchers", v=view, tags=pool_tags(config),
                         strategies=STRATEGIES, default_strategy=config.meta.strategy,
                         pool_nodes=list(config.nodes), sort_link=sort_link,
                         jobs=self.web.jobs.recent()[:RECENT_JOBS],
                         source=config.file, total_nodes=len(config.nodes))


class JobPage(PageHandler):
    def get(self, job_id: str) -> None:
        job = self.web.jobs.get(job_id)
        if job is None:
            raise tornado.web.HTTPError(404, f"no job {job_id!r} (circushttpd keeps the last "
                                             f"finished ones only until it restarts)")
        self.render_page("job.html", page="job", job=job.message(),
                         source=self.web.backend.pool.config.file)


def refuse_busy(web: Any, watcher: str) -> str | None:
    running = web.jobs.running_on(watcher)
    if running is None:
        return None
    return (f"a {running.kind} {running.action} of {running.target} is running (by "
            f"{running.user}, job {running.id}): wait for it to end")


class _PoolPost(PageHandler):
    """A form post that starts a job: 303 to the job's page, or the job as JSON (202) when the
    request accepts ``application/json`` (the page's script)."""

    def wants_json(self) -> bool:
        return "application/json" in self.request.headers.get("Accept", "")

    def refuse(self, status: int, reason: str) -> None:
        if self.wants_json():
            self.set_status(status)
            self.finish({"error": {403: "forbidden", 409: "busy"}.get(status, "bad request"),
                         "reason": reason})
        else:
            raise tornado.web.HTTPError(status, reason)

    def field(self, name: str) -> Any:
        values = self.get_body_arguments(name)
        return values[-1] if values else None

    def allowed(self, command: str) -> bool:
        user, needed = self.current_user, required_role(command)
        if user.role >= needed:
            return True
        log.warning("refused a pool-wide %s for %s (%s): needs %s", command, user.name,
                    user.role_name, needed.name.lower())
        self.refuse(403, f"{command} needs the {needed.name.lower()} role; {user.name} is "
                         f"{user.role_name}")
        return False

    def started(self, job: Any) -> None:
        if self.wants_json():
            self.set_status(202)
            self.finish({"job": job.message(), "url": f"/jobs/{job.id}"})
        else:
            self.redirect(f"/jobs/{job.id}", status=303)

    def wait(self) -> float:
        return self.web.backend.pool.config.meta.timeout + 2.0


class RollingPost(_PoolPost):
    async def post(self) -> None:
        if not self.allowed("restart"):        # the role first (every rolling action's)
            return
        try:
            req = rolling_request(self.field, self.web.backend.pool.config)
        except BadRequest as exc:
            self.refuse(400, str(exc))
            return
        if not self.allowed(req.action):
            return
        busy = refuse_busy(self.web, req.watcher)
        if busy:
            self.refuse(409, busy)
            return
        job = await self.web.runner.rolling(req, self.current_user.name, self.wait())
        self.started(job)


class AddPost(_PoolPost):
    async def post(self) -> None:
        if not self.allowed("add"):            # the role first: nothing is read for nobody
            return
        try:
            req = add_request(self.field, self.web.backend.pool.config)
        except BadRequest as exc:
            self.refuse(400, str(exc))
            return
        busy = refuse_busy(self.web, req.name)
        if busy:
            self.refuse(409, busy)
            return
        job = await self.web.runner.add(req, self.current_user.name, self.wait())
        self.started(job)
