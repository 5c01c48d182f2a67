"""The executor contract (tests/conformance.py) for Slurm batch jobs (``orch.nodes.SlurmJob``)
on the loopback Slurm site: its sshd, munge, slurmctld and slurmd, reached as the site's
unprivileged user with a credential token. Another scheduler's subclass names its site fixture,
its ``scheduler`` in sites.yaml and how it lists the jobs that are not over."""

from __future__ import annotations

from typing import Any

import pytest

from conformance import BatchConformance


class TestSlurmJob(BatchConformance):
    site_fixture = "slurm_site"
    scheduler = "slurm"

    def site_settings(self, site: Any, request: pytest.FixtureRequest) -> dict[str, Any]:
        return {"partition": "debug"}
