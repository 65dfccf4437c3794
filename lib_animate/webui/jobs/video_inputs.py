"""The per-frame inputs of an AnimateDiff job, prepared in ``before_process``.

* the request's control source (``control_video``, ``control_frames``, ...) and, in img2img, the
  init video, decoded into frame files;
* sd-webui-controlnet's enabled units, planned (:mod:`.controlnet_units`);
* the frame count: the request's ``frames``, or else the shortest per-frame source; a source
  shorter than an explicit ``frames`` is refused naming the source and both counts;
* per-frame units pointed at folders of exactly that many frames; ``p.init_images`` set to the
  init video's frames (the webui then gives every frame its own init latent).

Everything is written into one scratch folder per job, removed with :meth:`VideoInputs.cleanup`.
"""

import os
import shutil
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ...errors import AnimateError
from ...video.frame_files import write_frames
from ..api.args import MAX_FRAMES, AnimateArgs, control_inputs_given, has_init_video
from ..controlnet.control_sources import FrameSource, SourceLimits, check_server_path, control_source, mask_files, read_video_frames
from ..controlnet.controlnet_units import (ControlPlan, VideoRequest, check_lengths, configure_per_frame, find_script, is_inpaint,
                               plan_units)
from ..errors import RequestError
from ..scratch import scratch_folder

POSE_SOURCE_NAME = "the character's pose input"


class _Scratch:
    """The job's folder for frame files, made on first use."""

    def __init__(self):
        self._path: Optional[str] = None

    @property
    def path(self) -> str:
        if self._path is None:
            self._path = scratch_folder("frames")
        return self._path

    def sub(self, name: str) -> str:
        return os.path.join(self.path, name)

    def remove(self) -> None:
        if self._path is not None:
            shutil.rmtree(self._path, ignore_errors=True)
            self._path = None


@dataclass
class VideoInputs:
    frames: int
    plan: Optional[ControlPlan] = None
    init_images: Optional[List] = None  # PIL images, one per frame (img2img init video)
    counts: Dict[str, int] = field(default_factory=dict)  # frames of every per-frame source, by name
    scratch: _Scratch = field(default_factory=_Scratch)

    @property
    def expected_units(self) -> int:
        return len(self.plan.units) if self.plan is not None else 0

    def cleanup(self) -> None:
        self.scratch.remove()


def prepare(p, args: AnimateArgs, max_frames: int, server_paths: bool, is_img2img: bool, decode_base64=None,
            pose_frames=None) -> VideoInputs:
    """Decode, plan and size the job's per-frame inputs (see the module doc); sets ``args.frames``.
    ``pose_frames``: the character option's skeleton frames, the control source of the units without
    an input of their own."""
    inputs = VideoInputs(frames=args.frames)
    try:
        _prepare(p, args, inputs, max_frames, server_paths, is_img2img, decode_base64, pose_frames)
    except BaseException:
        inputs.cleanup()
        raise
    return inputs


def _prepare(p, args, inputs: VideoInputs, max_frames, server_paths, is_img2img, decode_base64, pose_frames) -> None:
    frames_given = "frames" in args.given
    limits = SourceLimits(max_frames=min(max_frames, MAX_FRAMES), server_paths=server_paths,
                          needed=args.frames if frames_given else None)
    if has_init_video(args) and not is_img2img:
        raise RequestError("'init_video' gives the frames' init images, which is img2img: use /sdapi/v1/img2img or the img2img tab")
    if control_inputs_given(args) and find_script(p) is None:
        raise RequestError(f"'{control_inputs_given(args)[0]}' feeds sd-webui-controlnet's units, but the ControlNet extension "
                           f"is not installed or not enabled")

    control = control_source(args, inputs.scratch.sub, p.width, p.height, limits, decode_base64)
    if pose_frames is not None:
        frames = list(pose_frames[: limits.needed] if limits.needed else pose_frames)
        control = FrameSource(POSE_SOURCE_NAME, write_frames(frames, inputs.scratch.sub("pose")), kind="pose")
    init_frames = None
    if has_init_video(args):
        video = read_video_frames(args.init_video, "init_video", args.control_stride, limits)
        from PIL import Image

        inputs.init_images = [Image.fromarray(frame) for frame in video.frames]
        inputs.counts["'init_video'"] = len(video.frames)
        init_frames = _lazy_frame_files(video.frames, inputs)

    request = VideoRequest(control=control, init_frames=init_frames, limits=limits, folder_for=inputs.scratch.sub,
                           is_img2img=is_img2img, save_maps=args.control_maps, stride=args.control_stride,
                           decode_base64=decode_base64)
    inputs.plan = plan_units(p, request)
    for unit in inputs.plan.per_frame_units if inputs.plan else []:
        inputs.counts[unit.per_frame.name] = len(unit.per_frame)

    if not frames_given and inputs.counts:
        shortest = min(inputs.counts, key=inputs.counts.get)
        if inputs.counts[shortest] < 2:
            raise RequestError(f"{shortest} gives {inputs.counts[shortest]} frame; a video needs at least 2 (for one image for "
                               f"every frame, give the ControlNet unit that image and set 'frames')")
        args.frames = inputs.counts[shortest]
    inputs.frames = args.frames
    try:
        check_lengths(inputs.counts, inputs.frames)
    except AnimateError as e:
        raise RequestError(str(e)) from e
    masks = _inpaint_masks(args, inputs, limits)
    if inputs.plan is not None:
        configure_per_frame(inputs.plan, inputs.frames, inputs.scratch.sub, masks)
    if inputs.init_images is not None:
        inputs.init_images = inputs.init_images[: inputs.frames]
        p.init_images = list(inputs.init_images)


def _inpaint_masks(args: AnimateArgs, inputs: VideoInputs, limits: SourceLimits) -> List[str]:
    """``control_masks_dir``: per-frame masks (or one for all) for the per-frame inpaint units."""
    if not args.control_masks_dir:
        return []
    name = "'control_masks_dir'"
    check_server_path(name, limits)
    users = [u for u in (inputs.plan.per_frame_units if inputs.plan else []) if is_inpaint(u.unit) and not u.per_frame.mask_paths]
    if not users:
        raise RequestError(f"{name} is given but no per-frame ControlNet inpaint unit would use it (an enabled unit with an "
                           f"'inpaint' preprocessor and no masks of its own)")
    return mask_files(args.control_masks_dir, name, args.control_stride, inputs.frames)


def _lazy_frame_files(frames, inputs: VideoInputs):
    """The init video's frames as files, written the first time a ControlNet unit asks for them."""
    written: List[FrameSource] = []

    def get() -> FrameSource:
        if not written:
            from ...video.frame_files import write_frames

            written.append(FrameSource("'init_video'", write_frames(list(frames), inputs.scratch.sub("init")), kind="init_video"))
        return written[0]

    return get
