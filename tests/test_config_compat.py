"""Loading Circus 0.19 files: each class of what 0.19 accepted (valid 0.19: accepted; silently
ignored or dropped by 0.19: refused by default, a warning with ``strict=False``), and what must
not load in either mode (a NUL byte, a command that cannot be split, an exposed endpoint)."""
from __future__ import annotations

import pytest

from circus.config import ConfigError, load_config, parse_config_text, watcher_from_options
from circus.config.errors import DROPPED, IGNORED

INSECURE = "[circus]\ninsecure = true\n"


def load(text: str, strict: bool = True, environ=None, files=None):
    return parse_config_text(text, "main.ini", environ or {}, files, strict=strict)


def refused(text: str, strict: bool = True, **kw) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(text, strict=strict, **kw)
    return info.value


def issues(text: str, **kw) -> list[tuple]:
    return [(i.line, i.section, i.key, i.lenient) for i in refused(text, **kw).issues]


def watcher(cfg, name: str):
    return next(w for w in cfg.watchers if w.name == name)


def lenient_class(text: str, expected: list[tuple], **kw):
    """Refused by default with `expected` (all lenient, each saying --no-strict exists), loaded
    with strict=False with the same issues as warnings. Returns the lenient Config."""
    error = refused(text, **kw)
    assert [(i.line, i.section, i.key, i.lenient) for i in error.issues] == expected
    assert all("'circusd --no-strict'" in str(i) for i in error.issues)
    cfg = load(text, strict=False, **kw)
    assert [(i.line, i.section, i.key, i.lenient) for i in cfg.warnings] == expected
    assert all("as Circus 0.19 did" in i.as_warning() for i in cfg.warnings)
    return cfg


# -- valid 0.19: accepted as it is ------------------------------------------------------------


@pytest.mark.parametrize("cls", ["FileStream", "WatchedFileStream", "StdoutStream",
                                 "FancyStdoutStream", "QueueStream",
                                 "circus.stream.FileStream"])
def test_refresh_time_is_accepted_on_every_builtin_stream(cls):
    cfg = load(f"[watcher:w]\ncmd = w\nstdout_stream.class = {cls}\n"
               "stdout_stream.refresh_time = 0.3\nstderr_stream.class = StdoutStream\n"
               "stderr_stream.refresh_time = 1\n")
    w = cfg.watchers[0]
    assert w.stdout_stream["refresh_time"] == "0.3" and w.stderr_stream["refresh_time"] == "1.0"
    assert cfg.warnings == ()


def test_timed_rotating_stream_takes_0_19_options_and_refresh_time():
    cfg = load("[watcher:w]\ncmd = w\nstdout_stream.class = TimedRotatingFileStream\n"
               "stdout_stream.filename = /tmp/x.log\nstdout_stream.rotate_when = H\n"
               "stdout_stream.rotate_interval = 2\nstdout_stream.backup_count = 3\n"
               "stdout_stream.utc = True\nstdout_stream.time_format = %H\n"
               "stdout_stream.refresh_time = 0.3\n")
    assert cfg.watchers[0].stdout_stream["rotate_when"] == "H"


@pytest.mark.parametrize("value", ["-1", "0", "0.5", "5"])
def test_check_delay_takes_what_0_19_takes(value):
    assert load(f"[circus]\ncheck_delay = {value}\n").circus.check_delay == float(value)


def test_flapping_options_on_a_watcher_load_as_plugin_options():
    cfg = load("[watcher:w]\ncmd = w\nflapping.active = False\nflapping.max_retry = 2\n")
    assert cfg.watchers[0].options == {"flapping.active": "False", "flapping.max_retry": "2"}


def test_an_include_glob_that_matches_nothing_is_fine():
    assert load("[circus]\ninclude = conf.d/*.ini\n").warnings == ()


# -- what 0.19 silently ignored: refused by default, a warning with --no-strict ----------------


def test_unknown_keys_of_the_circus_section():
    cfg = lenient_class(INSECURE + "host = 0.0.0.0\nstatsd_host = 0.0.0.0\n[watcher:w]\ncmd = w\n",
                        [(3, "circus", "host", IGNORED), (4, "circus", "statsd_host", IGNORED)])
    assert [w.name for w in cfg.watchers] == ["w"]


def test_user_instead_of_uid_is_ignored_as_0_19_did_and_the_error_says_uid():
    text = "[watcher:w]\ncmd = w\nuser = www-data\ngroup = www-data\n"
    error = refused(text)
    assert "unknown option (did you mean 'uid'?)" in str(error.issues[0])
    assert "did you mean 'gid'?" in str(error.issues[1])
    cfg = lenient_class(text, [(3, "watcher:w", "user", IGNORED),
                               (4, "watcher:w", "group", IGNORED)])
    assert cfg.watchers[0].uid is None and cfg.watchers[0].options == {}


def test_an_environment_variable_in_a_watcher_section_points_to_env():
    text = "[watcher:web]\nRUBY_GC_MALLOC_LIMIT=90000000\ncmd = w\n"
    error = refused(text)
    assert "[env:web] section" in error.issues[0].reason
    cfg = lenient_class(text, [(2, "watcher:web", "RUBY_GC_MALLOC_LIMIT", IGNORED)])
    assert cfg.watchers[0].env == {}                      # 0.19 did not pass it either


def test_a_typo_gets_a_suggestion_and_is_ignored():
    text = "[watcher:w]\ncmd = w\nnumproceses = 4\n"
    assert "did you mean 'numprocesses'?" in refused(text).issues[0].reason
    cfg = lenient_class(text, [(3, "watcher:w", "numproceses", IGNORED)])
    assert cfg.watchers[0].numprocesses == 1               # what 0.19 ran


@pytest.mark.parametrize("key,meant", [("stdout_steam.class", "stdout_stream.class"),
                                       ("hook.before_start", "hooks.before_start"),
                                       ("stdin_stream.class", "stdout_stream.class"),
                                       ("stderr_streams.filename", "stderr_stream.filename")])
def test_typos_that_keep_a_dot_are_not_plugin_options(key, meant):
    text = f"[watcher:w]\ncmd = w\n{key} = x.y\n"
    assert f"did you mean '{meant}'?" in refused(text).issues[0].reason
    cfg = lenient_class(text, [(3, "watcher:w", key, IGNORED)])
    assert cfg.watchers[0].options == {} and cfg.watchers[0].stdout_stream is None


def test_an_unknown_hook_name_is_ignored_as_0_19_never_called_it():
    cfg = lenient_class("[watcher:w]\ncmd = w\nhooks.before_strat = m.f\n",
                        [(3, "watcher:w", "hooks.before_strat", IGNORED)])
    assert cfg.watchers[0].hooks == {}


def test_a_builtin_stream_option_the_class_does_not_use_is_ignored():
    text = ("[watcher:w]\ncmd = w\nstdout_stream.class = StdoutStream\n"
            "stdout_stream.time_format = %H\nstdout_stream.max_bytes = 10\n")
    cfg = lenient_class(text, [(4, "watcher:w", "stdout_stream.time_format", IGNORED),
                               (5, "watcher:w", "stdout_stream.max_bytes", IGNORED)])
    assert cfg.watchers[0].stdout_stream == {"class": "StdoutStream"}


def test_a_bad_colour_is_ignored_as_0_19_picked_one_at_random():
    cfg = lenient_class("[watcher:w]\ncmd = w\nstdout_stream.class = FancyStdoutStream\n"
                        "stdout_stream.color = pink\n",
                        [(4, "watcher:w", "stdout_stream.color", IGNORED)])
    assert "color" not in cfg.watchers[0].stdout_stream


def test_a_reference_to_a_socket_that_does_not_exist_is_left_as_written():
    text = ("[watcher:web]\ncmd = serve\nargs = --fd $(circus.sockets.web) app\n"
            "use_sockets = true\n[socket:app]\nport = 0\n")
    error = refused(text)
    assert "unknown socket 'web'" in error.issues[0].reason
    cfg = lenient_class(text, [(3, "watcher:web", "args", IGNORED)])
    assert cfg.watchers[0].args == "--fd $(circus.sockets.web) app"


def test_an_unknown_stdin_socket_stays_an_error_as_every_spawn_would_fail():
    assert issues("[watcher:w]\ncmd = w\nstdin_socket = nope\n", strict=False) == \
        [(3, "watcher:w", "stdin_socket", None)]


def test_missing_include_and_include_dir_are_warnings_as_in_0_19():
    cfg = lenient_class("[circus]\ninclude = nothere.ini\ninclude_dir = conf.d\n",
                        [(2, "circus", "include", IGNORED), (3, "circus", "include_dir", IGNORED)])
    assert cfg.watchers == ()


def test_unknown_section_kinds_are_skipped_as_0_19_did():
    cfg = lenient_class("[show:dummy]\ncmd = python\n[included]\nnumprocesses = 5\n"
                        "[watcher:w]\ncmd = w\n",
                        [(1, "show:dummy", None, IGNORED), (3, "included", None, IGNORED)])
    assert [w.name for w in cfg.watchers] == ["w"]


def test_repeated_keys_first_wins_in_the_same_section_and_across_includes():
    files = {"more.ini": "[watcher:w]\nnumprocesses = 9\n[circus]\ncheck_delay = 1\n"}
    text = ("[circus]\ninclude = more.ini\ncheck_delay = 2\n"
            "[watcher:w]\ncmd = a\ncmd = b\nnumprocesses = 3\n")
    cfg = lenient_class(text, [(6, "watcher:w", "cmd", IGNORED),
                               (2, "watcher:w", "numprocesses", IGNORED),
                               (4, "circus", "check_delay", IGNORED)], files=files)
    w = cfg.watchers[0]
    assert (w.cmd, w.numprocesses, cfg.circus.check_delay) == ("a", 3, 2.0)
    assert cfg.warnings[1].file.endswith("more.ini")


def test_a_section_continued_in_an_include_is_no_issue():
    cfg = load("[circus]\ninclude = more.ini\n[watcher:w]\ncmd = a\n",
               files={"more.ini": "[watcher:w]\nnumprocesses = 2\n"})
    assert cfg.watchers[0].numprocesses == 2 and cfg.warnings == ()


def test_a_section_started_twice_in_one_file():
    cfg = lenient_class("[watcher:w]\ncmd = a\n[watcher:x]\ncmd = x\n[watcher:w]\npriority = 2\n",
                        [(5, "watcher:w", None, IGNORED)])
    assert watcher(cfg, "w").priority == 2                  # merged, as 0.19


def test_an_unset_variable_is_left_as_written():
    cfg = lenient_class("[watcher:w]\ncmd = run $(circus.env.GRAVITY) ((circus.env.set))\n"
                        "[env]\nset = yes\n", [(2, "watcher:w", "cmd", IGNORED)])
    assert cfg.watchers[0].cmd == "run $(circus.env.GRAVITY) yes"


# -- what made 0.19 drop a watcher at boot: dropped, the rest loads -----------------------------


@pytest.mark.parametrize("body,line,key", [
    ("hooks.before_start = m.f\n", 1, "cmd"),
    ("cmd =  \n", 2, "cmd"),
    ("cmd = w\nvirtualenv = /venv\n", 3, "virtualenv"),
    ("cmd = w\ncopy_path = true\n", 3, "copy_path"),
    ("cmd = w\nsingleton = true\nnumprocesses = 3\n", 4, "numprocesses"),
    ("cmd = w\nstdout_stream.max_bytes = 10\n", 3, "stdout_stream"),
    ("cmd = w\nstdout_stream.class = NoSuchStream\n", 3, "stdout_stream.class"),
    ("cmd = w\nstdout_stream.class = TimedRotatingFileStream\n", 3, "stdout_stream.rotate_when"),
    ("cmd = w\nstdout_stream.class = FileStream\nstdout_stream.max_bytes = big\n", 4,
     "stdout_stream.max_bytes"),
])
def test_what_0_19_dropped_at_boot_is_dropped_with_a_warning(body, line, key):
    cfg = lenient_class(f"[watcher:bad]\n{body}[watcher:good]\ncmd = g\n",
                        [(line, "watcher:bad", key, DROPPED)])
    assert [w.name for w in cfg.watchers] == ["good"]
    assert "this watcher is not loaded" in cfg.warnings[0].as_warning()


# -- never loads --------------------------------------------------------------------------------


def test_a_nul_byte_is_refused_in_both_modes_with_its_line():
    text = "[watcher:w]\ncmd = sleep\x0010\n[env:w]\nA = b\x00c\n"
    for strict in (True, False):
        assert [(i.line, i.section, i.lenient) for i in refused(text, strict=strict).issues] == \
            [(2, "watcher:w", None), (4, "env:w", None)]
    assert "NUL byte" in refused(text).issues[0].reason


@pytest.mark.parametrize("options", [{"args": "a\x00b"}, {"env": {"A": "x\x00"}},
                                     {"working_dir": "/tmp\x00x"}, {"args": ["a", "b\x00"]}])
def test_a_nul_byte_in_add_or_set_is_refused(options):
    with pytest.raises(ConfigError) as info:
        watcher_from_options("w", "sleep 1", options.pop("args", None), options, {})
    assert "NUL byte" in str(info.value)


@pytest.mark.parametrize("body,key", [('cmd = run "unclosed\n', "cmd"),
                                      ("cmd = run\nargs = --x 'y\n", "args"),
                                      ("cmd = run\nshell = true\nshell_args = -c 'x\n",
                                       "shell_args")])
def test_a_command_that_cannot_be_split_is_refused_in_both_modes(body, key):
    for strict in (True, False):
        (issue,) = refused(f"[watcher:w]\n{body}", strict=strict).issues
        assert issue.key == key and "cannot be split into arguments" in issue.reason


def test_a_shell_command_is_not_split():
    assert load("[watcher:w]\ncmd = echo 'it''s' \"a\nshell = true\n").watchers


def test_an_exposed_endpoint_without_curve_is_refused_in_both_modes():
    for strict in (True, False):
        (issue,) = refused("[circus]\nendpoint = tcp://0.0.0.0:5555\n", strict=strict).issues
        assert issue.key == "endpoint" and issue.lenient is None


def test_a_bad_value_is_an_error_in_both_modes():
    for strict in (True, False):
        assert issues("[watcher:w]\ncmd = w\nnumprocesses = many\n", strict=strict) == \
            [(3, "watcher:w", "numprocesses", None)]


def test_the_sections_0_19_did_not_have_stay_strict():
    text = ("[watcher:w]\ncmd = w\n[notify:n]\ndestination = exec:cat\nevents = fatal\n"
            "colour = red\n[tool:t]\ncmd = ls\nuser = x\n")
    assert issues(text, strict=False) == [(6, "notify:n", "colour", None),
                                          (9, "tool:t", "user", None)]


def test_every_problem_is_reported_at_once_errors_and_warnings_apart():
    text = ("[circus]\nhost = x\n[watcher:a]\nnumprocesses = x\ncmd = a\nuser = u\n"
            "[watcher:b]\nhooks.before_start = m.f\n")
    error = refused(text, strict=False)
    assert [(i.line, i.key) for i in error.issues] == [(4, "numprocesses")]
    assert [(i.line, i.key, i.lenient) for i in error.warnings] == [
        (2, "host", IGNORED), (6, "user", IGNORED), (7, "cmd", DROPPED)]
    assert len(refused(text).issues) == 4


# -- the switch in the file ---------------------------------------------------------------------


def test_strict_false_in_the_file_is_the_same_switch():
    cfg = load("[circus]\nstrict = false\nhost = x\n[watcher:w]\ncmd = w\nuser = u\n")
    assert [(i.line, i.key) for i in cfg.warnings] == [(3, "host"), (6, "user")]
    assert cfg.circus.strict is False and cfg.no_strict is False
    assert load("[circus]\nstrict = true\n").circus.strict is True


def test_the_protocol_refuses_what_a_file_would_only_warn_about():
    with pytest.raises(ConfigError) as info:
        watcher_from_options("w", "sleep 1", None, {"user": "x"}, {})
    assert "unknown option (did you mean 'uid'?)" in str(info.value)


# -- loggerconfig is read when the file is checked ----------------------------------------------


@pytest.mark.parametrize("name,text,reason", [
    ("log.json", "{nope", "not valid JSON"),
    ("log.json", '{"handlers": {}}', "version: 1"),
    ("log.ini", "[loggers]\nkeys=root\n", "needs the sections [handlers], [formatters]"),
    ("log.txt", "x", "*.ini, *.json or *.yaml"),
    ("gone.json", None, "cannot read"),
])
def test_a_logger_configuration_that_cannot_be_used_is_an_error(tmp_path, name, text, reason):
    if text is not None:
        (tmp_path / name).write_text(text)
    ini = tmp_path / "circus.ini"
    ini.write_text(f"[circus]\nloggerconfig = {tmp_path / name}\n")
    for strict in (True, False):
        with pytest.raises(ConfigError) as info:
            load_config(str(ini), {}, strict=strict)
        (issue,) = info.value.issues
        assert (issue.line, issue.key) == (2, "loggerconfig") and reason in issue.reason


def test_a_yaml_logger_configuration_without_pyyaml_says_so(tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "yaml", None)          # import yaml -> ImportError
    (tmp_path / "log.yaml").write_text("version: 1\n")
    ini = tmp_path / "circus.ini"
    ini.write_text(f"[circus]\nloggerconfig = {tmp_path / 'log.yaml'}\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(ini), {})
    assert "needs PyYAML" in info.value.issues[0].reason


def test_loggerconfig_default_and_relative_paths(tmp_path, monkeypatch):
    (tmp_path / "log.json").write_text('{"version": 1}')
    ini = tmp_path / "circus.ini"
    ini.write_text("[circus]\nloggerconfig = log.json\n")
    monkeypatch.chdir(tmp_path)                              # relative to circusd's cwd, as 0.19
    assert load_config(str(ini), {}).circus.loggerconfig == "log.json"
    monkeypatch.chdir("/")
    with pytest.raises(ConfigError):
        load_config(str(ini), {})
    ini.write_text("[circus]\nloggerconfig = default\n")
    assert load_config(str(ini), {}).warnings == ()


@pytest.mark.parametrize("name", ["A=B", ""])
def test_an_environment_name_execve_would_refuse_is_refused_in_add(name):
    with pytest.raises(ConfigError) as info:
        watcher_from_options("w", "sleep 1", None, {"env": {name: "1"}}, {})
    assert "is not an environment variable name" in str(info.value)
