"""Choosing which decoded frames to keep, one frame at a time, while decoding.

Three steps, in this order:

1. ``target_fps``: keep the first frame at or after each tick of a ``target_fps`` clock
   (frame times come from the file). Only ever drops frames: a target above the source rate
   keeps every frame.
2. ``stride``: of the frames step 1 kept, keep every ``stride``-th, starting with the first.
3. ``max_frames``: stop once that many are kept.

The first frame is always kept. Deciding per frame lets the decoder skip colour conversion of
dropped frames and stop reading at ``max_frames``.
"""

import math
import numbers
from typing import Optional

from lib_animate.errors import InvalidInputError

KEEP, SKIP, STOP = "keep", "skip", "stop"

# Frame times are rounded to the container's clock (GIF: 10 ms); a frame this close before a
# tick counts as on it.
_TIME_TOLERANCE_S = 1e-3


class FrameSelector:
    def __init__(self, stride: int = 1, target_fps: Optional[float] = None, max_frames: Optional[int] = None):
        if isinstance(stride, bool) or not isinstance(stride, numbers.Integral) or stride < 1:
            raise InvalidInputError(f"stride must be a whole number of 1 or more, got {stride!r}")
        if target_fps is not None and (
            isinstance(target_fps, bool) or not isinstance(target_fps, numbers.Real)
            or not math.isfinite(target_fps) or target_fps <= 0
        ):
            raise InvalidInputError(f"target_fps must be a number above 0 (or empty for the source rate), got {target_fps!r}")
        if max_frames is not None and (
            isinstance(max_frames, bool) or not isinstance(max_frames, numbers.Integral) or max_frames < 1
        ):
            raise InvalidInputError(f"max_frames must be a whole number of 1 or more (or empty for all), got {max_frames!r}")
        self.stride = int(stride)
        self.target_fps = None if target_fps is None else float(target_fps)
        self.max_frames = None if max_frames is None else int(max_frames)
        self.kept = 0
        self._next_tick = 0  # index of the target_fps tick the next kept frame must reach
        self._passed_resampling = 0

    def offer(self, time_s: float) -> str:
        """KEEP, SKIP or STOP for the next frame, which starts ``time_s`` after the first."""
        if self.target_fps is not None:
            position = (time_s + _TIME_TOLERANCE_S) * self.target_fps
            if position < self._next_tick:
                return SKIP
            self._next_tick = math.floor(position) + 1
        passed = self._passed_resampling
        self._passed_resampling += 1
        if passed % self.stride:
            return SKIP
        if self.max_frames is not None and self.kept >= self.max_frames:
            return STOP
        self.kept += 1
        return KEEP

    def output_fps(self, source_fps: float) -> float:
        """Nominal rate of the kept frames of a constant-rate source."""
        rate = source_fps if self.target_fps is None else min(source_fps, self.target_fps)
        return rate / self.stride
