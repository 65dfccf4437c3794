"""Writing GIF, MP4, WebM, WebP and PNG frames with the real encoders, and reading them back."""

import os
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from lib_animate.errors import InvalidInputError
from lib_animate.video import (
    FORMATS,
    MIME_TYPES,
    EncodeOptions,
    encode_png,
    encode_video,
    read_infotext,
    read_video,
    save_png_frames,
    save_video,
)
from lib_animate.video import encode as encode_module
from lib_animate.video.atomic import atomic_file, atomic_folder

INFOTEXT = "a dancer, ünïcödé 猫\nNegative prompt: blurry\nSteps: 20, Seed: 1, " + "long " * 200
QUADRANT_COLOURS = np.array([(200, 40, 40), (40, 200, 40), (40, 40, 200), (230, 230, 230)])


def make_frame(index, height=48, width=64):
    """Flat colour quadrants (colour checks survive lossy codecs) and the frame index in binary
    as black/white 8x8 blocks along the top."""
    frame = np.zeros((height, width, 3), np.uint8)
    top, mid_y, mid_x = 8, (8 + height) // 2, width // 2
    frame[top:mid_y, :mid_x], frame[top:mid_y, mid_x:] = QUADRANT_COLOURS[:2]
    frame[mid_y:, :mid_x], frame[mid_y:, mid_x:] = QUADRANT_COLOURS[2:]
    for bit in range(width // 8):
        if index >> bit & 1:
            frame[:8, bit * 8:(bit + 1) * 8] = 255
    return frame


def frame_index(frame):
    """Inverse of the marker in :func:`make_frame`."""
    width = frame.shape[1] // 8 * 8
    blocks = frame[1:7, :width].reshape(6, -1, 8, 3)[:, :, 1:7].mean(axis=(0, 2, 3))
    return int(sum(1 << bit for bit, value in enumerate(blocks) if value > 128))


def quadrant_colours(frame, height=None, width=None):
    """Mean colour of a 4x4 patch in the middle of each quadrant (away from chroma-blurred edges)."""
    height, width = height or frame.shape[0], width or frame.shape[1]
    mid_y, mid_x = (8 + height) // 2, width // 2
    rows = ((8 + mid_y) // 2, (mid_y + height) // 2)
    cols = (mid_x // 2, (mid_x + width) // 2)
    return np.array([frame[r - 2:r + 2, c - 2:c + 2].reshape(-1, 3).mean(axis=0) for r in rows for c in cols])


def make_clip(count=6, height=48, width=64):
    return [make_frame(i, height, width) for i in range(count)]


def mean_error(a, b):
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# --- GIF -------------------------------------------------------------------------------------

def test_gif_round_trip(tmp_path):
    frames = make_clip(6)
    path = save_video(frames, str(tmp_path / "clip.gif"), EncodeOptions(fps=8, loop=3, infotext=INFOTEXT))
    assert path == str(tmp_path / "clip.gif")

    clip = read_video(path)
    assert clip.kind == "gif"
    assert clip.frames.shape == (6, 48, 64, 3)
    np.testing.assert_array_equal(clip.frames, np.stack(frames))  # few colours: exact in a palette
    assert clip.durations_ms == [130, 120, 130, 120, 130, 120]  # 125 ms in 10 ms ticks
    assert clip.fps == pytest.approx(8.0)
    assert clip.loop == 3
    assert read_infotext(path) == INFOTEXT

    with Image.open(path) as image:  # as stored: NETSCAPE repeat count, UTF-8 comment
        assert image.info["loop"] == 2
        assert image.info["comment"].decode("utf-8") == INFOTEXT


@pytest.mark.parametrize("plays", [0, 1])
def test_gif_plays_forever_or_once(tmp_path, plays):
    path = save_video(make_clip(3), str(tmp_path / "clip.gif"), EncodeOptions(loop=plays))
    assert read_video(path).loop == plays
    with Image.open(path) as image:
        assert image.info.get("loop") == (0 if plays == 0 else None)  # once: no NETSCAPE block


def test_gif_faster_than_50_fps_is_slowed_to_what_browsers_play(tmp_path):
    path = save_video(make_clip(4), str(tmp_path / "clip.gif"), EncodeOptions(fps=60))
    assert read_video(path).durations_ms == [20] * 4


# --- WebP ------------------------------------------------------------------------------------

def test_webp_round_trip(tmp_path):
    frames = make_clip(5)
    path = save_video(frames, str(tmp_path / "clip.webp"), EncodeOptions(fps=8, loop=2, infotext=INFOTEXT))
    clip = read_video(path)
    assert clip.kind == "webp"
    assert clip.frames.shape == (5, 48, 64, 3)
    assert clip.durations_ms == [125] * 5
    assert clip.fps == pytest.approx(8.0)
    assert clip.loop == 2
    assert [frame_index(f) for f in clip.frames] == list(range(5))
    for frame in clip.frames:
        np.testing.assert_allclose(quadrant_colours(frame), QUADRANT_COLOURS, atol=4)
    assert read_infotext(path) == INFOTEXT


def test_webp_infotext_is_an_exif_user_comment_in_piexif_unicode_form(tmp_path):
    # The webui's PNG Info tab reads WebP infotext with piexif: UserComment, "UNICODE\0" + UTF-16BE.
    path = save_video(make_clip(2), str(tmp_path / "clip.webp"), EncodeOptions(infotext=INFOTEXT))
    with Image.open(path) as image:
        assert image.info["exif"].startswith(b"Exif\x00\x00")
        raw = image.getexif().get_ifd(0x8769)[0x9286]
    assert raw == b"UNICODE\x00" + INFOTEXT.encode("utf_16_be")


def test_webp_lossless_is_exact(tmp_path):
    frames = make_clip(3)
    path = save_video(frames, str(tmp_path / "clip.webp"), EncodeOptions(webp_lossless=True, loop=0))
    clip = read_video(path)
    np.testing.assert_array_equal(clip.frames, np.stack(frames))
    assert clip.loop == 0


# --- MP4 -------------------------------------------------------------------------------------

def test_mp4_is_browser_playable_h264(tmp_path):
    frames = make_clip(6)
    path = save_video(frames, str(tmp_path / "clip.mp4"), EncodeOptions(fps=8, infotext=INFOTEXT))
    with av.open(path) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert stream.frames == 6
        assert stream.average_rate == 8
        assert container.metadata["comment"] == INFOTEXT
        first = next(container.decode(stream))
        assert (int(first.colorspace), int(first.color_range)) == (1, 1)  # BT.709, limited range
    data = open(path, "rb").read()
    assert data.find(b"moov") < data.find(b"mdat")  # +faststart: the index comes first

    clip = read_video(path)
    assert clip.kind == "mp4"
    assert clip.frames.shape == (6, 48, 64, 3)
    assert clip.fps == 8
    assert clip.durations_ms is None and clip.loop is None
    assert [frame_index(f) for f in clip.frames] == list(range(6))
    # Colours come back: the decoder uses the BT.709 tag the encoder converted with.
    for frame in clip.frames:
        np.testing.assert_allclose(quadrant_colours(frame), QUADRANT_COLOURS, atol=3)
    assert read_infotext(path) == INFOTEXT


def test_mp4_odd_size_is_padded_by_one_copied_row_and_column(tmp_path):
    frames = make_clip(3, height=47, width=63)
    path = save_video(frames, str(tmp_path / "odd.mp4"))
    clip = read_video(path)
    assert clip.frames.shape == (3, 48, 64, 3)
    assert [frame_index(f) for f in clip.frames] == [0, 1, 2]
    for frame in clip.frames:
        np.testing.assert_allclose(quadrant_colours(frame, 47, 63), QUADRANT_COLOURS, atol=3)
    # The added column and row repeat the last ones (no black line).
    assert mean_error(clip.frames[:, 16:47, 63], clip.frames[:, 16:47, 62]) < 3
    assert mean_error(clip.frames[:, 47, 8:63], clip.frames[:, 46, 8:63]) < 3


def test_mp4_fractional_fps(tmp_path):
    path = save_video(make_clip(4), str(tmp_path / "clip.mp4"), EncodeOptions(fps=12.5))
    with av.open(path) as container:
        assert container.streams.video[0].average_rate == Fraction(25, 2)
    assert read_video(path).fps == pytest.approx(12.5)


# --- WebM ------------------------------------------------------------------------------------

def test_webm_is_vp9_and_decodes_every_frame_without_a_stored_count(tmp_path):
    frames = make_clip(7, height=47, width=63)  # VP9 takes odd sizes as they are
    path = save_video(frames, str(tmp_path / "clip.webm"), EncodeOptions(fps=8, infotext=INFOTEXT))
    with av.open(path) as container:
        stream = container.streams.video[0]
        assert container.format.name.startswith("matroska")
        assert stream.codec_context.name == "vp9"
        assert stream.frames == 0  # WebM stores no frame count
    clip = read_video(path)
    assert clip.kind == "matroska"
    assert clip.frames.shape == (7, 47, 63, 3)
    assert clip.fps == 8
    assert [frame_index(f) for f in clip.frames] == list(range(7))
    for frame in clip.frames:
        np.testing.assert_allclose(quadrant_colours(frame), QUADRANT_COLOURS, atol=4)
    assert read_infotext(path) == INFOTEXT


# --- PNG frames ------------------------------------------------------------------------------

def test_png_frames_carry_the_infotext_like_the_webui(tmp_path):
    frames = make_clip(3)
    folder = str(tmp_path / "frames")
    paths = save_png_frames(frames, folder, INFOTEXT)
    assert [os.path.basename(p) for p in paths] == ["00000.png", "00001.png", "00002.png"]
    assert sorted(os.listdir(folder)) == ["00000.png", "00001.png", "00002.png"]
    for path, frame in zip(paths, frames):
        with Image.open(path) as image:
            assert image.info["parameters"] == INFOTEXT
            np.testing.assert_array_equal(np.asarray(image.convert("RGB")), frame)
    assert read_infotext(folder) == INFOTEXT
    assert read_infotext(paths[1]) == INFOTEXT


def test_png_frames_into_an_existing_folder_replace_their_namesakes(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "00000.png").write_bytes(b"old")
    (folder / "notes.txt").write_text("kept")
    save_png_frames(make_clip(2), str(folder))
    assert sorted(os.listdir(folder)) == ["00000.png", "00001.png", "notes.txt"]
    assert read_video(str(folder / "00000.png")).frames.shape == (1, 48, 64, 3)
    assert read_infotext(str(folder / "00000.png")) is None
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_encode_png_bytes():
    data = encode_png(make_frame(5), INFOTEXT)
    assert data.startswith(b"\x89PNG")
    assert read_infotext(data) == INFOTEXT
    assert frame_index(read_video(data).frames[0]) == 5


# --- bytes, inputs, options ------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_encode_video_returns_the_same_file_as_bytes(fmt):
    data = encode_video(make_clip(4), fmt, EncodeOptions(infotext=INFOTEXT))
    clip = read_video(data)
    assert clip.frames.shape[0] == 4
    assert read_infotext(data) == INFOTEXT
    assert MIME_TYPES[fmt].split("/")[1] == fmt


def test_pil_images_and_a_4d_array_are_accepted(tmp_path):
    frames = make_clip(3)
    rgba = [Image.fromarray(f).convert("RGBA") for f in frames]
    clip = read_video(encode_video(rgba, "gif"))
    np.testing.assert_array_equal(clip.frames, np.stack(frames))
    clip = read_video(encode_video(np.stack(frames), "gif"))
    np.testing.assert_array_equal(clip.frames, np.stack(frames))


def test_format_comes_from_the_extension_or_the_argument(tmp_path):
    path = save_video(make_clip(2), str(tmp_path / "clip.GIF"))
    assert read_video(path).kind == "gif"
    path = save_video(make_clip(2), str(tmp_path / "clip.bin"), fmt="webm")
    assert read_video(path).kind == "matroska"
    with pytest.raises(InvalidInputError, match="gif, mp4, webm, webp"):
        save_video(make_clip(2), str(tmp_path / "clip.avi"))
    with pytest.raises(InvalidInputError):
        encode_video(make_clip(2), "mov")


@pytest.mark.parametrize("bad", [
    [], [np.zeros((4, 4), np.uint8)], [np.zeros((4, 4, 3), np.float32)],
    [np.zeros((4, 4, 3), np.uint8), np.zeros((4, 6, 3), np.uint8)],
])
def test_malformed_frames_are_programming_errors(bad):
    with pytest.raises(ValueError):
        encode_video(bad, "gif")


@pytest.mark.parametrize("field, value", [
    ("fps", 0), ("fps", -8), ("fps", float("nan")), ("fps", "8"), ("loop", -1), ("loop", 1.5),
    ("mp4_crf", 52), ("webm_crf", 64), ("webp_quality", 101), ("webp_method", 7), ("mp4_preset", "quick"),
    ("infotext", b"bytes"),
])
def test_bad_options_are_user_errors(field, value):
    with pytest.raises(InvalidInputError, match=field):
        EncodeOptions(**{field: value})


def test_options_normalise_numpy_numbers():
    options = EncodeOptions(fps=np.float32(12), loop=np.int64(2), mp4_crf=np.int32(20))
    assert type(options.fps) is float and type(options.loop) is int and type(options.mp4_crf) is int


# --- atomic writes ---------------------------------------------------------------------------

def _leftovers(folder):
    return [name for name in os.listdir(folder) if name.endswith(".tmp")]


def test_a_failing_writer_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "clip.gif"
    save_video(make_clip(2), str(path))
    before = path.read_bytes()

    def crash_halfway(frames, target, options):  # a writer that dies after writing some bytes
        with open(target, "wb") as handle:
            handle.write(b"GIF89a half")
        raise KeyboardInterrupt

    monkeypatch.setitem(encode_module._WRITERS, "gif", crash_halfway)
    with pytest.raises(KeyboardInterrupt):
        save_video(make_clip(2), str(path))
    with pytest.raises(KeyboardInterrupt):
        save_video(make_clip(2), str(tmp_path / "new.gif"))
    assert path.read_bytes() == before
    assert not (tmp_path / "new.gif").exists()
    assert _leftovers(tmp_path) == []


def test_the_final_name_appears_only_after_the_file_is_complete(tmp_path):
    path = tmp_path / "sub" / "clip.mp4"
    with atomic_file(str(path)) as tmp:
        assert os.path.dirname(tmp) == str(path.parent)  # same folder: the rename is atomic
        assert tmp.endswith(".tmp") and os.path.basename(tmp).startswith(".clip.mp4.")
        save_video(make_clip(2), tmp, fmt="mp4")  # a complete file, under the temporary name
        assert not path.exists()
    assert read_video(str(path)).frames.shape[0] == 2
    assert _leftovers(path.parent) == []


@pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
def test_written_files_get_the_usual_mode_not_a_private_temp_file_mode(tmp_path):
    umask = os.umask(0o022)
    try:
        video = save_video(make_clip(2), str(tmp_path / "clip.webp"))
        frame = save_png_frames(make_clip(1), str(tmp_path / "frames"))[0]
    finally:
        os.umask(umask)
    assert os.stat(video).st_mode & 0o777 == 0o644
    assert os.stat(frame).st_mode & 0o777 == 0o644
    assert os.stat(tmp_path / "frames").st_mode & 0o777 == 0o755


def test_a_failing_frame_folder_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_folder(str(tmp_path / "frames")) as tmp:
            (open(os.path.join(tmp, "00000.png"), "wb")).close()
            raise RuntimeError("crash")
    assert os.listdir(tmp_path) == []
