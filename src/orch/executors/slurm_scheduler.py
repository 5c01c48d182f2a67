"""Slurm's words for the batch executor: ``#SBATCH`` lines, ``sbatch``, one ``squeue`` (then
``sacct`` or the exit file) per site and round, ``scancel``."""

from __future__ import annotations

import re

from orch.executors.job_settings import JobSettings
from orch.executors.jobstate import SLURM, SLURM_DOC, JobState
from orch.executors.schedulers import JobFiles, JobInfo
from orch.executors.slurm_monitor import parse_status, status_command
from orch.executors.slurm_script import sbatch_options, slurm_launcher

SUBMITTED = re.compile(r"Submitted batch job (\d+)")
_EXECUTION = re.compile(r"^[0-9a-f]{1,64}$")
_DOWN = ("Unable to contact slurm controller", "Socket timed out", "Connection refused",
         "slurm_load_jobs error: Unable")  # fmt: skip


class SlurmScheduler:
    name = "slurm"
    title = "Slurm"
    table: dict[str, JobState] = SLURM
    doc = SLURM_DOC
    script_suffix = ".sbatch"
    accounting_lag = 0.0
    prologue: tuple[str, ...] = ()
    job_id_variable = "SLURM_JOB_ID"

    def header(self, job: JobSettings, files: JobFiles) -> list[str]:
        return [f"#SBATCH {option}" for option in sbatch_options(job, files)]

    def launcher(self, job: JobSettings) -> list[str]:
        return slurm_launcher(job)

    def submit_command(self, script: str) -> str:
        return f"sbatch {script}"

    def submitted_id(self, stdout: str) -> str | None:
        found = SUBMITTED.search(stdout)
        return found.group(1) if found else None

    def find_command(self, execution: str) -> str:
        if not _EXECUTION.match(execution):
            return ":"
        return (f"squeue -h -u \"$(id -un)\" -t all -o '%i %k' 2>/dev/null | "
                f"awk '$2 == \"orch:{execution}\" {{ print $1; exit }}'")  # fmt: skip

    def status_command(self, jobs: dict[str, JobFiles | None]) -> str:
        return status_command(jobs)

    def parse_status(self, text: str, job_ids: list[str]) -> dict[str, JobInfo]:
        return parse_status(text, job_ids)

    def unavailable(self, stderr: str) -> bool:
        return any(sign in stderr for sign in _DOWN)

    def cancel_command(self, job_ids: list[str]) -> str:
        return "scancel " + " ".join(job_ids)

    def already_gone(self, stderr: str) -> bool:
        return "Invalid job id" in stderr


SLURM_SCHEDULER = SlurmScheduler()
