"""The executor contract, checked the same way for every executor: each test method of
``ExecutorConformance`` is one point of it, run through the real CLI (``orch deploy``, ``orch
cancel``, ``kill -9``) against the real sites of ``tests/sites``. An executor's test module
subclasses it and says what differs in a few hooks (the blueprints, the site, what "still
running" means there); a point that does not apply is overridden with the executor's
documented alternative, never silently dropped.

The points:

1. success: the operation succeeds and its outputs and attributes are recorded;
2. failure: a failing operation fails the deploy (exit 4), and both the message and the record
   (``orch status -f json``) name the node, the operation, the host, the exit status, and carry
   the last lines of its output;
3. timeout: an operation over its timeout ends as ``timeout`` in time, and nothing of it is left
   running;
4. cancel: a cancel (SIGINT twice, or ``orch cancel``) stops it, orch exits 130, and nothing of
   it is left running (for jobs: the scheduler's job is gone);
5. re-attach: orch killed with ``kill -9`` mid-operation, then the same command again finishes
   the work without running it twice at once (jobs: the same job is watched again, never
   submitted twice);
6. secrets: a sensitive input the operation prints is in no output of orch, no log, no
   outputs, and no file of the state folder;
7. records: the engine's folder of the operation (``<state>/deployments/<name>/runs/<op id>/``
   with ``stdout``, ``stderr``, ``rc``, ``status``, ``task.json``) tells what happened.

Blueprint kinds a subclass writes (``blueprint(h, kind)``):

- ``ok``: succeeds, with outputs whose expected values ``expected_outputs`` gives;
- ``fail``: the node ``failing.node`` fails its ``failing.operation`` with exit status
  ``failing.rc`` after printing ``LAST_LINE`` as (or in) its last line;
- ``slow``: an operation that records that it started (``started(h)``) and then runs until
  ``release(h)`` (or long enough for the test to interrupt it);
- ``timeout``: ``slow`` with a timeout: its own TOSCA ``timeout``, or the ``slow`` blueprint
  itself deployed with ``timeout_args`` (``--timeout``);
- ``secret``: prints the sensitive input ``secret`` (``-i secret=...``) and puts it in an
  output.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sites.cli import Orch, wait_until
from sites.hpc import authorize as authorize  # used by the subclasses too

LAST_LINE = "conformance: the last line before the failure"
SECRET = "Conformance-Secret-7f3a9c"
NAME = "conf"
BLUEPRINT = "bp.yaml"
RUN_FILES = ("stdout", "stderr", "rc", "status", "task.json")


@dataclass
class Failing:
    """What the ``fail`` blueprint's failure must say."""

    node: str
    operation: str
    """As orch names it: ``Standard.create``, ``tosca.interfaces.node.lifecycle.Runnable.run``..."""
    rc: int | None = 3
    """The exit status shown and recorded; None for operations without one (transfers)."""
    rc_text: str | None = None
    """How the message says the exit status (default ``exit status <rc>``)."""


@dataclass
class Harness:
    """One test's orch: its folder, the site fixture, and the commands of the contract."""

    orch: Orch
    site: Any
    scratch: Path
    """A folder every user of the test sites can write (markers, go files)."""
    deploy_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    name: str = NAME
    data: dict[str, Any] = field(default_factory=dict)
    """Whatever a subclass keeps between its hooks (job ids, paths...)."""

    @property
    def root(self) -> Path:
        return self.orch.root

    @property
    def state(self) -> Path:
        return self.orch.root / ".orch"

    def write(self, text: str, name: str = BLUEPRINT) -> Path:
        return self.orch.write(name, text)

    def __call__(self, *args: str, check: int | None = 0, timeout: float = 120
                 ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return self.orch(*args, check=check, timeout=timeout, **self.env)

    def deploy(self, *args: str, check: int | None = 0, timeout: float = 120
               ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return self("deploy", BLUEPRINT, "-n", self.name, *self.deploy_args, *args,
                    check=check, timeout=timeout)  # fmt: skip

    def start(self, *args: str) -> subprocess.Popen[str]:
        return self.orch.start("deploy", BLUEPRINT, "-n", self.name, *self.deploy_args, *args,
                               **self.env)  # fmt: skip

    def status(self) -> dict[str, Any]:
        return json.loads(self("status", self.name, "-f", "json").stdout)

    def instance(self, node: str) -> dict[str, Any]:
        [found] = [i for i in self.status()["instances"] if i["node"] == node]
        return found

    def attributes(self, node: str) -> dict[str, Any]:
        return self.instance(node)["attributes"]

    def outputs(self) -> dict[str, Any]:
        return json.loads(self("outputs", self.name, "-f", "json").stdout)

    def logs(self) -> str:
        return self("logs", self.name).stdout

    def state_files(self) -> Iterator[Path]:
        for path in self.state.rglob("*"):
            if path.is_file():
                yield path

    def runs(self) -> list[Path]:
        """The operations' record folders, oldest first."""
        folder = self.state / "deployments" / self.name / "runs"
        if not folder.is_dir():
            return []
        return sorted((p for p in folder.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Whatever is left of a background orch: killed, its output read."""
    if proc.poll() is None:
        proc.kill()
    out, err = proc.communicate(timeout=30)
    return out, err


class ExecutorConformance:
    """The contract's points; subclasses give the hooks below (``Test...`` classes)."""

    failing: Failing
    expected_outputs: dict[str, Any] = {}
    """Outputs of the ``ok`` blueprint (``orch outputs``) and their values."""
    timeout_args: tuple[str, ...] = ("--timeout", "1.5")
    """How the ``timeout`` blueprint is deployed (nothing when it sets its own timeout)."""
    timeout_within: float = 20.0
    """Seconds the timed-out deploy may take in all (start-up and clean-up included)."""
    start_within: float = 60.0
    settle_within: float = 20.0
    """Seconds what a stopped operation leaves may take to end before it counts as left."""
    tail_window: int = 1
    """Among how many last lines of the failure's tail ``LAST_LINE`` must be (a builder's
    own error line may follow the step's output)."""
    reattach_kind: str = "slow"
    """The blueprint the re-attach test kills orch in (one that ends soon without
    ``release``, for executors whose operations cannot be released)."""
    cancel_by_command: bool = False
    """Cancel with ``orch cancel NAME`` (jobs) instead of SIGINT twice to orch."""

    # ------------------------------------------------------------------ hooks
    @pytest.fixture
    def site(self) -> Any:
        """The site the blueprints run on (a fixture; None: orch's own machine)."""
        return None

    @pytest.fixture
    def h(self, orch: Orch, site: Any, shared_dir: Path) -> Iterator[Harness]:
        harness = Harness(orch, site, shared_dir)
        self.setup(harness)
        yield harness
        self.cleanup(harness)

    def cleanup(self, h: Harness) -> None:
        """After each test, passed or not: what it started must not outlive it (a slow
        operation an executor failed to stop is released, and given a moment to end)."""
        self.release(h)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if not self.leftovers(h):
                    return
            except Exception:  # the site may be what failed
                return
            time.sleep(0.2)

    def setup(self, h: Harness) -> None:
        """Write sites.yaml, scripts, data... (before any blueprint)."""

    def blueprint(self, h: Harness, kind: str) -> str:
        """The blueprint text of ``kind``: ok, fail, slow, timeout or secret."""
        raise NotImplementedError

    def host(self, h: Harness) -> str:
        """How orch names the host the operations run on (``Host.describe()``)."""
        return "localhost"

    def check_ok(self, h: Harness) -> None:
        """Further checks after the ``ok`` deploy (attributes, files on the site...)."""

    def check_timed_out(self, h: Harness) -> None:
        """Further checks after the ``timeout`` deploy (e.g. that the operation had really
        started when its time was up: else nothing was there to stop)."""

    def check_failure(self, h: Harness, err: str, record: dict[str, Any]) -> None:
        """Further checks of the ``fail`` deploy's message and record."""

    def started(self, h: Harness) -> bool:
        """Whether the ``slow`` operation has started (and is running now)."""
        raise NotImplementedError

    def leftovers(self, h: Harness) -> list[str]:
        """What of the ``slow`` operation still runs (processes, jobs...); [] when nothing."""
        raise NotImplementedError

    def release(self, h: Harness) -> None:
        """Let the ``slow`` operation end on its own."""

    def secret_reached(self, h: Harness) -> None:
        """Check that the ``secret`` operation did get the secret (else masking is moot)."""

    def check_reattached(self, h: Harness, err: str) -> None:
        """After kill -9 and the same command again (``err``: its output): the work was
        finished, never by two copies at once."""
        raise NotImplementedError

    def while_resumed(self, h: Harness, resumed: subprocess.Popen[str]) -> None:
        """The same command again runs, the killed orch's operation not released yet."""
        time.sleep(1.0)

    def before_kill(self, h: Harness) -> None:
        """Called with the ``slow`` operation running, just before orch is killed."""

    def cancel(self, h: Harness, proc: subprocess.Popen[str]) -> None:
        if self.cancel_by_command:
            h("cancel", h.name, timeout=90)
            return
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)  # the second interrupt cancels what runs

    # ------------------------------------------------------------------ helpers
    def start_slow(self, h: Harness, *args: str, kind: str = "slow") -> subprocess.Popen[str]:
        h.write(self.blueprint(h, kind))
        proc = h.start(*args)

        def going() -> bool:
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"orch ended (exit {proc.returncode}) before the slow "
                                     f"operation started:\n{out}\n{err}")  # fmt: skip
            return self.started(h)

        try:
            wait_until(going, "the slow operation to start", timeout=self.start_within,
                       every=0.1)  # fmt: skip
        except BaseException:
            stop(proc)
            raise
        return proc

    def assert_nothing_left(self, h: Harness, within: float | None = None) -> None:
        within = self.settle_within if within is None else within
        left: list[str] = []

        def gone() -> bool:
            left[:] = self.leftovers(h)
            return not left

        try:
            wait_until(gone, "nothing of the operation left running", timeout=within, every=0.2)
        except AssertionError:
            raise AssertionError(f"still running: {left}") from None

    def failure_record(self, h: Harness, node: str) -> dict[str, Any]:
        failures = [f for f in h.status()["failures"] if f["node"] == node]
        assert failures, h.status()
        return failures[-1]

    # ------------------------------------------------------------------ 1. success
    def test_success_records_outputs_and_attributes(self, h: Harness) -> None:
        h.write(self.blueprint(h, "ok"))
        proc = h.deploy()
        assert "Traceback" not in proc.stderr
        assert h.status()["status"] == "deployed"
        assert not h.status()["failures"]
        outputs = h.outputs()
        for name, value in self.expected_outputs.items():
            assert outputs.get(name) == value, (name, outputs)
        self.check_ok(h)

    # ------------------------------------------------------------------ 2. failure
    def test_failure_names_node_operation_host_status_and_tail(self, h: Harness) -> None:
        h.write(self.blueprint(h, "fail"))
        proc = h.deploy(check=4)
        err = proc.stderr
        failing = self.failing
        host = self.host(h)
        assert "Traceback" not in err + proc.stdout
        headline = [
            line
            for line in err.splitlines()
            if line.startswith("orch: ") and f" {failing.operation} failed on " in line
        ]
        assert headline, err
        line = headline[0]
        assert f"{failing.node}/0 {failing.operation} failed on {host}" in line, err
        if failing.rc is not None:
            assert (failing.rc_text or f"exit status {failing.rc}") in err, err
        assert LAST_LINE in err, err
        record = self.failure_record(h, failing.node)
        assert record["operation"] == failing.operation, record
        assert record["host"] == host, record
        assert record["status"] == "failed", record
        assert record["rc"] == failing.rc, record
        assert any(LAST_LINE in line for line in record["tail"][-self.tail_window :]), record
        assert h.status()["status"] == "failed"
        self.check_failure(h, err, record)

    # ------------------------------------------------------------------ 3. timeout
    def test_timeout_ends_the_operation_as_timeout(self, h: Harness) -> None:
        h.write(self.blueprint(h, "timeout"))
        started = time.monotonic()
        proc = h.deploy(*self.timeout_args, check=4, timeout=self.timeout_within + 60)
        elapsed = time.monotonic() - started
        assert elapsed < self.timeout_within, f"{elapsed:.1f} s\n{proc.stderr}"
        assert "Traceback" not in proc.stderr
        timed_out = [f for f in h.status()["failures"] if f["status"] == "timeout"]
        assert timed_out, h.status()["failures"]
        assert "timed out" in timed_out[0]["message"], timed_out
        self.check_timed_out(h)
        self.assert_nothing_left(h)

    # ------------------------------------------------------------------ 4. cancel
    def test_cancel_stops_it_and_leaves_nothing_running(self, h: Harness) -> None:
        proc = self.start_slow(h)
        try:
            self.cancel(h, proc)
            code = proc.wait(60)
        finally:
            out, err = stop(proc)
        assert code == 130, f"exit {code}\n{out}\n{err}"
        assert "Traceback" not in err
        self.assert_nothing_left(h)
        assert h.status()["status"] == "interrupted", h.status()

    # ------------------------------------------------------------------ 5. re-attach
    def test_reattach_after_kill_9_finishes_without_running_twice(self, h: Harness) -> None:
        proc = self.start_slow(h, kind=self.reattach_kind)
        try:
            self.before_kill(h)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            stop(proc)
        resumed = h.start()
        try:
            self.while_resumed(h, resumed)
            self.release(h)
            out, err = resumed.communicate(timeout=180)
        finally:
            stop(resumed)
        assert resumed.returncode == 0, f"exit {resumed.returncode}\n{out}\n{err}"
        assert "Traceback" not in err
        assert h.status()["status"] == "deployed", err
        self.check_reattached(h, err)
        self.assert_nothing_left(h)

    # ------------------------------------------------------------------ 6. secrets
    def test_secrets_are_masked_everywhere(self, h: Harness) -> None:
        h.write(self.blueprint(h, "secret"))
        proc = h.deploy("-i", f"secret={SECRET}")
        self.secret_reached(h)
        shown = {
            "deploy's output": proc.stdout + proc.stderr,
            "orch logs": h.logs(),
            "orch outputs": h("outputs", h.name, "-f", "json").stdout,
            "orch status": h("status", h.name, "-f", "json").stdout,
        }
        for where, text in shown.items():
            assert SECRET not in text, where
        assert "*****" in shown["orch logs"], "the operation printed no (masked) secret"
        for path in h.state_files():
            assert SECRET.encode() not in path.read_bytes(), path

    # ------------------------------------------------------------------ 7. records
    def test_the_operations_records_are_written(self, h: Harness) -> None:
        h.write(self.blueprint(h, "fail"))
        h.deploy(check=4)
        failing = self.failing
        folders = h.runs()
        assert folders, f"no {h.state}/deployments/{h.name}/runs/<op id>/"
        tasks = {}
        for folder in folders:
            missing = [n for n in RUN_FILES if not (folder / n).is_file()]
            assert not missing, (folder, missing)
            tasks[folder] = json.loads((folder / "task.json").read_text())
        [folder] = [
            f
            for f, t in tasks.items()
            if t.get("node") == failing.node
            and f"{t.get('interface')}.{t.get('operation')}" == failing.operation
        ]
        task = tasks[folder]
        assert task["host"] == self.host(h), task
        assert (folder / "status").read_text().strip() == "failed"
        rc = (folder / "rc").read_text().strip()
        assert rc == ("" if failing.rc is None else str(failing.rc))
        printed = (folder / "stdout").read_text() + (folder / "stderr").read_text()
        assert LAST_LINE in printed, printed
        for other, data in tasks.items():
            status = (other / "status").read_text().strip()
            assert status in ("ok", "failed", "timeout", "cancelled", "interrupted"), other
            assert data.get("status", status) == status, (other, data)


# ---------------------------------------------------------------------------- batch jobs
ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING")
"""Slurm's states of a job that is not over (squeue -o %T)."""


class BatchConformance(ExecutorConformance):
    """Batch jobs of a scheduler's site (an ``orch.nodes.Site`` of sites.yaml, reached over SSH
    as its unprivileged user with a credential token).

    A scheduler's subclass (Slurm here; SGE the same way) sets ``site_fixture`` (the fixture
    giving an object with ``.ssh``, the login node's SshServer, and ``.cluster``),
    ``scheduler`` (sites.yaml's), ``job_id_variable``, and overrides ``site_settings`` (its
    sites.yaml entry's other settings: partition, environment), ``active_jobs`` (which of some
    jobs are not over), ``known_jobs`` (every job it has had, ended ones included: nothing may
    be submitted twice), ``time_limit``/``expected_limit`` (the ``timeout`` job's limit as it
    shows it) and, when its words differ, ``failing.rc_text``. A job type's subclass
    (PyCOMPSs) overrides ``job`` (the node's properties for each kind).

    Jobs are watched, not run: the failing operation is the watch (``Runnable.run``, which orch
    names by its interface type ``tosca.interfaces.node.lifecycle.Runnable``) that finds the
    job ended badly; cancel is ``orch cancel`` (SIGINT leaves jobs running, by design); a
    resumed deploy must watch the job the killed orch submitted."""

    site_fixture = "slurm_site"
    scheduler = "slurm"
    job_id_variable = "SLURM_JOB_ID"
    """The variable that holds the job's id inside the job."""
    job_type = "orch.nodes.SlurmJob"
    failing = Failing(
        "broken", "tosca.interfaces.node.lifecycle.Runnable.run", rc=3, rc_text="exit code 3"
    )
    expected_outputs = {"job_status": "COMPLETED", "exit_code": 0}
    cancel_by_command = True
    start_within = 90.0

    @pytest.fixture
    def site(self, orch: Orch, request: pytest.FixtureRequest) -> Iterator[Any]:
        site = request.getfixturevalue(self.site_fixture)
        for token in authorize(orch, site.ssh):
            settings = {"host": "127.0.0.1", "port": site.ssh.port,
                        "user": site.ssh.unprivileged_user, "credentials": token,
                        "known_hosts": str(site.ssh.known_hosts), "scheduler": self.scheduler,
                        **self.site_settings(site, request)}  # fmt: skip
            orch.write("sites.yaml", f"sites:\n  hpc1: {json.dumps(settings)}\n")
            yield site

    def site_settings(self, site: Any, request: pytest.FixtureRequest) -> dict[str, Any]:
        """Further settings of the site's sites.yaml entry (partition, environment...)."""
        return {}

    def setup(self, h: Harness) -> None:
        h.deploy_args = ["--poll-interval", "0.3"]
        h.data["before"] = self.known_jobs(h)

    # -- the scheduler
    def active_jobs(self, h: Harness, ids: list[str]) -> list[str]:
        """Those of the jobs ``ids`` that are not over, as 'id STATE'."""
        if not ids:
            return []
        out = h.site.cluster.run("squeue", "-h", "-t", "all", "-j", ",".join(ids),
                                 "-o", "%A %T").stdout  # fmt: skip
        return [line for line in out.splitlines() if line.split()[-1] in ACTIVE]

    def known_jobs(self, h: Harness) -> set[str]:
        """Every job the scheduler knows now, ended ones included."""
        out = h.site.cluster.run("squeue", "-h", "-t", "all", "-o", "%A").stdout
        return set(out.split())

    # -- the blueprints
    def job(self, h: Harness, kind: str) -> str:
        """The job's ``properties`` (YAML, indented by 6) for ``kind``."""
        scratch = h.scratch
        bodies = {
            "ok": 'echo "hello from the job"',
            "fail": f'echo "first line"\necho "{LAST_LINE}" >&2\nexit 3',
            "slow": f"touch {scratch}/started.${self.job_id_variable}\n"
                    f'while [ ! -f {scratch}/go ]; do sleep 0.2; done\necho done',
            "secret": f'echo "the token is $TOKEN"\necho "$TOKEN" > {scratch}/seen',
        }  # fmt: skip
        body = bodies["slow" if kind == "timeout" else kind]
        script = "".join(f"          {line}\n" for line in body.splitlines())
        extra = ""
        if kind == "secret":
            extra = "        environment: {TOKEN: {get_input: secret}}\n"
        if kind == "timeout":
            extra = "        time: 1 m\n"
        return f"        script: |\n{script}{extra}"

    def blueprint(self, h: Harness, kind: str) -> str:
        name = {"ok": "hello", "fail": "broken", "secret": "hello"}.get(kind, "slow")
        outputs = ""
        if kind == "ok":
            outputs = ("  outputs:\n"
                       "    job_status: {value: {get_attribute: [hello, job_status]}}\n"
                       "    exit_code: {value: {get_attribute: [hello, exit_code]}}\n")  # fmt: skip
        return (
            "tosca_definitions_version: tosca_simple_yaml_1_3\n"
            "imports: [orch-hpc:1.0.0]\n"
            "topology_template:\n"
            "  inputs:\n"
            "    secret: {type: string, default: none-given, metadata: {sensitive: true}}\n"
            "  node_templates:\n"
            "    login:\n"
            "      type: orch.nodes.Site\n"
            "      properties: {site: hpc1}\n"
            f"    {name}:\n"
            f"      type: {self.job_type}\n"
            "      requirements: [{host: login}]\n"
            "      properties:\n"
            f"{self.job(h, kind)}"
            f"{outputs}"
        )

    def host(self, h: Harness) -> str:
        return f"{h.site.ssh.unprivileged_user}@127.0.0.1:{h.site.ssh.port}"

    # -- the contract's hooks
    def job_id(self, h: Harness, node: str = "slow") -> str | None:
        proc = h("status", h.name, "-f", "json", check=None)
        if proc.returncode != 0:
            return None
        for instance in json.loads(proc.stdout)["instances"]:
            if instance["node"] == node and instance["attributes"].get("job_id"):
                return str(instance["attributes"]["job_id"])
        return None

    def started(self, h: Harness) -> bool:
        if not list(h.scratch.glob("started.*")):
            return False
        job_id = self.job_id(h)
        if job_id is None:
            return False
        h.data.setdefault("jobs", set()).add(job_id)
        return True

    def leftovers(self, h: Harness) -> list[str]:
        ids = set(h.data.get("jobs", set()))
        ids |= self.known_jobs(h) - h.data["before"]
        return self.active_jobs(h, sorted(ids))

    def release(self, h: Harness) -> None:
        (h.scratch / "go").touch()

    def before_kill(self, h: Harness) -> None:
        h.data["job"] = self.job_id(h)

    def check_ok(self, h: Harness) -> None:
        attributes = h.attributes("hello")
        assert attributes["job_status"] == "COMPLETED" and attributes["exit_code"] == 0
        assert attributes["job_id"] in self.known_jobs(h) - h.data["before"]
        assert "hello from the job" in h.logs()

    def check_reattached(self, h: Harness, err: str) -> None:
        job = h.data["job"]
        assert job and self.job_id(h) == job  # the same job, watched again...
        assert self.known_jobs(h) - h.data["before"] == {job}  # ...never submitted again
        assert h.attributes("slow")["job_status"] == "COMPLETED"
        assert [p.name for p in h.scratch.glob("started.*")] == [f"started.{job}"]

    def secret_reached(self, h: Harness) -> None:
        assert (h.scratch / "seen").read_text().strip() == SECRET

    def time_limit(self, h: Harness, job_id: str) -> str:
        """The scheduler's time limit of a running job, as it prints it."""
        return h.site.cluster.run("squeue", "-h", "-j", job_id, "-o", "%l").stdout.strip()

    expected_limit = "1:00"
    """``time_limit`` of the ``timeout`` job (its ``time: 1 m``)."""

    def test_timeout_ends_the_operation_as_timeout(self, h: Harness) -> None:
        """Not applicable as such: a batch job's time limit is the scheduler's (the job's
        ``time``, sbatch --time), and the scheduler ends a job over it (TIMEOUT, reported as a
        failure like FAILED). orch's operation timeout bounds each command orch runs at the
        login node (sbatch, the status polls), never the job: a job that outlives it goes on
        and is watched to its end. (Slurm's shortest limit is a minute, checked every 30 s: a
        job actually ended TIMEOUT costs 90 s, too long for this set.)"""
        proc = self.start_slow(h, "--timeout", "1.5", kind="timeout")
        try:
            job_id = self.job_id(h)
            assert job_id is not None
            assert self.time_limit(h, job_id) == self.expected_limit
            time.sleep(2.5)  # orch's timeout is long past
            assert proc.poll() is None, stop(proc)
            assert self.active_jobs(h, [job_id]), "the job was ended by orch's timeout"
            self.release(h)
            out, err = proc.communicate(timeout=90)
        finally:
            stop(proc)
        assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
        assert h.attributes("slow")["job_status"] == "COMPLETED"
        self.assert_nothing_left(h)
