"""``orch sites check``'s checks for any site: modules, the commands the jobs run, container
runtimes, the work folder and its free space, and what a check without a blueprint leaves out."""

from __future__ import annotations

import re

from orch.sites.check_probes import SGE_JOB_COMMANDS, SLURM_JOB_COMMANDS, Probe, failure_of
from orch.sites.check_report import SiteReport
from orch.sites.check_sge import SGE_HINT
from orch.sites.needs import Need

LOW_SPACE_KIB = 1024 * 1024
"""Below 1 GiB free in the work folder, the check warns."""
_VERSION = re.compile(r"(\d+(?:\.\d+)+\S*)")


def judge_modules(report: SiteReport, probes: dict[str, Probe]) -> None:
    site = report.site
    if report.needs is not None:
        wanted = report.needs.of("module")
        users = report.needs.of("command").get("module", [])
    else:
        wanted = {m: [] for m in site.modules}
        users = []
    probe = probes.get("modules")
    if probe is None or not probe.ok:
        report.facts["modules"] = None
        if wanted:
            report.add(
                "missing",
                "modules",
                f"no `module` command on the site (modules: {', '.join(wanted)})",
                "set MODULESHOME or PATH in the site's environment if the site has one",
                users,
            )
        elif report.needs is None:
            report.add("info", "modules", "no `module` command on the site (none configured)")
        return
    lines = probe.output.splitlines()
    system = lines[0].strip() if lines and not lines[0].startswith(("avail ", "unavail ")) else ""
    missing = [line.split(" ", 1)[1] for line in lines if line.startswith("unavail ")]
    report.facts["modules"] = {"system": system or None, "missing": missing}
    if not wanted:
        if report.needs is None:
            report.add("ok", "modules", system or "module command available")
    elif missing:
        report.add(
            "missing",
            "modules",
            f"not available: {', '.join(missing)}",
            "`module avail` on the site lists what is",
            [n for m in missing for n in wanted.get(m, [])],
        )
    else:
        report.add(
            "ok",
            "modules",
            f"{', '.join(wanted)} available ({system or '?'})",
            needs=[n for needs in wanted.values() for n in needs],
        )


def judge_containers(report: SiteReport, probes: dict[str, Probe]) -> None:
    runtimes: dict[str, str | None] = {}
    for name in ("apptainer", "singularity", "podman"):
        probe = probes.get(name)
        match = _VERSION.search(probe.output) if probe is not None and probe.ok else None
        runtimes[name] = match.group(1) if match else None
    report.facts["containers"] = runtimes
    wanted = report.site.container_runtime
    if wanted is None or report.needs is not None:  # a blueprint's needs are commands
        found = [f"{n} {v}" for n, v in runtimes.items() if v]
        if found:
            report.add("info", "containers", ", ".join(found))
        return
    if runtimes[wanted]:
        report.add("ok", wanted, f"{wanted} {runtimes[wanted]}")
        return
    hint = None
    if wanted == "apptainer" and runtimes["singularity"]:
        hint = f"singularity {runtimes['singularity']} is there: container_runtime is apptainer"
    report.add("missing", wanted, f"{wanted} not found (container_runtime: {wanted})", hint)


COMMAND_HINTS = {
    "enqueue_compss": "it comes with COMPSs: name COMPSs' module in modules (the node's or the "
    "site's), or put its bin folder on PATH in the site's environment",
    "apptainer": "install Apptainer on the site, or name its module in modules, or put it on "
    "PATH in the site's environment",
    "podman": "install podman on the login node, or build on orch's machine (build_on: local)",
    "sha256sum": "install coreutils (sha256sum) or perl's shasum on the site",
}
SLURM_HINT = "put Slurm's bin folder on PATH in the site's environment (sites.yaml)"
DEFAULT_HINT = "put the folder that holds it on PATH in the site's environment (sites.yaml)"


def parse_commands(probes: dict[str, Probe]) -> tuple[dict[str, str | None], set[str]]:
    """``commands`` and ``loaded`` sections: {name or 'modules|name': path or None}, and the
    'modules|name' keys whose modules did not load (the command was looked up all the same)."""
    found: dict[str, str | None] = {}
    unloaded: set[str] = set()
    for section in ("commands", "loaded"):
        probe = probes.get(section)
        for line in probe.output.splitlines() if probe is not None else []:
            verdict, _, rest = line.partition(" ")
            if verdict.startswith("noload-"):
                verdict = verdict.removeprefix("noload-")
                unloaded.add(_loaded(rest)[0])
            if verdict == "found":
                name, path = rest.partition(" ")[::2] if section == "commands" else _loaded(rest)
                found[name] = path
            elif verdict == "missing":
                found[rest.strip()] = None
    return found, unloaded


def _loaded(rest: str) -> tuple[str, str]:
    """``MODS|NAME PATH`` as ('MODS|NAME', PATH): module names hold no '|', commands no blank."""
    mods, _, tail = rest.partition("|")
    name, _, path = tail.partition(" ")
    return f"{mods}|{name}", path


def judge_commands(report: SiteReport, probes: dict[str, Probe]) -> None:
    if "commands" not in probes:
        return  # output of an older script: nothing was looked up
    found, unloaded = parse_commands(probes)
    report.facts["commands"] = {k: v for k, v in found.items() if "|" not in k}
    if report.needs is None:
        _generic_commands(report, found, "sinfo" in probes or "qstat" in probes)
        return
    plain_ok: list[str] = []
    groups: dict[tuple[tuple[str, ...], str], list[Need]] = {}
    for need in report.needs.needs:
        if need.kind == "command" and need.name != "module":
            groups.setdefault((need.after, need.name), []).append(need)
    for (after, name), needs in groups.items():
        if after:
            key = " ".join(after) + "|" + name
            _loaded_command(report, found.get(key), key in unloaded, after, needs)
        elif any(found.get(c) for c in needs[0].commands):
            plain_ok.append(name)
        else:
            _missing_command(report, name, needs)
    if plain_ok:
        report.add("ok", "commands", "found: " + ", ".join(plain_ok))


def _loaded_command(report: SiteReport, path: str | None, unloaded: bool,
                    after: tuple[str, ...], needs: list[Need]) -> None:  # fmt: skip
    """A command looked up once its modules are loaded (as the node will run it)."""
    loads = f"`module load {' '.join(after)}`"
    name = needs[0].name
    if path is None:
        where = f" (and {loads} fails)" if unloaded else f" after {loads}"
        _missing_command(report, name, needs, where)
    elif unloaded:
        report.add("info", name, f"{path}, but {loads} fails before it", needs=needs)
    else:
        report.add("ok", name, f"{path} (after {loads})", needs=needs)


def _missing_command(report: SiteReport, name: str, needs: list[Need], where: str = "") -> None:
    what = " or ".join(needs[0].commands)
    slurm = name in (*SLURM_JOB_COMMANDS, "sacct", "srun")
    sge = name in (*SGE_JOB_COMMANDS, "qacct")
    hint = COMMAND_HINTS.get(name) or (SLURM_HINT if slurm else SGE_HINT if sge else DEFAULT_HINT)
    if all(n.optional for n in needs):
        report.add("info", name, f"{what} not found{where}", None, needs)
    else:
        report.add("missing", name, f"{what} not found on the site{where}", hint, needs)


def _generic_commands(report: SiteReport, found: dict[str, str | None], probed: bool) -> None:
    """Without a blueprint: the scheduler's job commands where sinfo (SGE: qstat) is (its
    absence is reported already), SGE's qacct, and where enqueue_compss is, as a fact."""
    scheduler = report.site.scheduler
    if scheduler == "slurm" and probed:
        absent = [c for c in SLURM_JOB_COMMANDS if not found.get(c)]
        if absent:
            report.add("missing", "commands", f"not found: {', '.join(absent)}", SLURM_HINT)
    elif scheduler == "sge" and probed:
        absent = [c for c in SGE_JOB_COMMANDS if not found.get(c)]
        if absent:
            report.add("missing", "commands", f"not found: {', '.join(absent)}", SGE_HINT)
        else:
            report.add("ok", "commands", "found: " + ", ".join(SGE_JOB_COMMANDS))
        if not found.get("qacct"):
            report.add("info", "qacct", "qacct not found: a job that has left qstat is judged "
                       "by its exit file alone")  # fmt: skip
    compss = found.get("enqueue_compss")
    report.add(
        "info",
        "enqueue_compss",
        compss or "not on PATH (PyCOMPSs jobs need it, perhaps once their modules are loaded)",
    )


def judge_not_checked(report: SiteReport, probes: dict[str, Probe]) -> None:
    """Say what a check without a blueprint leaves out, so its 'ok' is not read as more."""
    if report.needs is None:
        report.add(
            "info",
            "blueprint",
            "not checked: what a blueprint's nodes need here (their modules, partitions, "
            "enqueue_compss, image runtimes): `orch sites check --blueprint BLUEPRINT`",
        )
    elif not report.needs.nodes:
        report.add("info", "blueprint", "no node of the blueprint runs on this site")


def judge_work_dir(report: SiteReport, probes: dict[str, Probe]) -> None:
    site = report.site
    probe = probes["work_dir"]
    if probe.rc == 3:
        report.add(
            "missing",
            "work_dir",
            f"work_dir {site.work_dir}: {failure_of(probe)}",
            "set the variable in the site's environment, or use another path",
        )
        return
    values = dict(line.split("=", 1) for line in probe.output.splitlines() if "=" in line)
    path = values.get("path", site.work_dir)
    existing = values.get("existing", "")
    free = _df_free(probe.output)
    report.facts["work_dir"] = {
        "path": path,
        "exists": existing == path,
        "writable": values.get("writable") == "yes",
        "free_kib": free,
    }
    if values.get("writable") != "yes":
        report.add("missing", "work_dir", f"{path}: {existing} is not writable")
        return
    note = "" if existing == path else " (will be created)"
    if free is None:
        report.add("warning", "work_dir", f"{path}{note}: free space unknown (df failed)")
    elif free < LOW_SPACE_KIB:
        report.add("warning", "work_dir", f"{path}{note}: only {_size(free)} free")
    else:
        report.add("ok", "work_dir", f"{path}{note}: {_size(free)} free")


def _df_free(output: str) -> int | None:
    """Available KiB from the last line of ``df -Pk`` (fields: fs, size, used, avail, ...)."""
    for line in reversed(output.splitlines()):
        fields = line.split()
        if len(fields) >= 6 and fields[3].isdigit():
            return int(fields[3])
    return None


def _size(kib: int) -> str:
    size = float(kib)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
