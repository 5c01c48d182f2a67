"""PBS Professional's (and OpenPBS's) words for the batch executor: ``#PBS`` lines, ``qsub``,
one ``qstat -f -F json -x`` per site and round (finished jobs included while the server keeps
their history; the exit file after that), ``qdel``.

How a job node's settings become PBS's requests:

- one ``select`` chunk per node (``nodes``, default 1), each with ``ncpus`` = tasks per node x
  ``cpus_per_task`` and ``mpiprocs`` = tasks per node (``tasks_per_node``, else ``tasks``
  spread over the nodes), and ``mem`` = ``memory`` (per node, as in Slurm);
- ``time`` is ``walltime``; ``partition`` is the queue (``-q``); ``reservation`` is its queue
  too (PBS names a reservation's queue R<id>); ``account`` is ``-A``; ``qos`` has no PBS
  meaning and is refused, as are ``launcher: srun``, ``mpi`` and sbatch-style
  ``extra_options``;
- a PBS job starts in the home: the script goes to ``$PBS_O_WORKDIR`` (the job's folder, where
  qsub ran) and writes its output to ``<node>-<job id>.out``/``.err`` there itself (PBS cannot
  name its own output files after the job id);
- the launcher ``auto`` is ``mpirun -np <tasks>`` (MPI libraries built for PBS read its node
  file).
"""

from __future__ import annotations

import json
import math
import re
import shlex
import time

from orch.executors.base import TAIL_LINES
from orch.executors.job_settings import JobSettings
from orch.executors.jobstate import JobState
from orch.executors.schedulers import (
    JobFiles,
    JobInfo,
    job_records,
    refuse,
    refuse_slurm_options,
    to_float,
    to_int,
)

PBS_DOC = "https://github.com/openpbs/openpbs/blob/master/doc/man1/qstat.1B"
"""qstat(1B), "Job states": B, E, F, H, M, Q, R, S, T, U, W, X."""

PBS_STATES: dict[str, JobState] = {
    "Q": JobState.PENDING, "H": JobState.PENDING, "W": JobState.PENDING,
    "T": JobState.PENDING, "M": JobState.PENDING,
    "R": JobState.RUNNING, "E": JobState.RUNNING, "B": JobState.RUNNING,
    "S": JobState.RUNNING, "U": JobState.RUNNING,  # suspended: they hold their nodes
    # what orch reports once the job finished (F, or X for a subjob): by its Exit_status
    "COMPLETED": JobState.COMPLETED, "FAILED": JobState.FAILED, "CANCELLED": JobState.CANCELLED,
}  # fmt: skip
_NAME_BAD = re.compile(r"[^A-Za-z0-9_.+-]+")
_EXECUTION = re.compile(r"^[0-9a-f]{1,64}$")
_ID = re.compile(r"^\s*(\d+(?:\[\d*\])?(?:\.[A-Za-z0-9][A-Za-z0-9_.-]*)?)\s*$")
_DOWN = ("cannot connect to server", "connection refused", "pbs_connect", "server is down",
         "communication failure")  # fmt: skip


class PbsScheduler:
    name = "pbs"
    title = "PBS"
    table = PBS_STATES
    doc = PBS_DOC
    script_suffix = ".pbs"
    job_id_variable = "PBS_JOBID"
    accounting_lag = 0.0
    prologue: tuple[str, ...] = ()

    # -- the script ------------------------------------------------------------------------
    def header(self, job: JobSettings, files: JobFiles) -> list[str]:
        self._refusals(job)
        name = _NAME_BAD.sub("_", job.job_name)[:230] or "job"
        if not name[0].isalpha():
            name = f"j{name}"
        nodes = job.nodes or 1
        per_node = job.tasks_per_node or math.ceil((job.tasks or 1) / nodes)
        chunk = f"{nodes}:ncpus={per_node * (job.cpus_per_task or 1)}:mpiprocs={per_node}"
        if job.memory_mb:
            chunk += f":mem={job.memory_mb}mb"
        options = [f"-N {name}", "-j oe", "-o /dev/null", f"-l select={chunk}"]
        if job.execution and _EXECUTION.match(job.execution):
            options.append(f"-v ORCH_EXECUTION={job.execution}")
        if job.time_seconds:
            total = max(1, math.ceil(job.time_seconds))
            hours, rest = divmod(total, 3600)
            options.append(f"-l walltime={hours:02d}:{rest // 60:02d}:{rest % 60:02d}")
        queue = job.reservation or job.partition
        if queue:
            options.append(f"-q {queue}")
        if job.account:
            options.append(f"-A {job.account}")
        options.extend(job.extra_options)
        output = files.output("$PBS_JOBID")
        error = files.error("$PBS_JOBID")
        return [f"#PBS {option}" for option in options] + [
            # the job starts in the home; its output files are named after its id here
            'cd "$PBS_O_WORKDIR" || exit 1',
            f"exec >{_quoted(output)} 2>{_quoted(error)}",
        ]

    def _refusals(self, job: JobSettings) -> None:
        if job.qos:
            raise refuse(job, self, "qos", job.qos,
                         "PBS has no QoS: remove it (or use a queue, the partition property)")
        refuse_slurm_options(job, self, "-l place=excl")

    def launcher(self, job: JobSettings) -> list[str]:
        if job.launcher == "none":
            return []
        words = ["mpirun"] if job.launcher in ("auto", "mpirun") else [job.launcher]
        if words == ["mpirun"] and job.tasks:
            words += ["-np", str(job.tasks)]
        return words + [shlex.quote(o) for o in job.launcher_options]

    # -- submit ----------------------------------------------------------------------------
    def submit_command(self, script: str) -> str:
        return f"qsub {script}"

    def submitted_id(self, stdout: str) -> str | None:
        for line in stdout.splitlines():
            found = _ID.match(line)
            if found:
                return found.group(1)
        return None

    def find_command(self, execution: str) -> str:
        if not _EXECUTION.match(execution):
            return ":"
        return ("qstat -f -F json 2>/dev/null | awk '/^ *\"[0-9][^\"]*\" *: *\\{/ "
                "{ j = $0; gsub(/[\" :{]/, \"\", j) } "
                f"/\"ORCH_EXECUTION\" *: *\"{execution}\"/ {{ print j; exit }}'")

    # -- status ----------------------------------------------------------------------------
    def status_command(self, jobs: dict[str, JobFiles | None]) -> str:
        """``J`` lines: qstat's JSON of the jobs (finished ones too, with ``-x``); per job whose
        script wrote its exit file: ``E`` (code and time) and ``O``/``R`` (output tails)."""
        records = job_records(jobs)
        ids = " ".join(shlex.quote(job_id) for job_id in jobs)
        return f"""orch_err=$(mktemp) || exit 3
J=$(qstat -f -F json -x {ids} 2>"$orch_err"); orch_rc=$?
if [ "$orch_rc" -ne 0 ] && ! grep -q 'Unknown Job Id' "$orch_err"; then
  cat "$orch_err" >&2; rm -f "$orch_err"; exit 3
fi
rm -f "$orch_err"
printf '%s\\n' "$J" | sed 's/^/J /'
while IFS='|' read -r id out err ex; do
  [ -f "$ex" ] || continue
  echo "E $id $(cat "$ex") $(stat -c %Y "$ex" 2>/dev/null)"
  tail -n {TAIL_LINES} "$out" 2>/dev/null | sed "s/^/O $id /"
  tail -n {TAIL_LINES} "$err" 2>/dev/null | sed "s/^/R $id /"
done <<'ORCH_JOBS'
{records}
ORCH_JOBS
"""

    def parse_status(self, text: str, job_ids: list[str]) -> dict[str, JobInfo]:
        document: list[str] = []
        exits: dict[str, tuple[int, float | None]] = {}
        tails: dict[str, tuple[list[str], list[str]]] = {j: ([], []) for j in job_ids}
        for line in text.splitlines():
            kind, _, rest = line.partition(" ")
            if kind == "J":
                document.append(rest)
                continue
            job_id, _, content = rest.partition(" ")
            if kind == "E":
                words = content.split()
                code = to_int(words[0]) if words else None
                if code is not None:
                    exits[job_id] = (code, to_float(words[1]) if len(words) > 1 else None)
            elif kind in ("O", "R") and job_id in tails:
                tails[job_id][0 if kind == "O" else 1].append(content)
        listed = _jobs("\n".join(document))
        infos: dict[str, JobInfo] = {}
        for job_id in job_ids:
            record = listed.get(job_id) or listed.get(job_id.split(".")[0])
            info = _info(record, exits.get(job_id))
            info.stdout_tail, info.stderr_tail = tails[job_id]
            infos[job_id] = info
        return infos

    def unavailable(self, stderr: str) -> bool:
        lowered = stderr.lower()
        return any(sign in lowered for sign in _DOWN)

    # -- cancel ----------------------------------------------------------------------------
    def cancel_command(self, job_ids: list[str]) -> str:
        return "qdel " + " ".join(shlex.quote(j) for j in job_ids)

    def already_gone(self, stderr: str) -> bool:
        return "Unknown Job Id" in stderr or "Job has finished" in stderr


def _quoted(path: str) -> str:
    """A path for the script, ``$PBS_JOBID`` left to expand."""
    head, _, tail = path.partition("$PBS_JOBID")
    return f'{shlex.quote(head)}"$PBS_JOBID"{shlex.quote(tail)}'


def _jobs(text: str) -> dict[str, dict]:
    """Job id (full, and its number alone) -> its attributes, from qstat's JSON."""
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    jobs: dict[str, dict] = {}
    for job_id, attributes in (data.get("Jobs") or {}).items():
        if isinstance(attributes, dict):
            jobs[job_id] = attributes
            jobs.setdefault(job_id.split(".")[0], attributes)
    return jobs


def _info(record: dict | None, exit_file: tuple[int, float | None] | None) -> JobInfo:
    if record is None:  # no longer in the server's history: the exit file says how it ended
        if exit_file is None:
            return JobInfo("UNKNOWN", ended=True)
        code = exit_file[0]
        return JobInfo("COMPLETED" if code == 0 else "FAILED", code, ended=True)
    state = str(record.get("job_state") or "")
    used = record.get("resources_used") or {}
    node = str(record.get("exec_host") or "").split("/")[0].split("+")[0]
    usage = {str(k): str(v) for k, v in used.items()} if isinstance(used, dict) else {}
    elapsed = usage.get("walltime", "")
    if state in ("F", "X"):
        code = record.get("Exit_status")
        code = code if isinstance(code, int) else to_int(str(code)) if code is not None else None
        if code is None and exit_file is not None:
            code = exit_file[0]
        word = "COMPLETED" if code == 0 else "FAILED"
        reason = ""
        if code is not None and code < 0:
            reason = f"PBS could not run it (Exit_status {code}: see qstat -fx)"
        elif code is not None and code > 256:
            reason = f"killed by signal {code - 256}"
        return JobInfo(word, code, elapsed, node, ended=True, reason=reason, usage=usage)
    started = _epoch(record.get("stime"))
    if exit_file is not None and started is not None and (exit_file[1] or 0) >= started:
        code = exit_file[0]  # the script ended; PBS has yet to mark it finished
        return JobInfo("COMPLETED" if code == 0 else "FAILED", code, elapsed, node, ended=True)
    return JobInfo(state, None, elapsed, node)


def _epoch(value: object) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return time.mktime(time.strptime(str(value).strip(), "%a %b %d %H:%M:%S %Y"))
    except ValueError:
        return None




PBS = PbsScheduler()
