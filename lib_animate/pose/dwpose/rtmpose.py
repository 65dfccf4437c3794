"""RTMPose whole-body pose around ``dw-ll_ucoco_384.onnx`` (input ``input`` 1x3x384x288, outputs
``simcc_x`` 1x133x576 and ``simcc_y`` 1x133x768): the top-down crop and the SimCC decoding,
written from the mmpose / DWPose conventions.

Crop: the person box grown by 1.25, then widened or heightened to the input's 3:4 aspect, mapped
onto the 288 x 384 input by a scale-and-shift (no rotation), bilinear, black outside the image;
pixels normalised per channel with the ImageNet mean/std *in the listed order on the BGR image*,
exactly as the DWPose annotator that made the Animate Anyone training poses did.
SimCC: each keypoint has one score per x bin and per y bin, 2 bins per input pixel; the location
is the best bin / 2, the score is the smaller of the two best values (<= 0 means no location).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import cv2
import numpy as np

INPUT_WIDTH = 288
INPUT_HEIGHT = 384
SIMCC_SPLIT_RATIO = 2.0
BOX_PADDING = 1.25
MEAN = np.array([123.675, 116.28, 103.53])
STD = np.array([58.395, 57.12, 57.375])


@dataclass(frozen=True)
class Crop:
    """The image region fed to the pose network: centre (x, y) and size (w, h) in image pixels,
    with w / h == INPUT_WIDTH / INPUT_HEIGHT."""

    center: Tuple[float, float]
    size: Tuple[float, float]


def crop_for_box(box) -> Crop:
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    w, h = (x2 - x1) * BOX_PADDING, (y2 - y1) * BOX_PADDING
    aspect = INPUT_WIDTH / INPUT_HEIGHT
    if w > h * aspect:
        h = w / aspect
    else:
        w = h * aspect
    return Crop(center=((x1 + x2) / 2, (y1 + y2) / 2), size=(w, h))


def crop_matrix(crop: Crop) -> np.ndarray:
    """2x3 affine map from image pixels to network-input pixels."""
    s = INPUT_WIDTH / crop.size[0]
    cx, cy = crop.center
    return np.array([[s, 0.0, INPUT_WIDTH / 2 - s * cx], [0.0, s, INPUT_HEIGHT / 2 - s * cy]])


def pose_input(image_bgr: np.ndarray, crop: Crop) -> np.ndarray:
    """The normalised 1x3x384x288 float32 network input for ``crop``."""
    patch = cv2.warpAffine(image_bgr, crop_matrix(crop), (INPUT_WIDTH, INPUT_HEIGHT), flags=cv2.INTER_LINEAR)
    patch = (patch.astype(np.float64) - MEAN) / STD
    return patch.transpose(2, 0, 1)[None].astype(np.float32)


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray, crop: Crop) -> Tuple[np.ndarray, np.ndarray]:
    """Keypoints (K, 2) in image pixels and scores (K,) from one person's SimCC vectors
    ``simcc_x`` (K, 576) and ``simcc_y`` (K, 768)."""
    simcc_x = simcc_x.reshape(-1, simcc_x.shape[-1])
    simcc_y = simcc_y.reshape(-1, simcc_y.shape[-1])
    locs = np.stack([simcc_x.argmax(axis=1), simcc_y.argmax(axis=1)], axis=1).astype(np.float64)
    scores = np.minimum(simcc_x.max(axis=1), simcc_y.max(axis=1)).astype(np.float64)
    locs[scores <= 0] = -1
    input_xy = locs / SIMCC_SPLIT_RATIO
    # Inverse of crop_matrix: input pixel -> image pixel.
    size, center = np.asarray(crop.size), np.asarray(crop.center)
    return input_xy / (INPUT_WIDTH, INPUT_HEIGHT) * size + center - size / 2, scores
