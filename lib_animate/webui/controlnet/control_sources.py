"""Per-frame inputs of a video job, as frame files on disk: control video/frames/folder/pose JSON,
init video, and ControlNet units' own frame folders or image lists.

Every source becomes a :class:`FrameSource` -- its frame files in order, after ``control_stride``
-- checked at the edge with a message naming the field. Frames that arrive as data (a video, a
list of base64 images, keypoints) are written as PNGs into the job's scratch folder, so that
sd-webui-controlnet's batch loader can read them; a server folder is listed in the webui's frame
order and used where it is.

Limits: a source may not yield more frames than the configured maximum (Settings, the same cap as
pose sequences) unless the request asks for fewer frames, and decoded videos obey the decoder's
pixel cap.
"""

import os
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence

from ...errors import InvalidInputError
from ...video.frame_files import check_images, list_frame_files, write_frames
from ..jobs.aa_inputs import PixelBudget, decode_image, file_bytes
from ..api.args import AnimateArgs, control_inputs_given


@dataclass
class SourceLimits:
    max_frames: int  # the configured maximum (Settings)
    server_paths: bool  # False when the webui runs with --hide-ui-dir-config
    needed: Optional[int] = None  # the request's explicit frame count: only that many are read


@dataclass
class FrameSource:
    name: str  # for messages: "'control_video'", "ControlNet unit 1's batch folder", ...
    paths: List[str]  # frame files in frame order
    mask_paths: List[str] = field(default_factory=list)  # per-frame masks (inpaint units), or one for all
    kind: str = ""  # for the API's info: the request field ("control_video", "init_video", ...), "batch_folder", "images"

    def __len__(self) -> int:
        return len(self.paths)


def check_server_path(name: str, limits: SourceLimits) -> None:
    if not limits.server_paths:
        raise InvalidInputError(
            f"{name} is a folder or file on the server, and this webui runs with --hide-ui-dir-config, which forbids "
            f"server paths; send the frames in the request instead ('control_video' or 'control_frames')"
        )


def _budget(limits: SourceLimits) -> int:
    # One more than allowed tells "too long" apart from "exactly the maximum".
    return limits.needed if limits.needed else limits.max_frames + 1


def _check_count(name: str, count: int, limits: SourceLimits) -> None:
    if not count:
        raise InvalidInputError(f"{name} gives no frames")
    if limits.needed is None and count > limits.max_frames:
        raise InvalidInputError(
            f"{name} has more than {limits.max_frames} frames (the maximum in Settings); use 'control_stride', "
            f"or set 'frames' to use its first frames"
        )


def read_video_frames(value: Any, name: str, stride: int, limits: SourceLimits, is_path: bool = False):
    """Decoded frames (N x H x W x 3 uint8) of a video given as base64, bytes or a server path."""
    from ...video import read_video

    source = value if is_path else file_bytes(value, name)
    try:
        video = read_video(source, stride=stride, max_frames=_budget(limits))
    except InvalidInputError as e:
        raise InvalidInputError(f"'{name}': {e}") from e
    _check_count(f"'{name}'", len(video.frames), limits)
    return video


def control_source(args: AnimateArgs, folder_for: Callable[[str], str], width: int, height: int, limits: SourceLimits,
                   decode_base64: Optional[Callable] = None) -> Optional[FrameSource]:
    """The request's control source (at most one is given; ``parse_args`` checked that), or None.
    Decoded frames are written into ``folder_for("control")``."""
    given = control_inputs_given(args)
    if not given:
        return None
    name = given[0]
    source = _control_source(name, args, folder_for("control"), width, height, limits, decode_base64)
    source.kind = name
    return source


def _control_source(name, args, folder, width, height, limits, decode_base64) -> FrameSource:
    label, stride = f"'{name}'", args.control_stride
    if name in ("control_video", "control_video_path"):
        if name == "control_video_path":
            check_server_path(label, limits)
        video = read_video_frames(getattr(args, name), name, stride, limits, is_path=name == "control_video_path")
        return FrameSource(label, write_frames(list(video.frames), folder))
    if name == "control_frames_dir":
        check_server_path(label, limits)
        return folder_source(args.control_frames_dir, label, stride, limits)
    if name == "control_frames":
        return image_list_source(args.control_frames, label, stride, limits, folder, decode_base64)
    return pose_json_source(args.control_pose_json, label, stride, limits, folder, width, height)


FRAME_HINT = "use fewer or smaller frames ('control_stride', 'frames')"


def folder_source(path: str, name: str, stride: int, limits: SourceLimits, masks: str = "") -> FrameSource:
    """A server folder of frame images in the webui's frame order (and optionally one of masks)."""
    files = list_frame_files(path, name)[::stride][: _budget(limits)]
    _check_count(name, len(files), limits)
    budget = PixelBudget(name, hint=FRAME_HINT)
    for size in check_images(files, name):  # headers only: nothing is decoded here
        budget.add(*size)
    source = FrameSource(name, files)
    if masks:
        source.mask_paths = mask_files(masks, f"{name}'s masks", stride, len(files))
    return source


def mask_files(path: str, name: str, stride: int, count: int) -> List[str]:
    """Per-frame masks from a folder: one mask for every frame, or at least one per frame."""
    files = list_frame_files(path, name)
    if len(files) > 1:
        files = files[::stride]
        if len(files) < count:
            raise InvalidInputError(f"{name}: the folder {path!r} holds {len(files)} masks (after stride) for {count} frames; "
                                    f"give one mask per frame, or a single mask for all of them")
    files = files[:count]
    check_images(files, name)
    return files


def image_list_source(items: Sequence[Any], name: str, stride: int, limits: SourceLimits, folder: str,
                      decode_base64: Optional[Callable] = None) -> FrameSource:
    """A list of images (base64 strings, PIL images, bytes, or ControlNet's ``{"image", "mask"}``
    dicts) written as frame files; masks of dict items go to a ``masks`` subfolder."""
    selected = list(items)[::stride][: _budget(limits)]
    _check_count(name, len(selected), limits)
    images = [item.get("image") if isinstance(item, dict) else item for item in selected]
    masks = [item.get("mask") if isinstance(item, dict) else None for item in selected]
    source = FrameSource(name, write_frames(_decoded(images, name, stride, decode_base64), folder))
    if any(m is not None for m in masks):
        if not all(m is not None for m in masks):
            raise InvalidInputError(f"{name}: some items have a mask and some do not; give a mask with every frame or with none")
        source.mask_paths = write_frames(_decoded(masks, f"{name}'s masks", stride, decode_base64), os.path.join(folder, "masks"))
    return source


def _decoded(items, name: str, stride: int, decode_base64):
    """Decode one image at a time (each is written before the next is decoded), within the pixel cap."""
    budget = PixelBudget(name, hint=FRAME_HINT)
    for i, item in enumerate(items):
        yield _as_image(item, f"{name}[{i * stride}]", decode_base64, budget)


def _as_image(value: Any, where: str, decode_base64: Optional[Callable], budget: PixelBudget):
    import numpy as np

    if isinstance(value, np.ndarray):
        from PIL import Image

        if value.dtype != np.uint8 or value.ndim not in (2, 3):
            raise InvalidInputError(f"{where}: expected an H x W (x C) uint8 image array, got {value.shape} {value.dtype}")
        budget.add(value.shape[1], value.shape[0])
        return Image.fromarray(value).convert("RGB")
    return decode_image(value, where, decode_base64, budget)


def pose_json_source(data: Any, name: str, stride: int, limits: SourceLimits, folder: str, width: int, height: int) -> FrameSource:
    """OpenPose / ControlNet keypoints drawn as skeleton frames at the generation size (the
    renderer of the Animate Anyone mode: what an OpenPose ControlNet expects with module 'none')."""
    from ...pose import parse_pose_json, render_pose_sequence

    try:
        poses = parse_pose_json(data, canvas_size=(width, height))
        clip = render_pose_sequence(poses, 8.0, width, height, stride=stride, max_frames=_budget(limits))
    except InvalidInputError as e:
        raise InvalidInputError(f"{name}: {e}") from e
    _check_count(name, len(clip.frames), limits)
    return FrameSource(name, write_frames(clip.frames, folder))
