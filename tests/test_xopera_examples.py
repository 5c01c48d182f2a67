"""The xOpera examples and integration tests (``../shared/corpus/xopera``) whose operations run
on this machine deploy and undeploy with orch, as a user runs them.

xOpera runs a playbook (``hosts: all``) against the ``public_address`` of the Compute its node
is hosted on, with ``connection: local`` for ``localhost``; orch runs an operation on its own
machine when that Compute has no address or ``localhost``. Each qualifying example is copied to
tmp_path (folders its playbooks write under /tmp are moved into tmp_path too), deployed with its
inputs, checked (the operations that ran, all on localhost; files written; outputs; what the
playbooks printed), undeployed and checked again. The examples that do not qualify are listed
in NOT_LOCAL with the reason, and reported as skipped with it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import CORPUS

XOPERA = CORPUS / "xopera"
FOLDERS = ("examples", "tests/integration")

NOT_LOCAL: dict[str, str] = {
    "examples/nginx_openstack": (
        "cloud: its openstack.VM create/delete playbooks create and delete an OpenStack server "
        "(openstack.cloud modules, credentials from clouds.yaml, the network), and nginx is "
        "installed on that VM over SSH"
    ),
    "tests/integration/hello_world_tosca_2_0": (
        "tosca_definitions_version tosca_2_0 with the profile org.oasis-open.tosca.simple:2.0: "
        "orch reads TOSCA 1.0-1.3 only (validation refuses it; a known disagreement of "
        "tests/test_corpus.py)"
    ),
}


# ---------------------------------------------------------------------------- one run
class Orch:
    """orch in a subprocess with one state folder (tests/test_deploy.py's helper, mirrored:
    that module imports ``tests.conftest``, which plain ``pytest`` cannot import)."""

    def __init__(self, root: Path):
        self.root = root
        self.state = root / "state"

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "orch", *args, "--state-dir", str(self.state)]
        proc = subprocess.run(
            command, cwd=self.root, capture_output=True, text=True, timeout=timeout,
            env={**os.environ, "NO_COLOR": "1"},
        )  # fmt: skip
        assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--format", "json").stdout)


@dataclass
class Run:
    """One example copied to tmp_path, deployed and undeployed under one state folder."""

    orch: Orch
    name: str
    copy: Path
    moved: dict[str, Path]
    """Folders the playbooks write under /tmp -> where they write in this copy."""
    events: list[dict[str, Any]] = field(default_factory=list)

    def run(self, *args: str, timeout: float) -> dict[str, Any]:
        """``orch ARGS --format json``: keeps the events, returns the final result."""
        proc = self.orch(*args, "--format", "json", timeout=timeout)
        self.events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
        (result,) = [e for e in self.events if e["kind"] == "result"]
        return result

    def operations(self) -> dict[str, str]:
        """Title -> host of every operation that succeeded in the last run."""
        ends = [e["data"] for e in self.events if e["kind"] == "step-end"]
        assert all(d["status"] == "ok" for d in ends), ends
        return {d["title"]: d["host"] for d in ends}

    def outputs(self) -> dict[str, Any]:
        return self.orch.json("outputs", self.name)

    def states(self) -> dict[str, str]:
        status = self.orch.json("status", self.name)
        return {i["id"]: i["state"] for i in status["instances"]}

    def logs(self) -> str:
        return self.orch("logs", self.name).stdout


Check = Callable[[Run], None]


def nothing(_run: Run) -> None:
    """No check beyond the common ones (operations, states, status)."""


@dataclass(frozen=True)
class Example:
    path: str
    """Folder under the xOpera corpus."""
    deploys: tuple[str, ...]
    """The operations the deploy runs (all on localhost)."""
    undeploys: tuple[str, ...]
    deployed: Check
    undeployed: Check = nothing
    blueprint: str = "service.yaml"
    inputs: tuple[str, ...] = ()
    """``-i`` values: files of the example, or name=value."""
    moved: tuple[str, ...] = ()
    """Folders under /tmp the playbooks write: moved into tmp_path in the copy."""
    options: tuple[str, ...] = ()
    pending: str | None = None
    """Why it cannot pass yet (a strict xfail, so that the mark goes when the fix is in)."""
    timeout: float = 180

    @property
    def name(self) -> str:
        """The deployment's name: the folder, and the blueprint when it is not service.yaml."""
        stem = Path(self.blueprint).stem
        return Path(self.path).name + ("" if stem == "service" else f"-{stem}")


# ---------------------------------------------------------------------------- checks
def hello_deployed(run: Run) -> None:
    hello = run.moved["/tmp/playing-opera"] / "hello" / "hello.txt"
    assert hello.read_text() == "orch was here"  # the marker input, written by the playbook


def hello_undeployed(run: Run) -> None:
    assert not run.moved["/tmp/playing-opera"].exists()  # the delete playbook removed it


def artifacts_deployed(run: Run) -> None:
    # the playbook cat-ed both artifacts (one named by get_artifact in an operation input, one
    # by get_artifact in a property) and set_stats made the contents attributes
    outputs = run.outputs()
    assert outputs["output_attribute_text_file"] == "This is an example file content."
    value = outputs["output_attribute_json_file"]
    parsed = json.loads(value) if isinstance(value, str) else value
    assert parsed == {"content": "This is an example JSON file content."}


def attribute_mapping_deployed(run: Run) -> None:
    # each student's create maps its set_stats output to student_id ([SELF, student_id]); each
    # relationship operation reads the teacher's list and maps the longer one back to SOURCE
    assert run.outputs() == {
        "student_id_list": ["student-1", "student-4", "student-6", "student-3"]
    }


def capability_deployed(run: Run) -> None:
    # inputs read a capability's attribute and property, and the target of a requirement's;
    # the playbook's set_stats (each value after a space, as it writes them) set attributes
    assert run.outputs() == {
        "output_cap_attr": " some_attribute",
        "output_cap_prop": " some_property",
        "output_req_attr": " some_integer",
        "output_req_prop": " some_string",
    }


def intrinsic_deployed(run: Run) -> None:
    # the values the example's comments give
    assert run.outputs() == {
        "concat_output": "http://attribute1:property1",
        "join1_output": "tosca",
        "join2_output": "t_o_s_c_a",
        "join3_output": "input, attribute2, property2",
        "token1_output": "111",
        "token2_output": "s",
        "attribute": "Attribute: property",
        "property": "Property: attribute",
        "properties": "Properties: property1 property2 property",
    }


def outputs_deployed(run: Run) -> None:
    assert run.outputs() == {"output_prop": 123, "output_attr": "my_custom_attribute_value"}


def policy_triggers_deployed(run: Run) -> None:
    assert '"msg": "Insert OpenStack tasks"' in run.logs()


def relationship_outputs_deployed(run: Run) -> None:
    # attributes set by the four Configure operations of the relationship (set_stats), one of
    # them from the dependency file next to its playbook
    assert run.outputs() == {
        "output_node_attribute": "Node attribute",
        "output_relationship_attribute": "Relationship attribute",
        "output_relationship_property": "Relationship property",
        "output_relationship_input": "Relationship input",
        "output_pre_configure_source_attribute": "This is pre configure source attribute",
        "output_pre_configure_target_attribute": "This is pre configure target attribute",
        "output_post_configure_source_attribute": "Relationship attribute",
        "output_post_configure_source_property_attribute": "Relationship property",
        "output_post_configure_source_input_attribute": "Relationship input",
        "output_post_configure_source_txt_file_attribute": "This is an example file content.",
        "output_post_configure_target_attribute": "This is post configure target attribute",
    }


def tosca_functions_deployed(run: Run) -> None:
    # interface inputs read other nodes, SELF, HOST and a relationship template by name (one
    # no requirement uses); the relationship's inputs read SELF, SOURCE and TARGET, and SELF's
    # attribute_rel is its type's default: hello2's requirement names the type, not hello_rel
    logs = run.logs()
    for line in (
        "attribute1 attribute2 attribute3 attribute_rel attribute_host",
        "property1 property2 property3 property_rel property_host",
        "attribute1 attribute2 attribute3 string attribute2 attribute1",
        "property1 property2 property3 string property2 property1",
    ):
        assert f'"msg": "{line}"' in logs


def cli_commands_deployed(run: Run) -> None:
    assert run.outputs() == {"output_attr": 10, "output_prop": True}  # from inputs.yaml
    logs = run.logs()
    assert '"msg": 10' in logs and '"msg": true' in logs  # tokio's create printed its inputs
    assert '"msg": "Hello!"' in logs  # berlin's start


def cli_commands_undeployed(run: Run) -> None:
    assert run.logs().count('"msg": "Bye Bye"') == 2  # berlin's stop, tokio's delete


def concurrency_deployed(run: Run) -> None:
    """What depends on a node starts after its start ended; independent ones overlap."""
    spans: dict[str, list[float]] = {}
    for event in run.events:
        if event["kind"] in ("step-start", "step-end"):
            spans.setdefault(event["node"], []).append(event["time"])
    first = {node: min(times) for node, times in spans.items()}
    last = {node: max(times) for node, times in spans.items()}
    requires = {"hello-5": ["hello-1"], "hello-6": ["hello-5"], "hello-7": ["hello-6"],
                "hello-11": ["hello-1"], "hello-12": ["hello-3"], "hello-13": ["hello-4"],
                "hello-14": ["hello-1", "hello-2", "hello-7", "hello-13"]}  # fmt: skip
    for node, needed in requires.items():
        assert all(first[node] >= last[n] for n in needed), node
    # hello-1 and hello-2 sleep 5 s in create and in start, independently: they overlap
    assert first["hello-2"] < last["hello-1"] and first["hello-1"] < last["hello-2"]


def notify_deployed(run: Run) -> None:
    # configure's inputs read the properties of the policies by policy type (xOpera's way)
    logs = run.logs()
    assert '"msg": 10' in logs and '"msg": 90' in logs
    assert '"msg": "Created AWS Lambda."' in logs


def notify_undeployed(run: Run) -> None:
    assert '"msg": "Deleted AWS Lambda."' in run.logs()


def misc_deployed(run: Run) -> None:
    hello = run.moved["/tmp/opera-test"] / "hello" / "hello.txt"
    assert hello.read_text() == "Hello from Ansible and xOpera!\n"  # file_content's default
    assert run.outputs() == {
        "node_output_prop": 123,
        "node_output_attr": "my_custom_attribute_value",
        "relationship_output_prop": "rel_prop_test123",
        "relationship_output_attr": "This is a relationship attribute.",
    }
    assert '"msg": "Hej prijatelj, pojdi z nami!"' in run.logs()  # from inputs.yaml


def misc_undeployed(run: Run) -> None:
    assert not run.moved["/tmp/opera-test"].exists()


def compare_ops(names: str, operation: str) -> tuple[str, ...]:
    return tuple(f"hello-{n}/0 Standard.{operation}" for n in names)


CONCURRENCY_NODES = [f"hello-{n}" for n in range(1, 15)]

EXAMPLES: dict[str, Example] = {
    "hello": Example(
        "examples/hello",
        ("hello/0 Standard.create",),
        ("hello/0 Standard.delete",),
        hello_deployed,
        hello_undeployed,
        inputs=("marker=orch was here",),
        moved=("/tmp/playing-opera",),
    ),
    "artifacts": Example(
        "examples/artifacts",
        ("artifacts_file/0 Standard.create",),
        (),
        artifacts_deployed,
    ),
    "attribute_mapping": Example(
        "examples/attribute_mapping",
        (
            *(f"student-{s}/0 Standard.create" for s in ("anne", "ben", "chris", "tina")),
            *(
                f"teacher-paul/0 -> student-{s}/0 Configure.pre_configure_source"
                for s in ("anne", "ben", "chris", "tina")
            ),
        ),
        (),
        attribute_mapping_deployed,
    ),
    "capability_attributes_properties": Example(
        "examples/capability_attributes_properties",
        ("my_second_node/0 Standard.create",),
        (),
        capability_deployed,
    ),
    "intrinsic_functions": Example("examples/intrinsic_functions", (), (), intrinsic_deployed),
    "outputs": Example("examples/outputs", ("my_node/0 Standard.create",), (), outputs_deployed),
    "policy_triggers": Example(
        "examples/policy_triggers",
        ("openstack_vm/0 Standard.create",),
        ("openstack_vm/0 Standard.delete",),
        policy_triggers_deployed,
    ),
    "relationship_outputs": Example(
        "examples/relationship_outputs",
        (
            "test_node/0 Standard.create",
            *(
                f"test_node/0 -> my_workstation/0 Configure.{op}"
                for op in (
                    "pre_configure_source",
                    "pre_configure_target",
                    "post_configure_source",
                    "post_configure_target",
                )
            ),
        ),
        (),
        relationship_outputs_deployed,
    ),
    "tosca_functions": Example(
        "examples/tosca_functions",
        ("hello3/0 Standard.create", "hello2/0 -> hello1/0 Configure.post_configure_target"),
        (),
        tosca_functions_deployed,
    ),
    "cli_commands": Example(
        "tests/integration/cli_commands",
        ("tokio/0 Standard.create", "berlin/0 Standard.start"),
        ("berlin/0 Standard.stop", "tokio/0 Standard.delete"),
        cli_commands_deployed,
        cli_commands_undeployed,
        inputs=("inputs.yaml",),
    ),
    "compare-service1": Example(
        "tests/integration/compare",
        compare_ops("12346", "create"),
        compare_ops("12346", "delete"),
        nothing,
        blueprint="service1.yaml",
        inputs=("inputs1.yaml",),
    ),
    "compare-service2": Example(
        "tests/integration/compare",
        compare_ops("12356", "create"),
        compare_ops("12356", "delete"),
        nothing,
        blueprint="service2.yaml",
        inputs=("inputs2.yaml",),
    ),
    "concurrency": Example(
        "tests/integration/concurrency",
        tuple(f"{n}/0 Standard.{op}" for n in CONCURRENCY_NODES for op in ("create", "start")),
        tuple(f"{n}/0 Standard.delete" for n in CONCURRENCY_NODES),
        concurrency_deployed,
        options=("--workers", "8"),
        timeout=300,
    ),
    "notify": Example(
        "tests/integration/notify",
        ("aws_lambda/0 Standard.create", "configure_monitoring/0 Standard.configure"),
        ("aws_lambda/0 Standard.delete",),
        notify_deployed,
        notify_undeployed,
    ),
    "misc_tosca_types": Example(
        "tests/integration/misc_tosca_types",
        (
            "file/0 Standard.create",
            "hello/0 Standard.create",
            *(f"interfaces/0 Standard.{op}" for op in ("create", "configure", "start")),
            "setter/0 Standard.create",
            "test/0 Standard.create",
            "test/0 -> my-workstation2/0 Configure.pre_configure_source",
        ),
        ("file/0 Standard.delete", "interfaces/0 Standard.stop", "interfaces/0 Standard.delete"),
        misc_deployed,
        misc_undeployed,
        inputs=("inputs.yaml",),
        moved=("/tmp/opera-test",),
    ),
}


def _params() -> list[Any]:
    return [
        pytest.param(
            example,
            id=key,
            marks=[pytest.mark.xfail(strict=True, reason=example.pending)]
            if example.pending
            else [],
        )
        for key, example in EXAMPLES.items()
    ]


def _copy(example: Example, tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """The example's folder in tmp_path, its playbooks writing under tmp_path, not /tmp."""
    copy = tmp_path / Path(example.path).name
    shutil.copytree(XOPERA / example.path, copy)
    moved = {folder: tmp_path / "tmp" / Path(folder).name for folder in example.moved}
    for path in copy.rglob("*.yaml"):
        text = path.read_text("utf-8")
        patched = text
        for folder, target in moved.items():
            patched = patched.replace(folder, str(target))
        if patched != text:
            path.write_text(patched, "utf-8")
    return copy, moved


# ---------------------------------------------------------------------------- tests
@pytest.mark.parametrize("example", _params())
def test_example_deploys_and_undeploys(example: Example, corpus: Path, tmp_path: Path) -> None:
    copy, moved = _copy(example, tmp_path)
    name = example.name
    run = Run(Orch(tmp_path), name, copy, moved)
    inputs = [
        arg
        for value in example.inputs
        for arg in ("-i", str(copy / value) if (copy / value).is_file() else value)
    ]
    blueprint = str(copy / example.blueprint)

    result = run.run(
        "deploy", blueprint, "--name", name, *inputs, *example.options, timeout=example.timeout
    )
    assert (result["status"], result["deployment_status"]) == ("ok", "deployed"), result
    ran = run.operations()
    assert sorted(ran) == sorted(example.deploys)
    assert set(ran.values()) <= {"localhost"}, ran
    assert set(run.states().values()) == {"started"}
    assert run.outputs() == result["outputs"]
    example.deployed(run)

    result = run.run("undeploy", name, timeout=example.timeout)
    assert (result["status"], result["deployment_status"]) == ("ok", "undeployed"), result
    ran = run.operations()
    assert sorted(ran) == sorted(example.undeploys)
    assert set(ran.values()) <= {"localhost"}, ran
    assert run.orch.json("status", name)["status"] == "undeployed"
    assert run.outputs() == {}
    example.undeployed(run)


@pytest.mark.parametrize("path", sorted(NOT_LOCAL))
def test_example_that_does_not_run_locally(path: str, corpus: Path) -> None:
    assert (XOPERA / path).is_dir(), f"{path} is no longer in the corpus"
    pytest.skip(f"xOpera {path} does not qualify: {NOT_LOCAL[path]}")


def test_every_example_is_listed(corpus: Path) -> None:
    """A new example in the corpus is either run here or listed with its reason."""
    found = {
        f"{folder}/{entry.name}"
        for folder in FOLDERS
        for entry in (XOPERA / folder).iterdir()
        if entry.is_dir()
    }
    listed = {e.path for e in EXAMPLES.values()} | set(NOT_LOCAL)
    assert found == listed
