"""Reading OpenPose / ControlNet pose JSON into :class:`PoseFrame` objects.

Accepted shapes (research/ecosystem.md §3):
  * one frame ``{"people": [...], "canvas_width": W, "canvas_height": H}`` (canvas optional),
  * a list of frames, or ``{"poses": [frame, ...]}`` (ControlNet's /controlnet/detect answer);
  * per person ``pose_keypoints_2d`` as COCO-18 (54 numbers) or BODY_25 (75, mapped to COCO-18),
    ``hand_left_keypoints_2d`` / ``hand_right_keypoints_2d`` (63 numbers each) and
    ``face_keypoints_2d`` (204 or 210 numbers: 68 or 70 points); a missing part may be absent,
    null or ``[]`` (CMU OpenPose writes ``[]`` for parts it did not run).

A frame is taken as normalized when every x and y in it has |v| <= 1 (ControlNet's and the
openpose-editor's rule), otherwise as pixels of its canvas. Missing points are ``0, 0, 0``.
"""

from __future__ import annotations

import json
import math
import numbers
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InvalidInputError
from .keypoints import Person, PoseFrame, hide_below
from .skeleton import BODY25_TO_COCO18, BODY_POINTS

# Points with a lower confidence are hidden. OpenPose's own renderer uses 0.05; ControlNet's reader
# keeps only confidence 1.0, which hides most real OpenPose output.
DEFAULT_CONFIDENCE_THRESHOLD = 0.05

BODY_FIELD = "pose_keypoints_2d"
LEFT_HAND_FIELD = "hand_left_keypoints_2d"
RIGHT_HAND_FIELD = "hand_right_keypoints_2d"
FACE_FIELD = "face_keypoints_2d"

_EXPECTED = {
    BODY_FIELD: "54 numbers (18 COCO points as x, y, confidence) or 75 (BODY_25)",
    LEFT_HAND_FIELD: "63 numbers (21 points as x, y, confidence)",
    RIGHT_HAND_FIELD: "63 numbers (21 points as x, y, confidence)",
    FACE_FIELD: "204 numbers (68 points as x, y, confidence) or 210 (70 points)",
}
_SIZES = {BODY_FIELD: (54, 75), LEFT_HAND_FIELD: (63,), RIGHT_HAND_FIELD: (63,), FACE_FIELD: (204, 210)}


def parse_pose_json(
    data: Any,
    *,
    canvas_size: Optional[Tuple[int, int]] = None,
    threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
) -> List[PoseFrame]:
    """Pose frames from JSON text (str/bytes) or the already-parsed object.

    ``canvas_size`` (width, height) is used for frames without ``canvas_width``/``canvas_height``
    (CMU OpenPose writes none); pixel coordinates need one or the other.
    """
    _check_threshold(threshold)
    if canvas_size is not None:
        canvas_size = _canvas_from_argument(canvas_size)
    if isinstance(data, (str, bytes, bytearray)):
        data = _load_text(data)
    frames = _frame_list(data)
    return [_parse_frame(frame, i, canvas_size, threshold) for i, frame in enumerate(frames)]


def _load_text(text) -> Any:
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidInputError(f"pose JSON: not valid JSON ({e})") from None


def _frame_list(data: Any) -> Sequence[Any]:
    if isinstance(data, dict) and "poses" in data:
        frames = data["poses"]
        if not isinstance(frames, list):
            raise InvalidInputError(
                f"pose JSON 'poses': expected a list of frames, got {_kind(frames)}"
            )
    elif isinstance(data, dict):
        frames = [data]
    elif isinstance(data, list):
        frames = data
    else:
        raise InvalidInputError(
            "pose JSON: expected a frame object with 'people', a list of frames or "
            f"{{\"poses\": [...]}}, got {_kind(data)}"
        )
    if not frames:
        raise InvalidInputError("pose JSON: the sequence has no frames")
    return frames


def _parse_frame(frame: Any, index: int, fallback_canvas, threshold: float) -> PoseFrame:
    where = f"pose JSON frame {index}"
    if not isinstance(frame, dict):
        raise InvalidInputError(f"{where}: expected an object with 'people', got {_kind(frame)}")
    if "people" not in frame:
        raise InvalidInputError(f"{where}: missing 'people' (a list of persons)")
    people = frame["people"]
    if not isinstance(people, list):
        raise InvalidInputError(f"{where} 'people': expected a list of persons, got {_kind(people)}")

    canvas = _canvas_from_frame(frame, where) or fallback_canvas
    raw = [_parse_person(person, f"{where}, person {j}") for j, person in enumerate(people)]
    parts = [part for person in raw for part in person if part is not None]
    normalized = all(np.all(np.abs(part[:, :2]) <= 1.0) for part in parts)
    if not normalized:
        if canvas is None:
            raise InvalidInputError(
                f"{where}: the coordinates are in pixels but the frame has no canvas_width / "
                "canvas_height; give the size of the image the poses were taken from"
            )
        scale = np.array([canvas[0], canvas[1], 1.0])
        raw = [[None if p is None else p / scale for p in person] for person in raw]

    persons = []
    for body, left, right, face in raw:
        persons.append(
            Person(
                body=hide_below(body, threshold),
                left_hand=_optional_part(left, threshold),
                right_hand=_optional_part(right, threshold),
                face=_optional_part(face, threshold),
            )
        )
    return PoseFrame(people=tuple(persons), canvas_size=canvas)


def _optional_part(points: Optional[np.ndarray], threshold: float) -> Optional[np.ndarray]:
    if points is None:
        return None
    points = hide_below(points, threshold)
    return points if np.any(points[:, 2] > 0) else None


def _parse_person(person: Any, where: str) -> List[Optional[np.ndarray]]:
    """[body (18, 3), left hand, right hand, face] in the input's units, before thresholding."""
    if not isinstance(person, dict):
        raise InvalidInputError(f"{where}: expected an object with keypoint lists, got {_kind(person)}")
    body = _part(person, BODY_FIELD, where)
    if body is None:
        body = np.zeros((BODY_POINTS, 3))
    elif len(body) == 25:
        body = body[list(BODY25_TO_COCO18)]
    return [body] + [_part(person, name, where) for name in (LEFT_HAND_FIELD, RIGHT_HAND_FIELD, FACE_FIELD)]


def _part(person: dict, name: str, where: str) -> Optional[np.ndarray]:
    value = person.get(name)
    if value is None or (isinstance(value, list) and not value):
        return None
    where = f"{where}, '{name}'"
    if not isinstance(value, list):
        raise InvalidInputError(f"{where}: expected a flat list of {_EXPECTED[name]}, got {_kind(value)}")
    for k, v in enumerate(value):
        if not _is_number(v):
            raise InvalidInputError(f"{where}[{k}]: expected a finite number, got {v!r}")
    if len(value) not in _SIZES[name]:
        raise InvalidInputError(f"{where}: expected {_EXPECTED[name]}, got {len(value)} numbers")
    return np.asarray(value, dtype=np.float64).reshape(-1, 3)


def _canvas_from_frame(frame: dict, where: str) -> Optional[Tuple[int, int]]:
    width, height = frame.get("canvas_width"), frame.get("canvas_height")
    if width is None and height is None:
        return None
    if width is None or height is None:
        raise InvalidInputError(f"{where}: give both canvas_width and canvas_height, or neither")
    return (
        _positive_int(width, f"{where} 'canvas_width'"),
        _positive_int(height, f"{where} 'canvas_height'"),
    )


def _canvas_from_argument(size) -> Tuple[int, int]:
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise InvalidInputError(f"pose canvas size: expected (width, height), got {size!r}")
    return _positive_int(size[0], "pose canvas width"), _positive_int(size[1], "pose canvas height")


def _positive_int(value: Any, where: str) -> int:
    if _is_number(value) and value > 0 and float(value).is_integer():
        return int(value)
    raise InvalidInputError(f"{where}: expected a positive whole number of pixels, got {value!r}")


def _check_threshold(threshold: Any) -> None:
    if not _is_number(threshold) or not 0.0 <= threshold <= 1.0:
        raise InvalidInputError(f"pose confidence threshold: expected a number in [0, 1], got {threshold!r}")


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) and math.isfinite(v)


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", type(None): "null", bool: "a boolean"}
    return names.get(type(value), type(value).__name__)


def to_pose_json(frames: Sequence[PoseFrame], canvas_size: Optional[Tuple[int, int]] = None) -> List[dict]:
    """Frames as OpenPose / ControlNet JSON objects (a list, one per frame): pixel coordinates of
    ``canvas_width`` x ``canvas_height`` (each frame's own canvas, else ``canvas_size``), hidden
    points as ``0, 0, 0``; :func:`parse_pose_json` reads them back."""
    out = []
    for index, frame in enumerate(frames):
        canvas = frame.canvas_size or canvas_size
        if canvas is None:
            raise ValueError(f"pose frame {index} has no canvas size; give canvas_size")
        scale = np.array([canvas[0], canvas[1], 1.0])
        people = []
        for person in frame.people:
            entry = {}
            for name, part in ((BODY_FIELD, person.body), (LEFT_HAND_FIELD, person.left_hand),
                               (RIGHT_HAND_FIELD, person.right_hand), (FACE_FIELD, person.face)):
                if part is not None:
                    shown = (part[:, 2] > 0)[:, None]
                    entry[name] = [float(v) for v in np.where(shown, part * scale, 0.0).reshape(-1)]
            people.append(entry)
        out.append({"canvas_width": int(canvas[0]), "canvas_height": int(canvas[1]), "people": people})
    return out
