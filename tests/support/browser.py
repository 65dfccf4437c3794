"""Headless Chromium through Playwright, for browser tests against the webui on 127.0.0.1.

Uses the system's Chromium (Debian: ``apt-get install --no-install-recommends chromium``), never a
browser that Playwright downloads. The fixtures skip, with the reason, when either is missing.
"""

import contextlib
import importlib.util
import os
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts"  # gitignored
CHROMIUM_ARGS = [
    "--no-sandbox",  # we run as root in a container
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # no calls home: the machine has no network, and each attempt would only cost time
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path():
    return Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))


def browser_unavailable_reason():
    """Why browser tests cannot run here, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed in the test venv (pip install -r tests/requirements.txt)"
    path = chromium_path()
    if not (path.is_file() and os.access(path, os.X_OK)):
        return f"no Chromium at {path} (apt-get install -y --no-install-recommends chromium, or set CHROMIUM_PATH)"
    return None


@contextlib.contextmanager
def launch_chromium(headless=True):
    """A Playwright Browser running the system Chromium; closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium_path()), headless=headless, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def artifact_path(name):
    """A path under test-artifacts/ for screenshots and other files a person may want to look at."""
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    return ARTIFACTS_DIR / re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


@pytest.fixture(scope="session")
def browser():
    reason = browser_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with launch_chromium() as b:
        yield b


@pytest.fixture
def page(browser):
    """A fresh page in its own context (cookies, local storage) per test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(60_000)
    try:
        yield context.new_page()
    finally:
        context.close()
