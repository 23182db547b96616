"""The plugin contract of Circus 0.19, run on an asyncio loop.

A plugin is a process of its own (``circus-plugin``, normally the watcher ``plugin:NAME`` that a
``[plugin:NAME]`` section creates), so one that blocks, leaks or crashes cannot stall the
arbiter: circusd supervises it like any other process. It subscribes to circusd's events
(topics starting with ``watcher.``) and talks to the control endpoint.

A subclass overrides :meth:`CircusPlugin.handle_recv` and, when it needs them,
:meth:`~CircusPlugin.handle_init` / :meth:`~CircusPlugin.handle_stop`. Each may be a plain
method or a coroutine. Events are handled one at a time, in the order circusd published them; a
handler that raises is logged and the plugin goes on with the next event.

Talking to circusd:

* :meth:`~CircusPlugin.call` — blocking, as in 0.19, but with a deadline (``timeout``, 5 s by
  default) that raises :class:`~circus.client.CallTimeout` instead of hanging the plugin;
* :meth:`~CircusPlugin.cast` — fire and forget (circusd never answers a cast, even an error);
* :meth:`~CircusPlugin.acall` / :meth:`~CircusPlugin.run_command` — the same from a coroutine,
  without blocking the loop; ``run_command`` logs a failure and returns whether it worked.

Periodic work: :meth:`~CircusPlugin.every`. Tasks a plugin starts with
:meth:`~CircusPlugin.create_task` are owned by it: cancelled at stop, their errors logged.

The wire format and the sockets' options come from :mod:`circus.client`, shared with every
other tool. CURVE: :attr:`CircusPlugin.curve` (a :class:`~circus.security.keys.ClientKeys`, set
by ``circus-plugin --curve-key/--server-key`` or given as ``curve=``) applies to the event
subscription and to every client the plugin opens.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import logging
from typing import Any, Callable, Coroutine

import zmq
import zmq.asyncio

from circus.client.aio import AsyncClient
from circus.client.errors import CallError, CallTimeout
from circus.client.sync import CircusClient
from circus.client.wire import connect, make_message, setup_sub
from circus.plugins.options import PluginError, get_bool

__all__ = ["CircusPlugin", "Periodic", "DEFAULT_TIMEOUT"]

log = logging.getLogger("circus")

#: seconds a call to circusd may take before it fails (0.19 had no limit)
DEFAULT_TIMEOUT = 5.0

Data = tuple[bytes, bytes]


async def _maybe_await(result: Any) -> None:
    if inspect.isawaitable(result):
        await result


class Periodic:
    """``fn`` called every ``seconds`` on the plugin's loop until :meth:`cancel` or the plugin
    stops. A run that raises is logged and the next one happens on time; a run that overruns
    makes the missed ones be skipped, never piled up."""

    def __init__(self, plugin: "CircusPlugin", seconds: float, fn: Callable[[], Any],
                 now: bool) -> None:
        self.seconds = seconds
        self.fn = fn
        self._plugin = plugin
        self._task = plugin.create_task(self._run(now), name=f"every {seconds:g}s {fn!r}")

    async def _run(self, now: bool) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + (0.0 if now else self.seconds)
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            try:
                await _maybe_await(self.fn())
            except Exception:  # a failing run must not end the periodic work
                log.exception("plugin %s: periodic %r failed", self._plugin.name, self.fn)
            due += self.seconds
            current = loop.time()
            while due <= current:
                due += self.seconds

    @property
    def running(self) -> bool:
        return not self._task.done()

    def cancel(self) -> None:
        self._task.cancel()


class CircusPlugin:
    """Base class of plugins: ``CircusPlugin(endpoint, pubsub_endpoint, check_delay,
    ssh_server=None, **config)`` as in 0.19.

    ``config`` values are strings (they come from an INI section through ``--config``); the
    key ``active`` (default true) set to false makes :meth:`start` return at once. ``name`` is
    the config's ``name`` (the section's NAME), else the class attribute.
    """

    #: the plugin's name when the config gives none
    name = "base"
    #: subscription prefixes on the pubsub endpoint
    topics: tuple[bytes, ...] = (b"watcher.",)

    #: the ClientKeys of a CURVE-protected circusd, or None; set before :meth:`start`
    curve: Any = None

    def __init__(self, endpoint: str, pubsub_endpoint: str, check_delay: float | str,
                 ssh_server: str | None = None, *, curve: Any = None, **config: Any) -> None:
        self.endpoint = endpoint
        if curve is not None:
            self.curve = curve
        self.pubsub_endpoint = pubsub_endpoint
        self.check_delay = float(check_delay)
        self.ssh_server = ssh_server
        self.config: dict[str, str] = {str(k): str(v) for k, v in config.items() if v is not None}
        self.name = self.config.get("name") or type(self).name
        self.active = get_bool(self.config, "active", True, self.name)
        self.timeout = DEFAULT_TIMEOUT
        #: the asyncio loop the plugin runs on; set by :meth:`start`
        self.loop: asyncio.AbstractEventLoop | None = None
        self.running = False
        self._stop_requested = False
        self._stopped: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._context: zmq.Context | None = None
        self._client: CircusClient | None = None
        self._aclient: AsyncClient | None = None
        self._sub: zmq.asyncio.Socket | None = None

    # -- to override -------------------------------------------------------------------------------

    def handle_recv(self, data: Data) -> Any:
        """Called with ``(topic, message)`` (bytes, as published) for each event."""
        raise NotImplementedError("a plugin must override handle_recv(data)")

    def handle_init(self) -> Any:
        """Called once the loop runs and the sockets are connected, before the first event."""

    def handle_stop(self) -> Any:
        """Called when the plugin stops, before its sockets close."""

    # -- running -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Run the plugin until :meth:`stop`; blocking. An inactive plugin returns at once.

        Raises :class:`PluginError` when ``handle_init`` fails.
        """
        if not self.active:
            log.info("plugin %s: active = false, not starting", self.name)
            return
        loop = self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)   # so that tornado's IOLoop.current() wraps this loop
        try:
            loop.run_until_complete(self._main())
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    def stop(self) -> None:
        """Ask the plugin to stop; safe from a handler, a signal handler or another thread."""
        self._stop_requested = True
        if self.loop is None:          # never started: only call()/cast() sockets to close
            self._close()
            return
        loop, stopped = self.loop, self._stopped
        if loop is not None and stopped is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stopped.set)
            except RuntimeError:       # the loop closed in between: it is stopping anyway
                pass

    async def _main(self) -> None:
        self._stopped = asyncio.Event()
        if self._stop_requested:
            return
        self._connect()
        try:
            try:
                await _maybe_await(self.handle_init())
            except PluginError:
                log.exception("plugin %s: handle_init failed", self.name)
                raise
            except Exception as exc:
                log.exception("plugin %s: handle_init failed", self.name)
                raise PluginError(f"plugin {self.name}: handle_init failed: {exc}") from exc
            self.running = True
            self.create_task(self._read_events(), name="events")   # owned: cancelled at stop
            await self._stopped.wait()
            self.running = False
            try:
                await _maybe_await(self.handle_stop())
            except Exception:  # stopping goes on: the sockets must still be closed
                log.exception("plugin %s: handle_stop failed", self.name)
        finally:
            self.running = False
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._close()

    def _connect(self) -> None:
        actx = zmq.asyncio.Context.shadow(self._context_().underlying)
        self._sub = setup_sub(actx.socket(zmq.SUB), list(self.topics), self.curve)
        connect(self._sub, self.pubsub_endpoint, self.ssh_server)

    def _close(self) -> None:
        if self._aclient is not None:
            self._aclient.close()
            self._aclient = None
        if self._client is not None:
            self._client.stop()
            self._client = None
        if self._sub is not None:
            self._sub.close(linger=0)
            self._sub = None
        if self._context is not None:
            self._context.term()
            self._context = None

    async def _read_events(self) -> None:
        assert self._sub is not None
        while True:
            try:
                frames = await self._sub.recv_multipart()
            except zmq.ZMQError as exc:
                log.error("plugin %s: reading events from %s failed: %s", self.name,
                          self.pubsub_endpoint, exc)
                self.stop()
                return
            if len(frames) < 2:
                continue
            try:
                await _maybe_await(self.handle_recv((frames[0], frames[-1])))
            except Exception:  # one bad event must not end the plugin
                log.exception("plugin %s: handle_recv failed on %r", self.name, frames[0])

    # -- helpers -----------------------------------------------------------------------------------

    def create_task(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task:
        """A task owned by the plugin: cancelled when it stops; an exception it ends with is
        logged (not lost)."""
        loop = asyncio.get_running_loop()
        task = loop.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("plugin %s: task %s failed", self.name, task.get_name(),
                      exc_info=task.exception())

    def every(self, seconds: float, fn: Callable[[], Any], *, now: bool = False) -> Periodic:
        """Call ``fn`` (a function or a coroutine function) every ``seconds``, first after one
        period (``now=True``: at once). Needs the running plugin (call it from handle_init on)."""
        if not seconds > 0:
            raise PluginError(f"plugin {self.name}: every() needs a period > 0, got {seconds!r}")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise PluginError(f"plugin {self.name}: every() needs the plugin's running loop: "
                              "call it from handle_init or later") from None
        return Periodic(self, float(seconds), fn, now)

    def _context_(self) -> zmq.Context:
        if self._context is None:
            self._context = zmq.Context()
        return self._context

    def call(self, command: str, *, timeout: float | None = None, **props: Any) -> dict[str, Any]:
        """Run ``command`` with ``props`` on circusd and return its reply (an error reply is
        returned too). Blocks the plugin's loop for at most ``timeout`` seconds
        (default :attr:`timeout`, 5 s), then raises :class:`CallTimeout`."""
        if self._client is None:
            self._client = CircusClient(self._context_(), self.endpoint, self.timeout,
                                        self.ssh_server, curve=self.curve)
        limit = self.timeout if timeout is None else float(timeout)
        try:
            reply = self._client.call(make_message(command, **props), timeout=limit)
        except CallTimeout:
            raise CallTimeout(f"plugin {self.name}: circusd at {self.endpoint} did not answer "
                              f"{command!r} within {limit:g} s") from None
        assert reply is not None
        return reply

    def cast(self, command: str, **props: Any) -> None:
        """Send ``command`` and return at once; circusd never answers (not even an error)."""
        if self._client is None:
            self._client = CircusClient(self._context_(), self.endpoint, self.timeout,
                                        self.ssh_server, curve=self.curve)
        self._client.cast(command, **props)

    async def acall(self, command: str, *, timeout: float | None = None,
                    **props: Any) -> dict[str, Any]:
        """:meth:`call` for coroutines: the loop keeps handling events meanwhile."""
        if self._aclient is None:
            self._aclient = AsyncClient(self.endpoint, self.timeout, self._context_(),
                                        self.ssh_server, curve=self.curve)
        limit = self.timeout if timeout is None else float(timeout)
        try:
            return await self._aclient.call(command, timeout=limit, **props)
        except CallTimeout:
            raise CallTimeout(f"plugin {self.name}: circusd at {self.endpoint} did not answer "
                              f"{command!r} within {limit:g} s") from None

    async def run_command(self, command: str, *, timeout: float | None = None,
                          **props: Any) -> dict[str, Any] | None:
        """:meth:`acall` that logs a failure (no answer, or an error reply) and returns ``None``
        then, so that a plugin's action is never silently lost (0.19's casts were)."""
        try:
            reply = await self.acall(command, timeout=timeout, **props)
        except CallError as exc:
            log.error("plugin %s: %s %s failed: %s", self.name, command, props, exc)
            return None
        if reply.get("status") == "error":
            log.error("plugin %s: %s %s refused: %s", self.name, command, props,
                      reply.get("reason"))
            return None
        return reply

    def split_data(self, data: Data) -> tuple[str, str, dict[str, Any]]:
        """``(b"watcher.web.reap", b"{...}")`` → ``("web", "reap", {...})``. A watcher name with
        dots is kept whole (0.19 cut it at the first dot)."""
        topic, msg = data
        text = topic.decode(errors="replace") if isinstance(topic, bytes) else str(topic)
        parts = text.split(".")
        if len(parts) < 3:
            raise ValueError(f"not a watcher event topic: {text!r}")
        return ".".join(parts[1:-1]), parts[-1], self.load_message(msg)

    def load_message(self, msg: bytes | str | dict[str, Any]) -> dict[str, Any]:
        """The event's JSON payload as a dict (a dict is returned as is, so that 0.19 code doing
        ``load_message`` on what ``split_data`` returned keeps working)."""
        if isinstance(msg, dict):
            return msg
        value = json.loads(msg)
        if not isinstance(value, dict):
            raise ValueError(f"event payload is not a JSON object: {msg!r}")
        return value

