"""The AnimateDiff mode's character option end to end: a real webui v1.10.1 with sd-webui-controlnet 1.1.455
and its tiny ControlNet (tests/support/controlnet_files.py): reference image + pose JSON + an image LoRA in
the prompt give a video; the reference and the poses each change it; strength 0 is exactly the job with the
same skeletons as a control source and no reference; everything is restored after success, an exception and
an interrupt; bad inputs are answered 422."""

import base64
import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from tests.e2e import animate_client as ac
from tests.e2e.animate_client import pose_frames_json
from tests.e2e.test_animatediff_api import _write_image_lora_and_embedding
from tests.e2e.test_controlnet_video import assert_unchanged, baselines, cn, frames_of, mean_abs, request, unit  # noqa: F401
from tests.support import controlnet_files as cf

pytestmark = pytest.mark.e2e

FRAMES = 6
PROMPT = "a dancer on a stage <lora:tiny_style:1>"


def png_b64(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def reference(colour=(200, 60, 40)):
    image = Image.new("RGB", (64, 64), (20, 20, 30))
    image.paste(Image.new("RGB", (24, 48), colour), (20, 8))
    return png_b64(image)


def shifted_poses(dx):
    """The test poses moved sideways by ``dx`` (normalized): other skeleton frames for the OpenPose unit."""
    frames = pose_frames_json(FRAMES)
    for frame in frames:
        points = frame["people"][0]["pose_keypoints_2d"]
        for i in range(0, len(points), 3):
            points[i] += dx
    return frames


def character_args(**fields):
    return dict({"enable": True, "motion_module": ac.MODULE, "formats": [], "context_length": 4, "context_overlap": 2,
                 "character": True, "reference_image": reference(), "pose_json": pose_frames_json(FRAMES)}, **fields)


def character_request(units=None, **fields):
    return request(character_args(**fields), units if units is not None else [unit(cf.CONTROLNET)], steps=3, prompt=PROMPT)


@pytest.fixture(scope="module")
def lora(cn):
    _write_image_lora_and_embedding(cn)
    return cn


def test_reference_and_poses_make_the_video_with_one_reference_pass_per_denoiser_evaluation(lora, baselines):
    data = ac.ok(lora, character_request())
    frames = frames_of(data)
    entry = data["info"]["animate_anyone"]
    assert len(frames) == FRAMES and entry["character"] is True and entry["pose_frames"] == FRAMES
    assert entry["reference_passes"] == entry["denoiser_evaluations"] == 3  # Euler a: one evaluation per step
    assert [u["source"] for u in entry["controlnet_units"]] == ["pose"]
    assert "tiny_style" in data["info"]["infotexts"][0] and "character=true" in data["info"]["infotexts"][0]
    other_look = frames_of(ac.ok(lora, character_request(reference_image=reference((40, 200, 90)))))
    assert mean_abs(frames, other_look) > 0.05  # tiny random weights: a small but certain change
    # the tiny random ControlNet answers thin skeleton lines weakly, but deterministically; that the poses are
    # exactly the unit's hints is shown by test_strength_zero_is_the_job_without_a_reference
    other_moves = frames_of(ac.ok(lora, character_request(pose_json=shifted_poses(-0.3))))
    assert mean_abs(frames, other_moves) > 0.001
    clean = ac.ok(lora, character_request(reference_noise="clean"))["info"]["animate_anyone"]
    assert clean["reference_passes"] == 1 and clean["denoiser_evaluations"] == 3  # once per video at sigma 0
    assert_unchanged(lora, baselines)


def test_strength_zero_is_the_job_without_a_reference(lora):
    zero = frames_of(ac.ok(lora, character_request(reference_strength=0.0)))
    # the same skeletons as an ordinary control source, no character option
    args = {"enable": True, "motion_module": ac.MODULE, "formats": [], "context_length": 4, "context_overlap": 2,
            "control_pose_json": pose_frames_json(FRAMES)}
    plain = frames_of(ac.ok(lora, request(args, [unit(cf.CONTROLNET)], steps=3, prompt=PROMPT)))
    assert all(np.array_equal(a, b) for a, b in zip(zero, plain))
    with_reference = frames_of(ac.ok(lora, character_request()))
    assert mean_abs(with_reference, plain) > 0.5


def test_an_exception_or_an_interrupt_mid_sampling_restores_everything(lora, baselines):
    body = character_request()
    response = lora.post("/sdapi/v1/txt2img", ac.failing_at_step(body, 1))
    assert response.status == 500 and "failing on purpose at step 1" in response.text()
    assert_unchanged(lora, baselines)
    slow = character_request(**{"frames": FRAMES})
    slow["steps"] = 40
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("response", lora.post("/sdapi/v1/txt2img", slow)))
    worker.start()
    time.sleep(4)
    assert lora.post("/sdapi/v1/interrupt").ok
    worker.join(300)
    assert result["response"].ok
    assert_unchanged(lora, baselines)
    assert len(frames_of(ac.ok(lora, body))) == FRAMES  # and the next job works


@pytest.mark.parametrize("fields, units, words", [
    ({"reference_image": None}, None, "'character' needs 'reference_image'"),
    ({"pose_json": None}, None, "'character' needs a pose input"),
    ({"retarget": True}, None, "'retarget' needs the reference's keypoints: give 'reference_pose_json', or put the DWPose files"),
    ({}, [], "the character's pose input is given but no ControlNet unit is enabled"),
    ({}, [unit(cf.CONTROLNET, image=reference())], "every enabled ControlNet unit has an input of its own, so no unit would use it"),
    ({}, [unit(cf.CONTROLNET, module="openpose")], "set its preprocessor to 'none'"),
    ({}, [unit(cf.CONTROLNET), unit(cf.CONTROLNET, module="reference_only", image=reference())], "reference-only hooks the same self-attention"),
])
def test_bad_inputs_are_answered_422_and_nothing_changes(lora, baselines, fields, units, words):
    assert words in ac.rejected(lora, character_request(units, **fields))
    assert_unchanged(lora, baselines)


def test_hires_fix_runs_the_reference_at_both_sizes(lora, baselines):
    body = character_request()
    body.update(enable_hr=True, hr_scale=1.5, hr_upscaler="Latent", hr_second_pass_steps=2, denoising_strength=0.5)
    data = ac.ok(lora, body)
    frames = frames_of(data)
    entry = data["info"]["animate_anyone"]
    assert len(frames) == FRAMES and frames[0].shape[:2] == (96, 96)
    assert entry["reference_passes"] == entry["denoiser_evaluations"] > 3  # the hires pass's evaluations have theirs
    assert_unchanged(lora, baselines)


def test_prompt_travel_and_separate_cond_uncond_passes_keep_one_reference_pass_per_evaluation(lora):
    body = character_request()
    body["prompt"] = "a dancer <lora:tiny_style:1>\n0: on a stage\n4: in a forest"
    body["override_settings"] = {"batch_cond_uncond": False}  # cond and uncond rows in two UNet calls per window
    data = ac.ok(lora, body)
    entry = data["info"]["animate_anyone"]
    assert len(frames_of(data)) == FRAMES
    assert entry["reference_passes"] == entry["denoiser_evaluations"] == 3


def test_the_low_vram_modes_give_the_same_video(lora):
    """--medvram moves the UNet in for the reference pass itself (it comes before the webui's own hook in
    each evaluation); --lowvram's hooks sit on the UNet's parts. On the CPU the moves are no-ops, so the
    videos are bit-identical."""
    normal = frames_of(ac.ok(lora, character_request()))
    for flag in ("--medvram", "--lowvram"):
        with lora.temporarily(extra_args=[flag]):
            _write_image_lora_and_embedding(lora)  # refresh the LoRA list of the restarted server
            video = frames_of(ac.ok(lora, character_request()))
        assert all(np.array_equal(a, b) for a, b in zip(video, normal)), flag
