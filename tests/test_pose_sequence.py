"""Frame choice (stride, target fps, max frames) and fitting frames / keypoints to W x H."""

import numpy as np
import pytest

from lib_animate.errors import InvalidInputError
from lib_animate.pose import (
    Person, PoseFrame, fit_image, parse_pose_json, prepare_pose_video, render_pose_sequence,
    sample_indices,
)


def test_stride_takes_every_kth_frame_and_divides_fps():
    assert sample_indices(10, 30, stride=2) == ([0, 2, 4, 6, 8], 15.0)
    assert sample_indices(10, 30, stride=3) == ([0, 3, 6, 9], 10.0)
    assert sample_indices(10, 30) == (list(range(10)), 30.0)


def test_target_fps_resamples_by_time():
    assert sample_indices(30, 30, target_fps=10) == (list(range(0, 30, 3)), 10.0)
    # frame 30 is on screen at t = 1.0 s, which is output frame 10 at 10 fps
    assert sample_indices(31, 30, target_fps=10)[0] == list(range(0, 31, 3))
    assert sample_indices(25, 25, target_fps=8)[0] == [0, 3, 6, 9, 12, 15, 18, 21]
    assert sample_indices(4, 8, target_fps=16) == ([0, 0, 1, 1, 2, 2, 3, 3], 16.0)
    assert sample_indices(24, 23.976, target_fps=23.976)[0] == list(range(24))
    assert sample_indices(2, 30, target_fps=1)[0] == [0]  # never empty


def test_stride_then_fps_then_max_frames():
    # stride 2 -> 0,2,..,58 at 15 fps; 5 fps -> every 3rd of those; first 4
    indices, fps = sample_indices(60, 30, stride=2, target_fps=5, max_frames=4)
    assert indices == [0, 6, 12, 18] and fps == 5.0
    assert sample_indices(100, 8, max_frames=16) == (list(range(16)), 8.0)
    assert sample_indices(5, 8, max_frames=16)[0] == list(range(5))


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((0, 8), {}, "no frames"),
        ((5, 0), {}, "fps must be a positive number"),
        ((5, float("nan")), {}, "fps must be a positive number"),
        ((5, 8), {"stride": 0}, "stride must be a whole number >= 1"),
        ((5, 8), {"stride": 1.5}, "stride must be a whole number >= 1"),
        ((5, 8), {"stride": True}, "stride must be a whole number >= 1"),
        ((5, 8), {"target_fps": -1}, "target fps must be a positive number"),
        ((5, 8), {"max_frames": 0}, "max frames must be a whole number >= 1"),
    ],
)
def test_bad_sampling_arguments(args, kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        sample_indices(*args, **kwargs)


def numbered_frames(n, w=40, h=20):
    return [np.full((h, w, 3), i, dtype=np.uint8) for i in range(n)]


def test_prepare_pose_video_samples_and_fits():
    clip = prepare_pose_video(numbered_frames(12), 24, 16, 32, stride=2, max_frames=4)
    assert clip.fps == 12.0 and clip.source_indices == [0, 2, 4, 6]
    assert [f.shape for f in clip.frames] == [(32, 16, 3)] * 4
    assert [int(f[5, 5, 0]) for f in clip.frames] == [0, 2, 4, 6]


def test_resize_squashes_and_letterbox_pads_black():
    white = [np.full((50, 100, 3), 255, dtype=np.uint8)]
    squashed = prepare_pose_video(white, 8, 64, 64, fit="resize").frames[0]
    assert (squashed == 255).all()
    boxed = prepare_pose_video(white, 8, 64, 64, fit="letterbox").frames[0]
    rows = np.nonzero(boxed.any(axis=(1, 2)))[0]
    assert (rows.min(), rows.max()) == (16, 47)  # 100x50 -> 64x32, centred
    assert (boxed[16:48] == 255).all() and not boxed[:16].any() and not boxed[48:].any()
    tall = fit_image(np.full((100, 50, 3), 255, dtype=np.uint8), 64, 64, "letterbox")
    cols = np.nonzero(tall.any(axis=(0, 2)))[0]
    assert (cols.min(), cols.max()) == (16, 47)
    same = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    assert np.array_equal(fit_image(same, 4, 4, "letterbox"), same)


def test_keypoints_and_frames_are_fitted_the_same_way():
    # a white dot on a 100 x 50 frame, and a pose whose nose is on it: after letterbox to
    # 64 x 64 the rendered nose is centred on the fitted dot
    frame = np.zeros((50, 100, 3), dtype=np.uint8)
    frame[19:22, 59:62] = 255  # centre (60, 20)
    body = np.zeros((18, 3))
    body[0] = (60 / 100, 20 / 50, 1.0)
    poses = [PoseFrame(people=(Person(body=body),), canvas_size=(100, 50))]
    for fit in ("letterbox", "resize"):
        fitted = prepare_pose_video([frame], 8, 64, 64, fit=fit).frames[0].astype(float)[..., 0]
        drawn = render_pose_sequence(poses, 8, 64, 64, fit=fit).frames[0].any(axis=2)
        ys, xs = np.mgrid[0:64, 0:64]
        dot = ((xs * fitted).sum() / fitted.sum(), (ys * fitted).sum() / fitted.sum())
        nose = (xs[drawn].mean(), ys[drawn].mean())
        assert abs(dot[0] - nose[0]) <= 1.0 and abs(dot[1] - nose[1]) <= 1.0, (fit, dot, nose)


def test_render_pose_sequence_from_json():
    frames = [
        {"people": [{"pose_keypoints_2d": [0.1 * (k % 9 + 1), 0.5, 1.0] * 18}]} for k in range(10)
    ]
    poses = parse_pose_json({"poses": frames})
    clip = render_pose_sequence(poses, 10, 64, 48, target_fps=5, max_frames=3)
    assert clip.source_indices == [0, 2, 4] and clip.fps == 5.0
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 and f.any() for f in clip.frames)
    assert not np.array_equal(clip.frames[0], clip.frames[1])


@pytest.mark.parametrize(
    "frames, message",
    [
        ([], "no frames"),
        ("video.mp4", "no frames"),
        (
            [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)],
            r"frame 1: expected an H x W x 3 uint8 RGB array, got shape \(8, 8\)",
        ),
        ([np.zeros((8, 8, 4), np.uint8)], r"frame 0: .*got shape \(8, 8, 4\)"),
        ([np.zeros((8, 8, 3), np.float32)], r"frame 0: .*float32"),
        (
            [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8)],
            r"frame 1: size 9x8 differs from frame 0's 8x8",
        ),
    ],
)
def test_bad_frames(frames, message):
    with pytest.raises(InvalidInputError, match=message):
        prepare_pose_video(frames, 8, 64, 64)


def test_bad_generation_size_and_fit():
    with pytest.raises(InvalidInputError, match="generation size: width"):
        prepare_pose_video(numbered_frames(1), 8, 0, 64)
    with pytest.raises(InvalidInputError, match="fit mode"):
        render_pose_sequence([PoseFrame()], 8, 64, 64, fit="stretch")


@pytest.mark.parametrize("size", [(48, 80), (100, 60), (16, 16)])
def test_pose_frames_are_resized_as_the_reference_does(size):
    """The reference pipeline resizes pose images with PIL's Lanczos (diffusers' image processor)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (37, 53, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(frame).resize(size, resample=getattr(Image, "Resampling", Image).LANCZOS))
    assert np.array_equal(fit_image(frame, *size, "resize"), expected)
