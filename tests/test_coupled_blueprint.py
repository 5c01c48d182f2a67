"""The shipped ``blueprints/coupled-simulation`` as a newcomer runs it, on the real three-node
loopback Slurm site: two toy simulators exchange their boundary every step and a live plot
draws them, all three in one heterogeneous job; ``orch connect`` brings the plot to this
machine, where a real browser (headless Chromium) draws it."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from sites.cli import Orch, write_slurm_sites
from sites.fixtures import SlurmSite
from sites.hpc import authorize, copy_blueprint
from sites.serve import free_port


@pytest.fixture
def token(orch: Orch, multi_node_slurm_site: SlurmSite) -> Iterator[str]:
    yield from authorize(orch, multi_node_slurm_site.ssh)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read().decode()
    return json.loads(body) if url.endswith(".json") else body


def test_the_coupled_simulation_runs_and_its_live_plot_opens_in_a_browser(
    orch: Orch, multi_node_slurm_site: SlurmSite, token: str, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    site = multi_node_slurm_site
    write_slurm_sites(orch, site, token, "hpc3")
    blueprint = copy_blueprint(orch, "coupled-simulation")
    orch("validate", str(blueprint))
    port = free_port()
    deploy = orch.start("deploy", str(blueprint), "-n", "coupled", "-i", "site=hpc3",
                        "-i", "steps=150", "-i", f"plot_port={port}", "-i", "linger=3",
                        "--poll-interval", "0.5")  # fmt: skip
    connect = None
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            shown = orch("status", "coupled", "-f", "json", check=None)
            jobs = json.loads(shown.stdout)["jobs"] if shown.returncode == 0 else []
            if any(j["instance"] == "plot/0" and j["status"] == "running" for j in jobs):
                break
            assert deploy.poll() is None, deploy.stderr.read()  # type: ignore[union-attr]
            time.sleep(0.3)
        connect = orch.start("connect", "coupled", "plot")
        url = connect.stdout.readline().strip()  # type: ignore[union-attr]
        assert url.startswith("http://127.0.0.1:"), connect.stderr.read()  # type: ignore[union-attr]
        state: dict[str, Any] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # both halves stepping, coupled
            try:
                state = _get(url + "state.json")
            except OSError:
                state = {}
            if all(state.get(side, {}).get("step", 0) > 5 for side in ("left", "right")):
                break
            time.sleep(0.3)
        assert all(state[side]["step"] > 5 for side in ("left", "right")), state
        # heat flows from the hot left half into the cold right one through the coupling
        assert state["right"]["values"][0] > 0.0 and state["left"]["values"][-1] < 100.0
        browser.get(url)
        wait = WebDriverWait(browser, 20, poll_frequency=0.2)
        wait.until(lambda d: "left step" in d.find_element(By.ID, "step").text)
        line = browser.find_element(By.CSS_SELECTOR, "#plot polyline")
        assert len(line.get_attribute("points").split()) == 80  # 40 cells a half
        assert deploy.wait(timeout=120) == 0, deploy.stderr.read()  # type: ignore[union-attr]
        assert connect.wait(timeout=30) == 0  # the forward ends with the job
    finally:
        for proc in (connect, deploy):
            if proc is not None and proc.poll() is None:
                proc.kill()
    logs = orch("logs", "coupled").stdout
    assert "left step 150/150" in logs and "right step 150/150" in logs
    assert "both halves done" in logs
    orch("undeploy", "coupled", timeout=120)
