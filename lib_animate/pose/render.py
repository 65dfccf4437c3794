"""Drawing poses the way the Animate Anyone pose guider saw them in training (DWPose style).

Black canvas; the 17 body limbs as filled ellipses (half-width 4 px) in the OpenPose colours, the
whole limb layer at 0.6 intensity; the 18 joints as radius-4 dots in full colour; per hand 20
edges as 2 px lines in rainbow colours with radius-4 blue dots; the face as radius-3 white dots
(68 points: OpenPose's two pupil points were never in the training renders); feet are not drawn.
Coordinates are truncated to whole pixels, as the reference renderer does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import cv2
import numpy as np

from .geometry import RESIZE, Placement, check_size, placement, to_pixels
from .keypoints import Person, PoseFrame, visible
from .skeleton import (
    BODY_COLOURS, BODY_LIMBS, FACE_DOT_COLOUR, FACE_DOT_RADIUS, FACE_POINTS, HAND_EDGE_COLOURS,
    HAND_EDGES, HAND_JOINT_COLOUR, HAND_JOINT_RADIUS, HAND_LINE_WIDTH, JOINT_RADIUS,
    LIMB_HALF_WIDTH, LIMB_INTENSITY,
)


@dataclass(frozen=True)
class RenderOptions:
    hands: bool = True
    face: bool = True  # the paper used body + hands; face dots can distort faces (Moore issue #11)
    all_people: bool = False  # False: only the highest-scoring person, as in training


def render_pose(
    frame: PoseFrame, width: int, height: int, *, fit: str = RESIZE, options: RenderOptions = RenderOptions()
) -> np.ndarray:
    """A ``height`` x ``width`` x 3 uint8 RGB pose image of ``frame``, its canvas fitted to the
    output by ``fit`` ('resize' or 'letterbox')."""
    width, height = check_size(width, height)
    place = placement(frame.canvas_size, (width, height), fit)
    if options.all_people:
        people = list(frame.people)
    else:
        top = frame.top_person()
        people = [] if top is None else [top]
    return draw_people(people, width, height, place, options)


def draw_people(
    people: Iterable[Person], width: int, height: int, place: Placement, options: RenderOptions
) -> np.ndarray:
    people = list(people)
    limit = 4 * max(width, height)  # keeps far off-canvas points inside OpenCV's int range

    def pixels(points: np.ndarray) -> np.ndarray:
        return np.clip(to_pixels(points, place), -limit, limit)

    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for person in people:
        _draw_limbs(canvas, pixels(person.body), visible(person.body))
    # The limb layer is dimmed as a whole before anything else is drawn on top of it.
    canvas = (canvas * LIMB_INTENSITY).astype(np.uint8)
    for person in people:
        _draw_joints(canvas, pixels(person.body), visible(person.body))
    if options.hands:
        for person in people:
            for hand in person.hands:
                if hand is not None:
                    _draw_hand(canvas, pixels(hand), visible(hand))
    if options.face:
        for person in people:
            if person.face is not None:
                face = person.face[:FACE_POINTS]
                _draw_dots(canvas, pixels(face), visible(face), FACE_DOT_RADIUS, FACE_DOT_COLOUR)
    return canvas


def _px(v: float) -> int:
    # Truncate like the reference (int() of a positive float); the epsilon keeps 2.9999999999
    # (a float round trip of 3) on pixel 3.
    return int(math.floor(v + 1e-6))


def _draw_limbs(canvas: np.ndarray, xy: np.ndarray, shown: np.ndarray) -> None:
    for (a, b), colour in zip(BODY_LIMBS, BODY_COLOURS):
        if not (shown[a] and shown[b]):
            continue
        (xa, ya), (xb, yb) = xy[a], xy[b]
        length = math.hypot(xa - xb, ya - yb)
        angle = math.degrees(math.atan2(ya - yb, xa - xb))
        polygon = cv2.ellipse2Poly(
            (_px((xa + xb) / 2), _px((ya + yb) / 2)),
            (int(length / 2), LIMB_HALF_WIDTH),
            int(angle), 0, 360, 1,
        )
        cv2.fillConvexPoly(canvas, polygon, colour)


def _draw_joints(canvas: np.ndarray, xy: np.ndarray, shown: np.ndarray) -> None:
    for j, colour in enumerate(BODY_COLOURS):
        if shown[j]:
            cv2.circle(canvas, (_px(xy[j, 0]), _px(xy[j, 1])), JOINT_RADIUS, colour, thickness=-1)


def _draw_hand(canvas: np.ndarray, xy: np.ndarray, shown: np.ndarray) -> None:
    for (a, b), colour in zip(HAND_EDGES, HAND_EDGE_COLOURS):
        if shown[a] and shown[b]:
            start = (_px(xy[a, 0]), _px(xy[a, 1]))
            end = (_px(xy[b, 0]), _px(xy[b, 1]))
            cv2.line(canvas, start, end, colour, thickness=HAND_LINE_WIDTH)
    _draw_dots(canvas, xy, shown, HAND_JOINT_RADIUS, HAND_JOINT_COLOUR)


def _draw_dots(canvas: np.ndarray, xy: np.ndarray, shown: np.ndarray, radius: int, colour) -> None:
    for (x, y), show in zip(xy, shown):
        if show:
            cv2.circle(canvas, (_px(x), _px(y)), radius, colour, thickness=-1)
