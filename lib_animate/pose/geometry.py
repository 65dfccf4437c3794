"""Fitting a source canvas (a video frame, a JSON pose canvas) to the generation size W x H.

``resize`` squashes the source to W x H (what the reference pipeline does with pose videos);
``letterbox`` keeps the aspect ratio, centres the scaled source and pads with black. Images and
keypoints use the same integer :class:`Placement`, so a detected pose lands exactly on its frame.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

from ..errors import InvalidInputError

RESIZE = "resize"
LETTERBOX = "letterbox"
FIT_MODES = (RESIZE, LETTERBOX)


@dataclass(frozen=True)
class Placement:
    """The rectangle of the target canvas that the whole source is scaled into."""

    x: int
    y: int
    width: int
    height: int


def is_rgb_image(image) -> bool:
    """True for an H x W x 3 uint8 array, the one image type this package takes."""
    return (
        isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    )


def check_size(width, height, what: str = "output size") -> Tuple[int, int]:
    for name, v in (("width", width), ("height", height)):
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1:
            raise InvalidInputError(f"{what}: {name} must be a positive whole number, got {v!r}")
    return int(width), int(height)


def check_fit(fit: str) -> str:
    if fit not in FIT_MODES:
        raise InvalidInputError(f"fit mode must be one of {FIT_MODES}, got {fit!r}")
    return fit


def placement(src_size: Optional[Tuple[int, int]], dst_size: Tuple[int, int], fit: str) -> Placement:
    """Where a ``src_size`` (width, height) canvas goes on ``dst_size``; an unknown source size
    (None) always fills the target."""
    check_fit(fit)
    dst_w, dst_h = dst_size
    if fit == RESIZE or src_size is None:
        return Placement(0, 0, dst_w, dst_h)
    src_w, src_h = src_size
    scale = min(dst_w / src_w, dst_h / src_h)
    w = min(dst_w, max(1, int(round(src_w * scale))))
    h = min(dst_h, max(1, int(round(src_h * scale))))
    return Placement((dst_w - w) // 2, (dst_h - h) // 2, w, h)


def to_pixels(points: np.ndarray, place: Placement) -> np.ndarray:
    """(n, 2) pixel coordinates on the target canvas of normalized (n, >=2) points."""
    xy = np.asarray(points, dtype=np.float64)[:, :2]
    return xy * (place.width, place.height) + (place.x, place.y)


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """PIL's Lanczos, as the reference pipeline resizes pose frames (diffusers' image processor with
    ``resample="lanczos"``); OpenCV's area / linear only for what PIL cannot hold."""
    from PIL import Image

    if image.dtype == np.uint8 and (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4))):
        lanczos = getattr(Image, "Resampling", Image).LANCZOS
        squeezed = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
        out = np.asarray(Image.fromarray(squeezed).resize((width, height), resample=lanczos))
        return out[:, :, None] if squeezed is not image else out
    shrinking = width <= image.shape[1] and height <= image.shape[0]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def fit_image(image: np.ndarray, width: int, height: int, fit: str = RESIZE) -> np.ndarray:
    """``image`` (H x W x C uint8) scaled onto a black ``width`` x ``height`` canvas."""
    check_size(width, height)
    src_h, src_w = image.shape[:2]
    place = placement((src_w, src_h), (width, height), fit)
    if (place.width, place.height) == (src_w, src_h):
        scaled = image
    else:
        scaled = _resize(image, place.width, place.height)
    if (place.width, place.height) == (width, height):
        return np.ascontiguousarray(scaled)
    canvas = np.zeros((height, width) + image.shape[2:], dtype=image.dtype)
    canvas[place.y : place.y + place.height, place.x : place.x + place.width] = scaled
    return canvas
