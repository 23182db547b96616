"""circusctl --waiting commands print progress lines on stderr; stdout stays 0.19's."""
from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.real


def test_progress_lines_on_stderr_while_a_rolling_restart_waits(circusd, tmp_path):
    d = circusd(f"""
        [circus]
        endpoint = ipc://{tmp_path}/c.sock
        pubsub_endpoint = ipc://{tmp_path}/p.sock
        [watcher:web]
        cmd = sleep 3660
        numprocesses = 2
        graceful_timeout = 2
    """)
    d.wait(lambda: len(d.children("sleep 3660")) == 2, what="2 workers")
    r = subprocess.run([sys.executable, "-m", "circus.cli.circusctl", "--endpoint", f"ipc://{tmp_path}/c.sock",
                        "--timeout", "30", "restart", "web", "--graceful", "--waiting", "--progress"],
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr
    lines = r.stderr.splitlines()
    assert "web: rolling restart 1/2" in lines and "web: rolling restart 2/2" in lines
    assert sum(line.startswith("web: started process") for line in lines) == 2
    # without --progress and without a terminal: nothing extra
    r = subprocess.run([sys.executable, "-m", "circus.cli.circusctl", "--endpoint", f"ipc://{tmp_path}/c.sock",
                        "incr", "web", "--waiting"], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "3\n", "")
    d.stop()
