"""The rest of circus.config's public API: protocol options, spawn substitution, summary, docs."""

from __future__ import annotations

import dataclasses
import signal

import pytest

import circus.config
from circus.config import (
    CircusOptions,
    ConfigError,
    PluginConfig,
    SocketConfig,
    WatcherConfig,
    option_reference,
    parse_config_text,
    substitute_spawn,
    summarize,
    watcher_from_options,
)


def test_public_api_is_pinned():
    assert sorted(circus.config.__all__) == [
        "CircusOptions", "Config", "ConfigError", "ConfigIssue", "NotifyConfig", "PluginConfig",
        "ReloadPlan", "SocketConfig", "Step", "ToolConfig", "WatcherConfig", "changed_fields",
        "diff", "load_config",
        "option_reference", "parse_config_text", "substitute_spawn", "summarize",
        "watcher_from_options",
    ]


# -- watcher_from_options (protocol add/set) -------------------------------------------------


def test_options_typed_like_the_ini_file():
    w = watcher_from_options(
        "web", "run", ["--port", "80"],
        {
            "numprocesses": 2, "warmup_delay": 1, "graceful_timeout": 2.5, "send_hup": True,
            "stop_signal": "int", "uid": 1000, "env": {"A": "$HOME/x", "B": "${HOME}"},
            "rlimit_nofile": 10, "rlimits": {"core": None}, "hooks.before_start": "a.b, true",
            "hooks": {"after_spawn": ["a.c", False]}, "stdout_stream": {"class": "FileStream", "max_bytes": 5},
            "stderr_stream.filename": "/e", "flapping.max_retry": 3, "flapping.active": True,
        },
        {"HOME": "/h"},
    )
    assert w.args == ("--port", "80") and w.numprocesses == 2 and w.warmup_delay == 1.0
    assert w.stop_signal == signal.SIGINT and w.uid == 1000 and w.send_hup
    assert w.env == {"A": "/h/x", "B": "/h"}
    assert w.rlimits == {"nofile": 10, "core": None}
    assert w.hooks == {"before_start": ("a.b", True), "after_spawn": ("a.c", False)}
    assert w.stdout_stream == {"class": "FileStream", "max_bytes": "5"}
    assert w.stderr_stream == {"class": "FileStream", "filename": "/e"}
    assert w.options == {"flapping.max_retry": "3", "flapping.active": "true"}


def test_options_defaults_match_the_schema():
    w = watcher_from_options("a", "run", None, {}, {})
    assert w == WatcherConfig(name="a", cmd="run")


@pytest.mark.parametrize(
    ("options", "key", "reason"),
    [
        ({"numprocesses": "2"}, "numprocesses", "expected a JSON integer"),
        ({"numprocesses": True}, "numprocesses", "got a boolean"),
        ({"numprocesses": 1.0}, "numprocesses", "expected a JSON integer"),
        ({"send_hup": 1}, "send_hup", "expected a JSON boolean"),
        ({"send_hup": "true"}, "send_hup", "expected a JSON boolean"),
        ({"graceful_timeout": "3"}, "graceful_timeout", "expected a JSON number"),
        ({"env": {"A": 1}}, "env", "object of strings"),
        ({"env": ["A=1"]}, "env", "object of strings"),
        ({"stop_signal": "NOPE"}, "stop_signal", "unknown signal"),
        ({"stop_signal": None}, "stop_signal", "signal name or number"),
        ({"stdout_stream": "FileStream"}, "stdout_stream", "expected a stream object"),
        ({"stdout_stream": {"max_bytes": 1}}, "stdout_stream", "needs 'class'"),
        ({"rlimit_nofile": "10"}, "rlimit_nofile", "expected a JSON integer"),
        ({"hooks": {"before_start": 3}}, "hooks", "expected 'dotted.name"),
        ({"flapping.max_retry": [1]}, "flapping.max_retry", "expected a JSON string, number or boolean"),
        ({"numproceses": 1}, "numproceses", "did you mean 'numprocesses'?"),
        ({"singleton": True, "numprocesses": 3}, "numprocesses", "singleton"),
        ({"args": ["a", 1]}, "args", "expected a JSON string or list of strings"),
    ],
)
def test_options_type_strictness_names_the_key(options, key, reason):
    with pytest.raises(ConfigError) as info:
        watcher_from_options("web", "run", None, options, {})
    issue, = info.value.issues
    assert (issue.file, issue.line, issue.section, issue.key) == ("<protocol>", None, "watcher:web", key)
    assert reason in issue.reason


def test_options_report_every_bad_key_and_bad_cmd():
    with pytest.raises(ConfigError) as info:
        watcher_from_options("web", 5, None, {"numprocesses": "x", "priority": "y"}, {})  # type: ignore[arg-type]
    assert [i.key for i in info.value.issues] == ["cmd", "numprocesses", "priority"]


# -- substitute_spawn --------------------------------------------------------------------------


def test_substitute_spawn_flat_nested_case_insensitive_and_unknown_verbatim():
    values = {"WID": 3, "sockets": {"Web": 7}, "env.FOO": "bar", "numprocesses": 2,
              "working_dir": None, "shell": False}
    text = ("$(circus.wid) ((circus.WID)) $(CIRCUS.sockets.web) $(circus.env.foo) "
            "$(circus.numprocesses) [$(circus.working_dir)] $(circus.shell) $(circus.nope) "
            "$(circus.sockets.nope) $(circus.wid")
    assert substitute_spawn(text, values) == (
        "3 3 7 bar 2 [] False $(circus.nope) $(circus.sockets.nope) $(circus.wid")


def test_substitute_spawn_with_a_watcher_as_values():
    cfg = parse_config_text("[watcher:w]\ncmd = run -n $(circus.numprocesses) --wid ((circus.wid))\n"
                            "numprocesses = 4\n", "m.ini", {})
    w = cfg.watchers[0]
    values = {**dataclasses.asdict(w), "wid": 2}
    assert substitute_spawn(w.cmd, values) == "run -n 4 --wid 2"


# -- summary and reference ---------------------------------------------------------------------


def test_summarize_lists_endpoints_watchers_sockets_plugins():
    cfg = parse_config_text(
        "[circus]\nname = n1\nstatsd = true\n[watcher:web]\ncmd = serve\nargs = -v\nnumprocesses = 3\n"
        "use_sockets = true\n[socket:web]\nport = 80\n[plugin:fl]\nuse = a.Flapping\n",
        "m.ini", {},
    )
    text = summarize(cfg)
    assert "node: n1" in text
    assert "control tcp://127.0.0.1:5555" in text and "stats tcp://127.0.0.1:5557" in text
    assert "web: serve -v  [numprocesses=3" in text and "sockets=all" in text
    assert "web: AF_INET SOCK_STREAM localhost:80" in text
    assert "fl: a.Flapping" in text


def test_option_reference_is_generated_from_the_schema():
    rows = option_reference()
    table = {(kind, key): (type_, default, doc) for kind, key, type_, default, doc in rows}
    assert table[("circus", "check_delay")][:2] == ("float", "5.0")
    assert table[("watcher", "numprocesses")][:2] == ("int", "1")
    assert table[("watcher", "stop_signal")][1] == "SIGTERM"
    assert table[("watcher", "restart_policy")][1] == "always if respawn else never"
    assert table[("watcher", "rlimit_<name>")][0] == "rlimits"
    assert table[("watcher", "cmd")][1] == "required"
    assert table[("socket", "umask")][1] == "8"
    assert table[("plugin", "use")][1] == "required"
    assert all(doc for *_, doc in rows)
    documented = {key for kind, key in table if kind == "watcher"}
    assert {f.name for f in dataclasses.fields(WatcherConfig)} - documented == {
        "name", "env", "rlimits", "hooks", "stdout_stream", "stderr_stream", "options"}
    assert {"[env], [env:PATTERNS]", "hooks.<hook>", "stdout_stream.<option>",
            "stderr_stream.<option>", "<plugin>.<option>"} <= documented
    for cls, kind in ((CircusOptions, "circus"), (SocketConfig, "socket"), (PluginConfig, "plugin")):
        names = {f.name for f in dataclasses.fields(cls) if f.metadata["kind"] == "plain"}
        assert names <= {key for k, key in table if k == kind}


def test_config_error_is_part_of_the_circus_hierarchy():
    from circus.errors import CircusError

    assert issubclass(ConfigError, CircusError)
