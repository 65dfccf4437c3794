"""Pose sequences for the Animate Anyone pose guider: OpenPose/ControlNet JSON, a DWPose-style
renderer, frame sampling and fitting, and an optional DWPose detector. No webui imports.

    frames = parse_pose_json(text)                                   # list of PoseFrame
    clip = render_pose_sequence(frames, fps=8, width=512, height=768, fit="letterbox")
    clip.frames                                                       # H x W x 3 uint8 RGB

The DWPose detector lives in :mod:`lib_animate.pose.dwpose` (imported on use).
"""

from .geometry import FIT_MODES, LETTERBOX, RESIZE, Placement, fit_image, placement
from .keypoints import Person, PoseFrame
from .openpose_json import DEFAULT_CONFIDENCE_THRESHOLD, parse_pose_json
from .render import RenderOptions, render_pose
from .sequence import PoseClip, prepare_pose_video, render_pose_sequence, sample_indices

__all__ = [
    "DEFAULT_CONFIDENCE_THRESHOLD", "FIT_MODES", "LETTERBOX", "RESIZE", "Person", "Placement",
    "PoseClip", "PoseFrame", "RenderOptions", "fit_image", "parse_pose_json", "placement",
    "prepare_pose_video", "render_pose", "render_pose_sequence", "sample_indices",
]
