"""The Animate Anyone tab's plain-Python parts: controls -> args, the pose preview, the weights
status line, where each error message goes (no webui, no gradio; the browser tests cover the page)."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from lib_animate.errors import InvalidInputError
from lib_animate.pose import parse_pose_json, render_pose
from lib_animate.video import EncodeOptions, encode_video, read_video
from lib_animate.webui.ui import tab_errors as errors
from lib_animate.webui.ui import tab_inputs as inputs
from lib_animate.webui.ui import tab_paste
from lib_animate.webui.jobs.aa_inputs import PoseLimits
from lib_animate.webui.api.args import parse_args
from tests.test_webui_aa_inputs import pose_json

LIMITS = PoseLimits(max_frames=20)


class Upload:
    """What gradio 3.41's gr.File hands over: a temp-file object with ``.name``."""

    def __init__(self, path):
        self.name = str(path)


def values(**overrides):
    base = dict(reference_image=None, pose_video=None, pose_frames=None, pose_json=None, pose_source="auto",
                fit="resize", pose_stride=1, pose_fps=0, pose_max_frames=0, draw_face=True, draw_hands=True,
                width=64, height=96, fps=0, steps=25, cfg_scale=3.5, seed=-1, sampler="animate_anyone_ddim", loop=0,
                formats=["MP4"], pingpong=False, context_length=0, context_overlap=4, context_schedule="reference",
                retarget=False, reference_pose_json=None)
    base.update(overrides)
    assert set(base) == set(inputs.TAB_FIELDS)
    return base


def pose_values(**overrides):
    return {name: value for name, value in values(**overrides).items() if name in inputs.POSE_FIELDS}


@pytest.fixture
def skeleton_mp4(tmp_path):
    frames = [render_pose(f, 48, 64) for f in parse_pose_json(pose_json(12))]
    path = tmp_path / "dance.mp4"
    path.write_bytes(encode_video(frames, "mp4", EncodeOptions(fps=10)))
    return str(path)


def test_controls_become_the_modes_args(tmp_path, skeleton_mp4):
    reference = Image.new("RGB", (8, 8))
    fields = inputs.args_dict(values(reference_image=reference, pose_video=skeleton_mp4, pose_stride=2.0, fps=12,
                                     formats=["GIF", "MP4"], context_length=16.0, context_schedule="open", pingpong=True))
    assert fields["enable"] is True and fields["mode"] == "animate_anyone" and fields["reference_image"] is reference
    assert isinstance(fields["pose_video"], bytes) and fields["pose_stride"] == 2 and fields["fps"] == 12.0
    assert fields["context_length"] == 16 and fields["context_schedule"] == "open" and fields["formats"] == ["GIF", "MP4"]
    assert "pose_frames" not in fields and "pose_json" not in fields and fields["pingpong"] is True
    parsed = parse_args(fields)
    assert parsed.given >= {"fps", "pose_video"}
    assert "fps" not in inputs.args_dict(values(fps=0))  # 0: the pose's own fps


def test_pose_images_are_used_in_file_name_order(tmp_path):
    paths = []
    for name, shade in (("b.png", 200), ("a.png", 100), ("c.png", 50)):
        Image.new("RGB", (4, 4), (shade, 0, 0)).save(tmp_path / name)
        paths.append(Upload(tmp_path / name))
    frames = inputs.pose_fields(values(pose_frames=paths))["pose_frames"]
    assert [f == (tmp_path / n).read_bytes() for f, n in zip(frames, ("a.png", "b.png", "c.png"))] == [True] * 3


def test_pose_preview_counts_the_frames_the_model_sees(skeleton_mp4, tmp_path):
    preview = inputs.pose_preview(pose_values(pose_video=skeleton_mp4), LIMITS)
    assert (preview.frames, preview.fps, preview.width, preview.height, preview.detect) == (12, 10, 64, 96, False)
    gif = read_video(preview.gif)
    assert len(gif.frames) == 12 and gif.frames[0].shape[:2] == (96, 64)
    assert inputs.pose_preview(pose_values(pose_video=skeleton_mp4, pose_stride=2), LIMITS).frames == 6
    assert inputs.pose_preview(pose_values(pose_video=skeleton_mp4, pose_fps=5), LIMITS).frames == 6
    assert inputs.pose_preview(pose_values(pose_video=skeleton_mp4, pose_max_frames=4), LIMITS).frames == 4
    assert inputs.pose_preview(pose_values(pose_video=skeleton_mp4, fps=24), LIMITS).fps == 24
    letterboxed = inputs.pose_preview(pose_values(pose_video=skeleton_mp4, fit="letterbox", width=128, height=64), LIMITS)
    assert letterboxed.frames == 12 and not letterboxed.detect

    json_file = tmp_path / "poses.json"
    json_file.write_text(json.dumps(pose_json(5)))
    from_json = inputs.pose_preview(pose_values(pose_json=Upload(json_file)), LIMITS, with_gif=False)
    assert (from_json.frames, from_json.fps, from_json.gif) == (5, 8, None)
    assert inputs.pose_preview(pose_values(), LIMITS) is None
    html = inputs.preview_html(preview)
    assert "data-frames='12'" in html and "12 frames" in html and "data:image/gif;base64," in html
    assert "data-frames='0'" in inputs.preview_html(None)


def test_a_video_of_a_person_needs_the_dwpose_files(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    person = [rng.integers(60, 255, (64, 48, 3), dtype=np.uint8) for _ in range(3)]
    path = tmp_path / "person.mp4"
    path.write_bytes(encode_video(person, "mp4", EncodeOptions(fps=8)))
    limits = PoseLimits(max_frames=20, dwpose_dir=str(tmp_path / "no-dwpose"))
    with pytest.raises(Exception, match="yolox_l.onnx"):
        inputs.pose_preview(pose_values(pose_video=str(path)), limits)
    as_skeleton = inputs.pose_preview(pose_values(pose_video=str(path), pose_source="skeleton"), limits)
    assert as_skeleton.frames == 3 and not as_skeleton.detect


@pytest.mark.parametrize("overrides, words", [
    (dict(pose_video="BROKEN"), "'pose_video'"),
    (dict(pose_json="BADJSON"), "not valid JSON"),
    (dict(pose_json="GOODJSON", pose_video="VIDEO"), "several pose inputs"),
    (dict(pose_stride=0), "'pose_stride' must be at least 1"),
])
def test_pose_preview_errors(overrides, words, tmp_path, skeleton_mp4):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x01 not a video" * 40)
    bad_json, good_json = tmp_path / "bad.json", tmp_path / "good.json"
    bad_json.write_text("{not json")
    good_json.write_text(json.dumps(pose_json(2)))
    files = {"BROKEN": str(broken), "VIDEO": skeleton_mp4, "BADJSON": Upload(bad_json), "GOODJSON": Upload(good_json)}
    overrides = {k: files.get(v, v) if isinstance(v, str) else v for k, v in overrides.items()}
    with pytest.raises(InvalidInputError, match=words):
        inputs.pose_preview(pose_values(**overrides), LIMITS)


def test_problems_before_queue_are_all_found_at_once(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x01 not a video" * 40)
    problems = inputs.problems_before_queue(values(pose_video=str(broken), context_length=4, context_overlap=4),
                                            LIMITS, str(tmp_path / "no-weights"))
    places = {errors.place_of(p) for p in problems}
    assert places == {errors.REFERENCE, errors.POSE, errors.CONTEXT, errors.WEIGHTS}, problems
    unreadable = inputs.reference_problem(inputs.UnreadableUpload("the file is not in an image format"))
    assert errors.for_people(unreadable) == "Reference image is not a readable image: the file is not in an image format"


def test_weights_status_lists_found_and_missing_files(tmp_path):
    folder = tmp_path / "AnimateAnyone"
    (folder / "image_encoder").mkdir(parents=True)
    for name in ("denoising_unet.pth", "reference_unet.pth", "image_encoder/config.json"):
        (folder / name).write_bytes(b"x" * 10)
    html, complete = inputs.weights_status(str(folder))
    assert not complete and "data-state='incomplete'" in html
    assert "\u2713 denoising_unet.pth" in html and "\u2717 pose_guider.pth" in html and "\u2717 motion_module.pth" in html
    assert "\u2717 image_encoder/model.safetensors or pytorch_model.bin" in html
    assert "Missing: pose_guider.pth, motion_module.pth" in html  # locate_weights' own message
    for name in ("pose_guider.pth", "motion_module.pth", "image_encoder/model.safetensors"):
        (folder / name).write_bytes(b"x")
    html, complete = inputs.weights_status(str(folder))
    assert complete and "data-state='ok'" in html and "animate-anyone-error" not in html
    html, complete = inputs.weights_status(str(folder), ["pose guider: wrong shape"])
    assert not complete and "data-state='error'" in html and "pose guider: wrong shape" in html


@pytest.mark.parametrize("message, place, shown", [
    ("Animate Anyone: 'reference_image' is missing: give an image", errors.REFERENCE, "Reference image is missing: give an image"),
    ("'pose_video': the uploaded data is damaged", errors.POSE, "Pose video: the uploaded data is damaged"),
    ("'pose_frames[2]' is not a readable image", errors.POSE, "pose image 3 is not a readable image"),
    ("several pose inputs at once (pose_video, pose_json); give exactly one of them", errors.POSE,
     "several pose inputs at once (Pose video, OpenPose JSON); give exactly one of them"),
    ("no pose input: give exactly one of 'pose_video', 'pose_frames' or 'pose_json'", errors.POSE,
     "no pose input: give exactly one of Pose video, Pose images or OpenPose JSON"),
    ("DWPose files not found: yolox_l.onnx", errors.POSE, None),
    ("'context_overlap' (4) must be smaller than 'context_length' (4)", errors.CONTEXT, "Overlap (4) must be smaller than Context length (4)"),
    ("context_length 32 exceeds the window of 'motion_module.pth' (24 frames)", errors.CONTEXT, None),
    ("Animate Anyone: The Animate Anyone weights in '/x' are incomplete. Missing: pose_guider.pth", errors.WEIGHTS, None),
    ("Animate Anyone: '/x/pose_guider.pth' is not a pose guider: conv_out has 64 channels", errors.WEIGHTS, None),
    ("Animate Anyone (it reuses the checkpoint's VAE) needs an SD1.x checkpoint", errors.GENERAL, None),
])
def test_each_message_goes_to_its_control(message, place, shown):
    assert errors.place_of(message) == place
    if shown is not None:
        assert errors.for_people(message) == shown


def test_error_lines_are_escaped_and_empty_without_messages():
    assert errors.error_html([]) == ""
    line = errors.error_html(["<script>x</script>"])
    assert "<script>" not in line and "&lt;script&gt;" in line and "role='alert'" in line


def test_paste_helpers(tmp_path):
    assert tab_paste.seed_of(json.dumps({"seed": 1234})) == 1234
    assert tab_paste.seed_of("") == -1
    gallery = [{"name": "/tmp/a/1-00000.png?123", "data": None, "is_file": True}, [{"name": "/tmp/a/1-00001.png"}, None]]
    assert tab_paste.gallery_files(gallery) == ["/tmp/a/1-00000.png", "/tmp/a/1-00001.png"]
    assert tab_paste.gallery_files(None) == []

    from lib_animate.video import save_video

    frames = [render_pose(f, 32, 32) for f in parse_pose_json(pose_json(2))]
    gif = save_video(frames, str(tmp_path / "clip.gif"), EncodeOptions(fps=8, infotext="Steps: 3, Seed: 5"))
    text, note = tab_paste.infotext_of_file(Upload(gif))
    assert text == "Steps: 3, Seed: 5" and "Restore" in note
    plain = tmp_path / "plain.gif"
    Image.new("RGB", (4, 4)).save(plain)
    text, note = tab_paste.infotext_of_file(Upload(plain))
    assert text == "" and "animate-anyone-error" in note and os.path.exists(plain)


def test_the_retargeting_preview_shows_reference_driving_and_retargeted_side_by_side(tmp_path, skeleton_mp4):
    poses = tmp_path / "poses.json"
    poses.write_text(json.dumps(pose_json(5)))
    body = np.array(pose_json(1)[0]["people"][0]["pose_keypoints_2d"], dtype=float).reshape(18, 3)
    body[[9, 10, 12, 13], 1] += 0.05  # longer legs
    reference_keypoints = tmp_path / "reference.json"
    reference_keypoints.write_text(json.dumps([{"people": [{"pose_keypoints_2d": body.reshape(-1).tolist()}]}]))
    reference = Image.new("RGB", (64, 96), (90, 120, 200))
    preview = inputs.pose_preview(pose_values(pose_json=Upload(poses), retarget=True, reference_image=reference,
                                              reference_pose_json=Upload(reference_keypoints)), LIMITS)
    gif = read_video(preview.gif)
    assert preview.frames == 5 and len(gif.frames) == 5 and gif.frames[0].shape[:2] == (96, 3 * 64)
    assert "retargeted to the reference's body" in preview.note
    left, middle, right = np.split(gif.frames[0].astype(int), 3, axis=1)
    assert left.mean() > middle.mean()  # the reference image, not a black canvas
    assert np.abs(middle - right).mean() > 0.5  # the retargeted poses differ from the driving ones
    plain = inputs.pose_preview(pose_values(pose_json=Upload(poses), retarget=True), LIMITS)
    assert "Upload the reference image" in plain.note and read_video(plain.gif).frames[0].shape[:2] == (96, 64)
    with pytest.raises(InvalidInputError, match="'retarget' needs keypoints to move"):
        inputs.pose_preview(pose_values(pose_video=skeleton_mp4, retarget=True, reference_image=reference), LIMITS)
