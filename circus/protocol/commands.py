"""Every control command, defined once: properties, types, role, waiting, and documentation.

The server validates requests against these definitions, ``circusctl`` builds its parsers and
help from them, and ``docs/reference/commands.rst`` is generated from them. Names, properties and
reply fields are Circus 0.19's; additions are marked *new*.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Mapping

from circus.protocol.errors import ErrorCode, ProtocolError
from circus.records import Record, record

__all__ = ["Role", "Prop", "Command", "COMMANDS", "get_command", "validate_properties", "MATCH_KINDS"]

MATCH_KINDS = ("glob", "simple", "regex")


class Role(enum.IntEnum):
    """Who may run a command (enforced when CURVE authentication is configured)."""

    READONLY = 1
    OPERATOR = 2
    ADMIN = 3


@record
class Prop(Record):
    name: str
    types: tuple[type, ...]
    doc: str
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()

    def check(self, value: Any) -> Any:
        if bool in self.types and isinstance(value, bool):
            return value
        if isinstance(value, bool) and bool not in self.types:
            raise ProtocolError(ErrorCode.INVALID_PROPERTY,
                                f"property {self.name!r} must be {self.type_name}, not a boolean")
        if float in self.types and isinstance(value, int):
            return float(value)
        if not isinstance(value, self.types):
            raise ProtocolError(ErrorCode.INVALID_PROPERTY,
                                f"property {self.name!r} must be {self.type_name}, "
                                f"got {type(value).__name__}")
        if self.choices and value not in self.choices:
            raise ProtocolError(ErrorCode.INVALID_PROPERTY,
                                f"property {self.name!r} must be one of {', '.join(self.choices)}")
        return value

    @property
    def type_name(self) -> str:
        names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
                 dict: "an object", list: "a list", type(None): "null"}
        return " or ".join(names.get(t, t.__name__) for t in self.types)


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    role: Role
    props: tuple[Prop, ...] = ()
    waiting: bool = False              # honours properties.waiting
    reply: str = ""                    # reply fields, for the docs
    doc: str = ""
    new: bool = False                  # not in Circus 0.19
    readonly: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "readonly", self.role is Role.READONLY)
        if self.waiting and TIMEOUT not in self.props:
            object.__setattr__(self, "props", (*self.props, TIMEOUT))


NAME = Prop("name", (str,), "watcher name (case-insensitive)")
NAME_REQ = Prop("name", (str,), "watcher name (case-insensitive)", required=True)
MATCH = Prop("match", (str,), "how ``name`` matches watchers", default="glob", choices=MATCH_KINDS)
WAITING = Prop("waiting", (bool,), "reply when the operation is done, with its result", default=False)
#: *new*: a deadline for an operation queued behind others on the same watcher
TIMEOUT = Prop("timeout", (int, float), "*new*: fail with ``timeout`` (doing nothing) if the "
               "operation cannot start within this many seconds")
GRACEFUL_T = Prop("graceful_timeout", (int, float), "seconds before SIGKILL (default: the watcher's)")
SIGNUM = Prop("signum", (int, str), "signal: number or name, with or without SIG, any case")
PID = Prop("pid", (int, str), "process id")
BATCH = Prop("batch", (int, str), "*new*: processes replaced per step, N or 'N%' (restart "
             "--graceful: 1; reload: all at once)")

_COMMANDS = [
    Command("add", "Add a watcher", Role.ADMIN, (
        NAME_REQ,
        Prop("cmd", (str,), "command line", required=True),
        Prop("args", (str, list), "arguments (string or list)"),
        Prop("options", (dict,), "watcher options, as in the INI file, with JSON types", default={}),
        Prop("start", (bool,), "start the watcher at once", default=False),
        WAITING), waiting=True,
        doc="Creates a watcher. With ``start`` and ``waiting`` the reply comes once it started."),
    Command("rm", "Remove a watcher", Role.ADMIN, (
        NAME_REQ, Prop("nostop", (bool,), "forget the processes without stopping them", default=False),
        WAITING), waiting=True),
    Command("start", "Start watchers (all autostart watchers without a name)", Role.OPERATOR,
            (NAME, MATCH, WAITING), waiting=True,
            reply="with one match and waiting: ``info: {started: [pids], kept: [pids]}``"),
    Command("stop", "Stop watchers (all without a name; circusd keeps running)", Role.OPERATOR,
            (NAME, MATCH, WAITING), waiting=True, reply="with one match and waiting: ``info: null``"),
    Command("restart", "Restart watchers: stop then start (all watchers without a name)",
            Role.OPERATOR, (NAME, MATCH, WAITING,
                            Prop("graceful", (bool,), "*new*: rolling: start replacements, wait "
                                 "until they are ready, then stop the old ones", default=False),
                            BATCH), waiting=True,
            reply="with one match and waiting: ``info: {stopped, started, kept}``"),
    Command("reload", "Reload watchers: new processes first, then the old ones stop", Role.OPERATOR, (
        NAME, MATCH,
        Prop("graceful", (bool,), "false: stop everything, then start", default=True),
        Prop("sequential", (bool,), "replace one process at a time", default=False),
        BATCH, WAITING), waiting=True, reply="with one match and waiting: ``info: {stopped, started, kept}``"),
    Command("reloadconfig", "Re-read the configuration file and apply what changed", Role.ADMIN, (
        WAITING, Prop("dry_run", (bool,), "*new*: only return the plan", default=False)),
        waiting=True, reply="*new*: ``plan`` (what changed and what was done)"),
    Command("quit", "Stop every watcher and exit", Role.ADMIN, (
        Prop("keep", (bool,), "*new*: exit but leave every process running, for the next circusd "
             "to re-adopt (needs [circus] state_file): an upgrade of circusd without a restart "
             "of what it runs", default=False), WAITING), waiting=True),
    Command("incr", "Add processes to a watcher", Role.OPERATOR, (
        NAME_REQ, Prop("nb", (int,), "how many", default=1), WAITING), waiting=True,
        reply="``numprocesses`` (the new target)"),
    Command("decr", "Remove processes from a watcher (the oldest go first)", Role.OPERATOR, (
        NAME_REQ, Prop("nb", (int,), "how many", default=1), WAITING), waiting=True,
        reply="``numprocesses`` (the new target)"),
    Command("set", "Set watcher options", Role.ADMIN, (
        NAME_REQ, Prop("options", (dict,), "option: value, with JSON types", required=True), WAITING),
        waiting=True,
        doc="Every accepted key is applied. Keys that change how processes are started "
            "(cmd, args, env, uid, ...) trigger a graceful reload; numprocesses resizes."),
    Command("get", "Get watcher options", Role.READONLY, (
        NAME_REQ, Prop("keys", (list,), "option names", required=True)), reply="``options``"),
    Command("options", "All options of a watcher", Role.READONLY, (NAME_REQ,), reply="``options``"),
    Command("globaloptions", "circusd's options", Role.READONLY, (
        Prop("option", (str,), "only this option"),), reply="``options``"),
    Command("list", "Watchers, or the pids of one watcher", Role.READONLY, (NAME,),
            reply="``watchers: [names]``, or with a name ``pids: [pids]``"),
    Command("listsockets", "The sockets circusd bound", Role.READONLY,
            reply="``sockets: [{fd, name, backlog, host, port | path}]``"),
    Command("numprocesses", "Number of running processes", Role.READONLY, (NAME,),
            reply="``numprocesses``"),
    Command("numwatchers", "Number of watchers", Role.READONLY, reply="``numwatchers``"),
    Command("nodeinfo", "This node: name, load, memory, watchers and processes", Role.READONLY,
            new=True,
            reply="``name``, ``version``, ``pid``, ``uptime`` (s), ``load`` [1, 5, 15 min], "
                  "``cpu_count``, ``mem_total``, ``mem_available`` (bytes), ``watchers``, "
                  "``processes`` (alive), ``time``",
            doc="Cheap (no process sampling): what ``circusmeta nodes`` shows and what its "
                "placement strategies compare."),
    Command("rename", "Rename this node (in memory only)", Role.ADMIN, (
        Prop("name", (str,), "the new node name: 1 to 64 letters, digits, '.', '_' or '-'",
             required=True),), new=True, reply="``old``, ``name``",
        doc="Events, replies and stats carry the new name from then on. Not written anywhere: "
            "circusd started again uses ``[circus] name`` (or ``--name``, or the host name), and "
            "a ``reloadconfig`` whose ``[circus] name`` changed applies that one."),
    Command("processes", "Each watcher's processes with their state, readiness and restarts",
            Role.READONLY, (NAME,), new=True,
            reply="``watchers: {name: {state, numprocesses, restarts, exits: {code: count}, "
                  "processes: [{wid, pid, state, ready, started, restarts, last_exit}]}}``",
            doc="No psutil sampling: answered from circusd's own records, so it is cheap enough "
                "for a monitoring scrape (circusd-stats uses it for ``/metrics``). ``restarts`` "
                "counts respawns after an exit; ``exits`` counts exits by exit code (negative: "
                "killed by that signal)."),
    Command("status", "State of one watcher or of all", Role.READONLY, (NAME, MATCH),
            reply="with one name: ``status`` is the state itself (``active``...) as in 0.19; "
                  "*new* ``state``, ``reason``, ``trouble`` (``fatal``, ``backoff``, ``exited`` "
                  "or null: what the state word does not say), ``numprocesses``, "
                  "``processes: [{wid, pid, state, ready, started, restarts, last_exit}]`` (uptime: "
                  "the reply's ``time`` minus ``started``) "
                  "and, when ``trouble`` is set, ``last_lines`` (the last stderr lines, else "
                  "stdout); without a name, or a glob matching several: ``statuses: {name: "
                  "state}``, *new* ``details: {name: {state, reason, trouble}}`` for the watchers "
                  "that have a reason or trouble"),
    Command("tail", "The last lines a watcher's processes wrote (every watcher's, without a "
            "name)", Role.READONLY, (
        NAME,
        Prop("stream", (str,), "only this one (default: both)", choices=("stdout", "stderr")),
        Prop("lines", (int,), "how many lines, at most 1000", default=10)), new=True,
        reply="``lines: [{seq, time, pid, stream, line, watcher}]`` (oldest first), "
              "``streams`` read, ``topic`` (prefix of the ``output.`` events that carry the next "
              "lines)",
        doc="What circusd keeps: every watcher's last ``recent_lines`` output lines (1,000 by "
            "default), whether or not it has a stream. New lines are published on the events "
            "socket as ``output.<watcher>.<stream>`` while somebody subscribes to them "
            "(``circusctl tail --follow``)."),
    Command("stats", "Process statistics", Role.READONLY, (
        NAME, Prop("process", (int, str), "one pid"),
        Prop("extended", (bool,), "add extended stats", default=False)),
        reply="``infos`` / ``info``"),
    Command("dstats", "circusd's own statistics", Role.READONLY, reply="``info``"),
    Command("kill", "Stop processes with the stop policy (respawned unless the watcher stops)",
            Role.OPERATOR, (NAME_REQ, PID, SIGNUM, GRACEFUL_T, WAITING), waiting=True),
    Command("signal", "Send a signal to processes", Role.OPERATOR, (
        NAME_REQ, Prop("signum", (int, str), "signal: number or name", required=True), PID,
        Prop("childpid", (int, str), "a child of ``pid``"),
        Prop("children", (bool,), "signal the children instead", default=False),
        Prop("recursive", (bool,), "signal the process and all its descendants", default=False))),
    Command("reopen", "Reopen log files and stream files (as SIGUSR1)", Role.OPERATOR, new=True),
    Command("tools", "The operator tools of this node ([tool:NAME] sections)", Role.READONLY,
            reply="``tools: [{name, description, timeout}]``", new=True),
    Command("tool", "Run an operator tool on this node", Role.ADMIN, (
        Prop("name", (str,), "tool name (case-insensitive)", required=True),
        Prop("args", (list,), "arguments appended to the tool's command, one argv item each "
             "(never through a shell)", default=[]),
        Prop("run_id", (str,), "names this run in the events (1 to 64 letters, digits, _ or -); "
             "default: a random one"),
        WAITING), waiting=True, new=True,
        reply="``run_id``; with waiting, when the tool ended: ``exit_code`` (negative: killed by "
              "that signal), ``timed_out``, ``output`` (stdout and stderr merged, its last 256 "
              "KiB), ``first_line`` (number of the first line in ``output``), ``lines``, "
              "``duration``",
        doc="The tool's output lines are published while it runs as ``tool.<name>.<run_id>`` "
            "``{run_id, seq, line}``, and its end as ``{run_id, done, exit_code, timed_out}``. "
            "It is killed (its whole process group) at the tool's ``timeout``."),
    Command("ipython", "Not supported (0.19's embedded IPython)", Role.ADMIN),
]

COMMANDS: Mapping[str, Command] = {c.name: c for c in _COMMANDS}


def get_command(name: object) -> Command:
    if not isinstance(name, str):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "'command' must be a string")
    try:
        return COMMANDS[name.lower()]
    except KeyError:
        if name.lower() == "listen":
            raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                                "invalid message. use a pub/sub socket") from None
        raise ProtocolError(ErrorCode.UNKNOWN_COMMAND, f"unknown command: {name!r}") from None


def validate_properties(command: Command, props: Mapping[str, Any]) -> dict[str, Any]:
    """Checked properties with defaults filled in; unknown properties are ignored (0.19 did)."""
    out: dict[str, Any] = {}
    for prop in command.props:
        if prop.name in props and props[prop.name] is not None:
            out[prop.name] = prop.check(props[prop.name])
        elif prop.required:
            raise ProtocolError(ErrorCode.MISSING_PROPERTY,
                                f"message invalid: {prop.name!r} is missing")
        else:
            out[prop.name] = prop.default
    return out
