"""The keypoint data model shared by the JSON reader, the detectors and the renderer.

Coordinates are stored **normalized** to the canvas they were measured on (x / width, y / height),
so a pose can be drawn at any size. Each part is a float64 array of ``(x, y, confidence)`` rows; a
point is *visible* when its confidence is > 0. Readers zero every point they hide (missing, or
below their confidence threshold), so the renderer needs no threshold of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from .skeleton import BODY_POINTS, FACE_POINTS, HAND_POINTS, OPENPOSE_FACE_POINTS


def visible(points: Optional[np.ndarray]) -> np.ndarray:
    """Boolean mask of the visible rows of a part (all False for an absent part)."""
    if points is None:
        return np.zeros(0, dtype=bool)
    return points[:, 2] > 0


def hide_below(points: np.ndarray, threshold: float) -> np.ndarray:
    """A copy with every point whose confidence is below ``threshold`` (or <= 0) set to 0, 0, 0."""
    out = np.array(points, dtype=np.float64, copy=True)
    hidden = (out[:, 2] < threshold) | (out[:, 2] <= 0)
    out[hidden] = 0.0
    return out


def _check_part(name: str, points: Optional[np.ndarray], sizes: Tuple[int, ...]) -> None:
    if points is None:
        return
    if points.ndim != 2 or points.shape[1] != 3 or points.shape[0] not in sizes:
        raise ValueError(f"{name} must have shape (n, 3) with n in {sizes}, got {points.shape}")


@dataclass(frozen=True, eq=False)
class Person:
    """One person: COCO-18 body, optional hands (21 points each) and face (68 or 70 points)."""

    body: np.ndarray  # (18, 3)
    left_hand: Optional[np.ndarray] = None  # (21, 3), the person's left hand
    right_hand: Optional[np.ndarray] = None
    face: Optional[np.ndarray] = None  # (68, 3) or (70, 3)
    # Ranks people; the renderer draws the highest. Default: mean body confidence.
    score: Optional[float] = None

    def __post_init__(self):
        _check_part("body", self.body, (BODY_POINTS,))
        _check_part("left_hand", self.left_hand, (HAND_POINTS,))
        _check_part("right_hand", self.right_hand, (HAND_POINTS,))
        _check_part("face", self.face, (FACE_POINTS, OPENPOSE_FACE_POINTS))
        if self.score is None:
            object.__setattr__(self, "score", float(self.body[:, 2].mean()))

    @property
    def hands(self) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
        return self.left_hand, self.right_hand


@dataclass(frozen=True, eq=False)
class PoseFrame:
    """The people of one frame. ``canvas_size`` is (width, height) of the image the points were
    measured on; None when unknown (normalized input without a canvas size), in which case the
    pose is stretched to whatever canvas it is drawn on."""

    people: Tuple[Person, ...] = field(default_factory=tuple)
    canvas_size: Optional[Tuple[int, int]] = None

    def __post_init__(self):
        object.__setattr__(self, "people", tuple(self.people))

    def top_person(self) -> Optional[Person]:
        """The highest-scoring person (the first one on a tie), or None."""
        if not self.people:
            return None
        return max(self.people, key=lambda p: p.score)
