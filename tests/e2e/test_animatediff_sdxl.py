"""AnimateDiff on SDXL end to end: the real webui v1.10.1 with the tiny random SDXL checkpoint
(tests/support/sdxl_assets.py) and tiny AnimateDiff-SDXL / HotShot-XL modules in their published
formats (AD-SDXL in the original naming as a zip .ckpt, HotShot-XL in its native naming).

What "restored" means is checked by comparing plain requests' bytes before and after, on SDXL and
again on SD1 after switching back.
"""

import base64
import io
import re

import numpy as np
import pytest

from lib_animate.video import read_infotext, read_video
from tests.e2e import animate_client as ac
from tests.support.webui_env import CHECKPOINT_NAME, SDXL_CHECKPOINT_NAME
from tests.support.webui_server import with_checkpoint

pytestmark = pytest.mark.e2e

AD_SDXL, AD_SDXL_ZERO, HOTSHOT, HOTSHOT_ZERO = ac.AD_SDXL, ac.AD_SDXL_ZERO, ac.HOTSHOT, ac.HOTSHOT_ZERO
PLAIN = dict(batch_size=8)


@pytest.fixture(scope="module")
def sdxl_modules(webui):
    return ac.sdxl_motion_folder(webui)


@pytest.fixture(scope="module")
def on_sdxl(webui, sdxl_modules):
    """The tiny SDXL checkpoint loaded for the module's tests, and a plain SDXL batch taken before any
    job; tiny-sd15 is loaded again afterwards."""
    with with_checkpoint(webui, SDXL_CHECKPOINT_NAME):
        yield [ac.image(b) for b in ac.ok(webui, ac.payload(**PLAIN))["images"]]


def video(webui, args, **overrides):
    return ac.ok(webui, ac.payload(dict({"enable": True, "formats": ["GIF"]}, **args), **overrides))


def _mean_abs(a, b):
    return float(np.mean([np.abs(x.astype(np.int16) - y.astype(np.int16)).mean() for x, y in zip(a, b)]))


def assert_plain_sdxl_unchanged(webui, plain):
    frames = [ac.image(b) for b in ac.ok(webui, ac.payload(**PLAIN))["images"]]
    assert all(np.array_equal(a, b) for a, b in zip(frames, plain))


def test_a_zero_ad_sdxl_module_with_the_checkpoints_schedule_is_the_plain_sdxl_batch(webui, on_sdxl):
    data = video(webui, {"motion_module": AD_SDXL_ZERO, "frames": 8, "noise_schedule": "checkpoint", "formats": []})
    frames = ac.frames_of(data)
    assert len(frames) == 8 and all(np.array_equal(a, b) for a, b in zip(frames, on_sdxl))
    assert data["info"]["sd_model_name"] == SDXL_CHECKPOINT_NAME


@pytest.mark.parametrize("module, version", [(AD_SDXL, "sdxl_beta"), (HOTSHOT, "hotshotxl")])
def test_ad_sdxl_and_hotshot_xl_animate_8_frames_and_restore(webui, on_sdxl, module, version):
    data = video(webui, {"motion_module": module, "frames": 8})
    frames = ac.frames_of(data)
    assert len(frames) == 8 and frames[0].shape == (64, 64, 3)
    assert _mean_abs(frames, on_sdxl) > 0.5  # the modules act
    clip = read_video(ac.trailing(data)[0][1])
    assert len(clip.frames) == 8
    text = read_infotext(ac.trailing(data)[0][1])
    assert version in text, text  # motion_module_version (the file names do not contain it)
    assert video(webui, {"motion_module": module, "frames": 8})["images"] == data["images"]  # deterministic
    assert_plain_sdxl_unchanged(webui, on_sdxl)


def test_hotshot_normalises_the_sdxl_resblocks_across_frames(webui, on_sdxl):
    """A HotShot module with zero proj_out adds nothing itself, but its ResBlock norms span the clip:
    the frames differ from the plain batch (AD-SDXL's zero module above gives it bit for bit)."""
    frames = ac.frames_of(video(webui, {"motion_module": HOTSHOT_ZERO, "frames": 8, "noise_schedule": "checkpoint",
                                        "formats": []}))
    assert _mean_abs(frames, on_sdxl) > 0.5


def test_each_sdxl_family_samples_with_its_own_schedule(webui, on_sdxl):
    """HotShot-XL was trained with SDXL's own schedule: its "motion_module" schedule is the checkpoint's,
    bit for bit. AD-SDXL's (scaled-linear to 0.020) is not."""
    def frames(module, schedule):
        return ac.frames_of(video(webui, {"motion_module": module, "frames": 8, "noise_schedule": schedule, "formats": []}))

    def same(a, b):  # the pixels (the PNGs' infotexts name the schedule)
        return all(np.array_equal(x, y) for x, y in zip(a, b))

    assert same(frames(HOTSHOT, "motion_module"), frames(HOTSHOT, "checkpoint"))
    assert not same(frames(AD_SDXL, "motion_module"), frames(AD_SDXL, "checkpoint"))


def test_prompt_travel_on_sdxl_conditioning(webui, on_sdxl):
    args = {"motion_module": HOTSHOT, "frames": 8}
    travel = video(webui, args, prompt="masterpiece\n0: a red fox\n5: a white owl\nin the snow")
    single = video(webui, args, prompt="masterpiece, a red fox, in the snow")
    assert travel["images"][:8] != single["images"][:8]
    assert travel["info"]["all_prompts"][5] == "masterpiece, a white owl, in the snow"
    assert read_infotext(ac.trailing(travel)[0][1]).startswith("masterpiece\n0: a red fox")
    # keyframes with one prompt interpolate between equal conditionings: the single-prompt video, up to
    # float rounding of (1 - t) a + t a (a wrong split of the vector would move the size/crop embedding)
    same = ac.frames_of(video(webui, args, prompt="masterpiece\n0: a red fox\n5: a red fox\nin the snow"))
    assert _mean_abs(same, ac.frames_of(single)) < 0.5


def test_a_12_frame_video_with_8_frame_windows(webui, on_sdxl):
    data = video(webui, {"motion_module": HOTSHOT, "frames": 12, "context_length": 8, "context_overlap": 4})
    frames = ac.frames_of(data)
    assert len(frames) == 12 and len(read_video(ac.trailing(data)[0][1]).frames) == 12
    text = read_infotext(ac.trailing(data)[0][1])
    assert re.search(r"context_length\W+8\b", text), text
    one_window = ac.frames_of(video(webui, {"motion_module": HOTSHOT, "frames": 12, "context_length": 12}))
    assert _mean_abs(frames, one_window) > 0.1  # the windows did cut the clip
    assert_plain_sdxl_unchanged(webui, on_sdxl)


def _png_b64(color):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_img2vid_vid2vid_and_hires_fix_on_sdxl(webui, on_sdxl):
    red = _png_b64((200, 40, 40))
    data = ac.ok(webui, ac.payload({"enable": True, "motion_module": AD_SDXL, "frames": 8, "formats": []},
                                   init_images=[red], denoising_strength=0.5), path="/sdapi/v1/img2img")
    assert len(ac.frames_of(data)) == 8
    # video to video: each frame its own init image (encoded in chunks by sgm's VAE)
    bars = []
    for i in range(8):
        frame = np.full((64, 64, 3), 30, dtype=np.uint8)
        frame[:, 8 * i:8 * i + 8] = 220
        bars.append(frame)
    vid2vid = ac.ok(webui, ac.payload({"enable": True, "motion_module": HOTSHOT, "frames": 8, "formats": [],
                                       "init_video": ac.lossless_mp4(bars)},
                                      init_images=[red], denoising_strength=0.5), path="/sdapi/v1/img2img")
    assert len(ac.frames_of(vid2vid)) == 8 and vid2vid["info"]["animate_anyone"]["init_video_frames"] == 8
    hires = dict(enable_hr=True, hr_scale=1.5, hr_upscaler="Latent", hr_second_pass_steps=2, denoising_strength=0.6)
    frames = ac.frames_of(video(webui, {"motion_module": HOTSHOT, "frames": 8, "formats": []}, **hires))
    assert len(frames) == 8 and frames[0].shape == (96, 96, 3)
    assert_plain_sdxl_unchanged(webui, on_sdxl)


def test_an_exception_mid_sampling_on_sdxl_restores_everything(webui, on_sdxl):
    body = ac.payload({"enable": True, "motion_module": HOTSHOT, "frames": 8, "prompt_interpolation": "slerp",
                       "formats": ["GIF"]}, prompt="0: a red fox\n4: a white owl")
    response = webui.post("/sdapi/v1/txt2img", ac.failing_at_step(body, 2))
    assert response.status == 500 and "failing on purpose at step 2" in response.text()
    assert_plain_sdxl_unchanged(webui, on_sdxl)  # modules, HotShot's norm hooks and the schedule are gone


def test_what_cannot_run_on_sdxl_is_refused_naming_both(webui, on_sdxl):
    error = ac.rejected(webui, ac.payload({"enable": True, "motion_module": ac.MODULE, "frames": 8}))
    assert "SD1.5 motion module" in error and ac.MODULE in error and SDXL_CHECKPOINT_NAME in error, error
    error = ac.rejected(webui, ac.payload({"enable": True, "mode": "animate_anyone", "frames": 4,
                                           "reference_image": _png_b64((90, 90, 90)), "pose_json": ac.pose_frames_json(4)}))
    assert "SD1.5 checkpoints only" in error and SDXL_CHECKPOINT_NAME in error, error
    assert_plain_sdxl_unchanged(webui, on_sdxl)


def test_an_sdxl_module_on_the_sd1_checkpoint_is_refused_naming_both(webui, sdxl_modules):
    with with_checkpoint(webui, CHECKPOINT_NAME):  # (the module's SDXL fixture may still be active)
        baseline = ac.ok(webui, ac.payload(batch_size=2))["images"]
        error = ac.rejected(webui, ac.payload({"enable": True, "motion_module": HOTSHOT, "frames": 8}))
        assert "SDXL motion module" in error and "HotShot-XL" in error and CHECKPOINT_NAME in error, error
        assert ac.ok(webui, ac.payload(batch_size=2))["images"] == baseline


@pytest.mark.parametrize("flag", ["--lowvram", "--medvram"])
def test_the_low_vram_modes_give_the_same_sdxl_video(webui, sdxl_modules, flag):
    """SDXL users often run --medvram / --lowvram: the webui's own policy moves the SDXL UNet (split into
    its --lowvram parts, or inside sd_model.model) with the motion modules in its blocks, and the video
    is the one without the flag (the probe extension records the moves; tests/e2e/test_low_vram.py)."""
    from tests.e2e.test_low_vram import PREFIX, traced, unet_part_labels

    body = ac.payload({"enable": True, "motion_module": HOTSHOT, "frames": 6, "context_length": 4, "context_overlap": 1,
                       "formats": []}, steps=3)
    with with_checkpoint(webui, SDXL_CHECKPOINT_NAME):
        expected = ac.frames_of(ac.ok(webui, body))
    with webui.temporarily(extra_args=[flag]), with_checkpoint(webui, SDXL_CHECKPOINT_NAME):
        plain = ac.ok(webui, ac.payload(batch_size=2))["images"]
        data, probe = traced(webui, body)
        assert probe["model_lowvram"]
        assert all(np.array_equal(a, b) for a, b in zip(ac.frames_of(data), expected))
        calls = [label for label in probe["trace"] if label.startswith(PREFIX)]
        if flag == "--lowvram":  # every UNet call takes the SDXL UNet's 20 parts in the webui's order
            parts = unet_part_labels(len(probe["unet_part_pre_hooks"]))
            assert len(parts) == 20 and calls[:len(parts)] == parts and len(calls) % len(parts) == 0
            assert probe["unet_part_pre_hooks"] == [1] * len(parts)
        else:
            assert "model" in probe["trace"] and not calls
        assert probe["trace"][-1] == "first_stage_model" and probe["now"] == "none"
        assert ac.ok(webui, ac.payload(batch_size=2))["images"] == plain
