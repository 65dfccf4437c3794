"""Every kind of bad input gives InvalidInputError saying what was received and what is accepted."""

import io
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from lib_animate.errors import InvalidInputError
from lib_animate.video import ACCEPTED, EncodeOptions, encode_video, read_infotext, read_video

from .test_video_decode import write_with_pyav
from .test_video_encode import make_clip

ACCEPTED_HINT = "accepted formats are MP4, MOV, WebM, MKV, GIF, animated WebP or APNG"


def jpeg_bytes():
    buffer = io.BytesIO()
    Image.fromarray(make_clip(1)[0]).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize("data, looks_like", [
    (b"", "is empty"),
    (b"frame_001.png\nframe_002.png\n", "is text"),
    (jpeg_bytes(), "is a JPEG image"),
    (b"RIFF\x00\x00\x00\x00AVI LIST", "is an AVI video"),
    (bytes(range(256)) * 4, "is a file of unknown type"),
])
def test_not_a_video(data, looks_like):
    with pytest.raises(InvalidInputError) as info:
        read_video(data)
    message = str(info.value)
    assert message.startswith("the uploaded data (")
    assert looks_like in message
    assert ACCEPTED in message and ACCEPTED_HINT in message


def test_not_a_video_file_names_the_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(InvalidInputError, match=r"the file '.*notes\.txt' \(5 bytes\) is text, not a video"):
        read_video(str(path))
    with pytest.raises(InvalidInputError, match=r"notes\.txt.*is text"):
        read_infotext(path)  # a pathlib.Path works too


def test_missing_file_folder_and_wrong_type(tmp_path):
    with pytest.raises(InvalidInputError, match=r"'.*missing\.mp4' does not exist; give the path of a video file"):
        read_video(str(tmp_path / "missing.mp4"))
    with pytest.raises(InvalidInputError, match="is a folder"):
        read_video(str(tmp_path))
    with pytest.raises(InvalidInputError, match="expected a file path or the bytes of a video, got int"):
        read_video(42)


def _cut(data, fraction):
    return data[: int(len(data) * fraction)]


@pytest.mark.parametrize("fmt", ["mp4", "gif", "webp"])
@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_files(fmt, fraction):
    data = encode_video(make_clip(12), fmt)
    with pytest.raises(InvalidInputError) as info:
        read_video(_cut(data, fraction))
    message = str(info.value)
    assert "cannot be decoded" in message and "cut short or damaged" in message


def test_truncated_mp4_without_its_index(tmp_path):
    # Without +faststart the index (moov) is at the end: half a file has none.
    data = open(write_with_pyav(tmp_path / "plain.mp4", make_clip(6), "mp4"), "rb").read()
    assert data.find(b"mdat") < data.find(b"moov")
    with pytest.raises(InvalidInputError, match="looks like a MP4/MOV video but cannot be decoded"):
        read_video(_cut(data, 0.5))


def test_truncated_apng(tmp_path):
    images = [Image.fromarray(f) for f in make_clip(6)]
    buffer = io.BytesIO()
    images[0].save(buffer, format="PNG", save_all=True, append_images=images[1:])
    with pytest.raises(InvalidInputError, match="PNG file but cannot be decoded"):
        read_video(_cut(buffer.getvalue(), 0.6))


def test_truncated_webm_is_noticed_although_ffmpeg_decodes_it_quietly():
    data = _cut(encode_video(make_clip(24), "webm", EncodeOptions(fps=8)), 0.7)
    with av.open(io.BytesIO(data)) as container:  # FFmpeg itself raises nothing
        assert 3 < sum(1 for _ in container.decode(video=0)) < 24
    with pytest.raises(InvalidInputError, match=r"is cut short: it should last 3\.00 s but only"):
        read_video(data)
    # Stopping early on purpose is not truncation.
    assert read_video(data, max_frames=2).frames.shape[0] == 2


def test_webm_cut_before_the_first_frame_has_no_frames():
    data = encode_video(make_clip(4), "webm")
    first_cluster = data.find(b"\x1f\x43\xb6\x75")  # Matroska Cluster element ID
    assert first_cluster > 0
    with pytest.raises(InvalidInputError, match="contains no frames that could be decoded"):
        read_video(data[:first_cluster + 8])  # headers complete, no frame data


def test_signature_followed_by_garbage():
    with pytest.raises(InvalidInputError, match="GIF file but cannot be decoded"):
        read_video(b"GIF89a" + bytes(200))
    with pytest.raises(InvalidInputError, match="MP4/MOV video but cannot be decoded"):
        read_video(b"\x00\x00\x00\x18ftypisom" + bytes(200))


def test_audio_only_file(tmp_path):
    path = str(tmp_path / "audio.mp4")
    with av.open(path, mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 8000, 0, Fraction(1, 8000)
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(InvalidInputError, match=r"has no video track \(only audio tracks\)"):
        read_video(path)


@pytest.mark.parametrize("kwargs, field", [
    ({"stride": 0}, "stride"), ({"target_fps": -1}, "target_fps"), ({"max_frames": 0}, "max_frames"),
])
def test_bad_selection_is_refused_before_reading(kwargs, field):
    with pytest.raises(InvalidInputError, match=field):
        read_video(b"", **kwargs)  # the settings are checked first, the (empty) input never read


def test_infotext_errors_and_absence(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="holds no PNG frames"):
        read_infotext(str(tmp_path / "empty"))
    for fmt in ("gif", "mp4", "webm", "webp"):
        assert read_infotext(encode_video(make_clip(2), fmt)) is None
    with pytest.raises(InvalidInputError, match="is a JPEG image"):
        read_infotext(jpeg_bytes())
