"""sd-webui-controlnet's units in a video job: which frames each unit gets (``before_process``).

This runs before ControlNet's batch hijack and its ``process()``. Every enabled unit is copied
(the UI's unit objects stay untouched) and written back into ``p.script_args``:

* a unit with one image (or an IP-Adapter's ``ipadapter_input``) applies it to every frame and is
  left as it is;
* a unit with its own frames -- a batch folder (input mode "batch") or a list of at least two
  ``{"image", "mask"}`` dicts (or three or more plain images; ControlNet reads a two-item list as
  ``[image, mask]``) -- takes one of them per frame;
* a unit without an input takes the request's control source, else (img2img) the init video's
  frames, one per frame.

Per-frame units are switched to ControlNet's own AnimateDiff batch path (``animatediff_batch``)
with a folder holding exactly the job's frames, and "simple" input mode so that the batch hijack
does not turn them into one generation per image. What ControlNet cannot do per frame is refused
here, before anything runs, with the reason.
"""

import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

from ...errors import InvalidInputError
from ...video.frame_files import link_frames
from .control_sources import FrameSource, SourceLimits, check_server_path, folder_source, image_list_source
from ..errors import RequestError

CONTROLNET_TITLE = "controlnet"
PER_FRAME_IPADAPTER_BROKEN = (
    "a per-frame IP-Adapter is broken in sd-webui-controlnet 1.1.455 (its AnimateDiff path raises "
    "\"ImageEmbed.__new__() takes 3 positional arguments but 4 were given\"); give the IP-Adapter unit one reference image"
)
BATCH_OPTION_DEFAULT = "All ControlNet units for all images in a batch"


def find_script(p) -> Optional[Any]:
    """ControlNet's AlwaysVisible script in this job's script runner, or None."""
    runner = getattr(p, "scripts", None)
    for script in getattr(runner, "alwayson_scripts", None) or []:
        try:
            if script.title().lower() == CONTROLNET_TITLE:
                return script
        except Exception:  # a broken script's title() must not break the job
            continue
    return None


def script_units(p, script) -> List[Any]:
    args = list(getattr(p, "script_args", None) or [])
    return args[script.args_from:script.args_to]


def is_enabled(unit) -> bool:
    value = unit.get("enabled", False) if isinstance(unit, dict) else getattr(unit, "enabled", False)
    return bool(value)


def enabled_unit_numbers(p) -> List[int]:
    script = find_script(p)
    if script is None:
        return []
    return [i for i, unit in enumerate(script_units(p, script)) if _looks_like_unit(unit) and is_enabled(unit)]


def stand_down(p) -> None:
    """Disable every ControlNet unit of a job that will not run (with copies: the UI's units stay).

    The job's error is raised from ``p.init``, but ControlNet's batch hijack runs before that and
    would fail first on a batch unit (with a less useful error), and its ``process()`` may run after
    ours; with no enabled unit ControlNet does nothing."""
    script = find_script(p)
    if script is None or getattr(p, "script_args", None) is None:
        return
    p.script_args = list(p.script_args)
    for i, unit in enumerate(script_units(p, script)):
        if _looks_like_unit(unit) and is_enabled(unit):
            off = dict(unit, enabled=False) if isinstance(unit, dict) else unit.copy(update={"enabled": False})
            p.script_args[script.args_from + i] = off


def _looks_like_unit(value) -> bool:
    return isinstance(value, dict) or hasattr(value, "enabled") and hasattr(value, "module")


def unit_class(units: List[Any]) -> Optional[type]:
    """ControlNet's ``ControlNetUnit`` class (from a unit object, or the module ControlNet imports it from)."""
    for unit in units:
        if not isinstance(unit, dict) and hasattr(type(unit), "__fields__"):
            return type(unit)
    for name in ("internal_controlnet.external_code", "scripts.external_code"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "ControlNetUnit"):
            return module.ControlNetUnit
    return None


@dataclass
class UnitPlan:
    number: int  # position among ControlNet's units ("ControlNet Unit N" in the UI, args index in the API)
    unit: Any  # the copy written back into p.script_args
    per_frame: Optional[FrameSource] = None  # None: one input for every frame

    @property
    def label(self) -> str:
        return f"ControlNet unit {self.number} ({self.unit.module} / {self.unit.model})"


@dataclass
class ControlPlan:
    script: Any
    units: List[UnitPlan] = field(default_factory=list)  # the enabled units, in order

    @property
    def per_frame_units(self) -> List[UnitPlan]:
        return [u for u in self.units if u.per_frame is not None]


@dataclass
class VideoRequest:
    """What the job knows before the units are planned."""

    control: Optional[FrameSource]  # the request's control source
    init_frames: Optional[Callable[[], FrameSource]]  # img2img init video: its frame files (written on demand)
    limits: SourceLimits
    folder_for: Callable[[str], str]  # a named folder inside the job's scratch folder
    is_img2img: bool
    save_maps: bool
    stride: int = 1  # control_stride: applies to units' own frames too
    decode_base64: Optional[Callable] = None


def plan_units(p, request: VideoRequest) -> Optional[ControlPlan]:
    """Copy and classify every enabled unit (see the module doc); None when no unit is enabled."""
    script = find_script(p)
    if script is None:
        if request.control is not None:
            raise RequestError(f"{request.control.name} feeds sd-webui-controlnet's units, but the ControlNet extension is "
                               f"not installed or not enabled")
        return None
    p.script_args = list(p.script_args)  # the API hands over a tuple
    units = script_units(p, script)
    cls = unit_class(units)
    plan = ControlPlan(script)
    for number, raw in enumerate(units):
        if not _looks_like_unit(raw) or not is_enabled(raw):
            continue
        unit = _copy_unit(raw, cls, number)
        plan.units.append(_plan_unit(p, number, unit, request))
        p.script_args[script.args_from + number] = unit
    if not plan.units:
        if request.control is not None:
            raise RequestError(f"{request.control.name} is given but no ControlNet unit is enabled; enable a unit and leave "
                               f"its image empty so that it takes one frame per video frame")
        return None
    if request.control is not None and not any(u.per_frame is request.control for u in plan.units):
        raise RequestError(f"{request.control.name} is given but every enabled ControlNet unit has an input of its own, so no "
                           f"unit would use it; leave a unit's image empty for it")
    if plan.per_frame_units and (cls is None or "animatediff_batch" not in getattr(cls, "__fields__", {})):
        raise RequestError("this sd-webui-controlnet is older than 1.1.449 (its units have no 'animatediff_batch' field), which "
                           "is needed for one hint per frame; update the ControlNet extension")
    _check_batch_options(script)
    return plan


def _copy_unit(raw, cls, number: int):
    if not isinstance(raw, dict):
        return raw.copy()  # the UI's unit object must stay as the user left it
    if cls is None:
        raise RequestError("cannot find sd-webui-controlnet's ControlNetUnit class; is the ControlNet extension loaded?")
    try:
        return cls.from_dict(raw) if hasattr(cls, "from_dict") else cls(**raw)
    except Exception as e:  # pydantic's message names the field
        raise RequestError(f"ControlNet unit {number}: {e}") from e


def _is_ipadapter(unit) -> bool:
    try:
        return bool(unit.is_ipadapter)
    except Exception:
        return "ip-adapter" in str(unit.module).lower()


def _input_mode(unit) -> str:
    mode = getattr(unit, "input_mode", "simple")
    return str(getattr(mode, "value", mode)).lower()


def _own_frames(number: int, unit, label: str, request: VideoRequest) -> Optional[FrameSource]:
    """The unit's own per-frame input, or None (one image, or no input at all)."""
    limits = request.limits
    if _input_mode(unit) == "batch":
        lines = [line.strip() for line in str(unit.batch_images or "").splitlines() if line.strip()]
        if not lines:
            raise RequestError(f"{label} is in batch mode but its batch folder is empty")
        if any(line.startswith("keyframe:") for line in lines[1:]):
            raise RequestError(f"{label}: 'keyframe:' lines are not supported (sd-webui-controlnet gives the frames between "
                               f"keyframes an all-black hint, not 'no control'); give one image per frame")
        masks = next((line[len("mask:"):].strip() for line in lines[1:] if line.startswith("mask:")), "")
        check_server_path(f"{label}'s batch folder", limits)
        source = folder_source(lines[0], f"{label}'s batch folder", request.stride, limits, masks=masks)
        source.kind = "batch_folder"
        return source
    image = getattr(unit, "image", None)
    if isinstance(image, (list, tuple)) and not _is_ipadapter(unit):
        is_dict_list = bool(image) and isinstance(image[0], dict)
        if (is_dict_list and len(image) >= 2) or (not is_dict_list and len(image) >= 3):
            folder = request.folder_for(f"unit{number}-images")
            source = image_list_source(image, f"{label}'s images", request.stride, limits, folder, request.decode_base64)
            source.kind = "images"
            return source
    return None


def _has_own_input(unit) -> bool:
    if getattr(unit, "ipadapter_input", None) is not None:
        return True
    image = getattr(unit, "image", None)
    return image is not None and not (isinstance(image, (list, tuple, str)) and len(image) == 0)


def _plan_unit(p, number: int, unit, request: VideoRequest) -> UnitPlan:
    plan = UnitPlan(number, unit)
    label = plan.label
    own = _own_frames(number, unit, label, request)
    if own is not None:
        plan.per_frame = own
    elif not _has_own_input(unit) and _input_mode(unit) != "batch":
        if request.control is not None:
            plan.per_frame = request.control
        elif request.init_frames is not None:
            plan.per_frame = request.init_frames()
        elif not request.is_img2img:
            raise RequestError(f"{label} is enabled but has no image, and the request gives no control video or frames "
                               f"('control_video', 'control_frames', ...); give the unit an image or the job a control source")
        # img2img without a control source: ControlNet uses the init image for every frame
    unit.save_detected_map = request.save_maps
    if plan.per_frame is not None:
        _check_per_frame(p, unit, label)
    return plan


def _check_per_frame(p, unit, label: str) -> None:
    module, model = str(unit.module).lower(), str(unit.model).lower()
    if _is_ipadapter(unit):
        raise RequestError(f"{label}: {PER_FRAME_IPADAPTER_BROKEN}")
    if "sparsectrl" in model:
        raise RequestError(f"{label}: SparseCtrl models are not supported: sd-webui-controlnet runs them only with "
                           f"sd-webui-animatediff's motion code, and this extension does not implement them yet")
    if module.startswith("reference"):
        raise RequestError(f"{label}: reference-only takes one image (the look to keep), not one per frame; give it one image")
    if getattr(p, "image_mask", None) is not None and getattr(p, "inpaint_full_res", False):
        raise RequestError(f"{label}: inpainting with 'Only masked' cannot be combined with per-frame ControlNet units "
                           f"(sd-webui-controlnet skips its crop for frame lists, so the hints would not line up with the "
                           f"masked area); use 'Whole picture'")


def _check_batch_options(script) -> None:
    state = getattr(script, "ui_batch_option_state", None) or [BATCH_OPTION_DEFAULT, False]
    if state[0] != BATCH_OPTION_DEFAULT or (len(state) > 1 and state[1]):
        raise RequestError("sd-webui-controlnet's 'Batch Options' (one unit per image / StyleAlign) mix rows across the "
                           "frames of a video; set them back to the default in ControlNet's accordion")


def is_inpaint(unit) -> bool:
    return "inpaint" in str(unit.module).lower()


def configure_per_frame(plan: ControlPlan, frames: int, folder_for: Callable[[str], str],
                        inpaint_masks: Sequence[str] = ()) -> None:
    """Point every per-frame unit at a folder holding exactly its first ``frames`` frames; inpaint
    units without masks of their own get ``inpaint_masks`` (the request's ``control_masks_dir``)."""
    for unit_plan in plan.per_frame_units:
        source, unit = unit_plan.per_frame, unit_plan.unit
        batch = link_frames(source.paths[:frames], folder_for(f"unit{unit_plan.number}"))
        masks = source.mask_paths or (list(inpaint_masks) if is_inpaint(unit) else [])
        if masks:
            masks = masks[:frames] if len(masks) > 1 else masks
            batch += "\nmask:" + link_frames(masks, folder_for(f"unit{unit_plan.number}-masks"))
        unit.input_mode = type(unit.input_mode)("simple") if not isinstance(unit.input_mode, str) else "simple"
        unit.batch_images = batch
        unit.animatediff_batch = True
        unit.batch_modifiers = []
        unit.batch_keyframe_idx = None
        unit.image = None
        unit.mask = None


def check_lengths(counts: Dict[str, int], frames: int) -> None:
    """Every per-frame source (name -> frame count) must cover the video."""
    for name, count in counts.items():
        if count < frames:
            raise InvalidInputError(f"{name} has {count} frames but the video has {frames}; lower 'frames' or give a longer source")
