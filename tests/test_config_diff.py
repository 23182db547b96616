"""circus.config.diff: the pure ReloadPlan between two configurations, its steps and its text."""

from __future__ import annotations

import json

import pytest

from circus.config import ReloadPlan, Step, changed_fields, diff, parse_config_text
from circus.config.diff import STEP_ACTIONS

BASE = """
[circus]
endpoint = tcp://127.0.0.1:5555
check_delay = 5

[env]
LANG = C

[watcher:web]
cmd = server --fd $(circus.sockets.web)
use_sockets = true
sockets = web
numprocesses = 2
priority = 10

[watcher:api]
cmd = api
numprocesses = 1
priority = 5

[watcher:workers]
cmd = work
numprocesses = 2

[socket:web]
host = 127.0.0.1
port = 8080

[socket:admin]
host = 127.0.0.1
port = 9000

[plugin:flapping]
use = circus.plugins.flapping.Flapping
max_retry = 5
"""


def cfg(text: str, environ=None):
    return parse_config_text(text, "x.ini", environ or {})


def edit(text: str, *pairs: tuple[str, str]) -> str:
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new)
    return text


def plan_of(*pairs: tuple[str, str], base: str = BASE) -> ReloadPlan:
    return diff(cfg(base), cfg(edit(base, *pairs)))


# -- no change -----------------------------------------------------------------------------------


def test_identical_configs_give_an_empty_plan():
    plan = diff(cfg(BASE), cfg(BASE))
    assert plan.empty and plan == ReloadPlan()
    assert plan.describe() == ["no change"]
    assert plan.steps(cfg(BASE), cfg(BASE)) == []


def test_section_order_and_comments_do_not_matter():
    reordered = BASE.replace("[watcher:web]", "# a comment\n[watcher:web]")
    parts = reordered.split("\n\n")
    assert diff(cfg(BASE), cfg("\n\n".join(reversed(parts)))).empty


def test_only_the_spelling_of_a_watcher_name_is_no_change():
    plan = plan_of(("[watcher:api]", "[watcher:API]"), ("[watcher:web]", "[watcher:Web]"))
    assert plan.empty


# -- watchers ------------------------------------------------------------------------------------


def test_watcher_added_and_removed():
    plan = plan_of(("[watcher:api]", "[watcher:api2]"))
    assert plan.watchers_added == ("api2",)
    assert plan.watchers_removed == ("api",)
    assert not plan.watchers_changed and not plan.watchers_resized and not plan.empty


def test_watcher_option_changed_needs_a_restart():
    plan = plan_of(("cmd = api", "cmd = api --v2"))
    assert plan.watchers_changed == ("api",)
    assert plan.watcher_fields == (("api", ("cmd",)),)
    assert plan.watcher_sockets == (("api", ()),)
    assert not plan.watchers_resized


def test_numprocesses_only_is_a_resize_not_a_restart():
    plan = plan_of(("cmd = work\nnumprocesses = 2", "cmd = work\nnumprocesses = 4"))
    assert plan.watchers_resized == (("workers", 2, 4),)
    assert not plan.watchers_changed
    assert plan.describe() == ["= watcher workers: numprocesses 2 -> 4 (resize)"]


def test_numprocesses_with_another_option_is_a_restart():
    plan = plan_of(("cmd = work\nnumprocesses = 2", "cmd = work2\nnumprocesses = 4"))
    assert plan.watchers_changed == ("workers",)
    assert plan.watcher_fields == (("workers", ("cmd", "numprocesses")),)
    assert not plan.watchers_resized


def test_watcher_names_are_matched_case_insensitively():
    plan = plan_of(("[watcher:api]\ncmd = api", "[watcher:API]\ncmd = api2"))
    assert plan.watchers_changed == ("API",)  # spelled as in the new file
    assert not plan.watchers_added and not plan.watchers_removed


def test_removed_name_is_spelled_as_in_the_old_file():
    plan = diff(cfg(edit(BASE, ("[watcher:api]", "[watcher:Api]"))),
                cfg(edit(BASE, ("[watcher:api]", "[watcher:other]"))))
    assert plan.watchers_removed == ("Api",) and plan.watchers_added == ("other",)


def test_names_are_sorted_case_insensitively():
    extra = "\n[watcher:Zeta]\ncmd = z\n[watcher:alpha]\ncmd = a\n[watcher:Beta]\ncmd = b\n"
    plan = diff(cfg(BASE), cfg(BASE + extra))
    assert plan.watchers_added == ("alpha", "Beta", "Zeta")


def test_global_env_change_shows_in_every_watcher_and_as_env_changed():
    plan = plan_of(("LANG = C", "LANG = fr_FR.UTF-8"))
    assert plan.env_changed
    assert plan.watchers_changed == ("api", "web", "workers")
    assert all(own == ("env",) for _, own in plan.watcher_fields)
    assert plan.describe()[-1].startswith("~ [env] changed")


def test_env_section_for_one_watcher():
    plan = diff(cfg(BASE + "\n[env:api]\nX = 1\n"), cfg(BASE + "\n[env:api]\nX = 2\n"))
    assert plan.watchers_changed == ("api",) and not plan.env_changed


# -- sockets -------------------------------------------------------------------------------------


def test_socket_added_removed_changed():
    new = edit(BASE, ("[socket:admin]\nhost = 127.0.0.1\nport = 9000",
                      "[socket:metrics]\nhost = 127.0.0.1\nport = 9100"),
               ("port = 8080", "port = 8081"))
    plan = diff(cfg(BASE), cfg(new))
    assert plan.sockets_added == ("metrics",)
    assert plan.sockets_removed == ("admin",)
    assert plan.sockets_changed == ("web",)
    assert plan.socket_fields == (("web", (("port", 8080, 8081),)),)
    assert "~ socket web: port 8080 -> 8081" in plan.describe()


def test_watcher_using_a_changed_socket_is_restarted_though_its_section_is_the_same():
    plan = plan_of(("port = 8080", "port = 8081"))
    assert plan.watchers_changed == ("web",)
    assert plan.watcher_fields == (("web", ()),)
    assert plan.watcher_sockets == (("web", ("web",)),)
    assert "~ watcher web: socket web changed (restart)" in plan.describe()


SOCKET_USERS = """
[socket:s]
port = 8000
[socket:other]
port = 8001
[socket:spare]
port = 8009
[watcher:by_list]
cmd = a
use_sockets = true
sockets = s
[watcher:by_all]
cmd = b
use_sockets = true
[watcher:by_stdin]
cmd = c
stdin_socket = s
[watcher:by_cmd]
cmd = d ((circus.sockets.S))
[watcher:by_args]
cmd = e
args = --fd=$(circus.sockets.s)
[watcher:by_shell_args]
cmd = f
shell = true
shell_args = $(circus.sockets.s)
[watcher:not_listed]
cmd = g
use_sockets = true
sockets = other
[watcher:not_inheriting]
cmd = h
sockets = s
"""


def test_every_way_of_using_a_socket():
    plan = plan_of(("port = 8000", "port = 8002"), base=SOCKET_USERS)
    assert plan.watchers_changed == (
        "by_all", "by_args", "by_cmd", "by_list", "by_shell_args", "by_stdin")
    assert dict(plan.watcher_sockets)["by_all"] == ("s",)


def test_watcher_using_all_sockets_restarts_when_one_is_removed_not_added():
    removed = plan_of(("[socket:spare]\nport = 8009", ""), base=SOCKET_USERS)
    assert removed.sockets_removed == ("spare",)
    assert removed.watchers_changed == ("by_all",)
    assert "~ watcher by_all: socket spare removed (restart)" in removed.describe()
    added = plan_of(("[socket:other]", "[socket:third]\nport = 8003\n[socket:other]"),
                    base=SOCKET_USERS)
    assert added.sockets_added == ("third",) and not added.watchers_changed


def test_watcher_with_own_change_and_socket_change():
    plan = plan_of(("port = 8080", "port = 8081"), ("numprocesses = 2\npriority = 10",
                                                     "numprocesses = 3\npriority = 10"))
    assert plan.watchers_changed == ("web",) and not plan.watchers_resized
    assert "~ watcher web: numprocesses changed; socket web changed (restart)" in plan.describe()


# -- plugins and [circus] ------------------------------------------------------------------------


def test_plugins_added_removed_changed():
    plugins = "\n[plugin:stats]\nuse = a.b.C\n"
    changed = diff(cfg(BASE), cfg(edit(BASE, ("max_retry = 5", "max_retry = 6"))))
    assert changed.plugins_changed == ("flapping",)
    assert changed.plugin_fields == (("flapping", ("options",)),)
    assert "~ plugin flapping: options changed (restart)" in changed.describe()
    added = diff(cfg(BASE), cfg(BASE + plugins))
    assert added.plugins_added == ("stats",) and "+ plugin stats (added)" in added.describe()
    removed = diff(cfg(BASE + plugins), cfg(BASE))
    assert removed.plugins_removed == ("stats",)


def test_plugin_names_are_matched_case_insensitively():
    assert plan_of(("[plugin:flapping]", "[plugin:Flapping]")).empty


def test_circus_options_changed_with_old_and_new_values():
    plan = plan_of(("endpoint = tcp://127.0.0.1:5555", "endpoint = tcp://127.0.0.1:6000"),
                   ("check_delay = 5", "check_delay = 2\ninclude = extra/*.ini"))
    assert plan.circus_changed == (
        ("endpoint", "tcp://127.0.0.1:5555", "tcp://127.0.0.1:6000"),
        ("check_delay", 5.0, 2.0),
        ("include", (), ("extra/*.ini",)),
    )
    # the plugin's process is started with the endpoint and check_delay: it is restarted
    assert plan.describe() == [
        "~ plugin flapping: [circus] endpoint, [circus] check_delay changed (restart)",
        "~ [circus] endpoint: tcp://127.0.0.1:5555 -> tcp://127.0.0.1:6000",
        "~ [circus] check_delay: 5.0 -> 2.0",
        "~ [circus] include: (none) -> extra/*.ini",
    ]
    assert not plan.watchers_changed and not plan.empty
    unrelated = plan_of(("check_delay = 5", "check_delay = 5\nwarmup_delay = 1"))
    assert not unrelated.plugins_changed


def test_circus_option_set_and_unset_values_are_readable():
    plan = plan_of(("check_delay = 5", "check_delay = 5\nhttpd = true\n"
                                        "multicast_endpoint = udp://237.219.251.97:12027"))
    assert plan.describe() == [
        "+ watcher circushttpd (added)",      # httpd = true runs circushttpd as a helper watcher
        "~ [circus] multicast_endpoint: (unset) -> udp://237.219.251.97:12027",
        "~ [circus] httpd: false -> true",
    ]


# -- changed_fields ------------------------------------------------------------------------------


def test_changed_fields_in_schema_order_ignoring_the_name():
    old, new = cfg(BASE), cfg(edit(BASE, ("[watcher:api]\ncmd = api\nnumprocesses = 1",
                                          "[watcher:API]\ncmd = api2\nnumprocesses = 3\n"
                                          "graceful_timeout = 2")))
    a = next(w for w in old.watchers if w.name == "api")
    b = next(w for w in new.watchers if w.name == "API")
    assert changed_fields(a, b) == ("cmd", "numprocesses", "graceful_timeout")
    assert changed_fields(a, a) == ()
    assert changed_fields(old.circus, old.circus) == ()
    with pytest.raises(TypeError):
        changed_fields(a, old.sockets[0])


# -- steps ---------------------------------------------------------------------------------------

ORDER = """
[socket:s]
port = 8000
[socket:gone]
port = 8001
[watcher:low]
cmd = low
priority = 1
[watcher:high]
cmd = high
priority = 9
[watcher:mid_b]
cmd = b
priority = 5
[watcher:mid_a]
cmd = a
priority = 5
[watcher:old]
cmd = old
priority = 7
[watcher:sized]
cmd = sized
numprocesses = 1
[plugin:p]
use = a.b.C
"""


def test_steps_in_dependency_and_priority_order():
    new_text = edit(
        ORDER,
        ("cmd = low", "cmd = low2"), ("cmd = high", "cmd = high2"), ("cmd = b", "cmd = b2"),
        ("cmd = a", "cmd = a2"),
        ("[watcher:old]\ncmd = old\npriority = 7", "[watcher:new]\ncmd = new\npriority = 3"),
        ("[socket:gone]\nport = 8001", "[socket:fresh]\nport = 8002"),
        ("port = 8000", "port = 8005"),
        ("numprocesses = 1", "numprocesses = 3"), ("use = a.b.C", "use = a.b.D"),
    )
    old, new = cfg(ORDER), cfg(new_text + "\n[circus]\ncheck_delay = 1\n")
    steps = diff(old, new).steps(old, new)
    assert [(s.action, s.name) for s in steps] == [
        ("stop_watcher", "low"), ("remove_watcher", "low"),
        ("stop_watcher", "mid_a"), ("remove_watcher", "mid_a"),
        ("stop_watcher", "mid_b"), ("remove_watcher", "mid_b"),
        ("stop_watcher", "old"), ("remove_watcher", "old"),
        ("stop_watcher", "high"), ("remove_watcher", "high"),
        ("apply_circus", "circus"),
        ("remove_socket", "gone"), ("rebind_socket", "s"), ("add_socket", "fresh"),
        ("resize_watcher", "sized"),
        ("add_watcher", "high"), ("start_watcher", "high"),
        ("add_watcher", "mid_a"), ("start_watcher", "mid_a"),
        ("add_watcher", "mid_b"), ("start_watcher", "mid_b"),
        ("add_watcher", "new"), ("start_watcher", "new"),
        ("add_watcher", "low"), ("start_watcher", "low"),
        ("restart_plugin", "p"),
    ]
    details = {(s.action, s.name): s.detail for s in steps}
    assert details[("stop_watcher", "old")] == "removed"
    assert details[("stop_watcher", "low")] == "changed"
    assert details[("resize_watcher", "sized")] == "1 -> 3"
    assert details[("rebind_socket", "s")] == "port 8000 -> 8005"
    assert details[("apply_circus", "circus")] == "check_delay"
    assert details[("restart_plugin", "p")] == "use"


def test_stop_order_uses_old_priorities_and_start_order_new_ones():
    old = cfg("[watcher:a]\ncmd = a\npriority = 1\n[watcher:b]\ncmd = b\npriority = 2\n")
    new = cfg("[watcher:a]\ncmd = a2\npriority = 3\n[watcher:b]\ncmd = b2\npriority = 0\n")
    steps = diff(old, new).steps(old, new)
    assert [(s.action, s.name) for s in steps] == [
        ("stop_watcher", "a"), ("remove_watcher", "a"), ("stop_watcher", "b"),
        ("remove_watcher", "b"), ("add_watcher", "a"), ("start_watcher", "a"),
        ("add_watcher", "b"), ("start_watcher", "b"),
    ]


def test_no_start_step_without_autostart():
    old = cfg("[watcher:a]\ncmd = a\n")
    new = cfg("[watcher:a]\ncmd = a\n[watcher:b]\ncmd = b\nautostart = false\n")
    assert [(s.action, s.name) for s in diff(old, new).steps(old, new)] == [("add_watcher", "b")]


def test_plugins_removed_first_added_last():
    old = cfg("[watcher:a]\ncmd = a\n[plugin:p]\nuse = x.Y\n")
    new = cfg("[watcher:b]\ncmd = b\n[plugin:q]\nuse = x.Y\n")
    assert [(s.action, s.name) for s in diff(old, new).steps(old, new)] == [
        ("remove_plugin", "p"), ("stop_watcher", "a"), ("remove_watcher", "a"),
        ("add_watcher", "b"), ("start_watcher", "b"), ("add_plugin", "q"),
    ]


def test_steps_with_the_wrong_configs_is_a_clear_error():
    old, new = cfg("[watcher:a]\ncmd = a\n"), cfg("[watcher:b]\ncmd = b\n")
    with pytest.raises(ValueError, match="watcher 'b' is not in the configuration"):
        diff(old, new).steps(old, old)


def test_step_actions_are_checked():
    assert Step("add_socket", "s").detail == ""
    assert Step("stop_watcher", "a", "x").to_dict() == {
        "action": "stop_watcher", "name": "a", "detail": "x"}
    with pytest.raises(ValueError):
        Step("explode", "a")
    assert len(STEP_ACTIONS) == 14


# -- wire and text -------------------------------------------------------------------------------


def _busy_plan() -> ReloadPlan:
    new = edit(BASE, ("port = 8080", "port = 8081"), ("cmd = api", "cmd = api2"),
               ("cmd = work\nnumprocesses = 2", "cmd = work\nnumprocesses = 5"),
               ("[socket:admin]", "[socket:admin2]"), ("max_retry = 5", "max_retry = 1"),
               ("check_delay = 5", "check_delay = 5\ninclude = extra/*.ini"),
               ("LANG = C", "LANG = D"))
    return diff(cfg(BASE), cfg(new + "\n[watcher:extra]\ncmd = x\n"))


def test_to_dict_is_json_safe_and_round_trips():
    plan = _busy_plan()
    data = plan.to_dict()
    text = json.dumps(data)
    assert ReloadPlan.from_dict(json.loads(text)) == plan
    assert data["watchers_resized"] == []  # workers changed too (env), so not a resize
    assert data["circus_changed"] == [{"name": "include", "old": [], "new": ["extra/*.ini"]}]
    assert data["sockets_changed"] == [
        {"name": "web", "changes": [{"name": "port", "old": 8080, "new": 8081}]}]
    assert {w["name"]: w["sockets"] for w in data["watchers_changed"]}["web"] == ["web"]
    assert ReloadPlan.from_dict(ReloadPlan().to_dict()).empty


def test_resize_round_trips():
    plan = plan_of(("cmd = work\nnumprocesses = 2", "cmd = work\nnumprocesses = 4"))
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["watchers_resized"] == [{"name": "workers", "old": 2, "new": 4}]
    assert ReloadPlan.from_dict(data) == plan


def test_describe_lines():
    assert _busy_plan().describe() == [
        "+ watcher extra (added)",
        "~ watcher api: cmd, env changed (restart)",
        "~ watcher web: env changed; socket web changed (restart)",
        "~ watcher workers: numprocesses, env changed (restart)",
        "+ socket admin2 (added)",
        "- socket admin (removed)",
        "~ socket web: port 8080 -> 8081",
        "~ plugin flapping: options changed (restart)",
        "~ [circus] include: (none) -> extra/*.ini",
        "~ [env] changed (see the watchers' env)",
    ]


def test_describe_removed_watcher():
    assert plan_of(("[watcher:api]\ncmd = api\nnumprocesses = 1\npriority = 5", "")).describe() == [
        "- watcher api (removed)"]


def test_describe_a_plan_built_by_hand_without_details():
    plan = ReloadPlan(watchers_changed=("a",), sockets_changed=("s",), plugins_changed=("p",))
    assert plan.describe() == [
        "~ watcher a: changed (restart)", "~ socket s: changed",
        "~ plugin p: changed (restart)"]
    assert json.dumps(plan.to_dict())


def test_the_node_name_is_a_circus_option_that_can_change():
    from circus.config import parse_config_text
    from circus.config.diff import diff
    a = parse_config_text("[circus]\nname = before\n[watcher:a]\ncmd = x\n", "x.ini", {})
    b = parse_config_text("[circus]\nname = after\n[watcher:a]\ncmd = x\n", "x.ini", {})
    plan = diff(a, b)
    assert plan.circus_changed == (("name", "before", "after"),)
    assert [s.action for s in plan.steps(a, b)] == ["apply_circus"]
