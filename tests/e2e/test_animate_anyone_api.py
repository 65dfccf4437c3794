"""Animate Anyone mode end to end: the release's files (random weights at tiny widths, in the
published formats) in <data-dir>/models/AnimateAnyone, a real webui v1.10.1, the API."""

import base64
import io
import threading
import time

import numpy as np
import pytest

from lib_animate.video import EncodeOptions, encode_video, read_video
from tests.e2e import animate_client as ac
from tests.e2e.animate_client import pose_frames_json
from tests.support import reference_files as rf

pytestmark = pytest.mark.e2e

SIZE = 64


def _b64_png(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _gray():
    from PIL import Image

    return Image.new("RGB", (SIZE, SIZE), (128, 128, 128))


def skeleton_video(count, fps=10, fmt="mp4"):
    """A rendered-skeleton video (black background), as Animate Anyone's pose videos are."""
    from lib_animate.pose import parse_pose_json, render_pose

    frames = [render_pose(f, SIZE, SIZE) for f in parse_pose_json(pose_frames_json(count))]
    return base64.b64encode(encode_video(frames, fmt, EncodeOptions(fps=fps))).decode()


@pytest.fixture(scope="module")
def release(webui):
    from PIL import Image

    folder = ac.animate_anyone_release(webui)
    assert webui.post("/sdapi/v1/options", {"batch_cond_uncond": True}).ok
    return {"folder": folder, "reference": _b64_png(Image.new("RGB", (48, 80), (180, 90, 60)))}


@pytest.fixture(scope="module")
def baseline(webui, release):
    return ac.ok(webui, ac.payload(batch_size=2))["images"]


def aa(release, **fields):
    args = {"enable": True, "mode": "animate_anyone", "reference_image": release["reference"], "formats": ["GIF"]}
    args.update(fields)
    return ac.payload(args, steps=4, cfg_scale=3.5, prompt="ignored in this mode")


def test_pose_json_gives_a_video_with_one_reference_pass_per_video(webui, release, baseline):
    data = ac.ok(webui, aa(release, pose_json=pose_frames_json(6), formats=["GIF", "MP4", "WEBM"]), )
    entry = data["info"]["animate_anyone"]
    assert entry["frames"] == 6 and entry["mode"] == "animate_anyone"
    assert entry["sampler"] == "Animate Anyone (DDIM)" and entry["reference_passes"] == 1
    assert len(data["images"]) == 6 + 3
    for item, blob in ac.trailing(data):
        assert len(read_video(blob).frames) == 6, item
    assert ac.ok(webui, ac.payload(batch_size=2))["images"] == baseline  # the webui's UNet and schedule are back

    two = ac.ok(webui, dict(aa(release, pose_json=pose_frames_json(4)), n_iter=2))
    assert two["info"]["animate_anyone"]["reference_passes"] == 2 and two["info"]["animate_anyone"]["videos"] == 2


def test_pose_video_with_stride_fps_and_max_frames(webui, release):
    video = skeleton_video(12, fps=10)
    full = ac.ok(webui, aa(release, pose_video=video))["info"]["animate_anyone"]
    assert full["frames"] == 12 and abs(full["fps"] - 10) < 1e-6  # output fps follows the pose video
    assert ac.ok(webui, aa(release, pose_video=video, pose_stride=2))["info"]["animate_anyone"]["frames"] == 6
    assert ac.ok(webui, aa(release, pose_video=video, pose_fps=5))["info"]["animate_anyone"]["frames"] == 6
    assert ac.ok(webui, aa(release, pose_video=video, pose_max_frames=4))["info"]["animate_anyone"]["frames"] == 4
    assert ac.ok(webui, aa(release, pose_video=video, fps=24))["info"]["animate_anyone"]["fps"] == 24
    gif = ac.ok(webui, aa(release, pose_video=skeleton_video(5, fmt="gif"), fit="letterbox"))
    assert gif["info"]["animate_anyone"]["frames"] == 5


def test_pose_frames_list(webui, release):
    """Pose images drawn as the JSON path draws them give exactly the JSON path's video, in list order."""
    from PIL import Image

    from lib_animate.pose import RenderOptions, parse_pose_json, render_pose_sequence

    poses = parse_pose_json(pose_frames_json(3), canvas_size=(SIZE, SIZE))
    drawn = render_pose_sequence(poses, 8, SIZE, SIZE, options=RenderOptions(hands=True, face=True)).frames
    images = [_b64_png(Image.fromarray(frame)) for frame in drawn]
    from_images = ac.frames_of(ac.ok(webui, aa(release, pose_frames=images)))
    from_json = ac.frames_of(ac.ok(webui, aa(release, pose_json=pose_frames_json(3))))
    assert len(from_images) == 3 and all(np.array_equal(a, b) for a, b in zip(from_images, from_json))
    reversed_order = ac.frames_of(ac.ok(webui, aa(release, pose_frames=images[::-1])))
    assert not np.array_equal(reversed_order[0], from_images[0])  # the list order is the frame order


def _mean_abs(a, b):
    return float(np.mean([np.abs(x.astype(np.int16) - y).mean() for x, y in zip(a, b)]))


@pytest.mark.parametrize("sampler", ["Euler", "DDIM", "DPM++ 2M"])
def test_webui_samplers_with_v_prediction(webui, release, baseline, sampler):
    """The webui's samplers read the model's output as v (Animate Anyone is a v-prediction model): from
    the same noise they land near the exact sampler's video, much nearer than another seed's video --
    reading v as eps lands far from both."""
    exact_body = dict(aa(release, pose_json=pose_frames_json(4)), steps=12)
    data = ac.ok(webui, dict(aa(release, pose_json=pose_frames_json(4), sampler=sampler), steps=12))
    assert data["info"]["animate_anyone"]["sampler"] == sampler
    frames = ac.frames_of(data)
    exact = ac.frames_of(ac.ok(webui, exact_body))
    other_seed = ac.frames_of(ac.ok(webui, dict(exact_body, seed=99)))
    assert len(frames) == 4 and min(float(f.std()) for f in frames) > 2  # not blank
    assert _mean_abs(frames, exact) < 0.5 * _mean_abs(other_seed, exact), (_mean_abs(frames, exact), _mean_abs(other_seed, exact))
    assert ac.ok(webui, ac.payload(batch_size=2))["images"] == baseline


def test_split_cond_uncond_passes_give_the_same_clip(webui, release):
    body = aa(release, pose_json=pose_frames_json(4))
    batched = ac.frames_of(ac.ok(webui, dict(body, override_settings={"batch_cond_uncond": True})))
    split = ac.frames_of(ac.ok(webui, dict(body, override_settings={"batch_cond_uncond": False})))
    assert np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(batched, split)]) < 1.0


def test_motion_scale_and_freenoise_in_the_animate_anyone_mode(webui, release, baseline):
    body = aa(release, pose_json=pose_frames_json(6), context_length=4, context_overlap=1)
    today = ac.frames_of(ac.ok(webui, body))
    still = ac.frames_of(ac.ok(webui, aa(release, pose_json=pose_frames_json(6), context_length=4, context_overlap=1, motion_scale=0)))
    free = ac.frames_of(ac.ok(webui, aa(release, pose_json=pose_frames_json(6), context_length=4, context_overlap=1,
                                        noise_init="freenoise", freenoise_stride=2)))
    assert _mean_abs(still, today) > 0.5 and _mean_abs(free[4:], today[4:]) > 0.5
    assert ac.ok(webui, ac.payload(batch_size=2))["images"] == baseline


def test_long_pose_sequence_uses_context_windows(webui, release, baseline):
    data = ac.ok(webui, aa(release, pose_json=pose_frames_json(14), context_length=8, context_overlap=2, formats=["MP4"]))
    windowed = ac.frames_of(data)
    assert len(read_video(ac.trailing(data)[0][1]).frames) == 14 and len(windowed) == 14
    assert data["info"]["animate_anyone"]["reference_passes"] == 1  # one reference pass serves every window
    infotext = data["info"]["infotexts"][0]
    # the mode's default schedule is the reference pipeline's: static wrapping windows, flat fusion
    assert "context_length=8" in infotext and "context_schedule=reference" in infotext and "fusion=flat" in infotext
    explicit = ac.frames_of(ac.ok(webui, aa(release, pose_json=pose_frames_json(14), context_length=8, context_overlap=2,
                                            context_schedule="reference", closed_loop=True, fusion="flat")))
    assert all(np.array_equal(a, b) for a, b in zip(windowed, explicit))
    whole = ac.frames_of(ac.ok(webui, aa(release, pose_json=pose_frames_json(14), context_length=14)))
    assert _mean_abs(windowed, whole) > 0.5  # the windows did change what the motion module saw
    # one window: no schedule has anything to wrap or shift
    short = ac.frames_of(ac.ok(webui, aa(release, pose_json=pose_frames_json(6), context_length=8)))
    for schedule in ("open", "loop"):
        other = ac.frames_of(ac.ok(webui, aa(release, pose_json=pose_frames_json(6), context_length=8, context_schedule=schedule)))
        assert all(np.array_equal(a, b) for a, b in zip(short, other)), schedule
    # with windows every schedule gives another video
    for schedule in ("open", "loop"):
        other = ac.frames_of(ac.ok(webui, aa(release, pose_json=pose_frames_json(14), context_length=8, context_overlap=2,
                                             context_schedule=schedule)))
        assert _mean_abs(windowed, other) > 0.5, schedule
    assert ac.ok(webui, ac.payload(batch_size=2))["images"] == baseline


def _dwpose_missing(release):
    return "yolox_l.onnx"


@pytest.mark.parametrize("fields, words", [
    ({"reference_image": None}, "'reference_image' is missing"),
    ({"reference_image": base64.b64encode(b"this is no image").decode()}, "'reference_image' is not a readable image"),
    ({"pose_video": base64.b64encode(b"\x00\x01 not a video" * 20).decode()}, "'pose_video': the uploaded data (280 bytes) is a file of unknown type, not a video"),
    ({"pose_frames": []}, "no pose input"),
    ({"pose_json": [{"people": [{"pose_keypoints_2d": [0.5, 0.5]}]}]}, "pose_keypoints_2d"),
    ({"pose_json": pose_frames_json(2), "pose_video": "AAAA"}, "several pose inputs at once"),
    ({"pose_json": pose_frames_json(2), "sampler": "Nope"}, "unknown sampler 'Nope'"),
    ({"pose_json": pose_frames_json(2), "fit": "stretch"}, "'fit' must be one of"),
    ({"pose_json": pose_frames_json(2), "freeinit_iterations": 1}, "FreeInit works in the AnimateDiff mode"),
    ({"pose_json": pose_frames_json(2), "motion_scale": "0:1, 5:0"}, "keyframe 5 is beyond the last frame"),
    ({"pose_json": pose_frames_json(2), "context_schedule": "reference", "fusion": "pyramid"},
     "'fusion' 'pyramid' contradicts 'context_schedule' 'reference'"),
    ({"pose_json": pose_frames_json(2), "context_schedule": "reference", "closed_loop": False, "context_stride": 2},
     "'closed_loop' false and 'context_stride' 2 contradict 'context_schedule' 'reference'"),
    ({"pose_json": pose_frames_json(2), "context_schedule": "open", "closed_loop": True}, "'closed_loop' true contradicts 'context_schedule' 'open'"),
])
def test_bad_input_is_answered_422(webui, release, baseline, fields, words):
    body = aa(release, **fields)
    assert words in ac.rejected(webui, body)
    assert ac.ok(webui, ac.payload(batch_size=2))["images"] == baseline


def test_a_person_video_without_dwpose_files_names_where_it_looked(webui, release):
    from lib_animate.video import EncodeOptions, encode_video

    rng = np.random.default_rng(0)
    person = [rng.integers(60, 255, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(3)]  # not a skeleton
    video = base64.b64encode(encode_video(person, "mp4", EncodeOptions(fps=8))).decode()
    error = ac.rejected(webui, aa(release, pose_video=video))
    assert "yolox_l.onnx" in error and "dw-ll_ucoco_384.onnx" in error and "sd-webui-controlnet" in error


def test_lora_tags_are_refused(webui, release):
    body = aa(release, pose_json=pose_frames_json(2))
    body["prompt"] = "a dancer <lora:some_style:0.8>"
    assert "<lora:...> tags are not used in Animate Anyone mode" in ac.rejected(webui, body)


def test_pose_sequences_longer_than_the_configured_maximum(webui, release):
    assert webui.post("/sdapi/v1/options", {"animate_anyone_max_pose_frames": 5}).ok
    try:
        error = ac.rejected(webui, aa(release, pose_json=pose_frames_json(6)))
        assert "more than 5 frames" in error
        assert ac.ok(webui, aa(release, pose_json=pose_frames_json(6), pose_max_frames=5))["info"]["animate_anyone"]["frames"] == 5
        assert "above the maximum in Settings (5 frames)" in ac.rejected(webui, aa(release, pose_json=pose_frames_json(8), pose_max_frames=7))
    finally:
        assert webui.post("/sdapi/v1/options", {"animate_anyone_max_pose_frames": 300}).ok


def test_incomplete_or_wrong_weights_folder(webui, release, baseline, tmp_path):
    import shutil

    broken = tmp_path / "AnimateAnyone-broken"
    shutil.copytree(release["folder"], broken, ignore=shutil.ignore_patterns("converted"))
    (broken / "pose_guider.pth").unlink()
    (broken / "reference_unet.pth").unlink()
    assert webui.post("/sdapi/v1/options", {"animate_anyone_weights_dir": str(broken)}).ok
    try:
        error = ac.rejected(webui, aa(release, pose_json=pose_frames_json(2)))
        assert "pose_guider.pth" in error and "reference_unet.pth" in error and str(broken) in error
        import torch

        torch.save(rf.pose_guider_weights(1, out_channels=64), str(broken / "pose_guider.pth"))
        shutil.copy(release["folder"] / "reference_unet.pth", broken / "reference_unet.pth")
        error = ac.rejected(webui, aa(release, pose_json=pose_frames_json(2)))
        assert "pose guider" in error or "pose_guider.pth" in error
    finally:
        assert webui.post("/sdapi/v1/options", {"animate_anyone_weights_dir": ""}).ok
    assert ac.ok(webui, ac.payload(batch_size=2))["images"] == baseline


@pytest.mark.parametrize("width, height", [(100, 68), (72, 88)])
def test_sizes_that_are_not_multiples_of_8_or_64_work(webui, release, baseline, width, height):
    """The webui samples latents of width // 8 x height // 8 (and its UNet hijack joins skip connections
    of odd sizes); the pose guider's features must have that size too."""
    body = aa(release, pose_json=pose_frames_json(3))
    body.update(width=width, height=height)
    data = ac.ok(webui, body)
    frames = ac.frames_of(data)
    assert len(frames) == 3 and frames[0].shape[:2] == (height // 8 * 8, width // 8 * 8)
    assert ac.ok(webui, ac.payload(batch_size=2))["images"] == baseline


def test_an_exception_mid_sampling_restores_the_webui_unet(webui, release, baseline):
    body = aa(release, pose_json=pose_frames_json(4))
    response = webui.post("/sdapi/v1/txt2img", ac.failing_at_step(body, 2))
    assert response.status == 500 and "failing on purpose at step 2" in response.text()
    assert ac.ok(webui, ac.payload(batch_size=2))["images"] == baseline
    assert ac.ok(webui, body)["info"]["animate_anyone"]["frames"] == 4  # and the same job works afterwards


def test_a_weights_folder_changed_during_a_job_applies_to_the_next_job(webui, release, tmp_path):
    """The tab's folder box (like /sdapi/v1/options) changes the setting outside the queue lock: the job
    in progress keeps the weights it holds and finishes; the next job reads the new folder."""
    body = aa(release, pose_json=pose_frames_json(8))
    body.update(steps=30, width=96, height=96)
    result = {}
    worker = threading.Thread(target=lambda: result.update(response=webui.post("/sdapi/v1/txt2img", body)))
    worker.start()
    try:
        deadline = time.time() + 120
        while time.time() < deadline and webui.get("/sdapi/v1/progress").json()["state"]["sampling_step"] < 1:
            time.sleep(0.2)
        assert webui.post("/sdapi/v1/options", {"animate_anyone_weights_dir": str(tmp_path)}).ok  # an empty folder
        assert worker.is_alive()  # the change really overlapped the job
        worker.join(300)
        data = result["response"]
        assert data.ok, data.text()[:2000]
        entry = __import__("json").loads(data.json()["info"])["animate_anyone"]
        assert entry["frames"] == 8 and entry["videos"] == 1 and entry["interrupted"] is False
        error = ac.rejected(webui, aa(release, pose_json=pose_frames_json(2)))
        assert str(tmp_path) in error
    finally:
        worker.join(300)
        assert webui.post("/sdapi/v1/options", {"animate_anyone_weights_dir": ""}).ok
    assert ac.ok(webui, aa(release, pose_json=pose_frames_json(2)))["info"]["animate_anyone"]["frames"] == 2


def test_an_interrupted_job_restores_the_webui_unet(webui, release, baseline):
    body = aa(release, pose_json=pose_frames_json(16))
    body.update(steps=40, width=128, height=128)
    result = {}
    worker = threading.Thread(target=lambda: result.update(response=webui.post("/sdapi/v1/txt2img", body)))
    worker.start()
    deadline = time.time() + 120
    while time.time() < deadline and webui.get("/sdapi/v1/progress").json()["state"]["sampling_step"] < 2:
        time.sleep(0.2)
    webui.post("/sdapi/v1/interrupt", {})
    worker.join(300)
    assert result["response"].ok
    entry = __import__("json").loads(result["response"].json()["info"])["animate_anyone"]
    assert entry["interrupted"] is True and entry["videos"] == 0
    assert ac.ok(webui, ac.payload(batch_size=2))["images"] == baseline


def test_fast_reference_attention_matches_the_generic_path(webui, release):
    """With the webui's SDP optimisation the reference K/V are computed once per video; the
    generic path (every attention through the webui's attention function) gives the same video."""
    body = aa(release, pose_json=pose_frames_json(6))
    fast = ac.ok(webui, body)
    assert fast["info"]["animate_anyone"]["fast_reference_attention"] is True
    assert webui.post("/sdapi/v1/options", {"animate_anyone_fast_reference": False}).ok
    try:
        generic = ac.ok(webui, body)
    finally:
        assert webui.post("/sdapi/v1/options", {"animate_anyone_fast_reference": True}).ok
    assert generic["info"]["animate_anyone"]["fast_reference_attention"] is False
    difference = np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(ac.frames_of(fast), ac.frames_of(generic))])
    assert difference < 0.5, difference


@pytest.mark.parametrize("path, fields", [
    ("/sdapi/v1/txt2img", {"sampler_name": "Animate Anyone (DDIM)"}),
    ("/sdapi/v1/txt2img", {"enable_hr": True, "hr_scale": 2, "hr_upscaler": "Latent", "denoising_strength": 0.5,
                           "hr_sampler_name": "Animate Anyone (DDIM)"}),
    ("/sdapi/v1/img2img", {"sampler_name": "Animate Anyone (DDIM)", "init_images": [_b64_png(_gray())]}),
])
def test_the_animate_anyone_sampler_refuses_every_other_job(webui, release, baseline, path, fields):
    """It is in every sampler list; on an ordinary job it would read eps as v (garbage) or fail (img2img):
    a 422 whether the extension is enabled or not, and the next plain request is unchanged."""
    body = ac.payload(batch_size=2, **fields)
    assert "only samples Animate Anyone jobs" in ac.rejected(webui, body, path=path)
    animatediff = ac.payload({"enable": True, "motion_module": ac.MODULE, "frames": 4, "formats": []}, **fields)
    ac.motion_folder(webui)
    assert "only samples Animate Anyone jobs" in ac.rejected(webui, animatediff, path=path)
    assert ac.ok(webui, ac.payload(batch_size=2))["images"] == baseline
