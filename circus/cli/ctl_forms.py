"""circusctl's command lines: each command's parser, help and request, built from the protocol.

``circus.protocol.COMMANDS`` says what each command is and which properties it takes; this
module adds only what is particular to the command line: the positional forms circusctl 0.19
accepted (``signal <name> [<pid>] <signum>``, ``set <name> <key> <value>...``), and the few flags
whose spelling is not the property's (``reload --terminate`` means ``graceful: false``). Every other
property becomes a flag of its own name (``--waiting``, ``--match regex``, ``--graceful_timeout 3``,
``--dry-run``), so a property added to the protocol shows up in circusctl without a change here.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any, Callable, NoReturn, Sequence

from circus.cli.ctl_keys import add_key_options
from circus.cli.ctl_values import ValueProblem, convert_option
from circus.protocol import COMMANDS, Command, Prop

__all__ = ["UsageError", "HelpRequested", "Pos", "FORMS", "CLI_ONLY", "CLI_FLAGS", "CLI_OPTIONS",
           "LOCAL_COMMANDS", "SHELLS", "command_names", "global_parser", "form", "clean_doc", "watcher_commands",
           "command_parser", "build_request", "command_help"]

USAGE = "circusctl [options] command [args]"


class HelpRequested(Exception):
    """``-h``/``--help`` was given after a command: show that command's help, run nothing."""


class UsageError(Exception):
    """The command line is wrong; ``usage`` is the usage line to show with the message."""

    def __init__(self, message: str, usage: str = USAGE, prog: str = "circusctl") -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage
        self.prog = prog

    def __str__(self) -> str:
        return f"usage: {self.usage}\n{self.prog}: error: {self.message}"


@dataclass(frozen=True)
class Pos:
    """A positional argument: the property it fills and how many words it takes.

    ``many``: ``""`` one word; ``"list"`` one or more, as a list; ``"join"`` one or more, joined
    with spaces; ``"pairs"`` key value pairs, as an object converted per key; ``"argv"`` (last)
    every word after the positionals before it, as a list, taken literally (no circusctl flag).
    """

    prop: str
    optional: bool = False
    many: str = ""

    @property
    def label(self) -> str:
        if self.many == "pairs":
            text = "<key> <value> [<key> <value>...]"
        else:
            text = f"<{self.prop}>" + ("..." if self.many else "")
        return f"[{text}]" if self.optional else text


def _p(spec: str) -> tuple[Pos, ...]:
    """Positional forms written as in the usage line: ``name [pid] signum``, ``keys...``."""
    out = []
    for word in spec.split():
        optional = word.startswith("[")
        word = word.strip("[]")
        many = ""
        if word.endswith("..."):
            word, many = word[:-3], "list"
        if "=" in word:
            word, many = word.split("=")
        out.append(Pos(word, optional, many))
    return tuple(out)


#: 0.19's positional forms, by command
FORMS: dict[str, tuple[Pos, ...]] = {
    "add": _p("name cmd=join"), "rm": _p("name"),
    "start": _p("[name]"), "stop": _p("[name]"), "restart": _p("[name]"), "reload": _p("[name]"),
    "reloadconfig": (), "quit": (),
    "incr": _p("name [nb]"), "decr": _p("name [nb]"),
    "set": _p("name options=pairs"), "get": _p("name keys..."), "options": _p("name"),
    "globaloptions": _p("[option]"), "list": _p("[name]"), "listsockets": (),
    "numprocesses": _p("[name]"), "numwatchers": (), "processes": _p("[name]"),
    "nodeinfo": (), "rename": _p("name"), "status": _p("[name]"),
    "stats": _p("[name] [process]"), "dstats": (), "kill": _p("name [pid]"),
    "signal": _p("name [pid] signum"), "reopen": (), "ipython": (), "tail": _p("[name]"),
    "tools": (), "tool": _p("name [args=argv]"),
}

#: flags whose meaning is the opposite of their property: (command, prop) -> (flag, help)
INVERTED: dict[tuple[str, str], tuple[str, str]] = {
    ("reload", "graceful"): ("terminate", "stop the processes, then start new ones (not graceful)"),
}

#: flags of a protocol command that only circusctl acts on: command -> ((flag, help), ...)
CLI_FLAGS: dict[str, tuple[tuple[str, str], ...]] = {
    "tail": (("follow", "then print new lines as they are written, until interrupted"),),
    "status": (("table", "the table (pids, uptime, restarts), even when stdout is not a "
                "terminal"),
               ("plain", "0.19's 'name: state' lines, even on a terminal")),
    "keygen": (("force", "replace existing key files of that name"),),
}

#: flags with a value of commands that exist only in circusctl: command -> ((flag, metavar, help),)
CLI_OPTIONS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "keygen": (("dir", "DIR", "the directory to write the two files in (default: the current "
                "directory)"),),
}

#: commands that exist only in circusctl: name -> (summary, positional form)
CLI_ONLY: dict[str, tuple[str, tuple[Pos, ...]]] = {
    "listen": ("Print events from the pubsub endpoint (topic prefixes, e.g. watcher.web.)",
               _p("[topic...]")),
    "help": ("Show the help of circusctl or of one command", _p("[command]")),
    "keygen": ("Write a CURVE key pair, NAME.key and NAME.key_secret (no daemon contacted)",
               _p("name")),
    "completion": ("Print the shell completion script for bash, zsh or fish", _p("shell")),
}

#: commands circusctl runs itself, without circusd (and without keys)
LOCAL_COMMANDS = frozenset({"help", "keygen", "completion"})

#: the shells ``completion`` writes a script for
SHELLS = ("bash", "zsh", "fish")

#: the global options, accepted after the command too
GLOBAL_FLAGS = ("endpoint", "timeout", "json", "prettify", "progress", "ssh", "ssh_keyfile",
                "curve_key", "server_key", "no_color")


def command_names() -> list[str]:
    return sorted(set(COMMANDS) | set(CLI_ONLY))


def form(name: str) -> tuple[Pos, ...]:
    """The positional arguments of a command."""
    return CLI_ONLY[name][1] if name in CLI_ONLY else FORMS.get(name, ())


_form = form


def watcher_commands() -> list[str]:
    """The commands whose first argument is a watcher name (for completion)."""
    out = []
    for name, command in COMMANDS.items():
        positionals = FORMS.get(name, ())
        prop = next((p for p in command.props if p.name == "name"), None)
        if positionals and positionals[0].prop == "name" and prop is not None and \
                prop.doc.startswith("watcher name"):
            out.append(name)
    return sorted(out)


def _flag_names(prop: Prop) -> list[str]:
    names = ["--" + prop.name]
    if "_" in prop.name:
        names.append("--" + prop.name.replace("_", "-"))
    return names


def _flag_props(command: Command) -> list[Prop]:
    """Properties given as flags: not positional, and not a global option's name (the protocol's
    ``timeout`` of waiting commands is filled from circusctl's own ``--timeout``)."""
    taken = {pos.prop for pos in FORMS.get(command.name, ())} | set(GLOBAL_FLAGS)
    return [p for p in command.props if p.name not in taken]


#: flag help in the operator's terms, where the protocol's words are about replies
FLAG_DOCS = {
    "waiting": "wait until it is done: fail with the reason if it did not work",
    "match": "how <name> matches watchers: glob (default), simple or regex",
    "stream": "only stdout or only stderr (default: both)",
}


def clean_doc(text: str) -> str:
    """A protocol doc string for a person: no reST quotes, no "new in this version" marks."""
    return text.replace("``", "").replace("*new*: ", "").replace("*new* ", "").replace("*new*", "")


def _help(text: str) -> str:
    """A flag's help for argparse, which %-formats it."""
    return clean_doc(text).replace("%", "%%")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            from circus.cli.ctl_help import did_you_mean
            flags = [opt for action in self._actions for opt in action.option_strings
                     if opt.startswith("--")]
            words = message[len(prefix):].split()
            hints = [did_you_mean(w, flags) for w in words if w.startswith("--")]
            message += next((h for h in hints if h), "")
        raise UsageError(message, self.usage or USAGE, self.prog)


def _usage(name: str) -> str:
    words = [f"circusctl [options] {name}"] + [pos.label for pos in _form(name)]
    if name in COMMANDS:
        for prop in _flag_props(COMMANDS[name]):
            flag = INVERTED.get((name, prop.name), (prop.name, ""))[0]
            if bool in prop.types or (name, prop.name) in INVERTED:
                words.append(f"[--{flag}]")
            else:
                words.append(f"[--{flag} {prop.name.upper()}]")
    words += [f"[--{flag}]" for flag, _ in CLI_FLAGS.get(name, ())]
    words += [f"[--{flag} {metavar}]" for flag, metavar, _ in CLI_OPTIONS.get(name, ())]
    positionals = [pos.label for pos in _form(name)]
    if any(pos.many == "argv" for pos in _form(name)):    # its flags only before the positionals
        words = [words[0], *words[1 + len(positionals):], *positionals]
    return " ".join(words)


def _typed(prop: Prop) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return _word(prop, text)
        except ValueProblem as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = prop.type_name
    return convert


def _word(prop: Prop, text: str) -> Any:
    """``text`` as a value of ``prop``'s JSON types."""
    types = prop.types
    if dict in types or list in types:
        try:
            value = json.loads(text)
        except ValueError:
            if str in types:
                return text
            raise ValueProblem(f"{prop.name} wants JSON ({prop.type_name}), got {text!r}") from None
        return value
    if int in types or float in types:
        try:
            return int(text)
        except ValueError:
            pass
        if float in types:
            try:
                return float(text)
            except ValueError:
                pass
        if str not in types:
            raise ValueProblem(f"{prop.name} must be {prop.type_name}, not {text!r}")
    if prop.choices and text not in prop.choices:
        raise ValueProblem(f"{prop.name} must be one of {', '.join(prop.choices)}, not {text!r}")
    return text


def command_parser(name: str) -> argparse.ArgumentParser:
    """The parser of one command's words (after the command name)."""
    parser = _Parser(prog=f"circusctl {name}", usage=_usage(name),
                     formatter_class=argparse.RawDescriptionHelpFormatter, add_help=False)
    parser.add_argument("-h", "--help", action="store_true", default=argparse.SUPPRESS,
                        help="show this help and exit")
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    command = COMMANDS.get(name)
    if command is not None:
        for prop in _flag_props(command):
            inverted = INVERTED.get((name, prop.name))
            if inverted is not None:
                parser.add_argument("--" + inverted[0], dest=prop.name, action="store_false",
                                    default=argparse.SUPPRESS, help=inverted[1])
            elif bool in prop.types:
                parser.add_argument(*_flag_names(prop), dest=prop.name, action="store_true",
                                    default=argparse.SUPPRESS,
                                    help=_help(FLAG_DOCS.get(prop.name, prop.doc)))
            elif prop.name in FLAG_DOCS:
                parser.add_argument(*_flag_names(prop), dest=prop.name, type=_typed(prop),
                                    metavar=prop.name.upper(), default=argparse.SUPPRESS,
                                    help=_help(FLAG_DOCS[prop.name]))
            else:
                parser.add_argument(*_flag_names(prop), dest=prop.name, type=_typed(prop),
                                    metavar=prop.name.upper(), default=argparse.SUPPRESS,
                                    help=_help(prop.doc + (f" (default: {prop.default})"
                                                           if prop.default not in (None, {}) else "")))
    for flag, text in CLI_FLAGS.get(name, ()):
        parser.add_argument("--" + flag, dest=flag, action="store_true", default=argparse.SUPPRESS,
                            help=text)
    for flag, metavar, text in CLI_OPTIONS.get(name, ()):
        parser.add_argument("--" + flag, dest=flag, metavar=metavar, default=argparse.SUPPRESS,
                            help=text)
    add_global_options(parser, hidden=True)
    return parser


def global_parser() -> argparse.ArgumentParser:
    """The parser of circusctl's own flags, before the command."""
    parser = _Parser(prog="circusctl", usage=USAGE, add_help=False,
                     description="Controls a Circus daemon",
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_global_options(parser)
    parser.add_argument("--node", help="run the command on this node of the pool file (its "
                        "endpoint; for listen its pubsub_endpoint)")
    parser.add_argument("--pool", help="the pool file for --node (default: $CIRCUSMETA_POOL, "
                        "~/.config/circus/pool.ini, /etc/circus/pool.ini)")
    parser.add_argument("--help", "-h", action="store_true", help="show this help and exit")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("command", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("words", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def add_global_options(parser: argparse.ArgumentParser, hidden: bool = False) -> None:
    def h(text: str) -> str:
        return argparse.SUPPRESS if hidden else text

    default: Any = argparse.SUPPRESS if hidden else None
    parser.add_argument("--endpoint", default=default,
                        help=h("control endpoint (default: $CIRCUSCTL_ENDPOINT or "
                               "tcp://127.0.0.1:5555; for listen: tcp://127.0.0.1:5556)"))
    parser.add_argument("--timeout", type=_timeout, default=argparse.SUPPRESS if hidden else 5.0,
                        help=h("seconds to wait for each reply (default: 5)"))
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS if hidden else False,
                        help=h("print the raw JSON reply"))
    parser.add_argument("--prettify", action="store_true",
                        default=argparse.SUPPRESS if hidden else False,
                        help=h("with --json: indented, sorted keys"))
    parser.add_argument("--progress", action="store_true",
                        default=argparse.SUPPRESS if hidden else None,
                        help=h("with --waiting: print progress lines on stderr (default: when "
                               "stderr is a terminal)"))
    parser.add_argument("--ssh", default=default, help=h("ssh server, as user@host:port"))
    parser.add_argument("--ssh_keyfile", "--ssh-keyfile", dest="ssh_keyfile", default=default,
                        help=h("ssh key file"))
    parser.add_argument("--no-color", "--no-colour", dest="no_color", action="store_true",
                        default=argparse.SUPPRESS if hidden else False,
                        help=h("no colours (also: $NO_COLOR set, or stdout not a terminal)"))
    add_key_options(parser, hidden=hidden)


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("the timeout must be more than 0 seconds")
    return value


def command_help(name: str) -> str:
    """A command's help for people (see :mod:`circus.cli.ctl_help`)."""
    from circus.cli.ctl_help import command_help as text
    return text(name)


def build_request(name: str, words: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Parse a command's words: its properties, and any global options given after it."""
    parser = command_parser(name)
    literal: list[str] = []
    argv_pos = next((pos for pos in _form(name) if pos.many == "argv"), None)
    if argv_pos is not None:
        words, literal = _argv_split(parser, list(words))
    else:
        words = _literal_tail(name, parser, list(words))
    ns = vars(parser.parse_intermixed_args(words))
    if ns.pop("help", False):
        raise HelpRequested(name)
    args = ns.pop("args")
    overrides = {k: ns.pop(k) for k in GLOBAL_FLAGS if k in ns}
    try:
        props = _positionals(name, args)
    except ValueProblem as exc:
        raise UsageError(str(exc), parser.usage or USAGE, parser.prog) from None
    except _Count:
        raise UsageError("Invalid number of arguments", parser.usage or USAGE, parser.prog) from None
    if argv_pos is not None and literal:
        props[argv_pos.prop] = literal
    props.update(ns)
    return props, overrides


def _literal_tail(name: str, parser: argparse.ArgumentParser, words: list[str]) -> list[str]:
    """For ``add NAME CMD...``: words of the command line that are not circusctl flags are kept
    literally, so that ``circusctl add web python -m http.server --start`` works without quotes.
    An explicit ``--`` makes everything after it literal."""
    form = _form(name)
    if "--" in words or not any(pos.many == "join" for pos in form):
        return words
    before = sum(1 for pos in form if pos.many != "join")      # positionals before the command
    options = {opt: action for action in parser._actions for opt in action.option_strings}
    flags: list[str] = []
    head: list[str] = []
    tail: list[str] = []
    seen = index = 0
    while index < len(words):
        word = words[index]
        action = options.get(word.split("=", 1)[0]) if word.startswith("--") else options.get(word)
        if action is not None:
            takes = action.nargs is None and "=" not in word
            flags += words[index:index + (2 if takes else 1)]
            index += 2 if takes else 1
            continue
        if seen < before:
            head.append(word)
            seen += 1
        else:
            tail.append(word)
        index += 1
    return flags + head + (["--"] + tail if tail else [])


def _argv_split(parser: argparse.ArgumentParser, words: list[str]) -> tuple[list[str], list[str]]:
    """For ``tool NAME ARGS...``: (words for the parser, the literal ARGS). circusctl flags come
    only before NAME (``--`` may end them); every word after NAME is an argument of the tool, as
    given, flags and ``--`` included."""
    options = {opt: action for action in parser._actions for opt in action.option_strings}
    flags: list[str] = []
    index = 0
    while index < len(words) and words[index].startswith("-") and words[index] != "-":
        if words[index] == "--":
            index += 1
            break
        action = options.get(words[index].split("=", 1)[0])
        takes = action is not None and action.nargs is None and "=" not in words[index]
        flags += words[index:index + (2 if takes else 1)]
        index += 2 if takes else 1
    if index >= len(words):
        return flags, []
    return [*flags, "--", words[index]], words[index + 1:]


class _Count(Exception):
    pass


def _positionals(name: str, args: list[str]) -> dict[str, Any]:
    form = _form(name)
    command = COMMANDS.get(name)
    props = {p.name: p for p in command.props} if command else {}
    required = sum(1 for pos in form if not pos.optional)
    greedy = any(pos.many for pos in form)
    if len(args) < required or (not greedy and len(args) > len(form)):
        raise _Count()
    extra = len(args) - required            # words available for optional positionals
    out: dict[str, Any] = {}
    rest = list(args)
    for index, pos in enumerate(form):
        if pos.optional:
            if extra <= 0:
                continue
            extra -= 1
        if pos.many:
            after = sum(1 for later in form[index + 1:] if not later.optional)
            taken, rest = rest[:len(rest) - after], rest[len(rest) - after:]
            out[pos.prop] = _many(pos, taken)
            continue
        word, rest = rest[0], rest[1:]
        prop = props.get(pos.prop)
        out[pos.prop] = _word(prop, word) if prop is not None else word
    return out


def _many(pos: Pos, words: list[str]) -> Any:
    if not words and not pos.optional:
        raise _Count()
    if pos.many == "join":
        return " ".join(words)
    if pos.many == "pairs":
        if len(words) % 2:
            raise ValueProblem("List of key/values is invalid")
        return {words[i].lower(): convert_option(words[i].lower(), words[i + 1])
                for i in range(0, len(words), 2)}
    return list(words)
