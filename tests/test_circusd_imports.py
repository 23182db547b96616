"""What a running circusd imports (modules, not timings): each module is memory circusd holds
for as long as it runs, so a feature's modules are loaded only by a configuration (or a request)
that uses the feature.

Each case starts a real circusd under ``PYTHONPROFILEIMPORTTIME=1`` with its stderr in a file,
waits until its watcher is active (and for what the case needs), stops it and reads the modules
from the file: those imported at run time (a request's, a reload's) are listed too. Only what
is imported after the interpreter's ``site`` counts: an editable install's ``.pth`` finder
imports ``pathlib``, ``urllib.parse`` and ``ipaddress`` there, in every interpreter of the
virtualenv, before circusd exists.

A listed name is an import that was *attempted*: ``import time`` lines are printed for failed
imports too, and circusd imports asyncio with ``ssl`` hidden (:mod:`circus.asynctls`), which
prints an ``ssl`` line. So TLS is checked by ``_ssl``, the extension that really loading ``ssl``
imports (and hashlib by ``_hashlib``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from circus.client.errors import CallError
from circus.client.sync import CircusClient

pytestmark = pytest.mark.real

#: never loaded by a circusd whose configuration does not use them
HEAVY = ("_ssl", "_hashlib", "smtplib", "email", "logging.config", "logging.handlers",
         "configparser", "socketserver", "tornado", "jinja2", "psutil", "re2", "glob",
         "urllib", "ipaddress", "circus.web", "circus.stats",
         "circus.notify.senders", "circus.notify.rules", "circus.notify.channel",
         "circus.notify.spec", "circus.probes", "circus.hooks", "circus.compat",
         "circus.security.keys", "circus.security.keyring", "circus.security.zap",
         "circus.config.diff", "circus.config.httpd_watcher", "circus.config.plugin_watchers",
         "circus.streams.registry", "circus.streams.files", "circus.streams.timed",
         "circus.cli.logfile", "circus.cli.pidfile", "circus.core.discovery",
         "circus.core.persist", "circus.core.tools")

HEAD = """\
[circus]
endpoint = ipc://{dir}/c.sock
pubsub_endpoint = ipc://{dir}/p.sock
multicast_endpoint =
"""

PLAIN = HEAD + """
[watcher:sl]
cmd = sleep 3691
numprocesses = 2
"""


def loaded(names: list[str], wanted: tuple[str, ...]) -> list[str]:
    return sorted({n for n in names if any(n == w or n.startswith(w + ".") for w in wanted)})


def imports(profile: Path) -> list[str]:
    """The modules of ``import time`` lines after ``site``'s own, in order."""
    names = [line.rpartition("|")[2].strip() for line in profile.read_text().splitlines()
             if line.startswith("import time:") and line.count("|") == 2]
    names = [n for n in names if n != "imported package"]          # the header line
    assert "circus.core.arbiter" in names, profile.read_text()[-2000:]
    return names[names.index("site") + 1:] if "site" in names else names


def status(d, name: str) -> str | None:
    client = CircusClient(endpoint=f"ipc://{d.dir}/c.sock", timeout=1.0)
    try:
        reply = client.send_message("status", name=name)
    except CallError:
        return None                     # not listening yet: d.wait fails fast if circusd died
    finally:
        client.stop()
    return reply.get("status") if reply else None


def profiled(circusd, text: str, env_flag: bool = True):
    """A circusd on ``text`` whose imports go to ``imports.txt``: with ``PYTHONPROFILEIMPORTTIME``
    (inherited by the Python children), or ``-X importtime`` (circusd's own only). It logs to
    its stdout, as by default (a log file is a feature: ``logging.handlers``), which is the
    fixture's log file."""
    d = circusd(text, start=False)
    profile = d.dir / "imports.txt"
    env = dict(os.environ)
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    argv = [sys.executable, "-m", "circus.cli.circusd", "--log-level", "debug", str(d.config)]
    if env_flag:
        env["PYTHONPROFILEIMPORTTIME"] = "1"
    else:
        argv[1:1] = ["-X", "importtime"]
    with open(profile, "wb") as err, open(d.log, "wb") as out:
        d.proc = subprocess.Popen(argv, cwd=d.dir, env=env, stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=err)
    return d, profile


def test_a_plain_configuration_loads_no_feature_it_does_not_use(circusd, tmp_path):
    d, profile = profiled(circusd, PLAIN.format(dir=tmp_path))
    d.wait(lambda: status(d, "sl") == "active", 20, "watcher sl active")
    d.wait(lambda: len(d.children("sleep 3691")) == 2, 10, "its two processes")
    assert d.stop() == 0
    names = imports(profile)
    assert loaded(names, HEAVY) == []
    # circusd's own modules are there, run-time ones included (status: the read-only handlers)
    assert {"circus.core.arbiter", "circus.core.controller", "circus.core.queries"} <= set(names)


#: the dataclasses a plain circusd may create: the schema (its field metadata is the schema),
#: the process slot (slots), a command (__post_init__) and a bound socket (identity equality);
#: any other record on circusd's start-up path is a circus.records.record (docs/development.rst)
DATACLASSES = {"circus.config.schema." + name for name in (
    "CircusOptions", "WatcherConfig", "SocketConfig", "NotifyConfig", "PluginConfig",
    "ToolConfig", "Config")} | {"circus.core.process.Process", "circus.protocol.commands.Command",
                                "circus.core.sockets.BoundSocket"}

DEFINED = """
import importlib, json, sys
made = []
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    made += [f"{name}.{k}" for k, v in vars(module).items() if isinstance(v, type)
             and v.__module__ == name and "__dataclass_fields__" in v.__dict__]
print(json.dumps(sorted(made)))
"""


def test_a_plain_circusd_creates_no_dataclass_but_the_schemas(circusd, tmp_path):
    d, profile = profiled(circusd, PLAIN.format(dir=tmp_path))
    d.wait(lambda: len(d.children("sleep 3691")) == 2, 20, "its two processes")
    assert d.stop() == 0
    ours = sorted({n for n in imports(profile) if n.split(".")[0] == "circus"})
    proc = subprocess.run([sys.executable, "-c", DEFINED, *ours], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    made = set(json.loads(proc.stdout))
    assert "circus.config.schema.WatcherConfig" in made      # the check sees dataclasses
    assert made - DATACLASSES == set()


def test_circusd_stats_does_not_make_circusd_load_psutil(circusd, tmp_path):
    """circusd-stats learns circusd's pid with ``nodeinfo``: ``dstats`` would make circusd
    sample itself with psutil. ``-X importtime``: circusd-stats must not write its own
    imports (psutil among them) into circusd's stderr."""
    d, profile = profiled(circusd, HEAD.format(dir=tmp_path) +
                          f"stats_endpoint = ipc://{tmp_path}/s.sock\nstatsd = true\n"
                          "stats_interval = 0.2\n" + PLAIN[len(HEAD):], env_flag=False)
    d.wait(lambda: status(d, "sl") == "active", 20, "watcher sl active")
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.linger = 0
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"ipc://{tmp_path}/s.sock")
    try:
        deadline = time.monotonic() + 20
        own = None
        while own is None:
            assert time.monotonic() < deadline, "no stats of circusd itself"
            if sub.poll(200):
                topic, body = sub.recv_multipart()[:2]
                if topic.decode().endswith(f"stat.circus.{d.pid}"):
                    own = json.loads(body)
            assert d.proc.poll() is None, f"circusd exited ({d.proc.returncode})"
    finally:
        sub.close()
        ctx.term()
    assert own["name"] == "circusd"
    assert d.stop() == 0
    assert loaded(imports(profile), ("psutil", "circus.stats")) == []


LOGGING_INI = """\
[loggers]
keys = root, circus

[handlers]
keys = file

[formatters]
keys = plain

[logger_root]
level = INFO
handlers = file

[logger_circus]
level = INFO
handlers = file
qualname = circus
propagate = 0

[handler_file]
class = FileHandler
args = ({log!r},)
formatter = plain

[formatter_plain]
format = INICONF %(levelname)s %(message)s
"""


def test_a_configuration_that_uses_the_features_gets_them(circusd, tmp_path):
    """A logger configuration file, a ``log:`` probe, a file stream, a hook and a notification:
    each is applied, and its modules are the ones the plain configuration does not load."""
    log = tmp_path / "via-ini.log"
    (tmp_path / "logging.ini").write_text(LOGGING_INI.format(log=str(log)))
    out, hooked, notified = tmp_path / "web.out", tmp_path / "hooked", tmp_path / "notified"
    script = "import sys, time; print('listening', flush=True); time.sleep(3600)"
    record = f"{sys.executable} -c \"import sys; open(sys.argv[1], 'a').write(sys.stdin.read())\""
    text = HEAD.format(dir=tmp_path) + f"""loggerconfig = {tmp_path / 'logging.ini'}

[watcher:web]
cmd = {sys.executable} -c "{script}"
ready = log:listening
stdout_stream.class = FileStream
stdout_stream.filename = {out}
hooks.after_start = exec:{sys.executable} -c "open('{hooked}', 'w').write('done')"

[watcher:crasher]
cmd = sh -c "exit 3"
max_retry = 1
backoff_initial = 0.05
backoff_max = 0.1

[notify:record]
destination = exec:{record} {notified}
watchers = crasher
events = fatal
throttle = 0
"""
    d, profile = profiled(circusd, text)
    d.wait(lambda: status(d, "web") == "active", 20, "watcher web active (its probe)")
    d.wait(lambda: out.exists() and "listening" in out.read_text(), 10, "the file stream")
    d.wait(lambda: hooked.exists(), 10, "the after_start hook")
    d.wait(lambda: notified.exists() and "crasher" in notified.read_text(), 20,
           "the notification of crasher's fatal state")
    d.wait(lambda: log.exists() and "INICONF INFO" in log.read_text(), 10,
           "circusd's lines in the logger configuration's file")
    assert d.stop() == 0
    names = imports(profile)
    assert loaded(names, ("logging.config", "configparser", "circus.probes.run",
                          "circus.streams.registry", "circus.hooks", "circus.compat.views",
                          "circus.notify.channel", "circus.notify.senders")) == sorted([
        "logging.config", "configparser", "circus.probes.run", "circus.streams.registry",
        "circus.hooks", "circus.compat.views", "circus.notify.channel",
        "circus.notify.senders"])
    # still not what none of these needs
    assert loaded(names, ("_ssl", "smtplib", "psutil", "circus.security.keyring",
                          "circus.config.diff")) == []
