"""The webui page loads in headless Chromium with our extension linked (a screenshot is kept)."""

import pytest

from tests.support.browser import artifact_path

pytestmark = pytest.mark.e2e


def test_txt2img_tab_renders(webui, page):
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(webui.base_url + "/", wait_until="domcontentloaded")
    page.wait_for_selector("#tab_txt2img", state="visible")
    page.wait_for_selector("#txt2img_generate", state="visible")
    page.wait_for_selector("#txt2img_prompt textarea", state="visible")
    page.screenshot(path=str(artifact_path("webui-txt2img.png")), full_page=True)
    assert not errors, errors
