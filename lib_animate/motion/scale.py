"""Motion scale: how strongly the motion modules act, for the whole video or per frame.

Every motion module adds a residual to the UNet's features: ``x + h``. The scale multiplies that
residual -- ``x + s * h`` -- so 0 gives the image model alone (the modules are skipped), 1 the
modules as trained, values in between calmer motion and values above 1 stronger motion. A
per-frame scale (one value per frame of the video) multiplies the rows of each frame; under
context windows each call's rows take the values of the window's frames (``FrameLayout.window``).

v1 modules (and HotShot-XL) were trained with the UNet's GroupNorms computed across the frames of
a clip; that normalisation belongs to the model, not to the modules, and stays at every scale: at
0 they give the image model with clip-wide GroupNorms.

Keyframes: ``"0:1.0, 8:0.6"`` -- frame indices with values, linear in between, the first value
held before the first keyframe and the last one after the last.
"""

import math
import re
from typing import Optional, Sequence, Tuple, Union

import torch

from ..errors import InvalidInputError
from ..sampling.layout import FrameLayout

MIN_SCALE, MAX_SCALE = 0.0, 4.0
_KEYFRAME = re.compile(r"^\s*(\d+)\s*:\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


class MotionScale:
    """One multiplier for every frame, or one per frame of the video."""

    def __init__(self, values: Union[float, Sequence[float]] = 1.0):
        if isinstance(values, (int, float)):
            self.values: Tuple[float, ...] = ()
            self.uniform: Optional[float] = float(values)
        else:
            self.values = tuple(float(v) for v in values)
            same = len(set(self.values)) == 1
            self.uniform = self.values[0] if same else None
        self._rows_cache = {}

    def rows(self, layout: FrameLayout, rows: int, device, dtype) -> Union[float, torch.Tensor]:
        """The multiplier of a call of ``rows`` rows laid out as ``layout`` says: the number itself when
        it is the same for every frame (no tensor per call), else (rows, 1, 1, 1) per-row values."""
        if self.uniform is not None:
            return self.uniform
        frames = layout.frames
        window = layout.window if layout.window is not None else tuple(range(frames))
        if len(window) != frames or max(window) >= len(self.values):
            raise RuntimeError(f"the motion scale has {len(self.values)} values but the call's frames are {list(window)}")
        key = (window, rows, device, dtype)
        if key not in self._rows_cache:
            per_frame = torch.tensor([self.values[f] for f in window], dtype=dtype)
            self._rows_cache = {key: per_frame.repeat(rows // frames).view(rows, 1, 1, 1).to(device)}
        return self._rows_cache[key]


def parse_motion_scale(value, frames: int, name: str = "motion_scale") -> MotionScale:
    """A number, a list of one number per frame, or keyframes ``"0:1.0, 8:0.6"``."""
    if isinstance(value, bool):
        raise InvalidInputError(f"'{name}' must be a number, a list of numbers or keyframes like \"0:1.0, 8:0.6\"; got {value!r}")
    if isinstance(value, (int, float)):
        return MotionScale(_checked(name, value))
    if isinstance(value, (list, tuple)):
        if len(value) != frames:
            raise InvalidInputError(f"'{name}' lists {len(value)} values for {frames} frames; give one per frame (or keyframes)")
        return MotionScale([_checked(f"{name}[{i}]", v) for i, v in enumerate(value)])
    if isinstance(value, str):
        text = value.strip()
        try:
            return MotionScale(_checked(name, float(text)))
        except ValueError:
            pass
        return MotionScale(keyframe_values(text, frames, name))
    raise InvalidInputError(f"'{name}' must be a number, a list of numbers or keyframes like \"0:1.0, 8:0.6\"; got {value!r}")


def keyframe_values(text: str, frames: int, name: str = "motion_scale") -> Tuple[float, ...]:
    """Per-frame values from ``"f:v, f:v"``: linear between keyframes, held outside them."""
    keys = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = _KEYFRAME.match(part)
        if not match:
            raise InvalidInputError(f"'{name}': {part!r} is not a keyframe; write frame:value pairs like \"0:1.0, 8:0.6\"")
        frame, scale = int(match.group(1)), _checked(name, float(match.group(2)))
        if frame >= frames:
            raise InvalidInputError(f"'{name}': keyframe {frame} is beyond the last frame ({frames - 1})")
        if keys and frame <= keys[-1][0]:
            raise InvalidInputError(f"'{name}': keyframes must be in increasing frame order ({keys[-1][0]} then {frame})")
        keys.append((frame, scale))
    if not keys:
        raise InvalidInputError(f"'{name}' holds no keyframe; write frame:value pairs like \"0:1.0, 8:0.6\"")
    out = []
    for f in range(frames):
        if f <= keys[0][0]:
            out.append(keys[0][1])
        elif f >= keys[-1][0]:
            out.append(keys[-1][1])
        else:
            (f0, v0), (f1, v1) = next((a, b) for a, b in zip(keys, keys[1:]) if a[0] <= f <= b[0])
            out.append(v0 + (v1 - v0) * (f - f0) / (f1 - f0))
    return tuple(out)


def _checked(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInputError(f"'{name}' must be a number, got {value!r}")
    if not MIN_SCALE <= value <= MAX_SCALE:
        raise InvalidInputError(f"'{name}' must be between {MIN_SCALE:g} and {MAX_SCALE:g}, got {value:g}")
    return float(value)
