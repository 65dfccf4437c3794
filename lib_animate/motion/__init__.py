"""AnimateDiff motion modules: formats, safe loading, injection into an ldm UNet, motion LoRA.

Public API::

    model = load(path)                       # MotionModel on the CPU, in the file's dtype
    with inject(unet, model, frames) as inj:  # temporal attention within each run of `frames` rows
        unet(x, timesteps, context)
    # leaving restores the UNet exactly

    lora = load_motion_lora(path)
    with apply_motion_loras(model, [(lora, 0.8)]):
        ...                                   # merged; leaving restores the weights exactly

    noise_schedule(model).alphas_cumprod()    # the schedule the module was trained with

    with inject(unet, model, frames, scale=parse_motion_scale("0:1.0, 8:0.5", 16)):
        ...                                   # motion residuals scaled per frame (scale.py)
"""

from .formats import FAMILIES, MotionSpec, detect, full_width_spec
from .inject import Injection, check_compatible, inject, remove_stale_modules
from .loader import load, noise_schedule
from .lora import MotionLoRA, apply_motion_loras, load_motion_lora
from .model import MotionModel
from .scale import MotionScale, parse_motion_scale

__all__ = [
    "FAMILIES",
    "Injection",
    "MotionLoRA",
    "MotionModel",
    "MotionScale",
    "MotionSpec",
    "apply_motion_loras",
    "check_compatible",
    "detect",
    "full_width_spec",
    "inject",
    "load",
    "load_motion_lora",
    "noise_schedule",
    "parse_motion_scale",
    "remove_stale_modules",
]
