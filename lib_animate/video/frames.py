"""Checking the frames handed to an encoder.

Encoders take a sequence of ``H x W x 3`` uint8 arrays or PIL images, all the same size. Wrong
input here is a programming error (the pipeline produced it), so it raises ``ValueError``.
"""

from typing import List, Sequence, Union

import numpy as np
from PIL import Image

Frame = Union[np.ndarray, Image.Image]


def as_rgb_arrays(frames: Sequence[Frame]) -> List[np.ndarray]:
    """The frames as a list of contiguous ``H x W x 3`` uint8 arrays (PIL images are converted)."""
    if isinstance(frames, np.ndarray) and frames.ndim == 4:
        frames = list(frames)
    arrays = []
    for i, frame in enumerate(frames):
        if isinstance(frame, Image.Image):
            frame = np.asarray(frame.convert("RGB"))
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(
                f"frame {i} has shape {frame.shape} and dtype {frame.dtype}; "
                f"expected H x W x 3 uint8 (RGB)"
            )
        arrays.append(np.ascontiguousarray(frame))
    if not arrays:
        raise ValueError("no frames to encode")
    size = arrays[0].shape[:2]
    for i, frame in enumerate(arrays):
        if frame.shape[:2] != size:
            raise ValueError(
                f"frame {i} is {frame.shape[1]}x{frame.shape[0]} but frame 0 is {size[1]}x{size[0]}; "
                f"all frames of a clip must have the same size"
            )
    return arrays


def pad_to_even(frame: np.ndarray) -> np.ndarray:
    """Add one row and/or column, copied from the last one, when the height or width is odd.

    H.264 with 4:2:0 chroma needs even sizes. Padding by repeating the edge keeps every source
    pixel and the added line is invisible; the video is then at most one pixel wider/taller.
    """
    height, width = frame.shape[:2]
    pad_h, pad_w = height % 2, width % 2
    if not (pad_h or pad_w):
        return frame
    return np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
