"""Reading MP4/MOV and WebM/MKV with PyAV: exact frames, frame times and rotation.

PyAV hands out frames as stored; a phone video filmed upright is stored sideways with a display
matrix saying how to turn it, exposed as ``frame.rotation`` (degrees counter-clockwise), which
is applied here. WebM stores no frame count, so frames are simply decoded until the end.
"""

import contextlib
import functools
import re
from typing import Iterator, Optional

import av
import numpy as np

from lib_animate.errors import InvalidInputError

from .decoded import RawFrame
from .source import Source

_NAMES = {"mp4": "MP4/MOV", "matroska": "WebM/MKV"}
_DURATION_TAG = re.compile(r"^(\d+):(\d+):(\d+(?:\.\d*)?)$")


def damaged_message(source: Source, exc: BaseException, detail: str = "") -> str:
    name = _NAMES.get(source.kind, source.kind)
    return (
        f"{source.description} looks like a {name} video but cannot be decoded{detail} ({exc}); "
        f"it may be cut short or damaged: export or download it again"
    )


@contextlib.contextmanager
def open_container(source: Source) -> Iterator["av.container.InputContainer"]:
    try:
        container = av.open(source.open(), mode="r")
    except (av.error.FFmpegError, OSError) as exc:
        raise InvalidInputError(damaged_message(source, exc)) from exc
    with container:
        yield container


class AvReader:
    has_durations = False
    loop = None

    def __init__(self, container, source: Source):
        streams = container.streams.video
        if not streams:
            raise InvalidInputError(
                f"{source.description} has no video track (only {_track_list(container)}); "
                f"give a file with moving pictures"
            )
        self.container = container
        self.stream = streams[0]
        self.stream.thread_type = "AUTO"
        self.source = source
        self.width = self.stream.codec_context.width
        self.height = self.stream.codec_context.height
        rate = self.stream.average_rate or self.stream.guessed_rate or self.stream.base_rate
        self.nominal_fps = float(rate) if rate else None
        self.rotation = 0  # known once the first frame is decoded
        self.decoded = 0
        self.last_time_s = None

    def frames(self) -> Iterator[RawFrame]:
        first_time = None
        try:
            for frame in self.container.decode(self.stream):
                time_s = frame.time
                if time_s is None:  # no timestamps: assume the nominal rate
                    time_s = self.decoded / (self.nominal_fps or 1.0)
                if first_time is None:
                    first_time = time_s
                    self.rotation = _quarter_turns(frame.rotation) * 90
                self.decoded += 1
                self.last_time_s = time_s - first_time
                yield RawFrame(self.last_time_s, None, functools.partial(_upright_rgb, frame))
        except av.error.FFmpegError as exc:
            detail = f" after {self.decoded} frames" if self.decoded else ""
            raise InvalidInputError(damaged_message(self.source, exc, detail)) from exc

    def check_complete(self) -> None:
        """Raise if decoding ended well before the duration the container promises.

        Matroska files cut short decode without any error, just fewer frames. MP4 needs no check:
        FFmpeg reports missing sample data as an error (and MP4 edit lists may legitimately
        show less than the stored media).
        """
        if self.source.kind != "matroska" or not self.nominal_fps:
            return
        expected = self._expected_duration_s()
        if expected is None:
            return
        frame_s = 1.0 / self.nominal_fps
        decoded_s = 0.0 if self.last_time_s is None else self.last_time_s + frame_s
        if decoded_s + 2 * frame_s < expected and decoded_s < 0.9 * expected:
            raise InvalidInputError(
                f"{self.source.description} is cut short: it should last {expected:.2f} s but only "
                f"{decoded_s:.2f} s ({self.decoded} frames) could be decoded; export or download it again"
            )

    def _expected_duration_s(self) -> Optional[float]:
        stream = self.stream
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
        tags = {key.lower(): value for key, value in stream.metadata.items()}
        match = _DURATION_TAG.match(tags.get("duration", "").strip())
        if match:
            hours, minutes, seconds = match.groups()
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        if len(self.container.streams) == 1 and self.container.duration:
            return self.container.duration / av.time_base
        return None


def _quarter_turns(rotation) -> int:
    """Quarter turns (0..3) nearest to a rotation in degrees; non-right angles are rounded."""
    return int(round((rotation or 0) / 90.0)) % 4


def _upright_rgb(frame: "av.VideoFrame") -> np.ndarray:
    # to_ndarray converts with the matrix and range the frame is tagged with.
    rgb = frame.to_ndarray(format="rgb24")
    turns = _quarter_turns(frame.rotation)
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def _track_list(container) -> str:
    kinds = sorted({stream.type for stream in container.streams})
    return ", ".join(f"{kind} tracks" for kind in kinds) if kinds else "no tracks at all"
