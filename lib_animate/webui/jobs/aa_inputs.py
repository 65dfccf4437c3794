"""The inputs of an Animate Anyone job: the reference image and the pose sequence.

Each arrives as the API sends it (base64 strings, keypoint JSON) or as the UI hands it over (PIL
images, file bytes). Everything is checked here, at the edge, with a message naming the field;
the result is a reference PIL image and a :class:`~lib_animate.pose.PoseClip` of skeleton
frames at the generation size.
"""

import base64
import binascii
import io
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import numpy as np

from ...errors import AnimateError, InvalidInputError
from ...pose import PoseClip, RenderOptions, parse_pose_json, placement, prepare_pose_video, render_pose_sequence
from ...pose.keypoints import Person
from ...pose.retarget import retarget
from ...video.decode import DEFAULT_MAX_TOTAL_PIXELS as MAX_TOTAL_PIXELS
from ..api.args import AnimateArgs, pose_inputs_given

# A rendered skeleton is mostly black; a photo or a real-person video is not.
SKELETON_DARK_LEVEL = 24
SKELETON_DARK_FRACTION = 0.6


@dataclass
class PoseLimits:
    max_frames: int  # the configured maximum (Settings)
    dwpose_dir: str = ""
    webui_root: Optional[str] = None
    extra_dwpose_dirs: tuple = ()
    animate_anyone_dirs: tuple = ()


class PixelBudget:
    """A cap on the pixels of one input (all frames of a list together), counted from image headers
    before anything is decoded -- the same cap as a video's decoded frames."""

    def __init__(self, name: str, limit: Optional[int] = None, hint: str = "use fewer or smaller images"):
        self.name, self.limit, self.hint, self.total = name, limit or MAX_TOTAL_PIXELS, hint, 0

    def add(self, width: int, height: int) -> None:
        self.total += int(width) * int(height)
        if self.total > self.limit:
            raise InvalidInputError(f"{self.name} holds more than {self.limit / 1e6:.0f} megapixels in all; {self.hint}")


def _header_size(data: bytes, field: str):
    """(width, height) from the image's header; nothing is decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InvalidInputError(f"'{field}' is not a readable image ({len(data)} bytes that no image reader accepts)") from e


def decode_image(value: Any, field: str, decode_base64=None, budget: Optional[PixelBudget] = None):
    """A PIL RGB image from a PIL image, bytes, or a base64 string (``data:`` prefix allowed). Its
    size is checked against ``budget`` (by default: the cap for one image) before it is decoded.

    ``decode_base64`` is the webui's decoder (it honours the API's URL settings); without it the
    string is decoded here.
    """
    from PIL import Image

    budget = budget or PixelBudget(f"'{field}'")
    if value is None or (isinstance(value, (str, bytes)) and not value):
        raise InvalidInputError(f"'{field}' is missing: give an image (base64 in the API, an upload in the UI)")
    if isinstance(value, Image.Image):
        budget.add(*value.size)
        return value.convert("RGB")
    is_url = isinstance(value, str) and value.startswith(("http://", "https://"))
    if is_url and decode_base64 is None:
        raise InvalidInputError(f"'{field}' must be an image, not a URL")
    if not is_url:  # a URL is fetched by the webui under its own API settings; its size is checked after
        budget.add(*_header_size(file_bytes(value, field), field))
    if isinstance(value, str) and decode_base64 is not None:
        try:
            image = decode_base64(value)
        except Exception as e:
            raise InvalidInputError(f"'{field}' is not a readable image: {getattr(e, 'detail', e)}") from e
        if is_url:
            budget.add(*image.size)
        return image.convert("RGB")
    data = file_bytes(value, field)
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, ValueError) as e:
        raise InvalidInputError(f"'{field}' is not a readable image ({len(data)} bytes that no image reader accepts)") from e
    return image.convert("RGB")


def file_bytes(value: Any, field: str) -> bytes:
    """A file's content: bytes as they are (UI uploads), or decoded base64 text (``data:`` prefix allowed)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if not isinstance(value, str):
        raise InvalidInputError(f"'{field}' must be a base64 string, got {type(value).__name__}")
    text = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidInputError(f"'{field}' is not valid base64: {e}") from e


def fit_reference(image, width: int, height: int, fit: str):
    """The reference at the generation size: squashed (the reference pipeline's Lanczos resize) or
    letterboxed on black, like the pose frames."""
    from PIL import Image

    lanczos = getattr(Image, "Resampling", Image).LANCZOS
    if fit == "resize":
        return image.resize((width, height), resample=lanczos)
    box = placement(image.size, (width, height), fit)
    canvas = Image.new("RGB", (width, height))
    canvas.paste(image.resize((box.width, box.height), resample=lanczos), (box.x, box.y))
    return canvas


def looks_like_skeleton(frames: List[np.ndarray]) -> bool:
    """Rendered pose frames are mostly black background."""
    sample = frames[:: max(1, len(frames) // 8)]
    dark = [float(np.mean(frame.max(axis=2) <= SKELETON_DARK_LEVEL)) for frame in sample]
    return float(np.mean(dark)) >= SKELETON_DARK_FRACTION


@dataclass
class RetargetTo:
    """The reference's body for retargeting: its keypoints and the canvas they were measured on."""

    person: Person
    canvas: Optional[Tuple[int, int]]


def reference_keypoints(args: AnimateArgs, reference, limits: PoseLimits) -> RetargetTo:
    """The reference's keypoints for 'retarget': ``reference_pose_json`` (its first frame's top
    person), else DWPose on the reference image (when its files are on disk)."""
    if args.reference_pose_json not in (None, "", []):
        try:
            frames = parse_pose_json(args.reference_pose_json, canvas_size=reference.size)
        except InvalidInputError as e:
            raise InvalidInputError(f"'reference_pose_json': {e}") from e
        person = frames[0].top_person() if frames else None
        if person is None:
            raise InvalidInputError("'reference_pose_json' holds no person")
        return RetargetTo(person, frames[0].canvas_size or reference.size)
    try:
        poses = _detect([np.asarray(reference.convert("RGB"))], limits, None)
    except AnimateError as e:  # no DWPose files (WeightsFileError), no onnxruntime, ...
        raise InvalidInputError(f"'retarget' needs the reference's keypoints: give 'reference_pose_json', or put the "
                                f"DWPose files where they can be found to detect them on the reference image ({e})") from e
    person = poses[0].top_person() if poses else None
    if person is None:
        raise InvalidInputError("'retarget': DWPose found no person on the reference image; give 'reference_pose_json'")
    return RetargetTo(person, reference.size)


def load_pose_clip(args: AnimateArgs, width: int, height: int, limits: PoseLimits, decode_base64=None, progress=None,
                   retarget_to: Optional[RetargetTo] = None) -> PoseClip:
    """The skeleton frames the pose guider (or an OpenPose unit) will see (after stride, fps and max
    frames), at W x H; with ``retarget_to`` the poses take that body's proportions first."""
    given = pose_inputs_given(args)
    try:
        return _load_pose_clip(args, given, width, height, limits, decode_base64, progress, retarget_to)
    except InvalidInputError as e:
        if len(given) == 1 and not str(e).startswith(("'", "no pose input", "several pose inputs")):
            raise InvalidInputError(f"'{given[0]}': {e}") from e
        raise


def _retargeted(poses, retarget_to: Optional[RetargetTo], width: int, height: int, fit: str):
    if retarget_to is None:
        return poses
    return retarget(poses, retarget_to.person, retarget_to.canvas, (width, height), fit)[0]


NO_KEYPOINTS = ("'retarget' needs keypoints to move: give the poses as 'pose_json', or a video of a person with "
                 "'pose_source' 'person' (detected with DWPose); rendered skeleton frames have none")


def _load_pose_clip(args, given, width, height, limits, decode_base64, progress, retarget_to=None) -> PoseClip:
    if not given:
        raise InvalidInputError("no pose input: give exactly one of 'pose_video', 'pose_frames' or 'pose_json'")
    if len(given) > 1:
        raise InvalidInputError(f"several pose inputs at once ({', '.join(given)}); give exactly one of them")
    explicit = args.pose_max_frames or None
    if explicit is not None and explicit > limits.max_frames:
        raise InvalidInputError(f"'pose_max_frames' ({explicit}) is above the maximum in Settings ({limits.max_frames} frames)")
    budget = explicit or limits.max_frames + 1  # one more than allowed tells "too long" apart
    target_fps = args.pose_fps or None
    options = RenderOptions(hands=args.draw_hands, face=args.draw_face)
    fps = args.fps

    if given[0] == "pose_video":
        from ...video import read_video

        data = file_bytes(args.pose_video, "pose_video")
        video = read_video(data, stride=args.pose_stride, target_fps=target_fps, max_frames=budget)
        frames = list(video.frames)
        fps = video.fps
        _check_length(len(frames), explicit, limits, "pose video")
        if args.pose_source == "person" or (args.pose_source == "auto" and not looks_like_skeleton(frames)):
            poses = _retargeted(_detect(frames, limits, progress), retarget_to, width, height, args.fit)
            clip = render_pose_sequence(poses, fps, width, height, fit=args.fit, options=options)
        elif retarget_to is not None:
            raise InvalidInputError(NO_KEYPOINTS)
        else:
            clip = prepare_pose_video(frames, fps, width, height, fit=args.fit)
    elif given[0] == "pose_frames":
        if retarget_to is not None:
            raise InvalidInputError(NO_KEYPOINTS)
        items = list(args.pose_frames)
        # Decode only the images that can make it into the clip: stride and fps resampling pick
        # from the start, at most ``budget`` frames. More than that without pose_max_frames is
        # refused before anything is decoded.
        usable = budget * args.pose_stride * (int(np.ceil(fps / target_fps)) if target_fps else 1)
        if explicit is None and len(items) > usable:
            _check_length(limits.max_frames + 1, explicit, limits, "pose frame list")
        pixels = PixelBudget("'pose_frames'")
        frames = [np.asarray(decode_image(item, f"pose_frames[{i}]", decode_base64, pixels)) for i, item in enumerate(items[:usable])]
        clip = prepare_pose_video(frames, fps, width, height, fit=args.fit, stride=args.pose_stride,
                                  target_fps=target_fps, max_frames=budget)
        _check_length(len(clip.frames), explicit, limits, "pose frame list")
    else:
        poses = _retargeted(parse_pose_json(args.pose_json, canvas_size=(width, height)), retarget_to, width, height, args.fit)
        clip = render_pose_sequence(poses, fps, width, height, fit=args.fit, stride=args.pose_stride,
                                    target_fps=target_fps, max_frames=budget, options=options)
        _check_length(len(clip.frames), explicit, limits, "pose JSON")
    if not clip.frames:
        raise InvalidInputError(f"'{given[0]}' gives no frames")
    return clip


def _check_length(count: int, explicit: Optional[int], limits: PoseLimits, what: str) -> None:
    if explicit is None and count > limits.max_frames:
        raise InvalidInputError(
            f"the {what} has more than {limits.max_frames} frames (the maximum in Settings); "
            f"use pose_stride or pose_fps, or set pose_max_frames to use its first frames"
        )


def _detect(frames, limits: PoseLimits, progress):
    from ...pose.dwpose import DWPoseDetector

    detector = DWPoseDetector.from_folders(
        limits.dwpose_dir or None, webui_root=limits.webui_root, extra_dirs=limits.extra_dwpose_dirs,
        animate_anyone_dirs=limits.animate_anyone_dirs,
    )
    return detector.detect_sequence(frames, progress=progress)


def encode_reference_latent(sd_model, reference, width: int, height: int, fit: str):
    """The VAE posterior mean of ``reference`` fitted to ``width`` x ``height``, times the model's scale
    factor (the mean, not a sample, as the Animate Anyone reference pipeline takes it)."""
    import torch
    from modules import devices, shared

    fitted = fit_reference(reference, width, height, fit)
    pixels = torch.from_numpy(np.asarray(fitted, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
    pixels = pixels.to(shared.device, dtype=devices.dtype_vae)
    with torch.no_grad():
        posterior = sd_model.encode_first_stage(pixels)
    mean = posterior.mean if hasattr(posterior, "mean") else posterior
    return mean * sd_model.scale_factor
