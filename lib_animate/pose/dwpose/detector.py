"""DWPose: YOLOX-L finds people, RTMPose-L places 133 whole-body keypoints on each, and the
result becomes an OpenPose-layout :class:`PoseFrame` ready for :func:`render_pose`.

Follows the annotator that produced Animate Anyone's training poses: the frame goes in as BGR;
when no person is found, the pose network runs on the whole frame; points scored below 0.3 are
hidden; people are ranked by their mean body score.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

from ...errors import InvalidInputError, WeightsFileError
from ..geometry import is_rgb_image
from ..keypoints import Person, PoseFrame
from . import rtmpose, yolox
from .files import find_dwpose_files
from .runtime import AUTO, OnnxModel
from .wholebody import VISIBLE_SCORE, wholebody_to_person

WHOLEBODY_POINTS = 133


class DWPoseDetector:
    def __init__(
        self,
        detector_path: str,
        pose_path: str,
        *,
        backend: str = AUTO,
        providers: Optional[Sequence[str]] = None,
        threshold: float = VISIBLE_SCORE,
    ):
        """``backend``: 'auto' (onnxruntime when importable, else OpenCV DNN), 'opencv' or
        'onnxruntime'; ``providers``: onnxruntime execution providers (default CUDA, then CPU)."""
        self.detector = OnnxModel(detector_path, backend, providers)
        self.pose = OnnxModel(pose_path, backend, providers)
        self.threshold = threshold

    @classmethod
    def from_folders(
        cls,
        model_dir: Optional[str] = None,
        *,
        webui_root: Optional[str] = None,
        extra_dirs: Iterable[str] = (),
        animate_anyone_dirs: Iterable[str] = (),
        environ: Optional[Mapping[str, str]] = None,
        backend: str = AUTO,
    ) -> "DWPoseDetector":
        """Loads the files :func:`find_dwpose_files` finds (WeightsFileError when it finds none)."""
        files = find_dwpose_files(
            model_dir, webui_root=webui_root, extra_dirs=extra_dirs,
            animate_anyone_dirs=animate_anyone_dirs, environ=environ,
        )
        return cls(files.detector, files.pose, backend=backend)

    @property
    def backend(self) -> str:
        return self.pose.backend

    def find_people(self, image_rgb: np.ndarray) -> np.ndarray:
        """(K, 5) person boxes x1, y1, x2, y2, score in image pixels, best first."""
        return self._find_people(_to_bgr(image_rgb))

    def estimate(self, image_rgb: np.ndarray, box) -> Tuple[np.ndarray, np.ndarray]:
        """133 whole-body keypoints (133, 2) in image pixels and scores (133,) inside ``box``."""
        return self._estimate(_to_bgr(image_rgb), box)

    def detect(self, image_rgb: np.ndarray) -> PoseFrame:
        """Everyone in an H x W x 3 uint8 RGB frame, highest score first."""
        image = _to_bgr(image_rgb)
        h, w = image.shape[:2]
        boxes = self._find_people(image)
        if len(boxes) == 0:
            boxes = np.array([[0.0, 0.0, w, h, 0.0]])
        people: List[Person] = []
        for box in boxes:
            keypoints, scores = self._estimate(image, box)
            people.append(wholebody_to_person(keypoints, scores, (w, h), self.threshold))
        people.sort(key=lambda p: -p.score)
        return PoseFrame(people=tuple(people), canvas_size=(w, h))

    def detect_sequence(
        self, frames: Sequence[np.ndarray], progress: Optional[Callable[[int, int], None]] = None
    ) -> List[PoseFrame]:
        """:meth:`detect` on each frame; ``progress(done, total)`` is called after each (it may
        raise to stop)."""
        poses = []
        for i, frame in enumerate(frames):
            try:
                poses.append(self.detect(frame))
            except InvalidInputError as e:
                raise InvalidInputError(f"pose video frame {i}: {e}") from None
            if progress is not None:
                progress(i + 1, len(frames))
        return poses

    def _find_people(self, image_bgr: np.ndarray) -> np.ndarray:
        tensor, ratio = yolox.detector_input(image_bgr)
        raw = _detector_output(self.detector(tensor), self.detector.path)
        return yolox.person_boxes(raw, ratio)

    def _estimate(self, image_bgr: np.ndarray, box) -> Tuple[np.ndarray, np.ndarray]:
        crop = rtmpose.crop_for_box(box)
        simcc_x, simcc_y = _pose_outputs(self.pose(rtmpose.pose_input(image_bgr, crop)), self.pose.path)
        return rtmpose.decode_simcc(simcc_x[0], simcc_y[0], crop)


def _to_bgr(image_rgb: np.ndarray) -> np.ndarray:
    if not is_rgb_image(image_rgb):
        shape = getattr(image_rgb, "shape", None)
        raise InvalidInputError(f"pose detection needs an H x W x 3 uint8 RGB image, got shape {shape}")
    return cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)


def _detector_output(outputs: Dict[str, np.ndarray], path: str) -> np.ndarray:
    anchors = sum((yolox.INPUT_SIZE // s) ** 2 for s in yolox.STRIDES)
    raw = None
    if "output" in outputs:
        raw = outputs["output"]
    elif len(outputs) == 1:
        raw = next(iter(outputs.values()))
    if raw is None or raw.shape[-2:] != (anchors, 85):
        shapes = {name: tuple(v.shape) for name, v in outputs.items()}
        raise WeightsFileError(
            f"{os.path.basename(path)} gave {shapes}; the YOLOX-L detector gives 'output' of shape "
            f"(1, {anchors}, 85). Is this DWPose's yolox_l.onnx? ({path})"
        )
    return raw[0] if raw.ndim == 3 else raw


def _pose_outputs(outputs: Dict[str, np.ndarray], path: str) -> Tuple[np.ndarray, np.ndarray]:
    x_bins = int(rtmpose.INPUT_WIDTH * rtmpose.SIMCC_SPLIT_RATIO)
    y_bins = int(rtmpose.INPUT_HEIGHT * rtmpose.SIMCC_SPLIT_RATIO)
    expected = {x_bins: None, y_bins: None}
    for value in outputs.values():  # told apart by bin count, as output names may differ by backend
        if value.ndim == 3 and value.shape[:2] == (1, WHOLEBODY_POINTS) and value.shape[2] in expected:
            expected[value.shape[2]] = value
    if expected[x_bins] is None or expected[y_bins] is None:
        shapes = {name: tuple(v.shape) for name, v in outputs.items()}
        raise WeightsFileError(
            f"{os.path.basename(path)} gave {shapes}; the DWPose whole-body model gives simcc_x "
            f"(1, {WHOLEBODY_POINTS}, {x_bins}) and simcc_y (1, {WHOLEBODY_POINTS}, {y_bins}). "
            f"Is this dw-ll_ucoco_384.onnx? ({path})"
        )
    return expected[x_bins], expected[y_bins]
