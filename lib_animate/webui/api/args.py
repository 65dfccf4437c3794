"""The script's arguments: one dict of named fields, validated once where it enters.

The API sends ``alwayson_scripts: {"animate anyone": {"args": [ {...} ]}}``; the UI's
components are gathered into the same dict. :func:`parse_args` checks every field (unknown
names, types, ranges, allowed values) and returns an :class:`AnimateArgs`; anything wrong raises
``InvalidInputError`` naming the field. Checks that need the webui or the files on disk (does the
motion module exist, does the context fit its window) happen in the job set-up.

This module is plain Python so CI can test it without a webui.
"""

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Dict, List, Tuple

from ...errors import InvalidInputError
from ...sampling.context import CONTEXT_SCHEDULES, SCHEDULES

MODES = ("animatediff", "animate_anyone")
FORMATS = ("GIF", "MP4", "WEBM", "WEBP", "PNG")
NOISE_SCHEDULES = ("motion_module", "checkpoint")
NOISE_INITS = ("independent", "freenoise")
FREEINIT_FILTERS = ("butterworth", "gaussian", "ideal", "box")
FUSIONS = ("pyramid", "flat")
INTERPOLATIONS = ("slerp", "lerp")
FITS = ("resize", "letterbox")
POSE_SOURCES = ("auto", "skeleton", "person")
REFERENCE_NOISES = ("step", "clean")
AA_DDIM = "animate_anyone_ddim"
MAX_FRAMES = 1024  # a safety cap on one video; context windows keep memory flat below it


@dataclass
class MotionLoraArg:
    name: str
    strength: float = 1.0


@dataclass
class AnimateArgs:
    enable: bool = False
    mode: str = "animatediff"
    motion_module: str = ""  # file name in the motion module folder; "" = the first one found
    frames: int = 16
    fps: float = 8.0
    loop: int = 0  # GIF/WebP loop count, 0 = forever
    formats: List[str] = field(default_factory=lambda: ["GIF"])
    context_length: int = 0  # 0 = the motion module's window
    context_overlap: int = 4
    context_schedule: str = "open"  # the mode's default: "open" (AnimateDiff), "reference" (Animate Anyone)
    closed_loop: bool = False  # context windows wrap around (and prompt travel, unless prompt_travel_loop says); from the schedule
    prompt_travel_loop: Any = None  # None = as closed_loop; true/false: prompt travel interpolates last -> first or not
    pingpong: bool = False  # videos play forward, then back (the reversed frames without the two ends)
    context_stride: int = 1
    fusion: str = "pyramid"  # from the schedule unless given
    motion_scale: Any = 1.0  # a number, one number per frame, or keyframes "0:1.0, 8:0.6" (0 = the image model alone)
    noise_init: str = "independent"  # "freenoise": later frames' initial noise is a shuffle of the first window's
    freenoise_window: int = 0  # 0 = the context length
    freenoise_stride: int = 4
    freeinit_iterations: int = 0  # FreeInit: extra sampling passes from the re-noised result (0 = off)
    freeinit_filter: str = "butterworth"
    freeinit_spatial: float = 0.25  # the low-pass filter's spatial stop frequency (0 .. 1)
    freeinit_temporal: float = 0.25  # its temporal stop frequency (0 .. 1)
    freeinit_order: float = 4.0  # the Butterworth filter's order
    freeinit_all_passes: bool = False  # also return the earlier passes (of the first video) as extra videos
    noise_schedule: str = "motion_module"
    motion_loras: List[MotionLoraArg] = field(default_factory=list)
    prompt_interpolation: str = "slerp"
    init_strength: float = 1.0  # img2img: how strongly the init image pins the first frame
    latent_power: float = 1.0
    latent_scale: float = 32.0
    latent_power_last: float = 1.0  # img2img with last_frame: its pin fades as 1 - (F-1-i)^power / scale
    latent_scale_last: float = 32.0
    last_frame: Any = None  # img2img: base64 string (API) or PIL image (UI)
    # animate_anyone mode
    reference_image: Any = None  # base64 string (API) or PIL image (UI)
    pose_video: Any = None  # base64 string (API) or bytes (UI upload) of an MP4 / WebM / GIF / WebP
    pose_frames: Any = None  # list of base64 strings or PIL images
    pose_json: Any = None  # OpenPose / ControlNet keypoint JSON: a frame, a list of frames or {"poses": [...]}
    pose_source: str = "auto"  # pose_video holds rendered skeletons, a person (DWPose detection), or auto
    pose_stride: int = 1
    pose_fps: float = 0.0  # resample the pose video to this fps (0 = keep its own)
    pose_max_frames: int = 0  # use at most this many pose frames (0 = all, up to the configured maximum)
    fit: str = "resize"
    draw_face: bool = True
    draw_hands: bool = True
    sampler: str = AA_DDIM
    retarget: bool = False  # the driving poses take the reference's body proportions (both modes)
    reference_pose_json: Any = None  # the reference's keypoints for retargeting (else DWPose on the reference)
    # AnimateDiff mode's character option: the user's checkpoint takes the look of reference_image
    # (reference attention from the loaded UNet) and the moves of the pose input (an OpenPose unit)
    character: bool = False
    reference_strength: float = 1.0  # 0 = no reference pass at all
    style_fidelity: float = 0.5  # uncond rows: this much plain attention, the rest reference attention
    reference_noise: str = "step"  # "step": the reference noised to every evaluation's sigma; "clean": once at sigma 0
    # ControlNet video bridge (AnimateDiff mode): per-frame inputs for sd-webui-controlnet's units
    control_video: Any = None  # base64 string (API) or bytes (UI upload) of a video
    control_video_path: str = ""  # a video file on the server (only where the webui allows server paths)
    control_frames: Any = None  # list of base64 strings or PIL images, one per frame
    control_frames_dir: str = ""  # a folder of frame images on the server
    control_masks_dir: str = ""  # a folder of per-frame masks for inpaint units (server)
    control_pose_json: Any = None  # OpenPose / ControlNet keypoints, rendered as skeleton frames
    control_stride: int = 1  # keep every n-th frame of every per-frame source
    control_maps: bool = False  # return ControlNet's detected maps (after the videos) and a video of them
    init_video: Any = None  # img2img: base64 string or bytes of a video, one init image per frame
    # names of the fields the request set explicitly (not part of the infotext)
    given: frozenset = field(default_factory=frozenset, compare=False)
    # the request came as an sd-webui-animatediff payload: its rules (compat_animatediff.AnimateDiffCompat)
    compat: Any = field(default=None, compare=False)

    def as_infotext_dict(self) -> Dict[str, Any]:
        """Every setting of this mode that shapes the result (images and videos are not repeated)."""
        other_mode = _ANIMATE_ANYONE_ONLY if self.mode == "animatediff" else _ANIMATEDIFF_ONLY
        if self.mode == "animatediff":
            # the character option's pose settings shape the result too; without it, its own fields do not
            other_mode = tuple(f for f in other_mode if f not in _POSE_SETTINGS) if self.character else other_mode + _CHARACTER
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _NOT_IN_INFOTEXT or f.name in other_mode or (f.name in _OMITTED_WHEN_NONE and value is None):
                continue
            if f.name == "motion_loras":
                value = [{"name": lora.name, "strength": lora.strength} for lora in value]
            out[f.name] = value
        return out


CONTROL_INPUTS = ("control_video", "control_video_path", "control_frames", "control_frames_dir", "control_pose_json")
_NOT_IN_INFOTEXT = ("enable", "last_frame", "reference_image", "pose_video", "pose_frames", "pose_json", "given",
                    "reference_pose_json",
                    "control_masks_dir", "init_video", "compat") + CONTROL_INPUTS
_OMITTED_WHEN_NONE = ("prompt_travel_loop",)
POSE_INPUTS = ("pose_video", "pose_frames", "pose_json")
_POSE_SETTINGS = ("pose_source", "pose_stride", "pose_fps", "pose_max_frames", "fit", "draw_face", "draw_hands", "retarget")
_CHARACTER = ("character", "reference_strength", "style_fidelity", "reference_noise")
_ANIMATE_ANYONE_ONLY = _POSE_SETTINGS + ("sampler",)
_ANIMATEDIFF_ONLY = ("motion_module", "noise_schedule", "motion_loras", "prompt_interpolation", "prompt_travel_loop",
                     "freeinit_iterations", "freeinit_filter", "freeinit_spatial", "freeinit_temporal", "freeinit_order",
                     "freeinit_all_passes",
                     "init_strength", "latent_power", "latent_scale", "latent_power_last", "latent_scale_last",
                     "control_stride", "control_maps") + _CHARACTER


def field_names() -> Tuple[str, ...]:
    return tuple(f.name for f in fields(AnimateArgs) if f.name not in _NOT_FIELDS)


_NOT_FIELDS = ("given", "compat")  # attributes the job sets, never sent by a request


# --- type checks --------------------------------------------------------------------------------

def _bool(name, value):
    if isinstance(value, bool):
        return value
    raise InvalidInputError(f"'{name}' must be true or false, got {value!r}")


def _int(name, value, minimum=None, maximum=None):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
        raise InvalidInputError(f"'{name}' must be a whole number, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise InvalidInputError(f"'{name}' must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise InvalidInputError(f"'{name}' must be at most {maximum}, got {value}")
    return value


def _number(name, value, minimum=None, maximum=None, exclusive_minimum=None):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInputError(f"'{name}' must be a number, got {value!r}")
    value = float(value)
    if exclusive_minimum is not None and value <= exclusive_minimum:
        raise InvalidInputError(f"'{name}' must be greater than {exclusive_minimum:g}, got {value:g}")
    if minimum is not None and value < minimum:
        raise InvalidInputError(f"'{name}' must be at least {minimum:g}, got {value:g}")
    if maximum is not None and value > maximum:
        raise InvalidInputError(f"'{name}' must be at most {maximum:g}, got {value:g}")
    return value


def _choice(name, value, allowed):
    if not isinstance(value, str) or value not in allowed:
        raise InvalidInputError(f"'{name}' must be one of {', '.join(repr(a) for a in allowed)}; got {value!r}")
    return value


def _string(name, value):
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInputError(f"'{name}' must be a string, got {value!r}")
    return value.strip()


def _formats(name, value):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise InvalidInputError(f"'{name}' must be a list of {', '.join(FORMATS)}; got {value!r}")
    out = []
    for item in value:
        if not isinstance(item, str) or item.upper() not in FORMATS:
            raise InvalidInputError(f"unknown format {item!r} in '{name}'; allowed: {', '.join(FORMATS)}")
        if item.upper() not in out:
            out.append(item.upper())
    return out


def _motion_scale(name, value):
    """Checked in full (ranges, keyframes against the frame count) by the job, which knows the frames."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, list, tuple)):
        raise InvalidInputError(f"'{name}' must be a number, a list of numbers or keyframes like \"0:1.0, 8:0.6\"; got {value!r}")
    return list(value) if isinstance(value, tuple) else value


def _optional_bool(name, value):
    if value is None or isinstance(value, bool):
        return value
    raise InvalidInputError(f"'{name}' must be true, false or null, got {value!r}")


def _data(name, value):
    """A file's content: base64 text (API) or bytes (UI upload); decoded by the job."""
    if value is None or isinstance(value, (str, bytes, bytearray)):
        return value
    raise InvalidInputError(f"'{name}' must be a base64 string, got {type(value).__name__}")


def _optional_list(name, value):
    if value is None:
        return None
    if not isinstance(value, (list, tuple)):
        raise InvalidInputError(f"'{name}' must be a list, got {type(value).__name__}")
    return list(value)


def _motion_loras(name, value):
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise InvalidInputError(f"'{name}' must be a list of {{\"name\": file, \"strength\": number}}; got {value!r}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise InvalidInputError(f"'{name}[{i}]' must be {{\"name\": file, \"strength\": number}}, got {item!r}")
        unknown = set(item) - {"name", "strength"}
        if unknown:
            raise InvalidInputError(f"'{name}[{i}]' has unknown fields {sorted(unknown)}; use 'name' and 'strength'")
        lora_name = _string(f"{name}[{i}].name", item.get("name"))
        if not lora_name:
            raise InvalidInputError(f"'{name}[{i}].name' must name a motion LoRA file")
        out.append(MotionLoraArg(lora_name, _number(f"{name}[{i}].strength", item.get("strength", 1.0), -10, 10)))
    return out


# field -> validator(name, value)
_VALIDATORS = {
    "enable": _bool,
    "mode": lambda n, v: _choice(n, v, MODES),
    "motion_module": _string,
    "frames": lambda n, v: _int(n, v, 2, MAX_FRAMES),
    "fps": lambda n, v: _number(n, v, exclusive_minimum=0, maximum=240),
    "loop": lambda n, v: _int(n, v, 0, 65535),
    "formats": _formats,
    "context_length": lambda n, v: _int(n, v, 0, MAX_FRAMES),
    "context_overlap": lambda n, v: _int(n, v, 0, MAX_FRAMES),
    "context_schedule": lambda n, v: _choice(n, v, CONTEXT_SCHEDULES),
    "closed_loop": _bool,
    "prompt_travel_loop": _optional_bool,
    "pingpong": _bool,
    "context_stride": lambda n, v: _int(n, v, 1, 8),
    "fusion": lambda n, v: _choice(n, v, FUSIONS),
    "motion_scale": _motion_scale,
    "noise_init": lambda n, v: _choice(n, v, NOISE_INITS),
    "freenoise_window": lambda n, v: _int(n, v, 0, MAX_FRAMES),
    "freenoise_stride": lambda n, v: _int(n, v, 1, MAX_FRAMES),
    "freeinit_iterations": lambda n, v: _int(n, v, 0, 8),
    "freeinit_filter": lambda n, v: _choice(n, v, FREEINIT_FILTERS),
    "freeinit_spatial": lambda n, v: _number(n, v, 0.0, 1.0),
    "freeinit_temporal": lambda n, v: _number(n, v, 0.0, 1.0),
    "freeinit_order": lambda n, v: _number(n, v, exclusive_minimum=0, maximum=32),
    "freeinit_all_passes": _bool,
    "noise_schedule": lambda n, v: _choice(n, v, NOISE_SCHEDULES),
    "motion_loras": _motion_loras,
    "prompt_interpolation": lambda n, v: _choice(n, v, INTERPOLATIONS),
    "init_strength": lambda n, v: _number(n, v, 0.0, 1.0),
    "latent_power": lambda n, v: _number(n, v, exclusive_minimum=0, maximum=100),
    "latent_scale": lambda n, v: _number(n, v, exclusive_minimum=0, maximum=10000),
    "latent_power_last": lambda n, v: _number(n, v, exclusive_minimum=0, maximum=100),
    "latent_scale_last": lambda n, v: _number(n, v, exclusive_minimum=0, maximum=10000),
    "last_frame": lambda n, v: v,  # decoded (and checked) by the job, which has the webui's image decoder
    "reference_image": lambda n, v: v,
    "pose_video": lambda n, v: v,
    "pose_frames": _optional_list,
    "pose_json": lambda n, v: v,  # parsed by lib_animate.pose (clear errors per frame)
    "pose_source": lambda n, v: _choice(n, v, POSE_SOURCES),
    "pose_stride": lambda n, v: _int(n, v, 1, 1000),
    "pose_fps": lambda n, v: _number(n, v, 0, 240),
    "pose_max_frames": lambda n, v: _int(n, v, 0, MAX_FRAMES),
    "fit": lambda n, v: _choice(n, v, FITS),
    "draw_face": _bool,
    "draw_hands": _bool,
    "sampler": _string,  # a webui sampler name or animate_anyone_ddim, checked by the job
    "retarget": _bool,
    "reference_pose_json": lambda n, v: v,  # parsed by lib_animate.pose
    "character": _bool,
    "reference_strength": lambda n, v: _number(n, v, 0.0, 2.0),
    "style_fidelity": lambda n, v: _number(n, v, 0.0, 1.0),
    "reference_noise": lambda n, v: _choice(n, v, REFERENCE_NOISES),
    "control_video": lambda n, v: _data(n, v),
    "control_video_path": _string,
    "control_frames": _optional_list,
    "control_frames_dir": _string,
    "control_masks_dir": _string,
    "control_pose_json": lambda n, v: v,  # parsed by lib_animate.pose
    "control_stride": lambda n, v: _int(n, v, 1, 1000),
    "control_maps": _bool,
    "init_video": lambda n, v: _data(n, v),
}
assert set(_VALIDATORS) == set(field_names())


def _given(args: "AnimateArgs", names) -> Tuple[str, ...]:
    return tuple(name for name in names if getattr(args, name) not in (None, "", [], b""))


def pose_inputs_given(args: "AnimateArgs") -> Tuple[str, ...]:
    """The pose fields that hold something (``None``, ``""`` and ``[]`` count as empty)."""
    return _given(args, POSE_INPUTS)


def control_inputs_given(args: "AnimateArgs") -> Tuple[str, ...]:
    """The control-source fields that hold something."""
    return _given(args, CONTROL_INPUTS)


def has_init_video(args: "AnimateArgs") -> bool:
    return bool(_given(args, ("init_video",)))


_PINNING_DEFAULTS = {"init_strength": 1.0, "latent_power": 1.0, "latent_scale": 32.0, "latent_power_last": 1.0,
                     "latent_scale_last": 32.0}


def _check_character(args: "AnimateArgs") -> None:
    """The character option's inputs: which fields go with which mode and option."""
    poses = pose_inputs_given(args)
    if args.mode == "animate_anyone":
        if args.character:
            raise InvalidInputError("'character' is an option of the AnimateDiff mode; the Animate Anyone mode always animates "
                                    "its reference image")
        return
    if args.character:
        if not _given(args, ("reference_image",)):
            raise InvalidInputError("'character' needs 'reference_image': the character whose look the video takes")
        if not poses:
            raise InvalidInputError("'character' needs a pose input: 'pose_video', 'pose_frames' or 'pose_json' (the moves, "
                                    "given to an OpenPose ControlNet unit)")
        controls = control_inputs_given(args)
        if controls:
            raise InvalidInputError(f"'character' feeds its pose input to the ControlNet units as their control source, so "
                                    f"'{controls[0]}' cannot be given too; send the poses as 'pose_video', 'pose_frames' or 'pose_json'")
        return
    used = poses + _given(args, ("reference_image", "reference_pose_json")) + tuple(
        name for name in ("retarget",) if getattr(args, name))
    if used:
        raise InvalidInputError(f"{', '.join(repr(u) for u in used)} belong to the Animate Anyone mode or to the AnimateDiff "
                                f"mode's character option: set 'mode': 'animate_anyone', or 'character': true")


def _check_video_inputs(args: "AnimateArgs") -> None:
    controls = control_inputs_given(args)
    if len(controls) > 1:
        raise InvalidInputError(f"several control sources at once ({', '.join(controls)}); give at most one of them")
    _check_character(args)
    if args.mode != "animatediff":
        used = controls + _given(args, ("control_masks_dir", "init_video"))
        if used:
            raise InvalidInputError(
                f"{', '.join(repr(u) for u in used)} belong to the AnimateDiff mode; the Animate Anyone mode takes its "
                f"poses from 'pose_video', 'pose_frames' or 'pose_json'"
            )
    if has_init_video(args):
        pinned = [name for name, default in _PINNING_DEFAULTS.items() if getattr(args, name) != default]
        if _given(args, ("last_frame",)):
            pinned.insert(0, "last_frame")
        if pinned:
            raise InvalidInputError(
                f"'init_video' gives every frame its own init image, so it cannot be combined with the first/last-frame "
                f"pinning ({', '.join(repr(p) for p in pinned)}); leave those at their defaults"
            )


def parse_args(values: Dict[str, Any]) -> AnimateArgs:
    """Validate a dict of named fields (missing ones take their defaults)."""
    if not isinstance(values, dict):
        raise InvalidInputError(
            f"the script's args must be a list holding one dict of named fields, e.g. "
            f"\"args\": [{{\"enable\": true, \"frames\": 16}}]; got {type(values).__name__}"
        )
    unknown = sorted(set(values) - set(_VALIDATORS))
    if unknown:
        raise InvalidInputError(
            f"unknown field(s) {', '.join(repr(u) for u in unknown)}; known fields: {', '.join(field_names())}"
        )
    parsed = {name: _VALIDATORS[name](name, value) for name, value in values.items()}
    args = _with_schedule(AnimateArgs(**parsed, given=frozenset(values)))
    _check_together(args)
    return args


# --- context-window schedule --------------------------------------------------------------------

MODE_SCHEDULES = {"animatediff": "open", "animate_anyone": "reference"}
_WINDOW_FIELDS = ("closed_loop", "fusion", "context_stride")


def _schedule_conflicts(args: AnimateArgs, name: str) -> List[str]:
    """The explicitly given window fields that the schedule ``name`` does not allow."""
    schedule = SCHEDULES[name]
    conflicts = []
    if "closed_loop" in args.given and args.closed_loop != schedule.closed_loop:
        conflicts.append(f"'closed_loop' {str(args.closed_loop).lower()}")
    if schedule.fixed and "fusion" in args.given and args.fusion != schedule.fusion:
        conflicts.append(f"'fusion' {args.fusion!r}")
    if schedule.fixed and "context_stride" in args.given and args.context_stride != 1:
        conflicts.append(f"'context_stride' {args.context_stride}")
    return conflicts


def _with_schedule(args: AnimateArgs) -> AnimateArgs:
    """Resolve ``context_schedule`` and the window fields it implies.

    Given explicitly, the schedule is what runs and a window field that contradicts it is an
    error. Left out, it is the mode's default, unless the request's own window fields contradict
    that default: then the first schedule they fit ("open", then "loop"), so that requests made
    before the field existed keep their meaning. ``closed_loop`` always follows the schedule;
    ``fusion`` does unless given.
    """
    default = MODE_SCHEDULES.get(args.mode, "open")
    if "context_schedule" in args.given:
        name = args.context_schedule
        conflicts = _schedule_conflicts(args, name)
        if conflicts:
            schedule = SCHEDULES[name]
            fixes = f"closed_loop {str(schedule.closed_loop).lower()}"
            if schedule.fixed:
                fixes += f", fusion {schedule.fusion!r} and context_stride 1"
            raise InvalidInputError(
                f"{' and '.join(conflicts)} contradict{'s' if len(conflicts) == 1 else ''} 'context_schedule' {name!r}: "
                f"{schedule.summary}, which means {fixes}. Leave {'it' if len(conflicts) == 1 else 'them'} out or choose "
                f"another schedule ({', '.join(repr(s) for s in CONTEXT_SCHEDULES)})"
            )
    else:
        # "open" and "loop" take any fusion and stride, and one of them any closed_loop: one fits.
        name = next(n for n in (default, "open", "loop") if not _schedule_conflicts(args, n))
    schedule = SCHEDULES[name]
    fusion = args.fusion if "fusion" in args.given else schedule.fusion
    return replace(args, context_schedule=name, closed_loop=schedule.closed_loop, fusion=fusion)


# An X/Y/Z plot axis that sets every motion LoRA's strength (not a field of its own).
MOTION_LORA_STRENGTH = "motion_lora_strength"
# Attributes on p: the values an X/Y/Z plot cell sets (a new dict per cell: the plot copies p
# shallowly), and the list the cells' video entries are collected in (made on the plot's own p).
XYZ_OVERRIDES = "animate_anyone_xyz"
XYZ_CELLS = "animate_anyone_xyz_cells"


def check_override(name: str, value: Any) -> Any:
    """One value an X/Y/Z axis would set, checked as the field's own values are."""
    if name == MOTION_LORA_STRENGTH:
        return _number(name, value, -10, 10)
    if name not in _VALIDATORS:
        raise InvalidInputError(f"unknown field {name!r}")
    return _VALIDATORS[name](name, value)


def with_overrides(args: AnimateArgs, overrides: Dict[str, Any]) -> AnimateArgs:
    """``args`` with the values an X/Y/Z plot cell sets (an axis of ours also enables the job)."""
    values = {name: check_override(name, value) for name, value in overrides.items()}
    strength = values.pop(MOTION_LORA_STRENGTH, None)
    if strength is not None:
        if not args.motion_loras:
            raise InvalidInputError("the X/Y/Z plot sets a motion LoRA strength, but the job has no motion LoRA; choose one")
        values["motion_loras"] = [MotionLoraArg(lora.name, strength) for lora in args.motion_loras]
    new = _with_schedule(replace(args, enable=True, given=args.given | frozenset(values), **values))
    _check_together(new)
    return new


def _check_together(args: AnimateArgs) -> None:
    """The checks that involve several fields."""
    if args.freenoise_window and args.freenoise_stride > args.freenoise_window:
        raise InvalidInputError(
            f"'freenoise_stride' ({args.freenoise_stride}) cannot exceed 'freenoise_window' ({args.freenoise_window})"
        )
    if args.context_length and args.context_overlap >= args.context_length:
        raise InvalidInputError(
            f"'context_overlap' ({args.context_overlap}) must be smaller than 'context_length' ({args.context_length})"
        )
    _check_video_inputs(args)
