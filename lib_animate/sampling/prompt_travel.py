"""Prompt travel: keyframed prompts in the prompt box, interpolated per frame in conditioning space.

Syntax (the AnimateDiff prompt-travel convention)::

    masterpiece, best quality          <- head lines (optional): shared by every frame
    0: a girl, smiling                 <- keyframes "N: prompt", N a 0-based frame index,
    8: a girl, crying                     strictly ascending, N < frames
    <lora:style:0.8>, watercolor       <- tail lines (optional): shared by every frame

A keyframe line is a line whose first non-blank characters are digits followed by ``:``. Blank
lines are ignored. Keyframe ``k``'s full prompt is ``head, prompt_k, tail`` (empty parts dropped,
parts stripped of surrounding whitespace and commas). A text with no keyframe line is not a travel
prompt. Text between two keyframe lines is an error (it would be ambiguous: head, tail, or part of a
keyframe?).

Per frame ``f``, the plan gives ``(a, b, t)``: keyframe positions ``a`` and ``b`` (indices into the
keyframe list, not frame numbers) and ``t`` in ``[0, 1)`` so that the frame's conditioning is
``interp(c_a, c_b, t)``. Frames before the first keyframe and after the last hold the nearest
keyframe, or, with ``closed_loop``, travel from the last keyframe back to the first across the
clip's end.
"""

import copy
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch

from lib_animate.errors import InvalidInputError

KEYFRAME_LINE = re.compile(r"^\s*(\d+)\s*:(.*)$")

Plan = List[Tuple[int, int, float]]


@dataclass(frozen=True)
class TravelPrompt:
    head: str
    keyframes: Tuple[Tuple[int, str], ...]  # (frame index, keyframe text), ascending
    tail: str

    @property
    def indices(self) -> List[int]:
        return [f for f, _ in self.keyframes]

    def prompts(self) -> List[str]:
        """The full prompt of every keyframe: ``head, text, tail``."""
        return [join_prompt(self.head, text, self.tail) for _, text in self.keyframes]


def join_prompt(*parts: str) -> str:
    """``", ".join`` of the non-empty parts, each stripped of surrounding blanks and commas."""
    cleaned = [p.strip().strip(",").strip() for p in parts]
    return ", ".join(p for p in cleaned if p)


def is_travel_prompt(text: str) -> bool:
    """True when at least one line of ``text`` is a keyframe line ``N: prompt``."""
    return any(KEYFRAME_LINE.match(line) for line in (text or "").splitlines())


def parse_travel_prompt(text: str, frames: int) -> TravelPrompt:
    """Split ``text`` into head, keyframes and tail; ``InvalidInputError`` on a malformed travel prompt."""
    head: List[str] = []
    tail: List[str] = []
    keyframes: List[Tuple[int, str]] = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        match = KEYFRAME_LINE.match(line)
        if match is None:
            (tail if keyframes else head).append(line)
            continue
        if tail:
            raise InvalidInputError(
                f"prompt travel: line {number} is a keyframe after shared text ({tail[0].strip()!r}); "
                "put shared text before the first keyframe line or after the last one"
            )
        index, prompt = int(match.group(1)), match.group(2).strip()
        if index >= frames:
            raise InvalidInputError(
                f"prompt travel: keyframe {index} (line {number}) is beyond the last frame; "
                f"frames are numbered 0 to {frames - 1}"
            )
        if keyframes and index == keyframes[-1][0]:
            raise InvalidInputError(f"prompt travel: keyframe {index} appears twice (line {number})")
        if keyframes and index < keyframes[-1][0]:
            raise InvalidInputError(
                f"prompt travel: keyframe {index} (line {number}) comes after keyframe {keyframes[-1][0]}; "
                "keyframe numbers must ascend"
            )
        keyframes.append((index, prompt))
    if not keyframes:
        raise InvalidInputError("prompt travel: no keyframe lines ('N: prompt') in the prompt")
    return TravelPrompt(join_prompt(*head), tuple(keyframes), join_prompt(*tail))


def interpolation_plan(indices: Sequence[int], frames: int, closed_loop: bool = False) -> Plan:
    """``(a, b, t)`` per frame for keyframes at the ascending frame ``indices``.

    Between keyframes ``k_a <= f < k_b``: ``t = (f - k_a) / (k_b - k_a)``. Outside ``[k_0, k_last]``:
    hold the nearest keyframe (``t = 0``), or with ``closed_loop`` interpolate from the last to the
    first keyframe over the distance ``frames - k_last + k_0``.
    """
    if not indices:
        raise ValueError("interpolation_plan needs at least one keyframe")
    if any(b <= a for a, b in zip(indices, indices[1:])) or indices[0] < 0 or indices[-1] >= frames:
        raise ValueError(f"keyframe indices must ascend strictly within [0, {frames}), got {list(indices)}")
    last = len(indices) - 1
    plan: Plan = []
    for f in range(frames):
        a = max((i for i, k in enumerate(indices) if k <= f), default=None)
        if a is not None and a < last:
            plan.append((a, a + 1, (f - indices[a]) / (indices[a + 1] - indices[a])))
        elif closed_loop and last > 0:
            since = f - indices[last] if a is not None else f + frames - indices[last]
            plan.append((last, 0, since / (frames - indices[last] + indices[0])))
        else:
            held = last if a is not None else 0
            plan.append((held, held, 0.0))
    return plan


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """``(1 - t) a + t b`` (exact at ``t = 0`` and ``t = 1``)."""
    return (1 - t) * a + t * b


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, eps: float = 1e-4) -> torch.Tensor:
    """Spherical interpolation of each vector along the last dim (per token for ``[tokens, dim]``).

    ``theta = acos(<a, b> / (|a| |b|))``;
    ``slerp = sin((1 - t) theta) / sin(theta) a + sin(t theta) / sin(theta) b``, which keeps unit
    vectors on the unit sphere. Where ``sin(theta) < eps`` (nearly parallel or opposite vectors, or a
    zero vector) it falls back to :func:`lerp`. Computed in at least float32, returned in ``a``'s dtype.
    """
    if a.shape != b.shape:
        raise ValueError(f"slerp needs tensors of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    dtype = torch.promote_types(a.dtype, torch.float32)
    a64, b64 = a.to(dtype), b.to(dtype)
    norms = a64.norm(dim=-1, keepdim=True) * b64.norm(dim=-1, keepdim=True)
    cos = ((a64 * b64).sum(dim=-1, keepdim=True) / norms.clamp_min(torch.finfo(dtype).tiny)).clamp(-1, 1)
    theta = torch.acos(cos)
    sin = torch.sin(theta)
    safe = (sin >= eps) & (norms > 0)
    sin_safe = torch.where(safe, sin, torch.ones_like(sin))
    spherical = torch.sin((1 - t) * theta) / sin_safe * a64 + torch.sin(t * theta) / sin_safe * b64
    return torch.where(safe, spherical, lerp(a64, b64, t)).to(a.dtype)


INTERPOLATIONS = {"slerp": slerp, "lerp": lerp}


def travel_conds(keyframe_conds: Sequence[torch.Tensor], plan: Plan, method: str = "slerp") -> torch.Tensor:
    """Per-frame conditioning ``[frames, tokens, dim]`` from keyframe conds ``[tokens, dim]`` and a plan."""
    if method not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {method!r}; use one of {sorted(INTERPOLATIONS)}")
    shapes = {tuple(c.shape) for c in keyframe_conds}
    if len(shapes) > 1:
        raise InvalidInputError(
            "prompt travel: the keyframe prompts give conditionings of different sizes "
            f"({sorted(shapes)}); every keyframe prompt (with head and tail) must span the same number of "
            "75-token chunks -- shorten the long ones or add BREAK to the short ones"
        )
    interp = INTERPOLATIONS[method]
    return torch.stack([keyframe_conds[a] if t == 0 else interp(keyframe_conds[a], keyframe_conds[b], t)
                        for a, b, t in plan])


class PromptTravel:
    """Per-frame conditioning interpolated between keyframe prompts.

    Every frame's prompt is set to the prompt of its first keyframe (``plan[f][0]``), so the
    webui computes each keyframe's conditioning; at each step the frame rows are replaced by the
    interpolation between their two keyframes' rows.

    SDXL's conditioning is a dict: ``crossattn`` (per token, interpolated like SD1's) and ``vector``,
    the pooled text embedding (its first ``pooled_width`` columns, interpolated) followed by the
    size/crop embeddings (kept as they are). Other entries pass through.
    """

    def __init__(self, keyframe_indices: List[int], frames: int, closed_loop: bool, method: str,
                 pooled_width: Optional[int] = None):
        self.indices = list(keyframe_indices)
        self.plan = interpolation_plan(self.indices, frames, closed_loop=closed_loop)
        self.method = method
        self.frames = frames
        self.pooled_width = pooled_width

    def frame_keyframes(self) -> List[int]:
        """For every frame, the position (in the keyframe list) of the prompt it is given."""
        return [a for a, _, _ in self.plan]

    def conds(self, text_cond: Union[torch.Tensor, Dict[str, torch.Tensor]]):
        if isinstance(text_cond, dict):
            return self._sdxl_conds(text_cond)
        if text_cond.shape[0] != self.frames:
            return text_cond  # not this video's layout (e.g. a hires pass with other prompts)
        return self._travel(text_cond)

    def _travel(self, rows: torch.Tensor) -> torch.Tensor:
        keyframe_conds = [rows[i] for i in self.indices]
        return travel_conds(keyframe_conds, self.plan, self.method).to(rows.dtype)

    def _sdxl_conds(self, cond: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        crossattn, vector = cond.get("crossattn"), cond.get("vector")
        if crossattn is None or vector is None or crossattn.shape[0] != self.frames or vector.shape[0] != self.frames:
            return cond
        if self.pooled_width is None or not 0 < self.pooled_width <= vector.shape[1]:
            raise InvalidInputError(f"prompt travel on SDXL needs the width of the pooled text embedding inside the "
                                    f"{vector.shape[1]}-column vector conditioning (got {self.pooled_width})")
        pooled, sizes = vector[:, :self.pooled_width], vector[:, self.pooled_width:]
        out = copy.copy(cond)  # the same class: the webui's DictWithShape answers .shape, which its denoiser reads
        out["crossattn"] = self._travel(crossattn)
        out["vector"] = torch.cat([self._travel(pooled), sizes], dim=1)
        return out
