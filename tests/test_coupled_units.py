"""The pure parts of coupled workflows, on what Slurm prints: a step's end read with its
allocation's state, sstat's figures, a hostile group name, the time an allocation has left."""

from __future__ import annotations

from pathlib import Path

import pytest

from orch.cli.views import held_allocations
from orch.executors.allocation import ends_at, slurm_seconds
from orch.executors.coscheduled import CoScheduled, env_name, group_script
from orch.executors.job_settings import JobSettings
from orch.executors.schedulers import JobFiles, ScriptError
from orch.executors.slurm_steps import SLURM_STEPS
from orch.live import Watched, parse
from orch.state.rows import InstanceRow


def test_a_step_gone_with_its_allocation_fails_naming_the_allocations_state() -> None:
    text = "\n".join([
        "S 7.1|0:05|n1",            # still running
        "J 7|TIMEOUT|0:00",         # its allocation ran out of time
        "E 7.0 143",                # killed with it
    ])  # fmt: skip
    infos = SLURM_STEPS.parse_status(text, ["7.0", "7.1", "7.2"])
    assert infos["7.1"].state == "RUNNING" and not infos["7.1"].ended
    assert (infos["7.0"].state, infos["7.0"].exit_code) == ("FAILED", 143)
    assert infos["7.0"].reason == "its allocation 7 ended (TIMEOUT)"
    assert infos["7.2"].reason == "its allocation 7 ended (TIMEOUT)"  # no exit file at all
    alive = SLURM_STEPS.parse_status("J 8|RUNNING|9:00\nE 8.0 0", ["8.0", "8.1"])
    assert alive["8.0"].state == "COMPLETED"
    assert alive["8.1"].state == "UNKNOWN"  # its exit file comes a moment later
    gone = SLURM_STEPS.parse_status("", ["9.0"])
    assert gone["9.0"].reason == "its allocation 9 is gone"


def test_sstat_figures_are_summed_per_job_and_read_in_seconds_and_megabytes() -> None:
    jobs = [Watched("a/0", "12"), Watched("b/0", "20.3", progress_pattern=r"step (\d+)")]
    text = "\n".join([
        "Q|12|RUNNING|0:10|29:50|n1",
        "Q|20|RUNNING|5:00|55:00|n2",
        "S|20.3|0:04|n2",
        "C|12.batch|00:00:04|65408K|1",
        "C|12.0|00:00:02.500|1.5G|2",
        "C|20.3|01:00|2048K|1",
        "T|20.3|step 7",
        "T|20.3|step 8 of many",
    ])  # fmt: skip
    figures = parse(text, jobs)
    a, b = figures["12"], figures["20.3"]
    assert (a.state, a.elapsed, a.left, a.nodes) == ("RUNNING", "0:10", "29:50", "n1")
    assert a.cpu_seconds == 9.0 and a.cpu_percent == 90.0
    assert a.max_rss_mb == round(1.5 * 1024**3 / 1e6, 1)
    assert (b.state, b.elapsed, b.left) == ("RUNNING", "0:04", "55:00")  # the allocation's left
    assert b.cpu_seconds == 60.0 and b.progress == "8"


def test_a_group_job_name_cannot_start_a_line_of_the_batch_script() -> None:
    job = JobSettings(node="a", deployment="d", site="hpc1", job_name="a", command="true")
    member = {"node": "a", "properties": {}}
    group = CoScheduled("g", {"job_name": "x\nrm -rf ~"}, (member,), "a")
    with pytest.raises(ScriptError, match="holds a line break"):
        group_script(group, [job], [JobFiles("/w/d/a", "a")], "/w/d/a")
    script = group_script(CoScheduled("g", {}, (member,), "a"), [job],
                          [JobFiles("/w/d/a", "a")], "/w/d/a")  # fmt: skip
    assert "#SBATCH --job-name=g\n" in script and 'A_ENDPOINT="$orch_host_0:$orch_port_0"' in script
    assert env_name("sim-left.2") == "SIM_LEFT_2" and env_name("3d") == "N_3D"


def test_time_left_of_an_allocation() -> None:
    assert slurm_seconds("1-02:03:04") == 93784 and slurm_seconds("5:00") == 300
    assert slurm_seconds("UNLIMITED") is None and ends_at("UNLIMITED") == ""
    end = ends_at("10:00", now=0.0)
    assert end == "1970-01-01T00:10:00Z"
    row = InstanceRow("d", "held/0", "held", "started", {
        "allocation_id": "7", "ends_at": end, "node_list": "n1", "time_limit": "10:00"})
    [held] = held_allocations([row], now=60.0)
    assert held["left_seconds"] == 540 and held["id"] == "7"


def test_a_jobs_port_is_its_property_or_its_endpoint_capabilitys(tmp_path: Path) -> None:
    """What ``orch connect`` and ``orch status`` take as the application's port; a Compute's
    endpoint port is its SSH port, never an application's."""
    from orch.cli.connect import declared_port
    from orch.deployments import prepare
    from orch.engine.evaluate import Evaluator, Scope
    from orch.plan.instances import make_instances

    blueprint = tmp_path / "ports.yaml"
    blueprint.write_text(PORTS)
    model = prepare(str(blueprint), ["viz_port=8050"]).model
    evaluator = Evaluator(model, make_instances(model), {"viz_port": 8050}, {}, {})

    def port(node: str) -> int | None:
        return declared_port(model.nodes[node], evaluator, Scope(instance=f"{node}/0"))

    assert (port("viz"), port("plain"), port("by_property"), port("login")) == (
        8050, None, 9000, None)  # fmt: skip


PORTS = """
tosca_definitions_version: tosca_simple_yaml_1_3
imports: [orch-hpc:1.0.0]
topology_template:
  inputs:
    viz_port: { type: integer }
  node_templates:
    login:
      type: orch.nodes.Site
      properties: { site: hpc1 }
      capabilities:
        endpoint: { properties: { port: 2222 } }
    viz:
      type: orch.nodes.SlurmJob
      properties: { command: serve }
      capabilities:
        endpoint: { properties: { port: { get_input: viz_port } } }
      requirements: [ { host: login } ]
    plain:
      type: orch.nodes.SlurmJob
      properties: { command: compute }
      requirements: [ { host: login } ]
    by_property:
      type: orch.nodes.SlurmJob
      properties: { command: serve, port: 9000 }
      requirements: [ { host: login } ]
"""
