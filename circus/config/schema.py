"""The configuration schema: the ONLY place where option names, types, defaults and docs live.

Each option is a dataclass field; its metadata holds the converter (`conv`), the INI spelling
(`ini`: the key, a pattern such as `rlimit_<name>`, or None when not read from an INI key), how
it is read (`kind`) and a one-line `doc`. Adding an option = adding one field here.

kinds: "plain" (one key, one converter), "env", "rlimits", "hooks", "stream", "options" (composite,
assembled by the builder) and "name" (taken from the section header).
"""

from __future__ import annotations

import signal
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from circus.protocol.limits import MAX_NUMPROCESSES, MAX_NUMPROCESSES_CEILING, MAX_RECENT_LINES

from . import convert as c

__all__ = [
    "CircusOptions", "WatcherConfig", "SocketConfig", "PluginConfig", "NotifyConfig", "ToolConfig",
    "Config",
    "HOOK_NAMES", "STREAM_CLASSES", "STREAM_OPTIONS", "STREAM_COLORS", "RESTART_POLICIES",
    "option_reference", "schema_fields", "DEPEND_CONDITIONS",
]

HOOK_NAMES = (
    "before_start", "after_start", "before_spawn", "after_spawn", "before_stop", "after_stop",
    "before_signal", "after_signal", "before_reap", "after_reap", "extended_stats",
)
# Short stream class names and the options each accepts. Values stay strings in the config (so
# that `options`/`get`/`set` show them as written); STREAM_OPTIONS checks and normalises them.
STREAM_COLORS = ("red", "green", "yellow", "blue", "magenta", "cyan", "white")
STREAM_ROTATE_WHEN = ("S", "M", "H", "D", "MIDNIGHT", *(f"W{day}" for day in range(7)))
STREAM_OPTIONS: dict[str, c.Conv] = {
    "filename": c.TEXT,                        # empty or absent: a temporary file
    "max_bytes": c.integer(0),
    "backup_count": c.integer(0),
    "time_format": c.TEXT,
    "rotate_when": c.choice(*STREAM_ROTATE_WHEN),   # any case (0.19: upper case only)
    "rotate_interval": c.integer(1),
    "utc": c.BOOL,                             # a real boolean (0.19: any non-empty text was true)
    "color": c.choice(*STREAM_COLORS),
    "compress": c.choice("gzip", "none"),      # new: gzip rotated files
    "format": c.choice("text", "json"),        # new: one JSON object per line
    "refresh_time": c.number(0.0),             # 0.19's (documented for every stream): no effect
}
_EVERY_STREAM = frozenset({"refresh_time"})
STREAM_CLASSES: dict[str, frozenset[str]] = {
    "FileStream": frozenset({"filename", "max_bytes", "backup_count", "time_format", "compress",
                             "format"}) | _EVERY_STREAM,
    "WatchedFileStream": frozenset({"filename", "time_format", "format"}) | _EVERY_STREAM,
    "TimedRotatingFileStream": frozenset(
        {"filename", "backup_count", "time_format", "rotate_when", "rotate_interval", "utc",
         "compress", "format"}
    ) | _EVERY_STREAM,
    "StdoutStream": frozenset({"format"}) | _EVERY_STREAM,
    "FancyStdoutStream": frozenset({"color", "time_format"}) | _EVERY_STREAM,
    "QueueStream": _EVERY_STREAM,
}
RESTART_POLICIES = ("always", "on-failure", "never")
DEPEND_CONDITIONS = c.DEPEND_CONDITIONS  # depends_on: what a dependency must have reached


def opt(default: Any, conv: c.Conv | None, doc: str, *, kind: str = "plain",
        ini: str | None = "", default_doc: str | None = None) -> Any:
    """A schema field. `ini=""` means the INI key is the field name."""
    meta = {"conv": conv, "doc": doc, "kind": kind, "ini": ini, "default_doc": default_doc}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    if default is MISSING:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


_ANY_TEXT = c.OPT_TEXT


@dataclass(frozen=True)
class CircusOptions:
    """The `[circus]` section: the arbiter's own options."""

    endpoint: str = opt("tcp://127.0.0.1:5555", c.ENDPOINT, "control (ROUTER) endpoint")
    endpoint_owner: str | None = opt(None, _ANY_TEXT, "owner of an ipc:// control endpoint")
    pubsub_endpoint: str = opt("tcp://127.0.0.1:5556", c.ENDPOINT, "events (PUB) endpoint")
    curve_secret_key: str | None = opt(
        None, _ANY_TEXT, "*new*: the node's CURVE secret key file (NAME.key_secret, from "
        "'circusctl keygen'); turns CURVE on for the control, events and stats endpoints; a "
        "relative path is relative to the file that sets it")
    curve_clients: str | None = opt(
        None, _ANY_TEXT, "*new*: directory of authorized client public keys, one subdirectory "
        "per role (admin/, operator/, readonly/); re-read on SIGHUP and reloadconfig")
    insecure: bool = opt(False, c.BOOL, "*new*: allow a tcp:// endpoint reachable from other "
                         "machines without CURVE (a warning at every start)")
    statsd: bool = opt(False, c.BOOL, "run circusd-stats (also on when stats_endpoint is set)")
    stats_endpoint: str = opt("tcp://127.0.0.1:5557", c.ENDPOINT, "stats (PUB) endpoint")
    stats_interval: float = opt(1.0, c.number(0.0, exclusive=True),
                                "seconds between two samples of circusd-stats (> 0)")
    legacy_stats_topics: bool = opt(False, c.BOOL, "circusd-stats publishes 0.19's unprefixed "
                                    "topics (stat.WATCHER.PID...) even while nobody subscribes "
                                    "to them (they go to their subscribers anyway)")
    prometheus_endpoint: str | None = opt(
        None, c.HOST_PORT, "HOST:PORT where circusd-stats serves /metrics in the Prometheus text "
        "format (a bare PORT means 127.0.0.1); setting it runs circusd-stats; unset = off")
    multicast_endpoint: str | None = opt(
        None, c.OPT_ENDPOINT, "UDP multicast discovery endpoint; unset or empty = off (0.19: on)")
    max_numprocesses: int = opt(
        MAX_NUMPROCESSES, c.integer(1, MAX_NUMPROCESSES_CEILING),
        f"*new*: most processes one watcher may have (numprocesses, incr, set, add); above it a "
        f"request is refused (at most {MAX_NUMPROCESSES_CEILING:,})")
    check_delay: float = opt(
        5.0, c.number(), "seconds between 0.19's periodic checks, given to plugins; circusd "
        "itself reacts to events and has none (0.19's tests set -1: no periodic check)")
    warmup_delay: float = opt(0.0, c.number(0.0), "seconds between starting two watchers")
    include: tuple[str, ...] = opt((), c.WORDS, "space-separated globs of files to include")
    include_dir: tuple[str, ...] = opt((), c.WORDS, "directories whose *.ini files are included")
    umask: int | None = opt(None, c.OCTAL, "octal umask applied by circusd")
    httpd: bool = opt(False, c.BOOL, "run circushttpd")
    httpd_host: str = opt("localhost", c.TEXT, "circushttpd host")
    httpd_port: int = opt(8080, c.integer(0, 65535), "circushttpd port")
    debug: bool = opt(False, c.BOOL, "helper processes log to circusd's stdout")
    debug_gc: bool = opt(False, c.BOOL, "garbage-collector leak debugging")
    pidfile: str | None = opt(None, _ANY_TEXT, "pid file (the command line wins)")
    state_file: str | None = opt(
        None, _ANY_TEXT, "*new*: where circusd records runtime changes and its running processes; "
        "a circusd started again re-adopts them ('circusd --fresh' ignores it); relative to the "
        "configuration file's directory; unset = a SIGKILLed circusd's processes are ended")
    loglevel: str = opt("info", c.choice("debug", "info", "warning", "error", "critical"),
                        "log level (the command line wins)")
    logoutput: str = opt("-", c.TEXT, "log output: '-' for stdout (with --daemon: the default "
                         "log file), a path, or syslog://")
    loggerconfig: str | None = opt(
        None, _ANY_TEXT, "a logging configuration file for circusd (*.ini: logging.config."
        "fileConfig, *.json or *.yaml: dictConfig; relative to circusd's working directory, as "
        "0.19); replaces loglevel and logoutput; 'default' = unset; --logger-config wins")
    strict: bool = opt(
        True, c.BOOL, "*new*: false = load what Circus 0.19 silently ignored or dropped (unknown "
        "keys and sections, missing includes, watchers without cmd...) with a warning for each, "
        "as 'circusd --no-strict'")
    fqdn_prefix: str | None = opt(None, _ANY_TEXT, "prefix for the node's fully qualified name")
    statsd_close_outputs: bool = opt(False, c.BOOL, "accepted for compatibility; unused")
    httpd_close_outputs: bool = opt(False, c.BOOL, "accepted for compatibility; unused")
    stream_backend: str | None = opt(None, _ANY_TEXT, "accepted for compatibility; unused")
    name: str | None = opt(None, _ANY_TEXT, "node name; unset = the host name")

    @property
    def helper_log_level(self) -> str:
        """The log level of circusd's helper processes (circusd-stats, plugins)."""
        return "debug" if self.debug else self.loglevel


@dataclass(frozen=True)
class WatcherConfig:
    """A `[watcher:NAME]` section (or a protocol `add`): a group of identical processes."""

    name: str = opt(MISSING, None, "watcher name (from the section header)", kind="name", ini=None)
    cmd: str = opt(MISSING, c.TEXT, "program and arguments (shell-like split); required")
    args: str | tuple[str, ...] = opt("", c.ARGS, "extra arguments appended to cmd")
    executable: str | None = opt(None, _ANY_TEXT, "program to run; cmd's argv[0] is then a label")
    shell: bool = opt(False, c.BOOL, "run through /bin/sh -c")
    shell_args: str | None = opt(None, _ANY_TEXT, "extra arguments for the shell")
    numprocesses: int = opt(1, c.integer(0), "number of processes to keep running")
    warmup_delay: float = opt(0.0, c.number(0.0), "seconds between two spawns")
    working_dir: str | None = opt(None, _ANY_TEXT, "working directory; unset = circusd's")
    uid: str | int | None = opt(None, c.USER, "user to run as (resolved at spawn)")
    gid: str | int | None = opt(None, c.USER, "group to run as (resolved at spawn)")
    copy_env: bool = opt(False, c.BOOL, "start from circusd's environment")
    copy_path: bool = opt(False, c.BOOL, "pass circusd's sys.path as PYTHONPATH (needs copy_env)")
    env: dict[str, str] = opt({}, None, "environment: [env] < matching [env:PATTERNS]",
                              kind="env", ini="[env], [env:PATTERNS]")
    virtualenv: str | None = opt(None, _ANY_TEXT, "virtualenv to run in (needs copy_env)")
    virtualenv_py_ver: str | None = opt(None, _ANY_TEXT, "virtualenv's python version")
    autostart: bool = opt(True, c.BOOL, "start with the arbiter")
    respawn: bool = opt(True, c.BOOL, "replace processes that exit (see restart_policy)")
    on_demand: bool = opt(False, c.BOOL, "start when one of its sockets becomes readable")
    priority: int = opt(0, c.integer(), "start order: higher first; stop order reversed")
    singleton: bool = opt(False, c.BOOL, "at most one process")
    use_sockets: bool = opt(False, c.BOOL, "children inherit the sockets' file descriptors")
    sockets: tuple[str, ...] = opt((), c.NAMES, "sockets passed to children; empty = all")
    stdin_socket: str | None = opt(None, c.SOCKET_NAME, "socket duplicated onto stdin")
    close_child_stdin: bool = opt(True, c.BOOL, "stdin from /dev/null")
    close_child_stdout: bool = opt(False, c.BOOL, "stdout to /dev/null")
    close_child_stderr: bool = opt(False, c.BOOL, "stderr to /dev/null")
    recent_lines: int = opt(
        1000, c.integer(0, MAX_RECENT_LINES),
        f"*new*: output lines of the watcher's processes kept in memory (``tail``, ``status``), "
        f"at most {MAX_RECENT_LINES:,} and 1 MiB; circusd reads the processes' stdout and "
        "stderr to keep them, even without a stream (lines without a stream are passed on to "
        "circusd's own stdout and stderr); 0 = keep none: without a stream the processes "
        "write to circusd's stdout and stderr themselves (0.19)")
    stdout_stream: dict[str, str] | None = opt(None, None, "stdout stream: class and options",
                                               kind="stream", ini="stdout_stream.<option>")
    stderr_stream: dict[str, str] | None = opt(None, None, "stderr stream: class and options",
                                               kind="stream", ini="stderr_stream.<option>")
    send_hup: bool = opt(False, c.BOOL, "reload by sending SIGHUP instead of restarting")
    stop_signal: int = opt(int(signal.SIGTERM), c.SIGNAL, "signal that asks a process to stop",
                           default_doc="SIGTERM")
    stop_children: bool = opt(False, c.BOOL, "send the stop signal to direct children too")
    graceful_timeout: float = opt(30.0, c.number(0.0), "seconds before SIGKILL after stop_signal")
    max_retry: int = opt(5, c.integer(-1), "failed starts before giving up; -1 = forever")
    max_age: float = opt(0.0, c.number(0.0), "restart processes older than this; 0 = never")
    max_age_variance: float = opt(30.0, c.number(0.0), "random extra age, up to this")
    rlimits: dict[str, int | None] = opt({}, None, "resource limits; empty value = unlimited",
                                         kind="rlimits", ini="rlimit_<name>")
    hooks: dict[str, tuple[str, bool]] = opt({}, None, "hook: 'dotted.name[, ignore_failure]'",
                                             kind="hooks", ini="hooks.<hook>")
    check_flapping: bool = opt(True, c.BOOL, "accepted for compatibility; unused")
    retry_in: float = opt(7.0, c.number(0.0), "seconds before retrying a flapping watcher")
    options: dict[str, str] = opt({}, None, "free-form plugin options such as flapping.max_retry",
                                  kind="options", ini="<plugin>.<option>")
    restart_policy: str = opt("always", c.choice(*RESTART_POLICIES),
                              "when an exited process is replaced",
                              default_doc="always if respawn else never")
    backoff_initial: float = opt(0.1, c.number(0.0), "first delay before restarting a failed start")
    backoff_max: float = opt(30.0, c.number(0.0), "longest delay between failed starts")
    min_uptime: float = opt(1.0, c.number(0.0), "a process exiting sooner is a failed start")
    hook_timeout: float = opt(30.0, c.number(0.0), "seconds a hook may run before it counts as "
                              "failed (hooks run off the event loop)")
    ready: str | None = opt(
        None, c.PROBE, "readiness probe: tcp:HOST:PORT, http:URL, exec:COMMAND, notify or "
        "log:REGEX ($(circus.X) substituted at spawn); a process is started once it succeeds; "
        "unset = as soon as spawned")
    ready_timeout: float = opt(30.0, c.number(0.0, exclusive=True),
                               "seconds (> 0) a new process has to become ready")
    health: str | None = opt(
        None, c.HEALTH_PROBE, "liveness probe, run every health_interval: tcp:HOST:PORT, "
        "http:URL or exec:COMMAND; unset = none")
    health_interval: float = opt(10.0, c.number(0.0, exclusive=True),
                                 "seconds (> 0) between two liveness checks")
    health_failures: int = opt(3, c.integer(1),
                               "consecutive failed liveness checks that restart a process")
    health_timeout: float = opt(5.0, c.number(0.0, exclusive=True),
                                "seconds (> 0) one liveness check may take")
    watchdog_timeout: float = opt(
        0.0, c.number(0.0), "with ready = notify: restart a process whose WATCHDOG=1 messages "
        "stop for this long; 0 = off")
    depends_on: tuple[tuple[str, str], ...] = opt(
        (), c.DEPENDS, "watchers to wait for: 'NAME[:ready|started|completed], ...' (ready if "
        "omitted); started after them, stopped before them")
    listen_fds: bool = opt(False, c.BOOL, "pass the watcher's sockets systemd-style: "
                           "LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES")


@dataclass(frozen=True)
class SocketConfig:
    """A `[socket:NAME]` section: bound once by circusd, passed to children."""

    name: str = opt(MISSING, None, "socket name, lower-cased", kind="name", ini=None)
    host: str = opt("localhost", c.TEXT, "host to bind")
    port: int = opt(8080, c.integer(0, 65535), "port to bind; 0 = any free port")
    path: str | None = opt(None, _ANY_TEXT, "unix socket path (implies AF_UNIX)")
    family: str = opt("AF_INET", c.choice("AF_INET", "AF_INET6", "AF_UNIX"), "address family",
                      default_doc="AF_INET, AF_UNIX with path")
    type: str = opt("SOCK_STREAM", c.choice("SOCK_STREAM", "SOCK_DGRAM", "SOCK_RAW", "SOCK_RDM",
                                            "SOCK_SEQPACKET"), "socket type")
    proto: str = opt("", c.TEXT, "protocol name (e.g. tcp); empty = default")
    backlog: int = opt(2048, c.integer(0), "listen backlog")
    blocking: bool = opt(False, c.BOOL, "hand children a blocking socket")
    so_reuseport: bool = opt(False, c.BOOL, "one SO_REUSEPORT socket per process")
    umask: int = opt(8, c.integer(0), "umask while binding a unix socket (DECIMAL, as 0.19)")
    replace: bool = opt(False, c.BOOL, "remove an existing unix socket file first")
    interface: str | None = opt(None, _ANY_TEXT, "network interface to bind to")


@dataclass(frozen=True)
class PluginConfig:
    """A `[plugin:NAME]` section: a plugin process; every other key is passed as a string."""

    name: str = opt(MISSING, None, "plugin name", kind="name", ini=None)
    use: str = opt(MISSING, c.DOTTED, "plugin class, 'package.module.Class'; required")
    priority: int = opt(1, c.integer(), "start order of the plugin's watcher")
    options: dict[str, str] = opt({}, None, "every other key, as a string", kind="options",
                                  ini="<any>")


@dataclass(frozen=True, kw_only=True)
class NotifyConfig:
    """A `[notify:NAME]` section: watcher events and output lines turned into messages."""

    name: str = opt(MISSING, None, "notification name, lower-cased", kind="name", ini=None)
    watchers: tuple[str, ...] = opt((), c.NAMES, "watchers it covers (comma or space separated); "
                                    "empty = every watcher")
    match: str | None = opt(None, c.REGEX, "regex searched in every output line (stdout and "
                            "stderr) of those watchers; a matching line is notified")
    events: tuple[str, ...] = opt((), c.NOTIFY_EVENT_NAMES, "events notified: some of fatal, "
                                  "backoff, unhealthy, restart (see notifications.rst)")
    throttle: float = opt(300.0, c.number(0.0), "seconds: at most one message per window; the "
                          "next one counts what was held back; 0 = no throttling")
    destination: str = opt(MISSING, c.DESTINATION, "smtp://HOST[:PORT], smtps://HOST[:PORT], "
                           "exec:COMMAND (message on stdin) or an http(s):// webhook URL (JSON "
                           "POST); required")
    mail_from: str | None = opt(None, _ANY_TEXT, "smtp: the sender address; required for smtp",
                                ini="from")
    to: tuple[str, ...] = opt((), c.ADDRESSES, "smtp: recipient addresses; required for smtp")
    starttls: bool = opt(False, c.BOOL, "smtp: upgrade the connection with STARTTLS (the "
                         "server's certificate is verified)")
    username: str | None = opt(None, _ANY_TEXT, "smtp: login user (needs password)")
    password: str | None = opt(None, _ANY_TEXT, "smtp: login password; $(circus.env.X) keeps it "
                               "out of the file")
    timeout: float = opt(10.0, c.number(0.0, exclusive=True),
                         "seconds (> 0) one delivery attempt may take")
    retries: int = opt(5, c.integer(0), "failed deliveries retried this many times")
    retry_delay: float = opt(10.0, c.number(0.0, exclusive=True),
                             "seconds before the first retry; doubled each time, at most 600")


@dataclass(frozen=True)
class ToolConfig:
    """A `[tool:NAME]` section: an operator command run on the node by `circusctl tool NAME`."""

    name: str = opt(MISSING, None, "tool name, lower-cased", kind="name", ini=None)
    cmd: str = opt(MISSING, c.COMMAND, "program and arguments (split like a shell would, never "
                   "run by one); the caller's arguments are appended; required")
    description: str = opt("", c.TEXT, "one line shown by `circusctl tools`")
    working_dir: str | None = opt(None, _ANY_TEXT, "working directory; unset = circusd's")
    uid: str | int | None = opt(None, c.USER, "user to run as (resolved when run)")
    gid: str | int | None = opt(None, c.USER, "group to run as (resolved when run)")
    timeout: float = opt(60.0, c.number(0.0, exclusive=True),
                         "seconds (> 0) before the tool's process group is killed")


@dataclass(frozen=True)
class Config:
    """A whole loaded configuration."""

    circus: CircusOptions
    watchers: tuple[WatcherConfig, ...]
    sockets: tuple[SocketConfig, ...]
    plugins: tuple[PluginConfig, ...]
    env: dict[str, str]
    source: str
    files: tuple[str, ...]
    notifications: tuple[NotifyConfig, ...] = ()
    tools: tuple[ToolConfig, ...] = ()
    #: the lenient issues accepted (ConfigIssue: what 0.19 ignored or dropped), with --no-strict
    warnings: tuple[Any, ...] = field(default=(), compare=False)
    #: loaded with ``strict=False`` (circusd --no-strict): a reload is read the same way
    no_strict: bool = field(default=False, compare=False)


_KINDS = {"circus": CircusOptions, "watcher": WatcherConfig, "socket": SocketConfig,
          "plugin": PluginConfig, "notify": NotifyConfig, "tool": ToolConfig}


def schema_fields(cls: type) -> dict[str, Any]:
    """{ini key (lower case): field} for the plain options of a schema class."""
    return {(f.metadata["ini"] or f.name): f for f in fields(cls)
            if f.metadata.get("kind") == "plain"}


def option_reference() -> list[tuple[str, str, str, str, str]]:
    """(section kind, key, type, default, doc) for every option, for generated docs."""
    rows = []
    for kind, cls in _KINDS.items():
        for f in fields(cls):
            meta = f.metadata
            if meta.get("ini") is None:
                continue
            key = meta["ini"] or f.name
            conv = meta["conv"]
            type_name = conv.type_name if conv else meta["kind"]
            if meta["default_doc"] is not None:
                default = meta["default_doc"]
            elif f.default is not MISSING:
                default = repr(f.default)
            elif f.default_factory is not MISSING:
                default = repr(f.default_factory())
            else:
                default = "required"
            rows.append((kind, key, type_name, default, meta["doc"]))
    return rows
