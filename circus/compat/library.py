"""An arbiter inside a Python program, with Circus 0.19's API (``from circus import
get_arbiter``, ``circus.arbiter.Arbiter``).

``Arbiter.start()`` runs our arbiter — the one circusd runs, with its control and events
endpoints — on an event loop of its own in the calling thread, and returns when it has stopped
(0.19 blocked the same way). It stops on ``arbiter.stop()`` (from any thread), on the ``quit``
command, and, when started in the main thread, on SIGTERM, SIGINT or SIGQUIT (SIGHUP reloads,
as in circusd); the program's own signal handlers are put back afterwards. A
:class:`ThreadedArbiter` (``get_arbiter(..., background=True)``) runs in a thread of its own;
its ``start()`` returns once the watchers have started.

Unlike circusd, an embedded arbiter collects only the processes it started (see
:mod:`circus.compat.reaping`), so the program's other children are left alone.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import signal
import socket
import threading
from typing import Any, Callable, Iterable, Mapping

from circus.compat.specs import CircusSocket, Watcher, build_config, circus_options
from circus.compat.arbview import ArbiterView, CircusSockets
from circus.compat.views import WatcherView

__all__ = ["Arbiter", "ThreadedArbiter", "get_arbiter"]

log = logging.getLogger("circus")

#: the signals an arbiter started in the main thread takes over while it runs
_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1)


def _done(value: Any = None) -> concurrent.futures.Future:
    future: concurrent.futures.Future = concurrent.futures.Future()
    future.set_result(value)
    return future


class _LoopHandle:
    """``arbiter.loop``: what 0.19 code does with the arbiter's loop (``add_callback``,
    ``run_sync``), done on ours."""

    def __init__(self, arbiter: "Arbiter") -> None:
        self._arbiter = arbiter

    def add_callback(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        loop = self._arbiter._loop
        if loop is None:
            raise RuntimeError("the arbiter is not running")

        def call() -> None:
            result = fn(*args, **kwargs)
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                asyncio.ensure_future(result)
        loop.call_soon_threadsafe(call)

    def run_sync(self, fn: Callable[[], Any], timeout: float | None = None) -> Any:
        loop = self._arbiter._loop
        if loop is not None and threading.get_ident() != self._arbiter._loop_thread:
            async def call() -> Any:
                result = fn()
                return await result if asyncio.iscoroutine(result) else result
            return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout)
        result = fn()
        return asyncio.run(result) if asyncio.iscoroutine(result) else result


class Arbiter:
    """Circus 0.19's ``Arbiter(watchers, endpoint, pubsub_endpoint, ...)``: ``watchers`` are
    :class:`~circus.watcher.Watcher` objects (or dicts of their options), ``sockets``
    :class:`~circus.sockets.CircusSocket` objects (or dicts), ``plugins`` dicts with ``use``.
    The other keywords are the ``[circus]`` options of the same names."""

    def __init__(self, watchers: Iterable[Watcher | Mapping[str, Any]], endpoint: str,
                 pubsub_endpoint: str, check_delay: float = 1.0, prereload_fn: Any = None,
                 context: Any = None, loop: Any = None, statsd: bool = False,
                 stats_endpoint: str | None = None, statsd_close_outputs: bool = False,
                 multicast_endpoint: str | None = None,
                 plugins: Iterable[Mapping[str, Any]] | None = None,
                 sockets: Iterable[CircusSocket | Mapping[str, Any]] | None = None,
                 warmup_delay: float = 0, httpd: bool = False, httpd_host: str = "localhost",
                 httpd_port: int = 8080, httpd_close_outputs: bool = False, debug: bool = False,
                 debug_gc: bool = False, ssh_server: str | None = None,
                 proc_name: str = "circusd", pidfile: str | None = None,
                 loglevel: str | None = None, logoutput: str | None = None,
                 loggerconfig: str | None = None, fqdn_prefix: str | None = None,
                 umask: int | None = None, endpoint_owner: str | None = None) -> None:
        for key, value in (("prereload_fn", prereload_fn), ("loop", loop),
                           ("ssh_server", ssh_server)):
            if value is not None:
                raise ValueError(f"Arbiter: {key} is not supported here (start() runs the "
                                 "arbiter on its own event loop; see docs/library.rst)")
        self._watchers = [w if isinstance(w, Watcher) else Watcher.load_from_config(w)
                          for w in watchers]
        self._sockets = [s if isinstance(s, CircusSocket) else CircusSocket.load_from_config(s)
                         for s in (sockets or ())]
        self.plugins = [dict(p) for p in (plugins or ())]
        self.endpoint, self.pubsub_endpoint = endpoint, pubsub_endpoint
        self.check_delay, self.warmup_delay = check_delay, warmup_delay
        self.statsd = statsd or stats_endpoint is not None
        self.stats_endpoint = stats_endpoint or "tcp://127.0.0.1:5557"
        self.multicast_endpoint = multicast_endpoint or ""
        self.statsd_close_outputs = statsd_close_outputs
        self.httpd, self.httpd_host, self.httpd_port = httpd, httpd_host, httpd_port
        self.httpd_close_outputs = httpd_close_outputs
        self.debug, self.debug_gc, self.proc_name = debug, debug_gc, proc_name
        self.pidfile, self.loglevel, self.logoutput = pidfile, loglevel, logoutput
        self.loggerconfig, self.fqdn_prefix = loggerconfig, fqdn_prefix
        self.umask, self.endpoint_owner = umask, endpoint_owner
        self.context = context
        self.ssh_server = None
        self._restarting = False              # 0.19: start() returned "restart me" (never here)
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._core: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._busy = False
        self._stop_asked = False
        self._ready = threading.Event()
        self._finished: concurrent.futures.Future = _done(False)
        self._config()                        # refuse a wrong option now, as 0.19 did

    # -- configuration ----------------------------------------------------------------------------

    def _config(self) -> Any:
        circus = circus_options(
            endpoint=self.endpoint, pubsub_endpoint=self.pubsub_endpoint,
            check_delay=self.check_delay, warmup_delay=self.warmup_delay, statsd=self.statsd,
            stats_endpoint=self.stats_endpoint if self.statsd else None,
            multicast_endpoint=self.multicast_endpoint or None,
            httpd=self.httpd or None, httpd_host=self.httpd_host if self.httpd else None,
            httpd_port=self.httpd_port if self.httpd else None, debug=self.debug or None,
            pidfile=self.pidfile, loglevel=self.loglevel, logoutput=self.logoutput,
            loggerconfig=self.loggerconfig, fqdn_prefix=self.fqdn_prefix, umask=self.umask,
            endpoint_owner=self.endpoint_owner)
        return build_config(circus, self._watchers, self._sockets, self.plugins)

    # -- 0.19's read-only API ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._core is not None and not self._core.quitting

    @property
    def pid(self) -> int:
        return os.getpid()

    @property
    def loop(self) -> _LoopHandle:
        return _LoopHandle(self)

    @property
    def watchers(self) -> list[WatcherView]:
        """The watchers: those given, and circusd-stats' and the plugins' while running."""
        core = self._core
        if core is None:
            return list(self._watchers)
        mine = {w.name.lower(): w for w in self._watchers}
        view = ArbiterView(core, self._loop)
        return [mine[name] if name in mine else WatcherView(w, view)
                for name, w in sorted(core.watchers.items())]

    def iter_watchers(self, reverse: bool = True) -> list[WatcherView]:
        return sorted(self.watchers, key=lambda w: w.priority, reverse=reverse)

    def get_watcher(self, name: str) -> WatcherView:
        for watcher in self.watchers:
            if watcher.name.lower() == name.lower():
                return watcher
        raise KeyError(name)

    def numwatchers(self) -> int:
        return len(self.watchers)

    def numprocesses(self) -> int:
        return sum(len(w) for w in self.watchers)

    def statuses(self) -> dict[str, str]:
        return {w.name: w.status() for w in self.watchers}

    @property
    def sockets(self) -> CircusSockets:
        return CircusSockets(self._sockets)

    def get_socket(self, name: str) -> CircusSocket | None:
        return self.sockets.get(name)

    # -- running ----------------------------------------------------------------------------------

    def start(self, cb: Callable[[Any], Any] | None = None) -> concurrent.futures.Future:
        """Run the arbiter until it is stopped; returns a done future (result: False, 0.19's
        "do not restart me"). ``cb(future)`` is called once the watchers have started. Raises
        what prevents the arbiter from running (an endpoint already bound...)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("Arbiter.start() runs the arbiter until it stops and cannot be "
                               "called from a running event loop: use get_arbiter(..., "
                               "background=True) or circus.arbiter.ThreadedArbiter")
        with self._lock:
            if self._busy:
                raise RuntimeError("this arbiter is running already")
            self._busy, self._stop_asked = True, False
            self._ready.clear()
            self._finished = concurrent.futures.Future()
        main = threading.current_thread() is threading.main_thread()
        saved = {sig: signal.getsignal(sig) for sig in _SIGNALS} if main else {}
        try:
            config = self._config()
            asyncio.run(self._serve(config, cb, main))
        except BaseException as exc:
            self._error = exc
            self._finished.set_exception(exc)
            raise
        else:
            self._finished.set_result(self._restarting)
        finally:
            for sig, handler in saved.items():
                if handler is not None:
                    signal.signal(sig, handler)
            with self._lock:
                self._busy = False
            self._ready.set()
        return self._finished

    async def _serve(self, config: Any, cb: Callable[[Any], Any] | None, signals: bool) -> None:
        from circus.core.arbiter import Arbiter as CoreArbiter, python_path
        from circus.core.controller import Controller
        from circus.core.discovery import start_discovery
        from circus.compat.reaping import EmbeddedOS

        core = CoreArbiter(config, os_=EmbeddedOS(), environ=os.environ,
                           node_name=config.circus.name or socket.gethostname(),
                           python_path=python_path())
        controller = Controller(core, context=self.context)
        discovery = None
        try:
            await controller.start()
            if config.circus.multicast_endpoint:
                discovery = await start_discovery(config.circus.multicast_endpoint, lambda: {
                    "endpoint": core.config.circus.endpoint, "node": core.node})
            with self._lock:
                self._core, self._loop = core, asyncio.get_running_loop()
                self._loop_thread = threading.get_ident()
                stop_now = self._stop_asked
            for watcher in self._watchers:
                watcher._attach(core.watchers[watcher.name.lower()])
            for sock in self._sockets:
                sock._registry = core.sockets
            if stop_now:
                core.command("quit")

            def ready() -> None:
                self._ready.set()
                if cb is not None:
                    try:
                        cb(_done(None))
                    except Exception:   # the caller's callback: its failure is only logged
                        log.exception("the start callback failed")
            try:
                await core.serve(on_ready=ready, signals=signals)
            finally:
                if not core.quitting:          # serve failed half way: stop what it started
                    await core.quit()
        finally:
            with self._lock:
                self._core = self._loop = self._loop_thread = None
            for watcher in self._watchers:
                if watcher._core is not None:
                    watcher._detach()
            for sock in self._sockets:
                sock._registry = None
            if discovery is not None:
                discovery.close()
            await controller.close()

    def stop(self) -> concurrent.futures.Future:
        """Stop every watcher and end :meth:`start` (from any thread, or a callback); returns a
        future done once the arbiter has stopped."""
        with self._lock:
            core, loop, finished = self._core, self._loop, self._finished
            if core is None:
                self._stop_asked = self._busy
                return finished
        if threading.get_ident() == self._loop_thread:
            core.command("quit")
        else:
            loop.call_soon_threadsafe(core.command, "quit")
        return finished

    def _emergency_stop(self) -> None:
        """0.19's last resort after ``start()`` failed: stop whatever still runs, without
        waiting for anyone's graceful timeout."""
        core = self._core
        if core is None:
            return
        for watcher in list(core.watchers.values()):
            for pid in watcher.pids():
                core.os.killpg(pid, signal.SIGKILL)
        self.stop()

    def __repr__(self) -> str:
        return f"<circus.arbiter.Arbiter {self.endpoint} running={self.running}>"


class ThreadedArbiter(Arbiter):
    """An :class:`Arbiter` that runs in a thread of its own: ``start()`` returns once its
    watchers have started (or raises why it could not run), ``stop()`` stops it and waits."""

    _thread: threading.Thread | None = None

    def start(self, cb: Callable[[Any], Any] | None = None) -> concurrent.futures.Future:
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("this arbiter is running already")
        self._error = None
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, args=(cb,), name="circus-arbiter",
                                        daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return _done(None)

    def _run(self, cb: Callable[[Any], Any] | None) -> None:
        try:
            Arbiter.start(self, cb)
        except BaseException:   # kept in self._error (set before _ready) for start() to raise
            pass

    def stop(self) -> concurrent.futures.Future:
        finished = super().stop()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread() \
                and threading.get_ident() != self._loop_thread:
            thread.join()
        return finished

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def get_arbiter(watchers: Iterable[Mapping[str, Any] | Watcher], controller: str | None = None,
                pubsub_endpoint: str | None = None, statsd: bool = False,
                stats_endpoint: str | None = None, statsd_close_outputs: bool = False,
                multicast_endpoint: str | None = None, env: Any = None, name: Any = None,
                context: Any = None, background: bool = False, stream_backend: str = "thread",
                httpd: bool = False, plugins: Iterable[Mapping[str, Any]] | None = None,
                debug: bool = False, proc_name: str = "circusd", loop: Any = None,
                check_delay: float = 1.0, **kw: Any) -> Arbiter:
    """0.19's ``get_arbiter``: each watcher is a dict of options (``cmd``; ``name`` defaults to
    the program's base name); ``controller`` is the control endpoint. ``env`` and ``name`` are
    accepted and unused, as in 0.19; ``multicast_endpoint`` is off unless given (0.19: on)."""
    from circus.client.wire import DEFAULT_ENDPOINT_DEALER, DEFAULT_ENDPOINT_SUB

    made = []
    for watcher in watchers:
        if not isinstance(watcher, Watcher):
            watcher = dict(watcher)
            if "cmd" not in watcher:
                raise ValueError(f"get_arbiter: a watcher needs 'cmd': {watcher!r}")
            watcher.setdefault("name", os.path.basename(str(watcher["cmd"]).split()[0]))
            watcher = Watcher.load_from_config(watcher)
        made.append(watcher)
    cls = ThreadedArbiter if background else Arbiter
    return cls(made, controller or DEFAULT_ENDPOINT_DEALER,
               pubsub_endpoint or DEFAULT_ENDPOINT_SUB, check_delay=check_delay,
               context=context, loop=loop, statsd=statsd, stats_endpoint=stats_endpoint,
               statsd_close_outputs=statsd_close_outputs, multicast_endpoint=multicast_endpoint,
               plugins=plugins, httpd=httpd, debug=debug, proc_name=proc_name, **kw)
