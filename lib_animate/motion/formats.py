"""Motion-module checkpoint formats, as data.

A file is read into a flat ``{key: tensor}`` dict; :func:`detect` names its family and layout and
:func:`normalize` rewrites its keys to the original AnimateDiff naming that
:class:`~lib_animate.motion.model.MotionModel` uses::

    {down_blocks.i | mid_block | up_blocks.i}.motion_modules.j.temporal_transformer.<suffix>

Sources of the facts (key names, shapes, version rules): research/animatediff.md §1.
"""

import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch

from ..errors import UnsupportedModelError, WeightsFileError
from ..key_check import compare_keys

# --- key naming -------------------------------------------------------------------------------

# One motion module's key, in any of the known namings, optionally behind a prefix
# ("unet.", "model.", ...). Group "block" is the level, "j" the module index, "rest" the suffix.
_MODULE_KEY = re.compile(
    r"^(?:.*?\.)?(?P<block>down_blocks\.\d+|up_blocks\.\d+|mid_block)"
    r"\.(?P<container>motion_modules|temporal_attentions)\.(?P<j>\d+)\.(?P<rest>.+)$"
)

# diffusers MotionAdapter suffixes -> original suffixes (after `temporal_transformer.`).
_DIFFUSERS_SUFFIXES = (
    (r"^transformer_blocks\.(\d+)\.attn1\.", r"transformer_blocks.\1.attention_blocks.0."),
    (r"^transformer_blocks\.(\d+)\.attn2\.", r"transformer_blocks.\1.attention_blocks.1."),
    (r"^transformer_blocks\.(\d+)\.norm1\.", r"transformer_blocks.\1.norms.0."),
    (r"^transformer_blocks\.(\d+)\.norm2\.", r"transformer_blocks.\1.norms.1."),
    (r"^transformer_blocks\.(\d+)\.norm3\.", r"transformer_blocks.\1.ff_norm."),
    (r"^transformer_blocks\.(\d+)\.pos_embed\.pe$", r"transformer_blocks.\1.attention_blocks.0.pos_encoder.pe"),
)

# HotShot-XL native suffix for the position encoding.
_HOTSHOT_PE = re.compile(r"\.pos_encoder\.positional_encoding$")

_PE_SUFFIX = re.compile(r"attention_blocks\.\d+\.pos_encoder\.pe$")

# The tensors of one original module (pe excluded), with their shapes in units of c (channels).
# Value: (rows, cols) multipliers; cols None for vectors.
MODULE_TENSORS = {
    "norm.weight": (1, None),
    "norm.bias": (1, None),
    "proj_in.weight": (1, 1),
    "proj_in.bias": (1, None),
    "proj_out.weight": (1, 1),
    "proj_out.bias": (1, None),
}
BLOCK_TENSORS = {  # under transformer_blocks.0.
    "ff_norm.weight": (1, None),
    "ff_norm.bias": (1, None),
    "ff.net.0.proj.weight": (8, 1),
    "ff.net.0.proj.bias": (8, None),
    "ff.net.2.weight": (1, 4),
    "ff.net.2.bias": (1, None),
}
ATTENTION_TENSORS = {  # under transformer_blocks.0.attention_blocks.a. and norms.a.
    "to_q.weight": (1, 1),
    "to_k.weight": (1, 1),
    "to_v.weight": (1, 1),
    "to_out.0.weight": (1, 1),
    "to_out.0.bias": (1, None),
}
NORM_TENSORS = {"weight": (1, None), "bias": (1, None)}


# --- families ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Family:
    version: str
    description: str
    sdxl: bool
    mid_block: bool
    pe_length: Optional[int]  # stored position-encoding length; None = file stores none
    max_frames: int  # the module's window (position-encoding length used at run time)
    cross_frame_unet_norm: bool  # v1: the UNet's ResBlock / output GroupNorm spans the frames
    schedule: str  # training noise schedule, a preset name in lib_animate.sampling.schedules
    module_norm_across_frames: bool = False  # AD-SDXL: the module's own GroupNorm spans the clip's frames


FAMILIES: Tuple[Family, ...] = (
    Family("v1", "AnimateDiff v1 (mm_sd_v14 / mm_sd_v15)", False, False, 24, 24, True, "animatediff_sd15"),
    Family("v3", "AnimateDiff v3 (v3_sd15_mm)", False, False, 32, 32, False, "animatediff_sd15"),
    Family("v2", "AnimateDiff v2 layout (mm_sd_v15_v2, AnimateDiff-Lightning, Animate Anyone motion_module)",
           False, True, 32, 32, False, "animatediff_sd15"),
    Family("animatelcm", "AnimateLCM t2v", False, True, None, 64, False, "animatediff_sd15"),
    # research §1.8: AD-SDXL normalises its own module across frames (the UNet per frame); HotShot
    # normalises the UNet's ResBlocks across frames and its temporal layer per frame.
    Family("sdxl_beta", "AnimateDiff SDXL beta (mm_sdxl_v10_beta)", True, False, 32, 32, False,
           "animatediff_sdxl", module_norm_across_frames=True),
    # HotShot-XL samples with SDXL's own schedule (see schedules.SDXL_CHECKPOINT for the source).
    Family("hotshotxl", "HotShot-XL", True, False, 24, 24, True, "sdxl"),
)

# Files that share the motion-module key space but are something else.
# Checked on the keys next to the motion-module keys.
_SPECIAL_KEYS = (
    (r"(^|\.)controlnet_cond_embedding\.", "a SparseCtrl encoder (a ControlNet), not a motion module"),
    (r"^img_encoder\.", "an AnimateLCM-I2V model (image-to-video with its own image encoder), not supported yet"),
    (r"^(fps|motion)_embedding\.", "a FancyVideo model, not supported"),
    (r"^conv_in\.weight$", "a PIA model (its own 9-channel input conv), not supported yet"),
    (r"^pose_encoder\.", "a CameraCtrl model, not supported yet"),
)


@dataclass(frozen=True)
class ModuleSlot:
    """One motion module's position: level kind ('down'/'mid'/'up'), level index, module index."""

    kind: str
    level: int
    index: int

    @property
    def prefix(self) -> str:
        block = "mid_block" if self.kind == "mid" else f"{self.kind}_blocks.{self.level}"
        return f"{block}.motion_modules.{self.index}.temporal_transformer."


@dataclass(frozen=True)
class MotionSpec:
    """What a file holds: its family and the channels of every module slot."""

    family: Family
    channels: Tuple[Tuple[ModuleSlot, int], ...]
    naming: str  # "original", "diffusers" or "hotshot"
    stored_pe_length: Optional[int]

    @property
    def version(self) -> str:
        return self.family.version

    def slots(self, kind: str) -> List[Tuple[ModuleSlot, int]]:
        return sorted(((s, c) for s, c in self.channels if s.kind == kind), key=lambda sc: (sc[0].level, sc[0].index))

    def levels(self, kind: str) -> int:
        return len({s.level for s, _ in self.channels if s.kind == kind})


# --- detection --------------------------------------------------------------------------------

def _describe_non_motion(keys: List[str]) -> str:
    joined = "\n".join(keys[:2000])
    if any(k.startswith("model.diffusion_model.") or ".input_blocks." in k or k.startswith("input_blocks.") for k in keys):
        return "a Stable Diffusion checkpoint (it holds a full UNet); put it in models/Stable-diffusion"
    if "_lora." in joined and "motion_modules" not in joined:
        return ("an SD LoRA in diffusers attention-processor naming (for example the AnimateDiff v3 domain "
                "adapter), not a motion module; use it as a normal LoRA")
    if re.search(r"lora_(up|down|A|B)\b|\.lora\.(up|down)", joined) or "lora_unet_" in joined:
        return "a LoRA, not a motion module; image LoRAs go in models/Lora"
    return "not a motion module (no motion_modules keys found)"


def _rename_suffix(rest: str, naming: str) -> str:
    if naming == "diffusers":
        for pattern, repl in _DIFFUSERS_SUFFIXES:
            new = re.sub(pattern, repl, rest)
            if new != rest:
                return new
        return rest
    if naming == "hotshot":
        return _HOTSHOT_PE.sub(".pos_encoder.pe", rest)
    return rest


def _split(state: Dict[str, torch.Tensor], path: str):
    """Group the keys: (naming, {normalized key: tensor}, unmatched keys)."""
    normalized: Dict[str, torch.Tensor] = {}
    unmatched: List[str] = []
    namings = set()
    for key, tensor in state.items():
        m = _MODULE_KEY.match(key)
        if not m:
            unmatched.append(key)
            continue
        rest = m.group("rest")
        if m.group("container") == "temporal_attentions":
            naming = "hotshot"
        elif rest.startswith("temporal_transformer."):
            naming = "original"
            rest = rest[len("temporal_transformer."):]
        else:
            naming = "diffusers"
        namings.add(naming)
        new_key = f"{m.group('block')}.motion_modules.{m.group('j')}.temporal_transformer.{_rename_suffix(rest, naming)}"
        if new_key in normalized:
            raise WeightsFileError(f"'{path}' holds the motion-module tensor '{new_key}' twice under different names.")
        normalized[new_key] = tensor
    if len(namings) > 1:
        raise WeightsFileError(f"'{path}' mixes motion-module key namings {sorted(namings)}; it is not a single motion module.")
    return (namings.pop() if namings else None), normalized, unmatched


def _slot_of(key: str) -> ModuleSlot:
    m = re.match(r"^(down_blocks\.(\d+)|up_blocks\.(\d+)|mid_block)\.motion_modules\.(\d+)\.", key)
    if m.group(1) == "mid_block":
        return ModuleSlot("mid", 0, int(m.group(4)))
    kind = "down" if m.group(2) is not None else "up"
    return ModuleSlot(kind, int(m.group(2) if kind == "down" else m.group(3)), int(m.group(4)))


def _is_motion_lora(keys: List[str]) -> bool:
    return any("motion_modules" in k and ("_lora." in k or ".lora_" in k or ".lora." in k) for k in keys)


def detect(state: Dict[str, torch.Tensor], path: str) -> Tuple[MotionSpec, Dict[str, torch.Tensor]]:
    """Identify a motion-module state dict; return its spec and its tensors in original naming
    (position encodings dropped: they are recomputed). Raises WeightsFileError with the reason
    when the file is something else, UnsupportedModelError for recognised but unsupported ones."""
    name = os.path.basename(path)
    keys = list(state.keys())
    if _is_motion_lora(keys):
        raise WeightsFileError(
            f"'{name}' is a motion LoRA, not a motion module; choose a motion module and add this file "
            f"under Motion LoRAs instead."
        )
    naming, tensors, unmatched = _split(state, path)
    if not tensors:
        raise WeightsFileError(f"'{name}' is {_describe_non_motion(keys)}.")
    for marker, what in _SPECIAL_KEYS:
        if any(re.search(marker, k) for k in unmatched):
            raise UnsupportedModelError(f"'{name}' is {what}.")
    if unmatched:
        shown = ", ".join(unmatched[:5]) + (" ..." if len(unmatched) > 5 else "")
        raise WeightsFileError(
            f"'{name}' has {len(unmatched)} keys that do not belong to a motion module ({shown}); "
            f"it is not a plain motion-module file."
        )

    pe_lengths = {t.shape[1] for k, t in tensors.items() if _PE_SUFFIX.search(k) and t.dim() == 3}
    if len(pe_lengths) > 1:
        raise WeightsFileError(f"'{name}' stores position encodings of different lengths {sorted(pe_lengths)}.")
    stored_pe = pe_lengths.pop() if pe_lengths else None
    tensors = {k: v for k, v in tensors.items() if not _PE_SUFFIX.search(k)}

    attention_blocks = {int(m.group(1)) for k in tensors for m in [re.search(r"attention_blocks\.(\d+)\.", k)] if m}
    if attention_blocks and max(attention_blocks) == 0:
        raise UnsupportedModelError(
            f"'{name}' has one temporal attention per module, as SparseCtrl encoders do; it is not a motion module."
        )

    channels = {}
    for key, tensor in tensors.items():
        if key.endswith("temporal_transformer.proj_in.weight"):
            channels[_slot_of(key)] = int(tensor.shape[0])
    if not channels:
        raise WeightsFileError(f"'{name}' has motion-module keys but no proj_in weights; the file is incomplete.")

    down_levels = {s.level for s in channels if s.kind == "down"}
    has_mid = any(s.kind == "mid" for s in channels)
    sdxl = max(down_levels, default=-1) == 2
    if not sdxl and max(down_levels, default=-1) != 3:
        raise WeightsFileError(
            f"'{name}' has motion modules at {len(down_levels)} down levels; SD1.5 modules have 4 and SDXL modules 3."
        )
    family = _family_for(sdxl, has_mid, stored_pe, naming, name)
    spec = MotionSpec(family, tuple(sorted(channels.items(), key=lambda sc: (sc[0].kind, sc[0].level, sc[0].index))), naming, stored_pe)
    _check_tensors(spec, tensors, name)
    return spec, tensors


def is_sdxl_module(keys) -> Optional[bool]:
    """From the tensor names alone: True for an SDXL motion module (3 down levels), False for SD1.5
    (4), None when the names are not a motion module's (or a motion LoRA's) at all."""
    deepest = -1
    for key in keys:
        m = _MODULE_KEY.match(key)
        if m and m.group("block").startswith("down_blocks."):
            deepest = max(deepest, int(m.group("block").split(".")[1]))
    return {2: True, 3: False}.get(deepest)


def _family_for(sdxl: bool, mid: bool, pe: Optional[int], naming: str, name: str) -> Family:
    if naming == "hotshot":
        return next(f for f in FAMILIES if f.version == "hotshotxl")
    candidates = [f for f in FAMILIES if f.sdxl == sdxl and f.mid_block == mid]
    if pe is None:
        # Original naming without stored encodings: AnimateLCM (mid block). diffusers files that
        # dropped their encodings fall back to the family's default window.
        exact = [f for f in candidates if f.pe_length is None]
        if exact and naming == "original":
            return exact[0]
        with_pe = [f for f in candidates if f.pe_length is not None]
        # Without a stored length v1 and v3 cannot be told apart; v3 (per-frame norm) is the
        # layout diffusers itself assumes for every SD1.5 adapter.
        preferred = [f for f in with_pe if f.version in ("v2", "v3", "sdxl_beta")]
        if preferred:
            return preferred[0]
    else:
        for f in candidates:
            if f.pe_length == pe:
                return f
    layout = f"{'SDXL' if sdxl else 'SD1.5'}, {'with' if mid else 'without'} a mid-block module, " \
             f"position encoding length {pe if pe is not None else 'not stored'}"
    raise WeightsFileError(f"'{name}' is a motion module of an unknown layout ({layout}).")


def _check_tensors(spec: MotionSpec, tensors: Dict[str, torch.Tensor], name: str) -> None:
    """Every module has exactly the expected tensors with the expected shapes."""
    compare_keys(tensors, expected_shapes(spec)).raise_if_bad(f"'{name}' is not a complete {spec.family.description} file")


def expected_shapes(spec: MotionSpec) -> Dict[str, Tuple[int, ...]]:
    """Every (pe-free) tensor name of ``spec`` with its shape."""
    out = {}

    def put(prefix, table, c):
        for suffix, (rows, cols) in table.items():
            out[prefix + suffix] = (rows * c,) if cols is None else (rows * c, cols * c)

    for slot, c in spec.channels:
        p = slot.prefix
        put(p, MODULE_TENSORS, c)
        put(p + "transformer_blocks.0.", BLOCK_TENSORS, c)
        for a in (0, 1):
            put(p + f"transformer_blocks.0.attention_blocks.{a}.", ATTENTION_TENSORS, c)
            put(p + f"transformer_blocks.0.norms.{a}.", NORM_TENSORS, c)
    return out


def full_width_spec(version: str, model_channels: int = 320) -> MotionSpec:
    """The spec of a published family at full width (for shape checks and fixtures)."""
    family = next(f for f in FAMILIES if f.version == version)
    mult = (1, 2, 4, 4) if not family.sdxl else (1, 2, 4)
    levels = len(mult)
    channels = []
    for i, m in enumerate(mult):
        channels += [(ModuleSlot("down", i, j), model_channels * m) for j in range(2)]
        channels += [(ModuleSlot("up", i, j), model_channels * mult[levels - 1 - i]) for j in range(3)]
    if family.mid_block:
        channels.append((ModuleSlot("mid", 0, 0), model_channels * mult[-1]))
    return MotionSpec(family, tuple(channels), "original", family.pe_length)
