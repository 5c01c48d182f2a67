"""The executor contract (tests/conformance.py) for batch jobs on the loopback Son of Grid
Engine site: its sshd, sge_qmaster and sge_execd, reached as the site's unprivileged user with
a credential token. The same job nodes as on the Slurm site; sites.yaml says scheduler: sge."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from conformance import BatchConformance, Harness


class TestSgeJob(BatchConformance):
    site_fixture = "sge_site"
    scheduler = "sge"
    job_id_variable = "JOB_ID"
    expected_limit = "60"
    """``h_rt`` of the ``timeout`` job (its ``time: 1 m``), as qstat -j shows it."""

    def site_settings(self, site: Any, request: pytest.FixtureRequest) -> dict[str, Any]:
        return {"partition": "all.q", "environment": dict(site.cluster.env)}

    def active_jobs(self, h: Harness, ids: list[str]) -> list[str]:
        if not ids:
            return []
        out = h.site.cluster.run("qstat", "-u", "*", "-xml").stdout
        states = {job.findtext("JB_job_number", ""): job.findtext("state", "")
                  for job in ET.fromstring(out).iter("job_list")}  # fmt: skip
        return [f"{job} {states[job]}" for job in ids if job in states]

    def known_jobs(self, h: Harness) -> set[str]:
        """Jobs in qstat, and those qacct accounted for (SGE writes a finished job's record a
        moment after it leaves qstat: asked twice, 1.2 s apart, until both answers agree)."""

        def now() -> set[str]:
            listed = h.site.cluster.run("qstat", "-u", "*", "-xml").stdout
            ids = {job.findtext("JB_job_number", "") for job in ET.fromstring(listed).iter(
                "job_list")}  # fmt: skip
            accounted = h.site.cluster.run("qacct", "-j", check=False).stdout
            ids |= {line.split()[1] for line in accounted.splitlines()
                    if line.startswith("jobnumber")}  # fmt: skip
            return ids

        seen = now()
        for _ in range(5):
            time.sleep(1.2)
            again = now()
            if again == seen:
                break
            seen = again
        return seen

    def time_limit(self, h: Harness, job_id: str) -> str:
        shown = h.site.cluster.run("qstat", "-j", job_id).stdout
        for line in shown.splitlines():
            if line.startswith("hard resource_list:"):
                for item in line.split(":", 1)[1].strip().split(","):
                    key, _, value = item.partition("=")
                    if key.strip() == "h_rt":
                        return value.strip()
        return ""
