"""Reading a user's video or animation into RGB frames, with frame selection and safety limits."""

import contextlib
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Union

import numpy as np

from lib_animate.errors import InvalidInputError

from .decode_av import AvReader, open_container
from .decode_pillow import PillowReader, open_image
from .decoded import DecodedVideo
from .selection import SKIP, STOP, FrameSelector
from .source import AV_KINDS, Input, Source, load_source

# Safety limits against files that would exhaust memory or time. 2**28 pixels of RGB are
# 768 MiB: 1024 frames of 512x512, or 129 frames of 1920x1080.
DEFAULT_MAX_TOTAL_PIXELS = 2 ** 28
# Source frames decoded, kept or not: 11 minutes at 30 fps.
DEFAULT_MAX_DECODED_FRAMES = 20_000

# A frame rate for the rare video without any timing (a single frame, say); it then hardly matters.
_FALLBACK_FPS = 30.0


def read_video(
    source: Input,
    *,
    stride: int = 1,
    target_fps: Optional[float] = None,
    max_frames: Optional[int] = None,
    max_total_pixels: int = DEFAULT_MAX_TOTAL_PIXELS,
    max_decoded_frames: int = DEFAULT_MAX_DECODED_FRAMES,
) -> DecodedVideo:
    """Decode a video or animation (a path or its bytes) into upright RGB frames.

    Frame selection (see :mod:`.selection`): ``target_fps`` keeps frames on a clock of that
    rate (never adds frames), ``stride`` then keeps every n-th, ``max_frames`` stops early.
    Raises :class:`InvalidInputError` when the input is not a supported video, is damaged or
    cut short, has no frames, or when the kept frames would exceed ``max_total_pixels`` in
    total or more than ``max_decoded_frames`` source frames would have to be decoded.
    """
    selector = FrameSelector(stride, target_fps, max_frames)
    for name, value in (("max_total_pixels", max_total_pixels), ("max_decoded_frames", max_decoded_frames)):
        if int(value) < 1:
            raise ValueError(f"{name} must be at least 1, got {value!r}")
    src = load_source(source)
    with _reader(src) as reader:
        if reader.width * reader.height > max_total_pixels:  # refuse before decoding anything
            raise InvalidInputError(
                f"{src.description} has frames of {reader.width}x{reader.height}, larger than the "
                f"limit of {max_total_pixels / 1e6:.0f} megapixels; scale it down first"
            )
        kept = _collect(reader, selector, src, max_total_pixels, max_decoded_frames)
        if not kept.frames:
            raise InvalidInputError(
                f"{src.description} contains no frames that could be decoded; export or download it again"
            )
        if not kept.stopped:
            reader.check_complete()
        if reader.has_durations:
            fps = len(kept.durations) / sum(kept.durations)
            durations_ms: Optional[List[float]] = [round(d * 1000.0, 3) for d in kept.durations]
        else:
            fps = selector.output_fps(reader.nominal_fps or _estimated_fps(reader))
            durations_ms = None
        return DecodedVideo(
            frames=np.stack(kept.frames), fps=fps, durations_ms=durations_ms, source_indices=kept.indices,
            loop=reader.loop, kind=src.kind, rotation=reader.rotation,
        )


@dataclass
class _Kept:
    frames: List[np.ndarray] = field(default_factory=list)
    indices: List[int] = field(default_factory=list)
    durations: List[float] = field(default_factory=list)  # seconds; 0 for video containers
    stopped: bool = False  # max_frames reached before the end of the file


def _collect(reader, selector: FrameSelector, src: Source, max_total_pixels: int, max_decoded_frames: int) -> _Kept:
    kept = _Kept()
    pixels = 0
    for index, raw in enumerate(reader.frames()):
        if index >= max_decoded_frames:
            raise InvalidInputError(
                f"{src.description} is too long: more than {max_decoded_frames} frames would have to be "
                f"decoded; trim it, or set a maximum number of frames"
            )
        decision = selector.offer(raw.time_s)
        if decision == STOP:
            kept.stopped = True
            break
        if decision == SKIP:
            if kept.durations and raw.duration_s:
                kept.durations[-1] += raw.duration_s  # a dropped frame's time belongs to the kept one before it
            continue
        rgb = raw.to_rgb()
        height, width = rgb.shape[:2]
        if kept.frames and rgb.shape != kept.frames[0].shape:
            first_height, first_width = kept.frames[0].shape[:2]
            raise InvalidInputError(
                f"{src.description} changes size from {first_width}x{first_height} to {width}x{height} "
                f"at frame {index}; re-export it at one size"
            )
        pixels += height * width
        if pixels > max_total_pixels:
            raise InvalidInputError(
                f"{src.description} is too long to load: {len(kept.frames) + 1} frames of {width}x{height} "
                f"would exceed the limit of {max_total_pixels / 1e6:.0f} megapixels in total; set a maximum "
                f"number of frames, a stride or a lower frame rate, or trim the video"
            )
        kept.frames.append(rgb)
        kept.indices.append(index)
        kept.durations.append(raw.duration_s or 0.0)
    return kept


@contextlib.contextmanager
def _reader(src: Source) -> Iterator[Union[AvReader, PillowReader]]:
    if src.kind in AV_KINDS:
        with open_container(src) as container:
            yield AvReader(container, src)
    else:
        with open_image(src) as image:
            yield PillowReader(image, src)


def _estimated_fps(reader: AvReader) -> float:
    if reader.decoded > 1 and reader.last_time_s:
        return (reader.decoded - 1) / reader.last_time_s
    return _FALLBACK_FPS
