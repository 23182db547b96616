"""Configuration errors.

Every problem found while loading a configuration is a `ConfigIssue` (where and why). Loading
collects all of them and raises one `ConfigError`, so an operator fixes a file in one pass::

    circus.errors.CircusError
     └── ConfigError    .issues: list[ConfigIssue]
                        str(): one "file:line: [section] key: reason" per line
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from circus.errors import CircusError

__all__ = ["ConfigIssue", "ConfigError", "Issues", "did_you_mean"]


@dataclass(frozen=True)
class ConfigIssue:
    """One problem: the place it was found (as precise as known) and the reason."""

    file: str
    line: int | None
    section: str | None
    key: str | None
    reason: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        parts = [f"{where}:"]
        if self.section is not None:
            parts.append(f"[{self.section}]")
        if self.key is not None:
            parts.append(f"{self.key}:")
        parts.append(self.reason)
        return " ".join(parts)


class ConfigError(CircusError):
    """The configuration cannot be used; `issues` lists every problem found."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues: list[ConfigIssue] = list(issues)
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
    ) -> None:
        self.items.append(ConfigIssue(file, line, section, key, reason))

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self, file_order: Iterable[str] = ()) -> None:
        """Raise ConfigError, issues ordered by file (in read order) then line."""
        if not self.items:
            return
        rank = {name: index for index, name in enumerate(file_order)}
        ordered = sorted(
            self.items,
            key=lambda issue: (rank.get(issue.file, len(rank)), issue.line or 0),
        )
        raise ConfigError(ordered)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ' (did you mean X?)' hint for a near-miss, or ''."""
    import difflib              # for an error only

    matches = difflib.get_close_matches(word.lower(), list(choices), n=1, cutoff=0.7)
    return f" (did you mean {matches[0]!r}?)" if matches else ""
