"""Tier 2: real circusd processes on Circus 0.19 files: --no-strict boots what 0.19 booted and logs
each warning with its place, strict refuses with the hint, reloads are read the same way,
loggerconfig is applied, copy_path passes a configured PYTHONPATH, check_delay = -1 boots, and a
value that would break a spawn never leaves a watcher starting."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
import zmq

from conftest import IPC_HEAD, ROOT, Raw, proc_cmdline

pytestmark = pytest.mark.real

LENIENT_BODY = """
host = 0.0.0.0

[watcher:runs]
cmd = sh -c 'echo "$0" > {dir}/arg0; exec sleep 3680'
user = nobody-at-all
RUBY_GC_MALLOC_LIMIT = 90000000
args = $(circus.sockets.nothere)

[watcher:nocmd]
numprocesses = 2

[watcher:badhook]
cmd = sleep 3681
hooks.before_start = no_such_module_anywhere.hook

[watcher:also]
cmd = sleep 3682
stdout_stream.class = StdoutStream
stdout_stream.refresh_time = 0.3
"""


#: (needle on the line, section, key) of each lenient issue of LENIENT_BODY
LENIENT_ISSUES = [("host = ", "circus", "host"), ("user = ", "watcher:runs", "user"),
                  ("RUBY_GC", "watcher:runs", "RUBY_GC_MALLOC_LIMIT"),
                  ("args = ", "watcher:runs", "args"), ("[watcher:nocmd]", "watcher:nocmd", "cmd"),
                  ("hooks.before_start", "watcher:badhook", "hooks.before_start")]


def lenient_text(tmp_path: Path, head: str = "") -> str:
    return IPC_HEAD.format(dir=tmp_path) + head + textwrap.dedent(LENIENT_BODY).format(dir=tmp_path)


def line_of(path: Path, needle: str) -> int:
    return next(n for n, text in enumerate(path.read_text().splitlines(), 1) if needle in text)


def environ_of(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as fh:
        items = [item.decode() for item in fh.read().split(b"\0") if item]
    return dict(item.partition("=")[::2] for item in items)


def client(tmp_path: Path) -> tuple[zmq.Context, Raw]:
    ctx = zmq.Context()
    return ctx, Raw(ctx, f"ipc://{tmp_path}/control.sock")


def test_strict_refuses_and_says_no_strict_exists(tmp_path):
    ini = tmp_path / "circus.ini"
    ini.write_text(lenient_text(tmp_path))
    r = subprocess.run([sys.executable, "-m", "circus.cli.circusd", str(ini)],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert lines[0] == "circusd: invalid configuration"
    places = [line.split(" ", 3)[:3] for line in lines[1:] if line.startswith(str(ini))]
    assert places == [[f"{ini}:{line_of(ini, needle)}:", f"[{section}]", f"{key}:"]
                      for needle, section, key in LENIENT_ISSUES]
    assert "did you mean 'uid'?" in r.stderr and "[env:runs] section" in r.stderr
    assert "'circusd --no-strict', or [circus] strict = false" in lines[-1]
    assert not (tmp_path / "control.sock").exists()


def test_no_strict_boots_the_rest_and_logs_each_warning_with_its_place(circusd, tmp_path):
    d = circusd(lenient_text(tmp_path), "--no-strict")
    d.wait(lambda: d.children("sleep 3680") and d.children("sleep 3682"), what="the two watchers")
    ctx, c = client(tmp_path)
    try:
        assert c.call("list")["watchers"] == ["also", "runs"]     # nocmd, badhook: dropped
        assert c.call("status", name="runs")["status"] == "active"
        pid = d.children("sleep 3680")[0]
        d.wait(lambda: (tmp_path / "arg0").exists(), what="the argument written")
        assert (tmp_path / "arg0").read_text() == "$(circus.sockets.nothere)\n"  # as written
        assert os.stat(f"/proc/{pid}").st_uid == os.getuid()      # user = ... was ignored
        assert "RUBY_GC_MALLOC_LIMIT" not in environ_of(pid)
        log = d.log_text()
        ini = d.config
        for needle, section, key in LENIENT_ISSUES:
            assert f"configuration: {ini}:{line_of(ini, needle)}: [{section}] {key}: " in log
        assert "this watcher is not loaded, as Circus 0.19 did" in log
        assert not d.children("sleep 3681")
    finally:
        c.close()
        ctx.term()
    assert d.stop() == 0


def test_strict_false_in_the_file_is_the_switch(circusd, tmp_path):
    d = circusd(lenient_text(tmp_path, "strict = false\n"))
    d.wait(lambda: d.children("sleep 3680"), what="the watcher")
    d.wait_log("configuration: ")
    assert d.stop() == 0


RELOADED = """
[watcher:first]
cmd = sleep 3683
numproceses = 2

[watcher:second]
cmd = sleep 3684
"""


@pytest.mark.parametrize("no_strict", [True, False])
def test_reloadconfig_reads_the_file_as_circusd_was_started(circusd, tmp_path, no_strict):
    head = IPC_HEAD.format(dir=tmp_path)
    d = circusd(head + "[watcher:first]\ncmd = sleep 3683\n", *(["--no-strict"] if no_strict else []))
    d.wait(lambda: d.children("sleep 3683"), what="first")
    ctx, c = client(tmp_path)
    try:
        d.write(head + RELOADED)
        r = c.call("reloadconfig", waiting=True, wait=20)
        if no_strict:
            assert r["status"] == "ok", r
            assert c.call("list")["watchers"] == ["first", "second"]
            line = line_of(d.config, "numproceses")
            d.wait_log(f"configuration: {d.config}:{line}: [watcher:first] numproceses: unknown")
        else:
            assert r["status"] == "error" and r["code"] == "config_error"
            assert "numproceses" in r["reason"] and "--no-strict" in r["reason"]
            assert c.call("list")["watchers"] == ["first"]
    finally:
        c.close()
        ctx.term()
    assert d.stop() == 0


def test_reloadconfig_refuses_a_hook_that_does_not_import(circusd, tmp_path):
    head = IPC_HEAD.format(dir=tmp_path)
    d = circusd(head + "[watcher:first]\ncmd = sleep 3685\n")
    d.wait(lambda: d.children("sleep 3685"), what="first")
    pid = d.children("sleep 3685")
    (tmp_path / "badhooks.py").write_text("import no_such_dependency\n")
    ctx, c = client(tmp_path)
    try:
        d.write(head + "[watcher:first]\ncmd = sleep 3685\nhooks.after_spawn = badhooks.f\n")
        r = c.call("reloadconfig", waiting=True, wait=20)
        assert r["status"] == "error" and r["code"] == "config_error"
        assert "hooks.after_spawn: hook 'badhooks.f': cannot import 'badhooks'" in r["reason"]
        assert "No module named 'no_such_dependency'" in r["reason"]
        assert c.call("status", name="first")["status"] == "active"
        assert d.children("sleep 3685") == pid                    # nothing was touched
    finally:
        c.close()
        ctx.term()
    assert d.stop() == 0


def test_a_hook_module_next_to_the_configuration_runs(circusd, tmp_path):
    """circusd's working directory is on its sys.path (python -m): the check sees what it sees."""
    (tmp_path / "goodhooks.py").write_text(
        f"def mark(watcher, arbiter, hook_name, **kw):\n"
        f"    open({str(tmp_path / 'ran')!r}, 'w').write(hook_name)\n    return True\n")
    d = circusd(IPC_HEAD.format(dir=tmp_path) + "[watcher:w]\ncmd = sleep 3686\n"
                "hooks.after_start = goodhooks.mark\n")
    d.wait(lambda: (tmp_path / "ran").exists(), what="the hook")
    assert (tmp_path / "ran").read_text() == "after_start"
    assert d.stop() == 0


# -- loggerconfig ---------------------------------------------------------------------------------


def _json_logging(path: Path, log: Path) -> None:
    path.write_text(json.dumps({
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"f": {"format": "JSONCONF %(levelname)s %(name)s %(message)s"}},
        "handlers": {"h": {"class": "logging.FileHandler", "filename": str(log),
                           "formatter": "f"}},
        "root": {"level": "INFO", "handlers": ["h"]}}))


def test_loggerconfig_json_is_applied_instead_of_loglevel_and_logoutput(circusd, tmp_path):
    log = tmp_path / "via-loggerconfig.log"
    _json_logging(tmp_path / "logging.json", log)
    d = circusd(IPC_HEAD.format(dir=tmp_path) + f"loggerconfig = {tmp_path / 'logging.json'}\n"
                "[watcher:w]\ncmd = sleep 3687\n", start=False)
    d.proc = subprocess.Popen([sys.executable, "-m", "circus.cli.circusd", str(d.config)],
                              cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    d.wait(lambda: log.exists() and "JSONCONF INFO circus circusd" in log.read_text(),
           what="circusd's start in the configured log")
    d.wait(lambda: d.children("sleep 3687"), what="the watcher")
    assert d.stop() == 0
    assert "JSONCONF INFO circus circusd stopped" in log.read_text()
    assert b"circusd" not in d.proc.stdout.read()              # not the default handler


def test_loggerconfig_ini_and_the_command_line_wins(circusd, tmp_path):
    ini_log, json_log = tmp_path / "ini.log", tmp_path / "json.log"
    (tmp_path / "logging.ini").write_text(textwrap.dedent(f"""
        [loggers]
        keys = root, circus
        [handlers]
        keys = file
        [formatters]
        keys = plain
        [logger_root]
        level = DEBUG
        handlers = file
        [logger_circus]
        qualname = circus
        handlers =
        [handler_file]
        class = FileHandler
        args = ({str(ini_log)!r},)
        formatter = plain
        [formatter_plain]
        format = INICONF %(name)s %(message)s
    """))
    _json_logging(tmp_path / "logging.json", json_log)
    d = circusd(IPC_HEAD.format(dir=tmp_path) + f"loggerconfig = {tmp_path / 'logging.json'}\n"
                "[watcher:w]\ncmd = sleep 3688\n", start=False)
    d.proc = subprocess.Popen([sys.executable, "-m", "circus.cli.circusd", "--logger-config",
                               str(tmp_path / "logging.ini"), str(d.config)], cwd=tmp_path,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    d.wait(lambda: ini_log.exists() and "INICONF circus circusd" in ini_log.read_text(),
           what="the --logger-config file's handler")
    d.wait(lambda: d.children("sleep 3688"), what="the watcher")
    assert d.stop() == 0
    assert not json_log.exists()


def test_a_bad_logger_config_on_the_command_line_stops_circusd(tmp_path):
    ini = tmp_path / "circus.ini"
    ini.write_text(IPC_HEAD.format(dir=tmp_path))
    (tmp_path / "bad.json").write_text('{"version": 1, "handlers": {"h": {"class": "nope.Nope"}}}')
    for extra in (["--check-config", "--logger-config", str(tmp_path / "none.json")],
                  ["--logger-config", str(tmp_path / "bad.json")]):
        r = subprocess.run([sys.executable, "-m", "circus.cli.circusd", *extra, str(ini)],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert r.returncode == 2, r
        assert "logger" in r.stderr and ("none.json" in r.stderr or "bad.json" in r.stderr)
    assert not (tmp_path / "control.sock").exists()


@pytest.fixture(scope="session")
def pyyaml() -> Path:
    """PyYAML installed (once, in .cache/) into a directory of its own: a YAML loggerconfig
    needs it, as in 0.19."""
    target = ROOT / ".cache" / "pyyaml"
    if not (target / "yaml" / "__init__.py").exists():
        r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target",
                            str(target), "PyYAML"], capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"cannot install PyYAML:\n{r.stdout}\n{r.stderr}"
    return target


def test_loggerconfig_yaml_with_pyyaml(circusd, tmp_path, pyyaml, monkeypatch):
    log = tmp_path / "yaml.log"
    (tmp_path / "logging.yaml").write_text(textwrap.dedent(f"""
        version: 1
        disable_existing_loggers: false
        formatters: {{f: {{format: "YAMLCONF %(message)s"}}}}
        handlers: {{h: {{class: logging.FileHandler, filename: "{log}", formatter: f}}}}
        root: {{level: INFO, handlers: [h]}}
    """))
    monkeypatch.setenv("PYTHONPATH", str(pyyaml))
    d = circusd(IPC_HEAD.format(dir=tmp_path) + f"loggerconfig = {tmp_path / 'logging.yaml'}\n"
                "[watcher:w]\ncmd = sleep 3689\n", start=False)
    d.proc = subprocess.Popen([sys.executable, "-m", "circus.cli.circusd", str(d.config)],
                              cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    d.wait(lambda: log.exists() and "YAMLCONF circusd" in log.read_text(), what="the YAML log")
    d.wait(lambda: d.children("sleep 3689"), what="the watcher")
    assert d.stop() == 0


# -- copy_path, check_delay = -1 ------------------------------------------------------------------


def test_copy_path_passes_a_configured_pythonpath_as_0_19(circusd, tmp_path):
    d = circusd(IPC_HEAD.format(dir=tmp_path) + textwrap.dedent("""
        [watcher:configured]
        cmd = sleep 3690
        copy_env = true
        copy_path = true
        [env:configured]
        PYTHONPATH = /opt/app/lib
        [watcher:plain]
        cmd = sleep 3691
        copy_env = true
        copy_path = true
    """))
    d.wait(lambda: d.children("sleep 3690") and d.children("sleep 3691"), what="both")
    assert environ_of(d.children("sleep 3690")[0])["PYTHONPATH"] == "/opt/app/lib"
    plain = environ_of(d.children("sleep 3691")[0])["PYTHONPATH"].split(os.pathsep)
    site_packages = sysconfig.get_paths()["purelib"]             # circusd's own sys.path
    assert site_packages in plain and "/opt/app/lib" not in plain
    assert d.stop() == 0


def test_check_delay_minus_one_boots_with_its_plugin(circusd, tmp_path):
    d = circusd(IPC_HEAD.format(dir=tmp_path) + textwrap.dedent("""
        check_delay = -1
        [watcher:test1]
        cmd = sleep 3692
        [plugin:myplugin]
        use = circus.plugins.resource_watcher.ResourceWatcher
        watcher = test1
    """))
    d.wait(lambda: d.children("sleep 3692"), what="test1")
    ctx, c = client(tmp_path)
    try:
        assert c.call("globaloptions")["options"]["check_delay"] == -1.0
        d.wait(lambda: c.call("status", name="plugin:myplugin")["status"] == "active",
               what="the plugin")
        plugin = [p for p in d.children() if "circus.cli.plugin" in " ".join(proc_cmdline(p))]
        assert plugin and "-1.0" in proc_cmdline(plugin[0])
    finally:
        c.close()
        ctx.term()
    assert d.stop() == 0


# -- nothing that would break a spawn gets in ------------------------------------------------------


def test_a_nul_byte_in_add_is_refused_and_no_watcher_hangs_in_starting(control_node):
    d, c = control_node("[watcher:w]\ncmd = sleep 3693\n")
    d.wait(lambda: d.children("sleep 3693"), what="w")
    for props in ({"cmd": "sleep\u00003694"}, {"cmd": "sleep 3694", "options": {"env": {"A": "\u0000"}}}):
        r = c.call("add", name="nul", start=True, **props)
        assert r["status"] == "error" and "NUL byte" in r["reason"], r
    assert c.call("list")["watchers"] == ["w"]
    assert d.stop() == 0


def test_the_os_seam_turns_a_nul_byte_into_a_spawn_error():
    from circus.core.spawner import RealOS, SpawnSpec
    from circus.errors import SpawnError
    for spec in (SpawnSpec(argv=("sleep", "1\x00"), env={}),
                 SpawnSpec(argv=("sleep", "1"), env={"A": "\x00"}),
                 SpawnSpec(argv=("sleep", "1"), env={}, cwd="/tmp\x00")):
        with pytest.raises(SpawnError, match="null byte"):
            RealOS().spawn(spec)
