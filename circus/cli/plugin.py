"""``circus-plugin``: run one plugin class as a process, as circusd does for ``[plugin:NAME]``.

::

    circus-plugin [--endpoint E] [--pubsub P] [--config k:v:::k2:v2] [--check-delay 5]
                  [--curve-key FILE --server-key FILE]
                  [--log-level L] [--log-output O] [--ssh S] [--version] FQN

``--curve-key`` (the plugin's .key_secret) and ``--server-key`` (circusd's public .key) make the
plugin's event subscription and its clients CURVE clients; circusd passes its own secret key
file as both when it runs under CURVE.

Exit codes: 0 the plugin stopped (SIGTERM, SIGINT, SIGQUIT, SIGHUP, or it stopped itself), or it
is inactive (``active:false``); 1 it failed while running (``handle_init`` raised...); 2 usage:
bad arguments, ``--ssh`` (not supported), a key file that cannot be used, a FQN that does not
name a ``CircusPlugin`` subclass, or an option the plugin rejects.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
from typing import Any

from circus import __version__
from circus.cli.ctl_keys import KeyOptionError, add_key_options, client_keys
from circus.cli.logsetup import LEVELS, configure
from circus.client.wire import DEFAULT_ENDPOINT_DEALER, DEFAULT_ENDPOINT_SUB
from circus.plugins import CircusPlugin, PluginConfigError, PluginError
from circus.plugins.options import parse_config_arg

__all__ = ["main", "load_plugin_class", "build_parser", "STOP_SIGNALS"]

log = logging.getLogger("circus")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: signals that stop the plugin cleanly (handle_stop runs, exit 0)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="circus-plugin", description="Run a Circus plugin.")
    p.add_argument("plugin", help="fully qualified name of the plugin class "
                   "(package.module.Class or package.module:Class)")
    p.add_argument("--endpoint", default=DEFAULT_ENDPOINT_DEALER,
                   help=f"circusd's control endpoint (default {DEFAULT_ENDPOINT_DEALER})")
    p.add_argument("--pubsub", default=DEFAULT_ENDPOINT_SUB,
                   help=f"circusd's events endpoint (default {DEFAULT_ENDPOINT_SUB})")
    p.add_argument("--config", default="", help="plugin options as key:value:::key2:value2")
    p.add_argument("--check-delay", dest="check_delay", type=float, default=5.0,
                   help="circusd's check_delay, given to the plugin (default 5)")
    p.add_argument("--log-level", dest="loglevel", type=str.lower, choices=LEVELS,
                   default="info", help="log level (default info)")
    p.add_argument("--log-output", dest="logoutput", default="-",
                   help="'-' or 'stdout', 'stderr', a file path, or syslog://HOST[:PORT]?FACILITY")
    add_key_options(p, env=False)
    p.add_argument("--ssh", help="not supported: tunnel the endpoints yourself (ssh -L)")
    p.add_argument("--version", action="version", version=f"circus-plugin {__version__}")
    return p


def load_plugin_class(fqn: str) -> type[CircusPlugin]:
    """The class named by ``fqn``; raises :class:`PluginError` saying what is wrong with it."""
    module_name, sep, attr = fqn.partition(":")
    if not sep:
        module_name, _, attr = fqn.rpartition(".")
    if not module_name or not attr:
        raise PluginError(f"{fqn!r} is not a fully qualified class name (package.module.Class)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PluginError(f"cannot import module {module_name!r} for plugin {fqn!r}: {exc}") \
            from None
    except Exception as exc:  # a plugin module that fails while importing is the user's error
        raise PluginError(f"importing {module_name!r} for plugin {fqn!r} failed: "
                          f"{type(exc).__name__}: {exc}") from None
    cls = getattr(module, attr, None)
    if cls is None:
        raise PluginError(f"module {module_name!r} has no attribute {attr!r}")
    if not (isinstance(cls, type) and issubclass(cls, CircusPlugin)):
        raise PluginError(f"{fqn!r} is not a subclass of circus.plugins.CircusPlugin")
    return cls


def _keys(args: argparse.Namespace) -> Any:
    """The ClientKeys of ``--curve-key``/``--server-key``, or None; ValueError naming the file."""
    if not (args.curve_key or args.server_key):
        return None
    from circus.security.keys import KeyFileError
    try:
        return client_keys(args.curve_key, args.server_key, err=sys.stderr)
    except KeyFileError as exc:
        raise ValueError(str(exc)) from None


def _install_signals(plugin: CircusPlugin) -> None:
    def handler(signum: int, frame: Any) -> None:
        log.info("plugin %s: %s received, stopping", plugin.name, signal.Signals(signum).name)
        plugin.stop()

    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.ssh:
        print("circus-plugin: --ssh is not supported; open the tunnel yourself "
              "(ssh -L) and give the local endpoints", file=sys.stderr)
        return EXIT_USAGE
    try:
        config = parse_config_arg(args.config)
    except ValueError as exc:
        print(f"circus-plugin: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        configure(args.loglevel, args.logoutput)
    except (ValueError, OSError) as exc:
        print(f"circus-plugin: cannot log to {args.logoutput}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        curve = _keys(args)
    except (KeyOptionError, ValueError) as exc:
        log.error("circus-plugin: %s", exc)
        print(f"circus-plugin: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        cls = load_plugin_class(args.plugin)
        plugin = cls(args.endpoint, args.pubsub, args.check_delay, None, **config)
        if curve is not None:
            plugin.curve = curve   # an attribute: a subclass's __init__ need not pass it on
    except PluginError as exc:     # PluginConfigError included: a usage error too
        log.error("%s", exc)
        print(f"circus-plugin: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not plugin.active:
        plugin.start()            # says why it does not run
        return EXIT_OK
    _install_signals(plugin)
    log.info("plugin %s (%s) starting: control %s, events %s%s", plugin.name, args.plugin,
             args.endpoint, args.pubsub, ", CURVE" if curve is not None else "")
    try:
        plugin.start()
    except PluginConfigError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    except PluginError as exc:
        log.error("%s", exc)
        return EXIT_FAILED
    log.info("plugin %s stopped", plugin.name)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
