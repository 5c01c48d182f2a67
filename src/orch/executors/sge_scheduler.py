"""Son of Grid Engine's words for the batch executor (Debian's gridengine 8.1.9 and its kin):
``#$`` lines, ``qsub -terse``, one ``qstat -xml`` per site and round (then ``qacct`` and the
exit file once a job has left qstat), ``qdel``.

How a job node's properties become SGE's requests:

- ``tasks`` x ``cpus_per_task`` slots in the site's parallel environment (sites.yaml
  ``parallel_environment``, default ``mpi``) when more than one; ``nodes`` and
  ``tasks_per_node`` are the PE's allocation rule, a site's setting, so they are refused;
- ``time`` is ``h_rt``; ``memory`` (per node in Slurm's terms) is ``h_vmem`` per slot;
- ``partition`` is the queue (``-q``), ``account`` is ``-A``, ``reservation`` is ``-ar``;
  ``qos`` has no SGE meaning and is refused;
- ``-w e``: a job no queue could ever run (more slots than the PE has, a queue that does not
  exist) is refused at submission, with SGE's reason, instead of waiting in ``qw`` for ever;
- the launcher ``auto`` is ``mpirun -np $NSLOTS`` (Open MPI and MPICH read SGE's host file);
  ``srun`` is Slurm's and is refused.
"""

from __future__ import annotations

import math
import re
import shlex
import time
import xml.etree.ElementTree as ET

from orch.executors.base import TAIL_LINES
from orch.executors.job_settings import JobSettings
from orch.executors.jobstate import JobState
from orch.executors.schedulers import (
    JobFiles,
    JobInfo,
    ScriptError,
    job_records,
    refuse,
    refuse_slurm_options,
    to_float,
    to_int,
)

SGE_DOC = "https://manpages.debian.org/bookworm/gridengine-client/qstat.1.en.html"
"""qstat(1), "state": d(eletion), E(rror), h(old), r(unning), R(estarted), s/S(uspended),
T(hreshold), t(ransferring), w(aiting), q(ueued)."""


def _states() -> dict[str, JobState]:
    table: dict[str, JobState] = {}
    for word in ("qw", "hqw", "hRqw", "Rq", "Rqw", "hRwq", "w", "qws"):
        table[word] = JobState.PENDING
    for word in ("r", "t", "Rr", "Rt", "s", "ts", "S", "tS", "T", "tT", "Rs", "Rts", "RS",
                 "RtS", "RT", "RtT", "LEAVING"):  # fmt: skip
        table[word] = JobState.RUNNING  # started (suspended ones too: they hold their slots)
    for word in ("dr", "dt", "dRr", "dRt", "ds", "dS", "dT", "dRs", "dRS", "dRT", "dqw",
                 "dhqw"):  # fmt: skip
        table[word] = JobState.RUNNING  # being deleted: it leaves qstat soon
    for word in ("Eqw", "Ehqw", "EhRqw"):
        table[word] = JobState.FAILED  # SGE could not start it; it waits for qdel
    # what orch reports once the job left qstat (qacct's exit_status and failed)
    table.update(COMPLETED=JobState.COMPLETED, FAILED=JobState.FAILED,
                 CANCELLED=JobState.CANCELLED)  # fmt: skip
    return table


SGE_STATES = _states()
_NAME_BAD = re.compile(r"[\s/:@\\*?'\"`$]+")
_EXECUTION = re.compile(r"^[0-9a-f]{1,64}$")
_DOWN = ("unable to contact qmaster", "unable to send message to qmaster", "commlib error",
         "can't unpack gdi request", "failed receiving gdi request")  # fmt: skip
_USAGE = ("ru_wallclock", "cpu", "maxvmem", "mem", "io", "slots", "granted_pe")


class SgeScheduler:
    name = "sge"
    title = "Son of Grid Engine"
    table = SGE_STATES
    doc = SGE_DOC
    script_suffix = ".qsub"
    accounting_lag = 30.0
    prologue = (
        # SGE appends to an existing output file (a job id SGE gave before, after its spool was
        # reset): start it afresh, as Slurm does
        'if [ -n "$SGE_STDOUT_PATH" ]; then exec >"$SGE_STDOUT_PATH"; fi',
        'if [ -n "$SGE_STDERR_PATH" ]; then exec 2>"$SGE_STDERR_PATH"; fi',
    )
    job_id_variable = "JOB_ID"

    # -- the script ------------------------------------------------------------------------
    def header(self, job: JobSettings, files: JobFiles) -> list[str]:
        self._refusals(job)
        if re.search(r"\s", files.folder):
            raise ScriptError(f"{job.node}: SGE cannot take a job folder with spaces: "
                              f"{files.folder!r}")  # fmt: skip
        name = _NAME_BAD.sub("_", job.job_name) or "job"
        if name[0].isdigit():
            name = f"j{name}"
        options = [
            "-S /bin/bash", f"-N {name}", f"-wd {files.folder}",
            f"-o {files.output('$JOB_ID')}", f"-e {files.error('$JOB_ID')}", "-w e",
        ]  # fmt: skip
        if job.execution and _EXECUTION.match(job.execution):
            options.append(f"-ac ORCH_EXECUTION={job.execution}")
        if job.slots > 1:
            options.append(f"-pe {job.parallel_environment or 'mpi'} {job.slots}")
        if job.time_seconds:
            total = max(1, math.ceil(job.time_seconds))
            hours, rest = divmod(total, 3600)
            options.append(f"-l h_rt={hours}:{rest // 60:02d}:{rest % 60:02d}")
        if job.memory_mb:
            options.append(f"-l h_vmem={max(1, math.ceil(job.memory_mb / job.slots))}M")
        if job.partition:
            options.append(f"-q {job.partition}")
        if job.account:
            options.append(f"-A {job.account}")
        if job.reservation:
            options.append(f"-ar {job.reservation}")
        options.extend(job.extra_options)
        return [f"#$ {option}" for option in options]

    def _refusals(self, job: JobSettings) -> None:
        if job.qos:
            raise refuse(job, self, "qos", job.qos,
                         "SGE has no QoS: remove it (or use a queue, the partition property)")
        if (job.nodes or 1) > 1:
            raise refuse(job, self, "nodes", job.nodes,
                         "SGE allocates slots, not nodes: set tasks (the parallel environment's "
                         "allocation rule spreads them)")  # fmt: skip
        if job.tasks_per_node is not None:
            raise refuse(job, self, "tasks_per_node", job.tasks_per_node,
                         "the parallel environment's allocation rule places tasks on SGE: set "
                         "tasks only")  # fmt: skip
        refuse_slurm_options(job, self, "-l h=node1")

    def launcher(self, job: JobSettings) -> list[str]:
        if job.launcher == "none":
            return []
        words = ["mpirun", "-np", '"$NSLOTS"'] if job.launcher in ("auto", "mpirun") else [
            job.launcher]  # fmt: skip
        return words + [shlex.quote(o) for o in job.launcher_options]

    # -- submit ----------------------------------------------------------------------------
    def submit_command(self, script: str) -> str:
        return f"qsub -terse {script}"

    def submitted_id(self, stdout: str) -> str | None:
        """``qsub -terse``'s bare id, or plain qsub's ``Your job N ("name") has been
        submitted`` (what enqueue_compss prints on an SGE site)."""
        found = re.search(r"^Your job (\d+)", stdout, re.MULTILINE)
        if found:
            return found.group(1)
        for line in stdout.splitlines():
            word = line.strip().split(".")[0]
            if word.isdigit():
                return word
        return None

    def find_command(self, execution: str) -> str:
        if not _EXECUTION.match(execution):
            return ":"
        return ("qstat -j '*' 2>/dev/null | awk '/^job_number:/ { j = $2 } "
                f"/^context:/ && index($0, \"ORCH_EXECUTION={execution}\") {{ print j; exit }}'")

    # -- status ----------------------------------------------------------------------------
    def status_command(self, jobs: dict[str, JobFiles | None]) -> str:
        """``X`` lines: qstat's XML of the user's jobs; then per job it does not list: ``A``
        (qacct), ``E`` (exit file: code and time), ``O``/``R`` (output tails); per job it
        lists: ``E`` and the tails when the script already wrote its exit file (SGE keeps a job
        in qstat for a moment after its script ended), ``W`` (SGE's reason) in an error
        state."""
        records = job_records(jobs)
        return f"""X=$(qstat -xml 2>&1) || {{ printf '%s\\n' "$X" >&2; exit 3; }}
case "$X" in *"<job_info"*) ;; *) printf '%s\\n' "$X" >&2; exit 3;; esac
printf '%s\\n' "$X" | sed 's/^/X /'
Q=" $(printf '%s\\n' "$X" | sed -n 's:.*<JB_job_number>\\([0-9]*\\)</JB_job_number>.*:\\1:p' \
  | tr '\\n' ' ') "
while IFS='|' read -r id out err ex; do
  case "$Q" in *" $id "*)
    if [ ! -f "$ex" ]; then
      case "$X" in *"<state>E"*) qstat -j "$id" 2>/dev/null | grep '^error reason' \
        | sed "s/^/W $id /";; esac
      continue
    fi;;
  *) command -v qacct >/dev/null 2>&1 && qacct -j "$id" 2>/dev/null | sed "s/^/A $id /";;
  esac
  [ -f "$ex" ] && echo "E $id $(cat "$ex") $(stat -c %Y "$ex" 2>/dev/null)"
  tail -n {TAIL_LINES} "$out" 2>/dev/null | sed "s/^/O $id /"
  tail -n {TAIL_LINES} "$err" 2>/dev/null | sed "s/^/R $id /"
done <<'ORCH_JOBS'
{records}
ORCH_JOBS
"""

    def parse_status(self, text: str, job_ids: list[str]) -> dict[str, JobInfo]:
        xml: list[str] = []
        accounting: dict[str, dict[str, str]] = {}
        exits: dict[str, int] = {}
        written: dict[str, float | None] = {}
        reasons: dict[str, list[str]] = {}
        tails: dict[str, tuple[list[str], list[str]]] = {j: ([], []) for j in job_ids}
        for line in text.splitlines():
            kind, _, rest = line.partition(" ")
            if kind == "X":
                xml.append(rest)
                continue
            job_id, _, content = rest.partition(" ")
            if kind == "A":
                key, _, value = content.partition(" ")
                if key and not key.startswith("="):
                    accounting.setdefault(job_id, {})[key] = value.strip()
            elif kind == "E":
                code = to_int(content.split()[0]) if content.split() else None
                if code is not None:
                    exits[job_id] = code
                    written[job_id] = to_float(content.split()[1]) if len(content.split()) > 1 \
                        else None
            elif kind == "W":
                reasons.setdefault(job_id, []).append(content.split(":", 1)[-1].strip())
            elif kind in ("O", "R") and job_id in tails:
                tails[job_id][0 if kind == "O" else 1].append(content)
        listed = _qstat_jobs("\n".join(xml))
        infos: dict[str, JobInfo] = {}
        for job_id in job_ids:
            if job_id in listed:
                state, queue, started = listed[job_id]
                info = JobInfo(state, node_list=queue.partition("@")[2])
                stamp = written.get(job_id)
                if started is not None and stamp is not None and stamp >= started:
                    # the script ended (its exit file is this run's): SGE has yet to let go
                    code = exits[job_id]
                    info = JobInfo("COMPLETED" if code == 0 else "FAILED", code,
                                   node_list=info.node_list, ended=True)  # fmt: skip
                elif state.startswith("E"):
                    why = "; ".join(reasons.get(job_id, [])) or "see qstat -j " + job_id
                    info = JobInfo("FAILED", ended=True, reason=f"SGE put it in state {state}: "
                                   f"{why}")  # fmt: skip
            else:
                info = _ended(accounting.get(job_id), exits.get(job_id))
            info.stdout_tail, info.stderr_tail = tails[job_id]
            infos[job_id] = info
        return infos

    def unavailable(self, stderr: str) -> bool:
        lowered = stderr.lower()
        return any(sign in lowered for sign in _DOWN)

    # -- cancel ----------------------------------------------------------------------------
    def cancel_command(self, job_ids: list[str]) -> str:
        return "qdel " + " ".join(job_ids)

    def already_gone(self, stderr: str) -> bool:
        return "does not exist" in stderr


def _qstat_jobs(text: str) -> dict[str, tuple[str, str, float | None]]:
    """Job id -> (state letters, queue instance, start time) from ``qstat -xml``."""
    if not text.strip():
        return {}
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return {}
    jobs: dict[str, tuple[str, str, float | None]] = {}
    for job in root.iter("job_list"):
        number = (job.findtext("JB_job_number") or "").strip()
        if number:
            jobs[number] = ((job.findtext("state") or "").strip(),
                            (job.findtext("queue_name") or "").strip(),
                            _start(job.findtext("JAT_start_time")))  # fmt: skip
    return jobs


def _start(text: str | None) -> float | None:
    """qstat's start time (local, whole seconds) in epoch seconds."""
    try:
        return time.mktime(time.strptime((text or "").strip(), "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None



def _ended(accounting: dict[str, str] | None, exit_file: int | None) -> JobInfo:
    """A job SGE no longer lists: qacct's record when it has one, else the exit file, else
    UNKNOWN (accounting is written a few seconds after a job leaves qstat)."""
    if accounting and "exit_status" in accounting:
        code = to_int(accounting["exit_status"])
        failed = accounting.get("failed", "0").split(":", 1)
        usage = {key: accounting[key] for key in _USAGE if key in accounting}
        state = "COMPLETED" if code == 0 and to_int(failed[0]) in (0, None) else "FAILED"
        reason = f"SGE: failed {failed[0].strip()}: {failed[1].strip()}" if len(failed) > 1 else ""
        return JobInfo(state, code, accounting.get("ru_wallclock", ""),
                       accounting.get("hostname", ""), ended=True, reason=reason,
                       usage=usage)  # fmt: skip
    if exit_file is not None:
        return JobInfo("COMPLETED" if exit_file == 0 else "FAILED", exit_file, ended=True)
    return JobInfo("UNKNOWN", ended=True)



SGE = SgeScheduler()
