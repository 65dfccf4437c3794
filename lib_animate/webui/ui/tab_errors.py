"""Error messages in the Animate Anyone tab: which control a message is about, and its HTML line.

The mode's errors name the request field they are about (``'pose_video': ...``, ``'reference_image'
is missing``); the tab shows each one under the control that field belongs to, with the field
names a person sees in the tab instead of the API's. Plain Python (no webui, no gradio).
"""

import html
import re
from typing import Dict, List

REFERENCE = "reference"
POSE = "pose"
CONTEXT = "context"
WEIGHTS = "weights"
GENERAL = "general"
PLACES = (REFERENCE, POSE, CONTEXT, WEIGHTS, GENERAL)

# request field -> (place in the tab, label in the tab)
FIELDS = {
    "reference_image": (REFERENCE, "Reference image"),
    "pose_video": (POSE, "Pose video"),
    "pose_frames": (POSE, "Pose images"),
    "pose_json": (POSE, "OpenPose JSON"),
    "pose_source": (POSE, "Pose video holds"),
    "pose_stride": (POSE, "Stride"),
    "pose_fps": (POSE, "Pose fps"),
    "pose_max_frames": (POSE, "Frames"),
    "fit": (POSE, "Fit"),
    "draw_face": (POSE, "Draw face"),
    "draw_hands": (POSE, "Draw hands"),
    "retarget": (POSE, "Retarget"),
    "reference_pose_json": (POSE, "Reference's keypoints"),
    "context_length": (CONTEXT, "Context length"),
    "context_overlap": (CONTEXT, "Overlap"),
    "context_stride": (CONTEXT, "Context stride"),
    "closed_loop": (CONTEXT, "Window schedule"),
    "context_schedule": (CONTEXT, "Window schedule"),
    "fusion": (CONTEXT, "Window schedule"),
}
# Messages without a field name, by what they talk about (first match wins; lower case).
_PHRASES = (
    (POSE, ("dwpose", ".onnx", "no pose input", "several pose inputs")),
    (CONTEXT, ("context",)),
    (WEIGHTS, ("animate anyone weights", ".pth", "image_encoder", "image encoder", "motion module", "pose guider")),
    (POSE, ("pose",)),
)
_QUOTED_FIELD = re.compile(r"'([a-z_]+)(?:\[(\d+)\])?'")
_BARE_INPUT = re.compile(r"\b(?:pose_video|pose_frames|pose_json|reference_image)\b")
_PREFIX = "Animate Anyone: "


def place_of(message: str) -> str:
    """The part of the tab a message is about (one of PLACES)."""
    for match in _QUOTED_FIELD.finditer(message):
        if match.group(1) in FIELDS:
            return FIELDS[match.group(1)][0]
    lower = message.lower()
    for place, phrases in _PHRASES:
        if any(phrase in lower for phrase in phrases):
            return place
    return GENERAL


def for_people(message: str) -> str:
    """The message with the tab's labels in place of request field names."""
    message = message[len(_PREFIX):] if message.startswith(_PREFIX) else message

    def label(match):
        name, index = match.group(1), match.group(2)
        if name not in FIELDS:
            return match.group(0)
        if name == "pose_frames" and index is not None:
            return f"pose image {int(index) + 1}"
        return FIELDS[name][1]

    message = _QUOTED_FIELD.sub(label, message)
    # "several pose inputs at once (pose_video, pose_json)" names them without quotes
    return _BARE_INPUT.sub(lambda m: FIELDS[m.group(0)][1], message)


def sort_messages(messages: List[str]) -> Dict[str, List[str]]:
    """Messages grouped by place (every place present, maybe empty)."""
    grouped: Dict[str, List[str]] = {place: [] for place in PLACES}
    for message in messages:
        grouped[place_of(message)].append(for_people(message))
    return grouped


def error_html(messages: List[str]) -> str:
    """One error line per message, or "" (which hides the line)."""
    return "".join(
        f"<div class='animate-anyone-error' role='alert'>{html.escape(m)}</div>" for m in messages if m
    )


def note_html(text: str) -> str:
    return f"<div class='animate-anyone-note'>{html.escape(text)}</div>" if text else ""
