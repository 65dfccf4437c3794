"""MP4 (H.264) and WebM (VP9), written with PyAV (av 17 or later; FFmpeg is inside the wheel).

Both are 4:2:0 with BT.709 colours in limited range, tagged as such, which is what browsers
and gr.Video play. Infotext goes into the container's ``comment`` metadata.
"""

from fractions import Fraction
from typing import Dict, List

import av
import numpy as np

from .frames import pad_to_even
from .options import EncodeOptions

_BT709 = 1  # colour primaries / transfer / matrix code points (ISO/IEC 23091-4)
_LIMITED_RANGE = 1


def write_mp4(frames: List[np.ndarray], path: str, options: EncodeOptions) -> None:
    """H.264 yuv420p, moov atom first (+faststart) so browsers start playing before the end.

    libx264 needs an even width and height for 4:2:0: an odd size gets one more row/column,
    a copy of the last one (:func:`pad_to_even`).
    """
    _write(
        [pad_to_even(frame) for frame in frames], path, options,
        container_format="mp4", container_options={"movflags": "+faststart"},
        codec="libx264", codec_options={"crf": str(options.mp4_crf), "preset": options.mp4_preset},
    )


def write_webm(frames: List[np.ndarray], path: str, options: EncodeOptions) -> None:
    """VP9 in constant-quality mode with libvpx's realtime speed settings (VP9 takes odd sizes)."""
    _write(
        frames, path, options,
        container_format="webm", container_options={},
        codec="libvpx-vp9",
        codec_options={
            "crf": str(options.webm_crf), "b": "0",  # b=0 turns crf into constant quality
            "deadline": "realtime", "cpu-used": "8", "row-mt": "1",
        },
    )


def _write(
    frames: List[np.ndarray], path: str, options: EncodeOptions, *,
    container_format: str, container_options: Dict[str, str], codec: str, codec_options: Dict[str, str],
) -> None:
    # Must be a real path: +faststart reopens the file by name to move the index to the front.
    rate = Fraction(options.fps).limit_denominator(1001)
    height, width = frames[0].shape[:2]
    with av.open(path, mode="w", format=container_format, options=container_options) as container:
        if options.infotext:
            container.metadata["comment"] = options.infotext
        stream = container.add_stream(codec, rate=rate, options=codec_options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        context = stream.codec_context
        context.colorspace = context.color_primaries = context.color_trc = _BT709
        context.color_range = _LIMITED_RANGE
        for index, frame in enumerate(frames):
            for packet in stream.encode(_to_yuv(frame, index)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _to_yuv(frame: np.ndarray, pts: int) -> av.VideoFrame:
    # Convert explicitly: left to itself swscale would use BT.601, which the BT.709 tags above
    # would then misdescribe (a visible colour shift in browsers).
    rgb = av.VideoFrame.from_ndarray(frame, format="rgb24")
    yuv = rgb.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
    yuv.pts = pts
    return yuv
