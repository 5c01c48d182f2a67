"""Shared fixtures: blueprints written to tmp_path, the external corpus, a clean environment."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from orch.tosca.diagnostics import Diagnostic
from orch.tosca.validator import ValidationResult, validate

pytest_plugins = ["sites.fixtures", "sites.cli", "sites.sge", "sites.hpc", "sites.eflows",
                  "sites.pbs", "sites.browser"]

REPO = Path(__file__).resolve().parents[1]
HEADER = "tosca_definitions_version: tosca_simple_yaml_1_3\n"


def shared_dir() -> Path:
    """``../shared`` beside the repository, or ``$ORCH_SHARED``."""
    override = os.environ.get("ORCH_SHARED")
    return Path(override) if override else REPO.parent / "shared"


CORPUS = shared_dir() / "corpus"
CORPUS_LIBRARIES = ("alien4cloud", "ystia", "eflows4hpc")


def position(text: str, needle: str, nth: int = 1) -> tuple[int, int]:
    """1-based (line, column) of the nth occurrence of ``needle`` in ``text``."""
    index = -1
    for _ in range(nth):
        index = text.index(needle, index + 1)
    line = text.count("\n", 0, index) + 1
    col = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, col


def at(diagnostic: Diagnostic) -> tuple[int, int]:
    return diagnostic.location.line, diagnostic.location.col


class Blueprints:
    """Writes small blueprints under one tmp_path and validates them."""

    def __init__(self, root: Path):
        self.root = root

    def write(self, text: str, name: str = "blueprint.yaml", *, header: bool = True) -> Path:
        body = textwrap.dedent(text).lstrip("\n")
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text((HEADER if header else "") + body, "utf-8")
        return path

    def check(self, text: str, name: str = "blueprint.yaml", *, header: bool = True,
              **kwargs: object) -> Checked:
        path = self.write(text, name, header=header)
        return Checked(validate(path, **kwargs), path.read_text("utf-8"))  # type: ignore[arg-type]


class Checked:
    """A validation result and the text that was validated, with look-ups for assertions."""

    def __init__(self, result: ValidationResult, text: str):
        self.result = result
        self.text = text

    @property
    def ok(self) -> bool:
        return self.result.ok

    @property
    def diagnostics(self) -> list[Diagnostic]:
        return self.result.diagnostics

    def rules(self) -> list[str]:
        return [d.rule for d in self.result.diagnostics]

    def all(self, rule: str) -> list[Diagnostic]:
        return [d for d in self.result.diagnostics if d.rule == rule]

    def one(self, rule: str) -> Diagnostic:
        found = self.all(rule)
        assert len(found) == 1, f"expected one {rule}, got: {self.describe()}"
        return found[0]

    def pos(self, needle: str, nth: int = 1) -> tuple[int, int]:
        return position(self.text, needle, nth)

    def line(self, stripped: str, nth: int = 1) -> int:
        """1-based number of the nth line whose text, stripped, is ``stripped``."""
        seen = 0
        for number, text in enumerate(self.text.splitlines(), 1):
            if text.strip() == stripped:
                seen += 1
                if seen == nth:
                    return number
        raise ValueError(f"no line {stripped!r}")

    def describe(self) -> str:
        return "\n".join(str(d) for d in self.result.diagnostics) or "(no diagnostics)"


@pytest.fixture
def bp(tmp_path: Path) -> Blueprints:
    return Blueprints(tmp_path)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees the developer's catalog, colour or debug settings."""
    for name in ("ORCH_CATALOG", "NO_COLOR", "ORCH_SNIPPETS", "ORCH_DEBUG", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)
    yield


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not (CORPUS / "manifest.json").is_file():
        pytest.skip(f"corpus tests: ../shared/corpus not found (looked at {CORPUS})")
    return CORPUS


@pytest.fixture(scope="session")
def corpus_catalog(corpus: Path):
    from orch.tosca.imports import default_catalog

    saved = os.environ.pop("ORCH_CATALOG", None)
    try:
        return default_catalog([corpus / name for name in CORPUS_LIBRARIES])
    finally:
        if saved is not None:
            os.environ["ORCH_CATALOG"] = saved
