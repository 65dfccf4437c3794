"""Random-weight motion-module and motion-LoRA files in the exact published key formats.

Shapes come from lib_animate.motion.formats.expected_shapes (checked against the published
parameter counts in test_motion_formats); the key *names* of each format are written out here
independently of the loader's rename tables, so a wrong table fails the tests.
"""

import os
import re

import torch

from lib_animate.motion.formats import expected_shapes, full_width_spec
from lib_animate.motion.model import sinusoidal_encoding


def original_state(version, model_channels=32, seed=0, dtype=torch.float32, zero_proj_out=False, with_pe=True, pe_length=None):
    """{key: tensor} as the original AnimateDiff checkpoints store it (pe buffers included)."""
    spec = full_width_spec(version, model_channels)
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in expected_shapes(spec).items():
        if key.endswith("norm.weight") or re.search(r"norms\.\d\.weight$|ff_norm\.weight$", key):
            t = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 2:
            t = torch.randn(shape, generator=g) / shape[1] ** 0.5
        else:
            t = 0.1 * torch.randn(shape, generator=g)
        if zero_proj_out and ".proj_out." in key:
            t = torch.zeros(shape)
        state[key] = t.to(dtype)
    length = pe_length or spec.family.pe_length
    if with_pe and length:
        for slot, c in spec.channels:
            for a in (0, 1):
                key = f"{slot.prefix}transformer_blocks.0.attention_blocks.{a}.pos_encoder.pe"
                state[key] = sinusoidal_encoding(length, c).unsqueeze(0).to(dtype)
    return state


_TO_DIFFUSERS = (
    (".temporal_transformer.", "."),
    (".attention_blocks.0.", ".attn1."),
    (".attention_blocks.1.", ".attn2."),
    (".norms.0.", ".norm1."),
    (".norms.1.", ".norm2."),
    (".ff_norm.", ".norm3."),
)


def to_diffusers_naming(state):
    """The same tensors under diffusers MotionAdapter names (one pos_embed.pe per block)."""
    out = {}
    for key, tensor in state.items():
        if key.endswith("attention_blocks.1.pos_encoder.pe"):
            continue
        if key.endswith("attention_blocks.0.pos_encoder.pe"):
            key = key.replace("attention_blocks.0.pos_encoder.pe", "pos_embed.pe")
        for old, new in _TO_DIFFUSERS:
            key = key.replace(old, new)
        out[key] = tensor
    return out


def to_hotshot_naming(state):
    out = {}
    for key, tensor in state.items():
        key = re.sub(r"\.motion_modules\.(\d+)\.temporal_transformer\.", r".temporal_attentions.\1.", key)
        key = key.replace(".pos_encoder.pe", ".pos_encoder.positional_encoding")
        out[key] = tensor
    return out


def save(state, path, wrap=False):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if path.endswith(".safetensors"):
        import safetensors.torch

        safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        torch.save({"state_dict": state, "global_step": 1} if wrap else state, path)
    return path


def sdxl_state(version="sdxl_beta", model_channels=32, seed=0, zero_proj_out=False):
    """3-level SDXL layout (mm_sdxl_v10_beta: pe 32; HotShot: pe 24). ``zero_proj_out``: the same weights
    with every module's proj_out zeroed (the module then adds nothing itself)."""
    spec = full_width_spec("sdxl_beta" if version == "sdxl_beta" else "hotshotxl", model_channels)
    g = torch.Generator().manual_seed(seed)
    state = {k: 0.02 * torch.randn(s, generator=g) for k, s in expected_shapes(spec).items()}
    if zero_proj_out:
        state = {k: torch.zeros_like(v) if ".temporal_transformer.proj_out." in k else v for k, v in state.items()}
    length = 32 if version == "sdxl_beta" else 24
    for slot, c in spec.channels:
        for a in (0, 1):
            state[f"{slot.prefix}transformer_blocks.0.attention_blocks.{a}.pos_encoder.pe"] = sinusoidal_encoding(length, c).unsqueeze(0)
    return state


def motion_lora_state(version="v2", model_channels=32, rank=4, seed=0, dtype=torch.float32):
    """Original motion-LoRA keys: ...attention_blocks.a.processor.to_q_lora.down.weight etc."""
    spec = full_width_spec(version, model_channels)
    g = torch.Generator().manual_seed(seed)
    state = {}
    for slot, c in spec.channels:
        for a in (0, 1):
            base = f"{slot.prefix}transformer_blocks.0.attention_blocks.{a}.processor."
            for proj in ("to_q", "to_k", "to_v", "to_out"):
                state[f"{base}{proj}_lora.down.weight"] = (torch.randn(rank, c, generator=g) / c ** 0.5).to(dtype)
                state[f"{base}{proj}_lora.up.weight"] = (0.1 * torch.randn(c, rank, generator=g)).to(dtype)
    return state
