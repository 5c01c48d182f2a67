"""Diagnostics as text, JSON, SARIF 2.1.0, GitHub workflow commands and JUnit XML.

The JSON envelope is versioned (``"format": "orch.diagnostics", "version": 1``) and documented
in README.md; change it only by adding fields, or bump the version.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from orch import __version__
from orch.tosca.diagnostics import Diagnostic, Severity

FORMATS = ("text", "json", "sarif", "github", "junit")
JSON_FORMAT_VERSION = 1
SourceLine = Callable[[str, int], str | None]

_COLORS = {Severity.ERROR: "\x1b[31m", Severity.WARNING: "\x1b[33m", Severity.INFO: "\x1b[36m"}
_BOLD, _DIM, _RESET = "\x1b[1m", "\x1b[2m", "\x1b[0m"


def render(
    fmt: str,
    diagnostics: Sequence[Diagnostic],
    files: Sequence[str],
    *,
    color: bool = False,
    source_line: SourceLine | None = None,
) -> str:
    return {
        "text": lambda: text(diagnostics, files, color=color, source_line=source_line),
        "json": lambda: as_json(diagnostics, files),
        "sarif": lambda: sarif(diagnostics),
        "github": lambda: github(diagnostics),
        "junit": lambda: junit(diagnostics, files),
    }[fmt]()


def text(
    diagnostics: Sequence[Diagnostic],
    files: Sequence[str],
    *,
    color: bool = False,
    source_line: SourceLine | None = None,
) -> str:
    lines: list[str] = []
    for d in diagnostics:
        severity = d.severity.label
        if color:
            severity = f"{_COLORS[d.severity]}{_BOLD}{severity}{_RESET}"
            head = f"{_BOLD}{d.location}{_RESET}: {severity}: {d.message} {_DIM}[{d.rule}]{_RESET}"
        else:
            head = f"{d.location}: {severity}: {d.message} [{d.rule}]"
        lines.append(head)
        if source_line is not None and d.location.line:
            code = source_line(d.location.file, d.location.line)
            if code is not None:
                gutter = f"{d.location.line:>5} | "
                lines.append(gutter + code.rstrip())
                caret = " " * (len(gutter) - 2) + "| " + " " * max(d.location.col - 1, 0) + "^"
                lines.append(f"{_COLORS[d.severity]}{caret}{_RESET}" if color else caret)
        if d.hint:
            lines.append(f"  hint: {d.hint}")
        for related in d.related:
            lines.append(f"  see: {related}")
    counts = _counts(diagnostics)
    summary = (
        f"{len(files)} file{'s' if len(files) != 1 else ''} checked: "
        f"{counts['error']} error{'s' if counts['error'] != 1 else ''}, "
        f"{counts['warning']} warning{'s' if counts['warning'] != 1 else ''}"
    )
    lines.append(summary)
    return "\n".join(lines) + "\n"


def _counts(diagnostics: Sequence[Diagnostic]) -> dict[str, int]:
    counts = {"error": 0, "warning": 0, "info": 0}
    for d in diagnostics:
        counts[d.severity.label] += 1
    return counts


def _as_dict(d: Diagnostic) -> dict[str, object]:
    return {
        "rule": d.rule,
        "severity": d.severity.label,
        "message": d.message,
        "file": d.location.file,
        "line": d.location.line,
        "column": d.location.col,
        "hint": d.hint,
        "related": [{"file": r.file, "line": r.line, "column": r.col} for r in d.related],
    }


def as_json(diagnostics: Sequence[Diagnostic], files: Sequence[str]) -> str:
    envelope = {
        "format": "orch.diagnostics",
        "version": JSON_FORMAT_VERSION,
        "tool": {"name": "orch", "version": __version__},
        "files": list(files),
        "summary": _counts(diagnostics),
        "diagnostics": [_as_dict(d) for d in diagnostics],
    }
    return json.dumps(envelope, indent=2) + "\n"


_SARIF_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def sarif(diagnostics: Sequence[Diagnostic]) -> str:
    rules = sorted({d.rule for d in diagnostics})
    results = []
    for d in diagnostics:
        region = {"startLine": max(d.location.line, 1), "startColumn": max(d.location.col, 1)}
        message = d.message + (f" ({d.hint})" if d.hint else "")
        results.append(
            {
                "ruleId": d.rule,
                "ruleIndex": rules.index(d.rule),
                "level": _SARIF_LEVEL[d.severity],
                "message": {"text": message},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": d.location.file},
                            "region": region,
                        }
                    }
                ],
            }
        )
    log = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "orch",
                        "version": __version__,
                        "informationUri": "https://pypi.org/project/orch/",
                        "rules": [{"id": r, "name": r.replace(".", "-")} for r in rules],
                    }
                },
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2) + "\n"


def _gh_escape(value: str, *, prop: bool = False) -> str:
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        value = value.replace(":", "%3A").replace(",", "%2C")
    return value


def github(diagnostics: Sequence[Diagnostic]) -> str:
    lines = []
    for d in diagnostics:
        command = {"error": "error", "warning": "warning", "info": "notice"}[d.severity.label]
        props = f"file={_gh_escape(d.location.file, prop=True)}"
        if d.location.line:
            props += f",line={d.location.line},col={d.location.col}"
        props += f",title={_gh_escape(d.rule, prop=True)}"
        message = d.message + (f" (hint: {d.hint})" if d.hint else "")
        lines.append(f"::{command} {props}::{_gh_escape(message)}")
    return "\n".join(lines) + ("\n" if lines else "")


def junit(diagnostics: Sequence[Diagnostic], files: Sequence[str]) -> str:
    from xml.sax.saxutils import escape, quoteattr  # pulls in urllib: only when asked for

    by_file: dict[str, list[Diagnostic]] = {f: [] for f in files}
    for d in diagnostics:
        by_file.setdefault(d.location.file, []).append(d)
    failures = sum(1 for d in diagnostics if d.severity is Severity.ERROR)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<testsuites name="orch validate" tests="{len(by_file)}" failures="{failures}">',
        f'  <testsuite name="orch validate" tests="{len(by_file)}" failures="{failures}">',
    ]
    for file, found in by_file.items():
        out.append(f'    <testcase classname="orch.validate" name={quoteattr(file)}>')
        for d in found:
            if d.severity is Severity.ERROR:
                out.append(
                    f"      <failure type={quoteattr(d.rule)} message={quoteattr(d.message)}>"
                    f"{escape(str(d))}</failure>"
                )
        warnings = [str(d) for d in found if d.severity is not Severity.ERROR]
        if warnings:
            out.append(f"      <system-out>{escape(chr(10).join(warnings))}</system-out>")
        out.append("    </testcase>")
    out += ["  </testsuite>", "</testsuites>"]
    return "\n".join(out) + "\n"
