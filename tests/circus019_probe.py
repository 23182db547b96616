"""Run by Circus 0.19's own interpreter (its venv), never imported by our tests: for each
configuration file given, do what 0.19's circusd does before it starts anything
(``get_config``, the logger configuration, ``Arbiter.load_from_config``) and print one JSON line
with what it made of the file: loaded or not (and why), the ``[circus]`` options, the watchers
(with the reason a watcher was dropped), sockets and plugins.

Each file is read in a forked child, so that the logging configuration and the ``sys.path``
additions of one file do not leak into the next one.

    python circus019_probe.py FILE...
"""
import copy
import fnmatch
import json
import logging
import os
import signal
import sys
import traceback

from circus import logger
from circus.arbiter import Arbiter
from circus.config import get_config, read_config
from circus.sockets import CircusSocket
from circus.util import configure_logger, parse_env_dict
from circus.watcher import Watcher

# what the comparison looks at; the rest of 0.19's watcher options are reported as "extra"
WATCHER_KEYS = (
    "cmd", "args", "numprocesses", "warmup_delay", "executable", "working_dir", "shell",
    "shell_args", "uid", "gid", "send_hup", "stop_signal", "stop_children", "max_retry",
    "graceful_timeout", "priority", "singleton", "use_sockets", "copy_env", "copy_path",
    "respawn", "autostart", "on_demand", "close_child_stdin", "close_child_stdout",
    "close_child_stderr", "max_age", "max_age_variance", "virtualenv", "virtualenv_py_ver",
    "stdin_socket", "rlimits", "hooks", "stdout_stream", "stderr_stream", "env",
    "check_flapping",
)
CIRCUS_KEYS = (
    "endpoint", "pubsub_endpoint", "stats_endpoint", "statsd", "check_delay", "warmup_delay",
    "httpd", "httpd_host", "httpd_port", "debug", "debug_gc", "pidfile", "loglevel", "logoutput",
    "loggerconfig", "umask", "endpoint_owner", "fqdn_prefix", "multicast_endpoint",
)


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _reason(exc):
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def file_env_keys(parser, watcher):
    """The environment variables the file itself sets for `watcher` ([env], [env:PATTERNS])."""
    keys = set()
    for section in parser.sections():
        if section == "env":
            keys |= set(dict(parser.items(section, noreplace=True)))
        elif section.startswith("env:"):
            patterns = [p.strip() for p in section[4:].split(",")]
            if any(fnmatch.fnmatch(watcher, p) for p in patterns):
                keys |= set(dict(parser.items(section, noreplace=True)))
    keys.discard("__name__")
    return keys


def probe(path):
    out = {"file": path, "ok": False, "error": None, "circus": {}, "watchers": [],
           "sockets": [], "plugins": []}
    try:
        cfg = get_config(path)
    except BaseException as exc:  # SystemExit included: that is what 0.19 does then
        out["error"] = "get_config: " + _reason(exc)
        return out
    out["circus"] = {k: _plain(cfg.get(k)) for k in CIRCUS_KEYS}
    try:
        configure_logger(logger, cfg.get("loglevel") or "info", "-",
                         cfg.get("loggerconfig") or None)
    except BaseException as exc:
        out["error"] = "loggerconfig: " + _reason(exc)
        return out
    parser, _ = read_config(path)
    for raw in cfg["watchers"]:
        item = {"name": raw["name"], "dropped": None}
        for key in WATCHER_KEYS:
            if key in raw:
                item[key] = _plain(raw[key])
        item["extra"] = {k: _plain(v) for k, v in raw.items()
                         if k not in WATCHER_KEYS and k not in ("name", "__name__")}
        if "env" in raw:  # as the Watcher gets it ($VAR expanded), without circusd's own
            try:
                env = parse_env_dict(raw["env"])
            except BaseException as exc:
                env = {"<error>": _reason(exc)}
            keys = file_env_keys(parser, raw["name"])
            item["env"] = {k: v for k, v in env.items() if k in keys}
        try:
            Watcher.load_from_config(copy.deepcopy(raw))
        except BaseException as exc:
            item["dropped"] = _reason(exc)
        out["watchers"].append(item)
    for raw in cfg["sockets"]:
        item = {k: _plain(v) for k, v in raw.items() if k != "__name__"}
        try:
            CircusSocket.load_from_config(dict(raw))
        except BaseException as exc:
            item["dropped"] = _reason(exc)
        out["sockets"].append(item)
    out["plugins"] = [{k: _plain(v) for k, v in p.items() if k != "__name__"}
                      for p in cfg["plugins"]]
    try:
        arbiter = Arbiter.load_from_config(path)
    except BaseException as exc:
        out["error"] = "Arbiter.load_from_config: " + _reason(exc)
        return out
    out["ok"] = True
    out["arbiter_watchers"] = sorted(w.name for w in arbiter.watchers)
    try:
        arbiter.context.destroy(0)
    except Exception:
        pass
    return out


def main(paths):
    logging.disable(logging.CRITICAL)
    for path in paths:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            try:
                result = probe(os.path.abspath(path))
            except BaseException:
                result = {"file": path, "ok": False, "error": "probe: " + traceback.format_exc()}
            os.write(write, json.dumps(result).encode())
            os._exit(0)
        os.close(write)
        chunks = []
        while True:
            chunk = os.read(read, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(read)
        _, status = os.waitpid(pid, 0)
        text = b"".join(chunks).decode() or json.dumps(
            {"file": path, "ok": False, "error": f"probe died: status {status}"})
        print(text, flush=True)


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    main(sys.argv[1:])
