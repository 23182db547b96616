"""Tier 1: [notify:NAME] and [tool:NAME] sections: typed, strict, reported with file and line."""
from __future__ import annotations

import pytest

from circus.config import (ConfigError, NotifyConfig, ToolConfig, diff, option_reference,
                           parse_config_text, summarize)

WATCHERS = "[watcher:Web]\ncmd = serve\n[watcher:db]\ncmd = pg\n"


def load(text: str, environ: dict | None = None):
    return parse_config_text(WATCHERS + text, "m.ini", environ or {})


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(text)
    return [str(issue) for issue in info.value.issues]


def test_a_full_notification():
    cfg = load("""
[notify:Mail]
watchers = web, DB
events = fatal, Backoff fatal
match = ERROR|panic
throttle = 60
destination = smtp://mail.example.com:587
from = circus@example.com
to = ops@example.com, dev@example.com
starttls = yes
username = circus
password = $(circus.env.smtp_password)
timeout = 3
retries = 2
retry_delay = 1.5
""", {"SMTP_PASSWORD": "pw"})
    assert cfg.notifications == (NotifyConfig(
        name="mail", watchers=("Web", "db"), match="ERROR|panic", events=("fatal", "backoff"),
        throttle=60.0, destination="smtp://mail.example.com:587", mail_from="circus@example.com",
        to=("ops@example.com", "dev@example.com"), starttls=True, username="circus",
        password="pw", timeout=3.0, retries=2, retry_delay=1.5),)


def test_defaults_and_other_destinations():
    cfg = load("""
[notify:hook]
events = restart
destination = https://hooks.example.com/x?token=1
[notify:pager]
match = CRITICAL
destination = exec:/usr/local/bin/page --team "on call"
""")
    hook, pager = cfg.notifications
    assert (hook.watchers, hook.throttle, hook.retries, hook.timeout) == ((), 300.0, 5, 10.0)
    assert pager.destination == 'exec:/usr/local/bin/page --team "on call"'


def test_a_tool():
    cfg = load("""
[tool:Clear-Cache]
cmd = /opt/app/bin/manage clear_cache --all
description = Empty the page cache
working_dir = /opt/app
uid = www-data
timeout = 120
[tool:dump]
cmd = kill -USR1 1
""")
    assert cfg.tools == (
        ToolConfig(name="clear-cache", cmd="/opt/app/bin/manage clear_cache --all",
                   description="Empty the page cache", working_dir="/opt/app", uid="www-data",
                   timeout=120.0),
        ToolConfig(name="dump", cmd="kill -USR1 1"))


def test_every_problem_with_file_line_section_and_key():
    found = problems("""
[notify:a.b]
watchers = web, wbe
events = fatal, boom
match = (
destination = ftp://x
colour = red
[notify:nothing]
destination = exec:mail -s 'x
[notify:mail]
events = fatal
destination = smtp://h
starttls = yes
username = u
[notify:tls]
events = fatal
destination = smtps://h
from = a@b
to = not-an-address
starttls = true
[notify:hook]
events = fatal
destination = http://h/
to = a@b
throttle = -1
[tool:t]
description = no cmd
[tool:t2]
cmd =
timeout = 0
""")
    assert found == [
        "m.ini:6: [notify:a.b] a name may only have letters, digits, '_' and '-'",
        "m.ini:7: [notify:a.b] watchers: unknown watcher 'wbe'",
        "m.ini:8: [notify:a.b] events: unknown event 'boom'; expected some of fatal, backoff, "
        "unhealthy, restart",
        "m.ini:9: [notify:a.b] match: invalid regular expression '(': missing ): ( (RE2 syntax: "
        "Python's without back-references or look-around)",
        "m.ini:10: [notify:a.b] destination: unknown destination 'ftp://x'; expected "
        "smtp://HOST[:PORT], smtps://HOST[:PORT], exec:COMMAND or an http(s):// webhook URL",
        "m.ini:11: [notify:a.b] colour: unknown option",
        "m.ini:12: [notify:nothing] nothing to notify: set match = REGEX and/or events = fatal, "
        "backoff, unhealthy, restart",
        "m.ini:13: [notify:nothing] destination: cannot split the command \"mail -s 'x\": No "
        "closing quotation",
        "m.ini:14: [notify:mail] from: missing required option (for smtp://h)",
        "m.ini:14: [notify:mail] to: missing required option (for smtp://h)",
        "m.ini:14: [notify:mail] password: username and password go together",
        "m.ini:23: [notify:tls] to: not a mail address: 'not-an-address'",
        "m.ini:24: [notify:tls] starttls: smtps:// is TLS from the start; STARTTLS is for smtp://",
        "m.ini:28: [notify:hook] to: only for smtp:// and smtps:// destinations",
        "m.ini:29: [notify:hook] throttle: must be >= 0.0, got -1.0",
        "m.ini:30: [tool:t] cmd: missing required option",
        "m.ini:33: [tool:t2] cmd: empty command",
        "m.ini:34: [tool:t2] timeout: must be > 0.0, got 0.0",
    ]


def test_unknown_section_kinds_name_the_new_ones():
    [issue] = problems("[notfy:x]\nevents = fatal\n")
    assert "(did you mean 'notify'?)" in issue and "notify:NAME, tool:NAME" in issue


def test_reference_and_summary():
    rows = {(kind, key) for kind, key, *_ in option_reference()}
    assert {("notify", "from"), ("notify", "to"), ("notify", "match"), ("notify", "throttle"),
            ("tool", "cmd"), ("tool", "description"), ("tool", "timeout")} <= rows
    text = summarize(load("""
[notify:hook]
events = fatal
destination = https://hooks.example.com/secret-token
[tool:dump]
cmd = kill -USR1 1
description = thread dump
"""))
    assert "notifications (1):\n  hook: https://hooks.example.com/...  [events=fatal, " \
           "watchers=all, throttle=300s]" in text
    assert "tools (1):\n  dump: kill -USR1 1  (thread dump)" in text
    assert "secret" not in text


def test_reload_replaces_notifications_and_tools():
    old = load("[notify:a]\nevents = fatal\ndestination = exec:x\n[tool:t]\ncmd = a\n")
    new = load("[notify:a]\nevents = backoff\ndestination = exec:x\n[notify:b]\nevents = fatal\n"
               "destination = exec:y\n[tool:u]\ncmd = a\n")
    plan = diff(old, new)
    assert plan.notifications_changed == ("a", "b") and plan.tools_changed == ("t", "u")
    assert plan.describe() == ["~ notify a (replaced)", "~ notify b (replaced)",
                               "~ tool t (replaced)", "~ tool u (replaced)"]
    assert [s.action for s in plan.steps(old, new)] == ["apply_notifications", "apply_tools"]
    assert type(plan).from_dict(plan.to_dict()) == plan
    assert diff(old, old).empty
