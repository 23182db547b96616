"""``circusmeta --help`` and the answer to a mistyped command (pure).

The help lists the commands and the options as a terminal shows them; the reference is
``docs/circusmeta.rst``. An unknown command gets the nearest known names (an edit distance that
counts a swap of two neighbouring letters as one edit, as in ``stauts``), or names it starts.
"""
from __future__ import annotations

from typing import Iterable

__all__ = ["HELP", "LOCAL_COMMANDS", "suggestions", "unknown_command", "distance"]

#: the commands circusmeta itself implements (the others are circusctl's, fanned out)
LOCAL_COMMANDS = ("nodes", "status", "list", "stats", "tail", "add", "top", "proxy", "discover",
                  "prometheus-sd", "help")

HELP = """\
usage: circusmeta [--pool FILE] [--json] [--timeout S] [--log-dir D] COMMAND [ARGS]
                  [--node N | --tag T | --all]

Run a pool of circusd nodes as one: every command goes to the selected nodes at once and
gives a result per node.

commands:
  nodes                 each node: state, address, tags, load, memory, watchers and how many
                        are in trouble, processes, round trip
  status [NAME]         every watcher of every node and what is wrong (TROUBLE: fatal,
                        backoff, exited); with a NAME, its processes and last output lines
  tail [NAME]           the last output lines, every watcher's or NAME's, as NODE/WATCHER |
                        LINE [--lines N] [--stream stdout|stderr] [--follow]
  list, stats [NAME]    merged across the pool, a row per node and watcher
  add NAME CMD...       place a new watcher on the node a strategy picks
  restart|reload|stop|start --rolling TARGET
                        node after node, each step waiting until its processes are ready
  top                   the live view of every node (circus-top, with --once for scripts)
  proxy                 one merged stats socket and one events socket for dashboards
  discover              find circusd nodes by multicast and print their pool sections
  prometheus-sd         Prometheus targets: every node's /metrics, as a file_sd file
                        (--out FILE.json) or served as http_sd (--listen HOST:PORT)
  any circusctl command start, stop, restart, incr, decr, set, get, processes, ...: sent to
                        the selected nodes at once
  help [COMMAND]        this text, or a command's (also: circusmeta COMMAND --help)

options:
  --pool FILE           the pool file (default: $CIRCUSMETA_POOL, ~/.config/circus/pool.ini,
                        /etc/circus/pool.ini), or srv://[SERVER:PORT/]NAME: the nodes of
                        DNS's SRV records
  --json                print the results as JSON
  --timeout S           per-node deadline in seconds (default: [meta] timeout; at least 30 s
                        for a command with --waiting)
  --log-dir D           write an audit file there for every run that changes something
                        ([meta] log_dir)
  --node N              only this node (repeatable; before or after the command)
  --tag T               only the nodes with this tag (repeatable: every tag given)
  --all                 every node: a command that changes something needs --node, --tag or
                        --all
  --version             print the version
  -h, --help            print this text

exit codes: 0 every selected node did it; 1 no node could be reached (or the DNS server of
a pool from DNS did not answer); 2 usage or pool file error; 3 no node did it (the nodes
that answered refused); 4 partial (some did it, others failed or could not be reached).
"""


def distance(a: str, b: str) -> int:
    """Edits from ``a`` to ``b``: insert, delete, replace, or swap two neighbouring letters."""
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(rows[i - 1][j] + 1, row[j - 1] + 1,
                         rows[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[i - 2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def suggestions(word: str, choices: Iterable[str], limit: int = 3) -> list[str]:
    """The known names nearest to ``word`` (at most ``limit``, nearest first), or the names it
    starts (``proc`` -> ``processes``)."""
    word = word.lower()
    names = sorted(set(choices))
    allowed = 1 if len(word) <= 4 else 2
    near = sorted((d, n) for n in names if (d := distance(word, n)) <= allowed)
    found = [n for d, n in near if d == near[0][0]]          # the nearest ones only
    if len(word) >= 3:
        found += [n for n in names if n.startswith(word) and n not in found]
    return found[:limit]


def unknown_command(word: str, choices: Iterable[str]) -> str:
    """The usage error for an unknown command."""
    near = suggestions(word, choices)
    if near:
        quoted = [repr(n) for n in near]
        hint = " or ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)
        return f"unknown command {word!r} (did you mean {hint}?); 'circusmeta --help' lists them"
    return f"unknown command {word!r}; 'circusmeta --help' lists the commands"
