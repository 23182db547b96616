"""Tier 3: the real Circus 0.19 client tools (from PyPI, in their own virtualenv) against our
circusd. Nothing of 0.19 is imported into our interpreter: its tools run in their own venv, from
a directory where our package cannot shadow theirs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.real

ROOT = Path(__file__).parent.parent
PEER = Path(os.environ.get("CIRCUS019_VENV", ROOT / ".cache" / "circus-0.19.0"))


@pytest.fixture(scope="session")
def circus019() -> Path:
    """A virtualenv with circus==0.19.0 (created once, cached in .cache/)."""
    python = PEER / "bin" / "python"
    probe = [str(python), "-I", "-c", "import circus; assert circus.__version__ == '0.19.0'"]
    if not python.exists() or subprocess.run(probe, capture_output=True, cwd="/").returncode:
        PEER.parent.mkdir(parents=True, exist_ok=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(PEER)
        r = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "circus==0.19.0"],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"cannot install circus 0.19.0 from PyPI:\n{r.stdout}\n{r.stderr}"
    return PEER


CONFIG = """
[circus]
endpoint = ipc://{dir}/c.sock
pubsub_endpoint = ipc://{dir}/p.sock

[watcher:sleeper]
cmd = sleep 3650
numprocesses = 2
graceful_timeout = 2
"""


def ctl019(peer: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """0.19's circusctl on ``ipc://{tmp_path}/c.sock``."""
    return subprocess.run([str(peer / "bin" / "circusctl"), "--endpoint", f"ipc://{tmp_path}/c.sock",
                           "--timeout", "10", *args], capture_output=True, text=True, timeout=60,
                          cwd="/", env={**os.environ, "PYTHONNOUSERSITE": "1"})


def test_circusctl_0_19_drives_our_circusd(circus019, circusd, tmp_path):
    d = circusd(CONFIG.format(dir=tmp_path))
    d.wait(lambda: len(d.children("sleep 3650")) == 2, what="2 workers")
    run = lambda *a: ctl019(circus019, tmp_path, *a)          # noqa: E731
    r = run("list")
    assert (r.returncode, r.stdout.strip()) == (0, "sleeper"), r.stderr
    r = run("status")
    assert (r.returncode, r.stdout.strip()) == (0, "sleeper: active")
    r = run("status", "sleeper")
    assert (r.returncode, r.stdout.strip()) == (0, "active")
    r = run("incr", "sleeper", "--waiting")
    assert (r.returncode, r.stdout.strip()) == (0, "3")
    r = run("numprocesses", "sleeper")
    assert (r.returncode, r.stdout.strip()) == (0, "3")
    r = run("decr", "sleeper", "2", "--waiting")
    assert (r.returncode, r.stdout.strip()) == (0, "1")
    r = run("restart", "sleeper", "--waiting")
    assert (r.returncode, r.stdout.strip()) == (0, "ok")
    r = run("stop", "sleeper", "--waiting")
    assert r.returncode == 0 and run("status", "sleeper").stdout.strip() == "stopped"
    r = run("start", "sleeper", "--waiting")
    assert r.returncode == 0 and len(d.children("sleep 3650")) == 1
    r = run("set", "sleeper", "graceful_timeout", "5")
    assert r.returncode == 0
    r = run("get", "sleeper", "graceful_timeout")
    assert r.returncode == 0 and "graceful_timeout: 5" in r.stdout
    r = run("status", "nope")
    assert r.returncode == 3                                       # 0.19's exit code for errors
    r = run("stats", "sleeper")
    assert r.returncode == 0 and "sleep" in r.stdout
    r = run("quit", "--waiting")
    assert r.returncode == 0
    assert d.proc.wait(15) == 0


def test_circus_client_0_19_python_api(circus019, circusd, tmp_path):
    d = circusd(CONFIG.format(dir=tmp_path))
    d.wait(lambda: len(d.children("sleep 3650")) == 2, what="2 workers")
    script = textwrap.dedent(f"""
        from circus.client import CircusClient, make_message
        from circus.consumer import CircusConsumer
        client = CircusClient(endpoint="ipc://{tmp_path}/c.sock", timeout=10)
        r = client.call(make_message("list", name="sleeper"))
        assert r["status"] == "ok" and len(r["pids"]) == 2, r
        r = client.send_message("incr", name="sleeper", waiting=True)
        assert r["numprocesses"] == 3, r
        r = client.send_message("status", name="sleeper")
        assert r["status"] == "active", r
        client.stop()
        print("ok")
    """)
    r = subprocess.run([str(circus019 / "bin" / "python"), "-I", "-c", script], capture_output=True,
                       text=True, timeout=60, cwd="/")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr
    d.stop()


# -- real Circus 0.19 configuration files (tests/config/realworld) -------------------------------

import re  # noqa: E402

from circus.config import ConfigError, load_config  # noqa: E402

import compat019  # noqa: E402
from test_config_realworld import CORPUS, ENVIRON, HTTP_OBSERVER  # noqa: E402

#: files 0.19 loads that ours refuses in both modes, and why (docs/differences.rst)
OURS_REFUSES = {
    "mozilla/geoip_server/conf/circus.ini": "reachable from other machines and has no CURVE",
    **({} if HTTP_OBSERVER else {
        "btimby/convert-document/circusd.ini": "No module named 'circus.plugins.http_observer'"}),
}
#: 0.19 opens a FileStream's file when it reads the configuration and drops the watcher when it
#: cannot (a log directory of the target machine); ours opens it when the watcher starts
ENVIRONMENTAL = re.compile(r"^(FileNotFoundError|PermissionError|IsADirectoryError): ")


@pytest.fixture(scope="module")
def corpus019(circus019, tmp_path_factory) -> dict[str, dict]:
    """0.19's view of every corpus file (one 0.19 interpreter for all, a fork per file)."""
    cwd = tmp_path_factory.mktemp("probe")
    return compat019.run_probe(circus019, sorted(CORPUS.rglob("*.ini")), cwd, dict(ENVIRON),
                               CORPUS)


def test_what_circus_0_19_loads_ours_loads_and_reads_the_same(corpus019, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    compared = 0
    for name, result in sorted(corpus019.items()):
        if result["error"] and result["error"].startswith("get_config"):
            continue                                 # 0.19 could not even read it
        try:
            config = load_config(str(CORPUS / name), ENVIRON, strict=False)
        except ConfigError as exc:
            if name in OURS_REFUSES:
                assert result["ok"] and OURS_REFUSES[name] in str(exc), name
                continue
            # 0.19 fails on it later (its logger configuration, a plugin that does not import)
            assert not result["ok"], f"0.19 loads {name}, ours refuses it:\n{exc}"
            assert result["error"].startswith(("loggerconfig", "Arbiter.load_from_config")), name
            continue
        assert name not in OURS_REFUSES
        dropped = compat019.dropped_by_0_19(result)
        view = compat019.theirs(result)
        for watcher, why in dropped.items():
            if not ENVIRONMENTAL.match(why):         # dropped by both
                del view["watchers"][watcher]
        assert compat019.differences(view, compat019.ours(config)) == [], name
        compared += 1
    assert compared >= 55


BOOTED = ["circus-tent/circus/circus/tests/config/reload_base.ini",
          "circus-tent/circus/circus/tests/config/issue680.ini",
          "circus-tent/circus/circus/tests/config/reload_statsd.ini",
          "circus-tent/circus/circus/tests/config/test_web.ini"]


def local_copy(name: str, tmp: Path) -> str:
    """The corpus file with only its endpoints moved to ipc:// in `tmp`, multicast off and its
    sockets on port 0 (tests never take fixed ports); everything else as written."""
    text, section = [], None
    for line in (CORPUS / name).read_text().splitlines():
        header = re.fullmatch(r"\s*\[(.+)\]\s*", line)
        if header:
            section = header.group(1)
            text.append(line)
            if section == "circus":
                text += [f"endpoint = ipc://{tmp}/c.sock", f"pubsub_endpoint = ipc://{tmp}/p.sock",
                         f"stats_endpoint = ipc://{tmp}/s.sock", "multicast_endpoint = "]
            continue
        key = line.partition("=")[0].strip()
        if section == "circus" and key in ("endpoint", "pubsub_endpoint", "stats_endpoint"):
            continue
        if section and section.startswith("socket:") and key == "port":
            line = "port = 0"
        text.append(line)
    if not any(line.strip() == "[circus]" for line in text):
        text = ["[circus]", f"endpoint = ipc://{tmp}/c.sock", f"pubsub_endpoint = ipc://{tmp}/p.sock",
                "multicast_endpoint = ", *text]
    return "\n".join(text) + "\n"


def ctl_json(peer: Path, tmp: Path, *args: str) -> dict:
    r = ctl019(peer, tmp, "--json", *args)   # (its --endpoint is ipc://{tmp}/c.sock)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def observe(peer: Path, tmp: Path) -> dict:
    watchers = ctl_json(peer, tmp, "list")["watchers"]
    sockets = ctl_json(peer, tmp, "listsockets")["sockets"]
    options = ctl_json(peer, tmp, "globaloptions")["options"]
    return {
        "list": sorted(watchers),
        "status": ctl_json(peer, tmp, "status")["statuses"],
        "pids": {w: len(ctl_json(peer, tmp, "list", w)["pids"]) for w in watchers},
        "listsockets": sorted((s["name"], s["host"], s["backlog"]) for s in sockets),
        "globaloptions": {k: options[k] for k in ("check_delay", "statsd", "warmup_delay",
                                                  "httpd", "httpd_host", "httpd_port", "debug")
                          if k in options},
    }


def settled(peer: Path, tmp: Path, deadline: float) -> dict:
    """The daemon's view once every watcher is active (or the deadline passed)."""
    while True:
        seen = observe(peer, tmp)
        if all(s == "active" for s in seen["status"].values()) or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)


@pytest.mark.parametrize("name", BOOTED)
def test_a_corpus_file_booted_under_both_gives_the_same_views(name, circus019, circusd, tmp_path):
    ours_dir, theirs_dir = tmp_path / "ours", tmp_path / "theirs"
    ours_dir.mkdir()
    theirs_dir.mkdir()
    d = circusd(local_copy(name, ours_dir))
    d.wait(lambda: (ours_dir / "c.sock").exists(), what="our control socket")
    config = theirs_dir / "circus.ini"
    config.write_text(local_copy(name, theirs_dir))
    log = (theirs_dir / "circusd.log").open("w")
    peer = subprocess.Popen([str(circus019 / "bin" / "circusd"), str(config)], cwd=theirs_dir,
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (theirs_dir / "c.sock").exists():
            assert peer.poll() is None, (theirs_dir / "circusd.log").read_text()
            assert time.monotonic() < deadline, "0.19's control socket"
            time.sleep(0.05)
        mine = settled(circus019, ours_dir, time.monotonic() + 30)
        theirs = settled(circus019, theirs_dir, time.monotonic() + 30)
        assert mine == theirs
        assert set(mine["status"].values()) == {"active"}
    finally:
        ctl019(circus019, theirs_dir, "quit")
        try:
            peer.wait(20)
        except subprocess.TimeoutExpired:
            peer.kill()
            peer.wait()
        log.close()
    assert d.stop() == 0
