"""``load(path) -> MotionModel``: read, identify, normalise and build, safely."""

import os

import torch

from ..errors import WeightsFileError
from ..safe_load import load_state_dict
from .formats import detect
from .model import MotionModel
from ..sampling.schedules import NoiseSchedule, get_schedule


def load(path: str) -> MotionModel:
    """Load a motion module file (.safetensors, .ckpt, .pth, .pt; fp16 or fp32; with or without a
    ``state_dict`` wrapper; original, diffusers or HotShot naming).

    The model is on the CPU in the file's dtype. Raises WeightsFileError (missing, unreadable,
    unsafe, not a motion module, incomplete) or UnsupportedModelError (SDXL, PIA, SparseCtrl ...).
    """
    state = load_state_dict(path, "motion module")
    spec, tensors = detect(state, path)
    name = os.path.basename(path)
    with torch.device("meta"):
        model = MotionModel(spec, name=name)
    try:
        model.load_state_dict(tensors, strict=True, assign=True)
    except RuntimeError as e:  # detect() checked names and shapes; this is a belt-and-braces guard
        raise WeightsFileError(f"'{name}' does not fit a {spec.family.description}: {e}") from e
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval()


def noise_schedule(model: MotionModel) -> NoiseSchedule:
    """The noise schedule ``model`` was trained with (a lib_animate.sampling.schedules preset)."""
    return get_schedule(model.family.schedule)
