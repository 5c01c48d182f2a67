"""What differs between batch schedulers, behind one interface: the batch executor
(``executors/batch.py``) writes, submits, watches and cancels jobs the same way on every site,
and asks the site's ``Scheduler`` for the words.

A scheduler gives the header of a batch script for a job node (or says which of the node's
options it cannot honour), the command that submits a script and how to read the id it prints,
ONE command that reports every job of a site (and how to read it into ``JobInfo``), the command
that cancels jobs, and its translation table to ``JobState``. Sites choose theirs in sites.yaml
(``scheduler: slurm | sge | pbs``); blueprints stay the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from orch.executors.base import Task
from orch.executors.jobstate import JobState

if TYPE_CHECKING:
    from orch.executors.job_settings import JobSettings


class ScriptError(ValueError):
    """The node's properties cannot make a batch script (the message says which and why)."""


@dataclass(frozen=True)
class JobFiles:
    """Where a job's files are on the site; ``%j`` stands for the job id until it is known."""

    folder: str
    stem: str
    suffix: str = ".sbatch"

    @property
    def script(self) -> str:
        return f"{self.folder}/{self.stem}{self.suffix}"

    def output(self, job_id: str = "%j") -> str:
        return f"{self.folder}/{self.stem}-{job_id}.out"

    def error(self, job_id: str = "%j") -> str:
        return f"{self.folder}/{self.stem}-{job_id}.err"

    def exit_file(self, job_id: str = "%j") -> str:
        """The file the script writes its exit status to (``job_id`` '' gives the prefix)."""
        if not job_id:
            return f"{self.folder}/{self.stem}-"
        return f"{self.folder}/{self.stem}-{job_id}.exit"


@dataclass
class JobInfo:
    """What one status round learnt of a job."""

    state: str
    """The scheduler's own state word (RUNNING, qw...), or UNKNOWN: the scheduler forgot the
    job and it left no exit status (it never started, or its folder is gone)."""
    exit_code: int | None = None
    elapsed: str = ""
    node_list: str = ""
    stdout_tail: list[str] = field(default_factory=list)
    stderr_tail: list[str] = field(default_factory=list)
    ended: bool = False
    """Whether the job left the scheduler (its state is final)."""
    reason: str = ""
    """Why a pending job waits, when the scheduler says it can never run as asked."""
    usage: dict[str, str] = field(default_factory=dict)
    """Resource usage the scheduler reports once the job ended (maxvmem, cpu...)."""
    endpoint: str = ""
    """host:port where the job's application listens, when orch gave it one (co-scheduled
    jobs: the ``.endpoint`` file beside the job's exit file)."""


class StatusError(Exception):
    """The status command could not run (the message says why)."""

    def __init__(self, message: str, *, started: bool = True, unavailable: bool = False):
        super().__init__(message)
        self.started = started
        self.unavailable = unavailable
        """The scheduler itself did not answer (its controller is down or unreachable): the
        jobs may well go on, and the watch asks again next round."""


class Scheduler(Protocol):
    name: str
    """As sites.yaml names it: slurm, sge, pbs."""
    title: str
    """For messages: Slurm, Son of Grid Engine, PBS."""
    table: dict[str, JobState]
    doc: str
    """Where the scheduler's documentation lists its state words."""
    script_suffix: str
    job_id_variable: str
    """The variable holding the job's id inside the job (SLURM_JOB_ID, JOB_ID)."""
    accounting_lag: float
    prologue: tuple[str, ...]
    """Lines the batch script starts with, after the directives."""
    """Seconds a job may be gone from the status query before its accounting has it."""

    def header(self, job: JobSettings, files: JobFiles) -> list[str]:
        """The batch script's directive lines for the job's settings; ScriptError naming the
        site and the option when one cannot be honoured."""
        ...

    def launcher(self, job: JobSettings) -> list[str]:
        """The words that start ``command`` once per task, per the job's ``launcher``."""
        ...

    def submit_command(self, script: str) -> str:
        """The shell command submitting ``script`` (quoted) from the job's folder."""
        ...

    def submitted_id(self, stdout: str) -> str | None:
        """The job id the submit command printed, None if it printed none."""
        ...

    def find_command(self, execution: str) -> str:
        """A command printing the id of the job carrying the execution id, if the scheduler
        still holds one (nothing otherwise)."""
        ...

    def status_command(self, jobs: dict[str, JobFiles | None]) -> str: ...

    def parse_status(self, text: str, job_ids: list[str]) -> dict[str, JobInfo]: ...

    def unavailable(self, stderr: str) -> bool:
        """Whether a failed status command says the scheduler's controller is down."""
        ...

    def cancel_command(self, job_ids: list[str]) -> str: ...

    def already_gone(self, stderr: str) -> bool:
        """Whether a failed cancel says the job is no longer known (nothing to cancel)."""
        ...


def scheduler_named(name: str) -> Scheduler:
    from orch.executors.pbs_scheduler import PBS
    from orch.executors.sge_scheduler import SGE
    from orch.executors.slurm_scheduler import SLURM_SCHEDULER

    known: dict[str, Scheduler] = {"slurm": SLURM_SCHEDULER, "sge": SGE, "pbs": PBS}
    try:
        return known[name]
    except KeyError:
        raise ScriptError(
            f"no batch scheduler '{name}': orch runs jobs on slurm, sge and pbs sites"
        ) from None


def scheduler_of(task: Task) -> Scheduler:
    """The scheduler of the task's site (sites.yaml ``scheduler``); Slurm on a plain host."""
    name = getattr(task.site, "scheduler", None) or "slurm"
    if name == "none":
        site = getattr(task.site, "name", task.host.name)
        raise ScriptError(
            f"{task.node} is a batch job, but site {site} has scheduler: none in sites.yaml: "
            "set scheduler: slurm, sge or pbs there, or run the command as a script"
        )
    return scheduler_named(str(name))


ENDPOINT_LINE = (
    '[ -n "$ex" ] && [ -f "${ex%.exit}.endpoint" ] && '
    'echo "H $id $(head -c 300 "${ex%.exit}.endpoint")"'
)
"""A status loop's line for a job's endpoint file (``H id host:port``), running or not."""


def job_records(jobs: dict[str, JobFiles | None]) -> str:
    """The jobs a status command asks about, one ``id|output|error|exit file`` line each (a
    heredoc its shell loop reads); a job whose files are not known yet has empty fields."""
    return "\n".join(
        "|".join((job_id, f.output(job_id), f.error(job_id), f.exit_file(job_id)))
        if f is not None
        else f"{job_id}|||"
        for job_id, f in jobs.items()
    )


def to_int(text: str) -> int | None:
    """A whole number a scheduler printed, None if it is not one."""
    try:
        return int(text.strip())
    except ValueError:
        return None


def to_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def refuse_slurm_options(job: JobSettings, scheduler: Scheduler, example: str) -> None:
    """What only Slurm honours (srun, its --mpi plugin, sbatch's long options), refused on
    another scheduler; ``example`` is one of that scheduler's own options for the hint."""
    if job.launcher == "srun":
        raise refuse(job, scheduler, "launcher", "srun",
                     f"srun is Slurm's: use launcher auto (srun on Slurm, mpirun on "
                     f"{scheduler.name.upper()}) or mpirun")  # fmt: skip
    if job.mpi:
        raise refuse(job, scheduler, "mpi", job.mpi, "it is srun's --mpi plugin: remove it")
    for option in job.extra_options:
        if option.startswith("--"):
            raise refuse(job, scheduler, "extra_options", option,
                         f"it is an sbatch option: give qsub options (e.g. {example})")


def refuse(job: JobSettings, scheduler: Scheduler, option: str, value: Any,
           hint: str) -> ScriptError:  # fmt: skip
    """The error for an option ``scheduler`` cannot honour, naming the site and the option."""
    return ScriptError(
        f"{job.node}: site {job.site} runs {scheduler.title}, which cannot honour "
        f"{option}: {value!r}; {hint}"
    )
