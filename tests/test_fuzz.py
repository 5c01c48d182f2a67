"""Property tests: mutated real blueprints never make ``validate()`` raise, and every diagnostic
it returns is well formed.

Seeds are the corpus templates and orch's own blueprints, copied once into a temporary tree so a
mutant is written beside its original and its relative imports still resolve. Mutations: delete a
key or item, replace a value by another type, swap a list and a map, truncate the text at a random
byte, duplicate a line, insert random unicode and control characters (or bytes that are not
UTF-8), and nest a value deeply.

Crashes already reported (see the strict xfail tests in test_validate.py) are tolerated here and
counted, so this test keeps guarding against new ones; they are recognised by their message.
Hypothesis raises the interpreter's recursion limit while it runs a test, so a RecursionError
on very deep nesting would not show here: test_validate.py::test_deep_nesting_is_not_a_crash
checks that at the normal limit.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import CORPUS, CORPUS_LIBRARIES, REPO
from orch.tosca.diagnostics import Severity
from orch.tosca.imports import default_catalog
from orch.tosca.loader import LoadedFile, YamlError, YamlFloat, load_bytes
from orch.tosca.validator import validate

pytestmark = pytest.mark.slow

# Deterministic by default (CI); ORCH_FUZZ_RANDOM=1 explores new inputs, ORCH_FUZZ_EXAMPLES=N
# sets the examples per test (2,800 in all by default).
EXAMPLES = int(os.environ.get("ORCH_FUZZ_EXAMPLES", "1100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                derandomize=not os.environ.get("ORCH_FUZZ_RANDOM"), database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much,
                                       # session fixtures, and conftest's environment cleanup
                                       HealthCheck.function_scoped_fixture])

# Known bugs, tolerated while they are open (each has a strict xfail test elsewhere): none now.
KNOWN_INTERNAL_ERRORS = re.compile(r"(?!)")  # matches nothing
tolerated: Counter[str] = Counter()


def _seed_names() -> list[str]:
    names = []
    manifest = CORPUS / "manifest.json"
    if manifest.is_file():
        for entry in json.loads(manifest.read_text("utf-8"))["entries"]:
            if not entry["needs_network"] and entry["path"].endswith((".yaml", ".yml")):
                names.append("corpus/" + entry["path"])
    for path in sorted((REPO / "blueprints").rglob("*.y*ml")):
        names.append("blueprints/" + path.relative_to(REPO / "blueprints").as_posix())
    return names


SEEDS = _seed_names()


@pytest.fixture(scope="session")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    if CORPUS.is_dir():
        shutil.copytree(CORPUS, root / "corpus")
    shutil.copytree(REPO / "blueprints", root / "blueprints")
    return root


@pytest.fixture(scope="session")
def catalog(tree: Path) -> Any:
    return default_catalog([tree / "corpus" / name for name in CORPUS_LIBRARIES])


_loaded: dict[str, tuple[bytes, LoadedFile | None, list[tuple[Any, ...]]]] = {}


def _seed(tree: Path, name: str) -> tuple[bytes, LoadedFile | None, list[tuple[Any, ...]]]:
    if name not in _loaded:
        raw = (tree / name).read_bytes()
        try:
            loaded: LoadedFile | None = load_bytes(raw, name)
        except YamlError:
            loaded = None
        paths = _paths(loaded.data) if loaded is not None else []
        _loaded[name] = (raw, loaded, paths)
    return _loaded[name]


def _paths(data: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [here] if here else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += _paths(value, (*here, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found += _paths(value, (*here, i))
    return found


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    YamlFloat, lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:float", value.text))


def _dump(data: Any) -> bytes:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     width=100).encode("utf-8")


OTHER_VALUES = st.one_of(
    st.integers(-10**12, 10**12), st.text(max_size=20), st.none(), st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.one_of(st.integers(), st.text(max_size=5)), max_size=3),
    st.dictionaries(st.text(min_size=1, max_size=8), st.one_of(st.integers(), st.text(max_size=5)),
                    max_size=3),
    st.sampled_from([{"get_input": "x"}, {"get_property": ["SELF"]}, {"concat": 5},
                     {"get_attribute": [["a"], {"b": 1}]}, {"token": [1, 2, 3]}, "UNBOUNDED",
                     [1, "UNBOUNDED"], {"type": ["x"]}, {"derived_from": {"a": 1}}]),
)
NOISE = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8", categories=["Cc", "Cf", "Zl", "Zp", "Zs", "So", "Lo"]),
        st.sampled_from(list("\t\r\n\x00\x1b\ufeff\u2028'\"{}[]&*!|>%@`#:-?,\\ ")),
    ),
    min_size=1, max_size=8,
)


def _check(tree: Path, catalog: Any, seed: str, mutant: bytes) -> None:
    original = tree / seed
    path = original.with_name("_fuzz_mutant" + original.suffix)
    path.write_bytes(mutant)
    # str.splitlines knows every line break YAML (1.1, as PyYAML reads it) knows, and more
    lines = len(mutant.decode("utf-8", "replace").splitlines()) + 2
    try:
        result = validate(path, catalog=catalog)
        assert isinstance(result.diagnostics, list)
        for diagnostic in result.diagnostics:
            assert isinstance(diagnostic.message, str) and diagnostic.message.strip(), diagnostic
            assert diagnostic.rule, diagnostic
            assert diagnostic.severity in tuple(Severity)
            assert diagnostic.location.file, diagnostic
            if diagnostic.location.file == str(path):
                assert 1 <= diagnostic.location.line <= lines, diagnostic
                assert diagnostic.location.col >= 1, diagnostic
            if diagnostic.rule == "internal.error":
                if not KNOWN_INTERNAL_ERRORS.search(diagnostic.message):
                    raise AssertionError(f"new crash: {diagnostic}")
                where = re.search(r"while checking ([^'\":]+)", diagnostic.message)
                kind = where.group(1).strip() if where else "?"
                error = KNOWN_INTERNAL_ERRORS.search(diagnostic.message).group(0)
                tolerated[f"{error} (checking a {kind})"] += 1
    finally:
        path.unlink()


@pytest.fixture(scope="module", autouse=True)
def _report_tolerated() -> Any:
    yield
    if tolerated:
        print("\nknown crashes met while fuzzing (see the xfail tests):")
        for what, count in tolerated.most_common():
            print(f"  {count:5} x {what}")


def test_there_are_seeds(tree: Path) -> None:
    assert SEEDS
    assert all((tree / seed).is_file() for seed in SEEDS)


@FUZZ
@given(seed=st.sampled_from(SEEDS), kind=st.sampled_from(["delete", "retype", "swap"]),
       data=st.data())
def test_structural_mutations(tree: Path, catalog: Any, seed: str, kind: str,
                              data: st.DataObject) -> None:
    _raw, loaded, paths = _seed(tree, seed)
    assume(loaded is not None and paths)
    assert loaded is not None
    target = data.draw(st.sampled_from(paths), label="path")
    document = copy.deepcopy(loaded.data)
    parent = document
    for item in target[:-1]:
        parent = parent[item]
    last = target[-1]
    if kind == "delete":
        del parent[last]
    elif kind == "retype":
        parent[last] = data.draw(OTHER_VALUES, label="value")
    else:
        value = parent[last]
        if isinstance(value, list):
            parent[last] = {f"k{i}": v for i, v in enumerate(value)}
        elif isinstance(value, dict):
            parent[last] = [{k: v} for k, v in value.items()] if data.draw(st.booleans()) \
                else list(value.values())
        else:
            parent[last] = [value] if data.draw(st.booleans()) else {"x": value}
    _check(tree, catalog, seed, _dump(document))


@FUZZ
@given(seed=st.sampled_from(SEEDS), kind=st.sampled_from(["truncate", "duplicate", "insert"]),
       data=st.data())
def test_text_mutations(tree: Path, catalog: Any, seed: str, kind: str,
                        data: st.DataObject) -> None:
    raw = _seed(tree, seed)[0]
    if kind == "truncate":
        mutant = raw[: data.draw(st.integers(0, len(raw)), label="cut")]
    elif kind == "duplicate":
        lines = raw.split(b"\n")
        i = data.draw(st.integers(0, len(lines) - 1), label="line")
        lines.insert(i, lines[i])
        mutant = b"\n".join(lines)
    else:
        at = data.draw(st.integers(0, len(raw)), label="at")
        if data.draw(st.integers(0, 9), label="raw bytes?") == 0:
            noise = data.draw(st.binary(min_size=1, max_size=4), label="bytes")
        else:
            noise = data.draw(NOISE, label="text").encode("utf-8")
        mutant = raw[:at] + noise + raw[at:]
    _check(tree, catalog, seed, mutant)


_VALUE_LINE = re.compile(rb"^(\s*[\w.\-]+:)[ \t]*\S.*$")


@settings(FUZZ, max_examples=max(EXAMPLES * 6 // 11, 1))
@given(seed=st.sampled_from(SEEDS), depth=st.integers(1, 800), style=st.sampled_from("[{"),
       data=st.data())
def test_deep_nesting(tree: Path, catalog: Any, seed: str, depth: int, style: str,
                      data: st.DataObject) -> None:
    raw = _seed(tree, seed)[0]
    opening, closing = (b"[", b"]") if style == "[" else (b"{a: ", b"}")
    nested = opening * depth + b"1" + closing * depth
    lines = raw.split(b"\n")
    candidates = [i for i, line in enumerate(lines) if _VALUE_LINE.match(line)]
    if candidates:
        i = data.draw(st.sampled_from(candidates), label="line")
        lines[i] = _VALUE_LINE.sub(lambda m: m.group(1) + b" " + nested, lines[i])
        mutant = b"\n".join(lines)
    else:
        mutant = raw + b"\nzz_deep: " + nested + b"\n"
    _check(tree, catalog, seed, mutant)
