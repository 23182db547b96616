"""Configuration errors.

Every problem found while loading a configuration is a `ConfigIssue` (where and why). Loading
collects all of them and raises one `ConfigError`, so an operator fixes a file in one pass::

    circus.errors.CircusError
     └── ConfigError    .issues: list[ConfigIssue]     (the errors)
                        .warnings: list[ConfigIssue]   (lenient issues, reported with them)
                        str(): one "file:line: [section] key: reason" per line

An issue may be *lenient*: something Circus 0.19 accepted without a word, that we refuse by
default and only warn about with ``circusd --no-strict`` (or ``[circus] strict = false``):

- ``IGNORED``: 0.19 ignored it (an unknown key, an unknown section kind, a missing include,
  a repeated key, an unknown socket or variable left as written): the rest is used;
- ``DROPPED``: 0.19 dropped the whole watcher at boot (no ``cmd``, a hook or stream class that
  cannot be imported, ``copy_path`` without ``copy_env``): the other watchers run.
"""

from __future__ import annotations

from collections.abc import Iterable

from circus.errors import CircusError
from circus.records import Record, record

__all__ = ["ConfigIssue", "ConfigError", "Issues", "did_you_mean", "IGNORED", "DROPPED"]

IGNORED, DROPPED = "ignored", "dropped"
_STRICT_NOTE = {
    IGNORED: "Circus 0.19 accepted this silently; 'circusd --no-strict' loads the file and warns",
    DROPPED: "Circus 0.19 dropped this watcher at boot; 'circusd --no-strict' does the same and "
             "warns",
}
_WARNING_NOTE = {IGNORED: "ignored, as Circus 0.19 did",
                 DROPPED: "this watcher is not loaded, as Circus 0.19 did"}


@record
class ConfigIssue(Record):
    """One problem: the place it was found (as precise as known) and the reason."""

    file: str
    line: int | None
    section: str | None
    key: str | None
    reason: str
    lenient: str | None = None   # IGNORED / DROPPED: a warning with --no-strict

    def place(self) -> str:
        """``file:line: [section] key:`` (as precise as known)."""
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        parts = [f"{where}:"]
        if self.section is not None:
            parts.append(f"[{self.section}]")
        if self.key is not None:
            parts.append(f"{self.key}:")
        return " ".join(parts)

    def __str__(self) -> str:
        """As an error: the reason, and for a lenient issue that --no-strict would accept it."""
        note = f" ({_STRICT_NOTE[self.lenient]})" if self.lenient else ""
        return f"{self.place()} {self.reason}{note}"

    def as_warning(self) -> str:
        """As a --no-strict warning: the reason, and what is done about it."""
        note = f" ({_WARNING_NOTE[self.lenient]})" if self.lenient else ""
        return f"{self.place()} {self.reason}{note}"


class ConfigError(CircusError):
    """The configuration cannot be used; `issues` lists every problem found."""

    def __init__(self, issues: Iterable[ConfigIssue],
                 warnings: Iterable[ConfigIssue] = ()) -> None:
        self.issues: list[ConfigIssue] = list(issues)
        self.warnings: list[ConfigIssue] = list(warnings)
        super().__init__("\n".join(str(issue) for issue in self.issues))


class Issues:
    """A collector: parsing goes on after a problem so that all of them are reported at once."""

    def __init__(self) -> None:
        self.items: list[ConfigIssue] = []

    def add(
        self,
        file: str,
        line: int | None,
        section: str | None,
        key: str | None,
        reason: str,
        lenient: str | None = None,
    ) -> None:
        self.items.append(ConfigIssue(file, line, section, key, reason, lenient))

    def __bool__(self) -> bool:
        return bool(self.items)

    def ordered(self, file_order: Iterable[str] = ()) -> list[ConfigIssue]:
        """The issues ordered by file (in read order) then line."""
        rank = {name: index for index, name in enumerate(file_order)}
        return sorted(self.items,
                      key=lambda issue: (rank.get(issue.file, len(rank)), issue.line or 0))

    def raise_if_any(self, file_order: Iterable[str] = ()) -> None:
        """Raise ConfigError with every issue (lenient ones too), ordered by file then line."""
        if self.items:
            raise ConfigError(self.ordered(file_order))

    def split(self, strict: bool, file_order: Iterable[str] = ()
              ) -> tuple[list[ConfigIssue], list[ConfigIssue]]:
        """(errors, warnings): in strict mode every issue is an error; otherwise the lenient
        ones are warnings."""
        items = self.ordered(file_order)
        if strict:
            return items, []
        return ([i for i in items if not i.lenient], [i for i in items if i.lenient])


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ' (did you mean X?)' hint for a near-miss, or ''."""
    import difflib              # for an error only

    matches = difflib.get_close_matches(word.lower(), list(choices), n=1, cutoff=0.7)
    return f" (did you mean {matches[0]!r}?)" if matches else ""
