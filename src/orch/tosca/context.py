"""What every checker shares: where diagnostics go, and how a place in a file is named."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from orch.tosca.diagnostics import Diagnostic, Path, Severity, did_you_mean
from orch.tosca.loader import LoadedFile

INTERNAL_RULE = "internal.error"


class Where:
    """A place in a loaded file: the file and the key path to a value.

    Created for every value checked, so kept to two slots and a plain constructor.
    """

    __slots__ = ("_item", "_parent", "file")

    def __init__(
        self,
        file: LoadedFile,
        path: Path,
        parent: Where | None = None,
        item: str | int | None = None,
    ):
        self.file = file
        self._parent = parent  # a child is its parent plus one item: no tuple copies
        self._item = item if parent is not None else path

    @property
    def path(self) -> Path:
        items: list[str | int] = []
        node: Where | None = self
        while node is not None and node._parent is not None:
            items.append(node._item)  # type: ignore[arg-type]
            node = node._parent
        base: Path = node._item if node is not None else ()  # type: ignore[assignment]
        return (*base, *reversed(items))

    def __truediv__(self, item: str | int) -> Where:
        # The hottest allocation of a run (one per value checked): slots set directly, without
        # the __init__ call, is more than twice as fast.
        child = _new(Where)
        child.file = self.file
        child._parent = self
        child._item = item
        return child

    def __repr__(self) -> str:
        return f"Where({self.file.path!r}, {self.path!r})"


_new = object.__new__


@dataclass
class Reporter:
    """Collects diagnostics; positions are computed here, once per reported finding."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    _seen: set[tuple[str, str, int, int]] = field(default_factory=set)
    # every finding reported, repeats included: checks that remember what they found clean
    # compare it before and after (a repeat dropped here is still a finding there)
    findings: int = 0

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
        self.findings += 1
        location = where.file.location(where.path, key=key)
        marker = (rule, message, location.line, location.col)
        if marker in self._seen:  # the same finding reached twice (shared definitions)
            return
        self._seen.add(marker)
        self.diagnostics.append(Diagnostic(rule, severity, message, location, hint or None))

    def error(
        self, rule: str, where: Where, message: str, hint: str | None = None, *, key: bool = False
    ) -> None:
        self.report(rule, where, message, hint, key=key)

    def warning(
        self, rule: str, where: Where, message: str, hint: str | None = None, *, key: bool = False
    ) -> None:
        self.report(rule, where, message, hint, key=key, severity=Severity.WARNING)

    def unknown(
        self, rule: str, where: Where, message: str, name: object, choices: Iterable[str]
    ) -> None:
        """An unknown keyname, reported at the key with the nearest valid names as the hint."""
        self.report(rule, where, message, did_you_mean(str(name), choices), key=True)

    def add(self, diagnostic: Diagnostic) -> None:
        self.findings += 1
        self.diagnostics.append(diagnostic)

    def guard(self, where: Where, what: str, check: Callable[[], None]) -> None:
        """Run one entity's check; a bug in it becomes a finding there, not a lost run.

        The CLI exits with the internal-error code when any ``internal.error`` is reported.
        """
        try:
            check()
        except Exception as exc:  # the safety net of last resort, by design
            self.error(
                INTERNAL_RULE,
                where,
                f"orch failed while checking {what}: {type(exc).__name__}: {exc}",
                "this is a bug in orch; the rest of the file was checked. Please report it "
                "with this file",
            )
