"""``HttpObserver``: fetch a URL every ``loop_rate`` seconds, send the time it took to statsd,
restart a watcher when the answer is an error or does not come.

0.19's plugin, with its options and metric names (0.19's own crashed on tornado >= 5):

* ``check_url`` (default ``http://localhost/``; http or https, redirects followed, no proxy),
  ``timeout`` (10 s for the whole fetch), ``restart_on_error`` (a watcher's name),
  ``loop_rate`` (60) and the statsd options (``application_name`` defaults to
  ``http_observer``);
* a 2xx answer: the timing ``circus.<app>.watcher.http_stats.request_time`` (ms);
* anything else: the counters ``http_stats.error`` and ``http_stats.error.<code>`` (the HTTP
  status, or 599 — as tornado — when no answer came: refused, reset, timed out), and with
  ``restart_on_error`` a ``restart`` of that watcher and the counter
  ``http_stats.restart_on_error``.

The fetch is :mod:`urllib.request` in a worker thread (the plugin is a process of its own; its
event loop goes on meanwhile), bounded by ``timeout`` as a whole.
"""
from __future__ import annotations

import asyncio
import logging
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from circus import __version__
from circus.plugins.options import PluginConfigError, get_float, get_str
from circus.plugins.statsd import BaseObserver

__all__ = ["HttpObserver", "fetch_status", "NO_ANSWER"]

log = logging.getLogger("circus")

#: the code of a fetch that got no HTTP answer (tornado's convention, so 0.19's metric name)
NO_ANSWER = 599
_CHUNK = 1 << 16

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch_status(url: str, timeout: float) -> tuple[int, str]:
    """GET ``url`` and read the whole body; ``(status, "")``, or ``(NO_ANSWER, reason)``."""
    request = urllib.request.Request(url, headers={"User-Agent": f"circus-http-observer/"
                                                                 f"{__version__}"})
    try:
        with _opener.open(request, timeout=timeout) as response:
            while response.read(_CHUNK):
                pass
            return response.status, ""
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, str(exc.reason)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return NO_ANSWER, str(getattr(exc, "reason", exc))


class HttpObserver(BaseObserver):
    name = "http_observer"
    default_app_name = "http_observer"

    def __init__(self, endpoint: str, pubsub_endpoint: str, check_delay: float | str,
                 ssh_server: str | None = None, **config: Any) -> None:
        super().__init__(endpoint, pubsub_endpoint, check_delay, ssh_server, **config)
        self.check_url = get_str(self.config, "check_url", "") or "http://localhost/"
        parts = urlsplit(self.check_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PluginConfigError(f"plugin {self.name}: option 'check_url': expected an "
                                    f"http:// or https:// URL, got {self.check_url!r}")
        timeout = get_float(self.config, "timeout", 10.0, self.name, minimum=0.0)
        if not timeout:
            raise PluginConfigError(f"plugin {self.name}: option 'timeout': expected a number "
                                    f"> 0, got {self.config.get('timeout')!r}")
        self.request_timeout = timeout
        self.restart_on_error = get_str(self.config, "restart_on_error") or None
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="http-observer")

    async def look_after(self) -> None:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        try:
            code, reason = await asyncio.wait_for(
                loop.run_in_executor(self._pool, fetch_status, self.check_url,
                                     self.request_timeout), self.request_timeout)
        except TimeoutError:
            code, reason = NO_ANSWER, f"no answer within {self.request_timeout:g} s"
        if 200 <= code < 300:
            self.statsd.timing("http_stats.request_time",
                               int((time.monotonic() - started) * 1000))
            return
        log.warning("plugin %s: %s: %s%s", self.name, self.check_url,
                    "no answer" if code == NO_ANSWER else f"HTTP {code}",
                    f" ({reason})" if reason else "")
        self.statsd.increment("http_stats.error")
        self.statsd.increment(f"http_stats.error.{code}")
        if self.restart_on_error:
            log.warning("plugin %s: restarting %s", self.name, self.restart_on_error)
            if await self.run_command("restart", name=self.restart_on_error) is not None:
                self.statsd.increment("http_stats.restart_on_error")

    def handle_stop(self) -> Any:
        self._pool.shutdown(wait=False, cancel_futures=True)
        return super().handle_stop()
