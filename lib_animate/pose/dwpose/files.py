"""Finding the two DWPose ONNX files on disk. Nothing here ever downloads.

Search order (the first folder holding a file wins, per file):
  1. the folder the caller passes (the extension's setting),
  2. the folder in the environment variable ``ANIMATE_DWPOSE_DIR``,
  3. ``<webui>/extensions/sd-webui-controlnet/annotator/downloads/openpose/``, where ControlNet's
     ``dw_openpose_full`` preprocessor keeps the same two files,
  4. any further folders the caller passes (e.g. ControlNet's configured annotator path),
  5. Moore-AnimateAnyone's layout: ``<root>/pretrained_weights/DWPose/`` (or ``<root>/DWPose/``
     when the root is the ``pretrained_weights`` folder itself).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, List, Mapping, Optional, Tuple

from ...errors import WeightsFileError

DETECTOR_FILE = "yolox_l.onnx"  # YOLOX-L person detector, 640 x 640 input
POSE_FILE = "dw-ll_ucoco_384.onnx"  # RTMPose-L whole-body (133 points), 288 x 384 input
ENV_VAR = "ANIMATE_DWPOSE_DIR"
CONTROLNET_DOWNLOADS = os.path.join("extensions", "sd-webui-controlnet", "annotator", "downloads", "openpose")


@dataclass(frozen=True)
class DWPoseFiles:
    detector: str
    pose: str


def dwpose_search_dirs(
    model_dir: Optional[str] = None,
    *,
    webui_root: Optional[str] = None,
    extra_dirs: Iterable[str] = (),
    animate_anyone_dirs: Iterable[str] = (),
    environ: Optional[Mapping[str, str]] = None,
) -> List[Tuple[str, str]]:
    """(folder, why it is searched) in search order."""
    environ = os.environ if environ is None else environ
    dirs: List[Tuple[str, str]] = []
    if model_dir:
        dirs.append((model_dir, "DWPose folder setting"))
    if environ.get(ENV_VAR):
        dirs.append((environ[ENV_VAR], f"${ENV_VAR}"))
    if webui_root:
        dirs.append((os.path.join(webui_root, CONTROLNET_DOWNLOADS), "ControlNet annotator downloads"))
    dirs.extend((d, "extra folder") for d in extra_dirs if d)
    for root in animate_anyone_dirs:
        if root:
            dirs.append((os.path.join(root, "pretrained_weights", "DWPose"), "Moore-AnimateAnyone layout"))
            dirs.append((os.path.join(root, "DWPose"), "Moore-AnimateAnyone layout"))
    return dirs


def find_dwpose_files(
    model_dir: Optional[str] = None,
    *,
    webui_root: Optional[str] = None,
    extra_dirs: Iterable[str] = (),
    animate_anyone_dirs: Iterable[str] = (),
    environ: Optional[Mapping[str, str]] = None,
) -> DWPoseFiles:
    """The paths of ``yolox_l.onnx`` and ``dw-ll_ucoco_384.onnx``; raises WeightsFileError naming
    every folder searched when either is missing."""
    dirs = dwpose_search_dirs(
        model_dir, webui_root=webui_root, extra_dirs=extra_dirs,
        animate_anyone_dirs=animate_anyone_dirs, environ=environ,
    )
    found = {name: _first_file(name, dirs) for name in (DETECTOR_FILE, POSE_FILE)}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise WeightsFileError(_missing_message(missing, dirs, environ))
    return DWPoseFiles(detector=found[DETECTOR_FILE], pose=found[POSE_FILE])


def _first_file(name: str, dirs: List[Tuple[str, str]]) -> Optional[str]:
    for folder, _ in dirs:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return os.path.abspath(path)
    return None


def _missing_message(missing: List[str], dirs: List[Tuple[str, str]], environ) -> str:
    environ = os.environ if environ is None else environ
    lines = [
        f"DWPose pose detection needs {DETECTOR_FILE} (YOLOX-L person detector) and {POSE_FILE} "
        f"(RTMPose-L whole-body); not found: {', '.join(missing)}.",
        "Searched:" if dirs else "No folder to search was given.",
    ]
    lines += [f"  - {os.path.abspath(folder)}  ({why})" for folder, why in dirs]
    if not environ.get(ENV_VAR):
        lines.append(f"  ({ENV_VAR} is not set)")
    lines.append(
        "Put both files in one of these folders, or set the DWPose folder in the settings. They are "
        "the files ControlNet's dw_openpose_full preprocessor uses (published by the DWPose authors, "
        "Apache-2.0); this extension never downloads them."
    )
    return "\n".join(lines)
