"""Running one ONNX graph: OpenCV's DNN module (always there in the webui), or onnxruntime when
it is importable (faster, and what Moore-AnimateAnyone used to make its training poses)."""

from __future__ import annotations

import os
from typing import Dict, Optional, Sequence

import cv2
import numpy as np

from ...errors import WeightsFileError

AUTO = "auto"
OPENCV = "opencv"
ONNXRUNTIME = "onnxruntime"
BACKENDS = (AUTO, OPENCV, ONNXRUNTIME)
_PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def _import_onnxruntime():
    try:
        import onnxruntime
    except Exception:  # a broken install (missing DLLs) must not break the OpenCV path
        return None
    return onnxruntime


def onnxruntime_available() -> bool:
    return _import_onnxruntime() is not None


class OnnxModel:
    """One single-input ONNX graph; calling it with an NCHW float32 array gives its outputs by
    name."""

    def __init__(self, path: str, backend: str = AUTO, providers: Optional[Sequence[str]] = None):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.path = path
        ort = _import_onnxruntime() if backend in (AUTO, ONNXRUNTIME) else None
        if backend == ONNXRUNTIME and ort is None:
            raise ImportError("backend 'onnxruntime' was asked for but onnxruntime cannot be imported")
        self.backend = ONNXRUNTIME if ort is not None else OPENCV
        try:
            if self.backend == ONNXRUNTIME:
                available = ort.get_available_providers()
                chosen = list(providers) if providers else [p for p in _PREFERRED_PROVIDERS if p in available]
                self._session = ort.InferenceSession(path, providers=chosen)
                self._input = self._session.get_inputs()[0].name
                self._outputs = [o.name for o in self._session.get_outputs()]
            else:
                # OpenCV's own CPU backend is the default; OpenCV 5 warns when it is set explicitly.
                self._net = cv2.dnn.readNetFromONNX(path)
        except Exception as e:
            raise WeightsFileError(
                f"{os.path.basename(path)} could not be loaded as an ONNX model by {self.backend} "
                f"({type(e).__name__}: {e}). The file may be incomplete; it was read from {path}"
            ) from None

    def __call__(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        try:
            if self.backend == ONNXRUNTIME:
                return dict(zip(self._outputs, self._session.run(self._outputs, {self._input: x})))
            self._net.setInput(x)
            names = list(self._net.getUnconnectedOutLayersNames())
            return dict(zip(names, self._net.forward(names)))
        except Exception as e:
            raise WeightsFileError(
                f"{os.path.basename(self.path)} failed on an input of shape {tuple(x.shape)} "
                f"({type(e).__name__}: {e}); is it the DWPose model of that name? ({self.path})"
            ) from None
