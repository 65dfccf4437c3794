"""Animate Anyone inputs at the edge: reference image and pose sequences (no webui needed)."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from lib_animate.errors import InvalidInputError, WeightsFileError
from lib_animate.pose import parse_pose_json, render_pose
from lib_animate.video import EncodeOptions, encode_video
from lib_animate.webui.jobs.aa_inputs import PoseLimits, decode_image, fit_reference, load_pose_clip, looks_like_skeleton
from lib_animate.webui.api.args import parse_args


def png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def pose_json(count):
    frames = []
    for i in range(count):
        body = [0.5, 0.2, 1, 0.5, 0.3, 1, 0.4, 0.3, 1, 0.35, 0.45 - 0.02 * i, 1, 0.3, 0.5, 1, 0.6, 0.3, 1, 0.65, 0.4, 1,
                0.7, 0.5, 1, 0.45, 0.6, 1, 0.45, 0.75, 1, 0.45, 0.9, 1, 0.55, 0.6, 1, 0.55, 0.75, 1, 0.55, 0.9, 1,
                0.48, 0.18, 1, 0.52, 0.18, 1, 0.46, 0.19, 1, 0.54, 0.19, 1]
        frames.append({"people": [{"pose_keypoints_2d": body}]})
    return frames


def skeletons(count, size=(48, 64)):
    return [render_pose(f, *size) for f in parse_pose_json(pose_json(count))]


LIMITS = PoseLimits(max_frames=10)


def args(**fields):
    return parse_args(dict({"enable": True, "mode": "animate_anyone"}, **fields))


def test_decode_image_accepts_pil_bytes_base64_and_data_uris():
    image = Image.new("RGB", (5, 3), (10, 200, 30))
    data = png_bytes(image)
    for value in (image.convert("RGBA"), data, base64.b64encode(data).decode(), "data:image/png;base64," + base64.b64encode(data).decode()):
        decoded = decode_image(value, "reference_image")
        assert decoded.mode == "RGB" and decoded.size == (5, 3) and decoded.getpixel((0, 0)) == (10, 200, 30)


@pytest.mark.parametrize("value, words", [
    (None, "'reference_image' is missing"),
    ("", "'reference_image' is missing"),
    ("%%%", "'reference_image' is not valid base64"),
    (base64.b64encode(b"definitely not an image").decode(), "'reference_image' is not a readable image"),
    (12, "'reference_image' must be a base64 string"),
])
def test_decode_image_errors_name_the_field(value, words):
    with pytest.raises(InvalidInputError, match=words):
        decode_image(value, "reference_image")


def test_fit_reference_squashes_or_letterboxes():
    image = Image.new("RGB", (100, 50), (255, 0, 0))
    squashed = fit_reference(image, 64, 64, "resize")
    assert squashed.size == (64, 64) and squashed.getpixel((32, 0)) == (255, 0, 0)
    boxed = np.asarray(fit_reference(image, 64, 64, "letterbox"))
    assert boxed.shape == (64, 64, 3)
    assert boxed[0, 32].tolist() == [0, 0, 0] and boxed[32, 32].tolist() == [255, 0, 0]


def test_skeleton_detection():
    assert looks_like_skeleton(skeletons(4))
    rng = np.random.default_rng(0)
    assert not looks_like_skeleton([rng.integers(40, 255, (64, 48, 3), dtype=np.uint8) for _ in range(4)])


def test_pose_json_is_rendered_at_the_generation_size():
    clip = load_pose_clip(args(pose_json=pose_json(6)), 48, 64, LIMITS)
    assert len(clip.frames) == 6 and clip.frames[0].shape == (64, 48, 3) and clip.fps == 8
    assert len(load_pose_clip(args(pose_json=pose_json(6), pose_stride=2), 48, 64, LIMITS).frames) == 3
    assert len(load_pose_clip(args(pose_json=pose_json(6), pose_max_frames=4), 48, 64, LIMITS).frames) == 4
    with pytest.raises(InvalidInputError, match="'pose_max_frames' \\(11\\) is above the maximum in Settings \\(10 frames\\)"):
        load_pose_clip(args(pose_json=pose_json(12), pose_max_frames=11), 48, 64, LIMITS)
    faceless = load_pose_clip(args(pose_json=pose_json(1), draw_face=False), 48, 64, LIMITS).frames[0]
    assert faceless.shape == (64, 48, 3)


def test_pose_video_bytes_and_base64_with_stride_and_fps():
    video = encode_video(skeletons(8), "mp4", EncodeOptions(fps=10))
    clip = load_pose_clip(args(pose_video=video), 48, 64, LIMITS)
    assert len(clip.frames) == 8 and abs(clip.fps - 10) < 1e-6 and clip.frames[0].shape == (64, 48, 3)
    clip = load_pose_clip(args(pose_video=base64.b64encode(video).decode(), pose_fps=5), 48, 64, LIMITS)
    assert len(clip.frames) == 4 and clip.fps == 5
    assert len(load_pose_clip(args(pose_video=video, pose_stride=4), 48, 64, LIMITS).frames) == 2


def test_pose_frames_list():
    """Images in list order, PIL or encoded alike; at the generation size they are used as they are."""
    frames = [Image.fromarray(f) for f in skeletons(3)]
    clip = load_pose_clip(args(pose_frames=frames + [png_bytes(frames[0])]), 48, 64, LIMITS)
    assert len(clip.frames) == 4 and clip.frames[0].shape == (64, 48, 3)
    assert all(np.array_equal(got, np.asarray(want)) for got, want in zip(clip.frames, frames + [frames[0]]))
    small = load_pose_clip(args(pose_frames=[Image.fromarray(f) for f in skeletons(2, (24, 32))]), 48, 64, LIMITS)
    assert small.frames[0].shape == (64, 48, 3)  # resized to the generation size


@pytest.fixture()
def decodes(monkeypatch):
    """Counts full image decodes (PIL's load); reading a header does not decode."""
    from PIL import ImageFile

    count = []  # one entry per image decoded (PIL calls load again on an image it has decoded)
    real_load = ImageFile.ImageFile.load

    def load(self):
        if self.size and all(image is not self for image in count):
            count.append(self)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return count


def test_image_inputs_are_capped_by_their_headers_before_decoding(monkeypatch, decodes):
    from lib_animate.webui.jobs import aa_inputs

    monkeypatch.setattr(aa_inputs, "MAX_TOTAL_PIXELS", 3 * 48 * 64)  # three 48 x 64 images
    image = Image.fromarray(skeletons(1)[0])
    big = png_bytes(image.resize((48 * 2, 64 * 2)))
    with pytest.raises(InvalidInputError, match="'reference_image' holds more than 0 megapixels"):
        decode_image(big, "reference_image")
    with pytest.raises(InvalidInputError, match="'last_frame' holds more than"):
        decode_image(base64.b64encode(big).decode(), "last_frame", decode_base64=lambda text: Image.open(io.BytesIO(base64.b64decode(text))))
    assert decodes == []
    encoded = [png_bytes(Image.fromarray(f)) for f in skeletons(4)]
    with pytest.raises(InvalidInputError, match="'pose_frames' holds more than"):
        load_pose_clip(args(pose_frames=encoded), 48, 64, LIMITS)
    assert len(decodes) == 3  # the fourth image was refused from its header
    assert len(load_pose_clip(args(pose_frames=encoded[:3]), 48, 64, LIMITS).frames) == 3


def test_a_pose_frame_list_longer_than_allowed_is_refused_before_decoding(decodes):
    encoded = [png_bytes(Image.fromarray(f)) for f in skeletons(12)]
    with pytest.raises(InvalidInputError, match="more than 10 frames"):
        load_pose_clip(args(pose_frames=encoded), 48, 64, LIMITS)
    assert decodes == []
    clip = load_pose_clip(args(pose_frames=encoded, pose_max_frames=4), 48, 64, LIMITS)
    assert len(clip.frames) == 4 and len(decodes) == 4  # only what is used is decoded
    decodes.clear()
    assert len(load_pose_clip(args(pose_frames=encoded, pose_stride=2), 48, 64, LIMITS).frames) == 6


@pytest.mark.parametrize("fields, words", [
    ({}, "no pose input"),
    ({"pose_frames": []}, "no pose input"),
    ({"pose_json": pose_json(2), "pose_frames": [b"x"]}, "several pose inputs at once \\(pose_frames, pose_json\\)"),
    ({"pose_json": pose_json(11)}, "more than 10 frames"),
    ({"pose_video": b"\x00" * 64}, "^'pose_video': "),
    ({"pose_frames": [b"not an image"]}, "'pose_frames\\[0\\]' is not a readable image"),
    ({"pose_json": [{"people": [{"pose_keypoints_2d": [1, 2]}]}]}, "^'pose_json': .*pose_keypoints_2d"),
])
def test_pose_errors(fields, words):
    with pytest.raises(InvalidInputError, match=words):
        load_pose_clip(args(**fields), 48, 64, LIMITS)


def test_person_video_without_dwpose_files_lists_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.delenv("ANIMATE_DWPOSE_DIR", raising=False)
    rng = np.random.default_rng(1)
    person = encode_video([rng.integers(60, 255, (64, 48, 3), dtype=np.uint8) for _ in range(3)], "mp4", EncodeOptions(fps=8))
    limits = PoseLimits(max_frames=10, dwpose_dir=str(tmp_path / "dwpose"), webui_root=str(tmp_path / "webui"))
    with pytest.raises(WeightsFileError, match="yolox_l.onnx") as info:
        load_pose_clip(args(pose_video=person), 48, 64, limits)
    assert str(tmp_path / "dwpose") in str(info.value) and "sd-webui-controlnet" in str(info.value)
    # the same video as rendered skeletons is not detected at all
    clip = load_pose_clip(args(pose_video=person, pose_source="skeleton"), 48, 64, limits)
    assert len(clip.frames) == 3


# --- retargeting -----------------------------------------------------------------------------------

def _reference_json(arm_scale=0.6, leg_scale=1.3):
    """pose_json's first frame with shorter arms and longer legs (normalized, on a 48 x 64 image)."""
    body = np.array(pose_json(1)[0]["people"][0]["pose_keypoints_2d"], dtype=float).reshape(18, 3)
    out = body.copy()
    for parent, child, scale in ((1, 2, 1), (2, 3, arm_scale), (3, 4, arm_scale), (1, 5, 1), (5, 6, arm_scale),
                                 (6, 7, arm_scale), (1, 8, 1), (8, 9, leg_scale), (9, 10, leg_scale), (1, 11, 1),
                                 (11, 12, leg_scale), (12, 13, leg_scale)):
        out[child, :2] = out[parent, :2] + scale * (body[child, :2] - body[parent, :2])
    return {"canvas_width": 48, "canvas_height": 64, "people": [{"pose_keypoints_2d": out.reshape(-1).tolist()}]}


def test_retargeted_pose_json_takes_the_references_proportions():
    from lib_animate.pose.retarget import retarget
    from lib_animate.webui.jobs.aa_inputs import reference_keypoints

    reference = Image.new("RGB", (48, 64))
    fields = dict(pose_json=pose_json(4), retarget=True, reference_pose_json=_reference_json())
    target = reference_keypoints(args(**fields), reference, LIMITS)
    assert target.canvas == (48, 64)
    clip = load_pose_clip(args(**fields), 48, 64, LIMITS, retarget_to=target)
    plain = load_pose_clip(args(pose_json=pose_json(4)), 48, 64, LIMITS)
    assert len(clip.frames) == len(plain.frames) == 4
    assert not np.array_equal(clip.frames[0], plain.frames[0])
    expected, _ = retarget(parse_pose_json(pose_json(4), canvas_size=(48, 64)), target.person, (48, 64), (48, 64), "resize")
    assert np.array_equal(clip.frames[2], render_pose(expected[2], 48, 64))


def test_retargeting_without_keypoints_is_refused(tmp_path, monkeypatch):
    from lib_animate.webui.jobs.aa_inputs import RetargetTo, reference_keypoints

    target = RetargetTo(parse_pose_json([_reference_json()])[0].people[0], (48, 64))
    video = encode_video(skeletons(3), "mp4", EncodeOptions(fps=8))
    with pytest.raises(InvalidInputError, match="'retarget' needs keypoints to move: give the poses as 'pose_json'"):
        load_pose_clip(args(pose_video=video, retarget=True), 48, 64, LIMITS, retarget_to=target)
    with pytest.raises(InvalidInputError, match="'retarget' needs keypoints to move"):
        load_pose_clip(args(pose_frames=[png_bytes(Image.fromarray(s)) for s in skeletons(2)], retarget=True), 48, 64,
                       LIMITS, retarget_to=target)
    # no reference keypoints: neither reference_pose_json nor DWPose files -> both options named
    monkeypatch.delenv("ANIMATE_DWPOSE_DIR", raising=False)
    limits = PoseLimits(max_frames=10, dwpose_dir=str(tmp_path / "dwpose"), webui_root=str(tmp_path / "webui"))
    with pytest.raises(InvalidInputError, match="give 'reference_pose_json', or put the DWPose files") as info:
        reference_keypoints(args(pose_json=pose_json(2), retarget=True), Image.new("RGB", (48, 64)), limits)
    assert "yolox_l.onnx" in str(info.value)
    with pytest.raises(InvalidInputError, match="'reference_pose_json' holds no person"):
        reference_keypoints(args(pose_json=pose_json(2), retarget=True, reference_pose_json={"people": []}),
                            Image.new("RGB", (48, 64)), LIMITS)
