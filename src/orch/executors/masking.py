"""Secret masking, one way for every executor: whole occurrences of secret values become
``*****`` in log lines, messages, outputs and kept files.

Masking every substring would garble and reveal: a secret ``x`` would turn every "x" of every
message into ``*****``, and the gaps would spell the secret out. So a secret is masked where it
stands whole: not glued to word characters on a side where the secret itself starts or ends with
a word character (``abc`` is masked in "user abc." and "u:abc@h", not inside "xabcx"; ``p@ss!``
in "user:p@ss!@host"). Long secrets (``ANYWHERE_LENGTH``) cannot match by accident and are
masked wherever they appear, glued or not. Secrets shorter than ``MIN_SECRET_LENGTH`` cannot be
masked safely at all: they are left alone, and ``short_secret_warnings`` says which inputs they
are, so that deploy can warn before anything runs.

Each secret is also masked as JSON writes it (escaped once and twice: Ansible's events embed
JSON text in JSON), and each line of a multi-line secret (a private key) on its own, since
output is masked line by line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from orch.executors.base import OperationResult, as_text

MASK = "*****"
MIN_SECRET_LENGTH = 4
"""Secrets shorter than this are not masked: masking 1 to 3 characters wherever they stand
alone would still hit ordinary words and numbers ("id", "ok", "42") and give the value away."""
ANYWHERE_LENGTH = 16
"""Secrets at least this long are masked wherever they appear, even glued to other text
("user_<token>"): no ordinary text contains them by chance."""

_WORD = re.compile(r"\w")


def maskable(value: str) -> bool:
    """Whether a secret value is long enough to be masked (see ``MIN_SECRET_LENGTH``)."""
    return len(value) >= MIN_SECRET_LENGTH


def _forms(value: str) -> set[str]:
    """The texts that give ``value`` away: itself, its lines, and their JSON-escaped forms."""
    if not maskable(value):
        return set()
    plain = {value}
    if "\n" in value or "\r" in value:
        plain.update(line for line in value.splitlines() if maskable(line))
    forms = set(plain)
    for text in plain:
        for ascii_only in (True, False):
            once = json.dumps(text, ensure_ascii=ascii_only)[1:-1]
            forms.add(once)
            forms.add(json.dumps(once, ensure_ascii=ascii_only)[1:-1])
    return forms


def _pattern(form: str) -> str:
    body = re.escape(form)
    if len(form) >= ANYWHERE_LENGTH:
        return body
    head = r"(?<!\w)" if _WORD.match(form[0]) else ""
    tail = r"(?!\w)" if _WORD.match(form[-1]) else ""
    return f"{head}{body}{tail}"


class Masker:
    """Replaces whole occurrences of secret values by ``MASK`` (longest first, so that a secret
    containing another one is masked whole). Values that are not strings are masked as they are
    written out (``as_text``) and as ``str`` gives them."""

    def __init__(self, values: Iterable[Any]):
        texts: set[str] = set()
        for value in values:
            if value is None:
                continue
            texts.add(value if isinstance(value, str) else as_text(value))
            texts.add(str(value))
        self.skipped = tuple(sorted(t for t in texts if t and not maskable(t)))
        """Secrets too short to be masked (left as they are)."""
        forms: set[str] = set()
        for text in texts:
            forms |= _forms(text)
        self.values = tuple(sorted(forms, key=lambda f: (-len(f), f)))
        self._regex = (
            re.compile("|".join(_pattern(f) for f in self.values)) if self.values else None
        )

    def __call__(self, text: str) -> str:
        if self._regex is None or not text:
            return text
        return self._regex.sub(MASK, text)

    def sink(self, log: Callable[[str, str], None]) -> Callable[[str, str], None]:
        """A log sink (``RunContext.log``) that masks each line before passing it on."""
        if self._regex is None:
            return log
        return lambda stream, line: log(stream, self(line))

    def result(self, result: OperationResult) -> OperationResult:
        """``result`` with its message, output tails and outputs masked."""
        if self._regex is None:
            return result
        return replace(
            result,
            message=self(result.message),
            stdout_tail=[self(line) for line in result.stdout_tail],
            stderr_tail=[self(line) for line in result.stderr_tail],
            outputs={self(k): self(v) if isinstance(v, str) else v
                     for k, v in result.outputs.items()},
        )


def short_secret_warnings(inputs: Mapping[str, Any], secret_names: Iterable[str]) -> list[str]:
    """One warning per secret input whose value is too short to be masked (names only, never
    the value), for deploy to show before it runs anything."""
    warnings = []
    for name in sorted(set(secret_names)):
        value = inputs.get(name)
        if value is None or value == "":
            continue
        text = value if isinstance(value, str) else as_text(value)
        if not maskable(text):
            warnings.append(
                f"secret input '{name}' is shorter than {MIN_SECRET_LENGTH} characters: it "
                "cannot be masked without giving it away, so logs and outputs may show it; "
                "use a longer value"
            )
    return warnings


__all__ = ["ANYWHERE_LENGTH", "MASK", "MIN_SECRET_LENGTH", "Masker", "maskable",
           "short_secret_warnings"]
