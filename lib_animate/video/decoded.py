"""What decoding produces: frames one at a time from a reader, and the selected clip."""

from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np


@dataclass
class RawFrame:
    """One decoded source frame; ``to_rgb`` is only valid until the reader moves on."""

    time_s: float  # start, relative to the first frame
    duration_s: Optional[float]  # as stored in the file; None for video containers
    to_rgb: Callable[[], np.ndarray]  # upright H x W x 3 uint8


@dataclass
class DecodedVideo:
    """The selected frames of a video or animation.

    frames          N x H x W x 3 uint8 RGB, upright (rotation metadata applied)
    fps             playback rate of these frames (after stride / target_fps)
    durations_ms    per returned frame, for GIF/WebP/APNG (a dropped frame's time goes to the
                    kept frame before it); None for video containers, which have a fixed rate
    source_indices  index in the file of each returned frame
    loop            plays as stored, 0 = forever (GIF/WebP/APNG); None for videos and stills
    kind            "mp4" (MP4/MOV), "matroska" (WebM/MKV), "gif", "webp" or "png"
    rotation        degrees counter-clockwise that were applied to make the frames upright
    """

    frames: np.ndarray
    fps: float
    durations_ms: Optional[List[float]]
    source_indices: List[int]
    loop: Optional[int]
    kind: str
    rotation: int = 0
