"""``orch sites check``: what a site offers, in one SSH round trip.

One small shell script goes to the login node on stdin and prints one section per probe (host
name, Slurm version, partitions and associations, or on an SGE site (``scheduler: sge``) SGE's
version, queues and parallel environments; modules, container runtimes, free space of the work
folder), each with its exit status; the parse below turns the sections into facts and
findings against what the site's configuration asks for. A finding is ``ok``, ``info``,
``warning`` or ``missing``; a site is ``ok``, ``missing`` (something its configuration needs is
not there: exit 4) or ``unreachable`` (no connection, no login, or no answer: exit 3).

Given what a blueprint needs of the site (``orch.sites.needs``), the same round trip also looks
up the commands its nodes run (their scheduler's, ``enqueue_compss`` once their modules are
loaded, the image builders and runtimes) and the judging is against those needs, each finding
naming the nodes behind it. Without a blueprint the check is about sites.yaml's settings, and
says what it did not check.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from orch.sites.config import WORK_DIR_PATTERN, Site
from orch.sites.modules import MODULE_INIT
from orch.sites.needs import BlueprintNeeds, Need, SiteNeeds
from orch.tosca.diagnostics import did_you_mean
from orch.transport.base import Transport

Level = Literal["ok", "info", "warning", "missing"]
Status = Literal["ok", "missing", "unreachable"]

LOW_SPACE_KIB = 1024 * 1024
"""Below 1 GiB free in the work folder, the check warns."""
PROBE_TIMEOUT = 15.0
"""Seconds one probe (sinfo, sacctmgr, ...) may take on the site before it is given up (at
most a quarter of the whole check's time): a hung slurmctld makes sinfo wait for ever."""
TIMED_OUT = (124, 137)
"""Exit statuses of a probe stopped by ``timeout``."""
GENERIC_COMMANDS = ("sbatch", "squeue", "scancel", "sacct", "enqueue_compss")
"""Looked up when no blueprint says what is needed: Slurm's job commands, and PyCOMPSs'."""
SLURM_JOB_COMMANDS = ("sbatch", "squeue", "scancel")
SGE_JOB_COMMANDS = ("qsub", "qstat", "qdel")
SGE_GENERIC_COMMANDS = (*SGE_JOB_COMMANDS, "qacct", "enqueue_compss")
"""What GENERIC_COMMANDS are on an SGE site."""

# The probes. Each `sec NAME cmd...` prints a begin line, the command's output (stderr
# included) and an end line with its exit status; $M (a random mark) keeps a command's output
# from faking a section line. Runs under /bin/sh, whatever the login shell is.
_SCRIPT = r"""
M=$ORCH_CHECK_MARK
sec() { _n=$1; shift; printf '%s begin %s\n' "$M" "$_n"; "$@" 2>&1; _r=$?
        printf '\n%s end %s %s\n' "$M" "$_n" "$_r"; }
have() { command -v "$1" >/dev/null 2>&1; }
T=; have timeout && T="timeout $ORCH_CHECK_PROBE_TIMEOUT"
hostname_() { hostname 2>/dev/null || uname -n; }
found() { command -v "$1"; }
sge_version_() { $T qstat -help 2>&1 | head -n 1; }
modules_() {
  @MODULE_INIT@
  have module || { echo "no module command"; return 127; }
  module --version 2>&1 | sed -n '/[0-9]/{p;q;}'
  set -f  # module names are words, not patterns
  for m in $ORCH_CHECK_MODULES; do
    if module is-avail "$m" >/dev/null 2>&1 || module -t avail "$m" 2>&1 | awk -v m="$m" \
        '$0==m || index($0, m "/")==1 || index($0, m "(")==1 {f=1} END {exit !f}'; then
      echo "avail $m"
    else
      echo "unavail $m"
    fi
  done
  set +f
}
workdir_() {
  d=$( set -u; eval "printf '%s' \"$ORCH_CHECK_WORKDIR\"" ) || return 3
  case $d in "~") d=$HOME ;; "~/"*) d=$HOME/${d#"~/"} ;; /*) ;; *) d=$HOME/$d ;; esac
  echo "path=$d"
  p=$d
  while [ ! -e "$p" ]; do p=$(dirname -- "$p"); done
  echo "existing=$p"
  if [ -d "$p" ] && [ -w "$p" ]; then echo writable=yes; else echo writable=no; fi
  $T df -Pk -- "$p" | tail -n 1
}
commands_() {
  set -f
  for c in $ORCH_CHECK_COMMANDS; do
    if p=$(command -v "$c" 2>/dev/null); then echo "found $c $p"; else echo "missing $c"; fi
  done
  set +f
}
loaded_() {
  @MODULE_INIT@
  printf '%s\n' "$ORCH_CHECK_LOADED" | while IFS='|' read -r mods c; do
    [ -n "$c" ] || continue
    ( set -f; l=
      if [ -n "$mods" ] && ! module load $mods >/dev/null 2>&1; then l=noload-; fi
      if p=$(command -v "$c" 2>/dev/null); then echo "${l}found $mods|$c $p"
      else echo "${l}missing $mods|$c"; fi )
  done
}
sec hostname hostname_
sec user id -un
sec system uname -srm
sec path printf '%s\n' "$PATH"
if [ "$ORCH_CHECK_SCHEDULER" = sge ]; then
  if have qstat; then
    sec qstat found qstat
    sec sge_version sge_version_
    if have qconf; then
      sec queues $T qconf -sql
      sec pes $T qconf -spl
    fi
  fi
else
  if have sinfo; then
    sec sinfo found sinfo
    sec slurm_version $T sinfo --version
    sec partitions $T sinfo -h -o '%P|%a|%D|%T|%l'
  fi
  if have sacctmgr; then
    sec associations $T sacctmgr -nP show assoc where user="$(id -un)" format=account,qos
  fi
fi
# as orch's commands find them: commands_ without the module system's start-up file (a
# command without modules is run so), loaded_ and modules_ with it (orch reads it to load them)
sec commands commands_
[ -z "$ORCH_CHECK_LOADED" ] || sec loaded loaded_
sec modules modules_
for c in apptainer singularity podman; do
  if have $c; then sec $c $T $c --version; fi
done
sec work_dir workdir_
exit 0
"""
SCRIPT = _SCRIPT.replace("@MODULE_INIT@", MODULE_INIT)

_SECTION = re.compile(r"(?P<mark>\S+) (?P<what>begin|end) (?P<name>\w+)(?: (?P<rc>-?\d+))?\Z")
_SLURM_VERSION = re.compile(r"slurm(?:-wlm)?\s+(\S+)", re.IGNORECASE)
_VERSION = re.compile(r"(\d+(?:\.\d+)+\S*)")
# node states of sinfo's %T that cannot take jobs; a '*' suffix means not responding
_UNUSABLE = frozenset({"down", "drained", "draining", "drain", "fail", "failing", "future"})
_UNUSABLE |= {"inval", "maint", "unknown", "unk", "not_responding", "powered_down", "power_down"}


@dataclass(frozen=True)
class Probe:
    """One section of the script's output."""

    output: str
    rc: int

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def first_line(self) -> str:
        return next((line.strip() for line in self.output.splitlines() if line.strip()), "")

    @property
    def last_line(self) -> str:
        """The conclusion of an error (sinfo ends with its 'fatal:' line)."""
        lines = [line.strip() for line in self.output.splitlines() if line.strip()]
        return lines[-1] if lines else ""


@dataclass(frozen=True)
class Finding:
    level: Level
    check: str
    """Short name of what was checked: slurm, partition, account, modules, work_dir, ..."""
    message: str
    hint: str | None = None
    nodes: tuple[str, ...] = ()
    """The blueprint's nodes that need what was checked."""

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {"level": self.level, "check": self.check, "message": self.message}
        found |= {"hint": self.hint} if self.hint else {}
        return found | ({"nodes": list(self.nodes)} if self.nodes else {})


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


@dataclass
class SiteReport:
    """What ``orch sites check`` found on one site."""

    site: Site
    status: Status = "ok"
    error: str | None = None
    """Why the site is unreachable (names the host and port)."""
    seconds: float = 0.0
    facts: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    needs: SiteNeeds | None = None
    """What a blueprint needs here (None: check sites.yaml's settings only)."""

    def add(
        self,
        level: Level,
        check: str,
        message: str,
        hint: str | None = None,
        needs: list[Need] | None = None,
    ) -> None:
        """A finding; ``needs`` are the blueprint's needs it is about (their nodes are named)."""
        if needs and level in ("ok", "info"):
            message += f" (for {', '.join(dict.fromkeys(n.node for n in needs))})"
        elif needs:
            message += f" (needed by {_why(needs)})"
        nodes = tuple(dict.fromkeys(n.node for n in needs or []))
        self.findings.append(Finding(level, check, message, hint, nodes))
        if level == "missing" and self.status == "ok":
            self.status = "missing"

    @property
    def exit_code(self) -> int:
        return {"ok": 0, "missing": 4, "unreachable": 3}[self.status]

    def as_dict(self) -> dict[str, Any]:
        site = self.site
        blueprint = {"nodes": self.needs.nodes} if self.needs is not None else {}
        return {
            "site": site.name,
            "host": site.address,
            "port": site.port,
            "user": site.user,
            "status": self.status,
            "error": self.error,
            "seconds": round(self.seconds, 3),
            **self.facts,
            **blueprint,
            "findings": [f.as_dict() for f in self.findings],
        }


def _why(needs: list[Need]) -> str:
    """``wordcount: submits the job; sim: ...``: each node once, with what it does."""
    found: dict[str, str] = {}
    for need in needs:
        found.setdefault(need.node, need.why)
    return "; ".join(f"{node}: {why}" for node, why in found.items())


# -- running ------------------------------------------------------------------------------------


def probe_timeout(timeout: float) -> float:
    return max(1.0, min(PROBE_TIMEOUT, timeout / 4))


def probe_environment(
    site: Site, mark: str, timeout: float = 60.0, needs: SiteNeeds | None = None
) -> dict[str, str]:
    """The site's own variables, then the script's parameters (so PATH from sites.yaml is
    the one sinfo is looked up in): what to look up is what ``needs`` names, else sites.yaml's
    modules and the usual commands."""
    if not WORK_DIR_PATTERN.match(site.work_dir):
        raise ValueError(f"site {site.name}: work_dir {site.work_dir!r} cannot be checked")
    if needs is None:
        generic = SGE_GENERIC_COMMANDS if site.scheduler == "sge" else GENERIC_COMMANDS
        modules, commands, loaded = list(site.modules), list(generic), []
    else:
        modules, commands = needs.modules(), needs.plain_commands()
        loaded = [" ".join(after) + "|" + command for after, command in needs.loaded_commands()]
    return {
        **site.environment,
        "ORCH_CHECK_MARK": mark,
        "ORCH_CHECK_SCHEDULER": site.scheduler,
        "ORCH_CHECK_PROBE_TIMEOUT": f"{probe_timeout(timeout):g}",
        "ORCH_CHECK_MODULES": "\n".join(modules),
        "ORCH_CHECK_COMMANDS": " ".join(commands),
        "ORCH_CHECK_LOADED": "\n".join(loaded),
        "ORCH_CHECK_WORKDIR": site.work_dir,
    }


def check_site(
    site: Site, transport: Transport, timeout: float = 60.0, needs: SiteNeeds | None = None
) -> SiteReport:
    """Probe ``site`` over ``transport`` (one command) and judge what came back, against
    ``needs`` when a blueprint gives them. A transport error propagates: the caller reports
    the site unreachable."""
    report = SiteReport(site, needs=needs)
    mark = "@orch-" + secrets.token_hex(6)
    began = time.monotonic()
    result = transport.run(
        "/bin/sh -s",
        env=probe_environment(site, mark, timeout, needs),
        timeout=timeout,
        stdin=SCRIPT.encode(),
    )
    report.seconds = time.monotonic() - began
    probes = parse_sections(result.stdout, mark)
    if result.timed_out:
        _facts(report, probes)
        hung = unfinished(result.stdout, mark) or "check"
        report.add(
            "missing",
            hung,
            f"no answer: the check was stopped after {timeout:g} s while probing {hung}",
            "run the check again with a longer --timeout",
        )
        return report
    if "work_dir" not in probes:
        report.status = "unreachable"
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        report.error = (
            f"{transport.host}: the check script did not run to its end "
            f"(exit {result.rc}): {' / '.join(tail) or 'no output'}"
        )
        return report
    judge(report, probes)
    return report


def unfinished(stdout: str, mark: str) -> str | None:
    """The section that had begun but not ended when the output stopped."""
    current = None
    for line in stdout.splitlines():
        found = _SECTION.match(line) if line.startswith(mark) else None
        if found is not None and found["mark"] == mark:
            current = found["name"] if found["what"] == "begin" else None
    return current


def parse_sections(stdout: str, mark: str) -> dict[str, Probe]:
    """The script's sections by name; lines outside sections (a chatty login) are dropped."""
    probes: dict[str, Probe] = {}
    current: str | None = None
    lines: list[str] = []
    for line in stdout.splitlines():
        found = _SECTION.match(line) if line.startswith(mark) else None
        if found is None or found["mark"] != mark:
            if current is not None:
                lines.append(line)
            continue
        if found["what"] == "begin":
            current, lines = found["name"], []
        elif current == found["name"]:
            probes[current] = Probe("\n".join(lines).strip("\n"), int(found["rc"] or 0))
            current = None
    return probes


# -- judging ------------------------------------------------------------------------------------


def judge(report: SiteReport, probes: dict[str, Probe]) -> None:
    """Facts from the probes, and findings against what the site's configuration needs."""
    _facts(report, probes)
    for step in _STEPS:
        step(report, probes)


def _facts(report: SiteReport, probes: dict[str, Probe]) -> None:
    for name, fact in (("hostname", "hostname"), ("user", "remote_user"), ("system", "system")):
        if name in probes and probes[name].ok:
            report.facts[fact] = probes[name].first_line


def _failure(probe: Probe) -> str:
    """Why a probe failed, in a few words."""
    if probe.rc in TIMED_OUT:
        return "no answer in time (the probe was stopped)"
    return probe.last_line or f"exit status {probe.rc}"


def _scheduler(report: SiteReport, probes: dict[str, Probe]) -> None:
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


def _slurm(report: SiteReport, probes: dict[str, Probe]) -> None:
    site = report.site
    if site.scheduler in ("sge", "pbs"):
        return  # probed by _sge; PBS: its commands are checked as the jobs' needs
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
            f"sinfo fails: {_failure(partitions)}",
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


def _wanted(report: SiteReport, kind: Literal["partition", "account", "qos"]
            ) -> dict[str, list[Need]]:
    """The values of a setting to check, with the needs behind each: the blueprint's, else
    sites.yaml's own (with no need behind it)."""
    if report.needs is not None:
        return report.needs.of(kind)
    value = getattr(report.site, kind)
    return {value: []} if value else {}


def _partitions(report: SiteReport, parsed: dict[str, Partition]) -> None:
    wanted = _wanted(report, "partition")
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


def _associations(report: SiteReport, probes: dict[str, Probe]) -> None:
    wanted = {"account": _wanted(report, "account"), "qos": _wanted(report, "qos")}
    if report.site.scheduler == "sge":
        return  # _sge judges them
    if report.needs is None and report.site.scheduler != "slurm":
        return
    if not any(wanted.values()):
        return
    probe = probes.get("associations")
    if probe is None or not probe.ok:
        reason = "sacctmgr not found" if probe is None else _failure(probe)
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


# -- Son of Grid Engine --------------------------------------------------------------------------

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


def _sge(report: SiteReport, probes: dict[str, Probe]) -> None:
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
            f"qconf {which} fails: {_failure(failed)}",
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
    for account, needs in _wanted(report, "account").items():
        report.add("info", "account", f"account '{account}' is passed on as qsub -A (SGE does "
                   "not check it)", needs=needs)  # fmt: skip


def _queues(report: SiteReport, queues: list[str]) -> None:
    """The partition (a job's, or the site's) is an SGE queue (``-q``)."""
    from fnmatch import fnmatchcase

    wanted = _wanted(report, "partition")
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


def _sge_unsupported(report: SiteReport, probes: dict[str, Probe]) -> None:
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


def _modules(report: SiteReport, probes: dict[str, Probe]) -> None:
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


def _containers(report: SiteReport, probes: dict[str, Probe]) -> None:
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


def _commands(report: SiteReport, probes: dict[str, Probe]) -> None:
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


def _not_checked(report: SiteReport, probes: dict[str, Probe]) -> None:
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


def _work_dir(report: SiteReport, probes: dict[str, Probe]) -> None:
    site = report.site
    probe = probes["work_dir"]
    if probe.rc == 3:
        report.add(
            "missing",
            "work_dir",
            f"work_dir {site.work_dir}: {_failure(probe)}",
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


_STEPS: tuple[Callable[[SiteReport, dict[str, Probe]], None], ...] = (
    _scheduler,
    _slurm,
    _sge,
    _sge_unsupported,
    _associations,
    _modules,
    _containers,
    _commands,
    _work_dir,
    _not_checked,
)


# -- several sites --------------------------------------------------------------------------------


def check_sites(
    sites: list[Site],
    policy: Any,
    *,
    connect_timeout: float = 10.0,
    timeout: float = 60.0,
    store: Any = None,
    needs: BlueprintNeeds | None = None,
) -> Iterator[SiteReport]:
    """Check each site (at the same time, one connection each); reports come in ``sites``
    order. ``policy`` is the transport's HostKeyPolicy for sites without known_hosts;
    ``needs``, a blueprint's, make each site checked for what the blueprint needs there."""
    from concurrent.futures import ThreadPoolExecutor

    if not sites:
        return
    pool = ThreadPoolExecutor(max_workers=min(8, len(sites)), thread_name_prefix="orch-check")
    options = {"connect_timeout": connect_timeout, "timeout": timeout, "store": store}
    try:
        futures = [
            pool.submit(check_one, site, policy, **options, needs=_needs_of(needs, site))
            for site in sites
        ]
        for future in futures:
            yield future.result()
    finally:
        # Ctrl-C must not wait for the other sites' checks
        pool.shutdown(wait=False, cancel_futures=True)


def check_one(
    site: Site,
    policy: Any,
    *,
    connect_timeout: float = 10.0,
    timeout: float = 60.0,
    store: Any = None,
    needs: SiteNeeds | None = None,
) -> SiteReport:
    """Connect to ``site`` and check it; any failure to get there is an unreachable report."""
    from orch.sites.credentials import CredentialError
    from orch.transport.base import TransportError
    from orch.transport.ssh import SshTransport

    began = time.monotonic()
    if not WORK_DIR_PATTERN.match(site.work_dir):
        return SiteReport(
            site,
            "unreachable",
            f"{site.login()}: work_dir {site.work_dir!r} "
            "holds quotes, backslashes or command substitution",
        )
    try:
        host = site.host(store)
    except CredentialError as exc:
        return SiteReport(site, "unreachable", f"{site.login()}: {exc}")
    transport = SshTransport(host, policy_for(site, policy), connect_timeout)
    try:
        return check_site(site, transport, timeout, needs)
    except TransportError as exc:
        error = _login_error(site, str(exc), host.identity_file)
        return SiteReport(site, "unreachable", error, time.monotonic() - began, needs=needs)
    finally:
        transport.close()


def _needs_of(needs: BlueprintNeeds | None, site: Site) -> SiteNeeds | None:
    """A blueprint's needs on ``site`` (none for a site it does not use); None: no blueprint."""
    if needs is None:
        return None
    return needs.sites.get(site.name) or SiteNeeds(site.name)


@dataclass
class LocalReport:
    """What orch's own machine lacks of what the blueprint needs here (image builders)."""

    findings: list[Finding] = field(default_factory=list)

    @property
    def status(self) -> Status:
        return "missing" if any(f.level == "missing" for f in self.findings) else "ok"

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "findings": [f.as_dict() for f in self.findings]}


LOCAL_HINTS = {
    "apptainer": "install Apptainer here (or podman: builder podman), or build on the site: "
    "build_on: site",
    "podman": "install podman here (or use builder apptainer), or build on the site: "
    "build_on: site",
}


def check_local(needs: BlueprintNeeds) -> LocalReport:
    """orch's machine against the blueprint's needs here: commands on orch's PATH."""
    from orch.sites.needs import missing_here

    report = LocalReport()
    missing = missing_here(needs.local)
    for name, wanting in missing.items():
        message = f"{name} not found on this machine (needed by {_why(wanting)})"
        nodes = tuple(dict.fromkeys(n.node for n in wanting))
        report.findings.append(Finding("missing", name, message, LOCAL_HINTS.get(name), nodes))
    present = [n.name for n in needs.local if n.name not in missing]
    if present:
        found = ", ".join(dict.fromkeys(present))
        nodes = tuple(dict.fromkeys(n.node for n in needs.local if n.name not in missing))
        report.findings.append(Finding("ok", "builders", f"found: {found}", None, nodes))
    for note in needs.notes:
        report.findings.append(Finding("info", "blueprint", note))
    return report


def _login_error(site: Site, message: str, key_file: str | None) -> str:
    """Name a credential by its token rather than by its file, and say how to install it."""
    if not site.credentials or not key_file:
        return message
    message = message.replace(f"key {key_file}", f"credential {site.credentials}")
    if "authentication failed" in message:
        message += (
            f"; is its public key in ~/.ssh/authorized_keys of {site.user or 'the user'} on "
            f"the site? (`orch credentials public-key {site.credentials}` prints it)"
        )
    return message


def policy_for(site: Site, policy: Any) -> Any:
    """The command line's known_hosts files win; else the site's own; else the default."""
    from dataclasses import replace

    if policy.known_hosts_files or not site.known_hosts:
        return policy
    return replace(
        policy,
        known_hosts_files=[site.known_hosts],
        known_hosts_file=policy.known_hosts_file or site.known_hosts,
    )
