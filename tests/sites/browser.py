"""A real browser for tests: Debian's headless Chromium driven by Selenium through Debian's
matching chromedriver (nothing downloaded at test time). Screenshots are kept in
``$ORCH_TEST_ARTIFACTS`` (default ``test-artifacts/`` of the checkout)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("ORCH_TEST_ARTIFACTS") or REPO / "test-artifacts")
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture
def browser(request: pytest.FixtureRequest) -> Iterator[object]:
    """A headless Chromium session; its last screen is saved when the test ends."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="the test extra has selenium")
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        reason = f"no {' nor '.join(missing)} (apt install chromium chromium-driver)"
        print(reason)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1200,1000"):  # fmt: skip
        options.add_argument(argument)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / f"{request.node.name}-last.png"))
        driver.quit()
