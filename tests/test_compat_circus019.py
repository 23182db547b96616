"""Tier 3: the real Circus 0.19 client tools (from PyPI, in their own virtualenv) against our
circusd. Nothing of 0.19 is imported into our interpreter: its tools run in their own venv, from
a directory where our package cannot shadow theirs."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
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
