"""Real Circus 0.19 configuration files (tests/config/realworld/, sources in its README.rst),
each checked as ``circusd --check-config`` does, plain and with ``--no-strict``.

The expected outcome of every file is in ``OUTCOMES`` with the reason it is right:

- ``LOADS``: loads as it is, in both modes;
- ``warns(...)``: refused by default with exactly these issues, each of them something Circus
  0.19 accepted without a word; ``--no-strict`` loads the file with them as warnings (and
  ``dropped`` watchers left out, as 0.19 dropped them at boot);
- ``refused(...)``: refused in both modes (what is wrong does not load), ``--no-strict``
  reporting the lenient issues as warnings.

``test_compat_circus019.py`` runs the real Circus 0.19 on the same files and compares.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from circus.cli import circusd
from circus.config import ConfigError, load_config
from circus.config import loader

CORPUS = Path(__file__).parent / "config" / "realworld"
#: the environment every file is checked in (HOME is in some files; nothing else they name)
ENVIRON = {"HOME": "/home/test", "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
HTTP_OBSERVER = importlib.util.find_spec("circus.plugins.http_observer") is not None


@dataclass(frozen=True)
class Outcome:
    kind: str                                     # "loads" | "warns" | "refused"
    errors: tuple = ()                            # (line, key) refused in both modes
    lenient: tuple = ()                           # (line, key, "ignored"|"dropped")
    dropped: tuple = ()                           # watchers left out with --no-strict
    why: str = field(default="", compare=False)


LOADS = Outcome("loads")


def warns(*lenient, dropped=()) -> Outcome:
    return Outcome("warns", lenient=tuple(lenient), dropped=tuple(dropped))


def refused(*errors, lenient=()) -> Outcome:
    return Outcome("refused", errors=tuple(errors), lenient=tuple(lenient))


I, D = "ignored", "dropped"

OUTCOMES: dict[str, tuple[Outcome, str]] = {
    # -- Circus's own files --------------------------------------------------------------------
    "circus-tent/circus/circus/circus.ini": (
        warns((3, "num-workers", I), (4, "cmd", I), (5, "args", I)),
        "a pre-0.1 file: watcher keys in [circus], which 0.19 ignores; no watcher at all"),
    "circus-tent/circus/circus/tests/config/empty_include.ini": (
        warns((3, "include_dir", I)),
        "include_dir names a directory that is not there: 0.19 only logs a warning"),
    "circus-tent/circus/circus/tests/config/env_section.ini": (
        LOADS, "[env] and [env:PATTERNS] sections, in any order, with fnmatch patterns"),
    "circus-tent/circus/circus/tests/config/env_sensecase.ini": (
        LOADS, "environment variable names keep their case"),
    "circus-tent/circus/circus/tests/config/find_hook.ini": (
        warns((1, "cmd", D), dropped=["foo"]),
        "a watcher without cmd: 0.19 drops it at boot (its hook is not even imported)"),
    "circus-tent/circus/circus/tests/config/find_hook_in_pythonpath.ini": (
        warns((1, "cmd", D), dropped=["foo"]), "the same, with copy_env and a PYTHONPATH"),
    "circus-tent/circus/circus/tests/config/find_plugin_in_pythonpath.ini": (
        refused((3, "use")),
        "the plugin module is a Circus test fixture that is not here: 0.19 refuses the file too "
        "(a plugin that does not import is an error, not a stopped plugin at run time)"),
    "circus-tent/circus/circus/tests/config/issue1088.ini": (LOADS, "a float graceful_timeout"),
    "circus-tent/circus/circus/tests/config/issue1119.ini": (
        warns((6, "include", I), (7, "include_dir", I)),
        "include/include_dir written in a watcher section: 0.19 keeps them as unused options"),
    "circus-tent/circus/circus/tests/config/issue1119_included.ini": (
        warns((1, None, I)), "a part: an [included] section, a kind 0.19 skips"),
    "circus-tent/circus/circus/tests/config/issue1119_included/bar/baz.ini": (
        warns((1, None, I)), "a part, the same"),
    "circus-tent/circus/circus/tests/config/issue1119_included/foo.ini": (
        warns((1, None, I)), "a part, the same"),
    "circus-tent/circus/circus/tests/config/issue310.ini": (
        LOADS, "stats_endpoint and statsd; a socket named in args"),
    "circus-tent/circus/circus/tests/config/issue546.ini": (LOADS, "a socket name with a '-'"),
    "circus-tent/circus/circus/tests/config/issue567.ini": (
        warns((2, "cmd", I)),
        "$(circus.env.GRAVITY) of a variable set nowhere: 0.19 leaves the text as written"),
    "circus-tent/circus/circus/tests/config/issue594.ini": (LOADS, "stop_signal = INT"),
    "circus-tent/circus/circus/tests/config/issue665.ini": (LOADS, "shell and shell_args"),
    "circus-tent/circus/circus/tests/config/issue680.ini": (
        LOADS, "check_delay = -1 (0.19: no periodic check) and priorities: valid 0.19, accepted"),
    "circus-tent/circus/circus/tests/config/reload_addsockets.ini": (LOADS, "check_delay = -1"),
    "circus-tent/circus/circus/tests/config/reload_base.ini": (LOADS, "check_delay = -1"),
    "circus-tent/circus/circus/tests/config/reload_changewatchers.ini": (
        LOADS, "check_delay = -1"),
    "circus-tent/circus/circus/tests/config/reload_statsd.ini": (LOADS, "check_delay = -1"),
    "circus-tent/circus/circus/tests/config/reuseport.ini": (LOADS, "so_reuseport sockets"),
    "circus-tent/circus/circus/tests/config/test_web.ini": (LOADS, "a plain watcher"),
    "circus-tent/circus/circus/tests/config/virtualenv.ini": (
        warns((5, "virtualenv", D), dropped=["test"]),
        "virtualenv without copy_env: 0.19's Watcher() raises, the watcher is dropped at boot"),
    "circus-tent/circus/debian/circusd.ini": (
        warns((6, "include_dir", I)),
        "Debian's packaged file names /etc/circus/conf.d, which is not there on this machine"),
    "circus-tent/circus/examples/example1.ini": (LOADS, "httpd, rlimits, the flapping plugin"),
    "circus-tent/circus/examples/example10.ini": (
        warns((5, "cmd", I), (6, "hooks.before_spawn", D), dropped=["vars"]),
        "a variable its hook sets (set nowhere in the file) and a hook module of Circus's "
        "source tree, not importable here: 0.19 drops the watcher too"),
    "circus-tent/circus/examples/example2.ini": (
        LOADS, "stdout_stream.refresh_time: documented by 0.19 for every stream, accepted"),
    "circus-tent/circus/examples/example3.ini": (
        LOADS, "flapping.active / flapping.retry_in: the flapping plugin's per-watcher options"),
    "circus-tent/circus/examples/example5.ini": (LOADS, "httpd and a chaussette socket"),
    "circus-tent/circus/examples/example6.ini": (LOADS, "singleton, StdoutStream"),
    "circus-tent/circus/examples/example7.ini": (LOADS, "a unix socket, copy_path"),
    "circus-tent/circus/examples/example9.ini": (
        LOADS, "ResourceWatcher with its old 'service' option"),
    "circus-tent/circus/examples/max_age.ini": (LOADS, "max_age and max_age_variance"),
    "circus-tent/circus/examples/node1.ini": (LOADS, "httpd = False, rlimits"),
    "circus-tent/circus/examples/plugin_watchdog.ini": (
        LOADS, "the WatchDog plugin with quoted regexes"),
    "circus-tent/circus/examples/redirect_serve.ini": (LOADS, "two sockets on 0.0.0.0"),
    "circus-tent/circus/examples/uwsgi_lossless_reload.ini": (
        warns((5, "hooks.after_spawn", D), (6, "hooks.before_signal", D),
              (7, "hooks.extended_stats", D), dropped=["web"]),
        "its hooks live in Circus's source tree (examples/), not importable here: 0.19 drops "
        "the watcher at boot, and so does --no-strict; by default it is an error at check"),
    # -- other projects ------------------------------------------------------------------------
    "0xiso/docker-misp/conf/circus.ini": (LOADS, "FancyStdoutStream, respawn = false"),
    "APSL/docker-lamp/conf/circus.ini": (LOADS, "singletons, [env:apache]"),
    "CenterForOpenScience/modular-file-renderer/circus.ini": (
        LOADS, "%% in time_format (no interpolation, as 0.19) and a cmd with ';'"),
    "DNAdiversity/ConferenceAbstractManagement/circusd.ini": (LOADS, "a socket on port 80"),
    "KosyanMedia/inhale/circus.ini": (LOADS, "$(circus.env.x) of lower-case [env] keys"),
    "Leits/circus_logging/circus.ini": (
        warns((10, "stdout_stream.class", D), (11, "stderr_stream.class", D),
              dropped=["circus_logger"]),
        "a journald stream class that is not installed here: 0.19 drops the watcher"),
    "Lothiraldan/feedlight/circus.ini": (LOADS, "a socket section before its watcher"),
    "MOZI-AI/annotation-service/circus.ini": (LOADS, "working_dir from [env]"),
    "Painted-Fox/docker-discourse/circus.ini": (
        warns((2, "RUBY_GC_MALLOC_LIMIT", I)),
        "an environment variable written into the watcher section: 0.19 ignores it (it never "
        "reaches the process; the hint says [env:discourse])"),
    "Rodney-Smith/fermentrack/circus.ini": (
        LOADS, "refresh_time on FileStream, $(circus.env.HOME), an upper-case socket name"),
    "SalishSeaCast/salishsea-site/circus.ini": (
        refused((5, "loggerconfig"), lenient=[(5, "loggerconfig", I)]),
        "loggerconfig names a file under a variable set nowhere: 0.19 stops at the start "
        "(cannot read it), so this is an error in both modes"),
    "UPCnet/maxserver.old/circus.ini": (LOADS, "debug, sockets on 0.0.0.0"),
    "abilian/foss-directory/circus.ini": (
        LOADS, "a relative ipc:// endpoint and a cmd on continuation lines"),
    "aether-platform/circus-mcp/circus.ini": (LOADS, "only [circus], with comments in UTF-8"),
    "akx/nicen/circus.ini": (LOADS, "plain watchers"),
    "allanlei/docker-circus/circus.ini": (
        warns((3, "host", I), (4, "statsd_host", I)),
        "host and statsd_host in [circus]: not 0.19 options, 0.19 ignores them"),
    "beevelop/docker-taiga-back/circus.ini": (LOADS, "uid, FileStreams, [env:taiga]"),
    "benoitbryon/cashmere/circus.ini": (LOADS, "plain watchers"),
    "btimby/convert-document/circusd.ini": (
        (warns((10, "stdin_stream.class", I), (20, "stdin_stream.class", I),
               (32, "stdin_stream.class", I))
         if HTTP_OBSERVER else
         refused((36, "use"), lenient=[(10, "stdin_stream.class", I),
                                       (20, "stdin_stream.class", I),
                                       (32, "stdin_stream.class", I)])),
        "stdin_stream.class is a typo that keeps its dot (0.19 kept it as an unused option); "
        "the HttpObserver plugin must import (an error until circus.plugins.http_observer "
        "exists, as 0.19 refuses a plugin that does not import)"),
    "ckatzer4/docker-F.U.N.K.O./circusd.ini": (LOADS, "refresh_time on four FileStreams"),
    "cloudron-io/taiga-app/circus.ini": (LOADS, "leading blank lines, PATH=...:$PATH"),
    "corydodt/circus-base/circus.ini": (
        warns((2, "include_dir", I)), "include_dir of a directory its Docker image creates"),
    "corydodt/nginx-proximation/circus.ini": (LOADS, "':' as the delimiter"),
    "deeplearningparis/dl-machine/circus.ini": (LOADS, "uid/gid, streams, httpd on 0.0.0.0"),
    "e-gun/HipparchiaNIX/circusd.ini": (LOADS, "stop_signal = QUIT, send_hup"),
    "e20co/falcon-demo/circusd.ini": (
        warns((3, "numproceses", I)),
        "a typo: 0.19 silently runs 1 process instead of 4; strict says 'did you mean'"),
    "gsterjov/docker-circus/circus.ini": (LOADS, "an include glob that matches nothing"),
    "helmi03/docker-tilestache/circus.ini": (LOADS, "a chaussette socket"),
    "jezdez/caniusepython3.com/circus.ini": (
        warns((3, "args", I)),
        "$(circus.sockets.web) names no socket (it is [socket:ciupy3_web]): 0.19 passes the "
        "text as written"),
    "mozilla/geoip_server/conf/circus.ini": (
        refused((6, "endpoint")),
        "tcp://0.0.0.0 without CURVE: 0.19 loads it, ours refuses an unauthenticated endpoint "
        "reachable from other machines in both modes (documented security)"),
    "walkr/tornado-base/conf/circus.ini": (LOADS, "watcher names with a dot"),
}


def corpus_files() -> list[str]:
    return sorted(str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*.ini"))


def test_every_corpus_file_has_an_expected_outcome():
    assert sorted(OUTCOMES) == corpus_files()
    assert len(OUTCOMES) >= 40


@pytest.fixture(scope="module")
def memo_resolve():
    """Each file's dotted paths are imported for real, once (the test loads it four times)."""
    seen: dict = {}
    real = loader.resolve_refs

    def resolve(refs, **kw):
        key = tuple((r.kind, r.target, r.paths) for r in refs)
        if key not in seen:
            seen[key] = real(refs, **kw)
        return seen[key]

    loader.resolve_refs = resolve
    yield
    loader.resolve_refs = real


def _load(path: Path, strict: bool):
    try:
        return load_config(str(path), ENVIRON, strict=strict), None
    except ConfigError as exc:
        return None, exc


def _lenient(issues) -> list[tuple]:
    return [(i.line, i.key, i.lenient) for i in issues if i.lenient]


@pytest.mark.parametrize("name", sorted(OUTCOMES))
def test_corpus_file_plain_and_no_strict(name, memo_resolve, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)   # loggerconfig is relative to circusd's working directory
    expected, why = OUTCOMES[name]
    path = CORPUS / name
    strict, strict_error = _load(path, strict=True)
    lenient, lenient_error = _load(path, strict=False)
    if expected.kind == "loads":
        assert strict_error is None, f"{why}\n{strict_error}"
        assert strict.warnings == () and lenient.warnings == ()
        assert strict.watchers == lenient.watchers
        return
    assert strict_error is not None, why
    hard = [(i.line, i.key) for i in strict_error.issues if not i.lenient]
    assert hard == list(expected.errors), strict_error
    assert _lenient(strict_error.issues) == list(expected.lenient), strict_error
    if expected.kind == "refused":
        assert lenient_error is not None, why
        assert [(i.line, i.key) for i in lenient_error.issues] == list(expected.errors)
        assert _lenient(lenient_error.warnings) == list(expected.lenient)
        return
    assert lenient_error is None, f"{why}\n{lenient_error}"
    assert _lenient(lenient.warnings) == list(expected.lenient)
    names = {w.name for w in lenient.watchers}
    assert not names & set(expected.dropped)
    strict_names = {i.section.partition(":")[2] for i in strict_error.issues
                    if i.lenient == D and i.section}
    assert strict_names == set(expected.dropped)


REPRESENTATIVE = ["e20co/falcon-demo/circusd.ini", "circus-tent/circus/examples/example2.ini",
                  "mozilla/geoip_server/conf/circus.ini",
                  "circus-tent/circus/examples/uwsgi_lossless_reload.ini"]


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_check_config_as_the_operator_runs_it(name, memo_resolve, monkeypatch, tmp_path, capsys):
    """``circusd --check-config [--no-strict] FILE``: exit codes and what it prints."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(os, "environ", dict(ENVIRON))
    expected, _ = OUTCOMES[name]
    path = str(CORPUS / name)
    code = circusd.main(["--check-config", path])
    out, err = capsys.readouterr()
    if expected.kind == "loads":
        assert code == 0 and out.startswith(f"configuration: {path}") and err == ""
    else:
        assert code == 2 and out == ""
        lines = err.splitlines()
        assert lines[0] == "circusd: invalid configuration"
        problems = [line for line in lines[1:] if line.startswith(path)]
        assert len(problems) == len(expected.errors) + len(expected.lenient)
        assert all(f"{path}:" in line for line in problems)
        has_hint = any("--no-strict" in line for line in lines)
        assert has_hint == bool(expected.lenient)
    code = circusd.main(["--check-config", "--no-strict", path])
    out, err = capsys.readouterr()
    warnings = [line for line in err.splitlines() if line.startswith("circusd: warning: ")]
    assert len(warnings) == len(expected.lenient)
    if expected.kind == "refused":
        assert code == 2 and out == ""
    else:
        assert code == 0 and out.startswith(f"configuration: {path}")
        for line in warnings:
            assert f"{path}:" in line and ("as Circus 0.19 did" in line)
