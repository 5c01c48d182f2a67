"""The web page of ``orch serve`` in a real browser: Debian's headless Chromium, driven by
Selenium through Debian's matching chromedriver (nothing downloaded at test time), against a
real ``orch serve`` process. Controls are worked with the keyboard (keys sent to the focused
element), as someone without a mouse would. Screenshots are kept in ``$ORCH_TEST_ARTIFACTS``
(default ``test-artifacts/`` of the checkout).

The eFlows4HPC minimal workflow runs for real on the loopback Slurm site, with the stand-ins
of tests/test_eflows_run.py for what cannot be installed here (enqueue_compss, B2SHARE)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from sites.browser import ARTIFACTS
from sites.cli import Orch
from sites.eflows import set_secrets
from sites.fixtures import SlurmSite
from sites.serve import Server
from sites.web import Files, b2share_record

pytest.importorskip("fastapi", reason="orch serve needs the serve extra")
pytest.importorskip("httpx", reason="orch serve's tests need the serve extra")
webdriver = pytest.importorskip("selenium.webdriver", reason="the test extra has selenium")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MINIMAL = REPO / "blueprints" / "eflows4hpc" / "minimal" / "topology.yml"


def _wait(driver: object, condition: object, seconds: float = 30, what: str = "") -> object:
    """``condition`` true within ``seconds``; elements the page has just redrawn (the
    executions table every 2 s, the form) are looked up again."""
    stale = [StaleElementReferenceException]
    wait = WebDriverWait(driver, seconds, poll_frequency=0.2, ignored_exceptions=stale)
    return wait.until(condition, what)


def _rows(driver: object) -> list[str]:
    """The executions table's rows, as text."""
    found = driver.find_elements(By.CSS_SELECTOR, "#executions tbody tr")  # type: ignore[attr-defined]
    return [row.text for row in found]


def _text(driver: object, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text  # type: ignore[attr-defined]


def _status_is(*wanted: str):
    return lambda d: _text(d, "detail-status") in wanted and _text(d, "detail-status")


def _sign_in(driver: object, url: str, token: str) -> None:
    driver.get(url + "/")  # type: ignore[attr-defined]
    field = _wait(driver, lambda d: d.find_element(By.ID, "token"))
    assert driver.switch_to.active_element == field, "the token field has the focus"  # type: ignore[attr-defined]
    field.send_keys(token, Keys.ENTER)  # type: ignore[attr-defined]


def _shot(driver: object, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"serve-web-{name}.png"))  # type: ignore[attr-defined]


def test_a_scientist_runs_the_minimal_workflow_from_the_page(
    orch: Orch, site: SlurmSite, registry: Path, web: tuple[str, Files], browser: object
) -> None:
    base, files = web
    text = "one two three four five\nsix seven\n"
    b2share_record(files, base, "rec-7", {"data.txt": text.encode()})
    set_secrets(orch)
    shutil.copy(MINIMAL, orch.root / "topology.yml")
    orch("deploy", "topology.yml", "-i", "user_id=orchtest", "-i", "vault_id=0123456789abcdef",
         "--registry", str(registry), "--poll-interval", "0.5", timeout=300)  # fmt: skip
    orch("publish", "minimal_workflow", "exec_job", "--name", "wordcount")
    orch("users", "add", "ada")
    token = orch("tokens", "create", "ada").stdout.strip()
    driver = browser
    server = Server(orch.root, orch.env())
    url = server.start()
    try:
        # a wrong token first: the page says so and keeps the focus on the field
        _sign_in(driver, url, "nope.nope")
        _wait(driver, lambda d: "not valid" in _text(d, "login-error"))
        _sign_in(driver, url, token)
        _wait(driver, lambda d: _text(d, "who-name") == "Signed in as ada")
        run = _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "[data-workflow=wordcount]"))
        run.send_keys(Keys.ENTER)
        _wait(driver, lambda d: d.find_elements(By.ID, "input-oid"))
        labels = {label.get_attribute("for"): label.text for label in
                  driver.find_elements(By.CSS_SELECTOR, "#fields label")}  # fmt: skip
        assert set(labels) == {"input-oid", "input-target_path", "input-staged_in_data_path"}
        assert all("string, required" in text for text in labels.values()), labels
        # the form says what is missing, next to the field, before anything runs
        driver.find_element(By.ID, "start").send_keys(Keys.ENTER)
        _wait(driver, lambda d: "no value" in _text(d, "input-oid-error"))
        _shot(driver, "1-form-errors")
        target = f"/home/orchtest/web-staged-{os.getpid()}-{time.monotonic_ns()}"
        for name, value in (("oid", "rec-7"), ("target_path", target),
                            ("staged_in_data_path", target)):  # fmt: skip
            driver.find_element(By.ID, f"input-{name}").send_keys(value)
        driver.find_element(By.ID, "input-staged_in_data_path").send_keys(Keys.ENTER)
        _wait(driver, _status_is("RUNNING", "SUCCESS"), what="the execution started")
        _shot(driver, "2-running")
        status = _wait(driver, _status_is("SUCCESS", "FAILED", "CANCELLED"), 240, "it ended")
        _wait(driver, lambda d: "workflow ended" in _text(d, "logs"), 10, "the last log line")
        logs = _text(driver, "logs")
        _shot(driver, "3-done")
        assert status == "SUCCESS", logs
        assert "PyCOMPSJob" in logs and "DLSDAGStageInData" in logs, logs
        assert Path(target, "data.txt").read_text() == text
        rows = _wait(driver, lambda d: _rows(d) if "SUCCESS" in "".join(_rows(d)) else None)
        assert len(rows) == 1, rows

        # another execution, cancelled from the page
        run.send_keys(Keys.ENTER)
        _wait(driver, lambda d: d.find_element(By.ID, "input-oid").get_attribute("value") == "")
        for name, value in (("oid", "rec-7"), ("target_path", target + "-2"),
                            ("staged_in_data_path", target + "-2")):  # fmt: skip
            driver.find_element(By.ID, f"input-{name}").send_keys(value)
        driver.find_element(By.ID, "start").send_keys(Keys.ENTER)
        _wait(driver, _status_is("RUNNING"), what="the second execution running")
        cancel = _wait(driver, lambda d: d.find_element(By.ID, "cancel").is_displayed()
                       and d.find_element(By.ID, "cancel"))  # fmt: skip
        cancel.send_keys(Keys.ENTER)
        status = _wait(driver, _status_is("CANCELLED", "SUCCESS", "FAILED"), 120, "cancelled")
        _shot(driver, "4-cancelled")
        assert status == "CANCELLED", _text(driver, "logs")
        statuses = _wait(driver, lambda d: len(_rows(d)) == 2 and _rows(d))
        assert "CANCELLED" in statuses[0] and "SUCCESS" in statuses[1], statuses
        for path in (target, target + "-2"):
            shutil.rmtree(path, ignore_errors=True)
    finally:
        server.stop()
