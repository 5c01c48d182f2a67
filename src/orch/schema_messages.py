"""How a JSON Schema violation is told to the user, the one wording of blueprints and sites.yaml.

Blueprints are checked by the TOSCA grammar compiled into closures (``orch.tosca.grammar``),
``sites.yaml`` by ``jsonschema`` (``orch.sites.config``). Both turn what they found into text
here, so that one mistake (an unknown key, a missing key, a value of the wrong kind, outside an
enum, not of a pattern's form, out of range, a list too short...) reads the same in both. The
place (``place``: "node template", "'port' of site 'hpc1'") is the caller's: each file names its
parts its own way; where the diagnostic points and its rule code are the caller's too.

A wording is text and a hint. Hints that look for close matches (``Suggestion``) are computed
only when shown: the grammar tries the branches of an ``anyOf`` and drops what failed, and a
clean check never runs ``difflib``. Nothing of orch is imported: this sits below the parser,
the sites and the executors.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

KIND_WORDS: dict[str, str] = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "empty",
}
"""What a JSON Schema type is called in messages ("must be a mapping")."""


def suggest(word: str, choices: Iterable[Any], *, limit: int | None = None) -> str:
    """``did you mean 'x'? valid: a, b, c``: the closest valid alternatives (if any is close),
    then the valid ones, sorted (all of them, or the first ``limit`` and "..."); empty without
    any choice."""
    options = sorted({c for c in choices if isinstance(c, str)})
    if not options:
        return ""
    import difflib  # only for a hint: a clean run never needs it

    close = difflib.get_close_matches(word, options, n=3, cutoff=0.6) if word else []
    listed = options if limit is None or len(options) <= limit else [*options[:limit], "..."]
    text = "valid: " + ", ".join(listed)
    if close:
        text = f"did you mean {' or '.join(repr(c) for c in close)}? " + text
    return text


class Suggestion:
    """``suggest(word, choices)``, worked out only when the hint is shown (``str()``)."""

    __slots__ = ("choices", "word")

    def __init__(self, word: str, choices: Iterable[Any]):
        self.word = word
        self.choices = choices

    def __str__(self) -> str:
        return suggest(self.word, self.choices)

    def __repr__(self) -> str:
        return f"Suggestion({self.word!r})"


Hint = str | Suggestion | None


class Wording(NamedTuple):
    """One violation as the user reads it."""

    message: str
    hint: Hint = None
    key: str | None = None
    """The key the wording is about when it is a key of the value (an unknown key): the
    diagnostic points at that key, not at the value."""

    def hint_text(self) -> str | None:
        """The hint as text (a suggestion worked out now); None without one."""
        return None if self.hint is None else (str(self.hint) or None)


def kind_of(value: Any) -> str:
    """What a value is, as messages name it ("not a list")."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def expected(types: str | Sequence[str]) -> str:
    """The kinds a schema's ``type`` allows ("a string or a list"). "empty" (null) is named only
    when it is the only kind: a key left empty is never what a message should suggest."""
    names = [types] if isinstance(types, str) else list(types)
    shown = [t for t in names if t != "null"] or names
    return " or ".join(KIND_WORDS.get(t, t) for t in shown)


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


# -- the violations ------------------------------------------------------------------------------


def unknown_key(key: Any, place: str, allowed: Iterable[Any]) -> Wording:
    """A key the schema does not list (``additionalProperties: false``): every valid key in the
    hint, the closest first."""
    return Wording(f"unknown key '{key}' in {place}", Suggestion(str(key), allowed), str(key))


def missing_key(key: str, place: str) -> Wording:
    """A ``required`` key that is not there."""
    return Wording(f"{place} is missing required key '{key}'")


def wrong_type(value: Any, place: str, wanted: str) -> Wording:
    """A value of another kind than ``type`` allows; ``wanted`` is ``expected(types)``, worked
    out once by a compiled check."""
    return Wording(f"{place} must be {wanted}, not {kind_of(value)}")


def not_one_of(value: Any, place: str, choices: Sequence[Any]) -> Wording:
    """A value outside an ``enum`` (or other than a ``const``): the valid values, and the
    closest in the hint."""
    valid = [c for c in choices if c is not None]
    shown = ", ".join(str(c) for c in valid)
    return Wording(f"{place}: '{value}' is not one of {shown}",
                   Suggestion(str(value), [str(c) for c in valid]))  # fmt: skip


def bad_pattern(value: Any, place: str, pattern: str, form: str | None = None) -> Wording:
    """A string not of a ``pattern``'s form; ``form`` says it in words (else the pattern)."""
    return Wording(f"{place}: '{value}' is not valid", form or f"expected the form {pattern}")


def out_of_range(value: Any, place: str, low: Any = None, high: Any = None) -> Wording:
    """A number below ``minimum`` or above ``maximum``."""
    if low is not None and high is not None:
        bounds = f"{low}-{high}"
    else:
        bounds = f"at least {low}" if low is not None else f"at most {high}"
    return Wording(f"{place}: {value} is out of range ({bounds})")


def too_short(value: Any, place: str, low: int) -> Wording:
    """A string shorter than ``minLength``."""
    if not value:
        return Wording(f"{place} is empty")
    least = _plural(low, "character", "characters")
    return Wording(f"{place}: '{value}' is too short (at least {least})")


def too_long(value: Any, place: str, high: int) -> Wording:
    """A string longer than ``maxLength``."""
    most = _plural(high, "character", "characters")
    return Wording(f"{place} is too long (at most {most})")


def too_few(place: str, low: int, *, entries: bool = False) -> Wording:
    """A list (or, with ``entries``, a map) below ``minItems`` (``minProperties``)."""
    what = _plural(low, "entry", "entries") if entries else _plural(low, "item", "items")
    return Wording(f"{place} needs at least {what}")


def too_many(place: str, high: int, *, entries: bool = False, hint: Hint = None) -> Wording:
    """A list (or, with ``entries``, a map) above ``maxItems`` (``maxProperties``)."""
    what = _plural(high, "entry", "entries") if entries else _plural(high, "item", "items")
    return Wording(f"{place} takes at most {what}", hint)


def describe(keyword: str, value: Any, place: str, schema: Mapping[str, Any],
             form: str | None = None) -> list[Wording] | None:  # fmt: skip
    """The wordings of one violation of ``keyword`` (as ``jsonschema`` reports it: the schema
    object holding the keyword, the value it rejected), or None for a keyword not known here
    (the caller words it). ``form`` is a pattern's form in words."""
    if keyword == "additionalProperties":
        if not isinstance(value, dict):
            return []
        allowed = list(schema.get("properties", ()))
        patterns = list(schema.get("patternProperties", ()))
        return [unknown_key(key, place, allowed) for key in value
                if key not in allowed and not any(re.search(p, str(key)) for p in patterns)]
    if keyword == "required":
        present = value if isinstance(value, dict) else {}
        return [missing_key(key, place) for key in schema["required"] if key not in present]
    if keyword == "type":
        return [wrong_type(value, place, expected(schema["type"]))]
    if keyword == "enum":
        return [not_one_of(value, place, schema["enum"])]
    if keyword == "const":
        return [not_one_of(value, place, [schema["const"]])]
    if keyword == "pattern":
        return [bad_pattern(value, place, schema["pattern"], form)]
    if keyword in ("minimum", "maximum"):
        return [out_of_range(value, place, schema.get("minimum"), schema.get("maximum"))]
    if keyword == "minLength":
        return [too_short(value, place, schema["minLength"])]
    if keyword == "maxLength":
        return [too_long(value, place, schema["maxLength"])]
    if keyword in ("minItems", "minProperties"):
        return [too_few(place, schema[keyword], entries=keyword == "minProperties")]
    if keyword in ("maxItems", "maxProperties"):
        return [too_many(place, schema[keyword], entries=keyword == "maxProperties")]
    return None
