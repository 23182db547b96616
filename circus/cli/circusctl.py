"""circusctl: run control commands against circusd, print the answers; an interactive shell.

Compatible with circusctl 0.19: same commands, positional forms, flags, output and exit codes.

Exit codes (one place: :class:`Exit`):

* 0 ok (also with ``--json``, whatever the reply says, as 0.19 did)
* 1 no answer: timeout, unreachable endpoint, ssh tunnel failure (with 0.19's hint on timeout)
* 2 usage error: unknown command, wrong arguments or flags (0.19 used 1 for a wrong number of
  arguments and crashed with a traceback on a value it could not convert; nothing is sent then);
  also a key file that cannot be used, ``--curve-key`` without ``--server-key`` (or the
  reverse), and ``keygen`` refusing to replace existing files
* 3 circusd answered with an error
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

import argparse
import enum
import os
import sys
from dataclasses import dataclass
from typing import Any, Sequence, TextIO

from circus import __version__
from circus.cli.ctl_forms import (LOCAL_COMMANDS, USAGE, HelpRequested, UsageError, add_global_options,
                                  build_request, command_help, command_names, summary)
from circus.cli.ctl_keys import ENV_CURVE_KEY, ENV_SERVER_KEY, KeyOptionError, client_keys
from circus.cli.ctl_output import render, render_event, render_json, render_line
from circus.client.errors import CallError, CallTimeout
from circus.client.wire import DEFAULT_ENDPOINT_DEALER, DEFAULT_ENDPOINT_SUB
from circus.protocol import COMMANDS

__all__ = ["main", "Exit", "Session", "VERSION", "TIMEOUT_HINT"]

VERSION = f"circusctl {__version__}"

# The hint circusctl 0.19 prints after "Timed out." (kept word for word: users know it).
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

    def control_endpoint(self) -> str:
        return self.endpoint or os.environ.get("CIRCUSCTL_ENDPOINT") or DEFAULT_ENDPOINT_DEALER


class Session:
    """Runs commands for one invocation or one shell: owns the client, prints, returns exit codes."""

    def __init__(self, options: Options, out: TextIO | None = None, err: TextIO | None = None,
                 shell: bool = False) -> None:
        self.options = options
        self.shell = shell
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._client: Any = None

    def client(self, options: Options) -> Any:
        from circus.client.sync import CircusClient

        if options is not self.options:
            return CircusClient(endpoint=options.control_endpoint(), timeout=options.timeout,
                                ssh_server=options.ssh, ssh_keyfile=options.ssh_keyfile,
                                curve=options.curve)
        if self._client is None:
            self._client = CircusClient(endpoint=options.control_endpoint(), timeout=options.timeout,
                                        ssh_server=options.ssh, ssh_keyfile=options.ssh_keyfile,
                                        curve=options.curve)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.stop()
            self._client = None

    def print(self, text: str, error: bool = False) -> None:
        stream = self.err if error else self.out
        stream.write(text + "\n")
        stream.flush()

    def run(self, name: str, words: Sequence[str]) -> int:
        """Run command ``name`` with its words; print the outcome; return the exit code."""
        try:
            if name == "help":
                return self.help(list(words))
            if name not in command_names():
                raise UsageError(f"unknown command {name!r} (choose from {', '.join(command_names())})")
            props, overrides = build_request(name, words)
            if name == "keygen":
                from circus.cli.ctl_keys import keygen
                return keygen(props["name"], props.get("dir"), props.get("force", False),
                              self.out, self.err)
            options = self._with(overrides)
            if name == "listen":
                return self.listen(props.get("topic") or [""], options, "endpoint" in overrides)
            if name == "tail":
                return self.tail(props, options)
            if name == "tool":
                from circus.cli.ctl_tool import run_tool
                return run_tool(self, props, options)
            return self.call(name, props, options)
        except HelpRequested:
            return self.help([name])
        except UsageError as exc:
            self.print(str(exc), error=True)
            return Exit.USAGE
        except KeyProblem as exc:
            self.print(f"circusctl: {exc}", error=True)
            return Exit.USAGE
        except CallTimeout as exc:
            self.print(f"{exc}{TIMEOUT_HINT}".rstrip("\n"), error=True)
            return Exit.NO_ANSWER
        except CallError as exc:
            self.print(str(exc), error=True)
            return Exit.NO_ANSWER
        except KeyboardInterrupt:
            return Exit.NO_ANSWER

    def _with(self, overrides: dict[str, Any]) -> Options:
        if not overrides:
            return self.options
        options = Options(**{**vars(self.options), **overrides})
        if "curve_key" in overrides or "server_key" in overrides:
            options.curve = load_keys(options.curve_key, options.server_key, self.err)
        return options

    def call(self, name: str, props: dict[str, Any], options: Options,
             keep: dict[str, Any] | None = None) -> int:
        """Send one command, print the reply (``keep`` receives the reply's fields)."""
        from circus.client.wire import make_message

        if props.get("waiting") and any(p.name == "timeout" for p in COMMANDS[name].props):
            props = {**props, "timeout": options.timeout}   # circusd gives up when we would
        client = self.client(options)
        try:
            if props.get("waiting") and self._wants_progress(name, options):
                from circus.cli.ctl_progress import Progress
                with Progress(self._pubsub_endpoint(options), props.get("name"), self.err,
                              options.curve):
                    reply = client.call(make_message(name, **props))
            else:
                reply = client.call(make_message(name, **props))
        finally:
            if client is not self._client:
                client.stop()
        if keep is not None and isinstance(reply, dict):
            keep.update(reply)
        if options.json:
            color = options.prettify and self.out.isatty()
            self.print(render_json(reply, options.prettify, color))
            return Exit.OK
        text, is_error = render(name, reply, props)
        if text or is_error or name != "tail":      # no lines yet: nothing to print
            self.print(text, error=is_error)
        return Exit.ERROR_REPLY if is_error else Exit.OK

    def _wants_progress(self, name: str, options: Options) -> bool:
        from circus.cli.ctl_progress import PROGRESS_COMMANDS
        if name not in PROGRESS_COMMANDS or options.json or options.ssh:
            return False
        return options.progress if options.progress is not None else self.err.isatty()

    def listen(self, topics: list[str], options: Options, explicit: bool = False) -> int:
        """Print events until interrupted. ``--endpoint`` names the pubsub endpoint here, as in
        0.19; in the shell, whose ``--endpoint`` is the control one, circusd is asked for it."""
        from circus.consumer import CircusConsumer

        if self.shell and not explicit:
            endpoint = self._pubsub_endpoint(options)
        else:
            endpoint = options.endpoint or DEFAULT_ENDPOINT_SUB
        with CircusConsumer(topics, endpoint=endpoint, ssh_server=options.ssh,
                            ssh_keyfile=options.ssh_keyfile, curve=options.curve) as consumer:
            for topic, message in consumer:
                self.print(render_event(topic, message))
        return Exit.OK

    def tail(self, props: dict[str, Any], options: Options) -> int:
        """The last lines; with ``--follow``, then every new line until interrupted. Following
        subscribes first and waits for circusd's confirmation, then asks for the last lines, so
        that no line falls between the two; lines seen twice are recognised by their ``seq``."""
        follow = props.pop("follow", False)
        if not follow:
            return self.call("tail", props, options)
        import json
        import time

        from circus.consumer import CircusConsumer
        from circus.protocol import output_topic

        topic = output_topic(props["name"], props.get("stream") or "")
        endpoint = self._pubsub_endpoint(options)
        with CircusConsumer([topic], endpoint=endpoint, ssh_server=options.ssh,
                            ssh_keyfile=options.ssh_keyfile, curve=options.curve) as consumer:
            deadline = time.monotonic() + options.timeout
            while True:           # circusd answers a new output subscription on that very topic
                left = deadline - time.monotonic()
                if left <= 0 or not consumer.next_ready(left):
                    self.print(f"no confirmation of the subscription to {topic} from {endpoint} "
                               f"within {options.timeout:g} s", error=True)
                    return Exit.NO_ANSWER
                event = json.loads(consumer.pubsub_socket.recv_multipart()[-1])
                if event.get("subscribed") == topic:
                    break
            last: dict[str, Any] = {}
            code = self.call("tail", props, options, keep=last)
            if code != Exit.OK or last.get("status") != "ok":
                return code or Exit.ERROR_REPLY
            seen = max((entry["seq"] for entry in last.get("lines") or []), default=0)
            try:
                for _, message in consumer:
                    event = json.loads(message)
                    if "line" not in event:
                        continue
                    if seen and event.get("seq", 0) <= seen:
                        continue              # already printed from the reply
                    seen = 0                  # past the reply: print everything from now on
                    self.print(json.dumps(event) if options.json else render_line(event))
            except KeyboardInterrupt:
                pass
        return Exit.OK

    def _pubsub_endpoint(self, options: Options) -> str:
        from circus.client.wire import make_message

        try:
            reply = self.client(options).call(make_message("globaloptions", option="pubsub_endpoint"))
        except CallError:
            reply = None
        found = (reply or {}).get("options", {}).get("pubsub_endpoint") if isinstance(reply, dict) else None
        return found if isinstance(found, str) and found else DEFAULT_ENDPOINT_SUB

    def help(self, words: list[str]) -> int:
        if not words:
            self.print(main_help().rstrip("\n"))
            return Exit.OK
        if len(words) > 1 or words[0] not in command_names():
            raise UsageError(f"no help for {' '.join(words)!r}: not a command "
                             f"(choose from {', '.join(command_names())})")
        self.print(command_help(words[0]).rstrip("\n"))
        return Exit.OK


def _global_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="circusctl", usage=USAGE, add_help=False,
                                     description="Controls a Circus daemon",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_global_options(parser)
    parser.add_argument("--node", help="run the command on this node of the pool file (its "
                        "endpoint; for listen its pubsub_endpoint)")
    parser.add_argument("--pool", help="the pool file for --node (default: $CIRCUSMETA_POOL, "
                        "~/.config/circus/pool.ini, /etc/circus/pool.ini)")
    parser.add_argument("--help", "-h", action="store_true", help="show this help and exit")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("command", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("words", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def error(message: str) -> Any:
        raise UsageError(message)

    parser.error = error  # type: ignore[method-assign]
    return parser


def main_help() -> str:
    names = command_names()
    width = max(len(n) for n in names) + 2
    parser = _global_parser()
    parser.description = "Controls a Circus daemon\n\nCommands:\n" + "\n".join(
        f"  {name:<{width}}{summary(name)}" for name in names) + \
        "\n\nRun 'circusctl help COMMAND' for a command's arguments and flags." \
        "\nWithout a command: an interactive shell."
    return parser.format_help()


def bash_complete(environ: dict[str, str] | os._Environ[str]) -> int:
    """0.19's bash completion protocol (``AUTO_COMPLETE``, ``COMP_WORDS``, ``COMP_CWORD`` set by
    the completion script): print the command names that complete the first word; exit 1."""
    words = environ.get("COMP_WORDS", "").split()[1:]
    try:
        cword = int(environ.get("COMP_CWORD", "0"))
    except ValueError:
        cword = 0
    current = words[cword - 1] if 0 < cword <= len(words) else ""
    if cword == 1:
        print(" ".join(name for name in command_names() if name.startswith(current)))
    return Exit.NO_ANSWER


def main(argv: Sequence[str] | None = None) -> int:
    if "AUTO_COMPLETE" in os.environ:
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
        ns = _global_parser().parse_args(args)
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
                      curve_key=curve_key, server_key=server_key, curve=curve)
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
