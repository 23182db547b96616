"""circusd-stats as a watcher of circusd's own: when a configuration asks for it, and its command.

As in Circus 0.19 it is an ordinary watcher called ``circusd-stats`` (listed by ``list`` and
``status``, respawned with backoff, stopped by ``quit``), so a reload that changes the
``[circus]`` options on its command line restarts it, and one that turns it off removes it. It
runs the current interpreter on our own module with the arbiter's environment and ``sys.path``.

Under CURVE (``curve_secret_key``) the helpers circusd starts hold the node's own secret key: it
is their client key and, as the node's public key is in it, their server key
(:func:`helper_key_args`); circusd admits it as ``circusd`` (admin). circusd-stats also gets the
clients directory, for its own stats endpoint.

Pure: the interpreter's path is a parameter.
"""
from __future__ import annotations

import shlex

from .schema import CircusOptions, WatcherConfig

__all__ = ["STATS_WATCHER", "HELPER_GRACE", "stats_wanted", "stats_argv", "stats_watcher",
           "helper_key_args"]

STATS_WATCHER = "circusd-stats"

#: seconds a helper process gets to stop before SIGKILL: it holds no work a client waits for
HELPER_GRACE = 5.0


def stats_wanted(circus: CircusOptions) -> bool:
    """Is circusd-stats needed: asked for, or the Prometheus exporter (which runs inside it)?"""
    return circus.statsd or circus.prometheus_endpoint is not None


def helper_key_args(circus: CircusOptions) -> list[str]:
    """``--curve-key S --server-key S`` (S: the node's secret key file) under CURVE, else none."""
    secret = circus.curve_secret_key
    return ["--curve-key", secret, "--server-key", secret] if secret else []


def stats_argv(circus: CircusOptions, python: str) -> list[str]:
    argv = [python, "-m", "circus.cli.stats", "--endpoint", circus.endpoint,
            "--pubsub", circus.pubsub_endpoint, "--statspoint", circus.stats_endpoint,
            "--interval", repr(circus.stats_interval), "--log-level", circus.helper_log_level]
    if circus.legacy_stats_topics:
        argv.append("--legacy-topics")
    if circus.prometheus_endpoint is not None:
        argv += ["--prometheus", circus.prometheus_endpoint]
    argv += helper_key_args(circus)
    if circus.curve_secret_key and circus.curve_clients:
        argv += ["--curve-clients", circus.curve_clients]
    return argv


def stats_watcher(circus: CircusOptions, python: str) -> WatcherConfig | None:
    """The ``circusd-stats`` watcher this configuration asks for, if any."""
    if not stats_wanted(circus):
        return None
    return WatcherConfig(name=STATS_WATCHER, cmd=shlex.join(stats_argv(circus, python)),
                         copy_env=True, copy_path=True, singleton=True,
                         graceful_timeout=HELPER_GRACE)
