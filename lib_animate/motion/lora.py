"""Motion LoRAs (v2_lora_ZoomIn.ckpt and friends) in their published key formats.

A motion LoRA holds low-rank pairs for the q/k/v/out projections of the temporal attentions::

    <module>.transformer_blocks.0.attention_blocks.a.processor.to_q_lora.down.weight   [r, c]
    <module>.transformer_blocks.0.attention_blocks.a.processor.to_q_lora.up.weight     [c, r]

and is merged as ``W += strength * (up @ down)`` (no alpha / rank scaling). diffusers-converted
files (``attn1.to_q.lora.down.weight``, PEFT ``lora_A`` / ``lora_B``, an optional ``unet.``
prefix) are read too. Merging is undone exactly by restoring the saved original weights, never by
subtracting (subtraction in fp16 is not exact).
"""

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, Iterator, List, Sequence, Tuple

import torch

from ..errors import IncompatibleModelError, WeightsFileError
from ..safe_load import load_state_dict
from .formats import _DIFFUSERS_SUFFIXES, _MODULE_KEY
from .model import MotionModel

# (pattern on the part after the module's `temporal_transformer.` or diffusers equivalent,
#  meaning of the groups). `proj` is to_q/to_k/to_v/to_out, `dir` down/up (A = down, B = up).
_LORA_SUFFIXES = (
    re.compile(r"^(?P<attn>.+)\.processor\.(?P<proj>to_q|to_k|to_v|to_out)_lora\.(?P<dir>down|up)\.weight$"),
    re.compile(r"^(?P<attn>.+)\.(?P<proj>to_q|to_k|to_v|to_out)(?:\.0)?\.lora\.(?P<dir>down|up)\.weight$"),
    re.compile(r"^(?P<attn>.+)\.(?P<proj>to_q|to_k|to_v|to_out)(?:\.0)?\.lora_(?P<dir>A|B)\.weight$"),
)


@dataclass
class MotionLoRA:
    name: str
    # target weight key (MotionModel naming) -> (down [r, c_in], up [c_out, r])
    pairs: Dict[str, Tuple[torch.Tensor, torch.Tensor]]


def _target_key(key: str, path: str) -> Tuple[str, str]:
    """(target weight key in MotionModel naming, 'down'/'up'/'A'/'B') for one LoRA tensor key."""
    m = _MODULE_KEY.match(key)
    if not m:
        raise WeightsFileError(f"'{os.path.basename(path)}' has a key that is not a motion-module LoRA key: {key}")
    rest = m.group("rest")
    if rest.startswith("temporal_transformer."):
        rest = rest[len("temporal_transformer."):]
    for pattern in _LORA_SUFFIXES:
        lm = pattern.match(rest)
        if lm:
            break
    else:
        raise WeightsFileError(f"'{os.path.basename(path)}' has a key that is not a motion-module LoRA key: {key}")
    attention = lm.group("attn") + "."
    for diffusers_pattern, original in _DIFFUSERS_SUFFIXES:  # attn1 -> attention_blocks.0 ...
        attention = re.sub(diffusers_pattern, original, attention)
    projection = "to_out.0" if lm.group("proj") == "to_out" else lm.group("proj")
    block = m.group("block")
    return f"{block}.motion_modules.{m.group('j')}.temporal_transformer.{attention}{projection}.weight", lm.group("dir")


def load_motion_lora(path: str) -> MotionLoRA:
    """Read a motion LoRA file safely; raise WeightsFileError if it is something else."""
    state = load_state_dict(path, "motion LoRA")
    name = os.path.basename(path)
    if not any("motion_modules" in k for k in state):
        raise WeightsFileError(
            f"'{name}' is not a motion LoRA (it has no motion_modules keys); image LoRAs go in the prompt "
            f"as <lora:name:weight>, motion modules in the motion module list"
        )
    halves: Dict[str, Dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        if key.endswith(".alpha"):
            continue
        target, direction = _target_key(key, path)
        slot = "down" if direction in ("down", "A") else "up"
        halves.setdefault(target, {})[slot] = tensor
    pairs = {}
    for target, half in halves.items():
        if set(half) != {"down", "up"}:
            raise WeightsFileError(f"'{name}' has only the {'/'.join(half)} half of the LoRA pair for {target}")
        down, up = half["down"], half["up"]
        if down.dim() != 2 or up.dim() != 2 or up.shape[1] != down.shape[0]:
            raise WeightsFileError(
                f"'{name}': the LoRA pair for {target} has incompatible shapes down {tuple(down.shape)}, up {tuple(up.shape)}"
            )
        pairs[target] = (down, up)
    if not pairs:
        raise WeightsFileError(f"'{name}' holds no LoRA pairs")
    return MotionLoRA(name, pairs)


def resolve_pairs(motion_model: MotionModel, lora: MotionLoRA) -> List[Tuple[str, torch.nn.Parameter, torch.Tensor, torch.Tensor]]:
    """(target, weight, down, up) for every pair of ``lora`` that applies; IncompatibleModelError otherwise."""
    params = dict(motion_model.named_parameters())
    resolved = []
    for target, (down, up) in lora.pairs.items():
        if target.startswith("mid_block.") and motion_model.mid_block is None:
            continue  # v2 LoRAs carry mid-block pairs; a module without a mid block ignores them
        weight = params.get(target)
        if weight is None:
            raise IncompatibleModelError(
                f"motion LoRA '{lora.name}' targets {target}, which '{motion_model.name}' does not have"
            )
        if (up.shape[0], down.shape[1]) != tuple(weight.shape):
            raise IncompatibleModelError(
                f"motion LoRA '{lora.name}' is for {up.shape[0]}x{down.shape[1]} weights at {target}, "
                f"'{motion_model.name}' has {tuple(weight.shape)}; they belong to different model widths"
            )
        resolved.append((target, weight, down, up))
    if not resolved:
        raise IncompatibleModelError(f"motion LoRA '{lora.name}' has nothing that applies to '{motion_model.name}'")
    return resolved


@contextmanager
def apply_motion_loras(motion_model: MotionModel, loras: Sequence[Tuple[MotionLoRA, float]]) -> Iterator[None]:
    """Merge ``[(lora, strength), ...]`` into ``motion_model`` for the ``with`` block; restore exactly.

    All compatibility checks run before any weight changes. Deltas are computed in float32 on the
    weight's device and summed before the single cast back to the weight's dtype.
    """
    deltas: Dict[str, Tuple[torch.nn.Parameter, List[Tuple[torch.Tensor, torch.Tensor, float]]]] = {}
    for lora, strength in loras:
        for target, weight, down, up in resolve_pairs(motion_model, lora):
            deltas.setdefault(target, (weight, []))[1].append((down, up, float(strength)))
    backups = {}
    try:
        with torch.no_grad():
            for target, (weight, terms) in deltas.items():
                backups[target] = (weight, weight.detach().clone())
                total = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
                for down, up, strength in terms:
                    total += strength * (up.to(weight.device, torch.float32) @ down.to(weight.device, torch.float32))
                weight.copy_((weight.float() + total).to(weight.dtype))
        yield
    finally:
        with torch.no_grad():
            for weight, original in backups.values():
                weight.copy_(original)
