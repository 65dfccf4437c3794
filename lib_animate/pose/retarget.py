"""Pose retargeting: the driving poses take the reference's body proportions.

Work happens in pixels of the canvas the poses will be drawn on (the generation size, after each
source's fit), so lengths and angles are what the model will see. For the top person of each
driving frame:

* **per-bone scale** ``s_b = reference length / driving length`` for every bone of the COCO-18
  tree (rooted at the neck), the driving length measured once, in the first frame where the bone
  is visible; a bone the reference or the driving sequence never shows gets the median of the
  measured scales. Every frame's bone vector is multiplied by its scale, so each bone keeps its
  direction (joint angles unchanged) and its length relative to the measured frame (zoom and
  perspective changes of the driving video survive);
* **root**: the neck (the mid-hip where the neck is missing) is placed by ``T(p) = R + h (p - D)``:
  ``D`` the driving root in the first frame that shows it, ``R`` the reference's root, ``h`` the
  ratio of body heights (neck to mid-hip plus leg length; the median bone scale when either body
  does not show them) -- the first frame's root lands on the reference's, later frames move by the
  driving root's displacement scaled to the reference's size;
* a joint whose parent is missing hangs from its nearest shown ancestor (the bones' scales
  multiplied along the chain); one with no shown ancestor is placed by ``T``;
* **hands** move with their wrist (scaled like the forearm), the **face** with the nose (scaled
  like the neck-nose bone); by ``T`` when that joint is missing;
* missing joints stay missing; other people of a frame are dropped (the renderer draws the top one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InvalidInputError
from .geometry import placement, to_pixels
from .keypoints import Person, PoseFrame

NECK, NOSE = 1, 0
R_WRIST, L_WRIST = 4, 7
R_HIP, L_HIP = 8, 11
# (parent, child) in tree order from the neck: head, arms, legs
BONES: Tuple[Tuple[int, int], ...] = (
    (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
    (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7),
    (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
)
PARENT: Dict[int, int] = {child: parent for parent, child in BONES}
LEGS = ((8, 9, 10), (11, 12, 13))


@dataclass(frozen=True)
class Retargeting:
    """What :func:`retarget` measured: per-bone scales, the height ratio and the root anchors (pixels)."""

    scales: Dict[Tuple[int, int], float]
    height_ratio: float
    driving_root: np.ndarray
    reference_root: np.ndarray

    def place(self, point: np.ndarray) -> np.ndarray:
        """The root map ``T``."""
        return self.reference_root + self.height_ratio * (point - self.driving_root)


def _pixels(points: np.ndarray, size: Optional[Tuple[int, int]], canvas: Tuple[int, int], fit: str) -> np.ndarray:
    return to_pixels(points, placement(size, canvas, fit))


def _shown(points: np.ndarray) -> np.ndarray:
    return points[:, 2] > 0


def _length(xy: np.ndarray, shown: np.ndarray, a: int, b: int) -> Optional[float]:
    if not (shown[a] and shown[b]):
        return None
    length = float(np.linalg.norm(xy[b] - xy[a]))
    return length if length > 0 else None


def _root(xy: np.ndarray, shown: np.ndarray) -> Optional[np.ndarray]:
    if shown[NECK]:
        return xy[NECK]
    if shown[R_HIP] and shown[L_HIP]:
        return (xy[R_HIP] + xy[L_HIP]) / 2
    return None


def _height(xy: np.ndarray, shown: np.ndarray) -> Optional[float]:
    """Neck to mid-hip plus the mean length of the shown legs (hip-knee-ankle)."""
    if not (shown[NECK] and shown[R_HIP] and shown[L_HIP]):
        return None
    torso = float(np.linalg.norm((xy[R_HIP] + xy[L_HIP]) / 2 - xy[NECK]))
    legs = [sum(np.linalg.norm(xy[b] - xy[a]) for a, b in zip(leg, leg[1:])) for leg in LEGS if shown[list(leg)].all()]
    return torso + float(np.mean(legs)) if legs and torso > 0 else None


def measure(driving: Sequence[Tuple[np.ndarray, np.ndarray]], reference: Tuple[np.ndarray, np.ndarray]) -> Retargeting:
    """Scales and anchors from the driving frames' and the reference's ``(pixels, shown)``."""
    ref_xy, ref_shown = reference
    scales: Dict[Tuple[int, int], float] = {}
    for bone in BONES:
        ref_length = _length(ref_xy, ref_shown, *bone)
        drive_length = next((length for xy, shown in driving for length in [_length(xy, shown, *bone)] if length), None)
        if ref_length and drive_length:
            scales[bone] = ref_length / drive_length
    median = float(np.median(list(scales.values()))) if scales else 1.0
    for bone in BONES:
        scales.setdefault(bone, median)
    drive_height = next((h for xy, shown in driving for h in [_height(xy, shown)] if h), None)
    ref_height = _height(ref_xy, ref_shown)
    height_ratio = ref_height / drive_height if ref_height and drive_height else median
    driving_root = next((r for xy, shown in driving for r in [_root(xy, shown)] if r is not None), None)
    reference_root = _root(ref_xy, ref_shown)
    if reference_root is None:
        raise InvalidInputError("the reference pose shows neither the neck nor both hips, so the driving poses "
                                "cannot be placed on it; give a reference pose with the upper body")
    if driving_root is None:
        driving_root = reference_root  # no frame shows a root: T only scales about the reference's root
    return Retargeting(scales, float(height_ratio), np.asarray(driving_root, float), np.asarray(reference_root, float))


def _retarget_body(xy: np.ndarray, shown: np.ndarray, r: Retargeting) -> np.ndarray:
    out = np.zeros_like(xy)
    placed = np.zeros(len(xy), dtype=bool)
    root = _root(xy, shown)
    if shown[NECK]:
        out[NECK], placed[NECK] = r.place(xy[NECK]), True
    for parent, child in BONES:
        if not shown[child]:
            continue
        scale, ancestor = r.scales[(parent, child)], parent
        while ancestor in PARENT and not placed[ancestor]:
            scale *= r.scales[(PARENT[ancestor], ancestor)]
            ancestor = PARENT[ancestor]
        if placed[ancestor]:
            out[child] = out[ancestor] + scale * (xy[child] - xy[ancestor])
        elif root is not None and child in (R_HIP, L_HIP):  # no neck: the hips hang from the mid-hip root
            out[child] = r.place(root) + r.scales[(NECK, child)] * (xy[child] - root)
        else:
            out[child] = r.place(xy[child])
        placed[child] = True
    return out


def _carried(points: Optional[np.ndarray], to_px, from_px, anchor: int, bone: Tuple[int, int],
             xy: np.ndarray, shown: np.ndarray, new_xy: np.ndarray, r: Retargeting) -> Optional[np.ndarray]:
    if points is None:
        return None
    p = to_px(points)
    if shown[anchor]:
        moved = new_xy[anchor] + r.scales[bone] * (p - xy[anchor])
    else:
        moved = r.place(p)
    out = np.array(points, dtype=np.float64, copy=True)
    keep = points[:, 2] > 0
    out[keep, :2] = from_px(moved[keep])
    return out


def retarget(
    driving: Sequence[PoseFrame],
    reference: Person,
    reference_size: Optional[Tuple[int, int]],
    canvas: Tuple[int, int],
    fit: str,
) -> Tuple[List[PoseFrame], Retargeting]:
    """The driving frames with the reference's proportions, on ``canvas`` (normalized to it).

    ``reference_size`` is the canvas the reference's points were measured on (the reference image's
    size); each driving frame uses its own ``canvas_size``; both are fitted to ``canvas`` with ``fit``.
    """
    width, height = canvas
    tops = [frame.top_person() for frame in driving]
    bodies = [(_pixels(p.body, f.canvas_size, canvas, fit), _shown(p.body)) if p is not None else None
              for p, f in zip(tops, driving)]
    ref = (_pixels(reference.body, reference_size, canvas, fit), _shown(reference.body))
    r = measure([b for b in bodies if b is not None], ref)
    out: List[PoseFrame] = []
    for frame, person, body in zip(driving, tops, bodies):
        if person is None:
            out.append(PoseFrame(people=(), canvas_size=(width, height)))
            continue
        xy, shown = body
        new_xy = _retarget_body(xy, shown, r)
        to_px = lambda points, size=frame.canvas_size: _pixels(points, size, canvas, fit)  # noqa: E731
        from_px = lambda px: px / (width, height)  # noqa: E731
        new_body = np.array(person.body, dtype=np.float64, copy=True)
        new_body[shown, :2] = from_px(new_xy[shown])
        out.append(PoseFrame(people=(Person(
            body=new_body,
            left_hand=_carried(person.left_hand, to_px, from_px, L_WRIST, (6, 7), xy, shown, new_xy, r),
            right_hand=_carried(person.right_hand, to_px, from_px, R_WRIST, (3, 4), xy, shown, new_xy, r),
            face=_carried(person.face, to_px, from_px, NOSE, (1, 0), xy, shown, new_xy, r),
            score=person.score,
        ),), canvas_size=(width, height)))
    return out, r
