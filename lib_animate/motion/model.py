"""The AnimateDiff motion module ("VanillaTemporalModule") and the model that holds all of them.

Parameter names follow the original AnimateDiff checkpoints, so a normalised file loads with a
plain ``load_state_dict``. Shapes and the forward pass: research/animatediff.md §1.1.

Input of one module: ``(N, C, H, W)`` with ``N = clips * frames`` and each clip's frames
contiguous. Every latent pixel of a clip becomes a length-``frames`` sequence that attends over
time only; the output is ``input + proj_out(...)``, so a zero ``proj_out`` is the identity.
"""

import math
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .formats import Family, ModuleSlot, MotionSpec

HEADS = 8
NORM_GROUPS = 32

# Sequences per scaled_dot_product_attention launch. With the 4-D layout (sequences, heads,
# frames, head_dim) CUDA kernels put the sequence count on a grid axis limited to 65,535 blocks
# (pytorch#142228, #146704: "CUDA error: invalid configuration argument" from 65,536 on; the
# webui's sd-webui-animatediff users hit it with heads folded into the batch). 32,768 keeps 1024x1024
# with batched CFG in one launch and anything larger safe.
MAX_ATTENTION_ROWS = 32768


def _norm(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """GroupNorm / LayerNorm of ``module`` on ``x``: float32 for half-precision inputs (like ldm's
    GroupNorm32), weights cast to the compute dtype, result in ``x``'s dtype."""
    compute = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    weight = module.weight.to(compute)
    bias = module.bias.to(compute)
    if isinstance(module, nn.GroupNorm):
        out = F.group_norm(x.to(compute), module.num_groups, weight, bias, module.eps)
    else:
        out = F.layer_norm(x.to(compute), module.normalized_shape, weight, bias, module.eps)
    return out.to(x.dtype)


def sinusoidal_encoding(length: int, channels: int, device=None) -> torch.Tensor:
    """pe[p, 2i] = sin(p * 10000^(-2i/c)), pe[p, 2i+1] = cos(...), in float32, shape (length, c)."""
    position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    rate = torch.exp(torch.arange(0, channels, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / channels))
    pe = torch.zeros(length, channels, device=device, dtype=torch.float32)
    pe[:, 0::2] = torch.sin(position * rate)
    pe[:, 1::2] = torch.cos(position * rate)
    return pe


class PositionEncoding(nn.Module):
    """Sinusoidal encoding over frame positions; recomputed in float32, never loaded from files
    (some published files store fp16-rounded copies)."""

    def __init__(self, channels: int, max_len: int):
        super().__init__()
        self.channels = channels
        self.max_len = max_len
        self._cache: Dict[Tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[1]
        if frames > self.max_len:
            raise RuntimeError(
                f"a motion window of {frames} frames exceeds this motion module's maximum of {self.max_len}; "
                f"use context windows of at most {self.max_len} frames"
            )
        key = (x.device, x.dtype)
        pe = self._cache.get(key)
        if pe is None:
            pe = sinusoidal_encoding(self.max_len, self.channels, x.device).to(x.dtype)
            self._cache[key] = pe
        return x + pe[:frames]


class TemporalAttention(nn.Module):
    """Multi-head self-attention over the frame axis of (sequences, frames, channels)."""

    def __init__(self, channels: int, max_len: int):
        super().__init__()
        self.heads = HEADS
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_k = nn.Linear(channels, channels, bias=False)
        self.to_v = nn.Linear(channels, channels, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels), nn.Dropout(0.0)])
        self.pos_encoder = PositionEncoding(channels, max_len)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pos_encoder(x)
        rows, frames, channels = x.shape
        head_dim = channels // self.heads

        def split_heads(t):  # (rows, frames, c) -> (rows, heads, frames, head_dim), a view
            return t.view(rows, frames, self.heads, head_dim).transpose(1, 2)

        q, k, v = split_heads(self.to_q(x)), split_heads(self.to_k(x)), split_heads(self.to_v(x))
        if rows <= MAX_ATTENTION_ROWS:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = torch.cat(
                [
                    F.scaled_dot_product_attention(q[i:i + MAX_ATTENTION_ROWS], k[i:i + MAX_ATTENTION_ROWS], v[i:i + MAX_ATTENTION_ROWS])
                    for i in range(0, rows, MAX_ATTENTION_ROWS)
                ]
            )
        out = out.transpose(1, 2).reshape(rows, frames, channels)
        return self.to_out[0](out)


class GEGLU(nn.Module):
    def __init__(self, channels: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(channels, inner * 2)

    def forward(self, x):
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(channels, channels * 4), nn.Dropout(0.0), nn.Linear(channels * 4, channels)])

    def forward(self, x):
        return self.net[2](self.net[0](x))


class TemporalTransformerBlock(nn.Module):
    """Two temporal self-attentions (each pre-LayerNorm, residual) and a GEGLU feed-forward."""

    def __init__(self, channels: int, max_len: int):
        super().__init__()
        self.attention_blocks = nn.ModuleList([TemporalAttention(channels, max_len) for _ in range(2)])
        self.norms = nn.ModuleList([nn.LayerNorm(channels) for _ in range(2)])
        self.ff = FeedForward(channels)
        self.ff_norm = nn.LayerNorm(channels)

    def forward(self, x):
        for attention, norm in zip(self.attention_blocks, self.norms):
            x = attention(_norm(norm, x)) + x
        return self.ff(_norm(self.ff_norm, x)) + x


class TemporalTransformer(nn.Module):
    def __init__(self, channels: int, max_len: int):
        super().__init__()
        self.norm = nn.GroupNorm(NORM_GROUPS, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList([TemporalTransformerBlock(channels, max_len)])
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        rows, channels, height, width = x.shape
        clips = rows // frames
        weight_dtype = self.proj_in.weight.dtype
        # Per-frame GroupNorm (the original SD1.5 modules normalise each frame on its own).
        h = _norm(self.norm, x)
        # (clips*frames, c, h, w) -> (clips*h*w, frames, c): one sequence per latent pixel.
        h = h.reshape(clips, frames, channels, height * width).permute(0, 3, 1, 2).reshape(-1, frames, channels)
        h = self.proj_in(h.to(weight_dtype))
        for block in self.transformer_blocks:
            h = block(h)
        h = self.proj_out(h)
        h = h.view(clips, height * width, frames, channels).permute(0, 2, 3, 1)
        # The residual keeps x's memory layout (the webui's spatial transformers hand over
        # channels-last tensors); a layout change would alter the next convolutions' numerics.
        out = torch.empty_like(x)
        return torch.add(x, h.reshape(rows, channels, height, width).to(x.dtype), out=out)


class MotionModule(nn.Module):
    """One motion module; the extra level of nesting mirrors the checkpoint keys."""

    def __init__(self, channels: int, max_len: int):
        super().__init__()
        self.channels = channels
        self.temporal_transformer = TemporalTransformer(channels, max_len)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        if x.shape[0] % frames:
            raise RuntimeError(
                f"a UNet call has {x.shape[0]} rows, not a multiple of the {frames} frames of the clip"
            )
        return self.temporal_transformer(x, frames)


class MotionBlock(nn.Module):
    def __init__(self, channels, max_len):
        super().__init__()
        self.motion_modules = nn.ModuleList([MotionModule(c, max_len) for c in channels])


class MotionModel(nn.Module):
    """All motion modules of one checkpoint, laid out as ``down_blocks`` / ``mid_block`` / ``up_blocks``.

    Attributes: ``version`` ("v1", "v2", "v3", "animatelcm"), ``sdxl``, ``max_frames`` (the
    temporal window), ``family`` (format facts), ``name`` (file name it was loaded from).
    """

    def __init__(self, spec: MotionSpec, name: str = ""):
        super().__init__()
        self.spec = spec
        self.family: Family = spec.family
        self.version = spec.family.version
        self.sdxl = spec.family.sdxl
        self.max_frames = spec.family.max_frames
        self.name = name
        self.down_blocks = nn.ModuleList(
            [MotionBlock([c for _, c in self._level(spec, "down", i)], self.max_frames) for i in range(spec.levels("down"))]
        )
        self.up_blocks = nn.ModuleList(
            [MotionBlock([c for _, c in self._level(spec, "up", i)], self.max_frames) for i in range(spec.levels("up"))]
        )
        mid = spec.slots("mid")
        self.mid_block: Optional[MotionBlock] = MotionBlock([c for _, c in mid], self.max_frames) if mid else None

    @staticmethod
    def _level(spec: MotionSpec, kind: str, level: int):
        return [(s, c) for s, c in spec.slots(kind) if s.level == level]

    def modules_at(self, kind: str):
        """[(ModuleSlot, MotionModule)] for 'down', 'mid' or 'up', in level then index order."""
        if kind == "mid":
            return [] if self.mid_block is None else [
                (ModuleSlot("mid", 0, j), m) for j, m in enumerate(self.mid_block.motion_modules)
            ]
        blocks = self.down_blocks if kind == "down" else self.up_blocks
        return [(ModuleSlot(kind, i, j), m) for i, b in enumerate(blocks) for j, m in enumerate(b.motion_modules)]

    def extra_repr(self) -> str:
        return f"version={self.version!r}, max_frames={self.max_frames}, name={self.name!r}"
