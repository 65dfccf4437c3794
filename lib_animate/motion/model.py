"""The AnimateDiff motion module ("VanillaTemporalModule") and the model that holds all of them.

Parameter names follow the original AnimateDiff checkpoints, so a normalised file loads with a
plain ``load_state_dict``. Shapes and the forward pass: research/animatediff.md §1.1.

Input of one module: ``(N, C, H, W)`` with ``N = clips * frames`` and each clip's frames
contiguous. Every latent pixel of a clip becomes a length-``frames`` sequence that attends over
time only; the output is ``input + proj_out(...)``, so a zero ``proj_out`` is the identity.

Inside a module the tokens stay frame-major, ``(clips, frames, H*W, C)``: that is the memory
order of a channels-last ``(N, C, H, W)`` tensor, so entry and exit are views for such inputs
(one transposing copy at entry otherwise), and every Linear, norm, feed-forward and residual add
works on contiguous rows. Only the attention sees frames as a strided axis: per clip,
``(H*W, heads, frames, head_dim)`` views that ``scaled_dot_product_attention`` reads in place.
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
# webui's sd-webui-animatediff users hit it with heads folded into the batch). Launches are per
# clip, one sequence per latent pixel: 32,768 keeps up to 1448x1448 pixels in one launch per clip
# and anything larger safe.
MAX_ATTENTION_ROWS = 32768


def _apply_norm(module: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    if isinstance(module, nn.GroupNorm):
        return F.group_norm(x, module.num_groups, weight, bias, module.eps)
    return F.layer_norm(x, module.normalized_shape, weight, bias, module.eps)


def _norm_float32(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The norm computed on a float32 copy of a half-precision ``x`` (like ldm's GroupNorm32)."""
    compute = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    return _apply_norm(module, x.to(compute), module.weight.to(compute), module.bias.to(compute)).to(x.dtype)


def _norm_native(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The norm's own half-precision kernel (float32 statistics and arithmetic inside, one
    rounding at the end, like the float32 round trip). Autocast is off for the call: it would
    upcast both norms to a float32 copy and hand back float32, i.e. three extra passes over the
    tokens per norm."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        return _apply_norm(module, x, module.weight, module.bias)


def _norm(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """GroupNorm / LayerNorm of ``module`` on ``x``, result in ``x``'s dtype and statistics in float32."""
    if x.dtype in (torch.float16, torch.bfloat16) and x.is_cuda and module.weight.dtype == x.dtype:
        return _norm_native(module, x)
    return _norm_float32(module, x)


def _contiguous(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` as a contiguous tensor of ``dtype``: ``t`` itself if it is one, else one copy (cast
    and layout change in the same pass)."""
    if t.dtype == dtype and t.is_contiguous():
        return t
    return torch.empty(t.shape, dtype=dtype, device=t.device).copy_(t)


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
        """``x``: ``(..., frames, channels)`` or frame-major ``(clips, frames, tokens, channels)``."""
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
        pe = pe[:frames]
        if x.dim() == 4:  # frame-major: the same position for every token of a frame
            pe = pe.unsqueeze(1)
        return x + pe


class TemporalAttention(nn.Module):
    """Multi-head self-attention over the frame axis of frame-major (clips, frames, tokens, channels)."""

    def __init__(self, channels: int, max_len: int):
        super().__init__()
        self.heads = HEADS
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_k = nn.Linear(channels, channels, bias=False)
        self.to_v = nn.Linear(channels, channels, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels), nn.Dropout(0.0)])
        self.pos_encoder = PositionEncoding(channels, max_len)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """``residual + attention(x)``, both frame-major ``(clips, frames, tokens, channels)``."""
        x = self.pos_encoder(x)
        clips, frames, tokens, channels = x.shape
        head_dim = channels // self.heads
        q, k, v = self.to_q(x), self.to_k(x), self.to_v(x)

        def split_heads(t):  # (frames, n, c) -> (n, heads, frames, head_dim): a strided view, no copy
            return t.view(frames, t.shape[1], self.heads, head_dim).permute(1, 2, 0, 3)

        out = torch.empty_like(residual)
        # One launch per clip: the 4-D views of different clips cannot share a batch axis (fused
        # SDPA kernels take 4-D inputs only); the token axis is the kernel's grid axis, chunked.
        for c in range(clips):
            for start in range(0, tokens, MAX_ATTENTION_ROWS):
                span = slice(start, start + MAX_ATTENTION_ROWS)
                a = F.scaled_dot_product_attention(split_heads(q[c, :, span]), split_heads(k[c, :, span]), split_heads(v[c, :, span]))
                torch.add(residual[c, :, span], self._project_out(a), out=out[c, :, span])
        return out

    def _project_out(self, a: torch.Tensor) -> torch.Tensor:
        """to_out of the attention output ``(n, heads, frames, head_dim)``, as ``(frames, n, c)``.

        Which memory order the output has depends on the kernel: flash kernels write it in the
        query's (frame-major) order, memory-efficient ones token-major, the math path
        head-major. to_out runs on whichever order is a view; the result may be a transposed
        view that the residual add reads in place.
        """
        n, _, frames, _ = a.shape
        frame_major = a.permute(2, 0, 1, 3)
        token_major = a.transpose(1, 2)
        if token_major.is_contiguous() and not frame_major.is_contiguous():
            return self.to_out[0](token_major.reshape(n, frames, -1)).transpose(0, 1)
        return self.to_out[0](frame_major.reshape(frames, n, -1))  # a copy only after the math path


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
            x = attention(_norm(norm, x), residual=x)
        return self.ff(_norm(self.ff_norm, x)) + x


class TemporalTransformer(nn.Module):
    def __init__(self, channels: int, max_len: int, norm_across_frames: bool = False):
        super().__init__()
        self.norm = nn.GroupNorm(NORM_GROUPS, channels, eps=1e-6, affine=True)
        self.norm_across_frames = norm_across_frames
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList([TemporalTransformerBlock(channels, max_len)])
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, frames: int, scale=None) -> torch.Tensor:
        """``x + h``, or ``x + scale * h`` with a number or a (rows, 1, 1, 1) ``scale`` (see scale.py)."""
        rows, channels, height, width = x.shape
        clips = rows // frames
        # Per-frame GroupNorm (the original SD1.5 modules normalise each frame on its own). On
        # the CPU its output keeps x's layout; CUDA's kernel always returns NCHW.
        h = _norm_across_frames(self.norm, x, clips, frames) if self.norm_across_frames else _norm(self.norm, x)
        # (clips*frames, c, h, w) -> frame-major (clips, frames, h*w, c): a view of a
        # channels-last tensor; otherwise one copy that also does the cast to the weights' dtype.
        h = _contiguous(h.permute(0, 2, 3, 1), self.proj_in.weight.dtype)
        h = self.proj_in(h.view(clips, frames, height * width, channels))
        for block in self.transformer_blocks:
            h = block(h)
        h = self.proj_out(h)
        # Back to (rows, c, h, w) as a channels-last view. The residual keeps x's memory layout
        # (the webui's spatial transformers may hand over channels-last tensors); a layout change
        # would alter the next convolutions' numerics. The add also casts to x's dtype.
        h = h.view(rows, height, width, channels).permute(0, 3, 1, 2)
        if scale is None:
            return torch.add(x, h, out=torch.empty_like(x))
        if isinstance(scale, torch.Tensor):
            return torch.addcmul(x, h, scale.to(x.dtype), out=torch.empty_like(x))
        return torch.add(x, h, alpha=scale, out=torch.empty_like(x))


def _norm_across_frames(norm: nn.Module, x: torch.Tensor, clips: int, frames: int) -> torch.Tensor:
    """GroupNorm statistics over each clip's frames together (AD-SDXL): (clips, C, frames, H, W)."""
    rows, channels, height, width = x.shape
    video = x.reshape(clips, frames, channels, height, width).transpose(1, 2)
    return _norm(norm, video).transpose(1, 2).reshape(rows, channels, height, width)


class MotionModule(nn.Module):
    """One motion module; the extra level of nesting mirrors the checkpoint keys."""

    def __init__(self, channels: int, max_len: int, norm_across_frames: bool = False):
        super().__init__()
        self.channels = channels
        self.temporal_transformer = TemporalTransformer(channels, max_len, norm_across_frames)

    def forward(self, x: torch.Tensor, frames: int, scale=None) -> torch.Tensor:
        if x.shape[0] % frames:
            raise RuntimeError(
                f"a UNet call has {x.shape[0]} rows, not a multiple of the {frames} frames of the clip"
            )
        return self.temporal_transformer(x, frames, scale)


class MotionBlock(nn.Module):
    def __init__(self, channels, max_len, norm_across_frames: bool = False):
        super().__init__()
        self.motion_modules = nn.ModuleList([MotionModule(c, max_len, norm_across_frames) for c in channels])


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
        across = spec.family.module_norm_across_frames
        self.down_blocks = nn.ModuleList(
            [MotionBlock([c for _, c in self._level(spec, "down", i)], self.max_frames, across) for i in range(spec.levels("down"))]
        )
        self.up_blocks = nn.ModuleList(
            [MotionBlock([c for _, c in self._level(spec, "up", i)], self.max_frames, across) for i in range(spec.levels("up"))]
        )
        mid = spec.slots("mid")
        self.mid_block: Optional[MotionBlock] = MotionBlock([c for _, c in mid], self.max_frames, across) if mid else None

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
