"""The executor contract (tests/conformance.py) for PyCOMPSs workflows (``orch.nodes.PyCOMPSsJob``)
on the loopback Slurm site. The PyCOMPSs runtime cannot be installed here: the site's
``enqueue_compss`` is the stand-in of ``tests/sites/pycompss`` (the ``compss_bin`` fixture), which
submits a real Slurm job running the application with plain python; the rest is real."""

from __future__ import annotations

from typing import Any

import pytest

from conformance import LAST_LINE, BatchConformance, Harness
from sites.slurm import PATH

APPS = {
    "ok": 'print("hello from the job")\n',
    "fail": f'import sys\nprint("first line")\nprint("{LAST_LINE}", file=sys.stderr)\n'
            "sys.exit(3)\n",
    "slow": "import os, time\n"
            "open(os.path.join(SCRATCH, 'started.' + os.environ['SLURM_JOB_ID']), 'w').close()\n"
            "while not os.path.exists(os.path.join(SCRATCH, 'go')):\n    time.sleep(0.2)\n"
            "print('done')\n",
    "secret": "import os\ntoken = os.environ['TOKEN']\nprint('the token is', token)\n"
              "open(os.path.join(SCRATCH, 'seen'), 'w').write(token + '\\n')\n",
}  # fmt: skip


class TestPyCOMPSsJob(BatchConformance):
    job_type = "orch.nodes.PyCOMPSsJob"

    def site_settings(self, site: Any, request: pytest.FixtureRequest) -> dict[str, Any]:
        compss_bin = request.getfixturevalue("compss_bin")
        environment = {"PATH": f"{compss_bin}:{PATH}", "SLURM_CONF": str(site.cluster.conf)}
        return {"partition": "debug", "environment": environment}

    def job(self, h: Harness, kind: str) -> str:
        app = h.scratch / f"app-{kind}.py"
        app.write_text(
            f"SCRATCH = {str(h.scratch)!r}\n" + APPS["slow" if kind == "timeout" else kind]
        )
        app.chmod(0o644)
        lines = [f"app: {app}", "num_nodes: 1", "python_interpreter: python3",
                 f"exec_time: {1 if kind == 'timeout' else 5}"]  # fmt: skip
        if kind == "secret":
            lines.append("environment: {TOKEN: {get_input: secret}}")
        return "".join(f"        {line}\n" for line in lines)
