"""Live figures of a deployment's running applications, tied to their jobs (``orch status
--watch``): per running job, its job or step id, state, elapsed and remaining time and nodes,
its CPU and memory use as the scheduler measures them (Slurm's ``sstat``), and the
application's own progress when its node says where to read it (``progress_file``: the last
line of a file in the job's folder; ``progress_pattern``: the last match in its output).

One command per site and round asks for all of that site's running jobs. Only Slurm measures
running jobs' CPU and memory; on other schedulers the state and nodes are shown.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import asdict, dataclass
from typing import Any

from orch.executors.allocation import slurm_seconds
from orch.executors.slurm_steps import is_step

PROGRESS_LINES = 50
"""Lines of a running job's output a progress pattern looks at."""


@dataclass
class Live:
    instance: str
    job_id: str
    state: str = ""
    elapsed: str = ""
    left: str = ""
    nodes: str = ""
    cpu_seconds: float | None = None
    cpu_percent: float | None = None
    """CPU time over elapsed time: 100 is one core busy all along."""
    max_rss_mb: float | None = None
    progress: str = ""
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Watched:
    """A running job and where its progress is read."""

    instance: str
    job_id: str
    output: str = ""
    progress_file: str = ""
    progress_pattern: str = ""


def site_command(jobs: list[Watched]) -> str:
    """ONE shell command asking Slurm about every job: ``Q`` (squeue), ``S`` (steps),
    ``C`` (sstat), ``P`` (progress file's last line), ``T`` (output's last lines)."""
    plain = [j.job_id for j in jobs if not is_step(j.job_id)]
    steps = [j.job_id for j in jobs if is_step(j.job_id)]
    owners = sorted({*plain, *(s.split(".")[0] for s in steps)}, key=_number)
    lines = []
    if owners:
        lines.append(f"squeue -h -t all -j {','.join(owners)} -o '%A|%T|%M|%L|%N' 2>/dev/null "
                     "| sed 's/^/Q|/'")  # fmt: skip
    if steps:
        lines.append(f"squeue -h -s {','.join(steps)} -o '%i|%M|%N' 2>/dev/null | sed 's/^/S|/'")
    everything = ",".join([*plain, *steps])
    lines.append(f"sstat -n -P -a -j {everything} -o JobID,AveCPU,MaxRSS,NTasks 2>/dev/null "
                 "| sed 's/^/C|/'")  # fmt: skip
    for job in jobs:
        if job.progress_file:
            lines.append(f"printf 'P|{job.job_id}|%s\\n' \"$(tail -n 1 "
                         f"{shlex.quote(job.progress_file)} 2>/dev/null | head -c 300)\"")
        elif job.progress_pattern and job.output:
            lines.append(f"tail -n {PROGRESS_LINES} {shlex.quote(job.output)} 2>/dev/null | "
                         f"cut -c 1-300 | sed 's/^/T|{job.job_id}|/'")  # fmt: skip
    return "\n".join(lines) + "\n"


def parse(text: str, jobs: list[Watched]) -> dict[str, Live]:
    """The figures of each job from ``site_command``'s output."""
    by_id = {j.job_id: Live(j.instance, j.job_id) for j in jobs}
    owners: dict[str, list[str]] = {}
    outputs: dict[str, list[str]] = {}
    cpu: dict[str, float] = {}
    rss: dict[str, float] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition("|")
        cells = rest.split("|")
        if kind == "Q" and len(cells) >= 5:
            owners[cells[0]] = cells[1:5]
        elif kind == "S" and len(cells) >= 3 and cells[0] in by_id:
            live = by_id[cells[0]]
            live.state, live.elapsed, live.nodes = "RUNNING", cells[1], cells[2]
        elif kind == "C" and len(cells) >= 3:
            owner = _owner(cells[0], by_id)
            if owner is None:
                continue
            seconds = _cpu_seconds(cells[1])
            tasks = int(cells[3]) if len(cells) > 3 and cells[3].isdigit() else 1
            if seconds is not None:
                cpu[owner] = cpu.get(owner, 0.0) + seconds * max(1, tasks)
            if (memory := _megabytes(cells[2])) is not None:
                rss[owner] = max(rss.get(owner, 0.0), memory)
        elif kind == "P" and len(cells) >= 2 and cells[0] in by_id:
            by_id[cells[0]].progress = "|".join(cells[1:]).strip()
        elif kind == "T" and len(cells) >= 2:
            outputs.setdefault(cells[0], []).append("|".join(cells[1:]))
    patterns = {j.job_id: j.progress_pattern for j in jobs if j.progress_pattern}
    for job_id, live in by_id.items():
        owner = job_id.split(".")[0] if is_step(job_id) else job_id
        if owner in owners:
            state, elapsed, left, nodes = owners[owner]
            if not is_step(job_id):
                live.state, live.elapsed, live.nodes = state, elapsed, nodes
            elif not live.state:
                live.state = "ENDED" if state == "RUNNING" else f"ENDED ({state})"
            live.left = left
        live.cpu_seconds = round(cpu[job_id], 1) if job_id in cpu else None
        live.max_rss_mb = round(rss[job_id], 1) if job_id in rss else None
        took = slurm_seconds(live.elapsed) if live.elapsed else None
        if live.cpu_seconds is not None and took:
            live.cpu_percent = round(100.0 * live.cpu_seconds / took, 1)
        if job_id in patterns:
            live.progress = _last_match(patterns[job_id], outputs.get(job_id, []))
    return by_id


def watched(instance: str, job_id: str, properties: dict[str, Any],
            attributes: dict[str, Any]) -> Watched:  # fmt: skip
    """What is read of a running job: its output and progress, from its node's properties
    and attributes (work_dir, output)."""
    folder = str(attributes.get("work_dir") or "")
    output = str(attributes.get("output") or "")
    progress = str(properties.get("progress_file") or "")
    if progress and not progress.startswith("/") and folder:
        progress = posixpath.join(folder, progress)
    return Watched(instance, job_id, output, progress,
                   str(properties.get("progress_pattern") or ""))  # fmt: skip


def _owner(step: str, by_id: dict[str, Live]) -> str | None:
    """The watched job a sstat row (``J.batch``, ``J.0``, ``A.S``) belongs to."""
    if step in by_id:
        return step
    job = step.split(".")[0]
    return job if job in by_id else None


def _cpu_seconds(text: str) -> float | None:
    """sstat's AveCPU (``[DD-[HH:]]MM:SS[.mmm]``) in seconds."""
    match = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)", text.strip())
    if match is None:
        return None
    days, hours, minutes = (int(g) if g else 0 for g in match.groups()[:3])
    return ((days * 24 + hours) * 60 + minutes) * 60 + float(match.group(4))


def _megabytes(text: str) -> float | None:
    """sstat's MaxRSS (``65408K``, ``1.5G``) in megabytes (10^6 bytes)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", text.strip())
    if match is None:
        return None
    scale = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}[match.group(2)]
    return float(match.group(1)) * scale / 1e6


def _last_match(pattern: str, lines: list[str]) -> str:
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        return f"(progress_pattern is not a regular expression: {exc})"
    for line in reversed(lines):
        found = compiled.search(line)
        if found:
            return (found.group(1) if found.groups() else found.group(0)).strip()
    return ""


def _number(job_id: str) -> int:
    digits = re.match(r"\d+", job_id)
    return int(digits.group(0)) if digits else 0
