"""Accept sd-webui-animatediff's API payload under our key, so a migrating client changes one key.

Mapping (their field -> ours):

=====================  ==============================================================================
model                  motion_module
enable                 enable
video_length           frames (0 = the frames of video_source / video_path when one is given, else
                       their "context batch size", i.e. ``batch_size``; below ``batch_size``: refused)
fps                    fps
loop_number            loop
closed_loop            "N": closed_loop false. "R-P": windows wrap, prompt travel does not. "R+P": both
                       wrap when there are more frames than one window. "A": as R+P, and with one window
                       only, pingpong (the reversed frames without both ends are appended to the video)
batch_size             context_length (their context batch size; 16 when left out, as there)
overlap                context_overlap (-1 = batch_size // 4, as they do)
stride                 context_stride
format                 formats (GIF, MP4, WEBP, WEBM, PNG); "TXT": the infotext beside every video;
                       "Frame": the frames are returned after the videos
latent_power/_scale    latent_power / latent_scale
latent_*_last          latent_power_last / latent_scale_last
last_frame             last_frame
video_source           control_video_path (a video file on the server)
video_path             control_frames_dir (a folder of frames on the server)
mask_path              control_masks_dir (per-frame masks for ControlNet inpaint units)
request_id             a suffix of the output file names (<seq>-<seed>-<request_id>)
freeinit_enable/iters  freeinit_iterations = freeinit_iters - 1 (their count includes the first pass)
freeinit_filter        freeinit_filter (butterworth, gaussian, box, ideal)
freeinit_ds / _dt      freeinit_spatial / freeinit_temporal
=====================  ==============================================================================

Such a request also gets their answer layout (:class:`AnimateDiffCompat`): ``images`` holds, per
video in order, one entry per requested video format (GIF, MP4, WEBP, WEBM), then the frames only
when "Frame" is in ``format``. Fields without an equivalent (interp, is_i2i_batch, video_default,
prompt_scheduler) are accepted at their defaults and refused otherwise, with a
message that says what to send instead -- never a silent difference.
"""

import re
from dataclasses import dataclass, replace
from typing import Any, Dict, Tuple

from ...errors import InvalidInputError
from .args import field_names

CLOSED_LOOP_MODES = ("N", "R-P", "R+P", "A")
VIDEO_FORMATS = ("GIF", "MP4", "WEBP", "WEBM")  # the order their answer lists the videos in
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.-]{0,64}$")

# Fields we do not implement: the values a payload may carry (their defaults), and what to send instead.
_UNSUPPORTED = {
    "interp": (("Off", None), "frame interpolation (FILM through Deforum) is not built in; send 'interp': 'Off' "
                              "and interpolate the video afterwards"),
    "interp_x": ((10, None), "it only applies to 'interp': 'FILM', which is not built in; send 10 or leave it out"),
    "is_i2i_batch": ((False, None), "it is set by sd-webui-animatediff itself for the img2img batch tab; leave it out"),
    "video_default": ((False, None), "it is set by sd-webui-animatediff's UI; leave it out"),
    "prompt_scheduler": ((None,), "it is set by sd-webui-animatediff itself; leave it out (prompt travel is read "
                                  "from the prompt, as there)"),
}
# Fields of older sd-webui-animatediff versions, explained instead of answered "unknown".
_RETIRED = {
    "reverse": "'reverse' was merged into 'closed_loop' in sd-webui-animatediff v1.9.4: send 'closed_loop': 'A' "
               "(frames played forward then back when video_length <= batch_size)",
}
_PATHS = {"video_source": "control_video_path", "video_path": "control_frames_dir", "mask_path": "control_masks_dir"}
_SIMPLE = {"model": "motion_module", "enable": "enable", "fps": "fps", "loop_number": "loop", "stride": "context_stride",
           "latent_power": "latent_power", "latent_scale": "latent_scale", "latent_power_last": "latent_power_last",
           "latent_scale_last": "latent_scale_last", "last_frame": "last_frame"}

_FREEINIT = {"freeinit_enable", "freeinit_filter", "freeinit_ds", "freeinit_dt", "freeinit_iters"}
_THEIR_FIELDS = set(_SIMPLE) | set(_UNSUPPORTED) | set(_PATHS) | _FREEINIT | {
    "video_length", "closed_loop", "batch_size", "overlap", "format", "request_id"}

# Fields that exist only in their payload: one of them marks a payload as theirs.
_MARKERS = (_THEIR_FIELDS | set(_RETIRED)) - set(field_names())

DEFAULT_BATCH_SIZE = 16  # their context batch size when the payload leaves it out


@dataclass(frozen=True)
class AnimateDiffCompat:
    """The parts of their behaviour that depend on the frame count, and their answer layout."""

    closed_loop_mode: str = "R-P"
    frames_in_answer: bool = False  # "Frame" in format
    write_txt: bool = False  # "TXT" in format
    request_id: str = ""

    def resolve(self, args, frames: int):
        """``args`` with the frame-dependent rules applied, once the frame count is known.

        Their windows only exist with more frames than one window (``batch_size``): then "R+P" and
        "A" make prompt travel cyclic too; with one window, "A" appends the reversed frames instead.
        """
        one_window = frames <= args.context_length
        mode = self.closed_loop_mode
        return replace(args, prompt_travel_loop=mode in ("R+P", "A") and not one_window,
                       pingpong=mode == "A" and one_window)


def looks_like_animatediff_payload(values: Dict[str, Any]) -> bool:
    return isinstance(values, dict) and bool(_MARKERS & set(values))


def _check_unsupported(values: Dict[str, Any]) -> None:
    retired = sorted(set(values) & set(_RETIRED))
    if retired:
        raise InvalidInputError(_RETIRED[retired[0]])
    unknown = sorted(set(values) - _THEIR_FIELDS)
    if unknown:
        raise InvalidInputError(
            f"the args look like an sd-webui-animatediff payload but have fields it does not define: {unknown}; "
            f"use either their fields or ours, not a mix"
        )
    for name, (allowed, instead) in _UNSUPPORTED.items():
        if name in values and values[name] not in allowed:
            raise InvalidInputError(f"sd-webui-animatediff field '{name}' = {values[name]!r} is not supported here: {instead}")


def _formats(values: Dict[str, Any]) -> Tuple[list, bool, bool]:
    formats = values.get("format", ["GIF", "PNG"])
    if isinstance(formats, str):
        formats = [formats]
    if not isinstance(formats, (list, tuple)) or not all(isinstance(f, str) for f in formats):
        raise InvalidInputError(f"'format' must be a list of GIF, MP4, WEBP, WEBM, PNG, TXT, Frame; got {formats!r}")
    upper = {f.upper() for f in formats}
    unknown = sorted(upper - set(VIDEO_FORMATS) - {"PNG", "TXT", "FRAME"})
    if unknown:
        raise InvalidInputError(f"unknown format(s) {unknown} in 'format'; allowed: GIF, MP4, WEBP, WEBM, PNG, TXT, Frame")
    if not upper & (set(VIDEO_FORMATS) | {"PNG"}):
        raise InvalidInputError("'format' must hold at least one of GIF, MP4, WEBP, WEBM, PNG (as in sd-webui-animatediff)")
    ours = [f for f in VIDEO_FORMATS + ("PNG",) if f in upper]
    return ours, "FRAME" in upper, "TXT" in upper


def _freeinit(values: Dict[str, Any]) -> Dict[str, Any]:
    """Their FreeInit fields: ``freeinit_iters`` counts every pass (2 … 5), ours the extra ones."""
    if not values.get("freeinit_enable"):
        return {}
    iters = values.get("freeinit_iters", 3)
    if isinstance(iters, bool) or not isinstance(iters, (int, float)) or iters != int(iters) or not 2 <= iters <= 9:
        raise InvalidInputError(f"'freeinit_iters' must be a whole number of passes from 2 to 9; got {iters!r}")
    out = {"freeinit_iterations": int(iters) - 1}
    for theirs, ours in (("freeinit_filter", "freeinit_filter"), ("freeinit_ds", "freeinit_spatial"), ("freeinit_dt", "freeinit_temporal")):
        if values.get(theirs) is not None:
            out[ours] = values[theirs]
    return out


def translate(values: Dict[str, Any]) -> Tuple[Dict[str, Any], AnimateDiffCompat]:
    """Their payload -> our field dict (validated afterwards by parse_args) and their rules."""
    _check_unsupported(values)
    out: Dict[str, Any] = {}
    for theirs, ours in _SIMPLE.items():
        if values.get(theirs) is not None:
            out[ours] = values[theirs]
    for theirs, ours in _PATHS.items():
        if values.get(theirs) not in (None, ""):
            out[ours] = values[theirs]

    context = values.get("batch_size")
    context = DEFAULT_BATCH_SIZE if context is None else context
    out["context_length"] = context
    has_video = any(values.get(name) not in (None, "") for name in ("video_source", "video_path"))
    length = values.get("video_length") or 0
    if isinstance(length, (int, float)) and not isinstance(length, bool) and isinstance(context, (int, float)):
        if 0 < length < context:
            raise InvalidInputError(
                f"'video_length' {length:g} < 'batch_size' {context:g}: sd-webui-animatediff then generates {context:g} "
                f"frames and keeps the first {length:g}; this extension generates the frames it returns, so send "
                f"'batch_size': {length:g} (or less) for {length:g} frames")
    if length != 0:
        out["frames"] = length
    elif not has_video:  # with a video, 0 means all of its frames: ours when 'frames' is left out
        out["frames"] = context

    overlap = values.get("overlap", -1)
    if overlap is not None:
        out["context_overlap"] = context // 4 if overlap == -1 and isinstance(context, int) else overlap
    mode = values.get("closed_loop", "R-P")
    if mode not in CLOSED_LOOP_MODES:
        raise InvalidInputError(f"'closed_loop' must be one of 'N', 'R-P', 'R+P', 'A' in an sd-webui-animatediff payload; got {mode!r}")
    out["closed_loop"] = mode != "N"

    out.update(_freeinit(values))
    out["formats"], frames_in_answer, write_txt = _formats(values)
    request_id = values.get("request_id") or ""
    if not isinstance(request_id, str) or not _REQUEST_ID.match(request_id):
        raise InvalidInputError(f"'request_id' must be up to 64 letters, digits, '.', '_' or '-' (it becomes part of "
                                f"the file names); got {request_id!r}")
    return out, AnimateDiffCompat(mode, frames_in_answer, write_txt, request_id)
