"""How a watcher's state looks to an operator: one word, its tone, and its colour (pure).

circusd keeps Circus 0.19's word in ``status``/``state`` (a crash-looping watcher is
``active``, as in 0.19) and says what that word hides in ``trouble``: ``fatal``, ``backoff``
(processes exited or failed to start and wait to be respawned: a crash loop) or ``exited``
(processes ended with an error and are not respawned). The tools that list watchers
(circus-top, ``circusmeta top``, ``status``, ``nodes``) show one word, the trouble when there is
one, else the state: ``active``, ``backoff``, ``exited``, ``fatal``, ``stopped``, ``starting``,
``stopping``. A watcher in trouble never looks like an idle healthy one.

Colour only on a terminal, and never with ``NO_COLOR`` set (https://no-color.org) or
``TERM=dumb``: :func:`use_colour`. The word says it all without colour.
"""
from __future__ import annotations

import enum
from typing import Any, Mapping, TextIO

__all__ = ["TROUBLE", "Tone", "state_word", "tone", "in_trouble", "paint", "use_colour",
           "TROUBLE_ORDER"]

#: the trouble words, worst first
TROUBLE = ("fatal", "exited", "backoff")
#: rank of a word when watchers in trouble are listed first (lower first)
TROUBLE_ORDER = {word: rank for rank, word in enumerate(TROUBLE)}


class Tone(enum.Enum):
    """What a state word means for the operator."""

    BAD = "bad"            # fatal, exited: nothing runs that should
    WARN = "warn"          # backoff: a crash loop, processes come and go
    GOOD = "good"          # active
    BUSY = "busy"          # starting, stopping: on its way
    IDLE = "idle"          # stopped: on purpose
    UNKNOWN = "unknown"    # not said (an older circusd-stats), or a word we do not know


_TONES = {"fatal": Tone.BAD, "exited": Tone.BAD, "backoff": Tone.WARN, "active": Tone.GOOD,
          "running": Tone.GOOD, "starting": Tone.BUSY, "stopping": Tone.BUSY,
          "stopped": Tone.IDLE}
#: SGR colours: red, yellow, green, cyan
_SGR = {Tone.BAD: "31", Tone.WARN: "33", Tone.GOOD: "32", Tone.BUSY: "36"}


def state_word(state: Any, trouble: Any = None) -> str:
    """The one word shown for a watcher: its trouble, else its state, else ``-``."""
    if isinstance(trouble, str) and trouble in TROUBLE:
        return trouble
    return state if isinstance(state, str) and state else "-"


def tone(word: str) -> Tone:
    return _TONES.get(word, Tone.UNKNOWN)


def in_trouble(record: Mapping[str, Any] | None) -> str | None:
    """The trouble word of a record carrying ``state`` and ``trouble`` (a ``status`` detail, a
    ``processes`` entry, a stats aggregate), or None. ``fatal`` counts even from a circusd that
    does not send ``trouble``."""
    if not isinstance(record, Mapping):
        return None
    trouble = record.get("trouble")
    if isinstance(trouble, str) and trouble in TROUBLE:
        return trouble
    return "fatal" if record.get("state") == "fatal" or record.get("status") == "fatal" else None


def paint(text: str, word_tone: Tone, colour: bool) -> str:
    """``text`` in its tone's colour for a terminal (unchanged when ``colour`` is False)."""
    code = _SGR.get(word_tone)
    if not colour or code is None or not text:
        return text
    return f"\x1b[{code}m{text}\x1b[0m"


def use_colour(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Colour for ``stream``: a terminal, ``NO_COLOR`` unset or empty, ``TERM`` not dumb."""
    if environ.get("NO_COLOR") or environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
