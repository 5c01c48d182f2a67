"""Apptainer for the image tests: from PATH, else from the folder tests/run.sh installs it to.

Where no distribution package exists, ``tests/sites/apptainer_sid.sh install`` installs one into
a Debian unstable root run through bubblewrap, and puts an ``apptainer`` wrapper in
``$ORCH_TEST_SITES/bin`` (default /opt/orch-sites/bin).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SITES_DIR = Path(os.environ.get("ORCH_TEST_SITES", "/opt/orch-sites"))
HOW = ("run tests/run.sh as root (it installs Apptainer into "
       f"{SITES_DIR}), or `bash tests/sites/apptainer_sid.sh install`, or install the "
       "distribution's apptainer package")  # fmt: skip


def find_apptainer() -> Path | None:
    """The folder of a working ``apptainer`` binary, if any."""
    on_path = shutil.which("apptainer")
    candidates = [Path(on_path).parent] if on_path else []
    candidates.append(SITES_DIR / "bin")
    for folder in candidates:
        binary = folder / "apptainer"
        if not os.access(binary, os.X_OK):
            continue
        probe = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                               cwd="/", timeout=60)  # fmt: skip
        if probe.returncode == 0:
            return folder
    return None


@pytest.fixture(scope="session")
def apptainer_dir() -> Path:
    """The folder holding ``apptainer`` (skips, saying how to install it, when there is none)."""
    folder = find_apptainer()
    if folder is None:
        reason = (f"Apptainer tests skipped: apptainer not found on PATH nor in "
                  f"{SITES_DIR}/bin: {HOW}")
        print(f"\n*** {reason}")
        pytest.skip(reason)
    return folder


@pytest.fixture
def apptainer(apptainer_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """apptainer on this test's PATH; returns its binary."""
    monkeypatch.setenv("PATH", f"{apptainer_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return apptainer_dir / "apptainer"
