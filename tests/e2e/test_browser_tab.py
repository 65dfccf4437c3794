"""The "Animate Anyone" tab in headless Chromium against a real webui v1.10.1.

Two uploads to a playing video: the pose preview counts the frames the model will follow, the
generation runs through the webui's queue with its progress bar and Interrupt, the result plays in
the page and its download decodes to the same frames; bad inputs are reported under the control
they are about and the tab keeps working. Screenshots of each step: test-artifacts/tab-*.png.
"""

import json
import shutil
import threading

import pytest

from lib_animate.video import EncodeOptions, encode_video, read_video
from tests.e2e import animate_client as ac
from tests.e2e.animate_client import animate_anyone_release, pose_frames_json
from tests.support import reference_files as rf
from tests.support.browser import artifact_path

pytestmark = pytest.mark.e2e

POSE_FRAMES = 12
POSE_FPS = 10
GENERATION_TIMEOUT = 300_000  # ms; two shared cores
VIDEO = "#animate_anyone_video video"


@pytest.fixture(scope="module")
def release(webui):
    """The release's files (tiny random weights) in the webui's default weights folder."""
    return animate_anyone_release(webui)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A reference picture, a rendered-skeleton MP4 and a file that only claims to be a video."""
    from PIL import Image

    from lib_animate.pose import parse_pose_json, render_pose

    folder = tmp_path_factory.mktemp("browser-media")
    Image.new("RGB", (48, 80), (180, 90, 60)).save(folder / "reference.png")
    frames = [render_pose(f, 64, 64) for f in parse_pose_json(pose_frames_json(POSE_FRAMES))]
    (folder / "dance.mp4").write_bytes(encode_video(frames, "mp4", EncodeOptions(fps=POSE_FPS)))
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x13\x37 not really a video" * 40)
    return folder


@pytest.fixture
def tab(webui, release, page):
    """The page with the Animate Anyone tab open; fails on any uncaught page error."""
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(webui.base_url + "/", wait_until="domcontentloaded")
    page.locator("#tabs > .tab-nav button", has_text="Animate Anyone").click()
    page.wait_for_selector("#animate_anyone_reference", state="visible")
    page.wait_for_selector("#animate_anyone_generate", state="visible")
    yield page
    assert not errors, errors


# --- helpers ------------------------------------------------------------------------------------------

def set_number(page, elem_id, value):
    """A gr.Number or gr.Slider's number box: type, then Enter (gradio sends it on change)."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def upload(page, elem_id, path):
    """Upload into a gr.Image / gr.Video / gr.File, clearing what it holds first (as a person would)."""
    clear = page.locator(f"#{elem_id} button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
    page.set_input_files(f"#{elem_id} input[type=file]", str(path))


def wait_preview(page, frames):
    page.wait_for_selector(f"#animate_anyone_pose_preview .animate-anyone-pose-info[data-frames='{frames}']")


def error_text(page, elem_id):
    page.wait_for_selector(f"#{elem_id} .animate-anyone-error", timeout=120_000)
    return page.inner_text(f"#{elem_id}")


def wait_text(page, elem_id, words):
    """Wait until the element says ``words`` (messages replace earlier ones asynchronously)."""
    page.wait_for_function("([id, words]) => document.getElementById(id).innerText.includes(words)",
                           arg=[elem_id, words], timeout=120_000)
    return page.inner_text(f"#{elem_id}")


def wait_no_error(page, elem_id):
    page.wait_for_function("(id) => !document.querySelector('#' + id + ' .animate-anyone-error')", arg=elem_id,
                           timeout=120_000)


def shot(page, name):
    page.evaluate("() => window.scrollTo(0, 0)")  # the results column is sticky
    page.screenshot(path=str(artifact_path(name)), full_page=True)


def small_job(page, steps=3, seed=1234):
    for elem_id, value in (("animate_anyone_width", 64), ("animate_anyone_height", 64), ("animate_anyone_steps", steps),
                           ("animate_anyone_seed", seed)):
        set_number(page, elem_id, value)


def wait_idle(page):
    """The job has ended: the progress bar is gone and Generate is back."""
    page.wait_for_function("() => !document.querySelector('.progressDiv')", timeout=GENERATION_TIMEOUT)
    page.wait_for_selector("#animate_anyone_generate", state="visible", timeout=GENERATION_TIMEOUT)


def video_state(page):
    return page.evaluate(f"""() => {{
        const v = document.querySelector('{VIDEO}');
        return v && {{duration: v.duration, readyState: v.readyState, paused: v.paused, currentTime: v.currentTime,
                      loop: v.loop, src: v.currentSrc}};
    }}""")


def wait_for_playable_video(page, previous_src=None):
    page.wait_for_function(
        f"""(previous) => {{
            const v = document.querySelector('{VIDEO}');
            return v && v.currentSrc && v.currentSrc != previous && v.readyState >= 2 && v.duration > 0;
        }}""", arg=previous_src, timeout=GENERATION_TIMEOUT)


# --- tests ------------------------------------------------------------------------------------------------

def test_uploads_to_a_playing_video(tab, media, webui):
    page = tab
    status = page.locator("#animate_anyone_weights_status .animate-anyone-weights")
    assert status.get_attribute("data-state") == "ok", page.inner_text("#animate_anyone_weights_status")
    assert "denoising_unet.pth" in status.inner_text()
    shot(page, "tab-01-open.png")

    small_job(page)
    page.click("#animate_anyone_formats label:has-text('GIF')")  # MP4 (default) + GIF
    upload(page, "animate_anyone_reference", media / "reference.png")
    upload(page, "animate_anyone_pose_video", media / "dance.mp4")
    wait_preview(page, POSE_FRAMES)
    info = page.inner_text("#animate_anyone_pose_preview")
    assert f"{POSE_FRAMES} frames" in info and f"{POSE_FPS} fps" in info and "64\u00d764" in info, info
    assert page.evaluate("() => document.querySelector('#animate_anyone_pose_preview img').naturalWidth") > 0
    assert "48\u00d780" in page.inner_text("#animate_anyone_reference_note")

    # the preview follows the settings that change which frames the model sees
    set_number(page, "animate_anyone_pose_stride", 2)
    wait_preview(page, POSE_FRAMES // 2)
    set_number(page, "animate_anyone_pose_stride", 1)
    wait_preview(page, POSE_FRAMES)
    shot(page, "tab-02-preview.png")

    page.click("#animate_anyone_generate")
    wait_for_playable_video(page)
    wait_idle(page)
    state = video_state(page)
    assert state["readyState"] >= 2 and state["duration"] == pytest.approx(POSE_FRAMES / POSE_FPS, abs=0.15), state
    page.evaluate(f"() => {{ const v = document.querySelector('{VIDEO}'); v.muted = true; v.play(); }}")
    page.wait_for_function(f"() => {{ const v = document.querySelector('{VIDEO}'); return !v.paused && v.currentTime > 0.05; }}")

    page.wait_for_function(f"() => document.querySelectorAll('#animate_anyone_gallery img').length >= {POSE_FRAMES}")
    assert page.locator("#animate_anyone_gallery img").count() == POSE_FRAMES
    infotext = page.inner_text("#html_info_animate_anyone")
    assert "Seed: 1234" in infotext and "Size: 64x64" in infotext and "Animate Anyone:" in infotext, infotext
    assert "error" not in page.inner_text("#animate_anyone_html_log").lower()
    names = page.locator("#animate_anyone_files tr td:first-child").all_inner_texts()
    assert sorted(n.rsplit(".", 1)[-1] for n in names) == ["gif", "mp4"], names
    shot(page, "tab-03-result.png")

    # the downloaded file is the video: its frames decode
    with page.expect_download() as download:
        page.click("#animate_anyone_files tr:has-text('.mp4') a")
    clip = read_video(download.value.path())
    assert len(clip.frames) == POSE_FRAMES and clip.frames[0].shape == (64, 64, 3)
    assert clip.fps == pytest.approx(POSE_FPS, abs=0.01)
    # ... and so does what the player plays
    played = page.request.get(state["src"])
    assert played.ok and len(read_video(played.body()).frames) == POSE_FRAMES

    # re-open the result from its infotext: the settings come back
    set_number(page, "animate_anyone_width", 128)
    set_number(page, "animate_anyone_steps", 10)
    set_number(page, "animate_anyone_seed", -1)
    page.click("#animate_anyone_reopen .label-wrap")
    page.fill("#animate_anyone_paste_infotext textarea", infotext)
    page.click("#animate_anyone_paste")
    page.wait_for_function("() => document.querySelector('#animate_anyone_width input[type=number]').value == '64'")
    assert page.input_value("#animate_anyone_steps input[type=number]") == "3"
    assert page.input_value("#animate_anyone_seed input") == "1234"
    assert page.locator("#animate_anyone_formats input:checked").count() == 2
    assert "Settings restored" in page.inner_text("#animate_anyone_paste_note")
    shot(page, "tab-04-reopened.png")

    # send the frames on: all of them to Extras' batch (in frame order), the first one to img2img
    page.click("#animate_anyone_send_frames_to_extras")
    page.wait_for_selector("#extras_image_batch", state="visible")
    page.wait_for_function(f"() => document.querySelectorAll('#extras_image_batch tr').length == {POSE_FRAMES}")
    sent = page.locator("#extras_image_batch tr td:first-child").all_inner_texts()
    assert sent == sorted(sent) and sent[0].endswith("00000.png"), sent
    shot(page, "tab-05-extras-batch.png")
    page.locator("#tabs > .tab-nav button", has_text="Animate Anyone").click()
    page.click("#animate_anyone_send_to_img2img")
    page.wait_for_selector("#img2img_image img", state="visible")
    page.wait_for_function("() => document.querySelector('#img2img_image img').naturalWidth == 64")


def test_bad_inputs_are_shown_next_to_their_controls(tab, media, webui, release, tmp_path):
    page = tab
    small_job(page)

    # a pose "video" that is not one: said under the pose inputs as soon as it is uploaded
    upload(page, "animate_anyone_pose_video", media / "broken.mp4")
    pose_error = error_text(page, "animate_anyone_pose_error")
    assert "Pose video" in pose_error and "cannot be decoded" in pose_error, pose_error
    # Generate without a reference: said under the reference; nothing is queued
    page.click("#animate_anyone_generate")
    reference_error = error_text(page, "animate_anyone_reference_error")
    assert "Reference image is missing" in reference_error, reference_error
    assert "Pose video" in page.inner_text("#animate_anyone_pose_error")
    wait_idle(page)
    assert page.locator(VIDEO).count() == 0
    assert "Traceback" not in page.inner_text("body")
    shot(page, "tab-06-bad-inputs.png")

    # a file that is not an image as the reference
    upload(page, "animate_anyone_reference", media / "broken.mp4")
    wait_text(page, "animate_anyone_reference_error", "Reference image is not a readable image")

    # weights that only the job can find wrong (every file there, one of the wrong shape): the
    # error comes back from the queued job and is shown under the weights folder
    broken = tmp_path / "AnimateAnyone-wrong-pose-guider"
    shutil.copytree(release, broken, ignore=shutil.ignore_patterns("converted"))
    import torch

    torch.save(rf.pose_guider_weights(1, out_channels=64), str(broken / "pose_guider.pth"))
    upload(page, "animate_anyone_reference", media / "reference.png")
    upload(page, "animate_anyone_pose_video", media / "dance.mp4")
    wait_preview(page, POSE_FRAMES)
    wait_no_error(page, "animate_anyone_pose_error")
    wait_no_error(page, "animate_anyone_reference_error")
    try:
        page.fill("#animate_anyone_weights_dir textarea", str(broken))
        page.press("#animate_anyone_weights_dir textarea", "Enter")
        page.wait_for_function(f"() => document.querySelector('#animate_anyone_weights_status').innerText.includes({json.dumps(str(broken))})")
        page.click("#animate_anyone_generate")
        weights_error = error_text(page, "animate_anyone_weights_status")
        assert "pose guider" in weights_error.lower() or "pose_guider.pth" in weights_error, weights_error
        wait_idle(page)
        shot(page, "tab-07-wrong-weights.png")
    finally:
        page.fill("#animate_anyone_weights_dir textarea", "")
        page.press("#animate_anyone_weights_dir textarea", "Enter")
        assert webui.post("/sdapi/v1/options", {"animate_anyone_weights_dir": ""}).ok

    # the tab still works: the same page generates a video
    page.wait_for_function("() => document.querySelector('#animate_anyone_weights_status [data-state]').dataset.state == 'ok'")
    page.click("#animate_anyone_generate")
    wait_for_playable_video(page)
    wait_idle(page)
    for elem_id in ("animate_anyone_reference_error", "animate_anyone_pose_error", "animate_anyone_context_error"):
        wait_no_error(page, elem_id)
    assert "error" not in page.inner_text("#animate_anyone_html_log").lower()
    assert "All files found" in page.inner_text("#animate_anyone_weights_status")
    shot(page, "tab-08-recovered.png")


def test_progress_and_interrupt_like_any_webui_job(tab, media, webui):
    page = tab
    small_job(page, steps=150)
    for elem_id in ("animate_anyone_width", "animate_anyone_height"):
        set_number(page, elem_id, 128)
    upload(page, "animate_anyone_reference", media / "reference.png")
    upload(page, "animate_anyone_pose_video", media / "dance.mp4")
    wait_preview(page, POSE_FRAMES)

    page.click("#animate_anyone_generate")
    page.wait_for_selector("#animate_anyone_interrupt", state="visible")
    page.wait_for_function("() => /\\d+%/.test((document.querySelector('.progressDiv') || {}).innerText || '')",
                           timeout=GENERATION_TIMEOUT)
    # it is the webui's current job: the API reports its progress, and an API request waits for it
    state = webui.get("/sdapi/v1/progress?skip_current_image=true").json()["state"]
    assert state["job"].startswith("task(") and state["sampling_steps"] == 150, state
    answer = {}
    waiting = threading.Thread(target=lambda: answer.update(r=webui.post("/sdapi/v1/txt2img", ac.payload(steps=2))))
    waiting.start()
    waiting.join(3)
    assert waiting.is_alive(), "an API job ran while the tab's job held the queue"
    shot(page, "tab-09-progress.png")

    page.click("#animate_anyone_interrupt")
    wait_idle(page)
    waiting.join(300)
    assert answer["r"].ok, answer["r"].text()
    log = page.inner_text("#animate_anyone_html_log")
    assert "Interrupted" in log, log
    assert page.locator("#animate_anyone_gallery img").count() == POSE_FRAMES  # the unfinished frames
    shot(page, "tab-10-interrupted.png")


def test_the_pose_preview_shows_the_retargeted_poses_and_the_job_uses_them(tab, media, webui, tmp_path):
    """Pose JSON, the reference's keypoints and 'Retarget': the preview shows reference | driving | retargeted
    side by side, and the video is made from the retargeted poses."""
    import numpy as np

    page = tab
    poses = tmp_path / "dance.json"
    poses.write_text(json.dumps(pose_frames_json(POSE_FRAMES)))
    body = np.array(pose_frames_json(1)[0]["people"][0]["pose_keypoints_2d"], dtype=float).reshape(18, 3)
    body[[9, 10, 12, 13], 1] += 0.08  # the reference has longer legs
    reference_keypoints = tmp_path / "reference-keypoints.json"
    reference_keypoints.write_text(json.dumps([{"canvas_width": 48, "canvas_height": 80,
                                                "people": [{"pose_keypoints_2d": body.reshape(-1).tolist()}]}]))
    small_job(page)
    upload(page, "animate_anyone_reference", media / "reference.png")
    upload(page, "animate_anyone_pose_json", poses)
    wait_preview(page, POSE_FRAMES)
    page.click("#animate_anyone_retarget input[type=checkbox]")
    upload(page, "animate_anyone_reference_pose_json", reference_keypoints)
    info = wait_text(page, "animate_anyone_pose_preview", "retargeted to the reference's body")
    assert f"{POSE_FRAMES} frames" in info, info
    size = page.evaluate("() => { const i = document.querySelector('#animate_anyone_pose_preview img');"
                         " return [i.naturalWidth, i.naturalHeight]; }")
    assert size == [3 * 64, 64], size  # three 64 x 64 panels
    shot(page, "tab-05-retarget-preview.png")
    page.click("#animate_anyone_generate")
    wait_idle(page)
    wait_for_playable_video(page)
    assert "retarget=true" in page.inner_text("#html_info_animate_anyone")
