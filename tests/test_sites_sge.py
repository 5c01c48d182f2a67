"""`orch sites check` on a Son of Grid Engine site (``scheduler: sge``), for real: the loopback
SGE site of tests/sites/sge.py (queue all.q, parallel environment mpi) behind its sshd, reached
as its unprivileged user with a credential token. SGE's version, queues and parallel
environments are probed in the same round trip as the rest; a job's partition is a queue, a job
of more than one slot needs the site's parallel environment, and qos is something SGE cannot
honour."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from orch.sites.check import Probe, SiteReport, judge
from orch.sites.config import Site, load_sites
from orch.sites.needs import blueprint_needs
from sites.cli import Orch
from sites.hpc import HpcSite

BLUEPRINT = "bp.yaml"


def write_sites(orch: Orch, site: HpcSite, token: str, **settings: object) -> None:
    orch.write("sites.yaml", "sites:\n" + site.yaml(token, "hpc1", **settings))


def write_blueprint(orch: Orch, job: str) -> Path:
    """A blueprint with one batch job on hpc1; ``job`` is its properties, one per line."""
    properties = "".join(f"        {line}\n" for line in job.strip().splitlines())
    return orch.write(BLUEPRINT, (
        "tosca_definitions_version: tosca_simple_yaml_1_3\n"
        "imports: [orch-hpc:1.0.0]\n"
        "topology_template:\n"
        "  node_templates:\n"
        "    login:\n"
        "      type: orch.nodes.Site\n"
        "      properties: {site: hpc1}\n"
        "    sim:\n"
        "      type: orch.nodes.SlurmJob\n"
        "      requirements: [{host: login}]\n"
        "      properties:\n"
        "        script: echo hello\n"
        f"{properties}"
    ))  # fmt: skip


def check(orch: Orch, *args: str, code: int) -> dict:
    proc = orch("sites", "check", *args, "-f", "json", check=code)
    [report] = json.loads(proc.stdout)["sites"]
    return report


def by_check(report: dict) -> dict[str, dict]:
    return {f["check"]: f for f in report["findings"]}


def sge_version(site: HpcSite) -> str:
    return site.site.cluster.run("qstat", "-help").stdout.splitlines()[0].split()[-1]


def test_a_clean_sge_site(orch: Orch, sge_hpc_site: HpcSite, sge_credential: str) -> None:
    """SGE's version, queues and parallel environments as facts, SGE's commands found, the
    site's queue checked; exit 0. No Slurm probe on an SGE site."""
    write_sites(orch, sge_hpc_site, sge_credential)
    report = check(orch, "hpc1", code=0)
    assert report["status"] == "ok"
    sge = report["sge"]
    assert sge == {"version": sge_version(sge_hpc_site), "queues": ["all.q"],
                   "parallel_environments": ["mpi"]}  # fmt: skip
    assert "slurm" not in report
    found = by_check(report)
    assert found["sge"] == {"level": "ok", "check": "sge", "message": f"SGE {sge['version']}"}
    assert found["queues"]["message"] == "all.q"
    assert found["parallel_environments"]["message"] == "mpi"
    assert found["partition"] == {"level": "ok", "check": "partition",
                                  "message": "queue 'all.q' exists"}  # fmt: skip
    assert found["parallel_environment"]["level"] == "ok"
    assert found["commands"]["message"] == "found: qsub, qstat, qdel"
    assert "qacct" not in found  # it is there
    assert all(f["level"] != "missing" for f in report["findings"])

    text = orch("sites", "check", "hpc1").stdout
    assert f"SGE {sge['version']}" in text and "queue 'all.q' exists" in text
    assert text.rstrip().endswith("hpc1: ok")

    # a blueprint's job on the SGE site: scheduler sge is fine, SGE's commands are looked up
    write_blueprint(orch, "tasks: 2")
    report = check(orch, "--blueprint", BLUEPRINT, code=0)
    found = by_check(report)
    assert report["nodes"] == ["sim"]
    assert "scheduler" not in found
    assert found["commands"]["message"] == "found: qsub, qstat, qdel, qacct"
    assert found["parallel_environment"]["message"] == "parallel environment 'mpi' exists (for sim)"
    assert found["partition"]["nodes"] == ["sim"]


def test_a_missing_parallel_environment(orch: Orch, sge_hpc_site: HpcSite, sge_credential: str
                                        ) -> None:  # fmt: skip
    """A job of 4 slots on a site whose parallel_environment does not exist: missing, naming
    the PE and the ones there are; a job of one slot needs none."""
    write_sites(orch, sge_hpc_site, sge_credential, parallel_environment="nope")
    write_blueprint(orch, "tasks: 4")
    report = check(orch, "--blueprint", BLUEPRINT, code=4)
    pe = by_check(report)["parallel_environment"]
    assert pe["level"] == "missing" and pe["nodes"] == ["sim"]
    assert pe["message"] == ("parallel environment 'nope' does not exist (parallel "
                             "environments: mpi) (needed by sim: runs 4 slots)")  # fmt: skip
    assert "mpi" in pe["hint"]

    write_blueprint(orch, "tasks: 1\ncpus_per_task: 1")
    report = check(orch, "--blueprint", BLUEPRINT, code=0)
    assert "parallel_environment" not in by_check(report)

    # without a blueprint, the site's own parallel_environment is what jobs would use
    report = check(orch, "hpc1", code=4)
    assert by_check(report)["parallel_environment"]["level"] == "missing"


def test_qos_on_an_sge_site(orch: Orch, sge_hpc_site: HpcSite, sge_credential: str) -> None:
    """qos, a job's or the site's, is something SGE cannot honour: reported, naming the site."""
    write_sites(orch, sge_hpc_site, sge_credential)
    write_blueprint(orch, "qos: high")
    report = check(orch, "--blueprint", BLUEPRINT, code=4)
    qos = by_check(report)["qos"]
    assert qos["level"] == "missing" and qos["nodes"] == ["sim"]
    assert qos["message"] == ("site hpc1 runs SGE, which cannot honour qos 'high' "
                              "(needed by sim: asks qos 'high')")  # fmt: skip
    assert "SGE has no QoS" in qos["hint"]

    write_sites(orch, sge_hpc_site, sge_credential, qos="normal")
    write_blueprint(orch, "tasks: 1")
    report = check(orch, "--blueprint", BLUEPRINT, code=4)
    assert by_check(report)["qos"]["message"].startswith(
        "site hpc1 runs SGE, which cannot honour qos 'normal'")
    report = check(orch, "hpc1", code=4)
    assert by_check(report)["qos"]["message"] == (
        "site hpc1 runs SGE, which cannot honour qos 'normal' (sites.yaml)")


def test_a_partition_that_is_no_queue(orch: Orch, sge_hpc_site: HpcSite, sge_credential: str
                                      ) -> None:  # fmt: skip
    write_sites(orch, sge_hpc_site, sge_credential, partition="nosuchq")
    report = check(orch, "hpc1", code=4)
    partition = by_check(report)["partition"]
    assert partition["level"] == "missing"
    assert partition["message"] == "partition 'nosuchq': no SGE queue 'nosuchq' (queues: all.q)"
    write_blueprint(orch, "partition: all.q@localhost")  # the job's queue wins over the site's
    report = check(orch, "--blueprint", BLUEPRINT, code=0)
    assert by_check(report)["partition"]["message"] == "queue 'all.q@localhost' exists (for sim)"


def test_sge_commands_missing(orch: Orch, sge_hpc_site: HpcSite, sge_credential: str,
                              shared_dir: Path) -> None:  # fmt: skip
    """A PATH with the basic tools but not SGE's clients: qstat not found, with the PATH hint;
    the job's commands missing, qacct only worth an info."""
    bin_dir = shared_dir / "bin"
    bin_dir.mkdir()
    for tool in ("base64", "setsid", "hostname", "id", "uname", "sed", "awk", "dirname", "tail",
                 "head", "df", "timeout", "cat"):  # fmt: skip
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    write_sites(orch, sge_hpc_site, sge_credential, environment={"PATH": str(bin_dir)})
    write_blueprint(orch, "tasks: 1")
    report = check(orch, "--blueprint", BLUEPRINT, code=4)
    found = by_check(report)
    assert found["sge"]["level"] == "missing" and "qstat not found" in found["sge"]["message"]
    assert str(bin_dir) in found["sge"]["hint"]
    for command in ("qsub", "qstat", "qdel"):
        assert found[command]["level"] == "missing", command
        assert "SGE's bin folder on PATH" in found[command]["hint"]
    assert found["qacct"]["level"] == "info"


# -- the needs and the judging, without a site ---------------------------------------------------


def test_needs_follow_the_site_scheduler(orch: Orch) -> None:
    """Slurm's commands on a Slurm site, SGE's on an SGE site, none on a site without a
    scheduler (which is reported, naming both)."""
    from orch.deployments import prepare

    orch.write("sites.yaml", "sites:\n  hpc1: {host: login, scheduler: sge}\n"
               "  hpc2: {host: login}\n  hpc3: {host: login, scheduler: none}\n")  # fmt: skip
    path = write_blueprint(orch, "tasks: 2\ncpus_per_task: 2\nlauncher: auto\nnodes: 2")
    book = load_sites(orch.root / "sites.yaml")
    commands = {}
    for name in ("hpc1", "hpc2", "hpc3"):
        other = orch.write(f"{name}.yaml", path.read_text().replace("site: hpc1", f"site: {name}"))
        prepared = prepare(str(other), [])
        needs = blueprint_needs(name, prepared.model, prepared.inputs, book).sites[name]
        commands[name] = needs.plain_commands()
        if name == "hpc1":
            assert list(needs.of("parallel_environment")) == ["mpi"]
            assert set(needs.of("unsupported")) == {"nodes"}
        if name == "hpc3":
            report = SiteReport(book.get(name), needs=needs)
            judge(report, {"path": Probe("/bin", 0), "work_dir": Probe("path=/tmp\nexisting=/tmp"
                                                                       "\nwritable=yes", 0)})
            [scheduler] = [f for f in report.findings if f.check == "scheduler"]
            assert scheduler.level == "missing" and "scheduler: slurm, sge or pbs" in (
                scheduler.hint or "")
    assert commands["hpc1"][:4] == ["qsub", "qstat", "qdel", "qacct"]
    assert "mpirun" in commands["hpc1"] and "srun" not in commands["hpc1"]
    assert commands["hpc2"][:5] == ["sbatch", "squeue", "scancel", "sacct", "srun"]
    assert not {"sbatch", "qsub"} & set(commands["hpc3"])


def test_judging_an_sge_site_whose_qmaster_is_down() -> None:
    site = Site("hpc", "login", scheduler="sge")
    report = SiteReport(site)
    judge(report, {
        "path": Probe("/usr/bin", 0), "qstat": Probe("/usr/bin/qstat", 0),
        "sge_version": Probe("SGE 8.1.9", 0),
        "queues": Probe("error: commlib error: got select error (Connection refused)\n"
                        "unable to contact qmaster using port 6444 on host \"login\"", 1),
        "pes": Probe("", 1), "work_dir": Probe("path=/tmp\nexisting=/tmp\nwritable=yes", 0),
    })  # fmt: skip
    found = {f.check: f for f in report.findings}
    assert found["sge"].level == "missing" and "qconf -sql fails" in found["sge"].message
    assert "sge_qmaster" in (found["sge"].hint or "")
    assert report.facts["sge"]["version"] == "8.1.9"
    empty = SiteReport(site)
    judge(empty, {
        "path": Probe("/usr/bin", 0), "qstat": Probe("/usr/bin/qstat", 0),
        "sge_version": Probe("SGE 8.1.9", 0), "queues": Probe("all.q", 0),
        "pes": Probe("no parallel environment defined", 1),
        "work_dir": Probe("path=/tmp\nexisting=/tmp\nwritable=yes", 0),
    })  # fmt: skip
    assert empty.facts["sge"]["parallel_environments"] == []
    pe = next(f for f in empty.findings if f.check == "parallel_environment")
    assert pe.level == "warning" and "'mpi' (the default) does not exist" in pe.message
