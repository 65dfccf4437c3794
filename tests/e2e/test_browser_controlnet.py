"""The accordion's "Control video / frames" upload with sd-webui-controlnet, in headless Chromium against
a real webui v1.10.1 with ControlNet 1.1.455 and tiny models: upload an 8-frame video, enable
ControlNet unit 0 (preprocessor none, the tiny T2I-Adapter, no image of its own), generate, and the
gallery shows an 8-frame animation driven frame by frame through ControlNet's AnimateDiff batch path.
Screenshots: test-artifacts/controlnet-*.png."""

import io
import re
import time

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.e2e import animate_client as ac
from tests.e2e.test_browser_accordion import ACCORDION, WEBUI_ACCORDION_ERROR, choose, set_number
from tests.e2e.test_controlnet_video import bar_frames
from tests.support import controlnet_files as cf
from tests.support.browser import artifact_path

pytestmark = pytest.mark.e2e

FRAMES = 8
UPLOAD = "script_txt2img_animate_anyone_control_upload"
UNIT0 = "txt2img_controlnet_ControlNet-0_controlnet"  # sd-webui-controlnet's elem_id prefix of txt2img unit 0
GALLERY_FIRST = "#txt2img_gallery .thumbnail-item img, #txt2img_gallery .preview img"
# ControlNet's log line (scripts/animate_diff/batch.py) when a unit takes a frame list from a folder.
BATCH_LOG = re.compile(r"AnimateDiff \+ ControlNet none receive the following parameters:.*\n.*batch control images: \S+")


def write_mp4(path, frames, fps=8):
    """H.264 at qp 0 in 4:4:4 (like test_controlnet_video.lossless_mp4), to a file the browser uploads."""
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv444p"
        stream.options = {"qp": "0", "preset": "ultrafast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def choose_prefix(page, elem_id, prefix, timeout_s=120):
    """``choose`` for a dropdown whose values carry a suffix (ControlNet's models: 'name [hash]')."""
    option = page.locator(f"#{elem_id} li[data-value^='{prefix}']").first
    deadline = time.monotonic() + timeout_s
    while True:
        page.locator(f"#{elem_id} input").click()
        try:
            option.wait_for(state="visible", timeout=3000)
            value = option.get_attribute("data-value")
            option.click()
            break
        except PlaywrightTimeout:
            if time.monotonic() > deadline:
                raise
            page.keyboard.press("Escape")
    page.wait_for_function("([id, value]) => document.querySelector('#' + id + ' input').value == value", arg=[elem_id, value])
    return value


def test_control_video_upload_drives_a_controlnet_unit(webui_cn, page, tmp_path):
    ac.motion_folder(webui_cn)
    video = write_mp4(tmp_path / "control.mp4", bar_frames(FRAMES))
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(webui_cn.base_url + "/", wait_until="domcontentloaded")
    page.wait_for_selector("#txt2img_generate", state="visible", timeout=180_000)

    page.fill("#txt2img_prompt textarea", "a paper boat on a pond")
    for elem_id, value in (("txt2img_width", 64), ("txt2img_height", 64), ("txt2img_steps", 2)):
        set_number(page, elem_id, value)
    page.fill("#txt2img_seed input", "77")

    # our accordion: opening it enables it; rescan for the modules written after the UI was built
    page.locator(f"#{ACCORDION} .label-wrap").first.click()
    page.wait_for_function(f"() => document.getElementById('{ACCORDION}-visible-checkbox').checked")
    page.click("#script_txt2img_animate_anyone_refresh")
    choose(page, "script_txt2img_animate_anyone_motion_module", ac.MODULE)
    set_number(page, "script_txt2img_animate_anyone_frames", 0)  # as many as the control video
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
    model = choose_prefix(page, f"{UNIT0}_model_dropdown", cf.T2I_ADAPTER)
    assert enable.is_checked()
    page.locator(f"#{UNIT0}_model_dropdown").scroll_into_view_if_needed()
    page.screenshot(path=str(artifact_path("controlnet-02-unit0.png")), full_page=True)

    log_start = webui_cn.log_path.stat().st_size  # judge only what this job logs (the session's server is shared)
    page.click("#txt2img_generate")
    first = page.locator(GALLERY_FIRST).first
    first.wait_for(state="visible", timeout=480_000)
    page.wait_for_function("() => !document.querySelector('.progressDiv')", timeout=480_000)
    page.locator("#txt2img_gallery").scroll_into_view_if_needed()
    page.screenshot(path=str(artifact_path("controlnet-03-result.png")), full_page=True)
    src = first.get_attribute("src")
    assert src.split("?")[0].endswith(".gif"), (src, webui_cn.log_tail(80))
    assert first.evaluate("img => img.naturalWidth") == 64

    from PIL import Image

    served = page.request.get(src)
    assert served.ok
    gif = Image.open(io.BytesIO(served.body()))
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
