"""``orch sites check`` on a Slurm site: the scheduler, Slurm's version and partitions, and
the user's associations (accounts and QoS)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from orch.sites.check_probes import Probe, failure_of
from orch.sites.check_report import Level, SiteReport, asked_for
from orch.sites.needs import Need
from orch.tosca.diagnostics import did_you_mean

_SLURM_VERSION = re.compile(r"slurm(?:-wlm)?\s+(\S+)", re.IGNORECASE)
# node states of sinfo's %T that cannot take jobs; a '*' suffix means not responding
_UNUSABLE = frozenset({"down", "drained", "draining", "drain", "fail", "failing", "future"})
_UNUSABLE |= {"inval", "maint", "unknown", "unk", "not_responding", "powered_down", "power_down"}


@dataclass
class Partition:
    name: str
    default: bool = False
    available: str = "up"
    nodes: int = 0
    states: dict[str, int] = field(default_factory=dict)
    time_limit: str = ""

    @property
    def usable_nodes(self) -> int:
        return sum(n for state, n in self.states.items() if _usable(state))

    def describe(self) -> str:
        states = ", ".join(f"{n} {state}" for state, n in self.states.items())
        plural = "" if self.nodes == 1 else "s"
        return (
            f"{self.name}{'*' if self.default else ''} ({self.available}, {self.nodes} "
            f"node{plural}: {states}; limit {self.time_limit})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "default": self.default,
            "available": self.available,
            "nodes": self.nodes,
            "usable_nodes": self.usable_nodes,
            "states": self.states,
            "time_limit": self.time_limit,
        }


def _usable(state: str) -> bool:
    if state.endswith("*"):
        return False
    base = state.rstrip("~#!%$@^-*").split("+")[0].lower()
    return base not in _UNUSABLE


def judge_scheduler(report: SiteReport, probes: dict[str, Probe]) -> None:
    """Jobs on a site without a batch scheduler (``scheduler: none``)."""
    site = report.site
    if report.needs is None or site.scheduler in BATCH_SCHEDULERS:
        return
    jobs = [n for needs in report.needs.of("scheduler").values() for n in needs]
    if jobs:
        report.add(
            "missing",
            "scheduler",
            f"sites.yaml says scheduler: {site.scheduler}",
            "set scheduler: slurm, sge or pbs for the site in sites.yaml (the batch "
            "scheduler it runs)",
            jobs,
        )


BATCH_SCHEDULERS = ("slurm", "sge", "pbs")


def judge_slurm(report: SiteReport, probes: dict[str, Probe]) -> None:
    site = report.site
    if site.scheduler in ("sge", "pbs"):
        return  # probed by judge_sge; PBS: its commands are checked as the jobs' needs
    jobs = report.needs.of("scheduler").get("slurm", []) if report.needs is not None else []
    needed = bool(jobs) if report.needs is not None else site.scheduler == "slurm"
    slurm: dict[str, Any] = {"version": None, "partitions": []}
    report.facts["slurm"] = slurm
    if "sinfo" not in probes:
        if needed:
            path = probes["path"].first_line if "path" in probes else "?"
            report.add(
                "missing",
                "slurm",
                "sinfo not found" + ("" if jobs else " (scheduler: slurm)"),
                f"PATH on the site is {path}; non-interactive SSH sessions read no "
                "profile: set PATH in the site's environment",
                jobs,
            )
        else:
            report.facts["slurm"] = None
        return
    version = probes["slurm_version"]
    match = _SLURM_VERSION.search(version.output) if version.ok else None
    slurm["version"] = match.group(1) if match else None
    partitions = probes["partitions"]
    if not partitions.ok:
        level: Level = "missing" if needed else "info"
        report.add(
            level,
            "slurm",
            f"sinfo fails: {failure_of(partitions)}",
            "is slurmctld up, and SLURM_CONF set in the site's environment if needed?",
            jobs,
        )
        return
    parsed = parse_partitions(partitions.output)
    slurm["partitions"] = [p.as_dict() for p in parsed.values()]
    slurm["default_partition"] = next((p.name for p in parsed.values() if p.default), None)
    report.add("ok", "slurm", f"Slurm {slurm['version'] or '(version unknown)'}")
    listed = ", ".join(p.describe() for p in parsed.values()) or "none"
    report.add("ok" if parsed else "warning", "partitions", listed)
    if needed:
        _partitions(report, parsed)


def parse_partitions(output: str) -> dict[str, Partition]:
    """Partitions from ``sinfo -h -o '%P|%a|%D|%T|%l'``: one line per partition and node
    state, the default partition marked with '*'."""
    found: dict[str, Partition] = {}
    for line in output.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 5 or not fields[2].isdigit():
            continue
        name, available, count, state, limit = fields
        default = name.endswith("*")
        name = name.rstrip("*")
        part = found.setdefault(name, Partition(name, default, available, 0, {}, limit))
        part.nodes += int(count)
        part.states[state] = part.states.get(state, 0) + int(count)
    return found


def _partitions(report: SiteReport, parsed: dict[str, Partition]) -> None:
    wanted = asked_for(report, "partition")
    if not wanted:
        default = next((p.name for p in parsed.values() if p.default), None)
        if report.needs is None:
            message = "no default partition configured; "
            report.add("info", "partition", f"{message}Slurm's default is {default or 'none'}")
        elif default is None:
            report.add("warning", "partition", "no partition is set and Slurm has no default",
                       "set partition for the site in sites.yaml, or on the jobs",
                       report.needs.of("scheduler").get("slurm"))  # fmt: skip
        return
    for name, needs in wanted.items():
        _partition(report, parsed, name, needs)


def _partition(
    report: SiteReport, parsed: dict[str, Partition], wanted: str, needs: list[Need]
) -> None:
    part = parsed.get(wanted)
    if part is None:
        report.add(
            "missing",
            "partition",
            f"partition '{wanted}' does not exist for this user",
            did_you_mean(wanted, parsed) or None,
            needs,
        )
    elif part.available != "up":
        report.add(
            "warning",
            "partition",
            f"partition '{wanted}' is {part.available}: jobs are queued but do not start",
            needs=needs,
        )
    elif part.usable_nodes == 0:
        report.add(
            "warning",
            "partition",
            f"partition '{wanted}' has no usable node: "
            + ", ".join(f"{n} {s}" for s, n in part.states.items()),
            needs=needs,
        )
    else:
        report.add(
            "ok",
            "partition",
            f"partition '{wanted}' exists ({part.usable_nodes} of {part.nodes} nodes usable)",
            needs=needs,
        )


def judge_associations(report: SiteReport, probes: dict[str, Probe]) -> None:
    wanted = {"account": asked_for(report, "account"), "qos": asked_for(report, "qos")}
    if report.site.scheduler == "sge":
        return  # judge_sge judges them
    if report.needs is None and report.site.scheduler != "slurm":
        return
    if not any(wanted.values()):
        return
    probe = probes.get("associations")
    if probe is None or not probe.ok:
        reason = "sacctmgr not found" if probe is None else failure_of(probe)
        for check, values in wanted.items():
            for value, needs in values.items():
                report.add(
                    "info",
                    check,
                    f"{check} '{value}' not checked: Slurm accounting is not available ({reason})",
                    needs=needs,
                )
        return
    accounts: set[str] = set()
    qos: set[str] = set()
    for line in probe.output.splitlines():
        account, _, levels = line.strip().partition("|")
        if account:
            accounts.add(account)
        qos.update(q for q in levels.split(",") if q)
    report.facts["accounts"] = sorted(accounts)
    report.facts["qos"] = sorted(qos)
    for check, known in (("account", accounts), ("qos", qos)):
        for value, needs in wanted[check].items():
            _association(report, check, value, known, needs)


def _association(
    report: SiteReport, check: str, value: str, known: set[str], needs: list[Need]
) -> None:
    if value in known:
        report.add("ok", check, f"{check} '{value}' is associated with the user", needs=needs)
    elif known:
        report.add(
            "missing",
            check,
            f"{check} '{value}' is not associated with the user",
            did_you_mean(value, known),
            needs,
        )
    else:
        report.add(
            "info", check, f"{check} '{value}' not checked: no association lists it", needs=needs
        )
