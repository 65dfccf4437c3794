"""COCO-WholeBody (133 points, the RTMPose output) to the OpenPose layout of :class:`Person`.

COCO-WholeBody order: 0-16 body (COCO-17: nose, L/R eye, L/R ear, L/R shoulder, L/R elbow,
L/R wrist, L/R hip, L/R knee, L/R ankle), 17-22 feet, 23-90 face (68), 91-111 left hand,
112-132 right hand. OpenPose-18 adds a neck, synthesised at the shoulders' midpoint and shown
only when both shoulders are.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from ..keypoints import Person, hide_below

# For each OpenPose-18 joint, its COCO-17 index (None: the synthesised neck).
OPENPOSE_FROM_COCO17 = (0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
LEFT_SHOULDER, RIGHT_SHOULDER = 5, 6
FACE = slice(23, 91)
LEFT_HAND = slice(91, 112)
RIGHT_HAND = slice(112, 133)
VISIBLE_SCORE = 0.3  # DWPose hides points scored below this


def wholebody_to_person(
    keypoints: np.ndarray, scores: np.ndarray, image_size: Tuple[int, int], threshold: float = VISIBLE_SCORE
) -> Person:
    """``keypoints`` (133, 2) in pixels of an image of ``image_size`` (width, height) and their
    ``scores`` (133,) as one normalized Person. Its score is the mean of the 18 body scores before
    hiding (the neck counting 1 or 0): the rule by which the reference picks the person to draw."""
    points = np.concatenate(
        [np.asarray(keypoints, np.float64), np.asarray(scores, np.float64)[:, None]], axis=1
    )
    points[:, :2] /= image_size

    shoulders = points[[LEFT_SHOULDER, RIGHT_SHOULDER]]
    neck = np.array([*shoulders[:, :2].mean(axis=0), float(np.all(shoulders[:, 2] > threshold))])
    body = np.stack([neck if i is None else points[i] for i in OPENPOSE_FROM_COCO17])

    return Person(
        body=hide_below(body, threshold),
        left_hand=_part(points[LEFT_HAND], threshold),
        right_hand=_part(points[RIGHT_HAND], threshold),
        face=_part(points[FACE], threshold),
        score=float(body[:, 2].mean()),
    )


def _part(points: np.ndarray, threshold: float):
    points = hide_below(points, threshold)
    return points if np.any(points[:, 2] > 0) else None
