"""The one type for everything a blueprint author can fix, and its ordering rules.

A diagnostic is created with a *path* into a loaded file (keys and list indices) rather than a
line and column: positions are looked up only for the diagnostics that are reported, which keeps
the clean path of the validator free of position bookkeeping.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

PathItem = str | int
Path = tuple[PathItem, ...]


class Severity(IntEnum):
    """Ordered so that ``max()`` gives the worst one."""

    INFO = 1
    WARNING = 2
    ERROR = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Location:
    """A 1-based position in a file."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.col}"
        return self.file


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One finding: ``rule`` is a stable id (documented in README) that tools can filter on."""

    rule: str
    severity: Severity
    message: str
    location: Location
    hint: str | None = None
    related: tuple[Location, ...] = field(default=())

    def sort_key(self) -> tuple[str, int, int, str]:
        loc = self.location
        return (loc.file, loc.line, loc.col, self.message)

    def __str__(self) -> str:
        text = f"{self.location}: {self.severity.label}: {self.message} [{self.rule}]"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


def did_you_mean(word: str, choices: Iterable[str], *, limit: int = 8) -> str:
    """A hint naming the closest valid alternatives, or all of them when there are few."""
    options = sorted({c for c in choices if isinstance(c, str)})
    if not options:
        return ""
    import difflib  # only for a hint: a clean run never needs it

    close = difflib.get_close_matches(word, options, n=3, cutoff=0.6) if word else []
    listed = options if len(options) <= limit else [*options[:limit], "..."]
    text = "valid: " + ", ".join(listed)
    if close:
        text = f"did you mean {' or '.join(repr(c) for c in close)}? " + text
    return text


def worst(diagnostics: Sequence[Diagnostic]) -> Severity | None:
    return max((d.severity for d in diagnostics), default=None)
