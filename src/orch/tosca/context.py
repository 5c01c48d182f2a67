"""What every checker shares: where diagnostics go, and how a place in a file is named."""

from __future__ import annotations

from dataclasses import dataclass, field

from orch.tosca.diagnostics import Diagnostic, Path, Severity
from orch.tosca.loader import LoadedFile


@dataclass(frozen=True, slots=True)
class Where:
    """A place in a loaded file: the file and the key path to a value."""

    file: LoadedFile
    path: Path

    def __truediv__(self, item: str | int) -> Where:
        return Where(self.file, (*self.path, item))


@dataclass
class Reporter:
    """Collects diagnostics; positions are computed here, once per reported finding."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    _seen: set[tuple[str, str, int, int]] = field(default_factory=set)

    def report(
        self,
        rule: str,
        where: Where,
        message: str,
        hint: str | None = None,
        *,
        key: bool = False,
        severity: Severity = Severity.ERROR,
    ) -> None:
        location = where.file.location(where.path, key=key)
        marker = (rule, message, location.line, location.col)
        if marker in self._seen:  # the same finding reached twice (shared definitions)
            return
        self._seen.add(marker)
        self.diagnostics.append(Diagnostic(rule, severity, message, location, hint or None))

    def error(self, rule: str, where: Where, message: str, hint: str | None = None,
              *, key: bool = False) -> None:
        self.report(rule, where, message, hint, key=key)

    def warning(self, rule: str, where: Where, message: str, hint: str | None = None,
                *, key: bool = False) -> None:
        self.report(rule, where, message, hint, key=key, severity=Severity.WARNING)

    def add(self, diagnostic: Diagnostic) -> None:
        self.diagnostics.append(diagnostic)
