"""Headless Chromium for the paint studio's browser tests: Debian's ``chromium`` and ``chromium-driver`` driven by
Selenium, which, given the driver's path, downloads nothing.

Without them the tests skip with the reason; with ``SPADENORM_REQUIRE_BROWSER=1`` (as in ``.ci/run``) they fail.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from collections.abc import Callable
from typing import Any

import pytest

CHROMIUM = os.environ.get("SPADENORM_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SPADENORM_CHROMEDRIVER", "/usr/bin/chromedriver")

CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # CI containers run as root
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--window-size=1400,1000",
    "--force-device-scale-factor=1",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--disable-client-side-phishing-detection",
    "--disable-domain-reliability",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
    "--no-first-run",
    "--no-default-browser-check",
    "--no-pings",
    "--metrics-recording-only",
)
"""Headless, and quiet: no update checks, sync, translation or other traffic of the browser's own."""


def missing() -> str | None:
    """Why the browser tests cannot run here, or ``None`` when they can."""
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -e '.[dev]')"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.isfile(path) or shutil.which(path)):
            return f"{path} not found (apt-get install {package})"
    return None


def require_browser() -> None:
    """Skip the calling test without a browser, or fail where ``SPADENORM_REQUIRE_BROWSER=1`` asks for one."""
    reason = missing()
    if reason is None:
        return
    if os.environ.get("SPADENORM_REQUIRE_BROWSER") == "1":
        pytest.fail(f"SPADENORM_REQUIRE_BROWSER=1, but the browser tests cannot run: {reason}")
    pytest.skip(f"browser tests need Debian's chromium and chromium-driver and selenium: {reason}")


def start_chrome() -> Any:
    """A headless Chromium under chromedriver, logging network events and the console."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    return driver


def requested_urls(driver: Any) -> list[str]:
    """Every URL the page asked for since the last call (from the performance log's network events)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def console_errors(driver: Any) -> list[str]:
    """Console messages of level SEVERE since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 20.0, required: bool = True) -> Any:
    """Poll ``condition`` until it returns neither ``None`` nor ``False``; after ``timeout`` seconds fail naming
    ``what`` (or return the last value when not ``required``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            if not required:
                return value
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
