"""A small INI reader that keeps the file and line of every value.

configparser cannot report line numbers, so Circus 0.19's dialect is read here:

- `[header]` starts a section; a header seen again (in the same file or in an included one)
  extends the section.
- `key = value` or `key : value`, split at the first delimiter; keys keep their case.
- Full-line comments start with `#` or `;` (after optional indentation); a line whose first word
  is `rem` (any case) is a comment too; an inline comment starts at a `;` preceded by whitespace.
- A line indented deeper than its option continues the value: joined with "\n" (blank lines in
  between are kept as empty lines when a continuation follows them).
- A value of exactly `""` is the empty string.
- First definition wins: a repeated key is ignored, also across files (main file first). 0.19
  did that silently; here it is a lenient issue (an error unless --no-strict), and so is a
  section header repeated in the same file (its options are merged, as 0.19 did). A section
  continued in an included file is the documented way to add options: no issue.
- `__name__` is reserved (0.19 leaked it into child environments) and refused.
- A NUL byte cannot reach a process (argv, environment and paths are C strings): refused.
"""

from __future__ import annotations

import re

from circus.records import Factory, Record, record

from .errors import IGNORED, Issues

__all__ = ["IniValue", "IniSection", "parse_ini", "merge_sections"]

_INLINE_COMMENT = re.compile(r"\s;")
_PER_FILE = ("include", "include_dir")   # each file's own: read by the loader, file by file
_OPTION = re.compile(r"(?P<key>[^=:]*?)\s*[=:]\s*(?P<value>.*)$")


@record
class IniValue(Record):
    key: str
    value: str
    file: str
    line: int


@record(frozen=False)
class IniSection(Record):
    """A section's first header (file, line) and its values, first definition winning."""

    header: str
    file: str
    line: int
    values: dict[str, IniValue] = Factory(dict)

    def add(self, item: IniValue, issues: Issues | None = None) -> None:
        """Keep ``item`` unless the key is set already (first definition wins); a repeat is
        reported to ``issues``."""
        first = self.values.get(item.key)
        if first is None:
            self.values[item.key] = item
        elif issues is not None:
            issues.add(item.file, item.line, self.header, item.key,
                       f"set again (first at {first.file}:{first.line}); this value is ignored",
                       IGNORED)


def _strip_inline_comment(text: str) -> str:
    match = _INLINE_COMMENT.search(text)
    return text[: match.start()] if match else text


def _is_comment(line: str) -> bool:
    stripped = line.strip()
    if stripped.startswith(("#", ";")):
        return True
    words = line.split(None, 1)
    return bool(words) and not line[0].isspace() and words[0].lower() == "rem"


def _finish(value: str) -> str:
    return "" if value == '""' else value


class _Reader:
    def __init__(self, text: str, filename: str, issues: Issues) -> None:
        self.filename = filename
        self.issues = issues
        self.sections: dict[str, IniSection] = {}
        self.current: IniSection | None = None
        # the option being read: key, line, indent, value lines, blank lines pending
        self.key: str | None = None
        self.key_line = 0
        self.indent = 0
        self.lines: list[str] = []
        self.blanks = 0
        for number, raw in enumerate(text.splitlines(), start=1):
            if "\0" in raw:
                self.flush()
                self.issues.add(filename, number, self.current.header if self.current else None,
                                None, "a NUL byte: no value can hold one (a process's arguments, "
                                "environment and paths cannot)")
                continue
            self.feed(number, raw)
        self.flush()

    def feed(self, number: int, raw: str) -> None:
        if not raw.strip():
            self.blanks += 1
            return
        if _is_comment(raw):
            return
        indent = len(raw) - len(raw.lstrip())
        text = _strip_inline_comment(raw).strip()
        if self.key is not None and indent > self.indent:
            self.lines.extend([""] * self.blanks)
            self.lines.append(text)
            self.blanks = 0
            return
        self.flush()
        if text.startswith("["):
            self.start_section(number, text)
        else:
            self.start_option(number, indent, text)

    def start_section(self, number: int, text: str) -> None:
        if not text.endswith("]") or len(text) < 3:
            self.issues.add(self.filename, number, None, None, f"malformed section header {text!r}")
            self.current = IniSection(text, self.filename, number)  # read on, keep nothing
            return
        header = text[1:-1].strip()
        section = self.sections.get(header)
        if section is None:
            section = self.sections[header] = IniSection(header, self.filename, number)
        else:
            self.issues.add(self.filename, number, header, None,
                            f"section started again (first at line {section.line}); its options "
                            "are added to the first one", IGNORED)
        self.current = section

    def start_option(self, number: int, indent: int, text: str) -> None:
        match = _OPTION.match(text)
        section = self.current.header if self.current else None
        if match is None or not match.group("key"):
            self.issues.add(self.filename, number, section, None,
                            f"expected 'key = value', got {text!r}")
            return
        key = match.group("key")
        if self.current is None:
            self.issues.add(self.filename, number, None, key, "option outside of any section")
            return
        if key == "__name__":
            self.issues.add(self.filename, number, section, key, "reserved name")
            return
        self.key, self.key_line, self.indent = key, number, indent
        self.lines = [match.group("value")]
        self.blanks = 0

    def flush(self) -> None:
        if self.key is not None and self.current is not None:
            value = _finish("\n".join(self.lines))
            self.current.add(IniValue(self.key, value, self.filename, self.key_line), self.issues)
        self.key = None
        self.blanks = 0


def parse_ini(text: str, filename: str, issues: Issues) -> list[IniSection]:
    """The sections of one file, in order of first appearance; problems go to `issues`."""
    return list(_Reader(text, filename, issues).sections.values())


def merge_sections(into: dict[str, IniSection], sections: list[IniSection],
                   issues: Issues | None = None) -> None:
    """Fold a later file's sections into `into`: new sections and keys are added, none replaced
    (a key set again is reported to `issues`)."""
    for section in sections:
        target = into.get(section.header)
        if target is None:
            into[section.header] = IniSection(
                section.header, section.file, section.line, dict(section.values)
            )
            continue
        for item in section.values.values():
            own_include = section.header == "circus" and item.key.lower() in _PER_FILE
            target.add(item, None if own_include else issues)
