"""DWPose whole-body pose detection from the two public ONNX files, without downloads.

    detector = DWPoseDetector.from_folders(setting_dir, webui_root=webui_root)
    poses = detector.detect_sequence(frames)        # frames: H x W x 3 uint8 RGB
"""

from .detector import DWPoseDetector
from .files import DETECTOR_FILE, ENV_VAR, POSE_FILE, DWPoseFiles, dwpose_search_dirs, find_dwpose_files
from .runtime import onnxruntime_available

__all__ = [
    "DWPoseDetector", "DWPoseFiles", "DETECTOR_FILE", "POSE_FILE", "ENV_VAR",
    "dwpose_search_dirs", "find_dwpose_files", "onnxruntime_available",
]
