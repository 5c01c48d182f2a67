"""Jobs that run as steps of a held Slurm allocation (``orch.nodes.SlurmAllocation``): a job
hosted on an allocation is started with ``srun --jobid=ALLOCATION`` from the login node instead
of being queued with sbatch, so it starts in seconds and runs again without queueing.

The step is launched in the background on the login node (its srun lives as long as the step)
and the submit returns once Slurm has created the step: the step's first task writes its step
id to a token file, which the submit reads and prints as ``ORCH-STEP A.S``. When srun ends,
the background shell writes srun's exit status to the step's exit file
(``<node>-A.S.exit``), as the batch script's EXIT trap does for a batch job, so the watch reads
a step's end the same way. The step's id ``A.S`` is the job id orch records.

Steps are watched with one command per site and round: ``squeue --steps`` for the steps that
run, the allocations' own states, and for the steps that left, their exit files and output
tails. A step that left without an exit status while its allocation ended failed because the
allocation ended: its reason names the allocation's state (TIMEOUT, CANCELLED, NODE_FAIL...).
"""

from __future__ import annotations

import re
import shlex

from orch.executors.base import TAIL_LINES, Task
from orch.executors.batch_script import task_script
from orch.executors.job_settings import JobSettings
from orch.executors.jobstate import SLURM, SLURM_DOC, JobState, translate
from orch.executors.schedulers import (
    ENDPOINT_LINE,
    JobFiles,
    JobInfo,
    ScriptError,
    job_records,
    to_int,
)
from orch.executors.slurm_monitor import NEVER
from orch.executors.slurm_script import task_options
from orch.remote import quote_path

ALLOCATION_ATTRIBUTE = "allocation_id"
"""The attribute of an ``orch.nodes.SlurmAllocation`` that holds its Slurm job id: a job whose
host has it runs as a step of that allocation."""
STEP_FORM = re.compile(r"^(\d+)\.(\d+)$")
_SUBMITTED = re.compile(r"ORCH-STEP (\d+\.\d+)")
_ALLOCATION_ID = re.compile(r"^\d+$")
STEP_START_LIMIT = 600.0
"""Seconds a submit waits for Slurm to create its step (the allocation's other steps may hold
its resources), at most: the submit's own timeout, when shorter, wins."""


def allocation_of(task: Task) -> str | None:
    """The Slurm job id of the allocation hosting the task's job; None for a job that is not
    hosted on an allocation. ScriptError when the allocation holds nothing (not acquired, or
    released)."""
    host = task.related.get("host") or {}
    if ALLOCATION_ATTRIBUTE not in host:
        return None
    value = str(host.get(ALLOCATION_ATTRIBUTE) or "").strip()
    if not _ALLOCATION_ID.match(value):
        raise ScriptError(
            f"{task.node} runs in an allocation that holds no resources (allocation id "
            f"{value!r}): acquire it first (orch deploy)"
        )
    scheduler = getattr(task.site, "scheduler", None) or "slurm"
    if scheduler != "slurm":
        site = getattr(task.site, "name", task.host.name)
        raise ScriptError(
            f"{task.node} runs in a Slurm allocation, but site {site} runs {scheduler}: "
            "allocations are Slurm's (salloc); host the job on the site itself"
        )
    return value


def is_step(job_id: str) -> bool:
    """Whether a job id orch recorded is a step of an allocation (``A.S``)."""
    return bool(STEP_FORM.match(job_id))


def step_options(job: JobSettings) -> list[str]:
    """srun's options for the step: what it takes of the allocation's resources."""
    options = [f"--job-name={job.job_name}", *task_options(job)]
    if job.mpi:
        options.append(f"--mpi={job.mpi}")
    return [*options, *job.launcher_options, *job.extra_options]


def step_script(job: JobSettings) -> str:
    """The script each task of the step runs: it reports the step's id (first task only),
    then the environment, modules and the command, or the script body."""
    return task_script(job, "an allocation's step", [
        'orch_token="$1"; shift',
        'if [ "${SLURM_PROCID:-0}" = 0 ]; then',
        '  echo "$SLURM_STEP_ID" > "$orch_token.id"; echo "$SLURM_STEP_ID" > "$orch_token.step"',
        "fi",
    ])  # fmt: skip


def step_submission(job: JobSettings, files: JobFiles, allocation: str,
                    wait: float) -> str:  # fmt: skip
    """The command (run in the job's folder, the step script on stdin) that starts the step in
    the background and prints ``ORCH-STEP A.S`` once Slurm created it; srun's own message and
    a non-zero status when it could not."""
    script = quote_path(files.script)
    stem = shlex.quote(f"{files.stem}-")
    srun = " ".join([
        "srun", f"--jobid={allocation}", f"--chdir={quote_path(files.folder)}",
        f"--output={shlex.quote(files.stem)}-%j.%s.out",
        f"--error={shlex.quote(files.stem)}-%j.%s.err",
        *(shlex.quote(o) for o in step_options(job)), script, '"$0"',
    ])  # fmt: skip
    # the background shell: srun, then the step's exit status where the watch reads it
    background = (
        f'{srun} 2>"$0.log"; rc=$?; s=$(cat "$0.id" 2>/dev/null); '
        f'if [ -n "$s" ]; then echo "$rc" > {stem}{allocation}."$s".exit; '
        'rm -f "$0.id" "$0.log"; else echo "$rc" > "$0.rc"; fi'
    )
    rounds = max(1, int(wait / 0.2))
    # a subshell: its exits end it alone (the submit's record wrapper prints what it printed)
    return "(\n" + "\n".join([
        f"(umask 077 && rm -f -- {script} && cat > {script}) && chmod 700 {script} || exit 1",
        "find . -maxdepth 1 -name '.orch-step-*' -mmin +1440 -delete 2>/dev/null",
        't=".orch-step-$(date +%s)-$$"',
        f"setsid nohup sh -c {shlex.quote(background)} \"$t\" </dev/null >/dev/null 2>&1 &",
        "p=$!; n=0",
        f'while [ ! -s "$t.step" ] && [ ! -f "$t.rc" ] && [ "$n" -lt {rounds} ]; do',
        "  sleep 0.2; n=$((n + 1))",
        "done",
        f'if [ -s "$t.step" ]; then echo "ORCH-STEP {allocation}.$(cat "$t.step")"; '
        'rm -f "$t.step"; exit 0; fi',
        'if [ -f "$t.rc" ]; then cat "$t.log" >&2; rc=$(cat "$t.rc")',
        "  if grep -qiE 'expired|invalid job|already (completed|finished)|revoked' \"$t.log\"",
        "  then",
        "    e=$(grep -m 1 'error:' \"$t.log\" | sed 's/^.*error: //')",
        f'    echo "allocation {allocation} has ended${{e:+ ($e)}}: orch undeploy, then orch '
        'deploy, holds a new one" >&2',
        "  fi",
        '  rm -f "$t.rc" "$t.log"; exit "${rc:-1}"',
        "fi",
        'kill -- -"$p" 2>/dev/null; sleep 0.5; cat "$t.log" >&2 2>/dev/null; '
        'rm -f "$t.log" "$t.rc" "$t.id"',
        f'echo "allocation {allocation} had no room for the step in {wait:.0f} s (its other '
        'steps hold its resources, or it asks for more than the allocation has)" >&2',
        "exit 75",
    ]) + "\n)"  # fmt: skip


class SlurmStepScheduler:
    """Slurm's words for the steps of held allocations (the batch executor's ``Scheduler``)."""

    name = "slurm-steps"
    title = "Slurm"
    table: dict[str, JobState] = SLURM
    doc = SLURM_DOC
    script_suffix = ".step"
    accounting_lag = 10.0
    """A step gone from squeue gets its exit file a moment later (srun ends, then the shell
    writes it)."""
    prologue: tuple[str, ...] = ()
    job_id_variable = "SLURM_JOB_ID"

    def header(self, job: JobSettings, files: JobFiles) -> list[str]:
        return []

    def launcher(self, job: JobSettings) -> list[str]:
        return []  # the step starts the tasks

    def submit_command(self, script: str) -> str:
        raise ScriptError("a step is started with step_submission")

    def submitted_id(self, stdout: str) -> str | None:
        found = _SUBMITTED.search(stdout)
        return found.group(1) if found else None

    def find_command(self, execution: str) -> str:
        return ":"  # the submit's record (ORCH-STEP A.S) is what finds a step again

    def status_command(self, jobs: dict[str, JobFiles | None]) -> str:
        steps = [j for j in jobs if is_step(j)]
        allocations = sorted({j.split(".")[0] for j in steps}, key=int)
        return f"""S=$(squeue -h -s {",".join(steps) or "0.0"} -o '%i|%M|%N' 2>&1) || case "$S" in
  *"Invalid job id"*) S= ;;
  *) printf '%s\\n' "$S" >&2; exit 3 ;;
esac
printf '%s\\n' "$S" | sed -n 's/^/S /p'
squeue -h -t all -j {",".join(allocations) or "0"} -o '%i|%T|%r' 2>/dev/null | sed 's/^/J /'
W=$(printf '%s\\n' "$S" | awk -F'|' '{{printf " %s ", $1}}')
while IFS='|' read -r id out err ex; do
  {ENDPOINT_LINE}
  case "$W" in *" $id "*) continue;; esac
  [ -f "$ex" ] && echo "E $id $(cat "$ex")"
  tail -n {TAIL_LINES} "$out" 2>/dev/null | sed "s/^/O $id /"
  tail -n {TAIL_LINES} "$err" 2>/dev/null | sed "s/^/R $id /"
done <<'ORCH_JOBS'
{job_records(jobs)}
ORCH_JOBS
"""

    def parse_status(self, text: str, job_ids: list[str]) -> dict[str, JobInfo]:
        running: dict[str, JobInfo] = {}
        allocations: dict[str, str] = {}
        reasons: dict[str, str] = {}
        endpoints: dict[str, str] = {}
        exits: dict[str, int] = {}
        tails: dict[str, tuple[list[str], list[str]]] = {j: ([], []) for j in job_ids}
        for line in text.splitlines():
            kind, _, rest = line.partition(" ")
            row = rest.split("|")
            if kind == "S" and len(row) >= 3:
                running[row[0]] = JobInfo("RUNNING", None, row[1], row[2])
            elif kind == "J" and len(row) >= 2:
                allocations[row[0]] = row[1].split()[0] if row[1].split() else ""
                reasons[row[0]] = row[2].strip() if len(row) > 2 else ""
            elif kind == "H":
                job_id, _, endpoint = rest.partition(" ")
                endpoints[job_id] = endpoint.strip()
            elif kind == "E":
                job_id, _, code = rest.partition(" ")
                if (parsed := to_int(code)) is not None:
                    exits[job_id] = parsed
            elif kind in ("O", "R"):
                job_id, _, content = rest.partition(" ")
                if job_id in tails:
                    tails[job_id][0 if kind == "O" else 1].append(content)
        infos = {}
        for job_id in job_ids:
            info = running.get(job_id) or self._left(job_id, exits, allocations, reasons)
            info.stdout_tail, info.stderr_tail = tails[job_id]
            info.endpoint = endpoints.get(job_id, "")
            infos[job_id] = info
        return infos

    @staticmethod
    def _left(job_id: str, exits: dict[str, int], allocations: dict[str, str],
              reasons: dict[str, str] | None = None) -> JobInfo:  # fmt: skip
        """A step squeue does not list: its exit file, and its allocation's state (a job of
        co-scheduled steps may not have started yet)."""
        allocation = job_id.split(".")[0]
        state = allocations.get(allocation)
        alive = state is not None and not translate(SLURM, state).ended
        code = exits.get(job_id)
        if code is None and state == "PENDING":
            reason = (reasons or {}).get(allocation, "")
            return JobInfo("PENDING", reason=reason if reason in NEVER else "")
        if code is None and alive:
            return JobInfo("UNKNOWN", ended=True)  # the exit file comes a moment later
        if code == 0:
            return JobInfo("COMPLETED", 0, ended=True)
        info = JobInfo("FAILED", code, ended=True)
        if not alive:
            info.reason = (f"its allocation {allocation} ended ({state})" if state
                           else f"its allocation {allocation} is gone")  # fmt: skip
        return info

    def unavailable(self, stderr: str) -> bool:
        from orch.executors.slurm_scheduler import SLURM_SCHEDULER

        return SLURM_SCHEDULER.unavailable(stderr)

    def cancel_command(self, job_ids: list[str]) -> str:
        return "scancel " + " ".join(job_ids)

    def already_gone(self, stderr: str) -> bool:
        return "Invalid job id" in stderr or "does not exist" in stderr


SLURM_STEPS = SlurmStepScheduler()
