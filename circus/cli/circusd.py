"""``circusd``: run the arbiter of one node.

Exit codes: 0 clean stop, 1 could not start (pidfile taken or unsafe — a symbolic link, another
user's file —, daemon failed to come up, runtime error), 2 usage or configuration error (a log
output or logger configuration circusd refuses, in the foreground; with ``--daemon`` every
startup failure is 1).

``--no-strict`` loads a Circus 0.19 file as 0.19 did: what 0.19 silently ignored or dropped is a
warning (file:line, key, reason) instead of an error, and the rest boots (see
circus.config.errors). ``--check-config`` prints every problem at once, and the warnings.

``--daemon`` sets circusd's umask to :data:`DAEMON_UMASK` (027) unless ``[circus] umask`` says
otherwise: a daemon must not keep the umask of whatever shell started it (000 would make its log
and its watchers' files writable by everybody). The processes it starts inherit it. Without a log
file or syslog given, a daemon logs to its default log file, which is also its stdout and stderr
(:mod:`circus.cli.daemonlog`); the command prints where once circusd is up.
"""
from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from typing import Callable

from circus import __version__
from circus.cli.argform import HelpFormatter
from circus.config import ConfigError, load_config, summarize

__all__ = ["main"]

log = logging.getLogger("circus")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: circusd's umask with --daemon when [circus] umask is not set
DAEMON_UMASK = 0o027


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="circusd", description="Run the Circus arbiter of this node.",
                                formatter_class=HelpFormatter)
    p.add_argument("config", nargs="?", help="configuration file (Circus INI)")
    p.add_argument("--log-level", dest="loglevel", type=str.lower,
                   choices=("critical", "error", "warning", "info", "debug"),
                   help="log level (default: [circus] loglevel, else info)")
    p.add_argument("--log-output", dest="logoutput",
                   help="'-' or 'stdout', 'stderr', a file path, or syslog://HOST[:PORT]?FACILITY")
    p.add_argument("--logger-config", dest="loggerconfig",
                   help="a logging configuration file (*.ini, *.json or *.yaml) replacing "
                        "--log-level and --log-output (default: [circus] loggerconfig)")
    p.add_argument("--daemon", action="store_true",
                   help="run in the background; returns once the arbiter is up (or failed: exit 1)")
    p.add_argument("--pidfile", help="write (and lock) this pidfile")
    p.add_argument("--name", help="node name (default: [circus] name, else the host name)")
    p.add_argument("--check-config", action="store_true",
                   help="validate the configuration, print a summary (exit 0) or the errors (exit 2)")
    p.add_argument("--no-strict", dest="no_strict", action="store_true",
                   help="load what Circus 0.19 silently ignored or dropped (unknown keys and "
                        "sections, missing includes, a watcher without cmd or whose hook does not "
                        "import...) with a warning for each, instead of refusing the file")
    p.add_argument("--fresh", action="store_true",
                   help="ignore [circus] state_file: start from the configuration alone and end "
                        "the processes an earlier circusd left running")
    p.add_argument("--version", action="version", version=f"circusd {__version__}")
    return p


STRICT_HINT = ("circusd: what Circus 0.19 accepted silently is refused by default (the lines "
               "that say so): 'circusd --no-strict', or [circus] strict = false in the file, "
               "loads it with a warning for each")


def _print_warnings(warnings) -> None:
    for issue in warnings:
        print(f"circusd: warning: {issue.as_warning()}", file=sys.stderr)


def _check_cli_logger_config(value: str | None) -> str | None:
    from circus.config.loggerconfig import logger_config_path, read_logger_config

    target = logger_config_path(value)
    try:
        if target is not None:
            read_logger_config(target)
    except ValueError as exc:
        return str(exc)
    return None


def configure_logging(args: argparse.Namespace, opts, output: str,
                      console: str | None) -> str | None:
    """circusd's logging: the logger configuration file (--logger-config, else [circus]
    loggerconfig) when there is one, as 0.19; else level and `output` (`console`: the file a
    daemon's stdout and stderr go to). The reason it cannot be done, or None."""
    from circus.cli import logsetup
    from circus.config.loggerconfig import logger_config_path

    target = logger_config_path(args.loggerconfig or opts.loggerconfig)
    if target is None:
        try:
            logsetup.configure(args.loglevel or opts.loglevel or "info", output, console=console)
        except (OSError, ValueError) as exc:
            why = (exc.strerror if isinstance(exc, OSError) and exc.filename else None) or exc
            where = f"{exc.filename}: " if isinstance(exc, OSError) and exc.filename else ""
            return f"bad log output: {where}{why}"
        return None
    try:
        logsetup.apply_config(target)
    except Exception as exc:  # logging.config raises what the file's contents make it raise
        return f"bad logger configuration {target}: {exc}"
    return None


class Report:
    """Tells the waiting parent of ``--daemon`` how startup ended: ``ok`` (then ``note``, which it
    prints) or the reason it failed. A no-op in the foreground and once said."""

    def __init__(self, fd: int = -1) -> None:
        self.fd = fd
        self.note = ""

    def __call__(self, error: str | None) -> None:
        if self.fd < 0:
            return
        message = f"ok\n{self.note}" if error is None else error
        os.write(self.fd, message.encode())
        os.close(self.fd)
        self.fd = -1


def daemonize() -> Report:
    """Double-fork into the background. The original process waits for the report and exits
    0 when the arbiter says it is up (printing where it logs), or 1 with the reason when it
    fails or dies first."""
    read_fd, write_fd = os.pipe()
    if os.fork() > 0:
        os.close(write_fd)
        chunks = []
        while chunk := os.read(read_fd, 4096):
            chunks.append(chunk)
        message = b"".join(chunks).decode(errors="replace")
        if message.startswith("ok\n"):
            if message[3:]:
                sys.stdout.write(message[3:] + "\n")
                sys.stdout.flush()
            os._exit(EXIT_OK)
        sys.stderr.write((message or "circusd exited during startup") + "\n")
        os._exit(EXIT_FAILED)
    os.close(read_fd)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    return Report(write_fd)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.config:
        build_parser().print_usage(sys.stderr)
        return EXIT_USAGE
    try:
        config = load_config(args.config, os.environ, strict=not args.no_strict)
    except ConfigError as exc:
        print(f"circusd: invalid configuration\n{exc}", file=sys.stderr)
        if any(issue.lenient for issue in exc.issues):
            print(STRICT_HINT, file=sys.stderr)
        _print_warnings(exc.warnings)
        return EXIT_USAGE
    except OSError as exc:
        print(f"circusd: cannot read {args.config}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    if args.check_config:
        _print_warnings(config.warnings)
        problem = _check_cli_logger_config(args.loggerconfig)
        if problem:
            print(f"circusd: invalid --logger-config: {problem}", file=sys.stderr)
            return EXIT_USAGE
        print(summarize(config))
        return EXIT_OK

    from circus import asynctls

    asynctls.import_asyncio(tls=asynctls.config_needs_tls(config))   # before anything imports it
    report = daemonize() if args.daemon else Report()
    try:
        return _run(args, config, report)
    except BaseException as exc:
        report(f"circusd failed: {exc}")
        raise


def _run(args: argparse.Namespace, config, report: Report) -> int:
    import asyncio

    from circus.cli import logsetup
    from circus.core.keeper import KeeperStart, handover_path
    from circus.core.lineage import Lineage

    opts = config.circus
    if opts.umask is not None:
        os.umask(opts.umask)
    elif args.daemon:
        os.umask(DAEMON_UMASK)
    output, console = args.logoutput or opts.logoutput or "-", None
    if args.daemon:
        from circus.cli import daemonlog
        try:
            where = daemonlog.resolve(output, config.source or args.config, os.environ)
        except daemonlog.NoLogFile as exc:
            report(f"circusd: {exc}")
            return EXIT_FAILED
        output, console = where.log, where.console
    problem = configure_logging(args, opts, output, console)
    if problem is not None:
        report(f"circusd: {problem}")
        print(f"circusd: {problem}", file=sys.stderr)
        return EXIT_USAGE
    for issue in config.warnings:
        log.warning("configuration: %s", issue.as_warning())
    pidfile = None
    pidfile_path = args.pidfile or opts.pidfile
    if pidfile_path:
        from circus.cli.pidfile import Pidfile, PidfileError

        pidfile = Pidfile(pidfile_path)
        try:
            pidfile.acquire()
        except (PidfileError, OSError) as exc:
            report(f"circusd: {exc}")
            log.error("%s", exc)
            if not args.daemon:
                print(f"circusd: {exc}", file=sys.stderr)
            return EXIT_FAILED
    node = args.name or opts.name or socket.gethostname()
    raise_nofile()
    state_file = state_path(config)
    lineage = Lineage.for_config(config.source)
    if state_file and len(os.fsencode(handover_path(state_file))) >= 108:
        log.warning("state_file path too long for the keeper's unix socket %s (limit 107 bytes): "
                    "after a SIGKILL of circusd the processes are still re-adopted, but their "
                    "output pipes and listening sockets are not handed over", handover_path(state_file))
    # the keeper is forked before the rest of circusd is imported (which it does meanwhile)
    starting = KeeperStart("keeper" if state_file else "warden", lineage,
                           handover_path(state_file) if state_file else None)
    from circus.core.arbiter import Arbiter, python_path
    from circus.core.controller import BindError
    from circus.core.sockets import inherited_sockets
    from circus.core.spawner import RealOS, become_subreaper

    keeper = starting.finish()
    become_subreaper()                   # after finish(): the keeper must not become our child
    if os.getpid() == 1:
        log.info("running as PID 1: reaping every orphan, TERM stops everything")
    arbiter = Arbiter(config, os_=RealOS(), environ=os.environ, node_name=node,
                      python_path=python_path(), reopen_logs=logsetup.reopen,
                      inherited_sockets=inherited_sockets(os.environ, os.getpid()),
                      keeper=keeper, lineage=lineage, state_file=state_file, fresh=args.fresh)
    log.info("circusd %s starting on node %r (pid %d)", __version__, node, os.getpid())
    if console is not None or output not in ("-", "stdout", "stderr"):
        log.info("%s", logsetup.describe(output, console))
    if args.daemon:
        report.note = (f"circusd: running in the background (pid {os.getpid()}); "
                       f"{logsetup.describe(output, console)}")
    try:
        code = asyncio.run(_serve(arbiter, report))
    except BindError as exc:
        report(f"circusd: {exc}")
        log.error("%s", exc)
        code = EXIT_FAILED
    finally:
        if pidfile is not None:
            pidfile.release()
    report("circusd stopped during startup")
    log.info("circusd stopped")
    return code


#: circusd's own RLIMIT_NOFILE soft limit is raised up to this (when the hard limit allows)
NOFILE_TARGET = 1 << 20


def raise_nofile() -> None:
    """Raise our soft RLIMIT_NOFILE to the hard limit: each captured process costs circusd two
    pipe fds, so the usual soft 1024 would stop at ~500 processes. Children inherit the raised
    limit (as with supervisord's minfds); ``rlimit_nofile`` in a watcher sets theirs."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = NOFILE_TARGET if hard == resource.RLIM_INFINITY else min(hard, NOFILE_TARGET)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            log.debug("RLIMIT_NOFILE soft limit raised from %d to %d", soft, target)
        except (ValueError, OSError) as exc:
            log.warning("could not raise RLIMIT_NOFILE from %d: %s", soft, exc)


def state_path(config) -> str | None:
    """``[circus] state_file``, relative to the configuration file's directory."""
    path = config.circus.state_file
    if not path:
        return None
    base = os.path.dirname(os.path.abspath(config.source)) if config.source else os.getcwd()
    return os.path.join(base, os.path.expanduser(path))


async def _serve(arbiter, report: Callable[[str | None], None]) -> int:
    """Bind the control and events endpoints, then run the arbiter until it quits."""
    from circus.core.controller import Controller

    arbiter.catch_signals()              # a stop signal while binding stops cleanly
    controller = Controller(arbiter)
    await controller.start()
    discovery = None
    opts = arbiter.config.circus
    if opts.multicast_endpoint:
        from circus.core.discovery import start_discovery

        discovery = await start_discovery(opts.multicast_endpoint, lambda: {
            "endpoint": arbiter.config.circus.endpoint, "node": arbiter.node})
    try:
        return await arbiter.serve(on_ready=lambda: report(None))
    finally:
        if discovery is not None:
            discovery.close()
        await controller.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
