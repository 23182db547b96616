"""Shell completion for circusctl: ``circusctl completion bash|zsh|fish`` prints the script.

The scripts are generated from the same tables as circusctl's parsers (the protocol's commands
in :mod:`circus.protocol.commands`, circusctl's own in :mod:`circus.cli.ctl_forms`), so they
complete exactly what this circusctl accepts: command names (with their summaries in zsh and
fish), each command's flags, the values of flags with a fixed set of values (``--match``,
``--stream``), command names after ``help``, shells after ``completion``, and watcher names
for the commands that take one, asked from circusd with ``circusctl list`` (quietly, with the
``--endpoint``/``--node``/key flags already on the command line, and a 1 s timeout). Copies are
shipped in ``circus/cli/completions/`` (``python -m circus.cli.ctl_complete --write`` renews
them; a test checks they are current).

``bash_complete`` answers 0.19's own protocol (``AUTO_COMPLETE``), kept for its old script.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from circus.cli.ctl_forms import (SHELLS, command_names, command_parser, form, global_parser,
                                  watcher_commands)

__all__ = ["script", "Spec", "spec", "bash_complete", "FILES", "write_files"]

HERE = Path(__file__).parent / "completions"
#: the shipped copy of each shell's script
FILES = {"bash": "circusctl.bash", "zsh": "_circusctl", "fish": "circusctl.fish"}
#: flags whose value names where circusd is, passed on to ``circusctl list``
WHERE_FLAGS = ("--endpoint", "--node", "--pool", "--curve-key", "--server-key", "--ssh",
               "--ssh_keyfile", "--ssh-keyfile")


@dataclass(frozen=True)
class Flags:
    plain: tuple[str, ...]               # flags without a value
    valued: tuple[str, ...]              # flags that take a value
    choices: Mapping[str, tuple[str, ...]]
    docs: Mapping[str, str]


@dataclass(frozen=True)
class Spec:
    commands: tuple[str, ...]
    summaries: Mapping[str, str]
    globals: Flags
    flags: Mapping[str, Flags]           # per command (its own flags, not the global ones)
    first: Mapping[str, str]             # command -> what its first argument is


def _flags(parser: argparse.ArgumentParser, skip: frozenset[str] = frozenset()) -> Flags:
    plain, valued, choices, docs = [], [], {}, {}
    for action in parser._actions:
        longs = [o for o in action.option_strings if o.startswith("--") and o not in skip]
        if not longs or action.help is argparse.SUPPRESS:
            continue
        takes = action.nargs != 0 and not isinstance(action, (argparse._StoreTrueAction,
                                                                argparse._StoreFalseAction))
        (valued if takes else plain).extend(longs)
        doc = " ".join(str(action.help or "").replace("%%", "%").split())
        for opt in longs:
            docs[opt] = doc if len(doc) <= 70 else doc[:67].rstrip() + "..."
    return Flags(tuple(plain), tuple(valued), choices, docs)


def spec() -> Spec:
    """What completes where, from the command tables."""
    from circus.cli.ctl_help import summary
    from circus.protocol import COMMANDS

    names = tuple(command_names())
    watchers = set(watcher_commands())
    globals_ = _flags(global_parser(), frozenset({"--help", "--version"}))
    globals_ = Flags(globals_.plain + ("--help", "--version"), globals_.valued, {}, globals_.docs)
    flags, first = {}, {}
    for name in names:
        own = _flags(command_parser(name), frozenset({"--help"}))
        choices = {f"--{p.name}": p.choices for p in getattr(COMMANDS.get(name), "props", ())
                   if p.choices and f"--{p.name}" in own.valued}
        flags[name] = Flags(own.plain, own.valued, choices, own.docs)
        if name in watchers:
            first[name] = "watcher"
        elif name == "help":
            first[name] = "command"
        elif name == "completion":
            first[name] = "shell"
        elif name == "tool":
            first[name] = "tool"
        elif form(name) and form(name)[0].prop == "topic":
            first[name] = "topic"
    return Spec(names, {n: summary(n) for n in names}, globals_, flags, first)


def script(shell: str) -> str:
    if shell == "bash":
        return _bash(spec())
    if shell == "zsh":
        return _zsh(spec())
    if shell == "fish":
        return _fish(spec())
    raise ValueError(f"no completion for {shell!r} (shells: {', '.join(SHELLS)})")


def _words(items: tuple[str, ...] | list[str]) -> str:
    return " ".join(items)


def _head(first: str = "") -> str:
    """The first lines: ``first`` (zsh's ``#compdef``), and where the script comes from."""
    return (first + "\n" if first else "") + \
        "# circusctl's shell completion, written by `circusctl completion` from its command\n" \
        "# table: regenerate it after an upgrade rather than editing it.\n"


# -- bash --------------------------------------------------------------------------------------

def _bash(s: Spec) -> str:
    cases = []
    for name in s.commands:
        f = s.flags[name]
        cases.append(f'        {name}) flags="{_words(f.plain + f.valued)}"; '
                     f'valued="{_words(f.valued)}"; first="{s.first.get(name, "")}" ;;')
    choices = []
    for name in s.commands:
        for flag, values in s.flags[name].choices.items():
            choices.append(f'        {name}:{flag}) COMPREPLY=($(compgen -W "{_words(values)}" '
                           f'-- "$cur")) ;;')
    return _head() + f'''
_circusctl_where() {{
    # the flags of the command line that say where circusd is, for `circusctl list`
    local i
    for ((i = 1; i < ${{#_circusctl_words[@]}} - 1; i++)); do
        case "${{_circusctl_words[i]}}" in
            {"|".join(WHERE_FLAGS)})
                printf '%s\\n' "${{_circusctl_words[i]}}" "${{_circusctl_words[i+1]}}"; ((i++)) ;;
            --*=*) case "${{_circusctl_words[i]%%=*}}" in
                       {"|".join(WHERE_FLAGS)}) printf '%s\\n' "${{_circusctl_words[i]}}" ;;
                   esac ;;
        esac
    done
}}

_circusctl_ask() {{
    # watcher (list) or tool (tools) names from circusd; nothing if it does not answer
    local -a where
    mapfile -t where < <(_circusctl_where)
    local out
    out=$("${{_circusctl_words[0]}}" "${{where[@]}}" --timeout 1 --no-color "$1" 2>/dev/null) || return
    if [[ $1 == list ]]; then printf '%s\\n' ${{out//,/ }}; else printf '%s\\n' "$out" | cut -d' ' -f1; fi
}}

_circusctl() {{
    local line="${{COMP_LINE:0:COMP_POINT}}"
    local -a _circusctl_words
    read -r -a _circusctl_words <<< "$line"
    [[ -z $line || $line == *[[:space:]] ]] && _circusctl_words+=("")
    local cur="${{_circusctl_words[-1]}}" prev=""
    (( ${{#_circusctl_words[@]}} > 1 )) && prev="${{_circusctl_words[-2]}}"
    local commands="{_words(s.commands)}"
    local gflags="{_words(s.globals.plain + s.globals.valued)}"
    local gvalued=" {_words(s.globals.valued)} "
    local cmd="" npos=0 i w skip=0 flags="" valued="" first=""
    for ((i = 1; i < ${{#_circusctl_words[@]}} - 1; i++)); do
        w="${{_circusctl_words[i]}}"
        if (( skip )); then skip=0; continue; fi
        if [[ $w == -* ]]; then
            [[ $w != *=* && ( $gvalued == *" $w "* || " $valued " == *" $w "* ) ]] && skip=1
            continue
        fi
        if [[ -z $cmd ]]; then
            cmd="$w"
            case "$cmd" in
{chr(10).join(cases)}
                *) flags=""; valued=""; first="" ;;
            esac
        else
            ((npos++))
        fi
    done
    COMPREPLY=()
    if (( skip )); then
        case "$cmd:$prev" in
{chr(10).join(choices) or "        __none__) ;;"}
            *) [[ $prev == --endpoint || $prev == --pool || $prev == *key* ]] && \\
                   COMPREPLY=($(compgen -f -- "$cur")) ;;
        esac
    elif [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$gflags $flags" -- "$cur"))
    elif [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W "$commands" -- "$cur"))
    elif (( npos == 0 )); then
        case "$first" in
            watcher) COMPREPLY=($(compgen -W "$(_circusctl_ask list)" -- "$cur")) ;;
            tool) COMPREPLY=($(compgen -W "$(_circusctl_ask tools)" -- "$cur")) ;;
            command) COMPREPLY=($(compgen -W "$commands" -- "$cur")) ;;
            shell) COMPREPLY=($(compgen -W "{_words(SHELLS)}" -- "$cur")) ;;
        esac
    fi
    # bash inserts a reply in place of its own current word, which ends at a ':' or '='
    local tail="${{cur##*[:=]}}"
    if [[ $tail != "$cur" ]]; then
        local head="${{cur%"$tail"}}" k
        for k in "${{!COMPREPLY[@]}}"; do COMPREPLY[k]="${{COMPREPLY[k]#"$head"}}"; done
    fi
}}

complete -F _circusctl circusctl
'''


# -- zsh ---------------------------------------------------------------------------------------

def _zq(text: str) -> str:
    """A zsh single-quoted word."""
    return "'" + text.replace("'", "'\\''") + "'"


def _zsh(s: Spec) -> str:
    described = "\n".join("        " + _zq(n + ":" + s.summaries[n].replace(":", "\\:"))
                          for n in s.commands)
    cases = []
    for name in s.commands:
        f = s.flags[name]
        cases.append(f"            {name}) flags=({_words(f.plain + f.valued)}); "
                     f"valued=({_words(f.valued)}); first={s.first.get(name, '')!r} ;;")
    choices = []
    for name in s.commands:
        for flag, values in s.flags[name].choices.items():
            choices.append(f"        {name}:{flag}) compadd -- {_words(values)}; return ;;")
    return _head("#compdef circusctl") + f'''
_circusctl_ask() {{
    # watcher (list) or tool (tools) names from circusd; nothing if it does not answer
    local -a where
    local i
    for ((i = 2; i < CURRENT; i++)); do
        case ${{words[i]}} in
            {"|".join(WHERE_FLAGS)}) where+=(${{words[i]}} ${{words[i+1]}}); ((i++)) ;;
        esac
    done
    local out
    out=$(${{words[1]}} $where --timeout 1 --no-color $1 2>/dev/null) || return
    if [[ $1 == list ]]; then print -l -- ${{(s:,:)out}}; else print -l -- ${{${{(f)out}}%% *}}; fi
}}

_circusctl() {{
    local -a commands flags valued gflags gvalued
    commands=(
{described}
    )
    gflags=({_words(s.globals.plain + s.globals.valued)})
    gvalued=({_words(s.globals.valued)})
    local cur=${{words[CURRENT]}} prev=${{words[CURRENT-1]}}
    local cmd="" first="" w
    local -i npos=0 skip=0 i
    for ((i = 2; i < CURRENT; i++)); do
        w=${{words[i]}}
        if (( skip )); then skip=0; continue; fi
        if [[ $w == -* ]]; then
            [[ $w != *=* ]] && (( ${{gvalued[(Ie)$w]}} || ${{valued[(Ie)$w]}} )) && skip=1
            continue
        fi
        if [[ -z $cmd ]]; then
            cmd=$w
            case $cmd in
{chr(10).join(cases)}
            esac
        else
            ((npos++))
        fi
    done
    if (( skip )); then
        case "$cmd:$prev" in
{chr(10).join(choices) or "        __none__) ;;"}
        esac
        [[ $prev == --endpoint || $prev == --pool || $prev == *key* ]] && _files
        return
    fi
    if [[ $cur == -* ]]; then
        compadd -- $gflags $flags
    elif [[ -z $cmd ]]; then
        _describe -t commands 'circusctl command' commands
    elif (( npos == 0 )); then
        case $first in
            watcher) compadd -- ${{(f)"$(_circusctl_ask list)"}} ;;
            tool) compadd -- ${{(f)"$(_circusctl_ask tools)"}} ;;
            command) _describe -t commands 'circusctl command' commands ;;
            shell) compadd -- {_words(SHELLS)} ;;
        esac
    fi
}}

if [[ $funcstack[1] == _circusctl ]]; then
    _circusctl "$@"
else
    compdef _circusctl circusctl
fi
'''


# -- fish --------------------------------------------------------------------------------------

def _fq(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish(s: Spec) -> str:
    lines = [_head(),
             "function __circusctl_state",
             "    # prints the command and how many arguments it has so far",
             "    set -l tokens (commandline -opc)",
             f"    set -l gvalued {_words(s.globals.valued)}",
             "    set -l valued",
             "    set -l cmd",
             "    set -l npos 0",
             "    set -l skip 0",
             "    for w in $tokens[2..-1]",
             "        if test $skip -eq 1",
             "            set skip 0",
             "            continue",
             "        end",
             "        if string match -q -- '-*' $w",
             "            if not string match -q -- '*=*' $w; and contains -- $w $gvalued $valued",
             "                set skip 1",
             "            end",
             "            continue",
             "        end",
             "        if test -z \"$cmd\"",
             "            set cmd $w",
             "            switch $cmd"]
    for name in s.commands:
        valued = s.flags[name].valued
        if valued:
            lines += [f"                case {name}", f"                    set valued {_words(valued)}"]
    lines += ["            end",
              "        else",
              "            set npos (math $npos + 1)",
              "        end",
              "    end",
              "    echo $cmd $npos",
              "end",
              "",
              "function __circusctl_needs_command",
              "    test (count (string split ' ' -- (__circusctl_state))) -lt 2",
              "end",
              "",
              "function __circusctl_first",
              "    # true when the command is one of $argv and its first argument is being typed",
              "    set -l state (string split ' ' -- (__circusctl_state))",
              "    test (count $state) -eq 2; and test $state[2] -eq 0; and contains -- $state[1] $argv",
              "end",
              "",
              "function __circusctl_using",
              "    set -l state (string split ' ' -- (__circusctl_state))",
              "    test (count $state) -eq 2; and contains -- $state[1] $argv",
              "end",
              "",
              "function __circusctl_ask",
              "    # watcher (list) or tool (tools) names from circusd; nothing if it does not answer",
              "    set -l tokens (commandline -opc)",
              "    set -l where",
              "    set -l i 2",
              "    while test $i -lt (count $tokens)",
              f"        if contains -- $tokens[$i] {_words(WHERE_FLAGS)}",
              "            set where $where $tokens[$i] $tokens[(math $i + 1)]",
              "            set i (math $i + 1)",
              "        end",
              "        set i (math $i + 1)",
              "    end",
              "    set -l out ($tokens[1] $where --timeout 1 --no-color $argv[1] 2>/dev/null)",
              "    or return",
              "    if test $argv[1] = list",
              "        string split , -- $out",
              "    else",
              "        for l in $out",
              "            string split -f1 ' ' -- $l",
              "        end",
              "    end",
              "end",
              "",
              "complete -c circusctl -f"]
    for name in s.commands:
        lines.append(f"complete -c circusctl -n __circusctl_needs_command -a {name} "
                     f"-d {_fq(s.summaries[name])}")
    for flag in s.globals.plain + s.globals.valued:
        value = " -r" if flag in s.globals.valued else ""
        lines.append(f"complete -c circusctl -l {flag[2:]}{value} -d {_fq(s.globals.docs.get(flag, ''))}")
    for name in s.commands:
        f = s.flags[name]
        for flag in f.plain + f.valued:
            extra = ""
            if flag in f.choices:
                extra = f" -x -a {_fq(_words(f.choices[flag]))}"
            elif flag in f.valued:
                extra = " -x"
            lines.append(f"complete -c circusctl -n '__circusctl_using {name}' -l {flag[2:]}{extra}"
                         f" -d {_fq(f.docs.get(flag, ''))}")
    firsts: dict[str, list[str]] = {}
    for name, kind in s.first.items():
        firsts.setdefault(kind, []).append(name)
    ask = {"watcher": "(__circusctl_ask list)", "tool": "(__circusctl_ask tools)"}
    for kind, names in sorted(firsts.items()):
        cond = f"'__circusctl_first {_words(sorted(names))}'"
        if kind in ask:
            lines.append(f"complete -c circusctl -n {cond} -a {_fq(ask[kind])}")
        elif kind == "command":
            lines.append(f"complete -c circusctl -n {cond} -a {_fq(_words(s.commands))}")
        elif kind == "shell":
            lines.append(f"complete -c circusctl -n {cond} -a {_fq(_words(SHELLS))}")
    return "\n".join(lines) + "\n"


# -- 0.19's protocol and the shipped copies ----------------------------------------------------

def bash_complete(environ: Mapping[str, str]) -> int:
    """0.19's bash completion protocol (``AUTO_COMPLETE``, ``COMP_WORDS``, ``COMP_CWORD`` set by
    its completion script): print the command names that complete the first word; exit 1."""
    words = environ.get("COMP_WORDS", "").split()[1:]
    try:
        cword = int(environ.get("COMP_CWORD", "0"))
    except ValueError:
        cword = 0
    current = words[cword - 1] if 0 < cword <= len(words) else ""
    if cword == 1:
        print(" ".join(name for name in command_names() if name.startswith(current)))
    return 1


def write_files(directory: Path = HERE) -> list[Path]:
    directory.mkdir(exist_ok=True)
    written = []
    for shell, filename in FILES.items():
        path = directory / filename
        path.write_text(script(shell))
        written.append(path)
    return written


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        for path in write_files():
            print(os.path.relpath(path))
    else:
        print("usage: python -m circus.cli.ctl_complete --write", file=sys.stderr)
        sys.exit(2)
