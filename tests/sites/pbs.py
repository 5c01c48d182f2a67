"""A STAND-IN PBS Professional for tests only: the fixture ``pbs_bin``.

PBS Professional / OpenPBS cannot be installed on the test machine, so ``tests/sites/pbs/pbs``
(one stdlib Python script) plays its client commands ``qsub``, ``qstat`` and ``qdel``, following
their documented interface (qsub(1B) with its ``#PBS`` directives, qstat(1B) with
``-f -F json -x``, qdel(1B)): same options, output shapes, messages and exit statuses.

What it does NOT do: there is no server, no scheduler and no nodes. Jobs start at once as local
background processes of the submitting user (detached: they outlive the SSH session that ran
qsub); resources are recorded, not enforced. See the script's docstring for the spool layout.

``pbs_bin`` makes a folder readable by everyone (0755, not under pytest's 0700 tmp dirs, so the
unprivileged SSH user can run the commands) with ``bin/qsub``, ``bin/qstat``, ``bin/qdel`` and
an empty spool ``spool`` (0777) the commands find through ``$PBS_STANDIN_SPOOL``. Jobs still
running when the test ends are killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "pbs" / "pbs"
COMMANDS = ("qsub", "qstat", "qdel")


@dataclass
class PbsBin:
    bin: Path
    """The folder to put first on PATH: qsub, qstat, qdel."""
    spool: Path
    """The stand-in's state (jobs' records, exit statuses, the ``down`` switch)."""
    env: dict[str, str] = field(default_factory=dict)
    """``{"PBS_STANDIN_SPOOL": spool}``: what the commands need in their environment."""

    def environ(self, **extra: str) -> dict[str, str]:
        """This process's environment with the stand-in first on PATH, plus ``extra``."""
        env = {**os.environ, **self.env, **extra}
        env["PATH"] = f"{self.bin}:{env.get('PATH', '/usr/bin:/bin')}"
        return env

    def down(self, down: bool = True) -> None:
        """Make every command fail as when the PBS server is down (or bring it back)."""
        switch = self.spool / "down"
        if down:
            switch.touch()
        else:
            switch.unlink(missing_ok=True)


def make_pbs_bin(root: Path) -> PbsBin:
    root.chmod(0o755)
    bin_dir = root / "bin"
    spool = root / "spool"
    bin_dir.mkdir(mode=0o755)
    spool.mkdir()
    spool.chmod(0o777)
    for name in COMMANDS:
        target = bin_dir / name
        shutil.copyfile(SCRIPT, target)
        target.chmod(0o755)
    return PbsBin(bin_dir, spool, {"PBS_STANDIN_SPOOL": str(spool)})


def kill_jobs(spool: Path) -> None:
    """Kill the process groups of the spool's jobs that have not ended."""
    for record_path in spool.glob("*.json"):
        if (spool / f"{record_path.stem}.exit").exists():
            continue
        with contextlib.suppress(OSError, ValueError):
            pgid = json.loads(record_path.read_text()).get("pgid")
            if pgid:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
    time.sleep(0.05)


@pytest.fixture
def pbs_bin() -> Iterator[PbsBin]:
    root = Path(tempfile.mkdtemp(prefix="orch-pbs-"))
    try:
        pbs = make_pbs_bin(root)
        assert stat.S_IMODE(pbs.spool.stat().st_mode) == 0o777
        yield pbs
    finally:
        kill_jobs(root / "spool")
        shutil.rmtree(root, ignore_errors=True)
