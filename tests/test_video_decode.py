"""Reading user videos: containers, rotation, frame selection, safety limits."""

from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from lib_animate.errors import InvalidInputError
from lib_animate.video import EncodeOptions, encode_video, read_video

from .test_video_encode import QUADRANT_COLOURS, frame_index, make_clip, quadrant_colours


def write_with_pyav(path, frames, container_format, codec="libx264", fps=8, rotation=None):
    """A video written straight with PyAV, for containers and metadata our encoders never write."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)  # display matrix side data, like a phone's
        for index, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = index
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


# --- rotation --------------------------------------------------------------------------------

needs_display_rotation = pytest.mark.skipif(
    not hasattr(av.VideoStream, "set_display_rotation"),
    reason="this PyAV cannot write a display matrix (VideoStream.set_display_rotation came with av 17)",
)


@needs_display_rotation
@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_phone_video_stored_sideways_comes_back_upright(tmp_path, degrees):
    upright = make_clip(3)
    turns = degrees // 90
    # A phone stores the sensor image and a display matrix that turns it upright
    # (counter-clockwise by `degrees`); store each frame turned the other way.
    stored = [np.ascontiguousarray(np.rot90(frame, -turns)) for frame in upright]
    path = write_with_pyav(tmp_path / "phone.mp4", stored, "mp4", rotation=degrees)
    with av.open(path) as container:
        assert next(container.decode(video=0)).rotation % 360 == degrees  # PyAV does not apply it

    clip = read_video(path)
    assert clip.rotation == degrees
    assert clip.frames.shape == (3, 48, 64, 3)
    assert [frame_index(f) for f in clip.frames] == [0, 1, 2]
    for frame in clip.frames:
        np.testing.assert_allclose(quadrant_colours(frame), QUADRANT_COLOURS, atol=8)


@needs_display_rotation
def test_rotation_agrees_with_opencv_which_applies_it_itself(tmp_path):
    cv2 = pytest.importorskip("cv2", reason="OpenCV is the independent reference for rotation")
    stored = [np.ascontiguousarray(np.rot90(frame, -1)) for frame in make_clip(2)]
    path = write_with_pyav(tmp_path / "phone.mp4", stored, "mp4", rotation=90)
    capture = cv2.VideoCapture(path)
    # OpenCV applies the stored rotation only with orientation auto on, which is off by default in 4.11
    # (on in 4.10): ask for it explicitly.
    capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    ok, bgr = capture.read()
    capture.release()
    assert ok
    ours = read_video(path).frames[0]
    assert bgr.shape == ours.shape
    assert np.abs(bgr[..., ::-1].astype(int) - ours).mean() < 3


# --- containers and formats ------------------------------------------------------------------

@pytest.mark.parametrize("container_format, suffix, kind", [("mov", "mov", "mp4"), ("matroska", "mkv", "matroska")])
def test_mov_and_mkv(tmp_path, container_format, suffix, kind):
    path = write_with_pyav(tmp_path / f"clip.{suffix}", make_clip(5), container_format, fps=12)
    clip = read_video(path)
    assert clip.kind == kind
    assert clip.frames.shape == (5, 48, 64, 3)
    assert clip.fps == 12
    assert [frame_index(f) for f in clip.frames] == list(range(5))


def test_apng_with_per_frame_durations(tmp_path):
    images = [Image.fromarray(f) for f in make_clip(4)]
    path = str(tmp_path / "clip.png")
    images[0].save(path, save_all=True, append_images=images[1:], duration=[100, 200, 100, 200], loop=2)
    clip = read_video(path)
    assert clip.kind == "png"
    np.testing.assert_array_equal(clip.frames, np.stack(make_clip(4)))
    assert clip.durations_ms == [100, 200, 100, 200]
    assert clip.fps == pytest.approx(4 / 0.6)
    assert clip.loop == 2


def test_a_still_image_is_a_one_frame_clip(tmp_path):
    path = str(tmp_path / "still.png")
    Image.fromarray(make_clip(1)[0]).save(path)
    clip = read_video(path)
    assert clip.frames.shape == (1, 48, 64, 3)
    assert clip.loop is None


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_transparent_pixels_become_black(tmp_path, fmt):
    frames = []
    for i in range(2):
        rgba = np.zeros((8, 8, 4), np.uint8)
        rgba[:, :4] = (255, 255, 255, 255)  # left half opaque white, right half transparent
        rgba[0, 0, :3] = 10 * i  # keeps the frames different (identical frames get merged)
        frames.append(Image.fromarray(rgba))
    path = str(tmp_path / f"alpha.{fmt.lower()}")
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=100, lossless=True)
    clip = read_video(path)
    assert clip.frames.shape == (2, 8, 8, 3)
    assert (clip.frames[:, 1:, :4] == 255).all()
    assert (clip.frames[:, :, 4:] == 0).all()


def test_content_decides_the_format_not_the_name(tmp_path):
    path = tmp_path / "actually_a_gif.mp4"
    path.write_bytes(encode_video(make_clip(3), "gif"))
    assert read_video(str(path)).kind == "gif"


# --- frame selection -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mp4_24fps():
    """One second at 24 fps; each frame carries its index."""
    return encode_video(make_clip(24), "mp4", EncodeOptions(fps=24, mp4_preset="ultrafast"))


@pytest.mark.parametrize("kwargs, indices, fps", [
    ({}, list(range(24)), 24),
    ({"stride": 3}, [0, 3, 6, 9, 12, 15, 18, 21], 8),
    ({"target_fps": 8}, [0, 3, 6, 9, 12, 15, 18, 21], 8),
    ({"target_fps": 10}, [0, 3, 5, 8, 10, 12, 15, 17, 20, 22], 10),
    ({"target_fps": 60}, list(range(24)), 24),
    ({"max_frames": 5}, [0, 1, 2, 3, 4], 24),
    ({"target_fps": 12, "stride": 2, "max_frames": 3}, [0, 4, 8], 6),
])
def test_frame_selection(mp4_24fps, kwargs, indices, fps):
    clip = read_video(mp4_24fps, **kwargs)
    assert clip.source_indices == indices
    assert [frame_index(f) for f in clip.frames] == indices  # the pixels are those frames
    assert clip.fps == pytest.approx(fps)


def test_selection_on_an_animation_keeps_the_playback_time(tmp_path):
    data = encode_video(make_clip(7), "webp", EncodeOptions(fps=10))
    clip = read_video(data, stride=2)
    assert clip.source_indices == [0, 2, 4, 6]
    assert clip.durations_ms == [200, 200, 200, 100]  # dropped frames' time goes to the kept ones
    assert clip.fps == pytest.approx(4 / 0.7)
    clip = read_video(data, target_fps=5, max_frames=2)
    assert clip.source_indices == [0, 2]
    assert clip.durations_ms == [200, 200]
    assert clip.fps == pytest.approx(5)


def test_max_frames_stops_decoding_early(mp4_24fps):
    # Three source frames may be decoded: enough when decoding stops after the second kept one.
    clip = read_video(mp4_24fps, max_frames=2, max_decoded_frames=3)
    assert clip.source_indices == [0, 1]
    with pytest.raises(InvalidInputError, match="more than 3 frames"):
        read_video(mp4_24fps, max_decoded_frames=3)


# --- safety limits ---------------------------------------------------------------------------

def test_frames_larger_than_the_pixel_limit_are_refused_before_decoding(mp4_24fps):
    with pytest.raises(InvalidInputError, match=r"64x48.*scale it down"):
        read_video(mp4_24fps, max_total_pixels=64 * 48 - 1)


def test_too_many_pixels_in_total_are_refused(mp4_24fps):
    with pytest.raises(InvalidInputError) as info:
        read_video(mp4_24fps, max_total_pixels=64 * 48 * 10)
    message = str(info.value)
    assert "11 frames of 64x48" in message and "maximum number of frames" in message
    assert read_video(mp4_24fps, max_total_pixels=64 * 48 * 10, stride=3).frames.shape[0] == 8
