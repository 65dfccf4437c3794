"""AnimateDiff + sd-webui-controlnet end to end: a real webui v1.10.1 with ControlNet 1.1.455 (CONTROLNET_DIR)
and tiny random ControlNet / T2I-Adapter / IP-Adapter models (tests/support/controlnet_files.py).

What is proven here: every UNet call gets its own hint rows (windows, cond/uncond in one or two
passes, skipped uncond steps, hires fix), information from a hint travels one window per step
(locality), the three ways of giving per-frame hints are the same hints, IP-Adapter keeps no
stale keys/values, the outputs are [frames][videos][maps], vid2vid init frames, every refusal
(422, and the next request works), and that ControlNet and the model are as they were afterwards.
"""

import base64
import io
import os

import numpy as np
import pytest
from PIL import Image

from lib_animate.video import read_video
from tests.e2e import animate_client as ac
from tests.support import controlnet_files as cf

pytestmark = pytest.mark.e2e

OVERRIDDEN_OPTIONS = {"batch_cond_uncond": True, "pad_cond_uncond": False, "skip_early_cond": 0.0, "s_min_uncond": 0.0}
WINDOWS = {"context_length": 4, "context_overlap": 2}  # 8 frames: windows [0-3] [2-5] [4-7]
FRAMES = 8


# --- inputs -----------------------------------------------------------------------------------------

def bar_frames(count=FRAMES, size=64, shift=0):
    """Frames with a white vertical bar moving right: every frame's hint differs."""
    frames = []
    for i in range(count):
        frame = np.zeros((size, size, 3), np.uint8)
        x = ((i + shift) * 7) % (size - 10)
        frame[:, x:x + 10] = 255
        frame[size // 2:, :, 1] = 80 + 10 * i
        frames.append(frame)
    return frames


def png_b64(frame) -> str:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def unit(model, **fields):
    return dict({"enabled": True, "module": "none", "model": model, "weight": 1.0, "resize_mode": "Just Resize"}, **fields)


def ip_unit(**fields):
    return unit(cf.IP_ADAPTER, **dict({"module": "ip-adapter_clip_sd15", "ipadapter_input": cf.ipadapter_input(7)}, **fields))


def video_args(**fields):
    return dict({"enable": True, "motion_module": ac.MODULE, "formats": []}, **WINDOWS, **fields)


def request(args, units, **overrides):
    body = ac.payload(args, **dict({"steps": 2}, **overrides))
    body["alwayson_scripts"]["controlnet"] = {"args": units}
    return body


def frames_of(data):
    entry = data["info"]["animate_anyone"]
    assert entry["frames"] * max(entry["videos"], 1) <= len(data["images"])
    return ac.frames_of(data)


def mean_abs(a, b):
    return float(np.mean([np.abs(x.astype(np.float32) - y.astype(np.float32)).mean() for x, y in zip(a, b)]))


# --- fixtures ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cn(webui_cn):
    response = webui_cn.post("/sdapi/v1/options", OVERRIDDEN_OPTIONS)
    assert response.ok, response.text()
    ac.motion_folder(webui_cn)
    return webui_cn


@pytest.fixture(scope="module")
def baselines(cn):
    """Before any video job: a plain txt2img batch, and a plain (non-video) ControlNet T2I-Adapter request."""
    plain = ac.ok(cn, ac.payload(batch_size=2))["images"]
    body = ac.payload(batch_size=2)
    body["alwayson_scripts"] = {"controlnet": {"args": [unit(cf.T2I_ADAPTER, image=png_b64(bar_frames(1)[0]))]}}
    controlled = ac.ok(cn, body)["images"]
    assert controlled[:2] != plain  # the adapter does change the images
    return plain, controlled[:2]


def assert_unchanged(cn, baselines):
    plain, controlled = baselines
    assert ac.ok(cn, ac.payload(batch_size=2))["images"] == plain
    body = ac.payload(batch_size=2)
    body["alwayson_scripts"] = {"controlnet": {"args": [unit(cf.T2I_ADAPTER, image=png_b64(bar_frames(1)[0]))]}}
    assert ac.ok(cn, body)["images"][:2] == controlled


# --- per-frame hints ----------------------------------------------------------------------------------

@pytest.mark.parametrize("model", [cf.T2I_ADAPTER, cf.CONTROLNET])
def test_a_hint_travels_one_window_per_step(cn, baselines, model):
    """Windows of 4 overlapping by 2 over 8 frames, 2 steps: changing only the last control frame leaves
    frames 0-1 bit-identical (they share no window with frame 7 within two steps) and changes frame 7.
    A hint cache that kept the first window's rows would leave frame 7 unchanged too."""
    frames = bar_frames()
    changed = frames[:7] + [255 - frames[7]]
    a = frames_of(ac.ok(cn, request(video_args(control_video=ac.lossless_mp4(frames)), [unit(model)])))
    b = frames_of(ac.ok(cn, request(video_args(control_video=ac.lossless_mp4(changed)), [unit(model)])))
    assert len(a) == len(b) == FRAMES
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[7], b[7])
    assert_unchanged(cn, baselines)


@pytest.mark.parametrize("model", [cf.T2I_ADAPTER, cf.CONTROLNET])
def test_cond_and_uncond_in_one_or_two_passes_and_skipped_uncond(cn, model):
    """The hint rows follow the call's layout whatever the webui chose: batched cond/uncond, separate
    passes (the same clip up to float rounding), uncond skipped on late steps."""
    args = video_args(control_frames=[png_b64(f) for f in bar_frames()])
    batched = frames_of(ac.ok(cn, request(args, [unit(model)], override_settings={"batch_cond_uncond": True})))
    split = frames_of(ac.ok(cn, request(args, [unit(model)], override_settings={"batch_cond_uncond": False})))
    assert mean_abs(batched, split) < 1.0  # misaligned hints differ by tens
    skipped = ac.ok(cn, request(args, [unit(model)], steps=4, override_settings={"s_min_uncond": 100.0}))
    assert "NGMS" in skipped["info"]["infotexts"][0] and len(frames_of(skipped)) == FRAMES


def test_the_three_per_frame_sources_are_the_same_hints(cn, tmp_path):
    """A control source, a unit's own batch folder and a unit's own image list give identical videos;
    one image for every frame equals a control source of that image repeated (a 1-row hint broadcasts)."""
    frames = bar_frames()
    folder = tmp_path / "hints"
    folder.mkdir()
    for i, frame in enumerate(frames):  # natural order: 2 before 10
        Image.fromarray(frame).save(folder / f"hint{i + 1}.png")
    from_control = frames_of(ac.ok(cn, request(video_args(control_frames=[png_b64(f) for f in frames]), [unit(cf.T2I_ADAPTER)])))
    from_folder = frames_of(ac.ok(cn, request(video_args(frames=FRAMES), [unit(cf.T2I_ADAPTER, input_mode="batch", batch_images=str(folder))])))
    from_list = frames_of(ac.ok(cn, request(video_args(), [unit(cf.T2I_ADAPTER, image=[{"image": png_b64(f)} for f in frames])])))
    assert len(from_control) == FRAMES
    assert all(np.array_equal(x, y) for x, y in zip(from_control, from_folder))
    assert all(np.array_equal(x, y) for x, y in zip(from_control, from_list))

    single = frames_of(ac.ok(cn, request(video_args(frames=FRAMES), [unit(cf.T2I_ADAPTER, image=png_b64(frames[3]))])))
    repeated = frames_of(ac.ok(cn, request(video_args(control_frames=[png_b64(frames[3])] * FRAMES), [unit(cf.T2I_ADAPTER)])))
    # the adapter runs on 1 row instead of 4: the same values up to float rounding
    same, other = mean_abs(single, repeated), mean_abs(single, from_control)
    assert same < 0.2 and other > 10 * same, (same, other)


def test_two_units_one_per_frame_one_single(cn):
    data = ac.ok(cn, request(video_args(control_video=ac.lossless_mp4(bar_frames()), control_stride=1),
                             [unit(cf.CONTROLNET, weight=0.8), unit(cf.T2I_ADAPTER, image=png_b64(bar_frames(1)[0]))]))
    units = data["info"]["animate_anyone"]["controlnet_units"]
    assert [(u["unit"], u["per_frame"], u["source"]) for u in units] == [(0, True, "control_video"), (1, False, None)]
    assert len(frames_of(data)) == FRAMES


def test_hires_fix_uses_the_hints_at_both_sizes(cn):
    """With hires fix ControlNet builds hints at both sizes; the second pass gets the hires rows of its
    window. 'Low res only' differs from 'Both' only in the hires pass, so the results differ."""
    args = video_args(control_frames=[png_b64(f) for f in bar_frames()])
    hires = dict(enable_hr=True, hr_scale=2, hr_upscaler="Latent", denoising_strength=0.6, hr_second_pass_steps=2)
    both = frames_of(ac.ok(cn, request(args, [unit(cf.T2I_ADAPTER, hr_option="Both")], **hires)))
    low_only = frames_of(ac.ok(cn, request(args, [unit(cf.T2I_ADAPTER, hr_option="Low res only")], **hires)))
    assert len(both) == FRAMES and both[0].shape == (128, 128, 3)
    assert not all(np.array_equal(x, y) for x, y in zip(both, low_only))


def test_a_preprocessor_runs_on_every_frame(cn):
    """With a preprocessor ControlNet processes each frame (here 'invert', which needs no model): the
    returned maps are the inverted frames, and the video differs from the one with the raw frames."""
    frames = bar_frames()
    args = video_args(control_frames=[png_b64(f) for f in frames], control_maps=True, formats=["GIF"])
    inverted = ac.ok(cn, request(args, [unit(cf.T2I_ADAPTER, module="invert")]))
    maps = [ac.image(b) for b in inverted["images"][FRAMES + 2:]]
    assert len(maps) == FRAMES and mean_abs(maps, [255 - f for f in frames]) < 1.0
    raw = ac.ok(cn, request(args, [unit(cf.T2I_ADAPTER)]))
    assert mean_abs(frames_of(inverted), frames_of(raw)) > 0.5


def test_pose_json_is_drawn_for_an_openpose_unit(cn):
    data = ac.ok(cn, request(video_args(control_pose_json=ac.pose_frames_json(FRAMES), control_maps=True, formats=["GIF"]),
                             [unit(cf.CONTROLNET)]))
    entry = data["info"]["animate_anyone"]
    assert entry["frames"] == FRAMES and entry["controlnet_units"][0]["source"] == "control_pose_json"
    skeletons = [ac.image(b) for b in data["images"][FRAMES + 2:]]
    assert len(skeletons) == FRAMES and all((s.max(axis=2) == 0).mean() > 0.6 and s.max() > 150 for s in skeletons)
    assert not np.array_equal(skeletons[0], skeletons[-1])  # the arm moves


def test_low_vram_modes_give_the_same_video(cn):
    """ControlNet's per-unit 'Low VRAM' and the webui's --lowvram: hints stay on the CPU and move per call,
    ControlNet moves its model after every call; the video is the same."""
    args = video_args(control_frames=[png_b64(f) for f in bar_frames()])
    normal = frames_of(ac.ok(cn, request(args, [unit(cf.CONTROLNET)])))
    unit_low = frames_of(ac.ok(cn, request(args, [unit(cf.CONTROLNET, low_vram=True)])))
    assert mean_abs(normal, unit_low) < 0.05
    with cn.temporarily(extra_args=["--lowvram"]):
        webui_low = frames_of(ac.ok(cn, request(args, [unit(cf.CONTROLNET)])))
    assert mean_abs(normal, webui_low) < 0.05


def test_an_exception_mid_sampling_leaves_controlnet_and_the_model_as_they_were(cn, baselines):
    """The bridge's hint rows and cache resets are undone by the sampling context, also when a UNet call
    raises (the test-only extension tests/support/failure_injection raises at step 2): the next plain and
    plain-ControlNet generations are bit-identical to the ones before."""
    body = request(video_args(control_frames=[png_b64(f) for f in bar_frames()]), [unit(cf.CONTROLNET), ip_unit()], steps=4)
    response = cn.post("/sdapi/v1/txt2img", ac.failing_at_step(body, 2))
    assert response.status == 500 and "failing on purpose at step 2" in response.text()
    assert_unchanged(cn, baselines)
    assert len(frames_of(ac.ok(cn, body))) == FRAMES  # and the same job works afterwards


def test_an_xyz_plot_leaves_no_temporary_files_although_it_never_closes_its_copies(cn, tmp_path):
    """What a job releases (here the control frames written for ControlNet) is released at the end of
    postprocess, not only in p.close, which the X/Y/Z plot never calls for its copies of p."""
    from tests.e2e.test_animatediff_api import XYZ_PLOT_STEPS

    body = request(video_args(control_frames=[png_b64(f) for f in bar_frames()]), [unit(cf.T2I_ADAPTER)],
                   script_name="x/y/z plot", script_args=[4, "1, 2"] + XYZ_PLOT_STEPS[2:])
    assert cn.post("/sdapi/v1/options", {"temp_dir": str(tmp_path)}).ok
    try:
        response = cn.post("/sdapi/v1/txt2img", body)
        assert response.ok, response.text()[:2000]
        assert "Animate Anyone: " in response.json()["info"]  # the cells ran as video jobs
    finally:
        assert cn.post("/sdapi/v1/options", {"temp_dir": ""}).ok
    assert not [n for n in os.listdir(tmp_path) if n.startswith("animate-anyone-frames-")], os.listdir(tmp_path)


# --- IP-Adapter -----------------------------------------------------------------------------------------

def test_ip_adapter_with_windows_keeps_no_stale_keys_and_values(cn):
    """IP-Adapter caches its image keys/values per layer for the first call's cond/uncond rows. The
    bridge clears them per call: separate cond/uncond passes then give the batched clip, and skipped
    uncond steps (fewer rows) run with the right tokens."""
    args = video_args(control_frames=[png_b64(f) for f in bar_frames()])
    units = [unit(cf.T2I_ADAPTER), ip_unit(weight=1.0)]
    batched = frames_of(ac.ok(cn, request(args, units, override_settings={"batch_cond_uncond": True})))
    split = frames_of(ac.ok(cn, request(args, units, override_settings={"batch_cond_uncond": False})))
    assert mean_abs(batched, split) < 1.0
    without_ip = frames_of(ac.ok(cn, request(args, units[:1])))
    assert mean_abs(batched, without_ip) > 0.5  # the IP-Adapter does act
    skipped = ac.ok(cn, request(args, units, steps=4, override_settings={"s_min_uncond": 100.0}))
    assert len(frames_of(skipped)) == FRAMES


# --- frame count and outputs ---------------------------------------------------------------------------------

def test_frames_default_to_the_shortest_source_and_a_longer_request_is_refused(cn):
    six = [png_b64(f) for f in bar_frames(6)]
    data = ac.ok(cn, request(video_args(control_frames=six), [unit(cf.T2I_ADAPTER)]))
    assert data["info"]["animate_anyone"]["frames"] == 6 and len(frames_of(data)) == 6
    strided = ac.ok(cn, request(video_args(control_frames=[png_b64(f) for f in bar_frames(12)], control_stride=2), [unit(cf.T2I_ADAPTER)]))
    assert strided["info"]["animate_anyone"]["frames"] == 6
    error = ac.rejected(cn, request(video_args(control_frames=six, frames=FRAMES), [unit(cf.T2I_ADAPTER)]))
    assert "'control_frames' has 6 frames but the video has 8" in error
    own = ac.rejected(cn, request(video_args(frames=FRAMES), [unit(cf.T2I_ADAPTER, image=[{"image": s} for s in six])]))
    assert "ControlNet unit 0" in own and "has 6 frames but the video has 8" in own


def test_maps_are_off_by_default_and_come_last_when_asked(cn):
    args = video_args(control_frames=[png_b64(f) for f in bar_frames()], formats=["GIF"])
    plain = ac.ok(cn, request(args, [unit(cf.T2I_ADAPTER)]))
    assert len(plain["images"]) == FRAMES + 1
    data = ac.ok(cn, request(dict(args, control_maps=True), [unit(cf.T2I_ADAPTER)]))
    entry = data["info"]["animate_anyone"]
    assert entry["frames"] == FRAMES and [i["kind"] for i in entry["items"]] == ["video", "control0"]
    assert [i["index"] for i in entry["items"]] == [FRAMES, FRAMES + 1]
    assert len(data["images"]) == FRAMES + 2 + FRAMES  # frames, video, control video, one map per frame
    maps = [ac.image(b) for b in data["images"][FRAMES + 2:]]
    control = read_video(base64.b64decode(data["images"][FRAMES + 1])).frames
    assert len(control) == FRAMES
    assert mean_abs(maps, list(bar_frames())) < 1.0  # module "none": the maps are the frames
    assert all(np.array_equal(x, y) for x, y in zip(frames_of(data), frames_of(plain)))  # maps change no frame
    # two videos (batch count 2): exactly 2 x 8 frames, the two videos, the control video, then the maps
    twice = ac.ok(cn, request(dict(args, control_maps=True), [unit(cf.T2I_ADAPTER)], n_iter=2))
    entry = twice["info"]["animate_anyone"]
    assert entry["videos"] == 2 and [(i["index"], i["video"], i["kind"]) for i in entry["items"]] == [
        (16, 0, "video"), (17, 1, "video"), (18, 0, "control0")]
    assert len(twice["images"]) == 16 + 3 + FRAMES and len(twice["info"]["infotexts"]) == 16 + 3
    saved = ac.ok(cn, request(dict(args, control_maps=True), [unit(cf.T2I_ADAPTER)], save_images=True))
    video, control_video = saved["info"]["animate_anyone"]["items"]
    assert control_video["path"] == video["path"][:-len(".gif")] + "-control0.gif", (video, control_video)
    assert os.path.isfile(control_video["path"]) and len(read_video(control_video["path"]).frames) == FRAMES


# --- vid2vid ------------------------------------------------------------------------------------------------

def test_init_video_gives_each_frame_its_init_image_and_feeds_empty_units(cn):
    frames = bar_frames()
    init = ac.lossless_mp4(frames)
    common = dict(init_images=[png_b64(frames[0])], denoising_strength=0.6)
    vid2vid = ac.ok(cn, request(video_args(init_video=init), [unit(cf.T2I_ADAPTER)], **common), path="/sdapi/v1/img2img")
    entry = vid2vid["info"]["animate_anyone"]
    assert entry["frames"] == FRAMES and entry["init_video_frames"] == FRAMES
    assert entry["controlnet_units"][0]["source"] == "init_video"
    explicit = ac.ok(cn, request(video_args(init_video=init, control_frames=[png_b64(f) for f in frames]), [unit(cf.T2I_ADAPTER)],
                                 **common), path="/sdapi/v1/img2img")
    assert mean_abs(frames_of(vid2vid), frames_of(explicit)) < 0.05  # the same hints (VAE posterior float noise aside)
    # Each frame starts from its own init image at the job's strength: with the identity (zero) motion
    # module and the checkpoint's schedule that is the webui's own img2img of a batch with one init
    # image per row (up to the VAE posterior's float noise).
    # 12 frames: the extension encodes them 8 at a time, the webui all at once; a 48 x 80 video follows the
    # webui's resize mode to 64 x 64 like the webui's own init images.
    twelve = [np.ascontiguousarray(np.resize(f, (48, 80, 3))) for f in bar_frames(12)]
    zero = dict(video_args(init_video=ac.lossless_mp4(twelve)), motion_module=ac.ZERO_MODULE, noise_schedule="checkpoint")
    ours = frames_of(ac.ok(cn, request(zero, [], **common), path="/sdapi/v1/img2img"))
    assert len(ours) == 12 and ours[0].shape == (64, 64, 3)
    plain = [ac.image(b) for b in ac.ok(cn, ac.payload(batch_size=12, steps=2, init_images=[png_b64(f) for f in twelve],
                                                        denoising_strength=0.6), path="/sdapi/v1/img2img")["images"]]
    first_only = [ac.image(b) for b in ac.ok(cn, ac.payload(batch_size=12, steps=2, init_images=[png_b64(twelve[0])],
                                                             denoising_strength=0.6), path="/sdapi/v1/img2img")["images"]]
    same, other = mean_abs(ours, plain), mean_abs(ours, first_only)
    assert same < 0.05 and other > 0.05 and other > 20 * same, (same, other)
    error = ac.rejected(cn, request(video_args(init_video=init, last_frame=png_b64(frames[0])), [], **common), path="/sdapi/v1/img2img")
    assert "'init_video'" in error and "last_frame" in error


# --- refusals ---------------------------------------------------------------------------------------------------

REFUSALS = [
    (video_args(control_video=base64.b64encode(b"this is not a video at all" * 4).decode()), [unit(cf.T2I_ADAPTER)],
     "'control_video'"),
    (video_args(control_frames=[png_b64(f) for f in bar_frames()]), [], "no ControlNet unit is enabled"),
    (video_args(frames=FRAMES), [unit(cf.T2I_ADAPTER)], "has no image, and the request gives no control video"),
    (video_args(control_frames=[png_b64(f) for f in bar_frames()]), [ip_unit(ipadapter_input=None)], "per-frame IP-Adapter is broken"),
    (video_args(frames=FRAMES), [unit(cf.T2I_ADAPTER, input_mode="batch", batch_images="/tmp\nkeyframe:0,4")], "'keyframe:' lines"),
    (video_args(control_frames=[png_b64(f) for f in bar_frames()]), [unit("v3_sd15_sparsectrl_rgb")], "SparseCtrl"),
    (video_args(control_frames=[png_b64(f) for f in bar_frames()]), [unit("None", module="reference_only")], "reference-only"),
    (video_args(control_frames=[png_b64(f) for f in bar_frames()]), [unit("no_such_model_sd15")], "ControlNet failed to set up"),
    (video_args(control_frames=[png_b64(f) for f in bar_frames(3)] * 120), [unit(cf.T2I_ADAPTER)], "more than 300 frames"),
    (video_args(control_frames=[png_b64(f) for f in bar_frames()]), [unit(cf.T2I_ADAPTER, image=png_b64(bar_frames(1)[0]))],
     "every enabled ControlNet unit has an input of its own"),
    (dict(video_args(control_frames=[png_b64(f) for f in bar_frames()]), mode="animate_anyone"), [unit(cf.T2I_ADAPTER)],
     "belong to the AnimateDiff mode"),
]


@pytest.mark.parametrize("args, units, words", REFUSALS)
def test_refusals_are_422_and_leave_everything_as_it_was(cn, baselines, args, units, words):
    error = ac.rejected(cn, request(args, units))
    assert words in error, error
    assert_unchanged(cn, baselines)


def test_controlnet_units_are_refused_in_animate_anyone_mode(cn):
    ac.animate_anyone_release(cn)
    args = {"enable": True, "mode": "animate_anyone", "reference_image": png_b64(bar_frames(1)[0]),
            "pose_json": ac.pose_frames_json(4), "formats": []}
    error = ac.rejected(cn, request(args, [unit(cf.T2I_ADAPTER, image=png_b64(bar_frames(1)[0]))]))
    assert "own pose guider" in error


def test_inpaint_only_masked_is_refused_with_per_frame_units(cn):
    frames = bar_frames()
    mask = np.zeros((64, 64, 3), np.uint8)
    mask[16:48, 16:48] = 255
    body = request(video_args(control_frames=[png_b64(f) for f in frames]), [unit(cf.T2I_ADAPTER)],
                   init_images=[png_b64(frames[0])], mask=png_b64(mask), inpaint_full_res=True, denoising_strength=0.5)
    assert "'Only masked'" in ac.rejected(cn, body, path="/sdapi/v1/img2img")


def test_server_paths_are_refused_with_hide_ui_dir_config(cn, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(bar_frames()):
        Image.fromarray(frame).save(folder / f"{i:03d}.png")
    # sd-webui-animatediff's payload: video_path -> control_frames_dir
    theirs = {"enable": True, "model": ac.MODULE, "video_length": 0, "batch_size": 4, "overlap": 2, "format": ["GIF"],
              "video_path": str(folder)}
    data = ac.ok(cn, request(theirs, [unit(cf.T2I_ADAPTER)]))
    assert data["info"]["animate_anyone"]["frames"] == FRAMES
    with cn.temporarily(extra_args=["--hide-ui-dir-config"]):
        assert "--hide-ui-dir-config" in ac.rejected(cn, request(theirs, [unit(cf.T2I_ADAPTER)]))
        own = unit(cf.T2I_ADAPTER, input_mode="batch", batch_images=str(folder))
        assert "--hide-ui-dir-config" in ac.rejected(cn, request(video_args(frames=FRAMES), [own]))
        assert len(frames_of(ac.ok(cn, request(video_args(control_frames=[png_b64(f) for f in bar_frames()]), [unit(cf.T2I_ADAPTER)])))) == FRAMES


def test_without_controlnet_a_control_input_is_refused(webui):
    ac.motion_folder(webui)
    error = ac.rejected(webui, ac.payload(video_args(control_frames=[png_b64(f) for f in bar_frames()])))
    assert "ControlNet extension is not installed" in error
