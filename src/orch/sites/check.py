"""``orch sites check``: what a site offers, in one SSH round trip.

One small shell script goes to the login node on stdin and prints one section per probe (host
name, Slurm version, partitions, associations, modules, container runtimes, free space of the
work folder), each with its exit status; the parse below turns the sections into facts and
findings against what the site's configuration asks for. A finding is ``ok``, ``info``,
``warning`` or ``missing``; a site is ``ok``, ``missing`` (something its configuration needs is
not there: exit 4) or ``unreachable`` (no connection, no login, or no answer: exit 3).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from orch.sites.config import WORK_DIR_PATTERN, Site
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

# The probes. Each `sec NAME cmd...` prints a begin line, the command's output (stderr
# included) and an end line with its exit status; $M (a random mark) keeps a command's output
# from faking a section line. Runs under /bin/sh, whatever the login shell is.
SCRIPT = r"""
M=$ORCH_CHECK_MARK
sec() { _n=$1; shift; printf '%s begin %s\n' "$M" "$_n"; "$@" 2>&1; _r=$?
        printf '\n%s end %s %s\n' "$M" "$_n" "$_r"; }
have() { command -v "$1" >/dev/null 2>&1; }
T=; have timeout && T="timeout $ORCH_CHECK_PROBE_TIMEOUT"
hostname_() { hostname 2>/dev/null || uname -n; }
found() { command -v "$1"; }
modules_() {
  if ! have module; then
    for f in ${MODULESHOME:+"$MODULESHOME/init/sh"} /etc/profile.d/lmod.sh \
        /etc/profile.d/modules.sh /usr/share/lmod/lmod/init/sh /usr/share/modules/init/sh; do
      [ -r "$f" ] && . "$f" >/dev/null 2>&1 && have module && break
    done
  fi
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
sec hostname hostname_
sec user id -un
sec system uname -srm
sec path printf '%s\n' "$PATH"
if have sinfo; then
  sec sinfo found sinfo
  sec slurm_version $T sinfo --version
  sec partitions $T sinfo -h -o '%P|%a|%D|%T|%l'
fi
if have sacctmgr; then
  sec associations $T sacctmgr -nP show assoc where user="$(id -un)" format=account,qos
fi
sec modules modules_
for c in apptainer singularity podman; do
  if have $c; then sec $c $T $c --version; fi
done
sec work_dir workdir_
exit 0
"""

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

    def as_dict(self) -> dict[str, Any]:
        found = {"level": self.level, "check": self.check, "message": self.message}
        return found | ({"hint": self.hint} if self.hint else {})


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

    def add(self, level: Level, check: str, message: str, hint: str | None = None) -> None:
        self.findings.append(Finding(level, check, message, hint))
        if level == "missing" and self.status == "ok":
            self.status = "missing"

    @property
    def exit_code(self) -> int:
        return {"ok": 0, "missing": 4, "unreachable": 3}[self.status]

    def as_dict(self) -> dict[str, Any]:
        site = self.site
        return {
            "site": site.name,
            "host": site.address,
            "port": site.port,
            "user": site.user,
            "status": self.status,
            "error": self.error,
            "seconds": round(self.seconds, 3),
            **self.facts,
            "findings": [f.as_dict() for f in self.findings],
        }


# -- running ------------------------------------------------------------------------------------


def probe_timeout(timeout: float) -> float:
    return max(1.0, min(PROBE_TIMEOUT, timeout / 4))


def probe_environment(site: Site, mark: str, timeout: float = 60.0) -> dict[str, str]:
    """The site's own variables, then the script's parameters (so PATH from sites.yaml is
    the one sinfo is looked up in)."""
    if not WORK_DIR_PATTERN.match(site.work_dir):
        raise ValueError(f"site {site.name}: work_dir {site.work_dir!r} cannot be checked")
    return {
        **site.environment,
        "ORCH_CHECK_MARK": mark,
        "ORCH_CHECK_PROBE_TIMEOUT": f"{probe_timeout(timeout):g}",
        "ORCH_CHECK_MODULES": "\n".join(site.modules),
        "ORCH_CHECK_WORKDIR": site.work_dir,
    }


def check_site(site: Site, transport: Transport, timeout: float = 60.0) -> SiteReport:
    """Probe ``site`` over ``transport`` (one command) and judge what came back. A transport
    error propagates: the caller reports the site unreachable."""
    report = SiteReport(site)
    mark = "@orch-" + secrets.token_hex(6)
    began = time.monotonic()
    result = transport.run(
        "/bin/sh -s",
        env=probe_environment(site, mark, timeout),
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


def _slurm(report: SiteReport, probes: dict[str, Probe]) -> None:
    site = report.site
    needed = site.scheduler == "slurm"
    slurm: dict[str, Any] = {"version": None, "partitions": []}
    report.facts["slurm"] = slurm
    if "sinfo" not in probes:
        if needed:
            path = probes["path"].first_line if "path" in probes else "?"
            report.add(
                "missing",
                "slurm",
                "sinfo not found (scheduler: slurm)",
                f"PATH on the site is {path}; non-interactive SSH sessions read no "
                "profile: set PATH in the site's environment",
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
        )
        return
    parsed = parse_partitions(partitions.output)
    slurm["partitions"] = [p.as_dict() for p in parsed.values()]
    slurm["default_partition"] = next((p.name for p in parsed.values() if p.default), None)
    report.add("ok", "slurm", f"Slurm {slurm['version'] or '(version unknown)'}")
    listed = ", ".join(p.describe() for p in parsed.values()) or "none"
    report.add("ok" if parsed else "warning", "partitions", listed)
    if needed:
        _partition(report, parsed)


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


def _partition(report: SiteReport, parsed: dict[str, Partition]) -> None:
    wanted = report.site.partition
    if wanted is None:
        default = next((p.name for p in parsed.values() if p.default), None)
        report.add(
            "info",
            "partition",
            f"no default partition configured; Slurm's default is {default or 'none'}",
        )
        return
    part = parsed.get(wanted)
    if part is None:
        report.add(
            "missing",
            "partition",
            f"partition '{wanted}' does not exist for this user",
            did_you_mean(wanted, parsed) or None,
        )
    elif part.available != "up":
        report.add(
            "warning",
            "partition",
            f"partition '{wanted}' is {part.available}: jobs are queued but do not start",
        )
    elif part.usable_nodes == 0:
        report.add(
            "warning",
            "partition",
            f"partition '{wanted}' has no usable node: "
            + ", ".join(f"{n} {s}" for s, n in part.states.items()),
        )
    else:
        report.add(
            "ok",
            "partition",
            f"partition '{wanted}' exists ({part.usable_nodes} of {part.nodes} nodes usable)",
        )


def _associations(report: SiteReport, probes: dict[str, Probe]) -> None:
    site = report.site
    wanted = {"account": site.account, "qos": site.qos}
    if site.scheduler != "slurm" or not any(wanted.values()):
        return
    probe = probes.get("associations")
    if probe is None or not probe.ok:
        reason = "sacctmgr not found" if probe is None else _failure(probe)
        for check, value in wanted.items():
            if value:
                report.add(
                    "info",
                    check,
                    f"{check} '{value}' not checked: Slurm accounting is not available ({reason})",
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
    for check, value, known in (("account", site.account, accounts), ("qos", site.qos, qos)):
        if not value:
            continue
        if value in known:
            report.add("ok", check, f"{check} '{value}' is associated with the user")
        elif known:
            report.add(
                "missing",
                check,
                f"{check} '{value}' is not associated with the user",
                did_you_mean(value, known),
            )
        else:
            report.add("info", check, f"{check} '{value}' not checked: no association lists it")


def _modules(report: SiteReport, probes: dict[str, Probe]) -> None:
    site = report.site
    probe = probes.get("modules")
    if probe is None or not probe.ok:
        report.facts["modules"] = None
        if site.modules:
            report.add(
                "missing",
                "modules",
                f"no `module` command on the site (modules: {', '.join(site.modules)})",
                "set MODULESHOME or PATH in the site's environment if the site has one",
            )
        return
    lines = probe.output.splitlines()
    system = lines[0].strip() if lines and not lines[0].startswith(("avail ", "unavail ")) else ""
    missing = [line.split(" ", 1)[1] for line in lines if line.startswith("unavail ")]
    report.facts["modules"] = {"system": system or None, "missing": missing}
    if not site.modules:
        report.add("ok", "modules", system or "module command available")
    elif missing:
        report.add(
            "missing",
            "modules",
            f"not available: {', '.join(missing)}",
            "`module avail` on the site lists what is",
        )
    else:
        report.add("ok", "modules", f"{', '.join(site.modules)} available ({system or '?'})")


def _containers(report: SiteReport, probes: dict[str, Probe]) -> None:
    runtimes: dict[str, str | None] = {}
    for name in ("apptainer", "singularity", "podman"):
        probe = probes.get(name)
        match = _VERSION.search(probe.output) if probe is not None and probe.ok else None
        runtimes[name] = match.group(1) if match else None
    report.facts["containers"] = runtimes
    wanted = report.site.container_runtime
    if wanted is None:
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
    _slurm,
    _associations,
    _modules,
    _containers,
    _work_dir,
)


# -- several sites --------------------------------------------------------------------------------


def check_sites(
    sites: list[Site],
    policy: Any,
    *,
    connect_timeout: float = 10.0,
    timeout: float = 60.0,
    store: Any = None,
) -> Iterator[SiteReport]:
    """Check each site (at the same time, one connection each); reports come in ``sites``
    order. ``policy`` is the transport's HostKeyPolicy for sites without known_hosts."""
    from concurrent.futures import ThreadPoolExecutor

    if not sites:
        return
    pool = ThreadPoolExecutor(max_workers=min(8, len(sites)), thread_name_prefix="orch-check")
    options = {"connect_timeout": connect_timeout, "timeout": timeout, "store": store}
    try:
        futures = [pool.submit(check_one, site, policy, **options) for site in sites]
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
        return check_site(site, transport, timeout)
    except TransportError as exc:
        error = _login_error(site, str(exc), host.identity_file)
        return SiteReport(site, "unreachable", error, time.monotonic() - began)
    finally:
        transport.close()


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
