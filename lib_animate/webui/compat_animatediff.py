"""Accept sd-webui-animatediff's API payload under our key, so a migrating client changes one key.

Mapping (their field -> ours):

=================  =====================================================================
model              motion_module
enable             enable
video_length       frames (0 = the frames of video_source / video_path when one is given, else
                   their "context batch size", i.e. ``batch_size``)
fps                fps
loop_number        loop
closed_loop        closed_loop: "N" -> false; "R-P", "R+P", "A" -> true (all wrap-around)
batch_size         context_length (their context batch size)
overlap            context_overlap (-1 = batch_size // 4, as they do)
stride             context_stride
format             formats: GIF, MP4, WEBP, WEBM, PNG kept; "TXT" and "Frame" dropped
                   (the infotext is always written; frames are always returned)
latent_power       latent_power
latent_scale       latent_scale
last_frame         last_frame
video_source       control_video_path (a video file on the server)
video_path         control_frames_dir (a folder of frames on the server)
mask_path          control_masks_dir (per-frame masks for ControlNet inpaint units)
=================  =====================================================================

Fields without an equivalent (interp, freeinit_*,
latent_power_last, latent_scale_last, request_id, is_i2i_batch, video_default, prompt_scheduler)
are accepted at their defaults and refused with a clear message when set to anything else.
"""

from typing import Any, Dict

from ..errors import InvalidInputError

# Their defaults for fields we cannot honour: a payload may carry them as long as they are unset.
_UNSUPPORTED_DEFAULTS = {
    "interp": ("Off", None),
    "interp_x": None,  # only meaningful with interp; any value accepted
    "freeinit_enable": (False, None),
    "freeinit_filter": None,
    "freeinit_ds": None,
    "freeinit_dt": None,
    "freeinit_iters": None,
    "latent_power_last": None,
    "latent_scale_last": None,
    "request_id": None,
    "is_i2i_batch": (False, None),
    "video_default": None,
    "prompt_scheduler": None,
}

_PATHS = {"video_source": "control_video_path", "video_path": "control_frames_dir", "mask_path": "control_masks_dir"}

_THEIR_FIELDS = {
    "model", "enable", "video_length", "fps", "loop_number", "closed_loop", "batch_size", "stride",
    "overlap", "format", "latent_power", "latent_scale", "last_frame",
} | set(_UNSUPPORTED_DEFAULTS) | set(_PATHS)

# Fields that exist only in their payload: one of them marks a payload as theirs.
_MARKERS = {"model", "video_length", "loop_number", "batch_size", "overlap", "stride", "format"} | set(_UNSUPPORTED_DEFAULTS) | set(_PATHS)


def looks_like_animatediff_payload(values: Dict[str, Any]) -> bool:
    return isinstance(values, dict) and bool(_MARKERS & set(values))


def translate(values: Dict[str, Any]) -> Dict[str, Any]:
    """Their payload -> our field dict (validated afterwards by parse_args)."""
    unknown = sorted(set(values) - _THEIR_FIELDS)
    if unknown:
        raise InvalidInputError(
            f"the args look like an sd-webui-animatediff payload but have fields it does not define: {unknown}; "
            f"use either their fields or ours, not a mix"
        )
    for name, allowed in _UNSUPPORTED_DEFAULTS.items():
        if allowed is not None and name in values and values[name] not in allowed:
            raise InvalidInputError(f"sd-webui-animatediff field '{name}' = {values[name]!r} is not supported by this extension")

    out: Dict[str, Any] = {}
    simple = {"model": "motion_module", "enable": "enable", "fps": "fps", "loop_number": "loop",
              "stride": "context_stride", "latent_power": "latent_power", "latent_scale": "latent_scale",
              "last_frame": "last_frame"}
    for theirs, ours in simple.items():
        if theirs in values and values[theirs] is not None:
            out[ours] = values[theirs]
    for theirs, ours in _PATHS.items():
        if values.get(theirs) not in (None, ""):
            out[ours] = values[theirs]

    context = values.get("batch_size", 16)
    if "batch_size" in values:
        out["context_length"] = context
    has_video = any(values.get(name) not in (None, "") for name in ("video_source", "video_path"))
    if "video_length" in values:
        length = values["video_length"]
        if length != 0:
            out["frames"] = length
        elif not has_video:  # with a video, 0 means all of its frames: ours when 'frames' is left out
            out["frames"] = context
    if "overlap" in values:
        overlap = values["overlap"]
        out["context_overlap"] = context // 4 if overlap == -1 else overlap
    if "closed_loop" in values:
        mode = values["closed_loop"]
        if mode not in ("N", "R-P", "R+P", "A"):
            raise InvalidInputError(f"'closed_loop' must be one of 'N', 'R-P', 'R+P', 'A' in an sd-webui-animatediff payload; got {mode!r}")
        out["closed_loop"] = mode != "N"
    if "format" in values:
        formats = values["format"]
        if isinstance(formats, str):
            formats = [formats]
        if not isinstance(formats, (list, tuple)):
            raise InvalidInputError(f"'format' must be a list, got {formats!r}")
        out["formats"] = [f for f in formats if not (isinstance(f, str) and f.upper() in ("TXT", "FRAME"))]
    return out
