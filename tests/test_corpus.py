"""Conformance: orch's verdict on every template of the external corpus (../shared/corpus) against
the verdict its own project states, and the corpus' type libraries.

Where orch disagrees, the entry is listed below with the reason. Two lists:

* ``KNOWN_DISAGREEMENTS``: orch is right, or the template is out of scope (not TOSCA 1.x, needs
  something the corpus does not hold). The reason cites the specification or the scope.
* ``ORCH_BUGS``: orch is wrong; reported to the lead, to be fixed in orch.

Both are strict expected failures: an entry that starts agreeing fails the run, so the lists stay
true. Entries that need the network must say so with a clear diagnostic and are not compared.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from conftest import CORPUS
from orch.tosca.validator import ValidationResult, validate

MANIFEST = CORPUS / "manifest.json"

KNOWN_DISAGREEMENTS: dict[str, str] = {
    "oasis-tcc:tests/tosca_simple_yaml_1_0/3.9.1.1-metadata-01-valid.yml":
        "writes the key oasis.testAssertion.target twice in its metadata (lines 9 and 10), a "
        "slip in the test's own assertion text: YAML 1.2 (3.2.1.1), on which TOSCA 1.0 builds, "
        "requires unique keys, so orch fails it (yaml.duplicate-key); what it asserts "
        "(template_name) orch reads right",
    "oasis-tcc:tests/tosca_simple_yaml_1_0/3.6.4-interface-type-04-implemented-operation.yml":
        "ambiguous: the assertion's own tags list ImplementationArtifactInvalidOnInterfaceType "
        "as a warning; orch warns (types.interface-implementation)",
    "oasis-tcc:examples/1.3/tutorial/data-types.yaml":
        "uses a function call as a map key ({concat: [recip, ient]}: Puccini), a Puccini "
        "extension: TOSCA 1.3 map keys are strings checked against key_schema, and the text "
        "'{concat: [recip, ient]}' fails its pattern [a-z]*",
    "puccini:examples/tosca/data-types.yaml":
        "uses a function call as a map key ({concat: [recip, ient]}: Puccini), a Puccini "
        "extension: TOSCA 1.3 map keys are strings checked against key_schema, and the text "
        "'{concat: [recip, ient]}' fails its pattern [a-z]*",
    "oasis-tcc:examples/1.3/tutorial/workflows.yaml":
        "uses constraint operator 'equals'; TOSCA 1.3 (3.6.3) defines 'equal'",
    "oasis-tcc:examples/1.3/TMForum_oda/services/ODAcomponent/ODAcomponent.yaml":
        "imports the profile 'org.tmforum:1.0' by name: a profile catalogue outside TOSCA 1.3, "
        "not in the corpus (manifest: not testable as-is)",
    "oasis-tcc:examples/1.3/TMForum_oda/services/ODACoreCommerceManagement/"
    "ODACoreCommerceManagement.yaml":
        "imports the profile 'org.tmforum:1.0' by name: a profile catalogue outside TOSCA 1.3, "
        "not in the corpus (manifest: not testable as-is)",
    "oasis-tcc:examples/1.3/TMForum_oda/services/ODAcomponents_dependant/"
    "ODAcomponents_dependant.yaml":
        "imports the profiles 'org.tmforum:1.0', 'com.sigscale:1.0', 'com.vodafone:1.0' by "
        "name: a profile catalogue outside TOSCA 1.3, not in the corpus",
    "puccini:examples/tosca/simple-for-nfv.yaml":
        "TOSCA Simple Profile for NFV types (VduCpd, VDU.Compute) are not shipped: NFV is out "
        "of orch's scope (HPC workflows)",
    "puccini:examples/tosca/future/tosca_2_0.yaml": "tosca_2_0: TOSCA 2.0 not supported yet",
    "xopera:tests/integration/hello_world_tosca_2_0/service.yaml":
        "tosca_2_0: TOSCA 2.0 not supported yet",
    "puccini:examples/javascript/constraints.yaml":
        "Puccini JavaScript extension constraints (multiple_of) are not TOSCA 1.3",
    "puccini:examples/javascript/functions.yaml":
        "Puccini JavaScript extension functions are not TOSCA 1.3",
    "puccini:examples/cloudify/advanced-blueprint-example.yaml":
        "cloudify_dsl_1_3 is Cloudify DSL, not TOSCA: out of scope",
    "puccini:examples/cloudify/example.yaml":
        "cloudify_dsl_1_3 is Cloudify DSL, not TOSCA: out of scope",
    "puccini:examples/hot/hello-world.yaml":
        "OpenStack Heat (HOT) template, not TOSCA: out of scope",
    "yorc-samples:org/ystia/yorc/samples/job/k8s/topologies/compute_pi/types.yaml":
        "library docker-types:2.2.0-SM6 is not in the corpus",
    "yorc-samples:org/ystia/yorc/samples/job/k8s/topologies/fail/types.yaml":
        "library docker-types:2.2.0-SM6 is not in the corpus",
    "yorc-samples:org/ystia/yorc/samples/job/k8s/topologies/loop/types.yaml":
        "library docker-types:2.2.0-SM6 is not in the corpus",
}

# Orch bugs found by these entries are fixed; the list is kept for the next ones.
ORCH_BUGS: dict[str, str] = {}

# Type libraries (validated on their own, with the corpus catalog) that report errors.
KNOWN_LIBRARY_FAILURES: dict[str, str] = {
    "ystia/yorc/data/tosca/normative-types.yml":
        "Yorc's copy of the TOSCA 1.0 normative types names 'tosca.nodes.Container' as the "
        "host of tosca.nodes.Container.Application; no such type exists (TOSCA 1.3: "
        "tosca.nodes.Container.Runtime)",
    "ystia/yorc/data/tosca/yorc-kubernetes-types.yml":
        "derives from org.alien4cloud.kubernetes.api.types.*, from the Alien4Cloud Kubernetes "
        "plugin: not imported by the file, not in the corpus",
    "eflows4hpc/hpcwaas-api/deployments/tosca/types/types.yml":
        "derives from org.ystia.docker.* (docker-types), which it does not import and which "
        "is not in the corpus",
    "ystia/yorc/data/tosca/yorc-openstack-types.yml":
        "uses org.alien4cloud.policies.* without importing them (Alien4Cloud loads them "
        "implicitly; orch only loads what a file imports)",
}
LIBRARY_BUGS: dict[str, str] = {}
LIBRARY_ROOTS = ("alien4cloud", "ystia/yorc/data/tosca", "eflows4hpc")
YORC_SAMPLES_SOURCE = "yorc-a4c-plugin"


def _manifest() -> list[dict[str, Any]]:
    if not MANIFEST.is_file():
        return []
    return json.loads(MANIFEST.read_text("utf-8"))["entries"]


ENTRIES = _manifest()


def _params(entries: list[dict[str, Any]]) -> list[Any]:
    if not entries:
        return [pytest.param(None, id="no-corpus")]
    params = []
    for entry in entries:
        marks: list[Any] = []
        if entry["id"] in KNOWN_DISAGREEMENTS:
            marks.append(pytest.mark.xfail(
                strict=True, reason="known disagreement: " + KNOWN_DISAGREEMENTS[entry["id"]]))
        elif entry["id"] in ORCH_BUGS:
            marks.append(pytest.mark.xfail(strict=True,
                                           reason="orch bug: " + ORCH_BUGS[entry["id"]]))
        params.append(pytest.param(entry, id=entry["id"], marks=marks))
    return params


_results: dict[str, ValidationResult] = {}


def _validate(corpus: Path, catalog: Any, entry: dict[str, Any]) -> ValidationResult:
    if entry["id"] not in _results:
        _results[entry["id"]] = validate(corpus / entry["path"], catalog=catalog)
    return _results[entry["id"]]


def _verdict(result: ValidationResult) -> str:
    return "valid" if result.ok else "invalid"


def _errors(result: ValidationResult) -> str:
    return "\n".join(str(d) for d in result.diagnostics if d.severity.label == "error")


NETWORK_RULES = {"imports.unreachable", "imports.unknown-repository"}


@pytest.mark.parametrize("entry", _params(ENTRIES))
def test_corpus_entry(corpus: Path, corpus_catalog: Any, entry: dict[str, Any] | None) -> None:
    if entry is None:
        pytest.skip("corpus tests: ../shared/corpus not found")
    result = _validate(corpus, corpus_catalog, entry)
    for diagnostic in result.diagnostics:
        assert diagnostic.rule != "internal.error", str(diagnostic)
    if entry["needs_network"]:
        rules = {d.rule for d in result.diagnostics}
        assert rules & NETWORK_RULES, f"no network diagnostic; got {sorted(rules)}"
        return
    expected = entry["expected"]
    assert _verdict(result) == expected, (
        f"expected {expected} ({entry['reliability']}: {entry['notes']}); orch says "
        f"{_verdict(result)}\n{_errors(result)}")


def test_known_lists_name_real_entries() -> None:
    if not ENTRIES:
        pytest.skip("corpus tests: ../shared/corpus not found")
    ids = {e["id"] for e in ENTRIES}
    assert set(KNOWN_DISAGREEMENTS) <= ids
    assert set(ORCH_BUGS) <= ids
    assert not set(KNOWN_DISAGREEMENTS) & set(ORCH_BUGS)
    network = {e["id"] for e in ENTRIES if e["needs_network"]}
    assert not (set(KNOWN_DISAGREEMENTS) | set(ORCH_BUGS)) & network


@pytest.mark.slow
def test_agreement_summary(corpus: Path, corpus_catalog: Any) -> None:
    """Prints the agreement per source and reliability (run with -s to see it)."""
    table: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    unexpected = []
    for entry in ENTRIES:
        result = _validate(corpus, corpus_catalog, entry)
        row = table[(entry["source"], entry["reliability"])]
        row["entries"] += 1
        if entry["needs_network"]:
            row["network"] += 1
            continue
        agrees = _verdict(result) == entry["expected"]
        row["agree" if agrees else "disagree"] += 1
        if entry["id"] in KNOWN_DISAGREEMENTS:
            row["known"] += 1
        elif entry["id"] in ORCH_BUGS:
            row["bug"] += 1
        elif not agrees and entry["reliability"] == "asserted":
            unexpected.append(entry["id"])
    columns = ("entries", "network", "agree", "disagree", "known", "bug")
    print()
    print(f"{'source':<18} {'reliability':<12} " + " ".join(f"{c:>8}" for c in columns))
    total: Counter[str] = Counter()
    for (source, reliability), row in sorted(table.items()):
        total.update(row)
        print(f"{source:<18} {reliability:<12} " + " ".join(f"{row[c]:>8}" for c in columns))
    print(f"{'total':<31} " + " ".join(f"{total[c]:>8}" for c in columns))
    assert total["entries"] == len(ENTRIES)
    assert unexpected == [], "asserted entries that disagree and are not listed"


def _library_files(corpus: Path) -> list[Path]:
    files = []
    for root in LIBRARY_ROOTS:
        for path in sorted((corpus / root).rglob("*")):
            if path.suffix in (".yaml", ".yml") and path.is_file():
                head = path.read_bytes()[:4096]
                if b"tosca_definitions_version" in head:  # not the Ansible playbooks beside them
                    files.append(path)
    return files


def _library_params() -> list[Any]:
    if not MANIFEST.is_file():
        return [pytest.param(None, id="no-corpus")]
    params = []
    for path in _library_files(CORPUS):
        name = path.relative_to(CORPUS).as_posix()
        marks: list[Any] = []
        if name in KNOWN_LIBRARY_FAILURES:
            marks.append(pytest.mark.xfail(strict=True, reason="known: "
                                           + KNOWN_LIBRARY_FAILURES[name]))
        elif name in LIBRARY_BUGS:
            marks.append(pytest.mark.xfail(strict=True, reason="orch bug: " + LIBRARY_BUGS[name]))
        params.append(pytest.param(name, id=name, marks=marks))
    return params


@pytest.mark.parametrize("name", _library_params())
def test_type_library_validates(corpus: Path, corpus_catalog: Any, name: str | None) -> None:
    if name is None:
        pytest.skip("corpus tests: ../shared/corpus not found")
    result = validate(corpus / name, catalog=corpus_catalog)
    assert result.ok, _errors(result)


def test_type_libraries_include_the_versioned_ones(corpus: Path) -> None:
    names = [p.relative_to(corpus).as_posix() for p in _library_files(corpus)]
    assert len(names) > 25
    assert any("/_versions/" in n for n in names)
    assert any(n.startswith("alien4cloud/") for n in names)
    assert any(n.startswith("ystia/yorc/data/tosca/") for n in names)
    assert set(KNOWN_LIBRARY_FAILURES) | set(LIBRARY_BUGS) <= set(names)


def test_catalog_indexes_the_libraries_topologies_import(corpus_catalog: Any) -> None:
    for name, version in (("tosca-normative-types", "1.0.0-ALIEN20"), ("yorc-types", "1.1.0"),
                          ("yorc-slurm-types", "1.2.0"), ("alien-base-types", "3.0.0"),
                          ("org.eflows4hpc.pycompss.plugin", "1.2.0-SNAPSHOT"),
                          ("dls.ansible", "1.4.0")):
        assert corpus_catalog.find(name, version) is not None, (name, version)


YORC_SAMPLES = [e for e in ENTRIES if e["source"] == YORC_SAMPLES_SOURCE]


def test_the_fourteen_yorc_samples(corpus: Path, corpus_catalog: Any) -> None:
    """Prints which Yorc sample topologies fail and why; only the known ones may."""
    if not ENTRIES:
        pytest.skip("corpus tests: ../shared/corpus not found")
    assert len(YORC_SAMPLES) == 14
    failing = {}
    for entry in YORC_SAMPLES:
        result = _validate(corpus, corpus_catalog, entry)
        if not result.ok:
            first = next(d for d in result.diagnostics if d.severity.label == "error")
            failing[entry["id"]] = f"{first.rule}: {first.message}"
    print()
    print(f"Yorc samples: {len(YORC_SAMPLES) - len(failing)}/{len(YORC_SAMPLES)} validate")
    for entry_id, why in sorted(failing.items()):
        print(f"  FAIL {entry_id}\n       {why}\n       known: {KNOWN_DISAGREEMENTS.get(entry_id)}")
    assert set(failing) <= set(KNOWN_DISAGREEMENTS)
    for entry_id in failing:
        assert "docker-types" in failing[entry_id] + KNOWN_DISAGREEMENTS[entry_id]
