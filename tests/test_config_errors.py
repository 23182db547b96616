"""Every configuration error names the file, line, section and key, and all are reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from circus.config import ConfigError, ConfigIssue, load_config, parse_config_text

ERRORS = Path(__file__).parent / "config" / "errors"


def line_of(path: Path, needle: str) -> int:
    """The (1-based) line of the first line of `path` containing `needle`."""
    return next(n for n, text in enumerate(path.read_text().splitlines(), 1) if needle in text)


def issues_of(text: str, files=None, environ=None) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as info:
        parse_config_text(text, "main.ini", environ or {}, files)
    return info.value.issues


def one_issue(text: str, **kw) -> ConfigIssue:
    found = issues_of(text, **kw)
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def bad_issues() -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as info:
        load_config(str(ERRORS / "bad.ini"), {})
    return info.value.issues


BAD = ERRORS / "bad.ini"
PART = ERRORS / "part.ini"
EXPECTED = [  # (file, needle on the reported line, section, key, words in the reason)
    (BAD, "check_dealy", "circus", "check_dealy", "did you mean 'check_delay'?"),
    (BAD, "include =", "circus", "include", "included file not found"),
    (BAD, "httpd = maybe", "circus", "httpd", "expected a boolean"),
    (BAD, "numprocesses = three", "watcher:web", "numprocesses", "expected an integer"),
    (BAD, "SIGNOPE", "watcher:web", "stop_signal", "unknown signal"),
    (BAD, "rlimit_nofiles", "watcher:web", "rlimit_nofiles", "unknown resource limit"),
    (BAD, "before_strat", "watcher:web", "hooks.before_strat", "did you mean 'before_start'?"),
    (BAD, "my..Stream", "watcher:web", "stdout_stream.class", "expected a dotted name"),
    (BAD, "graceful_timeout = -1", "watcher:web", "graceful_timeout", "must be >= 0"),
    (BAD, "max_retry = -2", "watcher:web", "max_retry", "must be >= -1"),
    (BAD, "restart_policy = always", "watcher:web", "restart_policy", "contradicts respawn"),
    (BAD, "[watcher:Web]", "watcher:Web", None, "duplicate watcher name"),
    (BAD, "[watcher:nocmd]", "watcher:nocmd", "cmd", "missing required option"),
    (BAD, "too many for a singleton", "watcher:solo", "numprocesses", "singleton"),
    (BAD, "[plugin:nouse]", "plugin:nouse", "use", "missing required option"),
    (BAD, "port = 70000", "socket:s", "port", "must be <= 65535"),
    (BAD, "[wacher:typo]", "wacher:typo", None, "unknown section kind 'wacher' (did you mean 'watcher'?)"),
    (PART, "copy_path", "watcher:web", "copy_path", "requires copy_env"),
    (PART, "circus.sockets.web", "watcher:sockless", "cmd", "unknown socket 'web'"),
    (PART, "stdin_socket = nope", "watcher:sockless", "stdin_socket", "unknown socket 'nope'"),
    (PART, "famly", "socket:s", "famly", "did you mean 'family'?"),
]


def test_all_issues_collected_with_exact_place(bad_issues):
    got = [(i.file, i.line, i.section, i.key) for i in bad_issues]
    want = [(str(p), line_of(p, needle), section, key) for p, needle, section, key, _ in EXPECTED]
    assert got == want
    for issue, (*_, words) in zip(bad_issues, EXPECTED):
        assert words in issue.reason


def test_free_form_dotted_keys_are_not_errors(bad_issues):
    assert not [i for i in bad_issues if i.key == "flapping.max_retry"]


def test_str_lists_one_issue_per_line(bad_issues):
    text = str(ConfigError(bad_issues))
    lines = text.splitlines()
    assert len(lines) == len(EXPECTED)
    n = line_of(BAD, "check_dealy")
    # a key Circus 0.19 ignored says that --no-strict would load the file
    assert lines[0] == (f"{BAD}:{n}: [circus] check_dealy: unknown option "
                        "(did you mean 'check_delay'?) (Circus 0.19 accepted this silently; "
                        "'circusd --no-strict' loads the file and warns)")
    n = line_of(BAD, "graceful_timeout = -1")
    assert f"{BAD}:{n}: [watcher:web] graceful_timeout: must be >= 0.0, got -1.0" in lines


def test_issue_str_without_line_section_or_key():
    assert str(ConfigIssue("f.ini", None, None, None, "boom")) == "f.ini: boom"
    assert str(ConfigIssue("f.ini", 3, "watcher:a", None, "boom")) == "f.ini:3: [watcher:a] boom"


def test_include_cycle_names_the_cycle():
    with pytest.raises(ConfigError) as info:
        load_config(str(ERRORS / "cycle_a.ini"), {})
    issue, = info.value.issues
    a, b = str(ERRORS / "cycle_a.ini"), str(ERRORS / "cycle_b.ini")
    assert (issue.file, issue.line, issue.section, issue.key) == (b, 2, "circus", "include")
    assert issue.reason == f"include cycle: {a} -> {b} -> {a}"


def test_missing_include_dir_is_an_error_but_empty_glob_is_not():
    issue = one_issue("[circus]\ninclude = none-*.ini\ninclude_dir = conf.d\n")
    assert (issue.line, issue.key) == (3, "include_dir")
    assert "directory not found" in issue.reason


def test_self_include_is_a_cycle():
    issue = one_issue("[circus]\ninclude = main.ini\n")
    assert issue.reason == "include cycle: main.ini -> main.ini"


def test_include_errors_point_into_the_included_file():
    files = {"inc/a.ini": "[watcher:a]\ncmd = a\n\nnumprocesses = -1\n"}
    issue = one_issue("[circus]\ninclude = inc/a.ini\n", files=files)
    assert (issue.file, issue.line, issue.section, issue.key) == ("inc/a.ini", 4, "watcher:a", "numprocesses")


@pytest.mark.parametrize(
    ("text", "line", "section", "key", "reason"),
    [
        ("cmd = x\n", 1, None, "cmd", "option outside of any section"),
        ("[watcher:a]\njust words\n", 2, "watcher:a", None, "expected 'key = value'"),
        ("[watcher:a\ncmd = a\n", 1, None, None, "malformed section header"),
        ("[watcher:a]\ncmd = a\n__name__ = x\n", 3, "watcher:a", "__name__", "reserved name"),
        ("[env]\n__name__ = env\n", 2, "env", "__name__", "reserved name"),
        ("[watcher:]\ncmd = a\n", 1, "watcher:", None, "expected [watcher:NAME]"),
        ("[env:]\nA = 1\n", 1, "env:", None, "at least one pattern"),
        ("[Circus]\ncheck_delay = 1\n", 1, "Circus", None, "did you mean 'circus'?"),
        ("[watcher:a]\ncmd = a\nshell = maybe\n", 3, "watcher:a", "shell", "expected a boolean"),
        ("[watcher:a]\ncmd =\n", 2, "watcher:a", "cmd", "must not be empty"),
        ("[watcher:a]\ncmd = a\nnumprocesses = -1\n", 3, "watcher:a", "numprocesses", "must be >= 0"),
        ("[watcher:a]\ncmd = a\nnumprocesses = 1.5\n", 3, "watcher:a", "numprocesses", "expected an integer"),
        ("[watcher:a]\ncmd = a\nwarmup_delay = nan\n", 3, "watcher:a", "warmup_delay", "expected a number"),
        ("[watcher:a]\ncmd = a\nstop_signal = 999\n", 3, "watcher:a", "stop_signal", "not a valid signal"),
        ("[watcher:a]\ncmd = a\nnumprocess = 2\n", 3, "watcher:a", "numprocess", "did you mean 'numprocesses'?"),
        ("[watcher:a]\ncmd = a\nrlimit_nofile = lots\n", 3, "watcher:a", "rlimit_nofile", "expected an integer"),
        ("[watcher:a]\ncmd = a\nhooks.after_start = nodots\n", 3, "watcher:a", "hooks.after_start", "dotted name"),
        ("[watcher:a]\ncmd = a\nhooks.after_start = a.b, maybe\n", 3, "watcher:a", "hooks.after_start", "boolean"),
        ("[watcher:a]\ncmd = a\nstdout_stream.class = Filestream\n", 3, "watcher:a",
         "stdout_stream.class", "did you mean 'FileStream'?"),
        ("[watcher:a]\ncmd = a\nstdout_stream.max_bytes = 5\n", 3, "watcher:a", "stdout_stream",
         "needs 'class'"),
        ("[watcher:a]\ncmd = a\nstdout_stream.filename = f\nstdout_stream.max_byte = 5\n", 4,
         "watcher:a", "stdout_stream.max_byte", "did you mean 'max_bytes'?"),
        ("[watcher:a]\ncmd = a\nstderr_stream.class = TimedRotatingFileStream\n"
         "stderr_stream.rotate_when = hourly\n", 4, "watcher:a", "stderr_stream.rotate_when",
         "expected one of S, M, H, D, MIDNIGHT"),
        ("[watcher:a]\ncmd = a\nstdout_stream.class = FileStream\nstdout_stream.utc = yes\n", 4,
         "watcher:a", "stdout_stream.utc", "not an option of FileStream"),
        ("[watcher:a]\ncmd = a\nstdout_stream.class = TimedRotatingFileStream\n"
         "stdout_stream.rotate_when = h\nstdout_stream.utc = False-ish\n", 5, "watcher:a",
         "stdout_stream.utc", "expected a boolean"),
        ("[watcher:a]\ncmd = a\nstdout_stream.filename = f\nstdout_stream.max_bytes = 1MB\n", 4,
         "watcher:a", "stdout_stream.max_bytes", "expected an integer"),
        ("[watcher:a]\ncmd = a\nstdout_stream.filename = f\nstdout_stream.compress = zip\n", 4,
         "watcher:a", "stdout_stream.compress", "expected one of gzip, none"),
        ("[watcher:a]\ncmd = a\nstdout_stream.filename = f\nstdout_stream.format = json\n"
         "stdout_stream.time_format = %H\n", 5, "watcher:a", "stdout_stream.time_format",
         "not used with format = json"),
        ("[watcher:a]\ncmd = a\nrestart_policy = sometimes\n", 3, "watcher:a", "restart_policy",
         "expected one of always, on-failure, never"),
        ("[watcher:a]\ncmd = a\nbackoff_initial = 5\nbackoff_max = 1\n", 4, "watcher:a",
         "backoff_max", ">= backoff_initial"),
        ("[watcher:a]\ncmd = a\nvirtualenv = /v\n", 3, "watcher:a", "virtualenv", "requires copy_env"),
        ("[watcher:a]\ncmd = a\nenv = A=1\n", 3, "watcher:a", "env", "unknown option"),
        ("[watcher:a]\ncmd = a\nuse_sockets = 1\nsockets = web\n", 4, "watcher:a", "sockets",
         "unknown socket 'web'"),
        ("[circus]\numask = 999\n", 2, "circus", "umask", "octal"),
        ("[circus]\nendpoint = localhost\n", 2, "circus", "endpoint", "expected an endpoint"),
        ("[circus]\nloglevel = loud\n", 2, "circus", "loglevel", "expected one of"),
        ("[socket:a]\nfamily = AF_INET6\npath = /s\n", 2, "socket:a", "family", "is AF_UNIX"),
        ("[socket:a]\ntype = SOCK_WEIRD\n", 2, "socket:a", "type", "expected one of"),
        ("[socket:a]\nport = 2\n[socket:A]\nport = 1\n", 3, "socket:A", None,
         "duplicate socket name"),
        ("[plugin:p]\nuse = not a name\n", 2, "plugin:p", "use", "dotted name"),
        ("[plugin:p]\nuse = a.B\npriority = high\n", 3, "plugin:p", "priority", "expected an integer"),
    ],
)
def test_each_error_class(text, line, section, key, reason):
    issue = one_issue(text)
    assert (issue.file, issue.line, issue.section, issue.key) == ("main.ini", line, section, key)
    assert reason in issue.reason


def test_plugin_sections_accept_any_key():
    cfg = parse_config_text("[plugin:p]\nuse = a.B\nAnything.Goes = 1\nwatcher = w\n", "m.ini", {})
    assert cfg.plugins[0].options == {"Anything.Goes": "1", "watcher": "w"}


def test_unknown_keys_in_both_files_are_all_reported():
    files = {"b.ini": "[watcher:a]\nbogus2 = 1\n"}
    found = issues_of("[circus]\ninclude = b.ini\n[watcher:a]\ncmd = a\nbogus1 = 1\n", files=files)
    assert [(i.file, i.line, i.key) for i in found] == [("main.ini", 5, "bogus1"), ("b.ini", 2, "bogus2")]
