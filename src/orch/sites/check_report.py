"""What ``orch sites check`` found on one site: its findings and their levels.

A finding is ``ok``, ``info``, ``warning`` or ``missing``; a site is ``ok``, ``missing``
(something its configuration needs is not there: exit 4) or ``unreachable`` (no connection, no
login, or no answer: exit 3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from orch.sites.config import Site
from orch.sites.needs import Need, SiteNeeds

Level = Literal["ok", "info", "warning", "missing"]
Status = Literal["ok", "missing", "unreachable"]


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
            message += f" (needed by {why_needed(needs)})"
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


def why_needed(needs: list[Need]) -> str:
    """``wordcount: submits the job; sim: ...``: each node once, with what it does."""
    found: dict[str, str] = {}
    for need in needs:
        found.setdefault(need.node, need.why)
    return "; ".join(f"{node}: {why}" for node, why in found.items())


def asked_for(
    report: SiteReport, kind: Literal["partition", "account", "qos"]
) -> dict[str, list[Need]]:
    """The values of a setting to check, with the needs behind each: the blueprint's, else
    sites.yaml's own (with no need behind it)."""
    if report.needs is not None:
        return report.needs.of(kind)
    value = getattr(report.site, kind)
    return {value: []} if value else {}
