"""The examples with several nodes or none to run by hand, run as their documents say
(``examplebox.py``): docs/circusmeta.rst's Quick start with examples/pool.ini, examples/pool/
and its run.sh; examples/curve-pool/README.rst; the reload of examples/circusd.service, with the
default endpoint, and with another endpoint under CURVE through its ``Environment=`` lines.
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, proc_alive, proc_children, proc_cmdline
from examplebox import Sandbox, header, literal_block

pytestmark = [pytest.mark.real, pytest.mark.slow]

EXAMPLES = ROOT / "examples"
META = ".venv/bin/circusmeta --pool examples/pool.ini"


@pytest.fixture
def sb(tmp_path):
    box = Sandbox(tmp_path)
    yield box
    box.close()             # kills what a failed test left; a passing one checked there is none


def retry(sb: Sandbox, command: str, ok, what: str, timeout: float = 45,
          alive: tuple = ()) -> subprocess.CompletedProcess:
    """``command`` again until ``ok(result)`` (a node still starting is not an error yet)."""
    return sb.wait(lambda: (lambda r: r if ok(r) else None)(sb.run(command)), what, timeout, alive)


def _tree(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        found.add(p)
        todo.extend(proc_children(p))
    return found


def test_the_pool_quick_start(sb):
    quick = literal_block(ROOT / "docs" / "circusmeta.rst", "Quick start")
    assert quick == ["make venv", *header(EXAMPLES / "pool.ini")]   # the same walk-through
    assert quick == [
        "make venv",
        "sh examples/pool/run.sh start",
        f"{META} nodes",
        f"{META} status",
        f"{META} restart --rolling frontend",
        f"{META} add api python3 -m http.server 8201 --bind 127.0.0.1 --tag web --start",
        ".venv/bin/circusctl --pool examples/pool.ini --node web1 list",
        "sh examples/pool/run.sh stop"]
    venv, start, nodes, status, rolling, add, ctl_list, stop = quick
    made = subprocess.run(["make", "-n", "venv"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)                      # the target exists (the venv does)
    assert made.returncode == 0, made.stderr
    r = sb.run(start)
    assert r.returncode == 0, r.stdout + r.stderr
    run = sb.dir / "examples" / "pool" / "run"
    pids = {n: int((run / f"{n}.pid").read_text()) for n in ("web1", "web2", "batch1")}
    assert r.stdout.splitlines() == [
        f"{n}: running in the background (pid {pids[n]}); log: {run}/{n}.log (with the output "
        f"of watchers that have no stream)" for n in ("web1", "web2", "batch1")]
    r = retry(sb, nodes, lambda r: r.returncode == 0, "every node active")
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()[1:]}
    assert {n: row[1] for n, row in rows.items()} == {"web1": "active", "web2": "active",
                                                     "batch1": "active"}, r.stdout
    assert rows["web1"][3] == "web,eu" and rows["batch1"][3] == "batch"
    want = {("web1", "web", "active"), ("web2", "web", "active"), ("batch1", "worker", "active")}
    r = retry(sb, status, lambda r: r.returncode == 0 and want <= _rows(r.stdout),
              "the web and worker watchers active")
    web_pids = {n: sb.pids("web", f".venv/bin/circusctl --pool examples/pool.ini --node {n}")
                for n in ("web1", "web2")}
    assert all(len(p) == 2 for p in web_pids.values()), web_pids
    r = sb.run(rolling, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^\[1/2\] web1:web restart \.\.\. ok", r.stdout, re.M), r.stdout
    assert r.stdout.rstrip().endswith("done: web1:web, web2:web"), r.stdout
    for n in ("web1", "web2"):
        new = sb.pids("web", f".venv/bin/circusctl --pool examples/pool.ini --node {n}")
        assert len(new) == 2 and not set(new) & set(web_pids[n]), (n, new, web_pids[n])
    r = sb.run(add)
    assert r.returncode == 0, r.stdout + r.stderr
    placed = re.fullmatch(r"api -> (web1|web2): added \(least_loaded: .*\)\n", r.stdout)
    assert placed, r.stdout
    node = placed.group(1)
    on = f".venv/bin/circusctl --pool examples/pool.ini --node {node}"
    got = sb.json(f"{on} --json get api cmd")
    assert got.get("options", {}).get("cmd") == "python3 -m http.server 8201 --bind 127.0.0.1", got
    sb.wait(lambda: sb.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8201/")
            .stdout == "200", "api serving on 8201")
    r = sb.run(ctl_list)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ("api,circusd-stats,web" if node == "web1" else "circusd-stats,web")
    everything = set().union(*(_tree(p) for p in pids.values()))
    assert len(everything) >= 3 + 3 + 4 + 2           # 3 circusd, 3 circusd-stats, workers...
    r = sb.run(stop, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == [f"{n}: stopped (pid {pids[n]})"
                                     for n in ("web1", "web2", "batch1")]
    assert not [p for p in everything if proc_alive(p)]
    assert not list(run.glob("*.pid"))                 # each circusd removed its pidfile
    assert sb.leftovers() == []
    r = sb.run("sh examples/pool/run.sh status")
    assert r.returncode == 1 and r.stdout.split("\n")[:3] == [
        "web1: stopped", "web2: stopped", "batch1: stopped"]


def test_the_curve_pool_readme(sb):
    readme = EXAMPLES / "curve-pool" / "README.rst"
    first = literal_block(readme, "From the repository root")
    proxy_block = literal_block(readme, "their ``client_key`` and the proxy's public key")
    curve = "examples/curve-pool"
    assert first == [
        f"sh {curve}/make-keys.sh",
        f".venv/bin/circusd {curve}/node1.ini &",
        f".venv/bin/circusd {curve}/node2.ini &",
        f".venv/bin/circusmeta --pool {curve}/pool.ini status",
        f".venv/bin/circusmeta --pool {curve}/pool-readonly.ini --all incr worker",
        f".venv/bin/circusctl --pool {curve}/pool.ini --node node1 list",
        f".venv/bin/circusmeta --pool {curve}/pool.ini --all quit"]
    assert proxy_block == [f".venv/bin/circusmeta --pool {curve}/pool.ini proxy &",
                           f".venv/bin/circusmeta --pool {curve}/pool-readonly.ini top --proxy"]
    assert header(EXAMPLES / "curve-pool" / "pool.ini") == [first[i] for i in (0, 1, 2, 3, 6)]
    keys, node1, node2, status, readonly_incr, ctl_list, quit_all = first
    r = sb.run(keys)                  # a fresh shell: no venv activated, no PYTHON
    assert r.returncode == 0, r.stdout + r.stderr
    assert (sb.dir / curve / "keys" / "node1.key_secret").stat().st_mode & 0o077 == 0
    ignored = subprocess.run(["git", "check-ignore", f"{curve}/keys/node1.key_secret",
                              f"{curve}/clients/node1/admin/admin.key"], cwd=ROOT,
                             capture_output=True, text=True, timeout=30)
    assert ignored.returncode == 0, "git must ignore the keys make-keys.sh makes"
    daemons = [sb.spawn(node1.removesuffix(" &")), sb.spawn(node2.removesuffix(" &"))]
    r = retry(sb, status, lambda r: r.returncode == 0 and
              {("node1", "worker", "active"), ("node2", "worker", "active")} <= _rows(r.stdout),
              "both nodes' worker active", alive=tuple(daemons))
    assert {("node1", "worker", "active"), ("node2", "worker", "active")} <= _rows(r.stdout)
    r = sb.run(readonly_incr)
    assert r.returncode == 3 and r.stdout.count("forbidden") == 2, r.stdout + r.stderr
    r = sb.run(ctl_list)
    assert r.returncode == 0 and r.stdout == "circusd-stats,worker\n", r.stdout + r.stderr
    proxy = sb.spawn(proxy_block[0].removesuffix(" &"))
    screen = sb.screen(proxy_block[1])
    try:
        screen.shows("node1", "node2", "worker (1)")
        screen.type(b"q")
        assert screen.exit_code() == 0
    finally:
        screen.close()
    assert sb.interrupt(proxy) in (0, 130), sb.output(proxy)
    r = sb.run(quit_all)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [d.wait(30) for d in daemons] == [0, 0]
    assert sb.leftovers() == []


# -- the systemd unit ---------------------------------------------------------------------------

def _unit(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The [Service] settings, and the Environment= lines given commented out."""
    settings, commented = {}, {}
    for line in path.read_text().splitlines():
        match = re.fullmatch(r"(#?)(\w+)=(.*)", line)
        if match and match.group(2) == "Environment":
            name, _, value = match.group(3).partition("=")
            (commented if match.group(1) else settings)[name] = value
        elif match and not match.group(1):
            settings[match.group(2)] = match.group(3)
    return settings, commented


def _process_cmds(sb: Sandbox, ctl: str, watcher: str, env: dict) -> list[str]:
    r = sb.run(f"{ctl} --json list {watcher}", env=env)
    try:
        pids = json.loads(r.stdout).get("pids") or []
    except ValueError:
        return []
    return [" ".join(proc_cmdline(p)) for p in pids]


@pytest.mark.parametrize("setup", ["default endpoint", "ipc endpoint and CURVE"])
def test_the_systemd_unit_reloads_the_configuration(sb, setup):
    unit, commented = _unit(EXAMPLES / "circusd.service")
    assert unit["ExecStart"] == "/usr/local/bin/circusd /etc/circus/circus.ini"
    assert unit["ExecReload"] == "/usr/local/bin/circusctl --timeout 80 reloadconfig --waiting"
    assert unit["Type"] == "simple" and unit["KillMode"] == "mixed"
    assert set(commented) == {"CIRCUSCTL_ENDPOINT", "CIRCUSCTL_CURVE_KEY", "CIRCUSCTL_SERVER_KEY"}
    etc = sb.tmp / "etc"
    etc.mkdir()
    conf = etc / "circus.ini"
    env: dict[str, str] = {}
    circus = ""
    if setup != "default endpoint":
        r = sb.run(f".venv/bin/circusctl keygen node --dir {etc}/keys && "
                   f".venv/bin/circusctl keygen systemd --dir {etc}/keys && "
                   f"mkdir -p {etc}/clients/admin && cp {etc}/keys/systemd.key {etc}/clients/admin/")
        assert r.returncode == 0, r.stderr
        paths = {"ipc:///run/circus/control.sock": f"ipc://{etc}/control.sock",
                 "/etc/circus/keys/systemd.key_secret": f"{etc}/keys/systemd.key_secret",
                 "/etc/circus/keys/node.key": f"{etc}/keys/node.key"}
        env = {name: paths[value] for name, value in commented.items()}    # uncommented
        circus = (f"[circus]\nendpoint = ipc://{etc}/control.sock\npubsub_endpoint = "
                  f"ipc://{etc}/events.sock\ncurve_secret_key = {etc}/keys/node.key_secret\n"
                  f"curve_clients = {etc}/clients\n")
    conf.write_text(circus + "[watcher:app]\ncmd = sleep 3700\ngraceful_timeout = 1\n")
    start = unit["ExecStart"].replace("/usr/local/bin/", ".venv/bin/").replace(
        "/etc/circus/circus.ini", str(conf))
    reload = unit["ExecReload"].replace("/usr/local/bin/", ".venv/bin/")
    daemon = sb.spawn(start, env=env)                # Environment= applies to ExecStart too
    ctl = ".venv/bin/circusctl"
    sb.wait(lambda: _process_cmds(sb, ctl, "app", env) == ["sleep 3700"], "app running",
            alive=(daemon,))
    conf.write_text(conf.read_text().replace("sleep 3700", "sleep 3701"))
    r = sb.run(reload, env=env, timeout=120)         # systemctl reload
    assert r.returncode == 0, r.stdout + r.stderr
    assert _process_cmds(sb, ctl, "app", env) == ["sleep 3701"]       # applied when it returns
    conf.write_text(conf.read_text() + "numprocesess = 2\n")
    r = sb.run(reload, env=env, timeout=120)
    assert r.returncode == 3, r.stdout + r.stderr                     # the reload job fails
    assert "numprocesess: unknown option" in r.stdout + r.stderr
    assert _process_cmds(sb, ctl, "app", env) == ["sleep 3701"]       # still what ran
    assert sb.interrupt(daemon, sig=signal.SIGTERM) == 0              # systemctl stop
    assert sb.leftovers() == []


def _rows(out: str) -> set[tuple[str, ...]]:
    """(node, watcher, state) of each row of ``circusmeta status``'s table."""
    return {tuple(line.split()[:3]) for line in out.splitlines()[1:] if len(line.split()) >= 3}
