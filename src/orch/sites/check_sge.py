"""``orch sites check`` on a Son of Grid Engine site (``scheduler: sge``): SGE's version, its
queues and parallel environments, and what SGE (or PBS) cannot honour."""

from __future__ import annotations

import re
from typing import Any

from orch.sites.check_probes import Probe, failure_of
from orch.sites.check_report import SiteReport, asked_for
from orch.tosca.diagnostics import did_you_mean

SGE_HINT = ("put SGE's bin folder on PATH in the site's environment (sites.yaml), with SGE_ROOT "
            "and SGE_CELL if the site's sessions lack them")
_SGE_VERSION = re.compile(r"^\s*((?:[A-Za-z]+[ /-])*?(?:SGE|GE|OGS|UGE|Grid Engine))\s+(\d\S*)",
                          re.IGNORECASE)
_NONE_DEFINED = re.compile(r"^no .* defined$", re.IGNORECASE)


def parse_sge_list(probe: Probe) -> list[str] | None:
    """Names from ``qconf -sql`` or ``-spl`` (one a line); [] when qconf says there are none
    ('no parallel environment defined'); None when it failed."""
    if not probe.ok:
        return [] if _NONE_DEFINED.match(probe.last_line) else None
    return [line.strip() for line in probe.output.splitlines() if line.strip()]


def judge_sge(report: SiteReport, probes: dict[str, Probe]) -> None:
    """An SGE site (``scheduler: sge``): its version, queues (a job's partition) and parallel
    environments (a job of more than one slot), and what SGE cannot honour."""
    site = report.site
    if site.scheduler != "sge":
        return
    jobs = report.needs.of("scheduler").get("sge", []) if report.needs is not None else []
    needed = bool(jobs) if report.needs is not None else True
    sge: dict[str, Any] = {"version": None, "queues": [], "parallel_environments": []}
    report.facts["sge"] = sge
    if "qstat" not in probes:
        if needed:
            path = probes["path"].first_line if "path" in probes else "?"
            report.add(
                "missing",
                "sge",
                "qstat not found" + ("" if jobs else " (scheduler: sge)"),
                f"PATH on the site is {path}; non-interactive SSH sessions read no "
                f"profile: {SGE_HINT}",
                jobs,
            )
        return
    version = probes.get("sge_version")
    match = _SGE_VERSION.search(version.first_line) if version is not None else None
    sge["version"] = match.group(2) if match else None
    title = match.group(1) if match else "SGE"
    if "queues" not in probes:
        report.add("ok", "sge", f"{title} {sge['version'] or '(version unknown)'}")
        report.add("info", "queues", "not checked: qconf not found on the site", needs=jobs)
        return
    queues, pes = parse_sge_list(probes["queues"]), parse_sge_list(probes["pes"])
    if queues is None or pes is None:
        failed = probes["queues"] if queues is None else probes["pes"]
        which = "-sql" if queues is None else "-spl"
        report.add(
            "missing" if needed else "info",
            "sge",
            f"qconf {which} fails: {failure_of(failed)}",
            "is sge_qmaster up, and SGE_ROOT, SGE_CELL (and SGE_QMASTER_PORT if the site "
            "needs it) set in the site's environment?",
            jobs,
        )
        return
    sge["queues"], sge["parallel_environments"] = queues, pes
    report.add("ok", "sge", f"{title} {sge['version'] or '(version unknown)'}")
    report.add("ok" if queues else "warning", "queues", ", ".join(queues) or "none")
    report.add("info", "parallel_environments", ", ".join(pes) or "none")
    if needed:
        _queues(report, queues)
        _parallel_environments(report, pes)
    for account, needs in asked_for(report, "account").items():
        report.add("info", "account", f"account '{account}' is passed on as qsub -A (SGE does "
                   "not check it)", needs=needs)  # fmt: skip


def _queues(report: SiteReport, queues: list[str]) -> None:
    """The partition (a job's, or the site's) is an SGE queue (``-q``)."""
    from fnmatch import fnmatchcase

    wanted = asked_for(report, "partition")
    if not wanted and report.needs is None:
        report.add("info", "partition", "no default queue configured; SGE picks one of "
                   f"{', '.join(queues) or 'none'}")  # fmt: skip
    for name, needs in wanted.items():
        listed = ", ".join(queues) or "none"
        # -q takes queue lists, queue@host and wildcards: each must name a listed queue
        asked = [q.split("@", 1)[0] for q in name.split(",") if q.strip()]
        unknown = [q for q in asked if not any(fnmatchcase(queue, q) for queue in queues)]
        if unknown:
            report.add(
                "missing",
                "partition",
                f"partition '{name}': no SGE queue {', '.join(map(repr, unknown))} "
                f"(queues: {listed})",
                did_you_mean(unknown[0], queues) or "partition is a queue on SGE: "
                "`qconf -sql` lists them",
                needs,
            )
        else:
            report.add("ok", "partition", f"queue '{name}' exists", needs=needs)


def _parallel_environments(report: SiteReport, pes: list[str]) -> None:
    """The parallel environment of the jobs of more than one slot; without a blueprint, the
    site's (default mpi), which such jobs would use."""
    listed = ", ".join(pes) or "none"
    if report.needs is not None:
        wanted = report.needs.of("parallel_environment")
    else:
        wanted = {report.site.parallel_environment or "mpi": []}
    for name, needs in wanted.items():
        if name in pes:
            report.add("ok", "parallel_environment", f"parallel environment '{name}' exists",
                       needs=needs)  # fmt: skip
            continue
        configured = report.needs is not None or report.site.parallel_environment is not None
        where = "" if report.site.parallel_environment else " (the default)"
        report.add(
            "missing" if configured else "warning",
            "parallel_environment",
            f"parallel environment '{name}'{where} does not exist (parallel environments: "
            f"{listed})" + ("" if needs else ": jobs of more than one slot cannot run"),
            did_you_mean(name, pes) or "set parallel_environment for the site in sites.yaml "
            "to one that exists (`qconf -spl` lists them)",
            needs,
        )


def judge_sge_unsupported(report: SiteReport, probes: dict[str, Probe]) -> None:
    """What the jobs (or, without a blueprint, sites.yaml) ask that SGE cannot honour."""
    from orch.sites.needs import SGE_REFUSES

    site = report.site
    if site.scheduler not in ("sge", "pbs"):
        return
    title = "SGE" if site.scheduler == "sge" else "PBS"
    hints = SGE_REFUSES if site.scheduler == "sge" else {
        "qos": "PBS has no QoS: remove it (or use a queue: the partition property)"}
    if report.needs is None:
        if site.qos:
            report.add("missing", "qos", f"site {site.name} runs {title}, which cannot honour "
                       f"qos '{site.qos}' (sites.yaml)", hints["qos"])  # fmt: skip
        return
    for option, needs in report.needs.of("unsupported").items():
        values = ", ".join(dict.fromkeys(f"'{n.value}'" for n in needs))
        report.add(
            "missing",
            option,
            f"site {site.name} runs {title}, which cannot honour {option} {values}",
            hints.get(option),
            needs,
        )
