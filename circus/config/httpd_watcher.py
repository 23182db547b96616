"""circushttpd as a watcher of circusd's own, when ``[circus] httpd = true`` (as in 0.19).

An ordinary watcher called ``circushttpd`` (listed, respawned with backoff, stopped by
``quit``), pointed at this circusd's endpoints, listening on ``httpd_host:httpd_port``. The
users file and the cookie secret live next to the configuration file
(``circushttpd.users``, ``circushttpd.secret``). With ``curve_secret_key`` set it talks to the
node with the node's own key pair as client key and server key (the keyring admits the
node's own public key as ``circusd``, role admin; circushttpd applies its users' roles, and
names the logged-in user in each request, which circusd records in its audit trail only
because it comes with its own key).
A reload that changes one of these options changes the command line and restarts it.

Pure but for one ``os.path.abspath`` (the configuration's path, as circusd was given it): the
interpreter's path and the configuration's path are parameters.
"""
from __future__ import annotations

import os
import shlex

from .schema import CircusOptions, WatcherConfig
from .stats_watcher import HELPER_GRACE, stats_wanted

__all__ = ["HTTPD_WATCHER", "httpd_argv", "httpd_watcher"]

HTTPD_WATCHER = "circushttpd"


def httpd_argv(circus: CircusOptions, python: str, source: str | None = None) -> list[str]:
    argv = [python, "-m", "circus.cli.httpd", "--endpoint", circus.endpoint,
            "--pubsub", circus.pubsub_endpoint, "--host", circus.httpd_host,
            "--port", str(circus.httpd_port), "--log-level", circus.helper_log_level]
    if stats_wanted(circus):
        argv += ["--stats", circus.stats_endpoint]
    if circus.curve_secret_key:
        argv += ["--curve-key", circus.curve_secret_key, "--server-key", circus.curve_secret_key]
    if source and not source.startswith("<"):
        directory = os.path.dirname(os.path.abspath(source))
        argv += ["--users", os.path.join(directory, "circushttpd.users")]
    return argv


def httpd_watcher(circus: CircusOptions, python: str,
                  source: str | None = None) -> WatcherConfig | None:
    """The ``circushttpd`` watcher this configuration asks for, if any. ``source``: the
    configuration file's absolute path (the users file goes next to it)."""
    if not circus.httpd:
        return None
    return WatcherConfig(name=HTTPD_WATCHER, cmd=shlex.join(httpd_argv(circus, python, source)),
                         copy_env=True, copy_path=True, singleton=True,
                         graceful_timeout=HELPER_GRACE)
