"""The HTML pages: login, pool overview, node, watcher, and the action forms.

Every page needs a session (a signed cookie); an anonymous request is sent to ``/login``. Every
POST carries the ``_xsrf`` token, and the role check is done here, on the server, for every
action: a button the page does not show is also refused when posted by hand.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import quote, urlencode

import tornado.web
from markupsafe import Markup

from circus.protocol import COMMANDS, Role
from circus.protocol.limits import name_problem

from .auth import AuthMixin
from .banners import banner
from .hashing import Busy
from .nodes import ACTION_COMMANDS, ACTION_DEADLINE
from .redirects import safe_target
from .users import valid_name

__all__ = ["PageHandler", "LoginHandler", "LogoutHandler", "OverviewHandler", "NodeHandler",
           "WatcherHandler", "ActionHandler", "AddWatcherHandler", "NotFoundHandler"]

log = logging.getLogger("circus.web")

FLASH = "circushttpd_flash"
#: the largest banner kept in the flash cookie (JSON characters; a cookie holds about 4 KB)
FLASH_MAX = 2000


def _flash_text(shown: dict[str, Any]) -> str:
    """``shown`` as JSON of at most FLASH_MAX characters: the oldest output lines go first,
    then the reason is cut."""
    value = {k: shown.get(k) for k in ("kind", "title", "reason", "summary")}
    lines = [str(x)[:200] for x in shown.get("lines") or ()]
    while True:
        text = json.dumps({**value, "lines": lines})
        if len(text) <= FLASH_MAX:
            return text
        if lines:
            lines = lines[1:]
            continue
        for key in ("reason", "summary", "title"):       # what is left, cut in this order
            words = str(value[key] or "")
            if len(words) > 3:
                value[key] = words[:max(0, len(words) - (len(text) - FLASH_MAX) - 3)] + "..."
                break
        else:
            return json.dumps({"kind": value["kind"], "title": "", "reason": "",
                               "summary": "", "lines": []})


class PageHandler(AuthMixin, tornado.web.RequestHandler):
    """A page: login required (302 to /login), rendered with jinja2 (autoescape)."""

    def prepare(self) -> None:
        self.set_header("Cache-Control", "no-store")
        if self.current_user is None:
            self.redirect_to_login()

    def redirect_to_login(self) -> None:
        if self.request.method in ("GET", "HEAD"):
            self.redirect("/login?" + urlencode({"next": safe_target(self.request.uri)}))
        else:
            self.redirect("/login")
        self.finish_if_needed()

    def finish_if_needed(self) -> None:
        if not self._finished:
            self.finish()

    def render_page(self, template: str, **context: Any) -> None:
        user = self.current_user
        flash = self.take_flash()
        page = self.web.templates.get_template(template).render(
            user=user, role=user.role if user else None, Role=Role, flash=flash,
            xsrf_form_html=Markup(self.xsrf_form_html()), xsrf_token=self.xsrf_token.decode(),
            static_url=self.static_url, request=self.request, title=self.web.title,
            can_operate=bool(user and user.role >= Role.OPERATOR),
            can_admin=bool(user and user.role >= Role.ADMIN), **context)
        self.finish(page)

    def set_flash(self, shown: dict[str, Any]) -> None:
        """Keep a banner (:func:`.banners.banner`) for the next page, in a signed cookie."""
        self.set_signed_cookie(FLASH, _flash_text(shown), expires_days=None,
                               **self.web.cookie_flags)

    def take_flash(self) -> dict[str, Any] | None:
        raw = self.get_signed_cookie(FLASH, max_age_days=1)
        if raw is None:
            return None
        self.clear_cookie(FLASH, **self.web.clear_flags)
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(value, dict) or value.get("kind") not in ("ok", "warning", "error"):
            return None
        lines = value.get("lines")
        return {"kind": value["kind"], "title": str(value.get("title", "")),
                "reason": str(value.get("reason", "")), "summary": str(value.get("summary", "")),
                "lines": [str(x) for x in lines] if isinstance(lines, list) else []}

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        reason = kwargs.get("reason") or self._reason
        exc = kwargs.get("exc_info")
        if exc and isinstance(exc[1], tornado.web.HTTPError) and exc[1].log_message:
            reason = exc[1].log_message if status_code in (400, 403, 404) else reason
        page = self.web.templates.get_template("error.html").render(
            user=self.current_user, status=status_code, reason=reason, title=self.web.title,
            static_url=self.static_url, xsrf_form_html=Markup(self.xsrf_form_html()),
            flash=None)
        self.finish(page)

    def node_or_404(self, node: str) -> str:
        if not self.web.backend.has(node):
            raise tornado.web.HTTPError(404, f"no node {node!r} in this pool")
        return node


class LoginHandler(AuthMixin, tornado.web.RequestHandler):
    """The login form. The password is checked in the hashing threads (the loop keeps serving
    meanwhile), after the throttle (:mod:`.throttle`) had its say; ``next`` is followed only
    to a path of this site (:func:`.redirects.safe_target`)."""

    def check_xsrf_cookie(self) -> None:
        tornado.web.RequestHandler.check_xsrf_cookie(self)     # the login form is checked too

    def get(self) -> None:
        if self.current_user is not None:
            self.redirect(self.next_url())
            return
        self.show()

    def next_url(self) -> str:
        return safe_target(self.get_argument("next", "/"))

    def show(self, error: str | None = None, username: str = "", status: int = 200) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_status(status)
        page = self.web.templates.get_template("login.html").render(
            user=None, error=error, username=username, next=self.next_url(),
            xsrf_form_html=Markup(self.xsrf_form_html()), static_url=self.static_url,
            title=self.web.title, no_users=not self.web.users.users, flash=None,
            users_path=self.web.users.path, users_problem=self.web.users.problem is not None)
        self.finish(page)

    async def post(self) -> None:
        name = self.get_body_argument("username", "").strip()
        password = self.get_body_argument("password", "")
        address = self.client_address()
        shown = name if valid_name(name) else name[:64]
        key = name if valid_name(name) else None        # not a possible name: the address only
        web = self.web
        verdict = web.throttle.check(key, address, time.monotonic())
        if verdict.refused:
            log.warning("login refused for %r from %s: too many failures", shown, address)
            self.show(verdict.refused, shown, status=429)
            return
        try:
            user = await web.hashing.run(address, web.users.authenticate, name, password,
                                         delay=verdict.delay)
        except Busy as exc:
            log.warning("login of %r from %s not tried: %s", shown, address, exc)
            self.show("The server is busy with other logins: try again in a moment.", shown,
                      status=503)
            return
        if user is None:
            web.throttle.failed(key, address, time.monotonic())
            log.warning("failed login for %r from %s", shown, address)
            self.show("Wrong user name or password.", shown)
            return
        web.throttle.succeeded(user.name, address)
        self.start_session(user)
        log.info("login: %s (%s) from %s", user.name, user.role_name, address)
        self.redirect(self.next_url())


class NotFoundHandler(PageHandler):
    """Any other path: the login redirect when anonymous, else 404."""

    def get(self, *args: Any) -> None:
        raise tornado.web.HTTPError(404, "no such page")

    post = get


class LogoutHandler(PageHandler):
    async def post(self) -> None:
        await self.end_session()
        self.redirect("/login")


class OverviewHandler(PageHandler):
    async def get(self) -> None:
        nodes = await self.web.backend.overview()
        self.render_page("overview.html", nodes=nodes, page="overview",
                         source=self.web.backend.pool.config.file)


class NodeHandler(PageHandler):
    async def get(self, node: str) -> None:
        self.node_or_404(node)
        view = await self.web.backend.node(node)
        self.render_page("node.html", node=view, page="node", live=self.web.live_enabled)


class WatcherHandler(PageHandler):
    async def get(self, node: str, watcher: str) -> None:
        self.node_or_404(node)
        view = await self.web.backend.watcher(node, watcher)
        if view["state"] == "active" and not view["found"]:
            raise tornado.web.HTTPError(404, f"no watcher {watcher!r} on {node}")
        self.render_page("watcher.html", node=node, w=view, page="watcher",
                         live=self.web.live_enabled)


class _Posting(PageHandler):
    """A form post: runs a command on a node and answers with 303 back to the page, or with
    the reply as JSON when the request accepts ``application/json`` (the page's script)."""

    def wants_json(self) -> bool:
        return "application/json" in self.request.headers.get("Accept", "")

    def refuse(self, status: int, reason: str) -> None:
        if self.wants_json():
            self.set_status(status)
            self.finish({"error": "forbidden" if status == 403 else "bad request",
                         "reason": reason})
        else:
            raise tornado.web.HTTPError(status, reason)

    def back_to(self, node: str, watcher: str | None) -> str:
        page = self.get_body_argument("back", "")
        if page == "watcher" and watcher:
            return f"/node/{quote(node, safe='')}/watcher/{quote(watcher, safe='')}"
        return f"/node/{quote(node, safe='')}"

    async def run(self, node: str, command: str, watcher: str | None, what: str,
                  props: dict[str, Any]) -> None:
        user = self.current_user
        required = COMMANDS[command].role
        if user.role < required:
            log.warning("refused %s for %s (%s): needs %s", command, user.name, user.role_name,
                        required.name.lower())
            self.refuse(403, f"{command} needs the {required.name.lower()} role; "
                             f"{user.name} is {user.role_name}")
            return
        start = time.monotonic()
        result = await self.web.backend.call(node, command, deadline=ACTION_DEADLINE,
                                             user=user.name, waiting=True, **props)
        took = time.monotonic() - start
        shown = banner(what, command, reply=result.reply, state=result.state, took=took,
                       error=result.error)
        log.info("action by %s (%s) on %s: %s %s -> %s", user.name, user.role_name, node,
                 command, json.dumps(props, sort_keys=True), "ok" if result.ok else
                 (result.reply or {}).get("code") or result.state)
        if self.wants_json():
            self.finish({"node": node, "state": result.state, "ok": result.ok,
                         "reply": result.reply, "error": None if result.ok else result.reason,
                         "duration": round(took, 3), "banner": shown})
            return
        self.set_flash(shown)
        self.redirect(self.back_to(node, watcher), status=303)


class ActionHandler(_Posting):
    async def post(self, node: str) -> None:
        self.node_or_404(node)
        action = self.get_body_argument("action", "")
        if action not in ACTION_COMMANDS:
            self.refuse(400, f"unknown action {action!r} (one of {', '.join(ACTION_COMMANDS)})")
            return
        command, props = ACTION_COMMANDS[action]
        props = dict(props)
        watcher = self.get_body_argument("watcher", "").strip() or None
        what = action
        if command != "reloadconfig":
            problem = name_problem(watcher, "watcher") if watcher else \
                f"{action} needs a watcher name"
            if problem:
                self.refuse(400, problem)
                return
            props["name"] = watcher
            if command in ("start", "stop", "restart", "reload"):
                props["match"] = "simple"           # this watcher, not a glob
            what = f"{action} {watcher}"
        if command == "kill":
            pid = self.get_body_argument("pid", "").strip()
            if not pid.isdigit():
                self.refuse(400, "kill needs the pid of a process")
                return
            props["pid"] = int(pid)
            what = f"kill {watcher} process {pid}"
        await self.run(node, command, watcher, what, props)


class AddWatcherHandler(_Posting):
    async def post(self, node: str) -> None:
        self.node_or_404(node)
        name = self.get_body_argument("name", "").strip()
        cmd = self.get_body_argument("cmd", "").strip()
        args = self.get_body_argument("args", "").strip()
        count = self.get_body_argument("numprocesses", "1").strip() or "1"
        problem = name_problem(name, "the watcher name")
        if problem:
            self.refuse(400, problem)
            return
        if not cmd:
            self.refuse(400, "a watcher needs a command")
            return
        if not count.isdigit() or not 0 <= int(count) <= 1000:
            self.refuse(400, f"numprocesses must be a number from 0 to 1000, got {count!r}")
            return
        props: dict[str, Any] = {"name": name, "cmd": cmd, "start": True,
                                 "options": {"numprocesses": int(count)}}
        if args:
            props["args"] = args
        await self.run(node, "add", name, f"add {name}", props)

