"""YOLOX person detection around ``yolox_l.onnx`` (input ``images`` 1x3x640x640, output ``output``
1x8400x85): pre-processing and decoding, written from the YOLOX / DWPose conventions.

Input: the BGR image scaled by r = min(640 / h, 640 / w) with bilinear filtering, placed in the
top-left corner of a 640 x 640 canvas filled with 114, as float32 0..255 (no normalisation).
Output rows are anchors, stride 8 (80 x 80), then 16 (40 x 40), then 32 (20 x 20), row-major;
columns: x, y offsets in grid cells, log width, log height (in strides), objectness, 80 class
probabilities (COCO; 0 is person). Score = objectness * class probability.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Tuple

import cv2
import numpy as np

INPUT_SIZE = 640
STRIDES = (8, 16, 32)
PAD_VALUE = 114
PERSON_CLASS = 0
SCORE_THRESHOLD = 0.3  # persons kept (DWPose's annotator)
NMS_IOU_THRESHOLD = 0.45


def detector_input(image_bgr: np.ndarray) -> Tuple[np.ndarray, float]:
    """The 1x3x640x640 float32 network input and the scale r from image to input pixels."""
    h, w = image_bgr.shape[:2]
    r = min(INPUT_SIZE / h, INPUT_SIZE / w)
    new_w, new_h = int(w * r), int(h * r)
    canvas = np.full((INPUT_SIZE, INPUT_SIZE, 3), PAD_VALUE, dtype=np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(image_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return canvas.transpose(2, 0, 1)[None].astype(np.float32), r


@lru_cache(maxsize=4)
def anchor_grid(size: int = INPUT_SIZE, strides: Tuple[int, ...] = STRIDES) -> Tuple[np.ndarray, np.ndarray]:
    """(cell x, cell y) per anchor (N, 2) and its stride (N, 1), in the network's output order."""
    cells, cell_strides = [], []
    for stride in strides:
        n = size // stride
        ys, xs = np.mgrid[0:n, 0:n]
        cells.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        cell_strides.append(np.full((n * n, 1), stride))
    return np.concatenate(cells).astype(np.float64), np.concatenate(cell_strides).astype(np.float64)


def decode(raw: np.ndarray, ratio: float) -> Tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4) as x1, y1, x2, y2 in image pixels and person scores (N,) of every anchor."""
    raw = raw.reshape(-1, raw.shape[-1]).astype(np.float64)
    cells, strides = anchor_grid()
    centre = (raw[:, 0:2] + cells) * strides
    size = np.exp(raw[:, 2:4]) * strides
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1) / ratio
    return boxes, raw[:, 4] * raw[:, 5 + PERSON_CLASS]


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = NMS_IOU_THRESHOLD) -> np.ndarray:
    """Greedy non-maximum suppression; indices kept, best first. Areas count the +1 pixel as in
    the YOLOX demo code, so results match the reference."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        inter_w = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        inter_h = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        inter = inter_w * inter_h
        iou = inter / (areas[best] + areas[rest] - inter)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def person_boxes(raw: np.ndarray, ratio: float, score_threshold: float = SCORE_THRESHOLD) -> np.ndarray:
    """(K, 5) rows of x1, y1, x2, y2, score for the persons found, best first.

    The reference runs class-wise NMS over all classes with scores > 0.1 and then keeps persons
    above 0.3; as NMS never lets a lower score remove a higher one, filtering persons at 0.3 first
    gives the same boxes."""
    boxes, scores = decode(raw, ratio)
    candidates = np.flatnonzero(scores > score_threshold)
    keep = candidates[nms(boxes[candidates], scores[candidates])]
    return np.concatenate([boxes[keep], scores[keep, None]], axis=1)
