"""Loading Circus 0.19 INI files: a realistic configuration and the parser's rules."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
from pathlib import Path

import pytest

from circus.config import (
    CircusOptions,
    ConfigError,
    WatcherConfig,
    load_config,
    parse_config_text,
)

HERE = Path(__file__).parent / "config"
REALISTIC = HERE / "realistic" / "circus.ini"
ENVIRON = {"HOME": "/home/op", "STATSD_HOST": "stats.example", "PATH": "/usr/bin"}


PYLIB = HERE / "realistic" / "pylib"     # its hooks' package (they are imported at check)


def load_realistic(strict: bool = False):
    sys.path.insert(0, str(PYLIB))
    try:
        return load_config(str(REALISTIC), ENVIRON, strict=strict)
    finally:
        sys.path.remove(str(PYLIB))


@pytest.fixture(scope="module")
def cfg():
    # the file repeats keys (first definition wins, as 0.19): a warning each, with --no-strict
    return load_realistic(strict=False)


def test_repeated_keys_are_refused_by_default_and_warnings_with_no_strict(cfg):
    repeats = [(os.path.relpath(i.file, REALISTIC.parent), i.line, i.section, i.key)
               for i in cfg.warnings]
    assert repeats == [("circus.ini", 54, "watcher:web", "numprocesses"),
                       ("conf.d/extra.ini", 3, "circus", "check_delay"),
                       ("conf.d/extra.ini", 8, "watcher:web", "numprocesses")]
    assert all("set again (first at" in i.reason for i in cfg.warnings)
    with pytest.raises(ConfigError) as info:
        load_realistic(strict=True)
    assert [(i.line, i.key) for i in info.value.issues] == [(54, "numprocesses"),
                                                             (3, "check_delay"),
                                                             (8, "numprocesses")]
    assert "--no-strict" in str(info.value)


def watcher(cfg, name: str) -> WatcherConfig:
    return next(w for w in cfg.watchers if w.name == name)


def parse(text: str, environ=None, files=None):
    return parse_config_text(text, "main.ini", environ or {}, files)


# -- the realistic configuration -------------------------------------------------------------


def test_files_read_in_order_main_first(cfg):
    base = REALISTIC.parent
    assert cfg.source == str(REALISTIC)
    assert [os.path.relpath(f, base) for f in cfg.files] == [
        "circus.ini", "conf.d/extra.ini", "conf.d/zz.conf", "watchers.d/cron.ini",
        "watchers.d/worker.ini",
    ]


def test_circus_section_typed_and_main_file_wins(cfg):
    c = cfg.circus
    assert c.check_delay == 5.0  # extra.ini's 99 does not override the main file
    assert c.httpd_port == 9090  # but an include may add options
    assert c.umask == 0o22
    assert c.loglevel == "warning"
    assert c.warmup_delay == 0.5
    assert c.statsd is False  # stats_endpoint is set, but statsd=false is given explicitly
    assert c.multicast_endpoint is None
    assert c.include == ("conf.d/extra.ini", "conf.d/*.conf")
    assert c.include_dir == ("watchers.d",)
    assert c.name is None


def test_watchers_sorted_and_empty_sections_skipped(cfg):
    # the [plugin:NAME] sections run as circusd's helper watchers "plugin:NAME" (as 0.19)
    assert [w.name for w in cfg.watchers] == ["cron", "plugin:flapping", "plugin:statsd", "web", "web-admin",
                                              "worker"]


def test_web_watcher_typed_values(cfg):
    web = watcher(cfg, "web")
    assert web.cmd == "/home/op/app/bin/chaussette --fd $(circus.sockets.web)\n--backend meinheld"
    assert web.args == "--workers 2"
    assert web.numprocesses == 3  # first definition wins over the later 7 and the include's 42
    assert web.use_sockets is True and web.copy_env is True
    assert web.warmup_delay == 1.0 and web.priority == 10
    assert web.working_dir == "/srv/app"
    assert (web.uid, web.gid) == ("www-data", 33)
    assert web.stop_signal == signal.SIGQUIT
    assert web.graceful_timeout == 10.5 and web.max_retry == -1
    assert (web.max_age, web.max_age_variance) == (3600.0, 60.0)
    assert web.rlimits == {"nofile": 4096, "core": None}
    assert web.on_demand is False  # added by the include
    assert web.restart_policy == "always" and web.respawn is True


def test_streams_hooks_and_free_form_options(cfg):
    web = watcher(cfg, "web")
    assert web.stdout_stream == {
        "class": "FileStream", "filename": "/var/log/web.log",
        "max_bytes": "1073741824", "backup_count": "3",
    }
    assert web.stderr_stream == {"class": "FileStream", "filename": "/var/log/web.err"}
    assert web.hooks == {
        "before_start": ("myapp.hooks.check_db", True),
        "after_reap": ("myapp.hooks:report", False),
    }
    assert web.options == {"flapping.max_retry": "3", "flapping.window": "2;not a comment"}
    worker = watcher(cfg, "worker")
    assert worker.stderr_stream == {
        "class": "TimedRotatingFileStream", "filename": "/var/log/worker.err",
        "rotate_when": "MIDNIGHT",
    }


def test_env_sections_merge_in_file_order(cfg):
    common = {"PYTHONUNBUFFERED": "1", "APP_HOME": "/home/op/app", "LOG_DIR": "/home/op/logs",
              "GREETING": '"hello"'}  # only a bare "" means empty
    assert cfg.env == common
    assert watcher(cfg, "web").env == {**common, "APP_ROLE": "web", "PORT_BASE": "8000"}
    assert watcher(cfg, "web-admin").env == {**common, "APP_ROLE": "admin", "PORT_BASE": "8000"}
    # [env:web-admin, worker] then conf.d/zz.conf's [env:worker]: the later section wins
    assert watcher(cfg, "worker").env == {**common, "APP_ROLE": "worker", "QUEUE": "jobs"}
    assert watcher(cfg, "cron").env == common


def test_other_watchers(cfg):
    admin = watcher(cfg, "web-admin")
    assert admin.singleton and admin.send_hup
    assert (admin.respawn, admin.restart_policy) == (False, "never")
    assert admin.stdin_socket == "admin"
    worker = watcher(cfg, "worker")
    assert worker.cmd == "celery worker -n $(circus.wid)@%h"  # spawn-time names stay verbatim
    assert (worker.restart_policy, worker.respawn) == ("on-failure", True)
    assert (worker.backoff_initial, worker.backoff_max, worker.min_uptime) == (0.5, 60.0, 2.0)
    assert worker.stop_signal == signal.SIGINT and worker.virtualenv == "/srv/venv"
    cron = watcher(cfg, "cron")
    assert cron.autostart is False and cron.shell and cron.shell_args == "-e"
    assert cron.sockets == ("web", "metrics") and cron.close_child_stdout
    assert cron.hooks == {"extended_stats": ("myapp.stats.extra", False)}


def test_sockets(cfg):
    web, = (s for s in cfg.sockets if s.name == "web")
    assert [s.name for s in cfg.sockets] == ["admin", "metrics", "web"]
    assert (web.host, web.port, web.backlog, web.family) == ("0.0.0.0", 8080, 512, "AF_INET")
    admin, metrics = cfg.sockets[0], cfg.sockets[1]
    assert (admin.path, admin.family, admin.umask, admin.replace) == (
        "/tmp/admin.sock", "AF_UNIX", 22, True)  # socket umask is decimal, as in 0.19
    assert (metrics.port, metrics.type, metrics.proto) == (0, "SOCK_DGRAM", "")


def test_plugins(cfg):
    flapping, statsd = cfg.plugins
    assert (flapping.name, flapping.use, flapping.priority) == (
        "flapping", "circus.plugins.flapping.Flapping", 5)
    assert flapping.options == {"retry_in": "3", "max_retry": "2"}
    assert statsd.priority == 1
    assert statsd.options == {"host": "stats.example", "application_name": "example"}


def test_no_dunder_name_anywhere(cfg):
    def walk(value):
        if dataclasses.is_dataclass(value):
            for f in dataclasses.fields(value):
                yield f.name
                yield from walk(getattr(value, f.name))
        elif isinstance(value, dict):
            for key, item in value.items():
                yield key
                yield from walk(item)
        elif isinstance(value, (tuple, list)):
            for item in value:
                yield from walk(item)
        else:
            yield value

    assert not any("__name__" in str(item) for item in walk(cfg))


def test_config_is_frozen(cfg):
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.circus.endpoint = "tcp://x:1"  # type: ignore[misc]


# -- parser rules ----------------------------------------------------------------------------


def test_defaults_without_circus_section():
    cfg = parse("[watcher:a]\ncmd = a\n")
    assert cfg.circus == CircusOptions()
    assert cfg.circus.endpoint == "tcp://127.0.0.1:5555"
    assert cfg.circus.check_delay == 5.0 and cfg.circus.multicast_endpoint is None
    w = cfg.watchers[0]
    assert (w.numprocesses, w.args, w.stop_signal, w.graceful_timeout) == (1, "", signal.SIGTERM, 30.0)
    assert (w.restart_policy, w.backoff_initial, w.backoff_max, w.min_uptime) == ("always", 0.1, 30.0, 1.0)
    assert w.close_child_stdin and not w.close_child_stdout and w.sockets == ()
    assert w.env == {} and w.stdout_stream is None and w.check_flapping


def test_comments_rem_lines_and_inline_comments():
    cfg = parse(
        "# comment\n; comment\nrem comment\nREM also\n[watcher:a]\n"
        "  # indented comment\n"
        "cmd = run --x=1 ; trailing\n"
        "args = a;b # not a comment\n"
    )
    assert cfg.watchers[0].cmd == "run --x=1"
    assert cfg.watchers[0].args == "a;b # not a comment"


def test_continuation_lines_and_blank_lines_inside_values():
    cfg = parse("[watcher:a]\ncmd = one\n  two ; comment\n\n  three\nargs = x\n")
    assert cfg.watchers[0].cmd == "one\ntwo\n\nthree"


def test_first_definition_wins_case_insensitively_and_repeated_header_extends():
    text = ("[watcher:a]\ncmd = first\nNumProcesses = 2\n"
            "[watcher:b]\ncmd = b\n"
            "[watcher:a]\ncmd = second\nnumprocesses = 5\npriority = 3\n")
    cfg = parse_config_text(text, "main.ini", {}, strict=False)
    a = cfg.watchers[0]
    assert (a.cmd, a.numprocesses, a.priority) == ("first", 2, 3)
    # 0.19 did so silently: each repeat is a warning with --no-strict, an error by default
    assert [(i.line, i.key) for i in cfg.warnings] == [(6, None), (7, "cmd"), (8, "numprocesses")]
    assert "first at main.ini:3" in cfg.warnings[2].reason      # NumProcesses, another case
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert [(i.line, i.key) for i in info.value.issues] == [(6, None), (7, "cmd"),
                                                             (8, "numprocesses")]


def test_empty_quotes_colon_delimiter_and_booleans_any_case():
    cfg = parse('[watcher:a]\ncmd : run\nargs = ""\nshell = YeS\ncopy_env = On\nautostart = FALSE\n')
    a = cfg.watchers[0]
    assert (a.cmd, a.args, a.shell, a.copy_env, a.autostart) == ("run", "", True, True, False)


def test_env_substitution_everywhere_case_insensitive_and_unknown_verbatim():
    text = (
        "[circus]\nendpoint = tcp://$(circus.env.HOST):5555\ninsecure = true\n"
        "[env]\nport = 80\n"
        "[env:a]\nPORT = 81\n"
        "[watcher:a]\ncmd = serve ((circus.env.port)) $(CIRCUS.ENV.HOST) $(circus.env.nope)\n"
        "[watcher:b]\ncmd = serve $(circus.env.PORT) $(circus.wid)\n"
    )
    cfg = parse_config_text(text, "main.ini", {"HOST": "10.0.0.1", "PORT": "1"}, strict=False)
    assert cfg.circus.endpoint == "tcp://10.0.0.1:5555"
    assert cfg.watchers[0].cmd == "serve 81 10.0.0.1 $(circus.env.nope)"
    assert cfg.watchers[1].cmd == "serve 80 $(circus.wid)"
    (unset,) = cfg.warnings   # left as written, as 0.19 did: a warning (an error by default)
    assert (unset.line, unset.key) == (9, "cmd") and "nope is set neither" in unset.reason


def test_dollar_vars_in_env_values():
    cfg = parse(
        "[env]\nA = $HOME:${HOME}:${lower}:$MISSING:$lower:${MISSING}x\n[watcher:w]\ncmd = w\n",
        {"HOME": "/h", "lower": "l"},
    )
    assert cfg.env == {"A": "/h:/h:l::$lower:x"}
    assert cfg.watchers[0].env == cfg.env


def test_env_keys_keep_case_and_env_patterns_are_case_insensitive():
    cfg = parse("[env:WEB]\nPath = /x\npath = /y\n[watcher:web]\ncmd = w\n")
    assert cfg.watchers[0].env == {"Path": "/x", "path": "/y"}


def test_multicast_empty_means_off_and_explicit_stats_endpoint_turns_statsd_on():
    cfg = parse("[circus]\nmulticast_endpoint =\nstats_endpoint = ipc:///tmp/stats\n")
    assert cfg.circus.multicast_endpoint is None and cfg.circus.statsd is True
    cfg = parse("[circus]\nmulticast_endpoint = udp://237.219.251.97:12027\nname = node1\n")
    assert cfg.circus.multicast_endpoint == "udp://237.219.251.97:12027"
    assert cfg.circus.name == "node1"


def test_signals_by_name_number_and_offset():
    def stop(value: str) -> int:
        return parse(f"[watcher:a]\ncmd = a\nstop_signal = {value}\n").watchers[0].stop_signal

    assert stop("term") == stop("SIGTERM") == stop("Term") == stop("15") == signal.SIGTERM
    assert stop("SIGRTMIN+1") == signal.SIGRTMIN + 1


def test_rlimits_and_uid_numbers():
    cfg = parse("[watcher:a]\ncmd = a\nrlimit_NOFILE = 10\nrlimit_core = unlimited\nuid = 1000\n")
    assert cfg.watchers[0].rlimits == {"nofile": 10, "core": None}
    assert cfg.watchers[0].uid == 1000


def test_restart_policy_derives_respawn():
    cfg = parse("[watcher:a]\ncmd = a\nrestart_policy = Never\n")
    assert (cfg.watchers[0].restart_policy, cfg.watchers[0].respawn) == ("never", False)


def test_unix_socket_and_glob_include_matching_itself_is_fine():
    files = {"socks/a.ini": "[socket:a]\npath = /run/a.sock\n"}
    cfg = parse("[circus]\ninclude = *.ini socks/*.ini nothing-*.ini\n", files=files)
    assert cfg.sockets[0].family == "AF_UNIX"
    assert cfg.files == ("main.ini", "socks/a.ini")


def test_nested_includes_resolve_against_the_including_file(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "main.ini").write_text("[circus]\ninclude = sub/one.ini\n")
    (tmp_path / "sub" / "one.ini").write_text("[circus]\ninclude_dir = deeper\n[watcher:one]\ncmd = 1\n")
    (tmp_path / "sub" / "deeper" / "two.ini").write_text("[watcher:two]\ncmd = 2\n")
    cfg = load_config(str(tmp_path / "main.ini"), {})
    assert [w.name for w in cfg.watchers] == ["one", "two"]


def test_unreadable_main_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / "nope.ini"), {})
    issue, = info.value.issues
    assert issue.file == str(tmp_path / "nope.ini") and issue.line is None
    assert "No such file" in issue.reason


def test_env_pattern_sections_only_feed_watcher_sections():
    cfg = parse(
        "[env]\nPORT = 80\nBASE = $(circus.env.HOME)/srv\n[env:web]\nPORT = 81\n"
        "[socket:s]\nport = $(circus.env.PORT)\n"
        "[watcher:web]\ncmd = serve $(circus.env.PORT) $(circus.env.BASE)\n",
        {"HOME": "/h"},
    )
    assert cfg.sockets[0].port == 80
    assert cfg.watchers[0].cmd == "serve 81 /h/srv"
    assert cfg.env == {"PORT": "80", "BASE": "/h/srv"}


def test_command_hooks_may_contain_commas_and_take_the_ignore_flag():
    from circus.config import parse_config_text
    cfg = parse_config_text("[watcher:w]\ncmd = x\nhooks.before_stop = exec:/bin/drain a,b, true\n"
                            "hooks.after_stop = exec:/bin/echo x,y\n", "x.ini", {})
    assert cfg.watchers[0].hooks == {"before_stop": ("exec:/bin/drain a,b", True),
                                     "after_stop": ("exec:/bin/echo x,y", False)}
