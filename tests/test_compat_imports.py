"""Circus 0.19's module paths and names, as plugins, hooks, stream classes and programs in the
wild import them: each works, or raises an ImportError that names what replaces it; the
signatures match 0.19's (checked against the real 0.19, in its own virtualenv); the helpers
give 0.19's results for the same inputs.

The list of names comes from reading public code that imports them (docs/library.rst says
which projects); a name added there belongs here.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_compat_circus019 import circus019  # noqa: E402,F401  (the 0.19 virtualenv fixture)

#: (module, name) pairs that public 0.19 code imports, all of which must work
WORKING = [
    ("circus", "logger"), ("circus", "get_arbiter"), ("circus", "__version__"),
    *(("circus.util", n) for n in (
        "DEFAULT_ENDPOINT_DEALER", "DEFAULT_ENDPOINT_SUB", "DEFAULT_ENDPOINT_STATS",
        "DEFAULT_ENDPOINT_MULTICAST", "LOG_LEVELS", "LOG_FMT", "LOG_DATE_FMT", "MAXFD",
        "REDIRECT_TO", "IS_WINDOWS", "human2bytes", "bytes2human", "to_bool", "to_str",
        "to_bytes", "to_signum", "to_uid", "to_gid", "get_connection", "configure_logger",
        "check_future_exception_and_log", "tornado_sleep", "resolve_name", "get_python_version",
        "get_working_dir", "debuglog", "parse_env_dict", "parse_env_str",
        "AsyncPeriodicCallback")),
    *(("circus.process", n) for n in ("Process", "RUNNING", "DEAD_OR_ZOMBIE", "UNEXISTING", "OTHER")),
    ("circus.watcher", "Watcher"), ("circus.arbiter", "Arbiter"),
    ("circus.arbiter", "ThreadedArbiter"), ("circus.sockets", "CircusSocket"),
    ("circus.sockets", "CircusSockets"),
    *(("circus.stream", n) for n in ("FileStream", "WatchedFileStream", "TimedRotatingFileStream",
                                     "StdoutStream", "FancyStdoutStream", "QueueStream", "Empty",
                                     "get_stream")),
    ("circus.stream.file_stream", "FileStream"), ("circus.commands", "get_commands"),
    ("circus.commands", "ok"), ("circus.commands", "error"),
    ("circus.stats.client", "StatsClient"), ("circus.circusd", "daemonize"),
    ("circus.circusd", "get_maxfd"), ("circus.circusd", "closerange"), ("circus.circusd", "main"),
    ("circus.pidfile", "Pidfile"),
    *(("circus.client", n) for n in ("CircusClient", "AsyncCircusClient", "make_message",
                                     "cast_message", "make_json", "CallError")),
    ("circus.consumer", "CircusConsumer"),
    *(("circus.exc", n) for n in ("CallError", "ConflictError", "MessageError", "AlreadyExist",
                                  "ArgumentError")),
    ("circus.plugins", "CircusPlugin"),
]


@pytest.mark.parametrize("module,name", WORKING, ids=[f"{m}.{n}" for m, n in WORKING])
def test_the_names_0_19_code_imports_exist(module, name):
    assert getattr(importlib.import_module(module), name) is not None


def _removed():
    from circus import commands, process, stream, util
    for mod in (util, process, stream, commands):
        table = getattr(mod, "REMOVED", None)
        if table is None:          # the others keep theirs in their __getattr__
            continue
        for name in table:
            yield mod.__name__, name
    yield "circus.stream", "Redirector"
    yield "circus.commands", "Command"
    yield "circus.process", "get_children"


@pytest.mark.parametrize("module,name", list(_removed()))
def test_a_removed_name_says_what_replaces_it(module, name):
    with pytest.raises(ImportError) as info:
        exec(f"from {module} import {name}", {})
    message = str(info.value)
    assert f"{module}.{name} is not part of this Circus" in message
    assert len(message.split(": ", 1)[1]) > 10, message          # a replacement is named


def test_unknown_names_stay_ordinary_attribute_errors():
    import circus.util
    assert not hasattr(circus.util, "no_such_helper")
    with pytest.raises(ImportError, match="cannot import name 'no_such_helper'"):
        exec("from circus.util import no_such_helper", {})


def test_logger_is_the_circus_logger():
    from circus import logger
    assert logger is logging.getLogger("circus")


def test_importing_circus_and_circus_util_stays_light():
    code = ("import sys, circus, circus.util, circus.process, circus.stream, circus.commands; "
            "from circus import logger; "
            "print(sorted(m for m in ('tornado', 'psutil', 'jinja2', 'circus.core.arbiter') "
            "if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.mark.real
def test_commands_describe_every_0_19_command_the_0_19_way(circus019):
    from circus.commands import get_commands
    code = ("import json; from circus.commands import get_commands as g; c = g(); "
            "print(json.dumps({'names': sorted(c), 'status': c['status'].make_message(name='w'), "
            "'stop': c['stop'].make_message(name='w', waiting=True), "
            "'list': c['list'].make_message()}))")
    theirs = json.loads(_run019(circus019, code))
    ours = get_commands()
    # listen was a circusctl pseudo-command (0.19's circusd refused it): no server command
    assert set(theirs["names"]) - {"listen"} <= set(ours)
    assert ours["status"].make_message(name="w") == theirs["status"]
    assert ours["stop"].make_message(name="w", waiting=True) == theirs["stop"]
    assert ours["list"].make_message() == theirs["list"]


def _run019(peer: Path, code: str) -> str:
    r = subprocess.run([str(peer / "bin" / "python"), "-I", "-c", code], capture_output=True,
                       text=True, timeout=120, cwd="/")
    assert r.returncode == 0, r.stderr
    return r.stdout


SIGNATURES = {
    "circus.client:CircusClient": ["__init__", "call", "send_message", "stop"],
    "circus.client:AsyncCircusClient": ["__init__", "call", "send_message", "stop"],
    "circus.client:make_message": None, "circus.client:cast_message": None,
    "circus.client:make_json": None,
    "circus.consumer:CircusConsumer": ["__init__", "iter_messages", "stop"],
    "circus.stats.client:StatsClient": ["__init__", "iter_messages"],
    "circus:get_arbiter": None,
    "circus.arbiter:Arbiter": ["__init__", "start", "stop", "get_watcher", "iter_watchers",
                               "numwatchers", "numprocesses", "statuses", "get_socket"],
    "circus.sockets:CircusSocket": ["__init__"],
    "circus.watcher:Watcher": ["send_signal", "send_signal_child", "send_signal_children",
                               "get_active_pids", "status", "is_active", "is_stopped",
                               "is_stopping", "load_from_config"],
    "circus.process:Process": ["age", "is_alive", "children", "send_signal",
                               "send_signal_child", "send_signal_children", "returncode"],
    "circus.stream:get_stream": None,
    **{f"circus.stream:{c}": ["__init__", "__call__"] for c in (
        "FileStream", "WatchedFileStream", "TimedRotatingFileStream", "StdoutStream",
        "FancyStdoutStream", "QueueStream")},
    "circus.pidfile:Pidfile": ["__init__", "create", "validate", "unlink", "rename"],
    "circus.circusd:daemonize": None, "circus.circusd:get_maxfd": None,
    "circus.commands:get_commands": None,
    **{f"circus.util:{n}": None for n in (
        "human2bytes", "bytes2human", "to_bool", "to_str", "to_bytes", "to_signum",
        "configure_logger", "get_connection", "resolve_name", "check_future_exception_and_log",
        "tornado_sleep", "parse_env_str", "parse_env_dict", "get_working_dir", "to_uid",
        "to_gid")},
}

SIGNATURE_PROBE = """
import importlib, inspect, json, sys
out = {}
def sig(obj):
    return [(p.name, p.kind.name, repr(p.default) if p.default is not p.empty else None)
            for p in inspect.signature(obj).parameters.values()]
for key, members in json.loads(sys.argv[1]).items():
    mod, _, name = key.partition(":")
    obj = getattr(importlib.import_module(mod), name)
    for member in (members or [None]):
        out[key + ("." + member if member else "")] = sig(getattr(obj, member) if member else obj)
print(json.dumps(out))
"""


@pytest.mark.real
def test_signatures_are_0_19s(circus019):
    """Every 0.19 parameter is ours too, in the same place with the same default; ours may add
    optional ones at the end."""
    argv = [SIGNATURE_PROBE, json.dumps(SIGNATURES)]
    theirs = json.loads(_run019(circus019, SIGNATURE_PROBE.replace("sys.argv[1]", repr(argv[1]))))
    r = subprocess.run([sys.executable, "-c", SIGNATURE_PROBE, argv[1]], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    ours = json.loads(r.stdout)
    wrong = {key: (theirs[key], ours[key]) for key in theirs
             if [tuple(p) for p in ours[key][:len(theirs[key])]] != [tuple(p) for p in theirs[key]]
             or any(p[2] is None and p[1] not in ("VAR_KEYWORD", "VAR_POSITIONAL")
                    for p in ours[key][len(theirs[key]):])}
    assert wrong == {}


@pytest.mark.real
def test_watcher_takes_every_0_19_constructor_argument_at_its_default(circus019):
    code = ("import inspect, json; from circus.watcher import Watcher; "
            "ps = inspect.signature(Watcher.__init__).parameters.values(); "
            "print(json.dumps({p.name: p.default for p in ps if p.default is not p.empty "
            "and p.name != 'stop_signal'}))")
    defaults = json.loads(_run019(circus019, code))
    from circus.watcher import Watcher
    w = Watcher("w", "sleep 1", stop_signal=signal.SIGTERM, **defaults)
    assert (w.name, w.cmd, w.numprocesses, w.graceful_timeout) == ("w", "sleep 1", 1, 30.0)
    assert w.stop_signal == signal.SIGTERM and w.status() == "stopped" and w.processes == {}


HELPER_CASES = {
    "human2bytes": ["10K", "1.5M", "1G", "1k", "10 M", "1B", "3Y", "2Ki", "1 mega", "10", "10KB",
                    "M", "0"],
    "bytes2human": [0, 1, 1023, 1024, 10000, 100001221, 10 ** 15],
    "to_bool": ["yes", "Y", "1", "off", "True", "maybe", "ON", "0"],
    "to_signum": ["term", "SIGRTMIN+1", "9", "hup", "SIGKILL"],   # 'nope': see below
    "to_str": ["x"],
}
HELPER_PROBE = """
import json, sys
import circus.util as u
out = {}
for name, values in json.loads(sys.argv[1]).items():
    for value in values:
        try:
            out[f"{name}({value!r})"] = repr(getattr(u, name)(value))
        except Exception as exc:
            out[f"{name}({value!r})"] = type(exc).__name__
print(json.dumps(out))
"""


@pytest.mark.real
def test_helpers_give_0_19s_results(circus019):
    cases = json.dumps(HELPER_CASES)
    theirs = json.loads(_run019(circus019, HELPER_PROBE.replace("sys.argv[1]", repr(cases))))
    r = subprocess.run([sys.executable, "-c", HELPER_PROBE, cases], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == theirs


def test_an_unknown_signal_is_a_value_error():
    from circus.util import to_signum
    with pytest.raises(ValueError, match="nope"):       # 0.19 raised an AttributeError
        to_signum("nope")


def test_configure_logger_routes_the_circus_logger(tmp_path):
    out = tmp_path / "log.txt"
    code = ("from circus import logger; from circus.util import configure_logger; "
            f"configure_logger(logger, 'DEBUG', {str(out)!r}); logger.debug('hello %s', 1)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "circus[" in out.read_text() and "[DEBUG] hello 1" in out.read_text()


def test_configure_logger_applies_a_logger_config_file(tmp_path):
    out = tmp_path / "log.txt"
    config = tmp_path / "logging.json"
    config.write_text(json.dumps({
        "version": 1, "formatters": {"f": {"format": "CUSTOM %(levelname)s %(message)s"}},
        "handlers": {"h": {"class": "logging.FileHandler", "filename": str(out), "formatter": "f"}},
        "loggers": {"circus": {"handlers": ["h"], "level": "INFO"}}}))
    code = ("from circus import logger; from circus.util import configure_logger; "
            f"configure_logger(logger, 'DEBUG', '-', {str(config)!r}); logger.info('hi')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert out.read_text().strip() == "CUSTOM INFO hi"


def test_resolve_name_and_its_error():
    from circus.util import ImportStringError, resolve_name
    assert resolve_name("os.path:join") is os.path.join
    assert resolve_name("os.path.join") is os.path.join
    assert resolve_name("os.path") is os.path
    assert resolve_name("no_such_module.x", silent=True) is None
    with pytest.raises(ImportStringError, match="no_such_module"):
        resolve_name("no_such_module.x")


def test_check_future_exception_and_log():
    import concurrent.futures
    from circus.util import check_future_exception_and_log
    ok = concurrent.futures.Future()
    ok.set_result(False)
    bad = concurrent.futures.Future()
    bad.set_exception(RuntimeError("boom"))
    assert check_future_exception_and_log(ok) is None
    assert isinstance(check_future_exception_and_log(bad), RuntimeError)


def test_async_periodic_callback_takes_0_19s_io_loop_argument():
    import asyncio
    from circus.util import AsyncPeriodicCallback, tornado_sleep

    calls = []

    async def main():
        loop = asyncio.get_running_loop()
        pc = AsyncPeriodicCallback(lambda: calls.append(1), 10, loop)
        pc.start()
        await tornado_sleep(0.1)
        pc.stop()
    asyncio.run(main())
    assert len(calls) >= 3


def test_a_hook_process_cannot_be_made_by_hand():
    from circus.process import Process
    with pytest.raises(TypeError, match="watcher.processes"):
        Process("w", 1, "sleep 1")


def test_stats_client_yields_watcher_subtopic_and_stat(tmp_path):
    import threading
    import time

    import zmq
    from circus.stats.client import StatsClient

    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.bind(f"ipc://{tmp_path}/stats.sock")
    client = StatsClient(endpoint=f"ipc://{tmp_path}/stats.sock", context=ctx)
    got: list = []
    stop = threading.Event()

    def publish():                      # until the subscriber has joined and seen both forms
        while not stop.is_set():
            pub.send_multipart([b"stat.web.4242", json.dumps({"cpu": 1.5}).encode()])
            pub.send_multipart([b"stat.web", json.dumps({"pid": [4242]}).encode()])
            pub.send_multipart([b"node1/stat.web", b"{}"])         # not a 0.19 topic
            time.sleep(0.02)
    sender = threading.Thread(target=publish)
    sender.start()
    try:
        deadline = time.monotonic() + 10
        for item in client.iter_messages():
            got.append(item)
            if {i[1] for i in got} >= {"4242", None} or time.monotonic() > deadline:
                break
    finally:
        stop.set()
        sender.join()
        client.stop()
        pub.close()
        ctx.term()
    assert ("web", "4242", {"cpu": 1.5}) in got and ("web", None, {"pid": [4242]}) in got
