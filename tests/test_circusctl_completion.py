"""Tier 2: circusctl's shell completion scripts, run by the real bash, zsh and fish (installed
with apt-get when missing), completing commands, flags, flag values and watcher names asked
from a real circusd; and the shipped copies are the generated ones."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from circus.cli.ctl_complete import FILES, HERE, script
from circus.cli.ctl_forms import command_names

pytestmark = pytest.mark.real

BIN = Path(sys.executable).parent
CIRCUSCTL = str(BIN / "circusctl")


def _shell(name: str) -> str:
    """The shell's path, installed with apt-get when missing (a failure says why)."""
    found = shutil.which(name)
    if found:
        return found
    if not shutil.which("apt-get"):
        pytest.fail(f"{name} is not installed and there is no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "install", "-y", "--no-install-recommends", name],
                 ["apt-get", "update"],
                 ["apt-get", "install", "-y", "--no-install-recommends", name]):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env,
                              stdin=subprocess.DEVNULL)
        if proc.returncode == 0 and shutil.which(name):
            return shutil.which(name) or name
    pytest.fail(f"{name} missing and apt-get could not install it: {proc.stderr[-500:]}")


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    from conftest import Circusd
    d = Circusd(tmp_path_factory.mktemp("complete"))
    d.start(f"""
[circus]
endpoint = ipc://{d.dir}/control.sock
pubsub_endpoint = ipc://{d.dir}/events.sock

[watcher:web]
cmd = sleep 3600

[watcher:worker]
cmd = sleep 3600

[watcher:plugin:flap]
cmd = sleep 3600
""")
    try:
        d.wait(lambda: (d.dir / "control.sock").exists(), what="control socket")
        yield f"ipc://{d.dir}/control.sock"
    finally:
        d.cleanup()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CIRCUSCTL_ENDPOINT",)}
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    return env


def test_shipped_scripts_are_the_generated_ones():
    for shell, filename in FILES.items():
        assert (HERE / filename).read_text() == script(shell), \
            f"{filename} is stale: python -m circus.cli.ctl_complete --write"


def test_completion_subcommand_prints_each_script():
    for shell in FILES:
        r = subprocess.run([CIRCUSCTL, "completion", shell], capture_output=True, text=True,
                           timeout=30)
        assert (r.returncode, r.stdout, r.stderr) == (0, script(shell), "")
    r = subprocess.run([CIRCUSCTL, "completion", "tcsh"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "no completion for 'tcsh' (shells: bash, zsh, fish)" in r.stderr


# -- bash --------------------------------------------------------------------------------------

BASH_HARNESS = r"""
source "$1"
complete -p circusctl
comp() { COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}; COMPREPLY=(); _circusctl; echo "${COMPREPLY[*]}"; }
shift
for line in "$@"; do comp "$line"; done
"""


def _bash(lines: list[str], tmp_path: Path) -> list[str]:
    path = tmp_path / "circusctl.bash"
    path.write_text(script("bash"))
    r = subprocess.run([_shell("bash"), "-c", BASH_HARNESS, "bash", str(path), *lines],
                       capture_output=True, text=True, timeout=60, env=_env())
    assert r.returncode == 0 and r.stderr == "", r.stderr
    out = r.stdout.split("\n")
    assert out[0] == "complete -F _circusctl circusctl"
    return out[1:1 + len(lines)]


def test_bash_completes_commands_flags_and_values(tmp_path):
    got = _bash(["circusctl sta", "circusctl ", "circusctl status --ma", "circusctl status --match ",
                 "circusctl tail --stream s", "circusctl help rel", "circusctl completion ",
                 "circusctl --time", "circusctl incr web "], tmp_path)
    assert got[0] == "start stats status"
    assert got[1].split() == command_names()
    assert got[2] == "--match"
    assert got[3] == "glob simple regex"
    assert got[4] == "stdout stderr"
    assert got[5] == "reload reloadconfig"
    assert got[6] == "bash zsh fish"
    assert got[7] == "--timeout"
    assert got[8] == ""                          # incr's second argument is a number


def test_bash_completes_watcher_names_from_circusd(node, tmp_path):
    got = _bash([f"circusctl --endpoint {node} status ", f"circusctl --endpoint {node} restart w",
                 f"circusctl --endpoint {node} rm plugin:f",
                 "circusctl --endpoint ipc:///nonexistent/x.sock status "], tmp_path)
    assert got[0] == "plugin:flap web worker"
    assert got[1] == "web worker"
    assert got[2] == "flap"                      # bash's word starts after the ':'
    assert got[3] == ""                          # circusd not there: nothing, quickly, no noise


# -- zsh ---------------------------------------------------------------------------------------

ZSH_HARNESS = r"""
fpath=("$1" $fpath)
autoload -Uz compinit && compinit -u -D
print -r -- "registered: $_comps[circusctl]"
autoload -Uz _circusctl
# the completion builtins, replaced by stubs that print what would be offered
compadd() { while [[ $# -gt 0 && $1 != -- ]]; do shift; done; shift;
            local w; for w in "$@"; do [[ $w == ${words[CURRENT]}* ]] && print -r -- $w; done; }
_describe() { local -a arr; arr=(${(P)${@[-1]}}); compadd -- ${arr%%:*}; }
_files() { print -r -- FILES; }
shift
for line in "$@"; do
    words=(${(z)line}); [[ $line == *' ' ]] && words+=('')
    CURRENT=${#words}
    print -r -- "${(j: :)${(f)"$(_circusctl)"}}"
done
"""


def _zsh(lines: list[str], tmp_path: Path) -> list[str]:
    (tmp_path / "_circusctl").write_text(script("zsh"))
    r = subprocess.run([_shell("zsh"), "-f", "-c", ZSH_HARNESS, "zsh", str(tmp_path), *lines],
                       capture_output=True, text=True, timeout=60, env=_env())
    assert r.returncode == 0 and r.stderr == "", r.stderr
    out = r.stdout.split("\n")
    assert out[0] == "registered: _circusctl"     # compinit found it through #compdef
    return out[1:1 + len(lines)]


def test_zsh_completes_commands_flags_values_and_watchers(node, tmp_path):
    got = _zsh(["circusctl sta", "circusctl status --ma", "circusctl status --match ",
                "circusctl help rel", f"circusctl --endpoint {node} status ",
                f"circusctl --endpoint {node} kill w", "circusctl --endpoint "], tmp_path)
    assert got[0] == "start stats status"
    assert got[1] == "--match"
    assert got[2] == "glob simple regex"
    assert got[3] == "reload reloadconfig"
    assert got[4] == "plugin:flap web worker"
    assert got[5] == "web worker"
    assert got[6] == "FILES"


def test_zsh_loads_with_source_and_compdef(tmp_path):
    (tmp_path / "c.zsh").write_text(script("zsh"))
    r = subprocess.run([_shell("zsh"), "-f", "-c", 'autoload -Uz compinit && compinit -u -D; '
                        f'source {tmp_path / "c.zsh"}; print -r -- $_comps[circusctl]'],
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "_circusctl\n", "")


# -- fish --------------------------------------------------------------------------------------

def _fish(lines: list[str], tmp_path: Path) -> list[list[str]]:
    path = tmp_path / "circusctl.fish"
    path.write_text(script("fish"))
    commands = [f"source {path}"] + [f"complete -C {_fish_quote(line)}; echo ---" for line in lines]
    r = subprocess.run([_shell("fish"), "--no-config", "-c", "; ".join(commands)],
                       capture_output=True, text=True, timeout=60, env=_env())
    assert r.returncode == 0 and r.stderr == "", r.stderr
    blocks = r.stdout.split("---\n")[:len(lines)]
    return [[row.split("\t")[0] for row in block.splitlines()] for block in blocks]


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def test_fish_completes_commands_flags_values_and_watchers(node, tmp_path):
    got = _fish(["circusctl sta", "circusctl status --ma", "circusctl status --match ",
                 "circusctl help rel", f"circusctl --endpoint {node} status ",
                 f"circusctl --endpoint {node} incr web ", "circusctl completion "], tmp_path)
    assert got[0] == ["start", "stats", "status"]
    assert got[1] == ["--match"]
    assert got[2] == ["glob", "regex", "simple"]
    assert got[3] == ["reload", "reloadconfig"]
    assert got[4] == ["plugin:flap", "web", "worker"]
    assert got[5] == []
    assert got[6] == ["bash", "fish", "zsh"]


def test_fish_shows_summaries(tmp_path):
    path = tmp_path / "circusctl.fish"
    path.write_text(script("fish"))
    r = subprocess.run([_shell("fish"), "--no-config", "-c",
                        f"source {path}; complete -C 'circusctl nodei'"],
                       capture_output=True, text=True, timeout=60, env=_env())
    assert r.stdout == "nodeinfo\tThis node: name, load, memory, watchers and processes\n"
