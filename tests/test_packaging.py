"""A real (non-editable) install has every package: operators do not install in develop mode."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_every_source_directory_is_a_package():
    missing = [str(d.relative_to(ROOT)) for top in ("circus", "circusmeta")
               for d in [ROOT / top, *(ROOT / top).rglob("*")]
               if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py"))
               and not (d / "__init__.py").exists()]
    assert missing == []


def test_the_wheel_contains_every_module(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                        "-q", "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    wheel = next(tmp_path.glob("circus-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {str(p.relative_to(ROOT)) for top in ("circus", "circusmeta")
               for p in (ROOT / top).rglob("*.py") if "__pycache__" not in p.parts}
    assert sources - names == set()
    assert {f"circus/cli/completions/{f}" for f in ("circusctl.bash", "_circusctl", "circusctl.fish")} <= names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "circusd = circus.cli.circusd:main" in text and "circusctl = circus.cli.circusctl:main" in text
