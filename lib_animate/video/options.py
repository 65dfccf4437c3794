"""Encoder settings as plain data, checked once when they are made."""

import math
import numbers
from dataclasses import dataclass
from typing import Optional

from lib_animate.errors import InvalidInputError

X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
)


@dataclass(frozen=True)
class EncodeOptions:
    """How to write a clip. Each format reads the fields it uses and ignores the rest.

    fps           frames per second (all formats; GIF/WebP store it as per-frame durations)
    loop          GIF/WebP: how many times the animation plays, 0 = forever
    infotext      generation parameters stored in the file (every format), or None
    mp4_crf       H.264 constant rate factor, 0 (lossless) .. 51; 18 looks visually lossless
    mp4_preset    x264 speed/size trade-off, "ultrafast" .. "veryslow"
    webm_crf      VP9 constant quality, 0 .. 63 (lower is better)
    webp_quality  0 .. 100 (for lossless: compression effort)
    webp_lossless lossless WebP
    webp_method   0 (fastest) .. 6 (smallest)
    """

    fps: float = 8.0
    loop: int = 0
    infotext: Optional[str] = None
    mp4_crf: int = 18
    mp4_preset: str = "medium"
    webm_crf: int = 30
    webp_quality: int = 90
    webp_lossless: bool = False
    webp_method: int = 4

    def __post_init__(self):
        fps = self.fps
        if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps) or fps <= 0:
            raise InvalidInputError(f"fps must be a number above 0, got {fps!r}")
        # Frozen dataclass: store plain Python numbers (numpy scalars would leak into encoders).
        object.__setattr__(self, "fps", float(fps))
        for name, low, high in (("loop", 0, 65535), ("mp4_crf", 0, 51), ("webm_crf", 0, 63),
                                ("webp_quality", 0, 100), ("webp_method", 0, 6)):
            object.__setattr__(self, name, _checked_int(name, getattr(self, name), low, high))
        object.__setattr__(self, "webp_lossless", bool(self.webp_lossless))
        if self.mp4_preset not in X264_PRESETS:
            raise InvalidInputError(f"mp4_preset must be one of {', '.join(X264_PRESETS)}; got {self.mp4_preset!r}")
        if self.infotext is not None and not isinstance(self.infotext, str):
            raise InvalidInputError(f"infotext must be text, got {type(self.infotext).__name__}")


def _checked_int(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise InvalidInputError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    return int(value)
