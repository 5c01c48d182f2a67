"""The layers import downwards only: the parser and the planner know nothing of running, the
executors nothing of the engine or the parser, the transports nothing above them. Read from the
source (every ``import``, lazy ones in functions too)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "orch"
BELOW: dict[str, set[str]] = {
    # package -> the packages of orch it must not import
    "tosca": {"engine", "executors", "state", "cli", "deployments"},
    "plan": {"engine", "executors", "state", "cli", "deployments"},
    "executors": {"engine", "tosca", "cli", "deployments", "state"},
    "transfers": {"engine", "tosca", "cli", "deployments", "state"},
    "transport": {"engine", "executors", "state", "tosca", "plan", "images", "sites", "cli",
                  "deployments", "transfers"},
    "images": {"executors", "engine", "cli", "deployments", "state"},
    # single modules below the executors and the image builders (orch/remote.py)
    "remote": {"executors", "engine", "images", "tosca", "plan", "cli", "deployments", "state",
               "transfers"},
    # below the parser and the sites, which both word schema violations with it
    "schema_messages": {"tosca", "sites", "engine", "executors", "images", "plan", "cli",
                        "deployments", "state", "transfers", "transport"},
}
KNOWN: set[tuple[str, str]] = set()
"""Imports still to move, each a place that must not grow: a new import fails the test."""


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def violations() -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for package, banned in BELOW.items():
        module = SRC / f"{package}.py"
        for path in [module] if module.is_file() else (SRC / package).rglob("*.py"):
            for module in imports_of(path):
                parts = module.split(".")
                if parts[0] == "orch" and len(parts) > 1 and parts[1] in banned:
                    found.add((str(path.relative_to(SRC)), module))
    return found


def test_layers_import_downwards_only() -> None:
    new = sorted(violations() - KNOWN)
    assert not new, "imports against the layering:\n" + "\n".join(f"{f}: {m}" for f, m in new)


def test_the_known_exceptions_are_still_there_or_struck_off() -> None:
    """An exception that was fixed is removed from KNOWN, so that it cannot come back."""
    assert not sorted(KNOWN - violations())
