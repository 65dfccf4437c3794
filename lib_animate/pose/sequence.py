"""Pose sequences: choosing which frames to use, and fitting them to the generation size.

Frame choice happens in a fixed order: ``stride`` (every k-th frame), then ``target_fps``
(resampling by time: output frame j shows the source frame on screen at time j / target_fps, so
lower rates drop frames and higher rates repeat them), then ``max_frames`` (keep the first n).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InvalidInputError
from .geometry import RESIZE, check_fit, check_size, fit_image, is_rgb_image
from .keypoints import PoseFrame
from .render import RenderOptions, render_pose


@dataclass(frozen=True)
class PoseClip:
    """Frames ready for the pose guider: each ``height`` x ``width`` x 3 uint8 RGB."""

    frames: List[np.ndarray]
    fps: float
    source_indices: List[int]  # which input frame each output frame came from


def sample_indices(
    count: int,
    fps: float,
    *,
    stride: int = 1,
    target_fps: Optional[float] = None,
    max_frames: Optional[int] = None,
) -> Tuple[List[int], float]:
    """The source frame indices to use out of ``count`` frames at ``fps``, and the output fps."""
    if count < 1:
        raise InvalidInputError("the pose sequence has no frames")
    fps = _positive_number(fps, "pose video fps")
    if not isinstance(stride, numbers.Integral) or isinstance(stride, bool) or stride < 1:
        raise InvalidInputError(f"frame stride must be a whole number >= 1, got {stride!r}")
    if max_frames is not None and (
        not isinstance(max_frames, numbers.Integral) or isinstance(max_frames, bool) or max_frames < 1
    ):
        raise InvalidInputError(f"max frames must be a whole number >= 1 (or unset), got {max_frames!r}")

    indices = list(range(0, count, int(stride)))
    out_fps = fps / stride
    if target_fps is not None:
        target_fps = _positive_number(target_fps, "target fps")
        step = out_fps / target_fps  # source frames per output frame
        # j * step < len(indices) keeps every output time inside the clip; the epsilon keeps
        # float error (e.g. 2.9999999 for 3) from picking the previous frame.
        n = max(1, math.ceil(len(indices) / step - 1e-9))
        indices = [indices[min(len(indices) - 1, int(math.floor(j * step + 1e-9)))] for j in range(n)]
        out_fps = target_fps
    if max_frames is not None:
        indices = indices[: int(max_frames)]
    return indices, out_fps


def prepare_pose_video(
    frames: Sequence[np.ndarray],
    fps: float,
    width: int,
    height: int,
    *,
    fit: str = RESIZE,
    stride: int = 1,
    target_fps: Optional[float] = None,
    max_frames: Optional[int] = None,
) -> PoseClip:
    """Already-rendered pose frames (H x W x 3 uint8, all one size) sampled and fitted to
    ``width`` x ``height``."""
    width, height = check_size(width, height, "generation size")
    check_fit(fit)
    _check_frames(frames)
    indices, out_fps = sample_indices(
        len(frames), fps, stride=stride, target_fps=target_fps, max_frames=max_frames
    )
    fitted = [fit_image(frames[i], width, height, fit) for i in indices]
    return PoseClip(frames=fitted, fps=out_fps, source_indices=indices)


def render_pose_sequence(
    poses: Sequence[PoseFrame],
    fps: float,
    width: int,
    height: int,
    *,
    fit: str = RESIZE,
    stride: int = 1,
    target_fps: Optional[float] = None,
    max_frames: Optional[int] = None,
    options: RenderOptions = RenderOptions(),
) -> PoseClip:
    """Keypoint frames (from JSON or a detector) sampled, then drawn at ``width`` x ``height``."""
    width, height = check_size(width, height, "generation size")
    check_fit(fit)
    indices, out_fps = sample_indices(
        len(poses), fps, stride=stride, target_fps=target_fps, max_frames=max_frames
    )
    images = [render_pose(poses[i], width, height, fit=fit, options=options) for i in indices]
    return PoseClip(frames=images, fps=out_fps, source_indices=indices)


def _check_frames(frames: Sequence[np.ndarray]) -> None:
    if not isinstance(frames, (list, tuple)) or not frames:
        raise InvalidInputError("pose video: no frames were given")
    first_shape = None
    for i, frame in enumerate(frames):
        if not is_rgb_image(frame):
            shape = getattr(frame, "shape", None)
            dtype = getattr(frame, "dtype", type(frame).__name__)
            raise InvalidInputError(
                f"pose video frame {i}: expected an H x W x 3 uint8 RGB array, got shape {shape} of {dtype}"
            )
        if first_shape is None:
            first_shape = frame.shape
        elif frame.shape != first_shape:
            raise InvalidInputError(
                f"pose video frame {i}: size {frame.shape[1]}x{frame.shape[0]} differs from frame 0's "
                f"{first_shape[1]}x{first_shape[0]}; all frames must have one size"
            )


def _positive_number(value, what: str) -> float:
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    raise InvalidInputError(f"{what} must be a positive number, got {value!r}")
