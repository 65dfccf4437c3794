"""The accordion's "Control video / frames" upload with sd-webui-controlnet, in headless Chromium against
a real webui v1.10.1 with ControlNet 1.1.455 and tiny models: upload an 8-frame video, enable
ControlNet unit 0 (preprocessor none, the tiny T2I-Adapter, no image of its own), generate, and the
gallery shows an 8-frame animation driven frame by frame through ControlNet's AnimateDiff batch path.
Screenshots: test-artifacts/controlnet-*.png."""

import re

import pytest

from tests.e2e import animate_client as ac
from tests.e2e.test_browser_accordion import (ACCORDION, WEBUI_ACCORDION_ERROR, choose, enable_animatediff, generated_gif,
                                              open_txt2img, set_number)
from tests.e2e.test_controlnet_video import bar_frames
from tests.support import controlnet_files as cf
from tests.support.browser import artifact_path

pytestmark = pytest.mark.e2e

FRAMES = 8
UPLOAD = "script_txt2img_animate_anyone_control_upload"
UNIT0 = "txt2img_controlnet_ControlNet-0_controlnet"  # sd-webui-controlnet's elem_id prefix of txt2img unit 0
# ControlNet's log line (scripts/animate_diff/batch.py) when a unit takes a frame list from a folder.
BATCH_LOG = re.compile(r"AnimateDiff \+ ControlNet none receive the following parameters:.*\n.*batch control images: \S+")


def test_control_video_upload_drives_a_controlnet_unit(webui_cn, page, tmp_path):
    ac.motion_folder(webui_cn)
    video = ac.lossless_mp4(bar_frames(FRAMES), path=tmp_path / "control.mp4")
    errors = open_txt2img(page, webui_cn, steps=2)
    enable_animatediff(page, 0)  # 0: as many frames as the control video
    page.locator(f"#{ACCORDION} .label-wrap", has_text="Context windows").click()
    set_number(page, "script_txt2img_animate_anyone_context_length", 4)
    set_number(page, "script_txt2img_animate_anyone_context_overlap", 2)

    page.locator(f"#{UPLOAD} input[type=file]").set_input_files(str(video))
    page.locator(f"#{UPLOAD}").get_by_text("control.mp4").first.wait_for(state="visible", timeout=60_000)
    page.locator(f"#{UPLOAD}").scroll_into_view_if_needed()
    page.screenshot(path=str(artifact_path("controlnet-01-upload.png")), full_page=True)

    # ControlNet unit 0: enabled, preprocessor none, the tiny T2I-Adapter, no image
    page.locator("#txt2img_controlnet #controlnet > .label-wrap").click()
    enable = page.locator(f"#{UNIT0}_enable_checkbox input[type=checkbox]")
    enable.wait_for(state="visible")
    if not enable.is_checked():
        enable.check()
    choose(page, f"{UNIT0}_preprocessor_dropdown", "none")
    model = choose(page, f"{UNIT0}_model_dropdown", cf.T2I_ADAPTER, prefix=True)
    assert enable.is_checked()
    page.locator(f"#{UNIT0}_model_dropdown").scroll_into_view_if_needed()
    page.screenshot(path=str(artifact_path("controlnet-02-unit0.png")), full_page=True)

    log_start = webui_cn.log_path.stat().st_size  # judge only what this job logs (the session's server is shared)
    page.click("#txt2img_generate")
    gif = generated_gif(page)
    page.locator("#txt2img_gallery").scroll_into_view_if_needed()
    page.screenshot(path=str(artifact_path("controlnet-03-result.png")), full_page=True)
    assert gif.format == "GIF" and gif.size == (64, 64) and gif.n_frames == FRAMES
    info = page.inner_text("#html_info_txt2img")
    assert "Animate Anyone:" in info and ac.MODULE in info, info
    assert "ControlNet 0" in info and cf.T2I_ADAPTER in info, info  # ControlNet's own infotext entry

    assert "frames=8;" in info and "context_length=4;" in info, info  # frames 0: the control video's 8

    # ControlNet read unit 0's hints as a frame list from the folder the job wrote (its AnimateDiff batch path)
    with open(webui_cn.log_path, "rb") as f:
        f.seek(log_start)
        log = f.read().decode("utf8", "replace")
    assert BATCH_LOG.search(log), log
    assert "Traceback" not in log, log
    assert model.startswith(cf.T2I_ADAPTER + " [")
    assert not [e for e in errors if e != WEBUI_ACCORDION_ERROR], errors
