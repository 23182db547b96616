"""circushttpd's tornado application: routes, settings and the state the handlers share.

::

    app, web = make_app(WebOptions(pool=pool_config, users_path=..., secret=...))
    web.start()            # in the running loop: the stats and events subscriptions
    app.listen(port, "127.0.0.1")
    ...
    await web.aclose()
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import jinja2
import tornado.web

from circus import __version__
from circus.stats.units import human_age, human_bytes

from . import api, handlers, poolapi, poolpages
from .auth import SESSION_HOURS
from .badges import node_badge, process_badge, watcher_badge
from .hashing import HashPool
from .headers import StaticFiles
from .jobs import Jobs
from .live import Live, LiveState
from .nodes import Backend, open_pool, sources
from .poolactions import Runner
from .poolview import PoolView
from .revocations import Revocations
from .throttle import Throttle
from .users import Users

__all__ = ["WebOptions", "WebApp", "make_app", "sparkline_points", "sparkline_top",
           "MAX_REQUEST_BODY"]

log = logging.getLogger("circus.web")

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATES = os.path.join(HERE, "templates")
STATIC = os.path.join(HERE, "static")
NODE = r"([A-Za-z0-9_.-]{1,64})"
WATCHER = r"([^/]{1,128})"
#: the largest request body circushttpd reads (a form post; the API takes 64 KiB of it)
MAX_REQUEST_BODY = 256 * 1024


@dataclass
class WebOptions:
    pool: Any                            # circusmeta.pool.PoolConfig
    users_path: str
    secret: bytes
    proxy: bool = False                  # stats and events from the pool's circusmeta proxy
    secure_cookies: bool = False         # HTTPS (here or in front): cookies get ``Secure``
    live: bool = True                    # follow the stats and events streams
    title: str = "circus"
    revoked_path: str | None = None      # logged-out sessions (None: kept in memory only)
    trusted_proxies: tuple[str, ...] = ()    # peers whose X-Forwarded-For is believed


class WebApp:
    """What every handler reaches through ``self.web``."""

    def __init__(self, options: WebOptions) -> None:
        self.options = options
        self.title = options.title
        self.users = Users(options.users_path)
        problem = self.users.refresh()
        if problem:
            log.error("%s (nobody can log in until it is fixed)", problem)
        elif not self.users.users:
            log.warning("no users in %s: nobody can log in until 'circushttpd adduser NAME "
                        "--role admin --users %s' adds one", options.users_path,
                        options.users_path)
        pool = open_pool(options.pool)
        self.live = Live(sources(options.pool, pool.keys, options.proxy) if options.live else (),
                         LiveState())
        self.live_enabled = options.live and bool(self.live.sources)
        self.backend = Backend(pool, self.live.state)
        # the watchers across the pool: asked again on each node's watcher events
        self.pool_view = PoolView(pool)
        self.live.listeners.add(self.pool_view.listen)
        self.jobs = Jobs()
        self.runner = Runner(self.jobs, pool)
        self.throttle = Throttle()
        self.hashing = HashPool()
        self.trusted_proxies = frozenset(options.trusted_proxies)
        self.revocations = Revocations(options.revoked_path, SESSION_HOURS * 3600)
        self.revocations.load()
        flags: dict[str, Any] = {"httponly": True, "samesite": "Strict"}
        if options.secure_cookies:
            flags["secure"] = True
        self.cookie_flags = flags
        self.clear_flags = {"samesite": "Strict", **({"secure": True} if
                                                    options.secure_cookies else {})}
        self.templates = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                                            autoescape=True, undefined=jinja2.StrictUndefined,
                                            trim_blocks=True, lstrip_blocks=True)
        self.templates.filters.update(bytes=human_bytes, age=human_age, pct=_pct,
                                      clock=_clock, spark=sparkline_points,
                                      spark_top=sparkline_top)
        self.templates.globals.update(version=__version__, watcher_badge=watcher_badge,
                                      process_badge=process_badge, node_badge=node_badge)

    def start(self) -> None:
        """Open the subscriptions (in the running loop)."""
        if self.live_enabled:
            self.live.start()

    def refresh_users(self) -> None:
        problem = self.users.refresh()
        if problem:
            log.error("%s (nobody can log in until it is fixed)", problem)

    async def aclose(self) -> None:
        await self.runner.aclose()
        await self.pool_view.aclose()
        await self.live.aclose()
        self.backend.close()
        self.hashing.close()
        self.revocations.close()


def _pct(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "–"
    return f"{value:.1f}"


def _clock(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return ""
    return time.strftime("%H:%M:%S", time.localtime(value))


def sparkline_top(series: Any, metric: str = "cpu", keep: int = 60) -> float:
    """The value at the top of a sparkline of ``(time, cpu, mem)`` samples: the largest of
    the last ``keep``, at least 1 (CPU %) or 0.1 (memory %), so that idle is a flat line at the
    bottom rather than noise blown up to full height. The page shows it at the chart's right."""
    index = 1 if metric == "cpu" else 2
    values = [float(s[index]) for s in list(series or ())[-keep:]]
    return max([*values, 1.0 if metric == "cpu" else 0.1])


def sparkline_points(series: Any, metric: str = "cpu", width: float = 120.0,
                     height: float = 24.0, keep: int = 60) -> str:
    """An SVG polyline's ``points`` for the last ``keep`` samples of ``(time, cpu, mem)``."""
    index = 1 if metric == "cpu" else 2
    values = [float(s[index]) for s in list(series or ())[-keep:]]
    if not values:
        return ""
    top = sparkline_top(series, metric, keep)
    step = width / max(keep - 1, 1)
    start = width - step * (len(values) - 1)
    return " ".join(f"{start + i * step:.1f},{height - 1 - (height - 2) * v / top:.1f}"
                    for i, v in enumerate(values))


def make_app(options: WebOptions) -> tuple[tornado.web.Application, WebApp]:
    web = WebApp(options)
    routes = [
        (r"/", handlers.OverviewHandler),
        (r"/login", handlers.LoginHandler),
        (r"/logout", handlers.LogoutHandler),
        (rf"/node/{NODE}", handlers.NodeHandler),
        (rf"/node/{NODE}/watcher/{WATCHER}", handlers.WatcherHandler),
        (rf"/node/{NODE}/action", handlers.ActionHandler),
        (rf"/node/{NODE}/add", handlers.AddWatcherHandler),
        (r"/watchers", poolpages.WatchersPage),
        (r"/watchers/rolling", poolpages.RollingPost),
        (r"/watchers/add", poolpages.AddPost),
        (r"/jobs/([0-9a-f]{1,32})", poolpages.JobPage),
        (r"/ws", api.LiveSocket),
        (r"/ws/pool", poolapi.PoolSocket),
        (r"/api/watchers", poolapi.WatchersApi),
        (r"/api/rolling", poolapi.RollingApi),
        (r"/api/add", poolapi.AddApi),
        (r"/api/jobs", poolapi.JobsApi),
        (r"/api/jobs/([0-9a-f]{1,32})", poolapi.JobApi),
        (r"/api/status", api.StatusHandler),
        (r"/api/nodes", api.NodesHandler),
        (r"/api/command", api.CommandHandler),
        (r"/api/.*", api.NotFoundHandler),
        (r"/metrics", api.MetricsHandler),
    ]
    app = tornado.web.Application(
        routes, circushttpd=web, cookie_secret=options.secret, xsrf_cookies=True,
        xsrf_cookie_kwargs={"httponly": True, "samesite": "Strict",
                            **({"secure": True} if options.secure_cookies else {})},
        login_url="/login", static_path=STATIC, static_url_prefix="/static/",
        static_handler_class=StaticFiles,
        default_handler_class=handlers.NotFoundHandler, compress_response=True,
        websocket_ping_interval=30)
    return app, web
