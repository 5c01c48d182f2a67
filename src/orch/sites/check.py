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

The parts, one job each: ``check_probes`` (the script and the parse of its sections),
``check_report`` (findings, their levels, the site's report), ``check_slurm`` and ``check_sge``
(each scheduler's checks), ``check_generic`` (modules, commands, container runtimes, the work
folder); here, the order the checks run in, and the checking of one site or several. Every name
is importable from here.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from orch.sites.check_generic import COMMAND_HINTS as COMMAND_HINTS
from orch.sites.check_generic import DEFAULT_HINT as DEFAULT_HINT
from orch.sites.check_generic import LOW_SPACE_KIB as LOW_SPACE_KIB
from orch.sites.check_generic import SLURM_HINT as SLURM_HINT
from orch.sites.check_generic import (
    judge_commands,
    judge_containers,
    judge_modules,
    judge_not_checked,
    judge_work_dir,
)
from orch.sites.check_generic import parse_commands as parse_commands
from orch.sites.check_probes import GENERIC_COMMANDS as GENERIC_COMMANDS
from orch.sites.check_probes import PROBE_TIMEOUT as PROBE_TIMEOUT
from orch.sites.check_probes import SCRIPT as SCRIPT
from orch.sites.check_probes import SGE_GENERIC_COMMANDS as SGE_GENERIC_COMMANDS
from orch.sites.check_probes import SGE_JOB_COMMANDS as SGE_JOB_COMMANDS
from orch.sites.check_probes import SLURM_JOB_COMMANDS as SLURM_JOB_COMMANDS
from orch.sites.check_probes import TIMED_OUT as TIMED_OUT
from orch.sites.check_probes import Probe as Probe
from orch.sites.check_probes import parse_sections as parse_sections
from orch.sites.check_probes import probe_environment as probe_environment
from orch.sites.check_probes import probe_timeout as probe_timeout
from orch.sites.check_probes import unfinished as unfinished
from orch.sites.check_report import Finding as Finding
from orch.sites.check_report import Level as Level
from orch.sites.check_report import SiteReport as SiteReport
from orch.sites.check_report import Status as Status
from orch.sites.check_report import why_needed
from orch.sites.check_sge import SGE_HINT as SGE_HINT
from orch.sites.check_sge import judge_sge, judge_sge_unsupported
from orch.sites.check_sge import parse_sge_list as parse_sge_list
from orch.sites.check_slurm import BATCH_SCHEDULERS as BATCH_SCHEDULERS
from orch.sites.check_slurm import Partition as Partition
from orch.sites.check_slurm import judge_associations, judge_scheduler, judge_slurm
from orch.sites.check_slurm import parse_partitions as parse_partitions
from orch.sites.config import WORK_DIR_PATTERN, Site
from orch.sites.needs import BlueprintNeeds, SiteNeeds
from orch.transport.base import Transport


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


_STEPS: tuple[Callable[[SiteReport, dict[str, Probe]], None], ...] = (
    judge_scheduler,
    judge_slurm,
    judge_sge,
    judge_sge_unsupported,
    judge_associations,
    judge_modules,
    judge_containers,
    judge_commands,
    judge_work_dir,
    judge_not_checked,
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
        message = f"{name} not found on this machine (needed by {why_needed(wanting)})"
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
