"""circushttpd: the web dashboard of a node or a pool (needs ``pip install 'circus[web]'``).

::

    circushttpd [--config CIRCUS_INI | --pool POOL_INI | --endpoint E [--pubsub E] [--stats E]]
                [--host H] [--port P] [--users FILE] [--secret-file FILE] ...
    circushttpd adduser NAME --role readonly|operator|admin [--users FILE] [--password-stdin]
    circushttpd token NAME [--users FILE]

Exit codes: 0 stopped by SIGTERM/SIGINT, 1 cannot listen, 2 usage or configuration error.
Tornado and jinja2 are imported only here and in :mod:`circus.web`: the core never needs them.
"""
from __future__ import annotations

import argparse
import asyncio
import getpass
import ipaddress
import logging
import os
import signal
import socket
import ssl
import sys
from typing import Sequence

__all__ = ["main", "build_parser"]

PROG = "circushttpd"
DEFAULT_USERS = "circushttpd.users"
DEFAULT_SECRET = "circushttpd.secret"
IDLE_TIMEOUT = 120.0        # seconds a kept-alive connection may sit idle
BODY_TIMEOUT = 60.0         # seconds a request body may take to arrive

log = logging.getLogger("circus.web")


class Usage(Exception):
    """A usage or configuration error: exit 2 with the message."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="The web dashboard of a circusd "
                                     "node or a circusmeta pool.")
    src = parser.add_argument_group("what to show (one of)")
    src.add_argument("--config", metavar="CIRCUS_INI", help="a node, from its circusd "
                     "configuration (endpoints, name, CURVE keys)")
    src.add_argument("--pool", metavar="POOL_INI", help="a circusmeta pool file")
    src.add_argument("--endpoint", metavar="E", help="a node's control endpoint")
    src.add_argument("--pubsub", metavar="E", help="with --endpoint: its events endpoint")
    src.add_argument("--stats", metavar="E", help="with --endpoint: its stats endpoint")
    src.add_argument("--proxy", action="store_true", help="with --pool: stats and events from "
                     "the pool's 'circusmeta proxy' ([meta] stats_endpoint, pubsub_endpoint)")
    src.add_argument("--curve-key", metavar="CLIENT.key_secret", help="with --endpoint: this "
                     "client's CURVE secret key file")
    src.add_argument("--server-key", metavar="SERVER.key", help="with --endpoint: the node's "
                     "CURVE public key file")
    src.add_argument("--timeout", type=float, default=3.0, metavar="S",
                     help="with --endpoint/--config: seconds a node has to answer (default 3)")
    web = parser.add_argument_group("serving")
    web.add_argument("--host", default="127.0.0.1", help="address to listen on (default "
                     "127.0.0.1)")
    web.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks one)")
    web.add_argument("--users", default=DEFAULT_USERS, metavar="FILE",
                     help=f"users file (default ./{DEFAULT_USERS})")
    web.add_argument("--secret-file", metavar="FILE", help="cookie secret, generated on first "
                     f"start (default: {DEFAULT_SECRET} next to the users file)")
    web.add_argument("--certfile", metavar="FILE", help="serve HTTPS with this certificate "
                     "(cookies are then Secure)")
    web.add_argument("--keyfile", metavar="FILE", help="the certificate's private key")
    web.add_argument("--secure-cookies", action="store_true", help="mark cookies Secure "
                     "(behind an HTTPS reverse proxy)")
    web.add_argument("--trusted-proxy", action="append", default=[], metavar="ADDRESS",
                     help="a reverse proxy's address: for requests from it, the client's "
                     "address (for the login throttle and the log) is the last one it added "
                     "to X-Forwarded-For (repeatable)")
    web.add_argument("--no-live", action="store_true", help="follow no stats or events "
                     "stream (pages still work; no sparklines or live updates)")
    web.add_argument("--log-level", default="info",
                     choices=("critical", "error", "warning", "info", "debug"))
    web.add_argument("--log-output", default="-", help="'-' for stdout, a path, or syslog://")
    return parser


def _user_parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"{PROG} {command}")
    parser.add_argument("name")
    if command == "adduser":
        parser.add_argument("--role", required=True, choices=("readonly", "operator", "admin"))
        parser.add_argument("--password-stdin", action="store_true",
                            help="read the password from standard input (one line)")
    parser.add_argument("--users", default=DEFAULT_USERS, metavar="FILE",
                        help=f"users file (default ./{DEFAULT_USERS})")
    return parser


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise Usage("no terminal to ask for the password: use --password-stdin")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise Usage("the two passwords differ")
    return first


def _users_command(command: str, argv: Sequence[str]) -> int:
    from circus.web.users import Users, UsersError
    args = _user_parser(command).parse_args(argv)
    try:
        users = Users.load(args.users, missing_ok=command == "adduser")
        if command == "adduser":
            existed = args.name in users.users
            user = users.add(args.name, args.role, _read_password(args.password_stdin))
            print(f"{'updated' if existed else 'added'} {user.name} ({user.role_name}) in "
                  f"{args.users}")
        else:
            print(users.new_token(args.name))
    except (UsersError, Usage) as exc:
        print(f"{PROG} {command}: {exc}", file=sys.stderr)
        return 2
    return 0


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise Usage(f"--trusted-proxy: {text!r} is not an IP address") from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback
                       for a in socket.getaddrinfo(host, None))
        except (OSError, ValueError):
            return False


def _pool(args: argparse.Namespace):
    from circus.web.nodes import pool_from_circus, pool_from_endpoint, pool_from_file
    given = [f for f, v in (("--config", args.config), ("--pool", args.pool),
                            ("--endpoint", args.endpoint)) if v]
    if len(given) > 1:
        raise Usage(f"{' and '.join(given)} exclude each other: give one")
    if not given:
        raise Usage("give --config CIRCUS_INI, --pool POOL_INI or --endpoint ENDPOINT")
    if (args.pubsub or args.stats or args.curve_key or args.server_key) and not args.endpoint:
        raise Usage("--pubsub, --stats, --curve-key and --server-key go with --endpoint")
    if args.proxy and not args.pool:
        raise Usage("--proxy goes with --pool")
    if args.timeout <= 0:
        raise Usage("--timeout must be > 0")
    if args.pool:
        return pool_from_file(args.pool), False
    if args.config:
        return pool_from_circus(args.config), True
    return pool_from_endpoint(args.endpoint, args.pubsub, args.stats, args.curve_key,
                              args.server_key, timeout=args.timeout,
                              name=socket.gethostname()), True


async def _serve(args: argparse.Namespace, pool, single: bool, secret: bytes,
                 tls: ssl.SSLContext | None) -> int:
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets

    from circus.web.app import MAX_REQUEST_BODY, WebOptions, make_app
    from circus.web.nodes import SetupError, name_single_node
    from circus.web.revocations import revocations_path
    try:
        if single:
            pool, problem = await name_single_node(pool)
            if problem:
                log.warning("the node did not answer (%s): calling it %s", problem,
                            next(iter(pool.nodes)))
        app, web = make_app(WebOptions(pool=pool, users_path=args.users, secret=secret,
                                       proxy=args.proxy, live=not args.no_live,
                                       secure_cookies=bool(tls) or args.secure_cookies,
                                       title=next(iter(pool.nodes)) if single else "pool",
                                       revoked_path=revocations_path(args.secret_path),
                                       trusted_proxies=tuple(args.trusted_proxies)))
    except SetupError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    # X-Forwarded-For is read only from --trusted-proxy peers (circus.web.throttle), never
    # as tornado's xheaders would, from anyone
    server = HTTPServer(app, ssl_options=tls, xheaders=False, max_body_size=MAX_REQUEST_BODY,
                        idle_connection_timeout=IDLE_TIMEOUT, body_timeout=BODY_TIMEOUT)
    try:
        sockets = bind_sockets(args.port, args.host)
    except OSError as exc:
        print(f"{PROG}: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
              file=sys.stderr)
        await web.aclose()
        return 1
    server.add_sockets(sockets)
    web.start()
    port = sockets[0].getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"{PROG} listening on {'https' if tls else 'http'}://{host}:{port}/", flush=True)
    log.info("%s: %d node(s) from %s, users in %s", PROG, len(pool.nodes), pool.file,
             args.users)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()
    await server.close_all_connections()
    await web.aclose()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from importlib.util import find_spec
    missing = [name for name in ("tornado", "jinja2") if find_spec(name) is None]
    if missing:
        print(f"{PROG}: {' and '.join(missing)} not installed: pip install 'circus[web]'",
              file=sys.stderr)
        return 2
    if argv and argv[0] in ("adduser", "token"):
        return _users_command(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    from circus.cli import logsetup
    from circus.web.users import UsersError, load_secret
    try:
        logsetup.configure(args.log_level, args.log_output)
        pool, single = _pool(args)
        if not 0 <= args.port <= 65535:
            raise Usage(f"--port must be 0 to 65535, got {args.port}")
        if bool(args.certfile) != bool(args.keyfile):
            raise Usage("--certfile and --keyfile go together")
        tls = None
        if args.certfile:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                tls.load_cert_chain(args.certfile, args.keyfile)
            except (OSError, ssl.SSLError) as exc:
                raise Usage(f"--certfile/--keyfile: {exc}") from None
        secret_path = args.secret_file or os.path.join(
            os.path.dirname(os.path.abspath(args.users)), DEFAULT_SECRET)
        args.secret_path = secret_path
        args.trusted_proxies = [_address(a) for a in args.trusted_proxy]
        secret = load_secret(secret_path)
    except (Usage, UsersError, ValueError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if not _is_loopback(args.host):
        log.warning("listening on %s, which other machines can reach%s", args.host,
                    "" if tls else ": without --certfile, passwords and cookies cross the "
                    "network in clear text (put an HTTPS proxy in front, with "
                    "--secure-cookies)")
    return asyncio.run(_serve(args, pool, single, secret, tls))


if __name__ == "__main__":
    sys.exit(main())
