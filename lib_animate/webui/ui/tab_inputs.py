"""The Animate Anyone tab's controls as the mode's args, and the checks that run before queueing.

The tab hands the job the same dict of named fields the API sends (parsed by ``args.parse_args``),
with uploads already read: the reference as a PIL image, the pose video as bytes, pose images
and JSON as bytes. The pose preview runs the job's own pose loading (``aa_inputs.load_pose_clip``)
at the chosen size, so it shows exactly the frames the pose guider will get -- without loading
any model (a video of a person is shown as it is; its poses are detected when generating).
"""

import html
import os
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Optional, Tuple

from ...errors import AnimateError, InvalidInputError
from ..api.args import parse_args, pose_inputs_given

# The tab's generation controls, in the order the handlers receive them.
TAB_FIELDS = (
    "reference_image", "pose_video", "pose_frames", "pose_json", "pose_source", "fit", "pose_stride", "pose_fps",
    "pose_max_frames", "draw_face", "draw_hands", "width", "height", "fps", "steps", "cfg_scale", "seed", "sampler",
    "loop", "formats", "pingpong", "context_length", "context_overlap", "context_schedule", "retarget", "reference_pose_json",
)
# The controls that change which pose frames the model sees.
POSE_FIELDS = (
    "pose_video", "pose_frames", "pose_json", "pose_source", "fit", "pose_stride", "pose_fps", "pose_max_frames",
    "draw_face", "draw_hands", "width", "height", "fps", "retarget", "reference_pose_json", "reference_image",
)
PREVIEW_MAX_SIDE = 256  # the preview is small; the frame count and timing are the real ones


@dataclass(frozen=True)
class UnreadableUpload:
    """An upload gradio could not decode; handed to the handlers instead of failing the event."""

    message: str


def named(values) -> Dict[str, Any]:
    return dict(zip(TAB_FIELDS, values))


def values_key(values) -> tuple:
    """What identifies a set of control values (uploads by their temp-file path)."""
    def key(value):
        if isinstance(value, (list, tuple)):
            return tuple(key(v) for v in value)
        return getattr(value, "name", value)

    return tuple(key(v) for v in values)


def _read(upload) -> bytes:
    """gradio 3.41: gr.Video gives a path, gr.File a temp-file object with ``.name``."""
    with open(getattr(upload, "name", upload), "rb") as f:
        return f.read()


def _whole(value, default=0) -> int:
    return default if value is None else int(round(float(value)))


def pose_fields(values: Dict[str, Any]) -> Dict[str, Any]:
    """The pose part of the mode's args, uploads read (empty inputs are left out)."""
    fields = {
        "pose_source": values["pose_source"],
        "fit": values["fit"],
        "pose_stride": _whole(values["pose_stride"], 1),
        "pose_fps": float(values["pose_fps"] or 0),
        "pose_max_frames": _whole(values["pose_max_frames"]),
        "draw_face": bool(values["draw_face"]),
        "draw_hands": bool(values["draw_hands"]),
        "retarget": bool(values.get("retarget")),
    }
    if values["pose_video"]:
        fields["pose_video"] = _read(values["pose_video"])
    if values["pose_frames"]:
        uploads = sorted(values["pose_frames"], key=lambda f: os.path.basename(getattr(f, "name", f)))
        fields["pose_frames"] = [_read(f) for f in uploads]  # in file-name order, as the label says
    if values["pose_json"]:
        fields["pose_json"] = _read(values["pose_json"])
    if values["fps"]:  # 0: the pose video's own fps (8 for images and JSON)
        fields["fps"] = float(values["fps"])
    if values.get("reference_pose_json"):
        fields["reference_pose_json"] = _read(values["reference_pose_json"])
    return fields


def args_dict(values: Dict[str, Any]) -> Dict[str, Any]:
    """Everything the job gets in its args slot."""
    fields = pose_fields(values)
    fields.update({
        "enable": True,
        "mode": "animate_anyone",
        "reference_image": values["reference_image"],
        "sampler": values["sampler"],
        "loop": _whole(values["loop"]),
        "formats": list(values["formats"] or []),
        "pingpong": bool(values["pingpong"]),
        "context_length": _whole(values["context_length"]),
        "context_overlap": _whole(values["context_overlap"]),
        "context_schedule": values["context_schedule"] or "reference",
    })
    return fields


def size_of(values: Dict[str, Any]) -> Tuple[int, int]:
    return _whole(values["width"], 512), _whole(values["height"], 768)


# --- checks ----------------------------------------------------------------------------------------

def reference_problem(image) -> Optional[str]:
    if isinstance(image, UnreadableUpload):
        return f"'reference_image' is not a readable image: {image.message}"
    if image is None:
        return "'reference_image' is missing: upload a picture of the character to animate"
    return None


def image_problem(error: Exception) -> str:
    """Why an upload is not an image, in words (PIL's own message names a BytesIO object)."""
    if type(error).__name__ == "UnidentifiedImageError":
        return "the file is not in an image format (PNG, JPEG, WebP, ...)"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def reference_note(image, width: int, height: int, fit: str) -> str:
    if image is None or isinstance(image, UnreadableUpload):
        return ""
    how = "stretched" if fit == "resize" else "letterboxed"
    if image.width * height == image.height * width:
        how = "scaled"
    return f"{image.width}\u00d7{image.height} px, {how} to {width}\u00d7{height}"


@dataclass
class PosePreview:
    frames: int
    fps: float  # the output video's fps
    width: int
    height: int
    detect: bool  # a video of a person: the poses are detected (DWPose) when generating
    gif: Optional[bytes] = None  # the frames, small, as a looping GIF
    note: str = ""  # what the panels are (retargeting), or why they are not shown


def pose_preview(values: Dict[str, Any], limits, with_gif: bool = True) -> Optional[PosePreview]:
    """The frames the pose guider will see; None without a pose input. Raises AnimateError."""
    from ...pose.dwpose.files import find_dwpose_files
    from ..jobs.aa_inputs import load_pose_clip, looks_like_skeleton

    fields = pose_fields(values)
    args = parse_args(dict(fields, mode="animate_anyone"))
    given = pose_inputs_given(args)
    if not given:
        return None
    width, height = size_of(values)
    detect = False
    if given == ("pose_video",) and args.pose_source != "skeleton":
        # The job decides on the video's own frames; resized frames keep the dark fraction.
        probe = load_pose_clip(replace(args, pose_source="skeleton", fit="resize"), width, height, limits)
        detect = args.pose_source == "person" or not looks_like_skeleton(probe.frames)
        if detect:  # no detection here, but say now when its files are missing
            find_dwpose_files(limits.dwpose_dir or None, webui_root=limits.webui_root,
                              extra_dirs=limits.extra_dwpose_dirs, animate_anyone_dirs=limits.animate_anyone_dirs)
        clip = probe if args.fit == "resize" else load_pose_clip(replace(args, pose_source="skeleton"), width, height, limits)
    else:
        clip = load_pose_clip(replace(args, retarget=False), width, height, limits)
    fps = args.fps if "fps" in fields else clip.fps
    frames, note = clip.frames, ""
    if args.retarget:
        frames, note = _retarget_panels(args, values.get("reference_image"), clip.frames, detect, width, height, limits)
    return PosePreview(len(clip.frames), fps, width, height, detect, _preview_gif(frames, fps) if with_gif else None, note)


def _retarget_panels(args, reference, driving, detect: bool, width: int, height: int, limits):
    """Reference with its skeleton | driving poses | retargeted poses, side by side per frame."""
    import numpy as np

    from ...pose import render_pose
    from ...pose.keypoints import PoseFrame
    from ..jobs.aa_inputs import NO_KEYPOINTS, fit_reference, load_pose_clip, reference_keypoints

    given = pose_inputs_given(args)
    if given == ("pose_frames",) or (given == ("pose_video",) and not detect):
        raise InvalidInputError(NO_KEYPOINTS)
    if reference is None:
        return driving, "Upload the reference image to see the poses retargeted to its body."
    if detect:
        return driving, "The poses are detected and retargeted to the reference's body when you generate."
    target = reference_keypoints(args, reference, limits)
    retargeted = load_pose_clip(args, width, height, limits, retarget_to=target).frames
    image = np.asarray(fit_reference(reference, width, height, args.fit).convert("RGB"))
    skeleton = render_pose(PoseFrame(people=(target.person,), canvas_size=target.canvas), width, height, fit=args.fit)
    panel = np.where(skeleton.max(axis=2, keepdims=True) > 0, skeleton, image)
    frames = [np.concatenate([panel, a, b], axis=1) for a, b in zip(driving, retargeted)]
    return frames, "Reference and its skeleton \u00b7 the driving poses \u00b7 retargeted to the reference's body."


def _preview_gif(frames, fps: float) -> bytes:
    from PIL import Image

    from ...video import EncodeOptions, encode_video

    height, width = frames[0].shape[:2]
    scale = min(1.0, PREVIEW_MAX_SIDE / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = [Image.fromarray(f).resize(size, Image.BILINEAR) if scale < 1 else Image.fromarray(f) for f in frames]
    return encode_video(small, "gif", EncodeOptions(fps=fps))


def preview_html(preview: Optional[PosePreview]) -> str:
    if preview is None:
        return "<div class='animate-anyone-pose-info animate-anyone-empty' data-frames='0'>" \
               "Upload a pose video, pose images or an OpenPose JSON file to see the frames the model will follow.</div>"
    import base64

    seconds = preview.frames / preview.fps
    caption = (f"<b>{preview.frames} frame{'s' if preview.frames != 1 else ''}</b> \u00b7 {preview.fps:g} fps \u00b7 "
               f"{seconds:.1f} s \u00b7 {preview.width}\u00d7{preview.height}")
    if preview.detect:
        caption += "<br>A video of a person: its poses are detected with DWPose when you generate (shown here as it is)."
    if preview.note:
        caption += f"<br>{html.escape(preview.note)}"
    data = base64.b64encode(preview.gif).decode("ascii")
    return (f"<div class='animate-anyone-pose-preview'>"
            f"<img src='data:image/gif;base64,{data}' alt='pose preview'>"
            f"<div class='animate-anyone-pose-info' data-frames='{preview.frames}' data-fps='{preview.fps:g}'>{caption}</div>"
            f"</div>")


def problems_before_queue(values: Dict[str, Any], limits, weights_folder: str) -> List[str]:
    """Every problem that can be found without the queue: reference, pose, weights folder."""
    from ...reference.weights import locate_weights

    problems = []
    reference = reference_problem(values["reference_image"])
    if reference:
        problems.append(reference)
    try:
        parse_args(args_dict(values))  # ranges, context windows, ...
    except AnimateError as e:
        problems.append(str(e))
    try:
        if pose_preview(values, limits, with_gif=False) is None:
            problems.append("no pose input: upload a pose video, pose images or an OpenPose JSON file")
    except AnimateError as e:
        problems.append(str(e))
    try:
        locate_weights(weights_folder)
    except AnimateError as e:
        problems.append(str(e))
    return list(dict.fromkeys(problems))  # a bad pose field is found by both checks


# --- the weights folder ------------------------------------------------------------------------------

def weights_files(folder: str) -> List[Tuple[str, Optional[int]]]:
    """(name, size in bytes or None when missing) for each file of the release."""
    from ...reference import weights as w
    from ...reference.image_encoder import CONFIG_FILE, WEIGHT_FILES, image_encoder_weights_file

    def size(path):
        return os.path.getsize(path) if path and os.path.isfile(path) else None

    out = [(name, size(os.path.join(folder, name))) for name in (w.DENOISING_UNET, w.REFERENCE_UNET, w.POSE_GUIDER, w.MOTION_MODULE)]
    encoder = os.path.join(folder, w.IMAGE_ENCODER)
    out.append((f"{w.IMAGE_ENCODER}/{CONFIG_FILE}", size(os.path.join(encoder, CONFIG_FILE))))
    weights = image_encoder_weights_file(encoder)
    out.append((f"{w.IMAGE_ENCODER}/{os.path.basename(weights) if weights else ' or '.join(WEIGHT_FILES)}", size(weights)))
    return out


def weights_status(folder: str, problems: Optional[List[str]] = None) -> Tuple[str, bool]:
    """The status line's HTML (every file of the release, found or missing) and whether the
    folder is complete. ``problems``: errors about the weights to show under it; by default
    what ``locate_weights`` says about the folder."""
    from ...reference.weights import locate_weights

    if problems is None:
        try:
            locate_weights(folder)
            problems = []
        except AnimateError as e:
            problems = [str(e)]
    files = weights_files(folder)
    items = []
    for name, size in files:
        if size is None:
            items.append(f"<span class='animate-anyone-missing' title='missing'>\u2717 {html.escape(name)}</span>")
        else:
            items.append(f"<span class='animate-anyone-found' title='{_human(size)}'>\u2713 {html.escape(name)}</span>")
    complete = all(size is not None for _, size in files)
    state = "ok" if complete and not problems else "incomplete" if not complete else "error"
    head = {"ok": "All files found in", "incomplete": "Files missing in", "error": "Files found in"}[state]
    line = (f"<div class='animate-anyone-weights animate-anyone-weights-{state}' data-state='{state}'>"
            f"{head} <code>{html.escape(os.path.abspath(folder))}</code><br>{' '.join(items)}</div>")
    line += "".join(f"<div class='animate-anyone-error' role='alert'>{html.escape(p)}</div>" for p in problems)
    return line, not problems


def _human(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""
