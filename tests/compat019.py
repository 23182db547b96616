"""What Circus 0.19 and ours make of a configuration file, side by side (for
test_compat_circus019.py): 0.19's view comes from ``circus019_probe.py`` run by 0.19's own
interpreter, ours from ``load_config``; both are turned into the same plain shape, field by
field, with the values typed the same way (0.19 keeps most options as the strings of the file).
"""
from __future__ import annotations

import json
import resource
import signal
import subprocess
from pathlib import Path
from typing import Any

from circus.config.hints import reserved_prefix_typo
from circus.config.stream_options import builtin_stream_name

HERE = Path(__file__).parent
PROBE = HERE / "circus019_probe.py"
HELPERS = ("circusd-stats", "circushttpd")          # circusd's own watchers, not the file's

#: a watcher option: its 0.19 default (when the file does not set it), how to type 0.19's value
_BOOL = lambda v: str(v).strip().lower() in ("1", "yes", "true", "on")  # noqa: E731
WATCHER_FIELDS: dict[str, tuple[Any, Any]] = {
    "cmd": ("", str), "args": ("", str), "numprocesses": (1, int), "warmup_delay": (0, float),
    "executable": (None, lambda v: v), "working_dir": (None, lambda v: v or None),
    "shell": (False, _BOOL), "shell_args": (None, lambda v: v or None),
    "uid": (None, lambda v: None if v in (None, "") else str(v)),
    "gid": (None, lambda v: None if v in (None, "") else str(v)),
    "send_hup": (False, _BOOL), "stop_signal": (int(signal.SIGTERM), int),
    "stop_children": (False, _BOOL), "max_retry": (5, int), "graceful_timeout": (30.0, float),
    "priority": (0, int), "singleton": (False, _BOOL), "use_sockets": (False, _BOOL),
    "copy_env": (False, _BOOL), "copy_path": (False, _BOOL), "respawn": (True, _BOOL),
    "autostart": (True, _BOOL), "on_demand": (False, _BOOL), "close_child_stdin": (True, _BOOL),
    "close_child_stdout": (False, _BOOL), "close_child_stderr": (False, _BOOL),
    "max_age": (0.0, float), "max_age_variance": (30.0, float),
    "virtualenv": (None, lambda v: v or None), "virtualenv_py_ver": (None, lambda v: v or None),
    "stdin_socket": (None, lambda v: (v or "").lower() or None),
}
SOCKET_FIELDS: dict[str, Any] = {
    "host": ("localhost", str), "port": (8080, int), "path": (None, lambda v: v or None),
    "family": ("AF_INET", lambda v: str(v).upper()), "type": ("SOCK_STREAM", lambda v: str(v).upper()),
    "backlog": (2048, int), "so_reuseport": (False, _BOOL), "umask": (8, int),
    "replace": (False, _BOOL), "blocking": (False, _BOOL),
}
#: [circus] options compared; multicast_endpoint is a documented difference (off by default)
CIRCUS_FIELDS = ("endpoint", "pubsub_endpoint", "stats_endpoint", "statsd", "check_delay",
                 "warmup_delay", "httpd", "httpd_host", "httpd_port", "debug", "debug_gc",
                 "pidfile", "loglevel", "logoutput", "loggerconfig", "umask", "endpoint_owner",
                 "fqdn_prefix")


def run_probe(peer: Path, files: list[Path], cwd: Path, environ: dict[str, str],
              base: Path) -> dict[str, dict]:
    """0.19's view of each file, by path relative to `base`."""
    r = subprocess.run([str(peer / "bin" / "python"), "-I", str(PROBE), *map(str, files)],
                       capture_output=True, text=True, timeout=300, cwd=cwd, env=environ)
    assert r.returncode == 0, r.stderr
    results = [json.loads(line) for line in r.stdout.splitlines()]
    return {str(Path(res["file"]).relative_to(base)): res for res in results}


def _stream(conf: dict | None) -> dict | None:
    if not conf:
        return None
    conf = {k: str(v) for k, v in conf.items()}
    conf["class"] = builtin_stream_name(conf.get("class", "FileStream").strip())
    for key in ("max_bytes", "backup_count", "rotate_interval"):
        if key in conf:
            conf[key] = str(int(conf[key]))
    if "refresh_time" in conf:
        conf["refresh_time"] = str(float(conf["refresh_time"]))
    return conf


def dropped_by_0_19(result: dict) -> dict[str, str]:
    """The watchers 0.19's ``Watcher()`` refused (dropped at boot), with the reason."""
    return {raw["name"]: raw["dropped"] for raw in result["watchers"] if raw["dropped"]}


def theirs(result: dict) -> dict:
    """0.19's view: the file's [circus] options, watchers (all those read, dropped or not),
    sockets and plugins."""
    watchers = {}
    for raw in result["watchers"]:
        w = {name: (conv(raw[name]) if name in raw else default)
             for name, (default, conv) in WATCHER_FIELDS.items()}
        w["rlimits"] = {k.lower(): (None if v == resource.RLIM_INFINITY else int(v))
                        for k, v in raw.get("rlimits", {}).items()}
        w["hooks"] = {k: [v[0], bool(v[1])] for k, v in raw.get("hooks", {}).items()}
        w["stdout_stream"] = _stream(raw.get("stdout_stream"))
        w["stderr_stream"] = _stream(raw.get("stderr_stream"))
        w["env"] = dict(raw.get("env") or {})
        # dotted keys are plugin options, except typos of a reserved prefix (stdin_stream.class):
        # 0.19 kept those unused, --no-strict leaves them out with a warning
        w["options"] = {k: str(v) for k, v in raw.get("extra", {}).items()
                        if "." in k and reserved_prefix_typo(k.partition(".")[0].lower()) is None}
        if "max_age" in raw:    # 0.19 keeps max_age and max_age_variance as text
            w["max_age"] = float(raw["max_age"])
        watchers[raw["name"]] = w
    sockets = {}
    for raw in result["sockets"]:
        if raw.get("dropped"):
            continue
        sock = {k: (conv(raw[k]) if k in raw else default)
                for k, (default, conv) in SOCKET_FIELDS.items()}
        if sock["path"]:
            sock["family"] = "AF_UNIX"      # 0.19: a path forces AF_UNIX
        sockets[raw["name"]] = sock
    plugins = {}
    for raw in result["plugins"]:
        name = raw["name"].partition(":")[2]
        plugins[name] = {"use": raw["use"], "priority": int(raw.get("priority", 1)),
                         "options": {k: str(v) for k, v in raw.items()
                                     if k not in ("name", "use", "priority")}}
    c = result["circus"]
    circus = {k: c.get(k) for k in CIRCUS_FIELDS}
    circus["warmup_delay"] = float(circus["warmup_delay"])
    circus["loglevel"] = (circus["loglevel"] or "info").lower()
    circus["logoutput"] = circus["logoutput"] or "-"
    return {"circus": circus, "watchers": watchers, "sockets": sockets, "plugins": plugins}


def ours(config) -> dict:
    """Our Config in the same shape (our helper watchers left out)."""
    watchers = {}
    for cfg in config.watchers:
        if cfg.name in HELPERS or cfg.name.startswith("plugin:"):
            continue
        w = {}
        for name, (_, conv) in WATCHER_FIELDS.items():
            value = getattr(cfg, name)
            w[name] = conv(value) if name in ("uid", "gid") else value
        w["args"] = cfg.args if isinstance(cfg.args, str) else " ".join(cfg.args)
        w["rlimits"] = dict(cfg.rlimits)
        w["hooks"] = {k: [t, bool(ignore)] for k, (t, ignore) in cfg.hooks.items()}
        w["stdout_stream"] = _stream(cfg.stdout_stream)
        w["stderr_stream"] = _stream(cfg.stderr_stream)
        w["env"] = dict(cfg.env)
        w["options"] = dict(cfg.options)
        watchers[cfg.name] = w
    sockets = {s.name: {k: getattr(s, k) for k in SOCKET_FIELDS} for s in config.sockets}
    plugins = {p.name: {"use": p.use, "priority": p.priority, "options": dict(p.options)}
               for p in config.plugins}
    circus = {k: getattr(config.circus, k) for k in CIRCUS_FIELDS}
    circus["umask"] = None if circus["umask"] is None else circus["umask"]
    return {"circus": circus, "watchers": watchers, "sockets": sockets, "plugins": plugins}


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where the two views differ, as 'path: 0.19 value != ours'."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                out.append(f"{path}/{key}: {'missing in 0.19' if key not in a else 'missing in ours'}")
            else:
                out += differences(a[key], b[key], f"{path}/{key}")
        return out
    return [] if a == b else [f"{path}: {a!r} (0.19) != {b!r} (ours)"]
