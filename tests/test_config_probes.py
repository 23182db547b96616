"""Readiness, liveness, watchdog, dependencies and systemd-style sockets in the configuration."""

from __future__ import annotations

import pytest

from circus.config import (
    ConfigError,
    ConfigIssue,
    WatcherConfig,
    parse_config_text,
    summarize,
    watcher_from_options,
)
from circus.config.view import watcher_options


def parse(text: str):
    return parse_config_text(text, "main.ini", {"PORT": "8000"})


def issues_of(text: str) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return info.value.issues


def one_issue(text: str) -> ConfigIssue:
    found = issues_of(text)
    assert len(found) == 1, found
    return found[0]


def watcher(text: str, name: str = "w") -> WatcherConfig:
    return next(w for w in parse(text).watchers if w.name == name)


# -- defaults ----------------------------------------------------------------------------------


def test_defaults():
    w = WatcherConfig(name="w", cmd="run")
    assert (w.ready, w.ready_timeout) == (None, 30.0)
    assert (w.health, w.health_interval, w.health_failures, w.health_timeout) == (
        None, 10.0, 3, 5.0)
    assert (w.watchdog_timeout, w.depends_on, w.listen_fds) == (0.0, (), False)
    assert watcher("[watcher:w]\ncmd = run\n") == w


# -- from INI ----------------------------------------------------------------------------------


def test_all_new_options_from_ini():
    w = watcher(
        "[socket:web]\nport = 0\n"
        "[watcher:db]\ncmd = db\n"
        "[watcher:migrate]\ncmd = migrate\nrestart_policy = never\n"
        "[watcher:w]\ncmd = run\n"
        "ready = notify\nready_timeout = 2.5\n"
        "health = http://127.0.0.1:$(circus.env.PORT)/health\nhealth_interval = 1\n"
        "health_failures = 5\nhealth_timeout = 0.5\nwatchdog_timeout = 20\n"
        "depends_on = DB, migrate:Completed\nlisten_fds = yes\n"
    )
    assert (w.ready, w.ready_timeout) == ("notify", 2.5)
    assert w.health == "http://127.0.0.1:8000/health"  # env substituted at load
    assert (w.health_interval, w.health_failures, w.health_timeout) == (1.0, 5, 0.5)
    assert w.watchdog_timeout == 20.0
    assert w.depends_on == (("db", "ready"), ("migrate", "completed"))  # spelled as defined
    assert w.listen_fds is True


@pytest.mark.parametrize(
    "ready",
    [
        "tcp:127.0.0.1:$(circus.wid)",
        "tcp:127.0.0.1:((circus.wid))",
        "exec:check --fd $(circus.sockets.web) --wid $(CIRCUS.WID)",
        "http://127.0.0.1:80$(circus.wid)/health",
        "log:worker $(circus.wid) ready",
    ],
)
def test_spawn_placeholders_accepted_and_kept_in_ready(ready):
    w = watcher(f"[socket:web]\nport = 0\n[watcher:w]\ncmd = run\nready = {ready}\n")
    assert w.ready == ready


def test_empty_ready_and_health_mean_unset():
    w = watcher("[watcher:w]\ncmd = run\nready =\nhealth =\n")
    assert (w.ready, w.health) == (None, None)


@pytest.mark.parametrize(
    ("line", "key", "reason"),
    [
        ("ready = tcp:localhost:99999", "ready", "port must be 1..65535"),
        ("ready = tpc:localhost:80", "ready", "did you mean 'tcp'?"),
        ("ready = log:(", "ready", "invalid regular expression"),
        ("ready = exec:", "ready", "needs a command"),
        ("ready = http:ftp://x/", "ready", "http:// or https://"),
        ("ready = tcp:h:$(circus.wid)x", "ready", "expected a port number"),
        ("health = notify", "health", "a notify probe cannot be used here"),
        ("health = log:ready", "health", "a log probe cannot be used here"),
        ("ready_timeout = 0", "ready_timeout", "must be > 0"),
        ("ready_timeout = soon", "ready_timeout", "expected a number"),
        ("health_interval = 0", "health_interval", "must be > 0"),
        ("health_failures = 0", "health_failures", "must be >= 1"),
        ("health_failures = 1.5", "health_failures", "expected an integer"),
        ("health_timeout = -1", "health_timeout", "must be > 0"),
        ("watchdog_timeout = -1", "watchdog_timeout", "must be >= 0"),
        ("watchdog_timeout = 10", "watchdog_timeout", "requires ready = notify"),
        ("depends_on = db:healthy", "depends_on", "unknown condition 'healthy'"),
        ("depends_on = db, DB:started", "depends_on", "'DB' is listed twice"),
        ("depends_on = :ready", "depends_on", "missing watcher name"),
        ("depends_on = w", "depends_on", "cannot depend on itself"),
        ("listen_fds = maybe", "listen_fds", "expected a boolean"),
    ],
)
def test_bad_values_name_file_line_section_key(line, key, reason):
    text = "[socket:web]\nport = 0\n[watcher:db]\ncmd = db\n[watcher:w]\ncmd = run\n" + line + "\n"
    issue = one_issue(text)
    assert (issue.file, issue.line, issue.section, issue.key) == ("main.ini", 7, "watcher:w", key)
    assert reason in issue.reason


def test_watchdog_without_ready_is_refused_and_with_notify_accepted():
    issue = one_issue("[watcher:w]\ncmd = run\nready = tcp:h:1\nwatchdog_timeout = 3\n")
    assert (issue.line, issue.key) == (4, "watchdog_timeout")
    assert watcher("[watcher:w]\ncmd = run\nready = NOTIFY\nwatchdog_timeout = 3\n").ready == "NOTIFY"


def test_a_bad_ready_is_reported_once_even_with_a_watchdog():
    issue = one_issue("[watcher:w]\ncmd = run\nready = nope\nwatchdog_timeout = 3\n")
    assert issue.key == "ready"


def test_unknown_socket_in_a_probe():
    issue = one_issue("[socket:web]\nport = 0\n[watcher:w]\ncmd = run\n"
                      "ready = exec:check --fd $(circus.sockets.webb)\n")
    assert (issue.line, issue.key) == (5, "ready")
    assert "unknown socket 'webb' (did you mean 'web'?)" in issue.reason


def test_listen_fds_needs_a_socket():
    issue = one_issue("[watcher:w]\ncmd = run\nlisten_fds = true\n")
    assert (issue.line, issue.key) == (3, "listen_fds")
    assert "no [socket:NAME]" in issue.reason


# -- depends_on across watchers ----------------------------------------------------------------


def test_depends_on_unknown_watcher_with_hint():
    issue = one_issue("[watcher:database]\ncmd = db\n[watcher:w]\ncmd = run\n"
                      "depends_on = databse\n")
    assert (issue.file, issue.line, issue.section, issue.key) == (
        "main.ini", 5, "watcher:w", "depends_on")
    assert "unknown watcher 'databse' (did you mean 'database'?)" in issue.reason


def test_depends_on_a_watcher_whose_section_has_errors_is_not_unknown():
    issue = one_issue("[watcher:db]\ncmd = db\nnumprocesses = x\n"
                      "[watcher:w]\ncmd = run\ndepends_on = db\n")
    assert issue.key == "numprocesses"


def test_three_watcher_cycle_is_named_at_a_depends_on_line():
    text = ("[watcher:c]\ncmd = c\ndepends_on = a\n"
            "[watcher:b]\ncmd = b\ndepends_on = c:started\n"
            "[watcher:a]\ncmd = a\npriority = 1\ndepends_on = b\n"
            "[watcher:d]\ncmd = d\ndepends_on = a\n")
    issue = one_issue(text)
    assert issue.reason == "dependency cycle: a -> b -> c -> a"
    assert (issue.line, issue.section, issue.key) == (10, "watcher:a", "depends_on")


def test_two_separate_cycles_each_reported_once():
    text = ("[watcher:a]\ncmd = a\ndepends_on = b\n[watcher:b]\ncmd = b\ndepends_on = a\n"
            "[watcher:x]\ncmd = x\ndepends_on = Y\n[watcher:Y]\ncmd = y\ndepends_on = x, a\n")
    assert sorted(i.reason for i in issues_of(text)) == [
        "dependency cycle: a -> b -> a", "dependency cycle: x -> Y -> x"]


def test_cycle_names_keep_their_spelling_and_shortest_cycle_is_named():
    text = ("[watcher:Api]\ncmd = a\ndepends_on = db, cache\n"
            "[watcher:cache]\ncmd = c\ndepends_on = api\n"
            "[watcher:db]\ncmd = d\ndepends_on = cache\n")
    issue = one_issue(text)
    assert issue.reason == "dependency cycle: Api -> cache -> Api"
    assert (issue.line, issue.section) == (3, "watcher:Api")


def test_depends_on_list_allows_empty_items_and_newlines():
    w = watcher("[watcher:a]\ncmd = a\n[watcher:b]\ncmd = b\n"
                "[watcher:w]\ncmd = run\ndepends_on = a,\n  b:started,\n")
    assert w.depends_on == (("a", "ready"), ("b", "started"))


def test_diamond_is_not_a_cycle():
    cfg = parse("[watcher:a]\ncmd = a\ndepends_on = b, c\n[watcher:b]\ncmd = b\ndepends_on = d\n"
                "[watcher:c]\ncmd = c\ndepends_on = d\n[watcher:d]\ncmd = d\n")
    assert [w.depends_on for w in cfg.watchers] == [
        (("b", "ready"), ("c", "ready")), (("d", "ready"),), (("d", "ready"),), ()]


@pytest.mark.parametrize(("policy", "ok"), [
    ("", False), ("restart_policy = always", False), ("respawn = true", False),
    ("restart_policy = never", True), ("restart_policy = on-failure", True),
    ("respawn = false", True),
])
def test_completed_needs_a_watcher_that_exits_for_good(policy, ok):
    text = (f"[watcher:migrate]\ncmd = m\n{policy}\n"
            "[watcher:w]\ncmd = run\ndepends_on = migrate:completed\n")
    if ok:
        assert watcher(text).depends_on == (("migrate", "completed"),)
        return
    issue = one_issue(text)
    assert (issue.line, issue.section, issue.key) == (6, "watcher:w", "depends_on")
    assert "restart_policy = always" in issue.reason and "'migrate:completed'" in issue.reason


# -- from JSON (protocol add/set) --------------------------------------------------------------


def test_all_new_options_from_json():
    w = watcher_from_options("w", "run", None, {
        "ready": "tcp:[::1]:$(circus.wid)", "ready_timeout": 3, "health": "exec:check",
        "health_interval": 2.5, "health_failures": 1, "health_timeout": 1,
        "depends_on": ["db", "migrate:completed"], "listen_fds": True,
    }, {})
    assert (w.ready, w.ready_timeout, w.health) == ("tcp:[::1]:$(circus.wid)", 3.0, "exec:check")
    assert (w.health_interval, w.health_failures, w.health_timeout) == (2.5, 1, 1.0)
    assert w.depends_on == (("db", "ready"), ("migrate", "completed"))
    assert w.listen_fds is True
    w = watcher_from_options("w", "run", None, {"ready": "notify", "watchdog_timeout": 5}, {})
    assert w.watchdog_timeout == 5.0


@pytest.mark.parametrize(
    ("options", "key", "reason"),
    [
        ({"ready": 5}, "ready", "expected a JSON string"),
        ({"ready": "tcp:h:0"}, "ready", "port must be 1..65535"),
        ({"health": "notify"}, "health", "cannot be used here"),
        ({"ready_timeout": "30"}, "ready_timeout", "expected a JSON number"),
        ({"ready_timeout": 0}, "ready_timeout", "must be > 0"),
        ({"health_interval": -1.0}, "health_interval", "must be > 0"),
        ({"health_failures": 2.0}, "health_failures", "expected a JSON integer"),
        ({"health_failures": 0}, "health_failures", "must be >= 1"),
        ({"health_timeout": True}, "health_timeout", "got a boolean"),
        ({"watchdog_timeout": 5}, "watchdog_timeout", "requires ready = notify"),
        ({"depends_on": "db"}, "depends_on", "expected a JSON list of strings"),
        ({"depends_on": ["db", 1]}, "depends_on", "expected a JSON list of strings"),
        ({"depends_on": ["db:soon"]}, "depends_on", "unknown condition 'soon'"),
        ({"depends_on": ["web"]}, "depends_on", "cannot depend on itself"),
        ({"listen_fds": 1}, "listen_fds", "expected a JSON boolean"),
    ],
)
def test_bad_json_values_name_the_key(options, key, reason):
    with pytest.raises(ConfigError) as info:
        watcher_from_options("web", "run", None, options, {})
    issue, = info.value.issues
    assert (issue.file, issue.line, issue.section, issue.key) == (
        "<protocol>", None, "watcher:web", key)
    assert reason in issue.reason


def test_options_view_round_trips_through_the_protocol():
    cfg = parse("[watcher:db]\ncmd = db\nrestart_policy = never\n"
                "[watcher:w]\ncmd = run\nready = notify\nwatchdog_timeout = 4\n"
                "health = tcp:h:1\ndepends_on = db:completed\n")
    w = next(w for w in cfg.watchers if w.name == "w")
    view = {k: v for k, v in watcher_options(w).items() if v is not None}  # as `set` does
    assert view["depends_on"] == ["db:completed"]
    assert view["ready"] == "notify" and view["listen_fds"] is False
    cmd, args = view.pop("cmd"), view.pop("args")
    assert watcher_from_options("w", cmd, args, view, {}) == w


# -- summary -----------------------------------------------------------------------------------


def test_summary_shows_ready_health_and_dependencies():
    cfg = parse("[socket:web]\nport = 0\n[watcher:db]\ncmd = db\nrestart_policy = never\n"
                "[watcher:w]\ncmd = run\nready = tcp:127.0.0.1:8000\nhealth = exec:check\n"
                "depends_on = db, db2:started, \n[watcher:db2]\ncmd = db2\nlisten_fds = true\n")
    text = summarize(cfg)
    assert "ready=tcp:127.0.0.1:8000, health=exec:check, depends_on=db,db2:started]" in text
    assert "db2: db2  [numprocesses=1, priority=0, restart=always, listen_fds]" in text
