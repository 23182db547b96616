"""What the command-line tools import (modules, not timings): ``--version`` and a one-node
``status`` must stay light, so that ``circusmeta`` starts no slower than ``circusctl``.

Each case runs the tool's ``main`` in a fresh interpreter and lists ``sys.modules`` afterwards,
and the dataclasses that circusmeta's own modules define (each costs 0.4-1 ms to create at import
with Python 3.11: circusmeta's records on the status path are ``circus.records`` instead).
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

#: never on these paths
HEAVY = ("asyncio", "zmq.asyncio", "tornado", "jinja2", "psutil", "ssl", "circus.core",
         "circus.web", "circus.stats.streamer")
#: the configuration's schema and diff (circus.config.errors and .ini are light)
CONFIG = ("circus.config.schema", "circus.config.diff", "circus.config.loader")

RUN = textwrap.dedent("""
    import contextlib, io, json, sys
    from {module} import main
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            code = main({argv!r})
        except SystemExit as exc:
            code = exc.code
    made = sorted(f"{{m.__name__}}.{{k}}" for m in list(sys.modules.values())
                  if getattr(m, "__name__", "").startswith("circusmeta")
                  for k, v in vars(m).items()
                  if isinstance(v, type) and v.__module__ == m.__name__
                  and "__dataclass_fields__" in v.__dict__)
    print(json.dumps({{"code": code, "out": out.getvalue(), "modules": sorted(sys.modules),
                      "dataclasses": made}}))
""")


def imported(module: str, argv: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", RUN.format(module=module, argv=argv)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == n or m.startswith(n + ".") for n in names)]


def test_circusmeta_version_imports_neither_zeromq_nor_its_library():
    got = imported("circusmeta.cli", ["--version"])
    assert got["code"] == 0 and got["out"].startswith("circusmeta ")
    modules = got["modules"]
    assert loaded(modules, HEAVY + CONFIG + ("zmq", "circus.config", "circus.protocol")) == []
    ours = [m for m in modules if m.split(".")[0] in ("circus", "circusmeta")]
    assert ours == ["circus", "circus.records", "circusmeta", "circusmeta.cli",
                    "circusmeta.errors"], ours
    assert got["dataclasses"] == []
    # nothing else but the standard library
    others = [m for m in modules if m.split(".")[0] not in ("circus", "circusmeta")
              and m.split(".")[0] not in sys.stdlib_module_names
              and not m.startswith(("_", "__editable__"))]
    assert others == [], others


def test_circusctl_version_stays_light():
    got = imported("circus.cli.circusctl", ["--version"])
    assert got["code"] == 0, got
    assert loaded(got["modules"], HEAVY + CONFIG + ("circus.config",)) == []


@pytest.mark.real
def test_status_over_one_node_runs_without_an_event_loop(circusd, tmp_path):
    d = circusd(f"[circus]\nendpoint = ipc://{tmp_path}/c.sock\nstatsd = false\n"
                f"[watcher:sl]\ncmd = sleep 3600\n")
    d.wait(lambda: (tmp_path / "c.sock").exists(), 20, "the control socket")
    pool = tmp_path / "pool.ini"
    pool.write_text(f"[meta]\ntimeout = 10\n[node:solo]\nendpoint = ipc://{tmp_path}/c.sock\n")
    meta = imported("circusmeta.cli", ["--pool", str(pool), "status"])
    assert meta["code"] == 0 and "sl" in meta["out"], meta["out"]
    assert loaded(meta["modules"], HEAVY + CONFIG) == []
    assert meta["dataclasses"] == [], meta["dataclasses"]
    # the plain fan-out needs none of the event-loop commands' modules either
    assert loaded(meta["modules"], ("circusmeta.live", "circusmeta.tail", "circusmeta.rolling",
                                    "circusmeta.placement", "circus.client.aio")) == []
    ctl = imported("circus.cli.circusctl", ["--endpoint", f"ipc://{tmp_path}/c.sock", "status"])
    assert ctl["code"] == 0 and "sl" in ctl["out"], ctl
    assert loaded(ctl["modules"], HEAVY + CONFIG) == []
