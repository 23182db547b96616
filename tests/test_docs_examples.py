"""The docs and examples stay true: generated pages are current, every example config loads."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def test_generated_reference_pages_are_current():
    r = subprocess.run([sys.executable, str(ROOT / "docs" / "generate.py"), "--check"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("example", sorted(p.name for p in (ROOT / "examples").glob("*.ini")))
def test_example_configs_load(example):
    r = subprocess.run([sys.executable, "-m", "circus.cli.circusd", "--check-config",
                        str(ROOT / "examples" / example)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "watchers (" in r.stdout
