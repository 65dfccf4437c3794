"""Planning sd-webui-controlnet's units for a video job (before_process), without a webui: which unit
gets which frames, the frame count, the folders ControlNet's AnimateDiff batch loader reads, and every
refusal. Units are shaped like ControlNet 1.1.455's pydantic ``ControlNetUnit`` (copy(update=...),
from_dict, __fields__); the end-to-end tests run the real one."""

import base64
import io
import os
from enum import Enum
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from lib_animate.errors import AnimateError
from lib_animate.video import EncodeOptions, encode_video
from lib_animate.video.frame_files import list_frame_files
from lib_animate.webui.controlnet import controlnet_units
from lib_animate.webui.jobs import video_inputs
from lib_animate.webui.api.args import parse_args
from lib_animate.webui.jobs.job import CONTROLNET_SAVED_SAMPLE, VideoJob


class InputMode(Enum):
    SIMPLE = "simple"
    BATCH = "batch"
    MERGE = "merge"


class Unit:
    """ControlNet's ControlNetUnit, reduced to what the planner reads and writes."""

    __fields__ = {"enabled": None, "module": None, "model": None, "image": None, "animatediff_batch": None}
    FIELDS = dict(enabled=False, module="none", model="None", image=None, mask=None, input_mode=InputMode.SIMPLE,
                  batch_images=None, ipadapter_input=None, save_detected_map=True, low_vram=False,
                  animatediff_batch=False, batch_modifiers=[], batch_keyframe_idx=None)

    def __init__(self, **values):
        for name, default in self.FIELDS.items():
            value = values.get(name, default)
            if name == "input_mode" and isinstance(value, str):
                value = InputMode(value)
            setattr(self, name, value)

    @classmethod
    def from_dict(cls, values):
        unknown_module = values.get("module") == "no_such_preprocessor"
        if unknown_module:
            raise ValueError("module(no_such_preprocessor) not found in supported modules.")
        return cls(**values)

    def copy(self, update=None):
        return type(self)(**dict(vars(self), **(update or {})))

    @property
    def is_ipadapter(self):
        return "ip-adapter" in self.module


class OldUnit(Unit):
    __fields__ = {"enabled": None, "module": None}


def png(value, size=(16, 16)):
    buffer = io.BytesIO()
    Image.fromarray(np.full(size + (3,), value, np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def gif(count, size=16):
    frames = [np.full((size, size, 3), 20 * i, np.uint8) for i in range(count)]
    return base64.b64encode(encode_video(frames, "gif", EncodeOptions(fps=8))).decode()


def make_p(*units, img2img=False, batch_options=None):
    cn = SimpleNamespace(title=lambda: "ControlNet", args_from=1, args_to=1 + len(units),
                         ui_batch_option_state=batch_options or [controlnet_units.BATCH_OPTION_DEFAULT, False])
    ours = SimpleNamespace(title=lambda: "Animate Anyone", args_from=0, args_to=1)
    return SimpleNamespace(scripts=SimpleNamespace(alwayson_scripts=[ours, cn]), script_args=({"enable": True},) + tuple(units),
                           width=32, height=32, image_mask=None, inpaint_full_res=False, init_images=[None] if img2img else None)


def prepare(p, max_frames=300, server_paths=True, img2img=False, **fields):
    args = parse_args(dict({"enable": True}, **fields))
    inputs = video_inputs.prepare(p, args, max_frames, server_paths, img2img)
    return args, inputs


def cn_units(p):
    return list(p.script_args[1:])


def folder_values(folder):
    return [int(np.asarray(Image.open(path))[0, 0, 0]) for path in list_frame_files(folder, "x")]


def test_a_unit_without_image_takes_one_control_frame_per_video_frame():
    ui_unit = Unit(enabled=True, model="openpose")
    p = make_p(ui_unit)
    args, inputs = prepare(p, control_frames=[png(10 * i) for i in range(6)])
    try:
        assert args.frames == 6 and inputs.frames == 6  # 'frames' left out: the shortest source
        copy = cn_units(p)[0]
        assert copy is not ui_unit and ui_unit.animatediff_batch is False  # the UI's object is untouched
        assert copy.animatediff_batch is True and copy.input_mode is InputMode.SIMPLE and copy.image is None
        assert copy.save_detected_map is False and copy.batch_modifiers == [] and copy.batch_keyframe_idx is None
        assert folder_values(copy.batch_images) == [0, 10, 20, 30, 40, 50]
        assert inputs.plan.units[0].per_frame.kind == "control_frames"
        assert isinstance(p.script_args, list)
    finally:
        inputs.cleanup()
    assert not os.path.exists(copy.batch_images)


def test_explicit_frames_take_the_first_frames_and_a_shorter_source_is_refused():
    p = make_p(Unit(enabled=True, model="depth"))
    args, inputs = prepare(p, frames=4, control_video=gif(7), control_stride=1)
    try:
        assert folder_values(cn_units(p)[0].batch_images) == [0, 20, 40, 60]
    finally:
        inputs.cleanup()
    with pytest.raises(AnimateError, match="'control_video' has 7 frames but the video has 9"):
        prepare(make_p(Unit(enabled=True)), frames=9, control_video=gif(7))
    _, inputs = prepare(make_p(Unit(enabled=True)), control_video=gif(7), control_stride=2)
    assert inputs.frames == 4
    inputs.cleanup()


def test_units_with_their_own_frames_folders_and_lists(tmp_path):
    folder = tmp_path / "hints"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(np.full((8, 8, 3), 30 + i, np.uint8)).save(folder / f"f{i + 1}.png")
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.full((8, 8, 3), 255, np.uint8)).save(masks / "only.png")
    batch = Unit(enabled=True, model="inpaint", module="inpaint_only", input_mode="batch", batch_images=f"{folder}\nmask:{masks}")
    listed = Unit(enabled=True, model="lineart", image=[{"image": png(100 + i)} for i in range(4)])
    pair = Unit(enabled=True, model="canny", image=[png(1), png(2)])  # ControlNet's [image, mask]: one image
    three = Unit(enabled=True, model="depth", image=[png(7), png(8), png(9)])
    ip_list = Unit(enabled=True, model="ip", module="ip-adapter_clip_sd15", image=[png(1), png(2), png(3)])
    p = make_p(batch, listed, pair, three, ip_list)
    args, inputs = prepare(p)
    try:
        assert inputs.frames == 3  # the shortest: the three-image list
        units = cn_units(p)
        folder_line, mask_line = units[0].batch_images.split("\n")
        assert folder_values(folder_line) == [30, 31, 32] and mask_line.startswith("mask:")
        assert len(list_frame_files(mask_line[len("mask:"):], "masks")) == 1  # one mask for every frame
        assert folder_values(units[1].batch_images) == [100, 101, 102]
        assert units[2].animatediff_batch is False and units[2].image == [png(1), png(2)]
        assert folder_values(units[3].batch_images) == [7, 8, 9]
        assert units[4].animatediff_batch is False  # an IP-Adapter averages several images (one look)
        assert [u.per_frame is not None for u in inputs.plan.units] == [True, True, False, True, False]
        assert [u.per_frame.kind for u in inputs.plan.per_frame_units] == ["batch_folder", "images", "images"]
    finally:
        inputs.cleanup()


def test_masks_dir_goes_to_the_per_frame_inpaint_units(tmp_path):
    for i in range(4):
        Image.fromarray(np.full((8, 8, 3), 50 + i, np.uint8)).save(tmp_path / f"m{i}.png")
    p = make_p(Unit(enabled=True, module="inpaint_only", model="inpaint"), Unit(enabled=True, module="none", model="depth"))
    _, inputs = prepare(p, control_frames=[png(i) for i in range(3)], control_masks_dir=str(tmp_path))
    try:
        inpaint, depth = cn_units(p)
        folder, mask_line = inpaint.batch_images.split("\n")
        assert folder_values(mask_line[len("mask:"):]) == [50, 51, 52] and "\n" not in depth.batch_images
    finally:
        inputs.cleanup()
    with pytest.raises(AnimateError, match="no per-frame ControlNet inpaint unit would use it"):
        prepare(make_p(Unit(enabled=True)), control_frames=[png(1), png(2)], control_masks_dir=str(tmp_path))
    with pytest.raises(AnimateError, match="--hide-ui-dir-config"):
        prepare(make_p(Unit(enabled=True, module="inpaint")), server_paths=False, control_frames=[png(1), png(2)],
                control_masks_dir=str(tmp_path))


def test_dicts_from_the_api_become_unit_objects_and_invalid_ones_are_named():
    p = make_p({"enabled": True, "model": "m", "module": "none"}, {"enabled": False, "module": "none"})
    cls_module = SimpleNamespace(ControlNetUnit=Unit)
    import sys

    sys.modules["internal_controlnet.external_code"] = cls_module
    try:
        _, inputs = prepare(p, control_frames=[png(1), png(2)])
        assert isinstance(cn_units(p)[0], Unit) and cn_units(p)[1] == {"enabled": False, "module": "none"}
        inputs.cleanup()
        with pytest.raises(AnimateError, match="ControlNet unit 0: module\\(no_such_preprocessor\\) not found"):
            prepare(make_p({"enabled": True, "module": "no_such_preprocessor"}), control_frames=[png(1), png(2)])
    finally:
        del sys.modules["internal_controlnet.external_code"]


def test_init_video_sets_the_init_images_and_feeds_units_without_image():
    p = make_p(Unit(enabled=True, model="depth"), img2img=True)
    args, inputs = prepare(p, img2img=True, init_video=gif(5))
    try:
        assert inputs.frames == 5 and len(p.init_images) == 5 and p.init_images[2].getpixel((0, 0)) == (40, 40, 40)
        assert inputs.plan.units[0].per_frame.name == "'init_video'"
        assert folder_values(cn_units(p)[0].batch_images) == [0, 20, 40, 60, 80]
    finally:
        inputs.cleanup()
    # a control source wins over the init frames; no unit and an init video is plain vid2vid
    p = make_p(Unit(enabled=True, model="depth"), img2img=True)
    _, inputs = prepare(p, img2img=True, init_video=gif(5), control_frames=[png(200)] * 6)
    assert inputs.frames == 5 and folder_values(cn_units(p)[0].batch_images) == [200] * 5
    inputs.cleanup()
    _, inputs = prepare(make_p(img2img=True), img2img=True, init_video=gif(3))
    assert inputs.frames == 3 and inputs.plan is None
    inputs.cleanup()


@pytest.mark.parametrize("units, fields, words", [
    ((), {"control_frames": [png(1), png(2)]}, "no ControlNet unit is enabled"),
    ((Unit(enabled=True),), {"frames": 8}, "has no image, and the request gives no control video"),
    ((Unit(enabled=True, image=png(3)),), {"control_frames": [png(1), png(2)]}, "has an input of its own"),
    ((Unit(enabled=True, module="ip-adapter_clip_sd15"),), {"control_frames": [png(1), png(2)]}, "per-frame IP-Adapter is broken"),
    ((Unit(enabled=True, input_mode="batch", batch_images="/x\nkeyframe:0,3"),), {}, "'keyframe:' lines are not supported"),
    ((Unit(enabled=True, model="v3_sd15_sparsectrl_scribble"),), {"control_frames": [png(1), png(2)]}, "SparseCtrl"),
    ((Unit(enabled=True, module="reference_only"),), {"control_frames": [png(1), png(2)]}, "reference-only takes one image"),
    ((OldUnit(enabled=True),), {"control_frames": [png(1), png(2)]}, "older than 1.1.449"),
    ((Unit(enabled=True),), {"control_frames": [png(1)] * 5}, "more than 4 frames"),
    ((Unit(enabled=True, input_mode="batch", batch_images="/no/such/folder"),), {}, "does not exist on the server"),
    ((Unit(enabled=True),), {"control_video": base64.b64encode(b"%PDF-1.4 not a video").decode()}, "'control_video'.*PDF"),
    ((Unit(enabled=True),), {"control_frames": [png(1), "bm90IGFuIGltYWdl"]}, "'control_frames'\\[1\\]"),
    ((Unit(enabled=True),), {"control_pose_json": {"people": "nobody"}}, "'control_pose_json'"),
    ((Unit(enabled=True),), {"init_video": gif(3)}, "is img2img"),
    ((Unit(enabled=True),), {"control_frames": [png(1)]}, "'control_frames' gives 1 frame; a video needs at least 2"),
])
def test_refusals_name_the_unit_or_field(units, fields, words):
    with pytest.raises(AnimateError, match=words):
        prepare(make_p(*units), max_frames=4, **fields)


def test_frame_lists_and_folders_obey_the_decoders_pixel_cap(tmp_path, monkeypatch):
    from lib_animate.webui.jobs import aa_inputs

    monkeypatch.setattr(aa_inputs, "MAX_TOTAL_PIXELS", 3 * 16 * 16)  # three 16 x 16 frames
    _, inputs = prepare(make_p(Unit(enabled=True)), control_frames=[png(i) for i in range(3)])
    inputs.cleanup()
    with pytest.raises(AnimateError, match="'control_frames' holds more than"):
        prepare(make_p(Unit(enabled=True)), control_frames=[png(i) for i in range(4)])
    for i in range(4):
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / f"{i}.png")
    with pytest.raises(AnimateError, match="'control_frames_dir' holds more than"):
        prepare(make_p(Unit(enabled=True)), control_frames_dir=str(tmp_path))


def test_server_paths_need_the_webui_to_allow_them(tmp_path):
    for i in range(3):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / f"{i}.png")
    with pytest.raises(AnimateError, match="--hide-ui-dir-config"):
        prepare(make_p(Unit(enabled=True)), server_paths=False, control_frames_dir=str(tmp_path))
    with pytest.raises(AnimateError, match="--hide-ui-dir-config"):
        prepare(make_p(Unit(enabled=True, input_mode="batch", batch_images=str(tmp_path))), server_paths=False)
    _, inputs = prepare(make_p(Unit(enabled=True)), server_paths=True, control_frames_dir=str(tmp_path))
    assert inputs.frames == 3
    inputs.cleanup()


def test_inpaint_only_masked_and_batch_options_are_refused():
    p = make_p(Unit(enabled=True), img2img=True)
    p.image_mask, p.inpaint_full_res = object(), True
    with pytest.raises(AnimateError, match="'Only masked'"):
        prepare(p, img2img=True, control_frames=[png(1), png(2)])
    separate = make_p(Unit(enabled=True), batch_options=["Each ControlNet unit for each image in a batch", False])
    with pytest.raises(AnimateError, match="Batch Options"):
        prepare(separate, control_frames=[png(1), png(2)])


def test_without_controlnet_a_control_input_is_refused_and_nothing_else_is_needed():
    p = SimpleNamespace(scripts=None, script_args=(), width=32, height=32)
    with pytest.raises(AnimateError, match="ControlNet extension is not installed"):
        prepare(p, control_frames=[png(1), png(2)])
    args, inputs = prepare(p, frames=12)
    assert inputs.plan is None and inputs.frames == 12 and inputs.scratch._path is None  # no folder made


def test_pose_json_renders_skeleton_frames_at_the_generation_size():
    body = [0.5, 0.2, 1, 0.5, 0.3, 1, 0.4, 0.3, 1, 0.35, 0.45, 1, 0.3, 0.5, 1, 0.6, 0.3, 1, 0.65, 0.4, 1,
            0.7, 0.5, 1, 0.45, 0.6, 1, 0.45, 0.75, 1, 0.45, 0.9, 1, 0.55, 0.6, 1, 0.55, 0.75, 1, 0.55, 0.9, 1,
            0.48, 0.18, 1, 0.52, 0.18, 1, 0.46, 0.19, 1, 0.54, 0.19, 1]
    p = make_p(Unit(enabled=True, model="openpose"))
    _, inputs = prepare(p, control_pose_json=[{"people": [{"pose_keypoints_2d": body}]}] * 3)
    try:
        paths = list_frame_files(cn_units(p)[0].batch_images, "x")
        skeleton = np.asarray(Image.open(paths[0]))
        assert len(paths) == 3 and skeleton.shape == (32, 32, 3) and skeleton.max() > 100 and (skeleton == 0).mean() > 0.5
    finally:
        inputs.cleanup()


def test_a_failed_job_stands_controlnet_down_with_copies():
    ui_unit = Unit(enabled=True, input_mode="batch", batch_images="/frames")
    p = make_p(ui_unit, {"enabled": True, "module": "none"})
    controlnet_units.stand_down(p)
    assert [controlnet_units.is_enabled(u) for u in cn_units(p)] == [False, False]
    assert ui_unit.enabled is True


class P:
    def init(self, *args):
        pass

    def sample(self, *args):
        return "plain sample"

    def close(self):
        pass


def controlnet_hooks(p):
    """What ControlNet's UnetHook.hook does to p (once per p: it keeps an existing saved sample)."""
    if getattr(p, CONTROLNET_SAVED_SAMPLE, None) is None:
        setattr(p, CONTROLNET_SAVED_SAMPLE, p.sample)

    def process_sample(*args):
        return getattr(p, CONTROLNET_SAVED_SAMPLE)(*args)

    p.sample = process_sample


def test_processing_the_same_p_again_never_calls_a_finished_job():
    p = P()
    first = VideoJob(p, parse_args({"enable": True}), None, False)
    first.attach()
    first._sample = lambda *args: "first job"  # what ControlNet will save
    p.sample = first._sample
    controlnet_hooks(p)
    assert p.sample() == "first job"
    first.detach()
    assert CONTROLNET_SAVED_SAMPLE not in vars(p) and p.sample() == "plain sample"

    second = VideoJob(p, parse_args({"enable": True}), None, False)
    second.attach()
    p.sample = lambda *args: "second job"
    controlnet_hooks(p)
    assert p.sample() == "second job"


def test_a_p_that_controlnet_hooked_without_our_job_gets_our_sample_wrapped():
    p = P()
    controlnet_hooks(p)  # a plain ControlNet run on this p before
    job = VideoJob(p, parse_args({"enable": True}), None, False)
    job.attach()
    assert job.originals["sample"]() == "plain sample"  # not ControlNet's stale wrapper
    controlnet_hooks(p)
    assert getattr(p, CONTROLNET_SAVED_SAMPLE) == job._sample
