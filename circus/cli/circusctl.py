"""circusctl: run control commands against circusd, print the answers; an interactive shell.

Compatible with circusctl 0.19: same commands, positional forms, flags and exit codes; the
output of what scripts parse is 0.19's (``status`` lines when stdout is not a terminal, ``list``,
``get``...), and readable tables where 0.19 printed ``ok`` or Python reprs.

Exit codes (one place: :class:`Exit`):

* 0 ok; for ``status``: every watcher shown is active with nothing wrong
* 1 no answer: the endpoint named with the likely cause, at once when it can be known (no such
  socket file, connection refused, a failed CURVE handshake), else at ``--timeout``; an ssh
  tunnel failure
* 2 usage error: unknown command (with "did you mean"), wrong arguments or flags, a malformed
  endpoint (nothing is sent then); also a key file that cannot be used, ``--curve-key``
  without ``--server-key`` (or the reverse), and ``keygen`` refusing to replace existing files
* 3 circusd answered with an error (also with ``--json``); ``status``: a watcher is not active,
  or something is wrong with it (LSB's "not running")
* ``tool NAME``: once the tool ran, its own exit code (128+N if killed by signal N, 124 if killed
  at its timeout); see :mod:`circus.cli.ctl_tool`

CURVE: ``--curve-key`` and ``--server-key`` (or ``$CIRCUSCTL_CURVE_KEY`` / ``$CIRCUSCTL_SERVER_KEY``,
or with ``--node`` the pool file's keys) apply to every socket circusctl opens: the control
client, ``listen``, ``tail --follow``, the progress lines of waiting commands, ``tool``'s output,
and the shell. ``keygen`` writes key pairs without contacting circusd.

Imports are kept light (no asyncio, no psutil): ``circusctl list`` should cost the interpreter,
pyzmq and little else. The shell and the event listener import what they need when used.
"""
from __future__ import annotations

import enum
import os
import sys
from dataclasses import dataclass
from typing import Any, Sequence, TextIO

from circus import __version__
from circus.cli.ctl_color import Paint, wants_color
from circus.cli.ctl_forms import (LOCAL_COMMANDS, SHELLS, HelpRequested, UsageError, build_request,
                                  command_names, global_parser)
from circus.cli.ctl_keys import ENV_CURVE_KEY, ENV_SERVER_KEY, KeyOptionError, client_keys
from circus.cli.ctl_output import render, render_json, warnings
from circus.client.errors import CallError, CallTimeout
from circus.client.reach import endpoint_problem
from circus.client.wire import DEFAULT_ENDPOINT_DEALER, DEFAULT_ENDPOINT_SUB
from circus.protocol import COMMANDS

__all__ = ["main", "Exit", "Session", "VERSION", "TIMEOUT_HINT"]

VERSION = f"circusctl {__version__}"

# The hint circusctl 0.19 printed after "Timed out.", kept for the one case where nothing more
# precise is known: a call through an ssh tunnel.
TIMEOUT_HINT = """
A time out usually happens in one of those cases:

#1 The Circus daemon could not be reached.
#2 The Circus daemon took too long to perform the operation

For #1, make sure you are hitting the right place
by checking your --endpoint option.

For #2, if you are not expecting a result to
come back, increase your timeout option value
(particularly with waiting switches)
"""


class EndpointProblem(Exception):
    """A malformed endpoint: said in one line, exit 2."""


class KeyProblem(Exception):
    """A key flag or key file that cannot be used: said as is, exit 2."""


def load_keys(curve_key: str | None, server_key: str | None, err: TextIO | None = None) -> Any:
    """The ClientKeys of ``--curve-key``/``--server-key``, ``None`` without keys; KeyProblem."""
    if not (curve_key or server_key):
        return None
    from circus.security.keys import KeyFileError
    try:
        return client_keys(curve_key, server_key, err=err)
    except (KeyOptionError, KeyFileError) as exc:
        raise KeyProblem(str(exc)) from None


class Exit(enum.IntEnum):
    OK = 0
    NO_ANSWER = 1
    USAGE = 2
    ERROR_REPLY = 3


@dataclass
class Options:
    endpoint: str | None = None        # as given with --endpoint
    timeout: float = 5.0
    json: bool = False
    prettify: bool = False
    ssh: str | None = None
    ssh_keyfile: str | None = None
    progress: bool | None = None       # progress lines on stderr; None: when stderr is a terminal
    curve_key: str | None = None       # as given with --curve-key (else the environment's)
    server_key: str | None = None
    curve: Any = None                  # the ClientKeys loaded from those; None: no CURVE
    no_color: bool = False
    node: str | None = None            # --node: the endpoint came from the pool file

    def control_endpoint(self) -> str:
        return self.endpoint or os.environ.get("CIRCUSCTL_ENDPOINT") or DEFAULT_ENDPOINT_DEALER

    def where(self, events: bool = False) -> str:
        """Where the endpoint in use was given, for an error message."""
        if self.node:
            return f"the endpoint of node {self.node!r}"
        if self.endpoint or events:
            return "--endpoint"
        return "$CIRCUSCTL_ENDPOINT" if os.environ.get("CIRCUSCTL_ENDPOINT") else "the endpoint"


def checked(endpoint: str, where: str) -> str:
    problem = endpoint_problem(endpoint)
    if problem:
        raise EndpointProblem(f"invalid {where} {endpoint!r}: {problem}")
    return endpoint


class Session:
    """Runs commands for one invocation or one shell: owns the client, prints, returns exit codes."""

    def __init__(self, options: Options, out: TextIO | None = None, err: TextIO | None = None,
                 shell: bool = False) -> None:
        self.options = options
        self.shell = shell
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._client: Any = None
        self._no_color = False             # --no-color given after the current command

    @property
    def paint_out(self) -> Paint:
        return Paint(wants_color(self.out, self.options.no_color or self._no_color))

    @property
    def paint_err(self) -> Paint:
        return Paint(wants_color(self.err, self.options.no_color or self._no_color))

    def client(self, options: Options) -> Any:
        from circus.client.sync import CircusClient

        def make() -> Any:
            endpoint = checked(options.control_endpoint(), options.where())
            return CircusClient(endpoint=endpoint, timeout=options.timeout,
                                ssh_server=options.ssh, ssh_keyfile=options.ssh_keyfile,
                                curve=options.curve, diagnose=True)

        if options is not self.options:
            return make()
        if self._client is None:
            self._client = make()
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.stop()
            self._client = None

    def print(self, text: str, error: bool = False) -> None:
        stream = self.err if error else self.out
        stream.write(text + "\n")
        stream.flush()

    def problem(self, text: str) -> None:
        """One of circusctl's own errors, on stderr (red on a terminal)."""
        self.print(self.paint_err.error(text), error=True)

    def run(self, name: str, words: Sequence[str]) -> int:
        """Run command ``name`` with its words; print the outcome; return the exit code."""
        try:
            return self._run(name, words)
        finally:
            self._no_color = False

    def _run(self, name: str, words: Sequence[str]) -> int:
        try:
            if name == "help":
                return self.help(list(words))
            if name not in command_names():
                from circus.cli.ctl_help import unknown_command
                raise unknown_command(name)
            props, overrides = build_request(name, words)
            if name == "keygen":
                from circus.cli.ctl_keys import keygen
                return keygen(props["name"], props.get("dir"), props.get("force", False),
                              self.out, self.err)
            if name == "completion":
                return self.completion(props["shell"])
            options = self._with(overrides)
            self._no_color = options.no_color
            if name == "listen":
                from circus.cli.ctl_follow import listen
                return listen(self, props.get("topic") or [""],
                              self.events_endpoint(options, "endpoint" in overrides), options)
            if name == "tail" and props.pop("follow", False):
                from circus.cli.ctl_follow import follow_tail
                return follow_tail(self, props, options)
            if name == "status":
                return self.status(props, options)
            if name == "tool":
                from circus.cli.ctl_tool import run_tool
                return run_tool(self, props, options)
            return self.call(name, props, options)
        except HelpRequested:
            return self.help([name])
        except UsageError as exc:
            from circus.cli.ctl_help import UnknownCommand
            if isinstance(exc, UnknownCommand):
                self.problem(str(exc))
            else:
                self.print(str(exc), error=True)
            return Exit.USAGE
        except (KeyProblem, EndpointProblem) as exc:
            self.problem(f"circusctl: {exc}")
            return Exit.USAGE
        except CallTimeout as exc:
            if str(exc) == "Timed out.":          # nothing more precise (an ssh tunnel)
                self.print(f"{exc}{TIMEOUT_HINT}".rstrip("\n"), error=True)
            else:
                self.problem(f"circusctl: {exc}")
            return Exit.NO_ANSWER
        except CallError as exc:                   # Unreachable, TunnelError...
            self.problem(f"circusctl: {exc}")
            return Exit.NO_ANSWER
        except KeyboardInterrupt:
            return Exit.NO_ANSWER
        except Exception as exc:                   # an endpoint zmq refuses that we let by
            import zmq
            if isinstance(exc, zmq.ZMQError) and exc.errno == zmq.EINVAL:
                self.problem(f"circusctl: invalid endpoint: {exc}")
                return Exit.USAGE
            raise

    def _with(self, overrides: dict[str, Any]) -> Options:
        if not overrides:
            return self.options
        options = Options(**{**vars(self.options), **overrides})
        if "curve_key" in overrides or "server_key" in overrides:
            options.curve = load_keys(options.curve_key, options.server_key, self.err)
        return options

    def request(self, name: str, props: dict[str, Any], options: Options) -> dict[str, Any]:
        """Send one command (with progress lines on stderr when asked) and return its reply."""
        from circus.client.wire import make_message

        if props.get("waiting") and any(p.name == "timeout" for p in COMMANDS[name].props):
            props = {**props, "timeout": options.timeout}   # circusd gives up when we would
        client = self.client(options)
        try:
            if props.get("waiting") and self._wants_progress(name, options):
                from circus.cli.ctl_progress import Progress
                with Progress(self.pubsub_endpoint(options), props.get("name"), self.err,
                              options.curve):
                    reply = client.call(make_message(name, **props))
            else:
                reply = client.call(make_message(name, **props))
        finally:
            if client is not self._client:
                client.stop()
        if not isinstance(reply, dict):
            raise CallError(f"circusd at {options.control_endpoint()} sent no reply object")
        return reply

    def call(self, name: str, props: dict[str, Any], options: Options,
             keep: dict[str, Any] | None = None) -> int:
        """Send one command, print the reply (``keep`` receives the reply's fields)."""
        reply = self.request(name, props, options)
        if keep is not None:
            keep.update(reply)
        is_error = reply.get("status") == "error"
        if options.json:
            color = options.prettify and self.out.isatty()
            self.print(render_json(reply, options.prettify, color))
            return Exit.ERROR_REPLY if is_error else Exit.OK
        text, is_error = render(name, reply, props, self.paint_err if is_error else self.paint_out)
        if text or is_error or name != "tail":      # no lines yet: nothing to print
            self.print(text, error=is_error)
        for warning in warnings(reply):
            self.print(f"{self.paint_err.warning('warning:')} {warning}", error=True)
        return Exit.ERROR_REPLY if is_error else Exit.OK

    def status(self, props: dict[str, Any], options: Options) -> int:
        """``status``: the plain lines or the table, and an exit code that says if all is well."""
        from circus.cli.ctl_status import plain_text, status_exit, watcher_detail, watchers_table

        table, plain = props.pop("table", False), props.pop("plain", False)
        reply = self.request("status", props, options)
        code = status_exit(reply)
        if options.json or reply.get("status") == "error":
            self._print_reply("status", reply, props, options)
            return code
        paint = self.paint_out
        if plain or not (table or self.out.isatty()):
            self.print(plain_text(reply, paint))
            return code
        if "statuses" in reply:
            procs = self.request("processes", {}, options)
            lines = watchers_table(reply, procs if procs.get("status") == "ok" else None, paint)
        else:
            lines = watcher_detail(str(props.get("name")), reply, paint)
        self.print("\n".join(lines))
        return code

    def _print_reply(self, name: str, reply: dict[str, Any], props: dict[str, Any],
                     options: Options) -> None:
        if options.json:
            self.print(render_json(reply, options.prettify, options.prettify and self.out.isatty()))
        else:
            text, is_error = render(name, reply, props, self.paint_err)
            self.print(text, error=is_error)

    def _wants_progress(self, name: str, options: Options) -> bool:
        from circus.cli.ctl_progress import PROGRESS_COMMANDS
        if name not in PROGRESS_COMMANDS or options.json or options.ssh:
            return False
        return options.progress if options.progress is not None else self.err.isatty()

    def events_endpoint(self, options: Options, explicit: bool = False) -> str:
        """The endpoint ``listen`` follows. ``--endpoint`` names the pubsub endpoint here, as in
        0.19; in the shell, whose ``--endpoint`` is the control one, circusd is asked for it."""
        if self.shell and not explicit:
            return self.pubsub_endpoint(options)
        return checked(options.endpoint or DEFAULT_ENDPOINT_SUB, options.where(events=True))

    def pubsub_endpoint(self, options: Options) -> str:
        """circusd's events endpoint, as it says (0.19's default if it does not say)."""
        from circus.client.wire import make_message

        reply = self.client(options).call(make_message("globaloptions", option="pubsub_endpoint"))
        found = (reply or {}).get("options", {}).get("pubsub_endpoint") if isinstance(reply, dict) else None
        return found if isinstance(found, str) and found and not endpoint_problem(found) \
            else DEFAULT_ENDPOINT_SUB

    _pubsub_endpoint = pubsub_endpoint

    def completion(self, shell: str) -> int:
        if shell not in SHELLS:
            raise UsageError(f"no completion for {shell!r} (shells: {', '.join(SHELLS)})",
                             "circusctl completion bash|zsh|fish", "circusctl completion")
        from circus.cli.ctl_complete import script
        self.out.write(script(shell))
        self.out.flush()
        return Exit.OK

    def help(self, words: list[str]) -> int:
        if not words:
            from circus.cli.ctl_help import main_help
            self.print(main_help().rstrip("\n"))
            return Exit.OK
        if len(words) > 1 or words[0] not in command_names():
            from circus.cli.ctl_help import unknown_command
            raise unknown_command(" ".join(words), what="no help for")
        from circus.cli.ctl_help import command_help
        self.print(command_help(words[0]).rstrip("\n"))
        return Exit.OK


def main(argv: Sequence[str] | None = None) -> int:
    if "AUTO_COMPLETE" in os.environ:
        from circus.cli.ctl_complete import bash_complete
        return bash_complete(os.environ)
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:
        # the reader went away (``circusctl listen | head``): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return Exit.NO_ANSWER


def _node_target(node: str, pool: str | None, events: bool) -> tuple[str, Any]:
    """The endpoint of ``node`` in the pool file and the ClientKeys the pool gives for it (or
    ``None``); ValueError saying what is wrong."""
    from circus.config import ConfigError
    from circusmeta import pool as pools
    try:
        config = pools.load_pool(pools.locate_pool(pool, os.environ))
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    spec = config.nodes.get(node)
    if spec is None:
        raise ValueError(f"no node {node!r} in {config.file} (nodes: {', '.join(config.nodes)})")
    from circus.cli.ctl_keys import pool_keys
    curve = pool_keys(config, node)
    if events:
        if not spec.pubsub_endpoint:
            raise ValueError(f"[node:{node}] in {config.file} has no pubsub_endpoint")
        return spec.pubsub_endpoint, curve
    return spec.endpoint, curve


def _main(args: list[str]) -> int:
    try:
        ns = global_parser().parse_args(args)
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return Exit.USAGE
    if ns.version:
        print(VERSION)
        return Exit.OK
    local = ns.help or ns.command in LOCAL_COMMANDS
    curve_key = ns.curve_key or os.environ.get(ENV_CURVE_KEY) or None
    server_key = ns.server_key or os.environ.get(ENV_SERVER_KEY) or None
    curve = None
    try:
        if ns.node and not local:
            ns.endpoint, curve = _node_target(ns.node, ns.pool, ns.command == "listen")
        if not local and (curve is None or ns.curve_key or ns.server_key):
            curve = load_keys(curve_key, server_key, sys.stderr)   # flags win over the pool
    except (ValueError, KeyProblem) as exc:
        print(f"circusctl: {exc}", file=sys.stderr)
        return Exit.USAGE
    options = Options(endpoint=ns.endpoint, timeout=ns.timeout, json=ns.json, prettify=ns.prettify,
                      ssh=ns.ssh, ssh_keyfile=ns.ssh_keyfile, progress=ns.progress,
                      curve_key=curve_key, server_key=server_key, curve=curve,
                      no_color=ns.no_color, node=ns.node if not local else None)
    session = Session(options)
    try:
        if ns.help:
            return session.run("help", [ns.command] if ns.command else [])
        if ns.command is None:
            from circus.cli.ctl_shell import run_shell
            session.shell = True
            return run_shell(session, VERSION)
        return session.run(ns.command, ns.words)
    finally:
        session.close()


if __name__ == "__main__":
    sys.exit(main())
