"""PyCOMPSs workflows through `orch deploy` on the loopback Slurm site.

The PyCOMPSs runtime cannot be installed here, so the site gets a STAND-IN ``enqueue_compss``
(``tests/sites/pycompss/enqueue_compss``): it parses the real command's documented flags
(refusing unknown ones), records them, and submits a real Slurm job that runs the application
with plain python. Everything else is real: SSH, the site's modules step, sbatch, squeue,
scancel.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sites.cli import Orch, site_yaml
from sites.fixtures import SlurmSite
from sites.slurm import PATH

BLUEPRINT = """
tosca_definitions_version: tosca_simple_yaml_1_3
imports: [orch-hpc:1.0.0]
topology_template:
  node_templates:
    login:
      type: orch.nodes.Site
      properties: {site: hpc1}
    workflow:
      type: orch.nodes.PyCOMPSsJob
      properties:
        app: {app}
        arguments: ["{data}", "two words"]
        num_nodes: 1
        exec_time: 5
        qos: debug
        project: proj42
        python_interpreter: python3
        extra_options: [--log_level=debug]
        modules: [COMPSs/3.3]
      requirements: [{host: login}]
"""


@pytest.fixture
def site(orch: Orch, slurm_site: SlurmSite, credential: str, compss_bin: Path) -> SlurmSite:
    environment = {"PATH": f"{compss_bin}:{PATH}", "SLURM_CONF": str(slurm_site.cluster.conf)}
    orch.write("sites.yaml", "sites:\n" + site_yaml(
        slurm_site, credential, partition="debug", environment=environment
    ))  # fmt: skip
    return slurm_site


def write_app(shared_dir: Path, code: str) -> Path:
    app = shared_dir / "app.py"
    app.write_text(code)
    app.chmod(0o644)
    return app


def test_enqueue_compss_gets_the_flags_and_its_job_is_watched(
    orch: Orch, site: SlurmSite, shared_dir: Path
) -> None:
    app = write_app(shared_dir, "import sys\nprint('args:', sys.argv[1:])\n")
    orch.write("bp.yaml", BLUEPRINT.replace("{app}", str(app)).replace("{data}", "in.csv"))
    orch("deploy", "bp.yaml", "--poll-interval", "0.5", timeout=120)
    [instance] = [i for i in json.loads(orch("status", "bp", "-f", "json").stdout)["instances"]
                  if i["node"] == "workflow"]  # fmt: skip
    attributes = instance["attributes"]
    assert attributes["job_status"] == "COMPLETED" and attributes["exit_code"] == 0
    work = Path(attributes["work_dir"])
    calls = (work / "enqueue_compss.calls").read_text().splitlines()
    call = json.loads(calls[-1])  # the site's home outlives test runs
    assert call["options"] == {
        "num_nodes": "1", "exec_time": "5", "qos": "debug", "project_name": "proj42",
        "queue": "debug", "job_name": "workflow", "python_interpreter": "python3",
        "log_level": "debug",
    }  # fmt: skip
    assert (call["app"], call["args"]) == (str(app), ["in.csv", "two words"])
    assert (Path(attributes["output"]).name) == f"compss-{attributes['job_id']}.out"
    assert "args: ['in.csv', 'two words']" in Path(attributes["output"]).read_text()
    assert "module load COMPSs/3.3" in Path("/home/orchtest/modules.calls").read_text()
    assert "args: ['in.csv', 'two words']" in orch("logs", "bp").stdout


def test_a_failing_workflow_reports_exit_code_and_tail(
    orch: Orch, site: SlurmSite, shared_dir: Path
) -> None:
    code = "import sys\nprint('task 3 failed', file=sys.stderr)\nsys.exit(2)\n"
    app = write_app(shared_dir, code)
    orch.write("bp.yaml", BLUEPRINT.replace("{app}", str(app)).replace("{data}", "x"))
    proc = orch("deploy", "bp.yaml", "--poll-interval", "0.5", check=4, timeout=120)
    assert "ended FAILED: exit code 2" in proc.stderr
    assert "task 3 failed" in proc.stderr and "Traceback" not in proc.stderr


def test_an_unknown_enqueue_compss_option_fails_the_submit(
    orch: Orch, site: SlurmSite, shared_dir: Path
) -> None:
    app = write_app(shared_dir, "print('never')\n")
    text = BLUEPRINT.replace("{app}", str(app)).replace("{data}", "x")
    orch.write("bp.yaml", text.replace("--log_level=debug", "--no_such_flag=1"))
    proc = orch("deploy", "bp.yaml", "--poll-interval", "0.5", check=4, timeout=120)
    assert "submitting workflow on orchtest@127.0.0.1" in proc.stderr
    assert "unknown option --no_such_flag" in proc.stderr


def test_modules_load_where_module_is_a_shell_function_of_the_site(
    orch: Orch, slurm_site: SlurmSite, credential: str, compss_bin: Path, shared_dir: Path
) -> None:
    """As on sites with Lmod: `module` is a shell function that only login shells get from a
    start-up file ($MODULESHOME/init/sh here); orch's non-login shell defines it the same way."""
    tools = shared_dir / "tools"
    init = shared_dir / "modules" / "init"
    tools.mkdir()
    init.mkdir(parents=True)
    (tools / "enqueue_compss").write_bytes((compss_bin / "enqueue_compss").read_bytes())
    (tools / "enqueue_compss").chmod(0o755)
    (init / "sh").write_text(
        'module() { echo "function module $*" >> "$HOME/modules.calls"; }\n'
    )
    for folder in (tools, init.parent, init):
        folder.chmod(0o755)
    (init / "sh").chmod(0o644)
    environment = {"PATH": f"{tools}:{PATH}", "SLURM_CONF": str(slurm_site.cluster.conf),
                   "MODULESHOME": str(init.parent)}  # fmt: skip
    orch.write("sites.yaml", "sites:\n" + site_yaml(
        slurm_site, credential, partition="debug", environment=environment
    ))  # fmt: skip
    app = write_app(shared_dir, "print('loaded')\n")
    orch.write("bp.yaml", BLUEPRINT.replace("{app}", str(app)).replace("{data}", "in.csv"))
    calls = Path("/home/orchtest/modules.calls")
    before = calls.read_text() if calls.exists() else ""
    check = orch("sites", "check", "--blueprint", "bp.yaml", check=None)
    assert check.returncode == 0, check.stdout + check.stderr  # the check agrees
    orch("deploy", "bp.yaml", "--poll-interval", "0.5", timeout=120)
    assert "function module load COMPSs/3.3" in calls.read_text()[len(before):]
