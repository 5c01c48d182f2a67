"""The type libraries shipped in tosca_types/catalog (Alien4Cloud, Yorc, eFlows4HPC), found by
``name:version`` without --catalog or ORCH_CATALOG: the nearest version when the one asked for is
missing, the runnable one of two files carrying one entry, numeric metadata, and type
redefinitions inside the libraries said once."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import CORPUS
from orch.cli.main import cli
from orch.tosca.diagnostics import Severity
from orch.tosca.imports import (
    CATALOG_DIR,
    Catalog,
    builtin_types_dir,
    default_catalog,
    nearest_version,
    version_order,
)
from orch.tosca.validator import ValidationResult, validate

SHIPPED = builtin_types_dir() / CATALOG_DIR
PYCOMPSS = "org.eflows4hpc.pycompss.plugin"
YORC_PLUGIN = SHIPPED / "eflows4hpc/pycompss-yorc-plugin/tosca/yorc/types.yaml"
ALIEN_PLUGIN = SHIPPED / "eflows4hpc/pycompss-yorc-plugin/tosca/alien/types.yaml"

# An eFlows4HPC workflow as Alien4Cloud writes it: catalog imports only, numeric metadata,
# a dls.ansible version that only exists as its release, a PyCOMPSs plugin version that the
# catalog does not have, a library (pycomps.ansible:1.1.0) that imports an older dls.ansible.
EFLOWS = """\
tosca_definitions_version: alien_dsl_3_0_0

metadata:
  template_name: 12022024
  template_version: 1
  template_author: eflows4hpc

description: Build an image, move it to the cluster, run a PyCOMPSs job

imports:
  - yorc-types:1.1.0
  - tosca-normative-types:1.0.0-ALIEN20
  - alien-base-types:3.0.0
  - eflows4hpc.env:1.1.0
  - dls.ansible:1.4.0-SNAPSHOT
  - imagecreation.ansible:1.3.0
  - org.eflows4hpc.pycompss.plugin:1.1.0
  - pycomps.ansible:1.1.0

topology_template:
  inputs:
    user_id:
      type: string
      required: true
    vault_id:
      type: string
      required: true
  node_templates:
    AbstractEnvironment:
      type: eflows4hpc.env.nodes.AbstractEnvironment
    ImageCreation:
      type: imagecreation.ansible.nodes.ImageCreation
      properties:
        service_url: "https://images.example.org/image_creation"
        insecure_tls: false
        username: "builder"
        password: "secret"
        machine:
          platform: "linux/amd64"
          architecture: "rome"
          container_engine: "singularity"
          mpi: ""
          gpu: ""
        workflow: "wordcount"
        step_id: "count"
        force: false
        debug: false
        run_in_standard_mode: true
      requirements:
        - dependsOnAbstractEnvironmentExec_env:
            type_requirement: environment
            node: AbstractEnvironment
            capability: eflows4hpc.env.capabilities.ExecutionEnvironment
            relationship: tosca.relationships.DependsOn
    ImageTransfer:
      type: dls.ansible.nodes.DLSDAGImageTransfer
      properties:
        dls_api_username: "dls"
        dls_api_password: "secret"
        dag_id: "transfer_image"
        run_in_standard_mode: true
      requirements:
        - dependsOnImageCreationFeature:
            type_requirement: dependency
            node: ImageCreation
            capability: tosca.capabilities.Node
            relationship: tosca.relationships.DependsOn
        - dependsOnAbstractEnvironmentExec_env:
            type_requirement: environment
            node: AbstractEnvironment
            capability: eflows4hpc.env.capabilities.ExecutionEnvironment
            relationship: tosca.relationships.DependsOn
    PyCOMPSJob:
      type: org.eflows4hpc.pycompss.plugin.nodes.PyCOMPSJob
      properties:
        submission_params:
          compss_modules: ["compss/3.3", "singularity"]
          num_nodes: 2
          qos: debug
        application:
          command: "/wordcount/src/wordcount.py"
          arguments: ["/data/input", "/data/output"]
        keep_environment: false
      requirements:
        - dependsOnImageTransferFeature:
            type_requirement: img_transfer
            node: ImageTransfer
            capability: tosca.capabilities.Node
            relationship: tosca.relationships.DependsOn
        - dependsOnAbstractEnvironmentExec_env:
            type_requirement: environment
            node: AbstractEnvironment
            capability: eflows4hpc.env.capabilities.ExecutionEnvironment
            relationship: tosca.relationships.DependsOn
  workflows:
    exec_job:
      steps:
        PyCOMPSJob_run:
          target: PyCOMPSJob
          activities:
            - call_operation: tosca.interfaces.node.lifecycle.Runnable.run
"""


def _write(root: Path, text: str, name: str = "topology.yaml") -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), "utf-8")
    return path


def _rules(result: ValidationResult, rule: str) -> list:
    return [d for d in result.diagnostics if d.rule == rule]


def _describe(result: ValidationResult) -> str:
    return "\n".join(str(d) for d in result.diagnostics)


def _in_catalog(path: str) -> bool:
    return Path(path).resolve().is_relative_to(SHIPPED.resolve())


# ------------------------------------------------------------------------------ shipped files
def test_every_shipped_library_has_its_license_and_notice() -> None:
    libraries = [p for p in SHIPPED.glob("*/*") if p.is_dir()]
    assert len(libraries) == 8, libraries
    for library in libraries:
        assert "Apache License" in (library / "LICENSE").read_text("utf-8")[:200], library
        notice = (library / "NOTICE").read_text("utf-8")
        assert "Apache License 2.0" in notice and "https://github.com/" in notice, library


def test_only_type_definitions_are_shipped() -> None:
    for path in SHIPPED.rglob("*"):
        if path.is_file() and path.name not in ("LICENSE", "NOTICE", "README.md"):
            assert path.suffix in (".yml", ".yaml"), path
            assert "playbooks" not in path.parts, path
            assert path.read_text("utf-8").startswith("tosca_definitions_version"), path


def test_the_default_catalog_finds_what_eflows_topologies_import() -> None:
    catalog = default_catalog()
    assert catalog.roots == [builtin_types_dir()]
    for name, version in (
        ("yorc-types", "1.1.0"), ("tosca-normative-types", "1.0.0-ALIEN20"),
        ("alien-base-types", "3.0.0"), ("eflows4hpc.env", "1.1.0"), ("dls.ansible", "1.4.0"),
        ("imagecreation.ansible", "1.3.0"), ("pycomps.ansible", "1.1.0"),
        (PYCOMPSS, "1.2.0-SNAPSHOT"), ("yorc-slurm-types", "1.2.0"), ("orch-hpc", "1.0.0"),
    ):  # fmt: skip
        found = catalog.find(name, version)
        assert found is not None, (name, version)
        assert found.name != "LICENSE"
    # orch's own libraries are found before the shipped ones
    own = catalog.find("orch-hpc", "1.0.0")
    assert own is not None and own.parent == builtin_types_dir()


def test_every_version_of_the_corpus_libraries_is_shipped() -> None:
    if not (CORPUS / "manifest.json").is_file():
        pytest.skip("corpus not found")
    shipped = set(default_catalog().index())
    corpus = Catalog([CORPUS / name for name in ("alien4cloud", "ystia/yorc", "eflows4hpc")])
    skipped = {"hpcwaas.api.containers.ansible"}  # deploys the HPCWaaS server: not imported
    wanted = {key for key in corpus.index() if key[0] not in skipped}
    missing = {key for key in wanted if key not in shipped}
    assert not missing
    assert ("dls.ansible", "1.0.0") in shipped  # from _versions/v1.0.0


SHIPPED_FAILURES = {
    "ystia/yorc/data/tosca/normative-types.yml":
        "Yorc's copy of the TOSCA 1.0 normative types names 'tosca.nodes.Container', which does "
        "not exist (see test_corpus.KNOWN_LIBRARY_FAILURES)",
    "ystia/yorc/data/tosca/yorc-kubernetes-types.yml":
        "derives from the Alien4Cloud Kubernetes plugin's types, which it does not import",
    "ystia/yorc/data/tosca/yorc-openstack-types.yml":
        "uses org.alien4cloud.policies.* without importing them",
}


def _shipped_files() -> list[object]:
    params = []
    for path in sorted(SHIPPED.rglob("*")):
        if path.suffix in (".yml", ".yaml"):
            name = path.relative_to(SHIPPED).as_posix()
            marks = [pytest.mark.xfail(strict=True, reason=SHIPPED_FAILURES[name])] if (
                name in SHIPPED_FAILURES) else []  # fmt: skip
            params.append(pytest.param(name, id=name, marks=marks))
    return params


@pytest.mark.parametrize("name", _shipped_files())
def test_shipped_library_validates_on_its_own(name: str) -> None:
    result = validate(SHIPPED / name)
    assert result.ok, _describe(result)


# ------------------------------------------------------------------------------ eFlows topology
def test_eflows_topology_validates_without_catalog(tmp_path: Path) -> None:
    path = _write(tmp_path, EFLOWS)
    result = validate(path)
    errors = [d for d in result.diagnostics if d.severity is Severity.ERROR]
    assert errors == [], _describe(result)
    assert result.ok
    # the two versions the catalog does not have, each with what was used instead
    substituted = {d.message for d in _rules(result, "imports.version-substituted")}
    assert substituted == {
        "catalog has no 'dls.ansible:1.4.0-SNAPSHOT'; using dls.ansible:1.4.0 instead "
        "(the nearest version)",
        f"catalog has no '{PYCOMPSS}:1.1.0'; using {PYCOMPSS}:1.2.0-SNAPSHOT instead "
        "(the nearest version)",
    }
    # no type redefinition warnings from the libraries; one info line instead
    assert _rules(result, "types.redefined") == []
    (summary,) = _rules(result, "types.redefined-in-libraries")
    assert summary.severity is Severity.INFO and summary.location.file == str(path)
    assert "org.alien4cloud.nodes.Job" in summary.message
    assert summary.message.endswith("none in your files")
    # the libraries' playbooks are not shipped, and not reported missing
    assert _rules(result, "topology.missing-artifact") == []
    # every warning is about the user's file
    for diagnostic in result.diagnostics:
        if diagnostic.severity is Severity.WARNING:
            assert diagnostic.location.file == str(path), str(diagnostic)
    # the Yorc variant of the PyCOMPSs plugin was used
    files = {loaded.path for loaded in result.files}
    assert str(YORC_PLUGIN) in files and str(ALIEN_PLUGIN) not in files


def test_eflows_topology_through_the_command_line(tmp_path: Path) -> None:
    path = _write(tmp_path, EFLOWS)
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "0 errors" in result.output
    assert result.output.count("[types.redefined-in-libraries]") == 1


def test_the_topology_version_of_a_library_wins_over_a_library_import(tmp_path: Path) -> None:
    """pycomps.ansible:1.1.0 imports dls.ansible:1.1.0; the topology imports 1.4.0, whose
    DLSDAGImageTransfer has run_in_standard_mode and the environment requirement."""
    path = _write(tmp_path, EFLOWS)
    result = validate(path)
    (note,) = _rules(result, "imports.version-unified")
    assert note.severity is Severity.INFO
    assert "'dls.ansible:1.1.0'" in note.message and "dls.ansible:1.4.0" in note.message
    assert _in_catalog(note.location.file)
    loaded = {Path(f.path).relative_to(SHIPPED).as_posix() for f in result.files
              if _in_catalog(f.path)}  # fmt: skip
    assert "eflows4hpc/dls-tosca/_versions/v1.4.0/ansible/types.yml" in loaded
    assert "eflows4hpc/dls-tosca/_versions/v1.1.0/ansible/types.yml" not in loaded


def test_missing_implementation_in_the_users_own_files_is_still_reported(
    tmp_path: Path,
) -> None:
    text = EFLOWS.replace(
        "      type: eflows4hpc.env.nodes.AbstractEnvironment\n",
        "      type: eflows4hpc.env.nodes.AbstractEnvironment\n"
        "      interfaces:\n"
        "        Standard:\n"
        "          create: playbooks/mine.yml\n",
    )
    path = _write(tmp_path, text)
    result = validate(path)
    (missing,) = _rules(result, "topology.missing-artifact")
    assert missing.location.file == str(path)
    assert "playbooks/mine.yml" in missing.message


# ------------------------------------------------------------------------------ versions
@pytest.mark.parametrize(("wanted", "versions", "used"), [
    ("1.4.0-SNAPSHOT", ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0-SNAPSHOT"], "1.4.0"),
    ("1.1.0", ["1.1.0-SNAPSHOT", "1.2.0"], "1.1.0-SNAPSHOT"),
    ("1.1.0", ["1.0.0", "1.1.0-SNAPSHOT", "1.1.0-rc1", "2.0.0"], "1.1.0-SNAPSHOT"),
    ("1.0.0", ["1.0.0-ALIEN20", "1.2.0"], "1.0.0-ALIEN20"),
    ("1.3.0", ["1.0.0", "1.2.0", "2.0.0"], "1.2.0"),  # the nearest, not the newest
    ("1.3.5", ["1.3.0", "1.4.0"], "1.3.0"),
    ("1.1.0", ["1.0.0", "1.2.0"], "1.2.0"),  # a tie: the later one
    ("1.1.0", ["1.2.0-SNAPSHOT"], "1.2.0-SNAPSHOT"),  # all there is
    ("1.4", ["1.4.0", "1.5.0"], "1.4.0"),
    ("2.0.0", ["2.0.0", "2.0.1"], "2.0.0"),
    ("9.0.0", ["0.1.0", "1.0.0"], "1.0.0"),
    ("1.0.0", [], None),
])  # fmt: skip
def test_nearest_version(wanted: str, versions: list[str], used: str | None) -> None:
    assert nearest_version(wanted, versions) == used
    assert nearest_version(wanted, list(reversed(versions))) == used


def test_versions_are_listed_in_version_order() -> None:
    versions = ["1.10.0", "1.2.0", "1.5.0-SNAPSHOT", "1.5.0", "1.0.0-ALIEN20", "1.0.0"]
    assert sorted(versions, key=version_order) == [
        "1.0.0", "1.0.0-ALIEN20", "1.2.0", "1.5.0-SNAPSHOT", "1.5.0", "1.10.0"]


def _library(root: Path, version: str, node: str = "my.Lib") -> None:
    _write(root, f"""\
        tosca_definitions_version: tosca_simple_yaml_1_3
        metadata:
          template_name: my-lib
          template_version: {version}
        node_types:
          {node}:
            derived_from: tosca.nodes.Root
        """, f"lib-{version}/types.yaml")


@pytest.mark.parametrize(("wanted", "used"), [
    ("1.4.0-SNAPSHOT", "1.4.0"), ("1.3.0", "1.4.0"), ("1.1.0", "1.0.0"), ("2.9.0", "3.0.0")])
def test_version_substitution_names_the_nearest(tmp_path: Path, wanted: str, used: str) -> None:
    catalog = tmp_path / "catalog"
    for version in ("1.0.0", "1.4.0", "3.0.0", "5.0.0"):
        _library(catalog, version)
    path = _write(tmp_path, f"""\
        tosca_definitions_version: tosca_simple_yaml_1_3
        imports:
          - my-lib:{wanted}
        topology_template:
          node_templates:
            x: {{type: my.Lib}}
        """)
    result = validate(path, catalogs=[catalog])
    (warning,) = result.diagnostics
    assert warning.rule == "imports.version-substituted"
    assert warning.severity is Severity.WARNING
    assert f"using my-lib:{used} instead" in warning.message
    assert "1.0.0, 1.4.0, 3.0.0, 5.0.0" in (warning.hint or "")


# ------------------------------------------------------------------------------ variants
def _variants(root: Path, version: str, order: tuple[str, str]) -> None:
    """The two files carrying the PyCOMPSs plugin, as ``version``, in folders found in
    ``order`` (folder names sort as given)."""
    for folder in order:
        original = YORC_PLUGIN if folder.endswith("yorc") else ALIEN_PLUGIN
        text = original.read_text("utf-8").replace("1.2.0-SNAPSHOT", version)
        _write(root, text, f"{folder}/types.yaml")


PLUGIN_USER = """\
    tosca_definitions_version: alien_dsl_3_0_0
    imports:
      - org.eflows4hpc.pycompss.plugin:7.7.7
    topology_template:
      node_templates:
        job:
          type: org.eflows4hpc.pycompss.plugin.nodes.PyCOMPSJob
    """


@pytest.mark.parametrize("order", [("a-yorc", "b-alien"), ("a-alien", "b-yorc")])
def test_the_runnable_plugin_variant_wins_in_one_catalog(
    tmp_path: Path, order: tuple[str, str]
) -> None:
    catalog = tmp_path / "catalog"
    _variants(catalog, "7.7.7", order)
    yorc = next(catalog / f / "types.yaml" for f in order if f.endswith("yorc"))
    alien = next(catalog / f / "types.yaml" for f in order if f.endswith("alien"))
    choice = default_catalog([catalog]).choose(PYCOMPSS, "7.7.7")
    assert choice is not None and choice.path == yorc and choice.others == (alien,)
    path = _write(tmp_path, PLUGIN_USER)
    result = validate(path, catalogs=[catalog])
    assert result.ok, _describe(result)
    (note,) = _rules(result, "imports.catalog-choice")
    assert note.severity is Severity.INFO
    assert f"using {yorc}" in note.message and f"not {alien}" in note.message
    files = {f.path for f in result.files}
    assert str(yorc) in files and str(alien) not in files
    # a note, not a warning: --strict passes
    strict = CliRunner().invoke(cli, ["validate", "--strict", "--catalog", str(catalog),
                                      str(path)])  # fmt: skip
    assert strict.exit_code == 0, strict.output
    assert "[imports.catalog-choice]" in strict.output


@pytest.mark.parametrize("yorc_first", [True, False])
def test_the_runnable_plugin_variant_wins_across_catalogs(
    tmp_path: Path, yorc_first: bool
) -> None:
    yorc_root, alien_root = tmp_path / "y", tmp_path / "a"
    _write(yorc_root, YORC_PLUGIN.read_text("utf-8").replace("1.2.0-SNAPSHOT", "7.7.7"),
           "types.yaml")  # fmt: skip
    _write(alien_root, ALIEN_PLUGIN.read_text("utf-8").replace("1.2.0-SNAPSHOT", "7.7.7"),
           "types.yaml")  # fmt: skip
    roots = [yorc_root, alien_root] if yorc_first else [alien_root, yorc_root]
    catalog = Catalog(roots)
    assert catalog.find(PYCOMPSS, "7.7.7") == yorc_root / "types.yaml"
    path = _write(tmp_path, PLUGIN_USER)
    result = validate(path, catalogs=roots)
    assert result.ok, _describe(result)
    assert str(yorc_root / "types.yaml") in {f.path for f in result.files}


def test_the_shipped_plugin_is_the_yorc_variant() -> None:
    choice = default_catalog().choose(PYCOMPSS, "1.2.0-SNAPSHOT")
    assert choice is not None
    assert choice.path == YORC_PLUGIN
    assert choice.others == (ALIEN_PLUGIN,)
    assert "orch can run 3 of its 3" in choice.reason


def test_identical_copies_are_one_file(tmp_path: Path) -> None:
    """The corpus given with --catalog holds the same files as the shipped catalog."""
    copy = tmp_path / "copy" / "types.yml"
    copy.parent.mkdir()
    source = SHIPPED / "eflows4hpc/environment-tosca/_versions/v1.1.0/env/types.yml"
    copy.write_bytes(source.read_bytes())
    choice = default_catalog([tmp_path / "copy"]).choose("eflows4hpc.env", "1.1.0")
    assert choice is not None and choice.path == source and choice.others == ()
    assert choice.note("eflows4hpc.env", "1.1.0") is None


def test_same_runnability_keeps_the_first_found(tmp_path: Path) -> None:
    _library(tmp_path / "one", "1.0.0", "my.A")
    _library(tmp_path / "two", "1.0.0", "my.B")
    first = tmp_path / "one" / "lib-1.0.0" / "types.yaml"
    second = tmp_path / "two" / "lib-1.0.0" / "types.yaml"
    assert Catalog([tmp_path / "one", tmp_path / "two"]).find("my-lib", "1.0.0") == first
    assert Catalog([tmp_path / "two", tmp_path / "one"]).find("my-lib", "1.0.0") == second


# ------------------------------------------------------------------------------ metadata
@pytest.mark.parametrize("version", ["alien_dsl_3_0_0", "tosca_simple_yaml_1_3"])
def test_numeric_metadata_is_read_as_text(tmp_path: Path, version: str) -> None:
    path = _write(tmp_path, f"""\
        tosca_definitions_version: {version}
        metadata:
          template_name: 12022024
          template_version: 1
          template_author: 007
          other: 3
        """)
    result = validate(path)
    assert result.diagnostics == [], _describe(result)
    assert result.template is not None
    metadata = result.template.data["metadata"]
    assert metadata["template_name"] == "12022024"
    assert metadata["template_version"] == "1"
    assert metadata["template_author"] == "007"


def test_numeric_metadata_in_a_flow_map(tmp_path: Path) -> None:
    path = _write(tmp_path, """\
        tosca_definitions_version: alien_dsl_3_0_0
        metadata: {template_name: 42, template_version: 1.10}
        """)
    result = validate(path)
    assert result.diagnostics == [], _describe(result)
    assert result.template is not None
    assert result.template.data["metadata"] == {"template_name": "42", "template_version": "1.10"}


def test_a_version_that_is_not_one_is_still_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, """\
        tosca_definitions_version: tosca_simple_yaml_1_3
        metadata:
          template_version: my version
        """)
    assert [d.rule for d in validate(path).diagnostics] == ["document.template-version"]


# ------------------------------------------------------------------------------ redefinitions
LIBRARIES_ONLY = """\
    tosca_definitions_version: alien_dsl_3_0_0
    imports:
      - tosca-normative-types:1.0.0-ALIEN20
      - yorc-types:1.1.0
      - alien-base-types:3.0.0
    topology_template:
      node_templates:
        job:
          type: org.alien4cloud.nodes.Job
    """


def test_library_redefinitions_are_one_info_line(tmp_path: Path) -> None:
    path = _write(tmp_path, LIBRARIES_ONLY)
    result = validate(path)
    assert _rules(result, "types.redefined") == []
    (summary,) = _rules(result, "types.redefined-in-libraries")
    assert summary.severity is Severity.INFO
    assert re.match(r"2 type redefinitions inside the imported libraries \(alien-base-types:"
                    r"3\.0\.0 over yorc-types:1\.1\.0: org\.alien4cloud\.artifacts\."
                    r"AnsiblePlaybook, org\.alien4cloud\.nodes\.Job\); none in your files\Z",
                    summary.message), summary.message  # fmt: skip
    assert result.ok


def test_redefinitions_in_the_users_files_stay_warnings(tmp_path: Path) -> None:
    text = LIBRARIES_ONLY.replace("    topology_template:", textwrap.indent(textwrap.dedent("""\
        node_types:
          org.alien4cloud.nodes.Job:
            derived_from: tosca.nodes.Root
        topology_template:"""), "    "))
    path = _write(tmp_path, text)
    result = validate(path)
    (warning,) = _rules(result, "types.redefined")
    assert warning.location.file == str(path) and warning.severity is Severity.WARNING
    (summary,) = _rules(result, "types.redefined-in-libraries")
    assert summary.message.endswith("1 in your files, reported where they are")


def test_library_redefinitions_said_once_for_many_topologies(tmp_path: Path) -> None:
    first = _write(tmp_path, LIBRARIES_ONLY, "one.yaml")
    second = _write(tmp_path, LIBRARIES_ONLY, "two.yaml")
    output = CliRunner().invoke(cli, ["validate", str(first), str(second)]).output
    assert output.count("[types.redefined-in-libraries]") == 1, output
    assert "[types.redefined]" not in output
    # a shared catalog in the API: the same
    catalog = default_catalog()
    assert len(_rules(validate(first, catalog=catalog), "types.redefined-in-libraries")) == 1
    assert _rules(validate(second, catalog=catalog), "types.redefined-in-libraries") == []
