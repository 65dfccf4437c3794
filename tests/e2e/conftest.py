"""Fixtures for end-to-end tests against a real webui (WEBUI_DIR); everything here is skipped without one."""

import os
import shutil
from pathlib import Path

import pytest

from tests.support import webui_env
from tests.support.browser import artifact_path, browser, page  # noqa: F401  (fixtures)
from tests.support.webui_server import WebuiServer, with_checkpoint

E2E_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    # Every test in this folder is an e2e test, whether or not its module says so.
    for item in items:
        if E2E_DIR in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


def pytest_terminal_summary(terminalreporter):
    # Which webui the e2e tests used, or why they were skipped, at the end of every run.
    try:
        checkout = webui_env.find_webui()
    except webui_env.WebuiUnavailable as err:
        terminalreporter.write_line(f"e2e: skipped, {err}")
        return
    note = "" if checkout.commit == webui_env.EXPECTED_COMMIT else f" (v1.10.1 is {webui_env.EXPECTED_COMMIT[:8]})"
    terminalreporter.write_line(f"e2e: webui {checkout.root} @ {checkout.commit[:8]}{note}, python {checkout.python}")


@pytest.fixture(scope="session")
def webui_checkout():
    try:
        return webui_env.find_webui()
    except webui_env.WebuiUnavailable as err:
        pytest.skip(str(err))


def serve(prepared, log_name):
    """Start a webui for the session; stop it at the end and keep its log in test-artifacts/ (pytest
    soon deletes old temporary folders)."""
    server = WebuiServer(prepared)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if server.log_path.is_file():
            shutil.copyfile(server.log_path, artifact_path(log_name))


@pytest.fixture(scope="session")
def webui(webui_checkout, tmp_path_factory):
    """A started webui with our extension linked, shared by the session. Tests that need other
    flags or env vars use ``webui.temporarily(extra_args=..., extra_env=...)``, which restores it."""
    data_dir = os.environ.get("WEBUI_DATA_DIR") or tmp_path_factory.mktemp("webui-data")
    yield from serve(webui_env.prepare_data_dir(webui_checkout, data_dir), "webui-server.log")


@pytest.fixture
def webui_sdxl(webui):
    """The session's webui with the tiny random SDXL checkpoint (``tiny-sdxl``) loaded for the test;
    the checkpoint selected before (``tiny-sd15``) is loaded again afterwards. Switching takes a second
    or two on the CPU each way."""
    with with_checkpoint(webui, webui_env.SDXL_CHECKPOINT_NAME):
        yield webui


@pytest.fixture(scope="session")
def controlnet_checkout():
    try:
        return webui_env.find_controlnet()
    except webui_env.WebuiUnavailable as err:
        pytest.skip(str(err))


@pytest.fixture(scope="session")
def webui_cn(webui_checkout, controlnet_checkout, tmp_path_factory):
    """A second webui with sd-webui-controlnet (CONTROLNET_DIR) and tiny ControlNet models beside our
    extension; the default ``webui`` has no ControlNet (what users without it see)."""
    data_dir = tmp_path_factory.mktemp("webui-cn-data")
    yield from serve(webui_env.prepare_data_dir(webui_checkout, data_dir, controlnet=controlnet_checkout), "webui-cn-server.log")
