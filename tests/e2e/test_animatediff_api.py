"""AnimateDiff mode end to end: a real webui v1.10.1, the tiny random checkpoint, tiny motion modules.

Every test talks to /sdapi/v1/txt2img or /sdapi/v1/img2img only; what "restored" means is checked
by comparing plain requests' bytes before and after.
"""

import base64
import io
import os
import threading
import time

import numpy as np
import pytest

from lib_animate.video import read_infotext, read_video
from tests.e2e import animate_client as ac

pytestmark = pytest.mark.e2e


# Options the tests override per request. v1.10.1 restores an override afterwards only when the
# option is already in the settings file (processing.process_images' stored_opts), so pin them
# there first; otherwise an override would leak into later requests.
OVERRIDDEN_OPTIONS = {"batch_cond_uncond": True, "pad_cond_uncond": False, "skip_early_cond": 0.0, "s_min_uncond": 0.0}


@pytest.fixture(scope="module")
def motion(webui):
    response = webui.post("/sdapi/v1/options", OVERRIDDEN_OPTIONS)
    assert response.ok, response.text()
    return ac.motion_folder(webui)


@pytest.fixture(scope="module")
def baseline(webui, motion):
    """A plain txt2img request's images, taken before any AnimateDiff job ran."""
    return ac.ok(webui, ac.payload(batch_size=2))["images"]


def assert_plain_request_unchanged(webui, baseline):
    assert ac.ok(webui, ac.payload(batch_size=2))["images"] == baseline


def test_txt2vid_returns_frames_then_videos_and_restores(webui, motion, baseline):
    data = ac.ok(webui, ac.payload({"enable": True, "motion_module": ac.MODULE, "frames": 8, "fps": 10,
                                    "formats": ["GIF", "MP4", "WEBM", "WEBP"]}))
    entry = data["info"]["animate_anyone"]
    assert entry["frames"] == 8 and entry["fps"] == 10 and entry["videos"] == 1
    assert len(data["images"]) == 8 + 4
    assert data["info"]["all_seeds"] == list(range(1234, 1242))
    assert [i["format"] for i in entry["items"]] == ["GIF", "MP4", "WEBM", "WEBP"]
    assert [i["index"] for i in entry["items"]] == [8, 9, 10, 11]
    frames = ac.frames_of(data)
    assert all(f.shape == (64, 64, 3) for f in frames)
    for item, blob in ac.trailing(data):
        clip = read_video(blob)
        assert len(clip.frames) == 8, item
        assert clip.frames.shape[1:] == (64, 64, 3)
        assert abs(clip.fps - 10) < 0.6, (item, clip.fps)
        text = read_infotext(blob)
        assert text and "Animate Anyone:" in text and "a red fox running" in text, item
    assert_plain_request_unchanged(webui, baseline)


def test_frames_come_from_the_batch_with_per_frame_seeds_and_videos_per_iteration(webui, motion):
    data = ac.ok(webui, ac.payload({"enable": True, "motion_module": ac.MODULE, "frames": 6, "formats": ["GIF"]}, n_iter=2, seed=50))
    entry = data["info"]["animate_anyone"]
    assert entry["videos"] == 2 and len(data["images"]) == 12 + 2
    assert data["info"]["all_seeds"] == list(range(50, 62))  # the second video continues the seeds
    assert [i["video"] for i in entry["items"]] == [0, 1]
    first, second = [read_video(blob).frames for _, blob in ac.trailing(data)]
    assert len(first) == len(second) == 6 and not np.array_equal(first, second)


def test_zero_motion_module_with_checkpoint_schedule_equals_the_plain_batch(webui, motion):
    plain = [ac.image(b) for b in ac.ok(webui, ac.payload(batch_size=8))["images"]]
    data = ac.ok(webui, ac.payload({"enable": True, "motion_module": ac.ZERO_MODULE, "frames": 8,
                                    "noise_schedule": "checkpoint", "formats": []}))
    frames = ac.frames_of(data)
    assert len(frames) == 8 and all(np.array_equal(a, b) for a, b in zip(frames, plain))


def test_motion_module_schedule_differs_from_checkpoint_schedule(webui, motion):
    args = {"enable": True, "motion_module": ac.ZERO_MODULE, "frames": 8, "formats": []}
    with_mm = ac.ok(webui, ac.payload(dict(args, noise_schedule="motion_module")))["images"]
    with_ckpt = ac.ok(webui, ac.payload(dict(args, noise_schedule="checkpoint")))["images"]
    assert with_mm != with_ckpt


def _mean_abs(a, b):
    return float(np.mean([np.abs(x.astype(np.int16) - y.astype(np.int16)).mean() for x, y in zip(a, b)]))


def test_split_cond_uncond_passes_give_the_same_clip(webui, motion):
    """With batch_cond_uncond off the webui runs cond and uncond rows in separate UNet calls; each is one clip."""
    args = {"enable": True, "motion_module": ac.MODULE, "frames": 8, "formats": []}
    batched = ac.frames_of(ac.ok(webui, ac.payload(args, override_settings={"batch_cond_uncond": True})))
    split = ac.frames_of(ac.ok(webui, ac.payload(args, override_settings={"batch_cond_uncond": False})))
    assert _mean_abs(batched, split) < 1.0  # the same clip up to float rounding (a broken layout differs by tens)


LONG_PROMPT = "a red fox running in the snow, " + "very detailed fur, " * 30  # > 75 tokens: 154 vs the negative's 77


def test_prompts_of_different_token_lengths_run_in_separate_passes(webui, motion):
    """Cond (154 tokens) and uncond (77) cannot share a UNet call: the webui runs the cond clip, then the
    uncond clip. At CFG scale 1 the result is the cond pass alone, so it must equal the same job with a
    negative prompt of the same length (one batched [cond; uncond] call) -- whatever the negative says."""
    args = {"enable": True, "motion_module": ac.MODULE, "frames": 8, "formats": []}
    settings = {"pad_cond_uncond": False, "pad_cond_uncond_v0": False, "batch_cond_uncond": True}
    separate = ac.frames_of(ac.ok(webui, ac.payload(args, prompt=LONG_PROMPT, cfg_scale=1.0, override_settings=settings)))
    batched = ac.frames_of(ac.ok(webui, ac.payload(args, prompt=LONG_PROMPT, negative_prompt=LONG_PROMPT.replace("fox", "owl"),
                                                   cfg_scale=1.0, override_settings=settings)))
    assert len(separate) == 8 and _mean_abs(separate, batched) < 0.5
    guided = ac.frames_of(ac.ok(webui, ac.payload(args, prompt=LONG_PROMPT, override_settings=settings)))
    assert _mean_abs(guided, separate) > 1  # CFG 7 does use the separate uncond pass


@pytest.mark.parametrize("settings", [{"skip_early_cond": 0.5}, {"s_min_uncond": 100.0}])
def test_skipped_uncond_steps_work(webui, motion, settings):
    """Steps without an uncond pass hand the UNet the cond clip only. At CFG scale 1 skipping changes
    nothing, so the video equals the one without skipping; at CFG 7 it does change it."""
    args = {"enable": True, "motion_module": ac.MODULE, "frames": 8, "formats": []}
    skipped = ac.frames_of(ac.ok(webui, ac.payload(args, cfg_scale=1.0, override_settings=settings)))
    full = ac.frames_of(ac.ok(webui, ac.payload(args, cfg_scale=1.0)))
    assert len(skipped) == 8 and _mean_abs(skipped, full) < 0.5
    data = ac.ok(webui, ac.payload(args, override_settings=settings))
    assert _mean_abs(ac.frames_of(data), ac.frames_of(ac.ok(webui, ac.payload(args)))) > 0.1  # NGMS skips every other step only
    assert ("Skip Early CFG" in data["info"]["infotexts"][0]) or ("NGMS" in data["info"]["infotexts"][0])


@pytest.mark.parametrize("sampler", ["DDIM", "PLMS", "UniPC", "DPM++ 2M", "Euler a"])
def test_samplers(webui, motion, sampler, baseline):
    data = ac.ok(webui, ac.payload({"enable": True, "motion_module": ac.MODULE, "frames": 8, "formats": ["GIF"]}, sampler_name=sampler))
    assert len(data["images"]) == 9
    assert_plain_request_unchanged(webui, baseline)


@pytest.mark.parametrize("module, version", [(ac.V1_MODULE, "v1"), (ac.V3_MODULE, "v3")])
def test_other_versions(webui, motion, module, version, baseline):
    """Each version is recognised (the infotext names it) and acts: its video differs from the webui's
    own batch and from the v2 module's video."""
    args = {"enable": True, "motion_module": module, "frames": 8, "formats": [], "noise_schedule": "checkpoint"}
    data = ac.ok(webui, ac.payload(args))
    frames = ac.frames_of(data)
    assert len(frames) == 8 and f"motion_module_version={version}" in data["info"]["infotexts"][0]
    plain = [ac.image(b) for b in ac.ok(webui, ac.payload(batch_size=8))["images"]]
    v2 = ac.frames_of(ac.ok(webui, ac.payload(dict(args, motion_module=ac.MODULE))))
    assert _mean_abs(frames, plain) > 0.5 and _mean_abs(frames, v2) > 0.5
    assert_plain_request_unchanged(webui, baseline)


def test_long_video_uses_context_windows(webui, motion, baseline):
    args = {"enable": True, "motion_module": ac.MODULE, "frames": 12, "context_length": 8, "context_overlap": 2, "formats": ["MP4"]}
    data = ac.ok(webui, ac.payload(args))
    windowed = ac.frames_of(data)
    assert len(read_video(ac.trailing(data)[0][1]).frames) == 12 and "context_length=8" in data["info"]["infotexts"][0]
    whole = ac.frames_of(ac.ok(webui, ac.payload(dict(args, context_length=12))))
    assert _mean_abs(windowed, whole) > 0.5  # the motion module saw windows of 8, not the whole clip
    looped = ac.frames_of(ac.ok(webui, ac.payload(dict(args, closed_loop=True))))
    flat = ac.frames_of(ac.ok(webui, ac.payload(dict(args, fusion="flat"))))
    assert _mean_abs(looped, windowed) > 0.5 and _mean_abs(flat, windowed) > 0.1
    # one window: closed loop and fusion have nothing to act on
    short = dict(args, frames=8)
    one = ac.frames_of(ac.ok(webui, ac.payload(short)))
    assert all(np.array_equal(a, b) for a, b in zip(one, ac.frames_of(ac.ok(webui, ac.payload(dict(short, closed_loop=True, fusion="flat"))))))
    assert_plain_request_unchanged(webui, baseline)


def test_motion_scale(webui, motion, baseline):
    """0 gives the image model alone (the webui's own batch, bit for bit, with the checkpoint's schedule),
    1 today's video; per-frame values work under context windows; bad values are refused."""
    args = {"enable": True, "motion_module": ac.MODULE, "frames": 8, "formats": [], "noise_schedule": "checkpoint"}
    plain = [ac.image(b) for b in ac.ok(webui, ac.payload(batch_size=8))["images"]]
    zero = ac.frames_of(ac.ok(webui, ac.payload(dict(args, motion_scale=0))))
    assert all(np.array_equal(a, b) for a, b in zip(zero, plain))
    trained = ac.ok(webui, ac.payload(args))["images"][:8]
    assert ac.ok(webui, ac.payload(dict(args, motion_scale=1.0)))["images"][:8] == trained
    half = ac.frames_of(ac.ok(webui, ac.payload(dict(args, motion_scale=0.5))))
    trained_frames = [ac.image(b) for b in trained]
    assert _mean_abs(half, trained_frames) > 0.1 and _mean_abs(half, zero) > 0.1
    windows = dict(args, frames=12, context_length=8, context_overlap=2)
    listed = ac.frames_of(ac.ok(webui, ac.payload(dict(windows, motion_scale=[0.0] * 12))))
    scalar = ac.frames_of(ac.ok(webui, ac.payload(dict(windows, motion_scale=0))))
    keyed = ac.frames_of(ac.ok(webui, ac.payload(dict(windows, motion_scale="0:0, 11:0"))))
    assert all(np.array_equal(a, b) for a, b in zip(listed, scalar)) and all(np.array_equal(a, b) for a, b in zip(keyed, scalar))
    ramp = ac.ok(webui, ac.payload(dict(windows, motion_scale="0:0.2, 11:1.5")))
    assert "motion_scale" in ramp["info"]["infotexts"][0]
    assert "keyframe 12 is beyond the last frame" in ac.rejected(webui, ac.payload(dict(windows, motion_scale="0:1, 12:0")))
    assert "lists 3 values for 12 frames" in ac.rejected(webui, ac.payload(dict(windows, motion_scale=[1, 1, 1])))
    assert_plain_request_unchanged(webui, baseline)


def test_freenoise(webui, motion, baseline):
    """Within one window FreeNoise changes nothing; beyond it the later frames start from shuffles of the
    first window's noise -- a different, deterministic video."""
    args = {"enable": True, "motion_module": ac.MODULE, "frames": 8, "formats": []}
    one_window = ac.frames_of(ac.ok(webui, ac.payload(dict(args, noise_init="freenoise"))))
    assert all(np.array_equal(a, b) for a, b in zip(one_window, ac.frames_of(ac.ok(webui, ac.payload(args)))))
    long = dict(args, frames=12, context_length=8, context_overlap=2)
    independent = ac.frames_of(ac.ok(webui, ac.payload(long)))
    free = ac.ok(webui, ac.payload(dict(long, noise_init="freenoise", freenoise_stride=2)))
    again = ac.ok(webui, ac.payload(dict(long, noise_init="freenoise", freenoise_stride=2)))
    assert free["images"][:12] == again["images"][:12]
    frames = ac.frames_of(free)
    assert _mean_abs(frames[8:], independent[8:]) > 0.5  # the frames after the first window start elsewhere
    assert "'freenoise_stride' (9) cannot exceed" in ac.rejected(webui, ac.payload(dict(long, noise_init="freenoise", freenoise_stride=9)))
    assert_plain_request_unchanged(webui, baseline)


def test_freeinit(webui, motion, baseline):
    """Off: today's video. On: the given passes run (each a full sampling), the result is a different,
    deterministic video; hires runs on the last pass only; img2img and bad values are refused."""
    args = {"enable": True, "motion_module": ac.MODULE, "frames": 8, "formats": []}
    today = ac.frames_of(ac.ok(webui, ac.payload(args)))
    off = ac.ok(webui, ac.payload(dict(args, freeinit_iterations=0)))
    assert "freeinit_passes" not in off["info"]["animate_anyone"]
    assert all(np.array_equal(a, b) for a, b in zip(ac.frames_of(off), today))
    on = ac.ok(webui, ac.payload(dict(args, freeinit_iterations=2)))
    assert on["info"]["animate_anyone"]["freeinit_passes"] == 3
    again = ac.ok(webui, ac.payload(dict(args, freeinit_iterations=2)))
    assert all(np.array_equal(a, b) for a, b in zip(ac.frames_of(on), ac.frames_of(again)))
    assert _mean_abs(ac.frames_of(on), today) > 0.5
    kept = ac.ok(webui, ac.payload(dict(args, formats=["GIF"], freeinit_iterations=2, freeinit_all_passes=True)))
    extra = [item for item in kept["info"]["animate_anyone"]["items"] if item["kind"].startswith("freeinit")]
    assert [item["kind"] for item in extra] == ["freeinit1", "freeinit2"]
    first_pass = read_video(base64.b64decode(kept["images"][extra[0]["index"]])).frames
    assert len(first_pass) == 8
    today_gif = ac.ok(webui, ac.payload(dict(args, formats=["GIF"])))
    today_gif = read_video(base64.b64decode(today_gif["images"][today_gif["info"]["animate_anyone"]["items"][0]["index"]])).frames
    assert np.array_equal(first_pass, today_gif)  # the first pass is today's video, encoded the same way
    assert all(np.array_equal(a, b) for a, b in zip(ac.frames_of(kept), ac.frames_of(on)))  # the answer's frames: the last pass
    # a DDIM (timestep) sampler and a hires pass on the last pass only
    hires = dict(enable_hr=True, hr_scale=1.5, hr_upscaler="Latent", hr_second_pass_steps=2, denoising_strength=0.6)
    data = ac.ok(webui, ac.payload(dict(args, freeinit_iterations=1, freeinit_filter="gaussian"), sampler_name="DDIM", **hires))
    assert data["info"]["animate_anyone"]["freeinit_passes"] == 2 and ac.frames_of(data)[0].shape == (96, 96, 3)
    theirs = ac.ok(webui, ac.payload(dict(THEIRS, video_length=8, batch_size=8, format=["GIF", "Frame"], freeinit_enable=True,
                                          freeinit_iters=2)))
    assert theirs["info"]["animate_anyone"]["freeinit_passes"] == 2
    red = io.BytesIO()
    __import__("PIL.Image").Image.new("RGB", (64, 64), (200, 30, 30)).save(red, format="PNG")
    error = ac.rejected(webui, ac.payload(dict(args, freeinit_iterations=1), init_images=[base64.b64encode(red.getvalue()).decode()],
                                          denoising_strength=0.5), path="/sdapi/v1/img2img")
    assert "FreeInit re-noises" in error
    assert "'freeinit_spatial' must be at most 1" in ac.rejected(webui, ac.payload(dict(args, freeinit_iterations=1, freeinit_spatial=2)))
    assert_plain_request_unchanged(webui, baseline)


def test_prompt_travel(webui, motion):
    travel = "masterpiece\n0: a red fox\n5: a white owl\nin the snow"
    args = {"enable": True, "motion_module": ac.MODULE, "frames": 8, "formats": ["GIF"]}
    data = ac.ok(webui, ac.payload(args, prompt=travel))
    plain = ac.ok(webui, ac.payload(args, prompt="masterpiece, a red fox, in the snow"))
    assert data["images"][:8] != plain["images"][:8]
    prompts = data["info"]["all_prompts"]
    assert prompts[0] == "masterpiece, a red fox, in the snow" and prompts[5] == "masterpiece, a white owl, in the snow"
    video_text = read_infotext(ac.trailing(data)[0][1])
    assert video_text.startswith(travel)  # the video records the whole travel prompt
    error = ac.rejected(webui, ac.payload(args, prompt="0: a fox\n9: an owl"))
    assert "keyframe 9" in error and "beyond the last frame" in error


def test_motion_lora_is_applied_and_removed(webui, motion):
    args = {"enable": True, "motion_module": ac.MODULE, "frames": 8, "formats": []}
    before = ac.ok(webui, ac.payload(args))["images"]
    with_lora = ac.ok(webui, ac.payload(dict(args, motion_loras=[{"name": ac.LORA, "strength": 1.0}])))["images"]
    after = ac.ok(webui, ac.payload(args))["images"]
    assert with_lora != before
    assert after == before


def test_files_are_saved_beside_the_image_folders(webui, motion):
    data = ac.ok(webui, ac.payload({"enable": True, "motion_module": ac.MODULE, "frames": 8,
                                    "formats": ["GIF", "MP4", "PNG"]}, save_images=True))
    entry = data["info"]["animate_anyone"]
    paths = [i["path"] for i in entry["items"]]
    assert all(p and os.path.isfile(p) for p in paths), paths
    outputs = webui.prepared.data_dir / "outputs"
    for p in paths:
        relative = os.path.relpath(p, outputs)
        assert relative.split(os.sep)[0] == "txt2img-videos", relative
        assert len(relative.split(os.sep)) == 3  # txt2img-videos/<date>/<file>
    assert entry["png_frames"] and len(os.listdir(entry["png_frames"][0]["path"])) == 8
    assert read_infotext(paths[0]).startswith("a red fox running")
    unsaved = ac.ok(webui, ac.payload({"enable": True, "motion_module": ac.MODULE, "frames": 8, "formats": ["GIF"]}))
    assert unsaved["info"]["animate_anyone"]["items"][0]["path"] is None


def test_infotext_pasted_back_reproduces_the_video(webui, motion):
    args = {"enable": True, "motion_module": ac.MODULE, "frames": 8, "fps": 12, "formats": ["GIF"],
            "context_length": 6, "context_overlap": 2, "closed_loop": True, "motion_loras": [{"name": ac.LORA, "strength": 0.5}]}
    first = ac.ok(webui, ac.payload(args))
    text = read_infotext(ac.trailing(first)[0][1])
    again = ac.ok(webui, {"infotext": text, "save_images": False, "width": 64, "height": 64})
    assert again["info"]["animate_anyone"]["fps"] == 12
    assert again["images"][:8] == first["images"][:8]


# sd-webui-animatediff's documented API payload (docs/how-to-use.md), with a 4-frame clip in one window.
THEIRS = {"model": ac.MODULE, "enable": True, "format": ["GIF", "MP4", "PNG", "Frame"], "video_length": 4, "fps": 8,
          "loop_number": 0, "closed_loop": "R-P", "batch_size": 4, "stride": 1, "overlap": -1, "interp": "Off",
          "interp_x": 10, "video_source": None, "video_path": "", "mask_path": "", "freeinit_enable": False,
          "freeinit_filter": "butterworth", "freeinit_ds": 0.25, "freeinit_dt": 0.25, "freeinit_iters": 3,
          "latent_power": 1, "latent_scale": 32, "last_frame": None, "latent_power_last": 1, "latent_scale_last": 32,
          "request_id": ""}


def test_sd_webui_animatediff_payload_gets_its_answer_layout(webui, motion):
    """Videos first (GIF, MP4, WEBP, WEBM order), the frames only with "Frame", and the info says where."""
    data = ac.ok(webui, ac.payload(THEIRS))
    entry = data["info"]["animate_anyone"]
    assert [(i["index"], i["format"]) for i in entry["items"]] == [(0, "GIF"), (1, "MP4")]
    assert (entry["frames_index"], entry["returned_frames"], len(data["images"])) == (2, 4, 6)
    assert len(read_video(base64.b64decode(data["images"][0])).frames) == 4
    ours = ac.ok(webui, ac.payload({"enable": True, "motion_module": ac.MODULE, "frames": 4, "context_length": 4,
                                    "context_overlap": 1, "closed_loop": True, "formats": ["MP4"]}))
    assert all(np.array_equal(a, b) for a, b in zip(ac.frames_of(ours), ac.frames_of(data)))  # the same generation
    videos_only = ac.ok(webui, ac.payload(dict(THEIRS, format=["WEBM", "GIF"])))
    entry = videos_only["info"]["animate_anyone"]
    assert [(i["index"], i["format"]) for i in entry["items"]] == [(0, "GIF"), (1, "WEBM")]
    assert len(videos_only["images"]) == 2 and entry["frames_index"] is None and entry["returned_frames"] == 0


def test_sd_webui_animatediff_closed_loop_a_appends_the_reversed_frames(webui, motion):
    plain = ac.frames_of(ac.ok(webui, ac.payload(THEIRS)))
    data = ac.ok(webui, ac.payload(dict(THEIRS, closed_loop="A", format=["GIF", "Frame"])))
    entry = data["info"]["animate_anyone"]
    frames = ac.frames_of(data)
    assert entry["frames"] == 4 and entry["returned_frames"] == 6 and entry["frames_index"] == 1
    assert all(np.array_equal(a, b) for a, b in zip(frames[:4], plain))  # one window: the same generation
    assert np.array_equal(frames[4], plain[2]) and np.array_equal(frames[5], plain[1])  # 0 1 2 3 2 1
    assert len(read_video(base64.b64decode(data["images"][0])).frames) == 6
    more = ac.ok(webui, ac.payload(dict(THEIRS, closed_loop="A", video_length=6, format=["GIF", "Frame"])))
    assert more["info"]["animate_anyone"]["returned_frames"] == 6  # windows of 4 over 6 frames: no ping-pong


def test_sd_webui_animatediff_request_id_and_txt_name_the_saved_files(webui, motion):
    data = ac.ok(webui, dict(ac.payload(dict(THEIRS, format=["GIF", "TXT"], request_id="job-7")), save_images=True))
    path = data["info"]["animate_anyone"]["items"][0]["path"]
    assert os.path.basename(path).endswith("-job-7.gif"), path
    with open(path[:-len(".gif")] + ".txt", encoding="utf8") as f:
        assert f.read().startswith("a red fox running")


@pytest.mark.parametrize("fields, words", [
    ({"video_length": 2}, "send 'batch_size': 2 (or less) for 2 frames"),
    ({"interp": "FILM"}, "send 'interp': 'Off'"),
    ({"freeinit_enable": True, "freeinit_iters": 1}, "'freeinit_iters' must be a whole number of passes from 2 to 9"),
    ({"latent_scale_last": 0}, "'latent_scale_last' must be greater than 0"),
    ({"reverse": [0]}, "'reverse' was merged into 'closed_loop'"),
])
def test_sd_webui_animatediff_fields_we_cannot_honour_are_refused(webui, motion, baseline, fields, words):
    assert words in ac.rejected(webui, ac.payload(dict(THEIRS, **fields)))
    assert_plain_request_unchanged(webui, baseline)


@pytest.mark.parametrize("args, words", [
    ({"motion_module": "missing.ckpt"}, "'missing.ckpt' was not found"),
    ({"motion_module": "zz_bad/garbage.ckpt"}, "not a readable PyTorch motion module"),
    ({"motion_module": "zz_bad/a_motion_lora.safetensors"}, "is a motion LoRA, not a motion module"),
    ({"motion_module": "zz_bad/mm_sdxl_tiny.safetensors"}, "is an SDXL motion module (AnimateDiff SDXL beta (mm_sdxl_v10_beta)) but the loaded checkpoint's UNet is an SD1.5 UNet"),
    ({"motion_module": "zz_bad/wide_v2.safetensors"}, "different model families"),
    ({"motion_module": "../../config.json"}, "not a path"),
    ({"frames": 1}, "'frames' must be at least 2"),
    ({"context_length": 40}, "exceeds the window"),
    ({"fps": 0}, "'fps' must be greater than 0"),
    ({"formats": ["AVI"]}, "unknown format 'AVI'"),
    ({"frames": "eight"}, "'frames' must be a whole number"),
    ({"framez": 8}, "unknown field(s) 'framez'"),
    ({"motion_loras": [{"name": "nope.ckpt"}]}, "motion LoRA 'nope.ckpt' was not found"),
])
def test_bad_input_is_answered_422_and_the_next_request_works(webui, motion, baseline, args, words):
    body = ac.payload(dict({"enable": True, "motion_module": ac.MODULE, "frames": 8}, **args))
    assert words in ac.rejected(webui, body)
    assert_plain_request_unchanged(webui, baseline)
    assert len(ac.ok(webui, ac.payload({"enable": True, "motion_module": ac.MODULE, "frames": 8, "formats": []}))["images"]) == 8


def test_and_prompts_are_refused(webui, motion):
    error = ac.rejected(webui, ac.payload({"enable": True, "motion_module": ac.MODULE, "frames": 8}, prompt="a fox AND an owl"))
    assert "AND" in error


def test_args_must_be_a_list_holding_a_dict(webui, motion):
    body = ac.payload()
    body["alwayson_scripts"] = {ac.KEY: {"args": {"enable": True}}}
    response = webui.post("/sdapi/v1/txt2img", body)
    assert response.status == 500  # the webui indexes args itself before our script sees them (README)
    body["alwayson_scripts"] = {ac.KEY: {"args": ["enable"]}}
    assert "must be a list holding one dict" in ac.rejected(webui, body)


def _init_image_b64(color):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_img2vid_pins_the_first_and_last_frames(webui, motion, baseline):
    """With the identity (zero) motion module, frame 0 starts from the init image's latent and the last
    frame from last_frame's, as plain img2img rows of those images do (up to the VAE posterior's
    float noise: the webui samples it with the global RNG), while unpinned frames start from noise."""
    red, blue = _init_image_b64((200, 40, 40)), _init_image_b64((40, 40, 200))
    common = dict(denoising_strength=0.3)
    plain_red = [ac.image(b) for b in ac.ok(webui, ac.payload(batch_size=8, init_images=[red], **common), path="/sdapi/v1/img2img")["images"]]
    plain_blue = [ac.image(b) for b in ac.ok(webui, ac.payload(batch_size=8, init_images=[blue], **common), path="/sdapi/v1/img2img")["images"]]
    args = {"enable": True, "motion_module": ac.ZERO_MODULE, "frames": 8, "formats": ["GIF"], "noise_schedule": "checkpoint",
            "init_strength": 1.0, "last_frame": blue}
    data = ac.ok(webui, ac.payload(args, init_images=[red], **common), path="/sdapi/v1/img2img")
    frames = ac.frames_of(data)
    assert len(frames) == 8 and data["info"]["animate_anyone"]["frames"] == 8
    loose = ac.frames_of(ac.ok(webui, ac.payload(dict(args, init_strength=0.0, last_frame=None), init_images=[red], **common), path="/sdapi/v1/img2img"))
    pinned_first, pinned_last = _mean_abs([frames[0]], [plain_red[0]]), _mean_abs([frames[7]], [plain_blue[7]])
    free_first, free_last = _mean_abs([loose[0]], [plain_red[0]]), _mean_abs([loose[7]], [plain_blue[7]])
    # pinned: equal up to the VAE posterior's remaining float noise (a stray level here and there)
    assert pinned_first < 0.05 and free_first > 5, (pinned_first, free_first)
    assert pinned_last < 0.05 and free_last > 5, (pinned_last, free_last)
    error = ac.rejected(webui, ac.payload(args, init_images=[red, red], **common), path="/sdapi/v1/img2img")
    assert "exactly one init image" in error
    assert "'last_frame' is not a readable image" in ac.rejected(
        webui, ac.payload(dict(args, last_frame="bm90IGFuIGltYWdl"), init_images=[red], **common), path="/sdapi/v1/img2img")
    assert_plain_request_unchanged(webui, baseline)


def test_an_exception_mid_sampling_restores_everything(webui, motion, baseline):
    body = ac.payload({"enable": True, "motion_module": ac.V1_MODULE, "frames": 8, "motion_loras": [], "formats": ["GIF"]})
    response = webui.post("/sdapi/v1/txt2img", ac.failing_at_step(body, 2))
    assert response.status == 500 and "failing on purpose at step 2" in response.text()
    assert_plain_request_unchanged(webui, baseline)


@pytest.mark.parametrize("fields, words", [
    ({"refiner_checkpoint": "tiny-sd15", "refiner_switch_at": 0.5}, "a refiner ('tiny-sd15') swaps the model"),
    ({"enable_hr": True, "hr_scale": 2, "hr_upscaler": "Latent", "denoising_strength": 0.5, "hr_checkpoint_name": "tiny-sd15"},
     "the hires pass on another checkpoint ('tiny-sd15')"),
])
def test_a_model_swap_in_the_middle_of_a_job_is_refused(webui, motion, baseline, fields, words):
    body = ac.payload({"enable": True, "motion_module": ac.MODULE, "frames": 4, "formats": []}, **fields)
    assert words in ac.rejected(webui, body)
    assert_plain_request_unchanged(webui, baseline)


def test_folder_settings_are_restricted_with_hide_ui_dir_config(webui, motion, tmp_path):
    """Like the webui's own output folders: with --hide-ui-dir-config neither /sdapi/v1/options nor a
    request's override_settings can point the extension at another folder."""
    keys = ("animate_anyone_motion_dir", "animate_anyone_video_dir", "animate_anyone_weights_dir", "animate_anyone_dwpose_dir")
    with webui.temporarily(extra_args=["--hide-ui-dir-config"]):
        before = webui.get("/sdapi/v1/options").json()
        assert all(key in before for key in keys)
        webui.post("/sdapi/v1/options", {key: str(tmp_path) for key in keys})
        after = webui.get("/sdapi/v1/options").json()
        assert {key: after[key] for key in keys} == {key: before[key] for key in keys}
        body = ac.payload({"enable": True, "motion_module": ac.MODULE, "frames": 4, "formats": []},
                          override_settings={"animate_anyone_motion_dir": str(tmp_path)}, override_settings_restore_afterwards=False)
        ac.ok(webui, body)  # still finds the module in the admin's folders
        assert webui.get("/sdapi/v1/options").json()["animate_anyone_motion_dir"] == before["animate_anyone_motion_dir"]


XYZ_PLOT_STEPS = [4, "1, 5", [], 0, "", [], 0, "", [], True, False, False, False, False, False, False, 0, False]  # x: Steps 1, 5


def test_an_xyz_plot_whose_second_cell_fails_leaves_the_model_as_it_was(webui, motion, baseline):
    """The X/Y/Z plot runs every cell on a copy of p, swallows a cell's exception and never closes the
    copies: the noise schedule (and everything else) must be undone by the sampling context itself."""
    body = ac.failing_at_step(ac.payload({"enable": True, "motion_module": ac.MODULE, "frames": 4, "formats": []}), 2)
    body.update(script_name="x/y/z plot", script_args=XYZ_PLOT_STEPS)
    response = webui.post("/sdapi/v1/txt2img", body)
    assert response.ok, response.text()[:2000]
    assert "failing on purpose at step 2" in webui.log_tail(300)  # the second cell (5 steps) failed
    assert_plain_request_unchanged(webui, baseline)


def test_an_xyz_plot_of_video_jobs_draws_frame_0_of_each_cell(webui, motion, baseline):
    """The plot keeps each cell's first image and draws a grid of them: in every layout (ours, and
    sd-webui-animatediff's videos-first one) a cell's first image is its frame 0."""
    ours = ac.payload({"enable": True, "motion_module": ac.MODULE, "frames": 4, "formats": ["GIF"]})
    for args in (ours["alwayson_scripts"][ac.KEY]["args"][0], dict(THEIRS, format=["GIF", "Frame"])):
        body = ac.payload(args, script_name="x/y/z plot", script_args=[4, "1, 2"] + XYZ_PLOT_STEPS[2:])
        response = webui.post("/sdapi/v1/txt2img", body)
        assert response.ok, response.text()[:2000]
        grid = ac.image(response.json()["images"][0])
        assert grid.shape[0] >= 64 and grid.shape[1] >= 128  # two 64 x 64 cells side by side (and labels)
    assert_plain_request_unchanged(webui, baseline)


def xyz_axis_index(webui, label):
    """The index of an axis in the txt2img X/Y/Z plot's list (the API sends indices)."""
    infos = webui.get("/sdapi/v1/script-info").json()
    plot = next(i for i in infos if i["name"] == "x/y/z plot" and not i["is_img2img"])
    return plot["args"][0]["choices"].index(label)


def test_xyz_plot_axes_for_our_fields(webui, motion, baseline):
    """Two axes of ours (frames x motion scale): a 2 x 2 grid of frame 0s, every cell's videos listed in the
    info, values checked before any cell runs, and the model as it was afterwards."""
    frames_axis = xyz_axis_index(webui, "[Animate Anyone] frames")
    scale_axis = xyz_axis_index(webui, "[Animate Anyone] motion scale")
    script_args = [frames_axis, "4, 6", [], scale_axis, "0, 1", [], 0, "", []] + XYZ_PLOT_STEPS[9:]
    body = ac.payload({"enable": False, "motion_module": ac.MODULE, "formats": ["GIF"]}, script_name="x/y/z plot",
                      script_args=script_args)
    response = webui.post("/sdapi/v1/txt2img", body)
    assert response.ok, response.text()[:2000]
    data = response.json()
    grid = ac.image(data["images"][0])
    assert grid.shape[0] >= 128 and grid.shape[1] >= 128, grid.shape
    cells = __import__("json").loads(data["info"])["animate_anyone"]["xyz_cells"]
    assert sorted(c["frames"] for c in cells) == [4, 4, 6, 6] and all(len(c["items"]) == 1 for c in cells)
    bad = dict(body, script_args=[frames_axis, "1, 4", []] + script_args[3:])
    assert "X/Y/Z plot, [Animate Anyone] frames = 1: 'frames' must be at least 2" in ac.rejected(webui, bad)
    assert_plain_request_unchanged(webui, baseline)


def test_an_interrupted_job_leaves_the_model_clean(webui, motion, baseline):
    body = ac.payload({"enable": True, "motion_module": ac.MODULE, "frames": 16, "formats": ["GIF"]}, steps=40, width=128, height=128)
    result = {}
    worker = threading.Thread(target=lambda: result.update(response=webui.post("/sdapi/v1/txt2img", body)))
    worker.start()
    deadline = time.time() + 120
    while time.time() < deadline:
        progress = webui.get("/sdapi/v1/progress").json()
        if progress["state"]["sampling_step"] >= 2:
            break
        time.sleep(0.2)
    webui.post("/sdapi/v1/interrupt", {})
    worker.join(300)
    assert result["response"].ok
    entry = __import__("json").loads(result["response"].json()["info"])["animate_anyone"]
    assert entry["interrupted"] is True and entry["videos"] == 0 and entry["items"] == []
    assert_plain_request_unchanged(webui, baseline)


@pytest.mark.parametrize("action", ["interrupt", "skip"])
def test_interrupt_or_skip_ends_freeinits_passes(webui, motion, baseline, action):
    """Interrupt or Skip in the second FreeInit pass ends the passes: the answer comes back at once with
    the passes that ran, the progress text named the pass, and the model is clean."""
    body = ac.payload({"enable": True, "motion_module": ac.MODULE, "frames": 8, "formats": ["GIF"], "freeinit_iterations": 3},
                      steps=30, width=96, height=96)
    result = {}
    worker = threading.Thread(target=lambda: result.update(response=webui.post("/sdapi/v1/txt2img", body)))
    worker.start()
    seen = ""
    deadline = time.time() + 300
    while time.time() < deadline:
        progress = webui.get("/sdapi/v1/progress").json()
        seen = progress.get("textinfo") or seen
        if "FreeInit pass 2/4" in seen and progress["state"]["sampling_step"] >= 2:
            break
        time.sleep(0.2)
    assert "FreeInit pass 2/4" in seen, seen
    webui.post(f"/sdapi/v1/{action}", {})
    worker.join(300)
    assert result["response"].ok
    entry = __import__("json").loads(result["response"].json()["info"])["animate_anyone"]
    assert entry["freeinit_passes"] == 2 and entry["interrupted"] is True
    assert_plain_request_unchanged(webui, baseline)


@pytest.mark.parametrize("optimization", ["sub-quadratic", "Doggettx", "sdp"])
def test_webui_attention_optimizations(webui, motion, optimization):
    """The spatial attention runs through whatever the webui selected; the motion modules keep their own."""
    assert webui.post("/sdapi/v1/options", {"cross_attention_optimization": optimization}).ok
    try:
        assert f"Applying attention optimization: {optimization}" in webui.log_tail(400)
        plain = ac.ok(webui, ac.payload(batch_size=2))["images"]
        data = ac.ok(webui, ac.payload({"enable": True, "motion_module": ac.MODULE, "frames": 8, "formats": ["GIF"]}))
        assert len(data["images"]) == 9
        assert ac.ok(webui, ac.payload(batch_size=2))["images"] == plain
    finally:
        assert webui.post("/sdapi/v1/options", {"cross_attention_optimization": "Automatic"}).ok


def _write_image_lora_and_embedding(webui):
    """A kohya-format LoRA for the tiny UNet's first attention and a 2-vector textual inversion."""
    import safetensors.torch
    import torch

    data = webui.prepared.data_dir
    (data / "models" / "Lora").mkdir(parents=True, exist_ok=True)
    (data / "embeddings").mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(5)
    lora = {}
    for layer, fan_in in (("attn1_to_q", 32), ("attn1_to_v", 32), ("attn2_to_k", 64), ("attn1_to_out_0", 32)):
        key = f"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_{layer}"
        lora[f"{key}.lora_down.weight"] = torch.randn(4, fan_in, generator=g)
        lora[f"{key}.lora_up.weight"] = torch.randn(32, 4, generator=g)
        lora[f"{key}.alpha"] = torch.tensor(4.0)
    safetensors.torch.save_file(lora, str(data / "models" / "Lora" / "tiny_style.safetensors"))
    safetensors.torch.save_file({"emb_params": torch.randn(2, 64, generator=g)}, str(data / "embeddings" / "tiny_ti.safetensors"))
    assert webui.post("/sdapi/v1/refresh-loras", {}).ok


def test_image_loras_and_embeddings_keep_working(webui, motion, baseline):
    """The base UNet is untouched: with the identity motion module, an AnimateDiff job with a LoRA and an
    embedding in the prompt gives exactly the plain batch with the same prompt."""
    _write_image_lora_and_embedding(webui)
    prompt = "a red fox running in the snow, tiny_ti <lora:tiny_style:1>"
    with_both = [ac.image(b) for b in ac.ok(webui, ac.payload(batch_size=8, prompt=prompt))["images"]]
    without = [ac.image(b) for b in ac.ok(webui, ac.payload(batch_size=8))["images"]]
    assert not np.array_equal(with_both[0], without[0])
    data = ac.ok(webui, ac.payload({"enable": True, "motion_module": ac.ZERO_MODULE, "frames": 8,
                                    "noise_schedule": "checkpoint", "formats": []}, prompt=prompt))
    assert all(np.array_equal(a, b) for a, b in zip(ac.frames_of(data), with_both))
    assert "tiny_style" in data["info"]["infotexts"][0]
    assert_plain_request_unchanged(webui, baseline)


def test_hires_fix_runs_both_passes_with_the_motion_modules(webui, motion, baseline):
    """The hires pass runs inside the job: with the identity (zero) motion module and the checkpoint's
    schedule the video is bit for bit the webui's own hires batch; with a real module it differs."""
    hires = dict(enable_hr=True, hr_scale=1.5, hr_upscaler="Latent", hr_second_pass_steps=2, denoising_strength=0.6)
    args = {"enable": True, "motion_module": ac.MODULE, "frames": 8, "formats": ["GIF"]}
    data = ac.ok(webui, ac.payload(args, **hires))
    frames = ac.frames_of(data)
    assert len(frames) == 8 and frames[0].shape == (96, 96, 3)
    assert read_video(ac.trailing(data)[0][1]).frames.shape[1:3] == (96, 96)
    zero = ac.frames_of(ac.ok(webui, ac.payload(dict(args, motion_module=ac.ZERO_MODULE, noise_schedule="checkpoint"), **hires)))
    plain = [ac.image(b) for b in ac.ok(webui, ac.payload(batch_size=8, **hires))["images"]]
    assert all(np.array_equal(a, b) for a, b in zip(zero, plain))
    real = ac.frames_of(ac.ok(webui, ac.payload(dict(args, noise_schedule="checkpoint"), **hires)))
    assert _mean_abs(real, zero) > 0.5
    assert_plain_request_unchanged(webui, baseline)


def test_compiled_motion_modules_give_the_same_video(webui, motion, baseline):
    """Settings > compile: torch.compile of the motion modules (inductor on this CPU) matches eager."""
    args = {"enable": True, "motion_module": ac.MODULE, "frames": 8, "formats": []}
    eager = ac.frames_of(ac.ok(webui, ac.payload(args)))
    assert webui.post("/sdapi/v1/options", {"animate_anyone_compile": True}).ok
    try:
        data = ac.ok(webui, ac.payload(args))
        compiled = ac.frames_of(data)
    finally:
        assert webui.post("/sdapi/v1/options", {"animate_anyone_compile": False}).ok
    entry = data["info"]["animate_anyone"]
    assert entry["compiled"] is True and entry["compile_fallback"] is None, entry
    assert _mean_abs(eager, compiled) < 0.5
    assert "compiling the motion modules failed" not in webui.log_tail(200)
    assert_plain_request_unchanged(webui, baseline)
