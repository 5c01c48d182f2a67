"""`orch sites check --blueprint` and the README's HPC walkthrough, for real: the loopback Slurm
site behind its sshd (tests/sites), reached as its unprivileged user with a credential token.

The PyCOMPSs runtime cannot be installed here: the site's enqueue_compss is the stand-in of
tests/sites/pycompss (it runs the application with plain python in a real Slurm job), and its
`module` is the stand-in of the compss_bin fixture. A site whose PATH lacks that folder is a
site with neither `module` nor enqueue_compss.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest

from sites.cli import Orch, site_yaml
from sites.fixtures import SlurmSite
from sites.slurm import PATH

REPO = Path(__file__).resolve().parents[1]
BLUEPRINT = "blueprints/eflows4hpc-minimal/blueprint.yaml"


def copy_blueprint(orch: Orch) -> Path:
    shutil.copytree(REPO / "blueprints", orch.root / "blueprints")
    return orch.root / BLUEPRINT


def write_sites(orch: Orch, site: SlurmSite, token: str, *tool_dirs: Path, **settings: object
                ) -> None:  # fmt: skip
    """sites.yaml for hpc1, whose sessions find ``tool_dirs`` before the system's PATH."""
    environment = {"PATH": ":".join([*map(str, tool_dirs), PATH]),
                   "SLURM_CONF": str(site.cluster.conf)}  # fmt: skip
    environment.update(settings.pop("environment", {}))  # type: ignore[arg-type]
    orch.write("sites.yaml", "sites:\n" + site_yaml(
        site, token, "hpc1", partition="debug", environment=environment, **settings
    ))  # fmt: skip


def check(orch: Orch, *args: str, code: int, **env: str) -> dict:
    proc = orch("sites", "check", "--blueprint", BLUEPRINT, "-i", "site=hpc1", "-f", "json",
                *args, check=code, **env)  # fmt: skip
    return json.loads(proc.stdout)


def by_check(findings: list[dict]) -> dict[str, dict]:
    return {f["check"]: f for f in findings}


def remote_files(site: SlurmSite, folder: str) -> list[str]:
    """What is under ``folder`` on the site, listed over SSH as the site's user."""
    from orch.transport.ssh import SshTransport

    transport = SshTransport(site.user_host, site.policy, 10)
    try:
        result = transport.run(f"[ ! -d {shlex.quote(folder)} ] || find {shlex.quote(folder)} "
                               "-mindepth 1 | sort")  # fmt: skip
    finally:
        transport.close()
    assert result.rc == 0, result.stderr
    return result.stdout.split()


# -- what the check says without running anything ---------------------------------------------


def test_needs_of_the_walkthrough_blueprint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:  # fmt: skip
    """Worked out from the model: the job's Slurm commands, `module` and enqueue_compss once
    COMPSs' module is loaded, a runtime for its image, partition, and apptainer here (the
    image is built locally and orch's cache is empty)."""
    from orch.deployments import prepare
    from orch.sites.config import load_sites
    from orch.sites.needs import blueprint_needs

    monkeypatch.setenv("ORCH_CACHE_HOME", str(tmp_path / "cache"))
    sites = tmp_path / "sites.yaml"
    sites.write_text("sites:\n  hpc1: {host: login, partition: debug, modules: [COMPSs/3.3]}\n")
    prepared = prepare(str(REPO / BLUEPRINT), ["site=hpc1"])
    needs = blueprint_needs(BLUEPRINT, prepared.model, prepared.inputs, load_sites(sites))
    hpc1 = needs.sites["hpc1"]
    assert hpc1.nodes == ["image", "dataset", "code", "wordcount", "results"]
    assert hpc1.loaded_commands() == [(("COMPSs/3.3",), "enqueue_compss")]
    assert {"sbatch", "squeue", "scancel", "module", "apptainer"} <= set(hpc1.plain_commands())
    assert list(hpc1.of("partition")) == ["debug"] and hpc1.modules() == ["COMPSs/3.3"]
    assert [(n.name, n.node) for n in needs.local] == [("apptainer", "image")]
    site_built = prepare(str(REPO / BLUEPRINT), ["site=hpc1", "build_on=site"])
    needs = blueprint_needs(BLUEPRINT, site_built.model, site_built.inputs, load_sites(sites))
    assert needs.local == [] and "image" in {n.node for n in needs.sites["hpc1"].of("command")
                                             ["apptainer"]}  # fmt: skip


# -- against the loopback site ------------------------------------------------------------------


def test_check_with_the_blueprint_names_what_is_missing_and_the_nodes(
    orch: Orch, slurm_site: SlurmSite, credential: str, tmp_path: Path
) -> None:
    """A site with Slurm but neither `module` nor enqueue_compss, and no apptainer here: the
    check of sites.yaml alone says what it did not check; with the blueprint it fails, naming
    each missing piece, the node that needs it, and the fix."""
    copy_blueprint(orch)
    empty = tmp_path / "no-tools"
    empty.mkdir()
    write_sites(orch, slurm_site, credential, modules=["COMPSs/3.3"])
    report = check(orch, code=4, PATH=str(empty))
    [site] = report["sites"]
    found = by_check(site["findings"])
    assert found["modules"]["level"] == "missing" and found["modules"]["nodes"] == ["wordcount"]
    if Path("/usr/share/lmod/lmod/init/sh").is_file():
        # Lmod is installed on this machine (tests/run.sh installs it for EasyBuild): the
        # site's shell gets `module` from its init file whatever PATH says, and the module
        # itself is what is missing
        assert "not available: COMPSs/3.3" in found["modules"]["message"]
    else:
        assert "no `module` command" in found["modules"]["message"]
    compss = found["enqueue_compss"]
    assert compss["level"] == "missing" and compss["nodes"] == ["wordcount"]
    assert "`module load COMPSs/3.3` fails" in compss["message"]
    assert "PATH in the site's environment" in compss["hint"]
    assert site["nodes"] == ["image", "dataset", "code", "wordcount", "results"]
    [local] = report["local"]["findings"]
    assert (local["level"], local["check"], local["nodes"]) == ("missing", "apptainer", ["image"])
    assert "build_on: site" in local["hint"]

    # the site: sites.yaml names no module; the blueprint still needs enqueue_compss
    write_sites(orch, slurm_site, credential)
    generic = orch("sites", "check", "hpc1", "-f", "json").stdout  # exit 0: settings only
    notes = by_check(json.loads(generic)["sites"][0]["findings"])
    assert notes["blueprint"]["level"] == "info" and "--blueprint" in notes["blueprint"]["message"]
    assert notes["enqueue_compss"]["level"] == "info"
    text = orch("sites", "check", "--blueprint", BLUEPRINT, "-i", "site=hpc1", check=4,
                PATH=str(empty)).stdout  # fmt: skip
    assert ("MISSING  enqueue_compss  enqueue_compss not found on the site (needed by "
            "wordcount: launches the PyCOMPSs workflow)") in text
    assert "MISSING  apptainer  apptainer not found on this machine (needed by image" in text
    assert "MISSING  modules" not in text


def test_check_with_the_blueprint_passes_when_the_site_has_what_it_needs(
    orch: Orch, slurm_site: SlurmSite, credential: str, compss_bin: Path, apptainer: Path
) -> None:
    copy_blueprint(orch)
    write_sites(orch, slurm_site, credential, compss_bin, apptainer.parent,
                modules=["COMPSs/3.3"])  # fmt: skip
    report = check(orch, code=0)
    assert report["status"] == "ok" and report["local"]["status"] == "ok"
    found = by_check(report["sites"][0]["findings"])
    assert found["enqueue_compss"]["message"].startswith(f"{compss_bin}/enqueue_compss (after")
    assert found["modules"]["level"] == "ok"
    assert not [f for f in report["sites"][0]["findings"] if f["level"] == "missing"]


def test_the_readme_walkthrough_leaves_nothing_on_the_site(
    orch: Orch, slurm_site: SlurmSite, credential: str, compss_bin: Path, apptainer: Path,
    shared_dir: Path,
) -> None:  # fmt: skip
    """README's steps: sites.yaml as written there (work_dir $SCRATCH/orch-work, COMPSs'
    module), `orch sites check` with the blueprint, deploy, status, logs, results; then
    undeploy removes all it put in the site's work folder, and the results here stay."""
    blueprint = copy_blueprint(orch)
    scratch = shared_dir / "scratch"
    scratch.mkdir(mode=0o777)
    scratch.chmod(0o777)
    write_sites(orch, slurm_site, credential, compss_bin, apptainer.parent,
                modules=["COMPSs/3.3"], work_dir="$SCRATCH/orch-work",
                container_runtime="apptainer", environment={"SCRATCH": str(scratch)})  # fmt: skip
    work = f"{scratch}/orch-work"
    orch("sites", "check", "hpc1", "--blueprint", BLUEPRINT)
    orch("deploy", BLUEPRINT, "-i", "site=hpc1", "--poll-interval", "0.5", timeout=300)
    assert "wordcount/0" in orch("status", "eflows4hpc-minimal").stdout
    assert "counted 15 words in 2 files" in orch("logs", "eflows4hpc-minimal").stdout
    results = blueprint.parent / "results" / "counts.txt"
    assert results.read_text().splitlines()[:3] == ["the 4", "dog 2", "fox 2"]
    deployed = remote_files(slurm_site, work)
    assert f"{work}/eflows4hpc-minimal/wordcount/results/counts.txt" in deployed
    assert any(f.startswith(f"{work}/images/wordcount-") for f in deployed)

    undeploy = orch("undeploy", "eflows4hpc-minimal")
    assert remote_files(slurm_site, work) == [], undeploy.stderr
    assert results.is_file()  # the results on this machine are the user's


def test_undeploy_removes_only_orchs_files_from_a_jobs_own_workdir(
    orch: Orch, slurm_site: SlurmSite, credential: str, shared_dir: Path
) -> None:
    """remove_on_undeploy with a workdir of the node's own: the batch script, the job's output
    and exit status go; the folder and the user's files in it stay."""
    folder = shared_dir / "mine"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    (folder / "notes.txt").write_text("the user's\n")
    (folder / "notes.txt").chmod(0o666)
    write_sites(orch, slurm_site, credential)
    orch.write("bp.yaml", f"""
        tosca_definitions_version: tosca_simple_yaml_1_3
        imports: [orch-hpc:1.0.0]
        topology_template:
          node_templates:
            login: {{type: orch.nodes.Site, properties: {{site: hpc1}}}}
            sim:
              type: orch.nodes.SlurmJob
              properties: {{command: "echo done > out.txt", workdir: {folder},
                           remove_on_undeploy: true}}
              requirements: [{{host: login}}]
        """)  # fmt: skip
    orch("deploy", "bp.yaml", "--poll-interval", "0.5", timeout=120)
    written = {p.name for p in folder.iterdir()}
    assert {"sim.sbatch", "out.txt", "notes.txt"} <= written
    assert any(n.startswith("sim-") and n.endswith(".out") for n in written)
    orch("undeploy", "bp")
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "out.txt"]
