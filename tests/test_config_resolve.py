"""Every dotted path of a configuration file is imported at check time, in a child process:
plugin classes, custom stream classes and Python hooks (circus/config/resolve.py)."""
from __future__ import annotations

import os
import textwrap
import time

import pytest

from circus.config import ConfigError, load_config
from circus.config import loader
from circus.config.errors import DROPPED
from circus.config.resolve import DottedRef, resolve_refs

PLUGIN = '''
import os
from circus.plugins import CircusPlugin
open(os.environ["MARK"] + ".import", "w").write(str(os.getpid()))

class Good(CircusPlugin):
    def __init__(self, *args, **kw):
        open(os.environ["MARK"] + ".init", "w").write("ran")
        super().__init__(*args, **kw)

    def handle_recv(self, data):
        pass

class NotAPlugin:
    pass

value = 42
'''


@pytest.fixture
def pylib(tmp_path, monkeypatch):
    """A directory on circusd's sys.path (here: the test's) for modules written by the test."""
    lib = tmp_path / "lib"
    lib.mkdir()
    monkeypatch.syspath_prepend(str(lib))

    def write(name: str, text: str) -> None:
        (lib / f"{name}.py").write_text(textwrap.dedent(text))
    return write


def check(tmp_path, text: str, strict: bool = True, environ=None):
    ini = tmp_path / "circus.ini"
    ini.write_text(textwrap.dedent(text))
    return load_config(str(ini), environ or {"MARK": str(tmp_path / "mark")}, strict=strict)


def refusal(tmp_path, text: str, strict: bool = True, environ=None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        check(tmp_path, text, strict, environ)
    return info.value


def test_a_plugin_class_is_imported_in_a_child_and_never_run(tmp_path, pylib):
    pylib("myplugins", PLUGIN)
    cfg = check(tmp_path, "[plugin:p]\nuse = myplugins.Good\n")
    assert [p.use for p in cfg.plugins] == ["myplugins.Good"]
    imported_by = int((tmp_path / "mark.import").read_text())
    assert imported_by != os.getpid()                      # not in circusd's process
    assert not (tmp_path / "mark.init").exists()           # the plugin itself never ran


@pytest.mark.parametrize("use,reason", [
    ("nosuchmodule.Plugin", "cannot import 'nosuchmodule': ModuleNotFoundError"),
    ("myplugins.Missing", "module 'myplugins' has no 'Missing'"),
    ("myplugins.NotAPlugin", "is not a subclass of circus.plugins.CircusPlugin"),
    ("myplugins:value", "is not a subclass of circus.plugins.CircusPlugin"),
    ("circus.plugins.no_such_observer.Observer", "No module named 'circus.plugins.no_such_"),
])
def test_a_plugin_that_does_not_resolve_is_an_error_in_both_modes(tmp_path, pylib, use, reason):
    pylib("myplugins", PLUGIN)
    for strict in (True, False):
        (issue,) = refusal(tmp_path, f"[watcher:w]\ncmd = w\n[plugin:p]\nuse = {use}\n",
                           strict).issues
        assert (issue.line, issue.section, issue.key, issue.lenient) == (4, "plugin:p", "use", None)
        assert reason in issue.reason and use in issue.reason


def test_every_builtin_plugin_resolves(tmp_path):
    names = ["flapping.Flapping", "statsd.StatsdEmitter", "statsd.FullStats",
             "resource_watcher.ResourceWatcher", "watchdog.WatchDog",
             "command_reloader.CommandReloader"]
    text = "".join(f"[plugin:p{i}]\nuse = circus.plugins.{n}\n" for i, n in enumerate(names))
    assert len(check(tmp_path, text + "[plugin:x]\nuse = circus.plugins.flapping:Flapping\n"
                     ).plugins) == 7


HOOKS = '''
import os, sys
print("a module may print at import")
os.environ["SET_BY_HOOK_MODULE"] = "1"

def ok(watcher, arbiter, hook_name, **kw):
    return True

class Holder:
    def method(self, **kw):
        return True
holder = Holder()
not_callable = 3
'''


def test_hooks_resolve_with_both_spellings(tmp_path, pylib):
    pylib("myhooks", HOOKS)
    cfg = check(tmp_path, "[watcher:w]\ncmd = w\nhooks.before_start = myhooks.ok\n"
                          "hooks.after_start = myhooks:holder.method, true\n")
    assert set(cfg.watchers[0].hooks) == {"before_start", "after_start"}
    assert "SET_BY_HOOK_MODULE" not in os.environ          # its side effects stayed in the child


@pytest.mark.parametrize("module,target,reason", [
    ("raising", "raising.hook", "cannot import 'raising': RuntimeError: broken at import"),
    ("exiting", "exiting.hook", "cannot import 'exiting': SystemExit: 3"),
    ("myhooks", "myhooks.not_callable", "'myhooks.not_callable' is not callable"),
    ("myhooks", "myhooks.nothing", "module 'myhooks' has no 'nothing'"),
    ("myhooks", "myhooks:holder.nothing", "module 'myhooks' has no 'holder.nothing'"),
])
def test_a_hook_that_fails_at_import_is_a_config_error_not_a_stopped_watcher(
        tmp_path, pylib, module, target, reason):
    pylib("myhooks", HOOKS)
    pylib("raising", "raise RuntimeError('broken at import')\n")
    pylib("exiting", "import sys\nsys.exit(3)\n")
    text = f"[watcher:w]\ncmd = w\nhooks.after_spawn = {target}\n[watcher:other]\ncmd = o\n"
    (issue,) = refusal(tmp_path, text).issues
    assert (issue.line, issue.key, issue.lenient) == (3, "hooks.after_spawn", DROPPED)
    assert reason in issue.reason
    cfg = check(tmp_path, text, strict=False)              # --no-strict: dropped, as 0.19 did
    assert [w.name for w in cfg.watchers] == ["other"]
    assert cfg.warnings[0].reason == issue.reason


def test_a_module_that_kills_its_process_at_import(tmp_path, pylib):
    pylib("killer", "import os\nos._exit(1)\n")
    (issue,) = refusal(tmp_path, "[watcher:w]\ncmd = w\nhooks.before_start = killer.f\n").issues
    assert "the importing process ended before answering" in issue.reason


def test_a_module_that_blocks_at_import_is_given_up_in_time(tmp_path, pylib):
    pylib("blocking", "import time\ntime.sleep(3600)\n")
    pylib("fine", "def f(**kw):\n    return True\n")
    refs = [DottedRef("hook", "fine.f", "x.ini", 1, "watcher:w", "hooks.before_start", "w"),
            DottedRef("hook", "blocking.f", "x.ini", 2, "watcher:w", "hooks.after_start", "w")]
    started = time.monotonic()
    reasons = resolve_refs(refs, environ={}, timeout=1.0)
    assert time.monotonic() - started < 5
    assert reasons[0] is None
    assert reasons[1] == "importing it did not finish within 1 s (a module that blocks at import?)"


def test_a_hook_is_resolved_where_the_hook_runner_imports_it(tmp_path):
    """circusd's sys.path, not the watcher's PYTHONPATH (0.19 added that one to circusd's path;
    our hook runner does not: the check says what the run would find)."""
    hookdir = tmp_path / "hookdir"
    hookdir.mkdir()
    (hookdir / "pphooks.py").write_text("def f(**kw):\n    return True\n")
    text = f"[watcher:w]\ncmd = w\nhooks.before_start = pphooks.f\n[env:w]\nPYTHONPATH = {hookdir}\n"
    (issue,) = refusal(tmp_path, text).issues
    assert issue.key == "hooks.before_start" and "No module named 'pphooks'" in issue.reason
    refs = [DottedRef("hook", "pphooks.f", "x.ini", 1, "watcher:w", "hooks.before_start", "w",
                      paths=(str(hookdir),))]
    assert resolve_refs(refs, environ={}) == [None]     # the mechanism, for when it searches it


def test_custom_stream_classes_resolve(tmp_path, pylib):
    pylib("mystreams", "class Journal:\n    def __init__(self, **kw):\n        pass\n"
                       "    def __call__(self, data):\n        pass\n")
    cfg = check(tmp_path, "[watcher:w]\ncmd = w\nstdout_stream.class = mystreams.Journal\n"
                          "stdout_stream.anything = 1\n")
    assert cfg.watchers[0].stdout_stream == {"class": "mystreams.Journal", "anything": "1"}
    (issue,) = refusal(tmp_path, "[watcher:w]\ncmd = w\nstderr_stream.class = mystreams.Nope\n"
                       ).issues
    assert (issue.key, issue.lenient) == ("stderr_stream.class", DROPPED)


def test_builtin_streams_and_command_hooks_import_nothing(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(loader, "resolve_refs", lambda refs, **kw: seen.extend(refs) or
                        [None] * len(refs))
    check(tmp_path, "[watcher:w]\ncmd = w\nstdout_stream.class = circus.stream.FileStream\n"
                    "stderr_stream.class = FancyStdoutStream\nhooks.after_stop = exec:true\n")
    assert seen == []


def test_check_config_reports_every_unresolved_path_at_once(tmp_path, pylib):
    pylib("myplugins", PLUGIN)
    error = refusal(tmp_path, "[watcher:a]\ncmd = a\nhooks.before_start = x1.f\n"
                              "stdout_stream.class = x2.S\n[plugin:p]\nuse = x3.P\n")
    assert [(i.line, i.key) for i in error.issues] == [(3, "hooks.before_start"),
                                                       (4, "stdout_stream.class"), (6, "use")]
