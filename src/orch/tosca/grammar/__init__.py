"""The TOSCA grammar, shipped as a JSON Schema (draft-07) and compiled into Python closures.

The schema is the single source of truth for keynames and shapes: editors use it through
yaml-language-server, ``orch schema`` prints it, and ``orch validate`` runs it. Generic JSON Schema
validators walk the schema for every value; compiling the subset of keywords the schema uses into
closures, once per process, is what keeps the check linear and cheap on 5,000-node templates.
The test suite checks that the compiled form agrees with ``jsonschema`` on the whole corpus.

What a violation says is ``orch.schema_messages``'s, as for sites.yaml: one mistake, one wording.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from orch.schema_messages import (
    bad_pattern,
    expected,
    missing_key,
    not_one_of,
    too_few,
    too_many,
    unknown_key,
    wrong_type,
)

SCHEMA_FILE = "tosca.schema.json"

# (path, rule, message, hint, points at the key rather than the value)
Finding = tuple[tuple[Any, ...], str, str, Any, bool]
# While checking, a path is linked: () at the root, (parent path, key) below it. Building a flat
# tuple for every value visited would copy the whole path each time; findings are few.
Check = Callable[[Any, tuple[Any, ...], list[Finding]], None]


def schema_text() -> str:
    return (Path(__file__).parent / SCHEMA_FILE).read_text("utf-8")


@cache
def schema() -> dict[str, Any]:
    return json.loads(schema_text())


@cache
def document_check() -> Check:
    """The compiled check of a whole TOSCA file."""
    return _Compiler(schema()).compile(schema(), "service template")


def check_document(data: Any) -> list[Finding]:
    findings: list[Finding] = []
    document_check()(data, (), findings)
    return [(_flat(p), r, m, _text(h), k) for p, r, m, h, k in findings]


def _text(hint: Any) -> str | None:
    """A finding's hint as text: a suggestion is worked out only for a finding reported."""
    return None if hint is None else (str(hint) or None)


def _flat(path: tuple[Any, ...]) -> tuple[Any, ...]:
    """A linked path as the flat tuple of its keys, root first."""
    keys = []
    while path:
        path, key = path
        keys.append(key)
    keys.reverse()
    return tuple(keys)


_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}
def _label(ref_name: str) -> str:
    return ref_name.replace("_", " ")


class _Compiler:
    def __init__(self, root: dict[str, Any]):
        self.root = root
        self.refs: dict[str, Check] = {}
        self._waiting: dict[Check, list[tuple[Any, Any]]] = {}  # a ref to compile: its holders
        self._compiled: dict[Check, Check] = {}  # a ref compiled: what it compiled to

    def ref(self, pointer: str) -> Check:
        if pointer in self.refs:
            return self.refs[pointer]
        name = pointer.rsplit("/", 1)[-1]

        def lazy(value: Any, path: tuple[Any, ...], out: list[Finding]) -> None:
            # compiled on first use: a document uses a part of the grammar, and compiling all
            # of it costs more than checking a small file
            compiled = self._compiled.get(lazy) or self._resolve(lazy, name)
            compiled(value, path, out)

        self.refs[pointer] = lazy
        self._waiting[lazy] = []
        return lazy

    def _resolve(self, lazy: Check, name: str) -> Check:
        compiled = self.compile(self.root["definitions"][name], _label(name))
        self._compiled[lazy] = compiled
        for holder, key in self._waiting.pop(lazy):
            self._hold(holder, key, compiled)
        return compiled

    def _hold(self, holder: Any, key: Any, check: Check | None) -> None:
        """``holder[key] = check``; a ref is replaced there by what it compiles to, once it is
        compiled, so that each value checked later costs one call less."""
        while check in self._compiled:
            check = self._compiled[check]
        holder[key] = check
        if check in self._waiting:
            self._waiting[check].append((holder, key))

    def _held(self, checks: list[Check]) -> list[Check]:
        """A list of checks whose refs are replaced in it once compiled."""
        held: list[Check] = list(checks)
        for i, check in enumerate(checks):
            self._hold(held, i, check)
        return held

    def trivial(self, node: dict[str, Any]) -> bool:
        """True when the schema accepts anything (only annotations, possibly behind $refs)."""
        for _ in range(20):
            if "$ref" not in node:
                break
            node = self.root["definitions"][node["$ref"].rsplit("/", 1)[-1]]
        return not any(k in node for k in _VALIDATING)

    def compile(self, node: dict[str, Any], label: str) -> Check:
        checks: list[Check] = []
        if self.trivial(node):
            return _accept
        if "$ref" in node:
            return self.ref(node["$ref"])
        types = node.get("type")
        if types is not None and not any(k in node for k in _VALUE_KEYWORDS):
            return self._shaped(node, types if isinstance(types, list) else [types], label)
        if types is not None:
            checks.append(self._type(types if isinstance(types, list) else [types], label))
        if "enum" in node:
            checks.append(self._enum(node["enum"], label))
        if "const" in node:
            checks.append(self._enum([node["const"]], label))
        if "pattern" in node:
            checks.append(self._pattern(node["pattern"], label))
        if any(k in node for k in _OBJECT_KEYWORDS):
            checks.append(self._object(node, label))
        if any(k in node for k in _ARRAY_KEYWORDS):
            checks.append(self._array(node, label))
        for word in ("anyOf", "oneOf"):
            if word in node:
                checks.append(self._any_of(node[word], label))
        if not checks:
            return _accept
        if len(checks) == 1:
            return checks[0]
        gate = checks[0] if types is not None else None  # a type check (never a ref)
        rest = self._held(checks[1:] if gate is not None else checks)

        def all_of(value: Any, path: tuple[Any, ...], out: list[Finding]) -> None:
            if gate is not None:
                before = len(out)
                gate(value, path, out)
                if len(out) != before:
                    return  # wrong shape: the other checks would only repeat it
            for check in rest:
                check(value, path, out)

        return all_of

    def _shaped(self, node: dict[str, Any], types: list[str], label: str) -> Check:
        """A typed node without value keywords, the commonest kind: one closure that dispatches
        on the value's kind instead of a type check followed by every other check."""
        type_check = self._type(types, label)
        takes_map = "object" in types
        takes_list = "array" in types
        items = self._array(node, label) if any(k in node for k in _ARRAY_KEYWORDS) else None
        items = None if items is _accept or not takes_list else items
        members = None
        if takes_map and any(k in node for k in _OBJECT_KEYWORDS):
            if items is None:
                # the commonest node of all, a map of keynames: one closure (the members'
                # check, with the type check for other values), not a dispatch and then that
                fused = self._object(node, label, other=type_check)
                if fused is not _accept:
                    return fused
            else:
                members = self._object(node, label)
                members = None if members is _accept else members

        def shaped(value: Any, path: tuple[Any, ...], out: list[Finding]) -> None:
            kind = type(value)
            if kind is dict and takes_map:
                if members is not None:
                    members(value, path, out)
            elif kind is list and takes_list:
                if items is not None:
                    items(value, path, out)
            else:
                type_check(value, path, out)  # other kinds: accepted, or reported here
                if members is not None and isinstance(value, dict):
                    members(value, path, out)  # a subclass of dict

        return shaped

    def _type(self, types: list[str], label: str) -> Check:
        accepted = tuple(dict.fromkeys(t for name in types for t in _PY_TYPES[name]))
        bools = "boolean" in types  # a bool is an int to isinstance(), not to JSON Schema
        wanted = expected(types)

        def check(value: Any, path: tuple[Any, ...], out: list[Finding]) -> None:
            if isinstance(value, accepted) and (bools or type(value) is not bool):
                return
            out.append((path, "grammar.type", wrong_type(value, label, wanted).message, None,
                        False))  # fmt: skip

        return check

    def _enum(self, choices: list[Any], label: str) -> Check:
        def check(value: Any, path: tuple[Any, ...], out: list[Finding]) -> None:
            for choice in choices:
                if value == choice and isinstance(value, bool) == isinstance(choice, bool):
                    return
            wording = not_one_of(value, label, choices)
            out.append((path, "grammar.enum", wording.message, wording.hint, False))

        return check

    def _pattern(self, pattern: str, label: str) -> Check:
        regex = re.compile(pattern)

        def check(value: Any, path: tuple[Any, ...], out: list[Finding]) -> None:
            if isinstance(value, str) and not regex.search(value):
                wording = bad_pattern(value, label, pattern)
                out.append((path, "grammar.pattern", wording.message, wording.hint, False))

        return check

    def _object(self, node: dict[str, Any], label: str, other: Check | None = None) -> Check:
        """The check of a map's keys and values; ``other`` checks a value that is no map."""
        properties: dict[str, Check | None] = {}
        for k, v in node.get("properties", {}).items():
            compiled = self.compile(v, _child_label(k, v))
            self._hold(properties, k, None if compiled is _accept else compiled)
        patterns = [
            (re.compile(p), self.compile(v, label))
            for p, v in node.get("patternProperties", {}).items()
        ]
        additional = node.get("additionalProperties", True)
        extra: Check | None = None
        if isinstance(additional, dict):
            extra = self.compile(additional, label + " entry")
            if extra is _accept and not patterns:
                extra = None
                additional = True
        closed = additional is False
        extra_at: list[Check | None] = [None]  # held in a list: a ref is replaced there
        self._hold(extra_at, 0, extra)
        required = tuple(node.get("required", ()))
        min_props = node.get("minProperties")
        max_props = node.get("maxProperties")
        known = sorted(properties)
        single = "each entry of this list is a map with a single key" if max_props == 1 else None

        if (
            extra is None
            and not closed
            and not any(properties.values())
            and not patterns
            and not required
            and min_props is None
            and max_props is None
        ):
            return _accept  # any keys, any values: nothing to look at inside
        if (
            extra is not None
            and not properties
            and not patterns
            and not required
            and min_props is None
            and max_props is None
        ):

            def entries(value: Any, path: tuple[Any, ...], out: list[Finding]) -> None:
                if type(value) is not dict:
                    if other is not None:
                        other(value, path, out)
                    if not isinstance(value, dict):
                        return
                entry = extra_at[0]
                for key, item in value.items():  # a map of named entries: each checked alike
                    entry(item, (path, key), out)

            return entries

        def check(value: Any, path: tuple[Any, ...], out: list[Finding]) -> None:
            if type(value) is not dict:
                if other is not None:
                    other(value, path, out)
                if not isinstance(value, dict):
                    return
            for key, item in value.items():
                sub = properties.get(key, _UNLISTED)
                if sub is not _UNLISTED:
                    if sub is not None:
                        sub(item, (path, key), out)
                    continue
                matched = False
                for regex, pattern_check in patterns:
                    if isinstance(key, str) and regex.search(key):
                        pattern_check(item, (path, key), out)
                        matched = True
                if matched:
                    continue
                if extra is not None:
                    extra_at[0](item, (path, key), out)  # type: ignore[misc]
                elif closed:
                    wording = unknown_key(key, label, known)
                    out.append(((path, key), "grammar.unknown-key", wording.message, wording.hint,
                                True))  # fmt: skip
            for key in required:
                if key not in value:
                    out.append((path, "grammar.missing-key", missing_key(key, label).message,
                                None, False))  # fmt: skip
            if min_props is not None and len(value) < min_props:
                wording = too_few(label, min_props, entries=True)
                out.append((path, "grammar.size", wording.message, None, False))
            if max_props is not None and len(value) > max_props:
                wording = too_many(label, max_props, entries=True, hint=single)
                out.append((path, "grammar.size", wording.message, wording.hint, False))

        return check

    def _array(self, node: dict[str, Any], label: str) -> Check:
        items = node.get("items")
        item_check = self.compile(items, label + " item") if isinstance(items, dict) else None
        low = node.get("minItems")
        high = node.get("maxItems")
        if item_check is _accept:
            item_check = None
        if item_check is None and low is None and high is None:
            return _accept
        item_at: list[Check | None] = [None]  # held in a list: a ref is replaced there
        self._hold(item_at, 0, item_check)

        def check(value: Any, path: tuple[Any, ...], out: list[Finding]) -> None:
            if not isinstance(value, list):
                return
            each = item_at[0]
            if each is not None:
                for i, item in enumerate(value):
                    each(item, (path, i), out)
            if low is not None and len(value) < low:
                out.append((path, "grammar.size", too_few(label, low).message, None, False))
            if high is not None and len(value) > high:
                out.append((path, "grammar.size", too_many(label, high).message, None, False))

        return check

    def _any_of(self, branches: list[dict[str, Any]], label: str) -> Check:
        if any(self.trivial(b) for b in branches):
            return _accept
        compiled = self._held([self.compile(b, label) for b in branches])
        shapes = [_branch_types(b, self.root) for b in branches]

        def check(value: Any, path: tuple[Any, ...], out: list[Finding]) -> None:
            best: list[Finding] | None = None
            best_rank: tuple[int, int] | None = None
            for branch, shape in zip(compiled, shapes, strict=False):
                trial: list[Finding] = []
                branch(value, path, trial)
                if not trial:
                    return
                # prefer a branch whose top-level type fits, then the fewest findings
                fits = 0 if shape is None or any(_JSON_TYPES[t](value) for t in shape) else 1
                rank = (fits, len(trial))
                if best_rank is None or rank < best_rank:
                    best, best_rank = trial, rank
            if best is not None:
                out.extend(best)

        return check


def _branch_types(branch: dict[str, Any], root: dict[str, Any]) -> list[str] | None:
    seen = 0
    while "$ref" in branch and seen < 20:
        branch = root["definitions"][branch["$ref"].rsplit("/", 1)[-1]]
        seen += 1
    types = branch.get("type")
    if types is None:
        return None
    return types if isinstance(types, list) else [types]


def _child_label(key: str, node: dict[str, Any]) -> str:
    return f"'{key}'"


_OBJECT_KEYWORDS = (
    "properties",
    "additionalProperties",
    "patternProperties",
    "required",
    "minProperties",
    "maxProperties",
)
_ARRAY_KEYWORDS = ("items", "minItems", "maxItems")
_VALUE_KEYWORDS = ("enum", "const", "pattern", "anyOf", "oneOf")
_UNLISTED = object()
_VALIDATING = (
    "type",
    "enum",
    "const",
    "pattern",
    *_OBJECT_KEYWORDS,
    *_ARRAY_KEYWORDS,
    "anyOf",
    "oneOf",
)


def _accept(value: Any, path: tuple[Any, ...], out: list[Finding]) -> None:
    return None
