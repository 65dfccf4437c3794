"""The released pose guider: skeleton images -> features added after the UNet's first conv.

Layer for layer as in ``pose_guider.pth`` (16 tensors): ``conv_in`` 3->16, then per width step
a conv at the same width and a stride-2 conv to the next width (``blocks.0..5`` =
16->16, 16->32 s2, 32->32, 32->96 s2, 96->96, 96->256 s2), then ``conv_out`` 256->320. Every
conv is 3x3 with padding 1 and is followed by SiLU, except ``conv_out``. Three stride-2 convs
give the latent size (H/8, W/8). The input is RGB in [0, 1].

The widths are read from the file; only this structure is assumed.
"""

import re
from typing import Mapping, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import WeightsFileError
from ..key_check import compare_keys

PUBLISHED_BLOCK_CHANNELS = (16, 32, 96, 256)
PUBLISHED_OUT_CHANNELS = 320


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1)


class PoseGuider(nn.Module):
    def __init__(self, block_channels: Sequence[int] = PUBLISHED_BLOCK_CHANNELS,
                 out_channels: int = PUBLISHED_OUT_CHANNELS, in_channels: int = 3):
        super().__init__()
        block_channels = tuple(int(c) for c in block_channels)
        self.conv_in = _conv(in_channels, block_channels[0])
        blocks = []
        for width, next_width in zip(block_channels[:-1], block_channels[1:]):
            blocks.append(_conv(width, width))
            blocks.append(_conv(width, next_width, stride=2))
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = _conv(block_channels[-1], out_channels)

    @property
    def out_channels(self) -> int:
        return self.conv_out.out_channels

    def forward(self, pose: torch.Tensor) -> torch.Tensor:
        """(F, 3, H, W) in [0, 1] -> (F, out_channels, H/8, W/8)."""
        x = F.silu(self.conv_in(pose))
        for block in self.blocks:
            x = F.silu(block(x))
        return self.conv_out(x)

    @torch.no_grad()
    def encode(self, pose: torch.Tensor, chunk_frames: Optional[int] = None) -> torch.Tensor:
        """``forward`` over the frames in chunks of ``chunk_frames`` (all at once when None)."""
        if not chunk_frames or pose.shape[0] <= chunk_frames:
            return self(pose)
        return torch.cat([self(part) for part in pose.split(chunk_frames)], dim=0)

    @classmethod
    def from_state_dict(cls, weights: Mapping[str, torch.Tensor], what: str = "pose guider",
                        dtype: Optional[torch.dtype] = None) -> "PoseGuider":
        """Build from the released key set, validating every name and shape."""
        block_channels, out_channels = _read_widths(weights, what)
        with torch.device("meta"):
            guider = cls(block_channels, out_channels)
        compare_keys(weights, guider.state_dict()).raise_if_bad(f"{what} is not a pose guider of the released kind")
        tensors = {k: (v.to(dtype) if dtype is not None else v) for k, v in weights.items()}
        guider.load_state_dict(tensors, assign=True)
        return guider.eval().requires_grad_(False)


def _read_widths(weights: Mapping[str, torch.Tensor], what: str):
    conv_in = weights.get("conv_in.weight")
    conv_out = weights.get("conv_out.weight")
    block_ids = sorted({int(m.group(1)) for k in weights for m in [re.match(r"blocks\.(\d+)\.weight$", k)] if m})
    if conv_in is None or conv_out is None or not block_ids:
        raise WeightsFileError(
            f"{what} is not a pose guider: it needs conv_in, blocks.N and conv_out weights "
            f"(found {', '.join(sorted(weights)[:8])}{', ...' if len(weights) > 8 else ''})."
        )
    if block_ids != list(range(len(block_ids))) or len(block_ids) % 2:
        raise WeightsFileError(
            f"{what} is not a pose guider of the released kind: its blocks are {block_ids}, expected "
            f"an even number of consecutive blocks (pairs of a same-width conv and a stride-2 conv)."
        )
    if conv_in.dim() != 4 or conv_out.dim() != 4:
        raise WeightsFileError(f"{what}: conv_in and conv_out must be 2D convolutions.")
    widths = [int(conv_in.shape[0])]
    for i in range(1, len(block_ids), 2):
        widths.append(int(weights[f"blocks.{i}.weight"].shape[0]))
    return tuple(widths), int(conv_out.shape[0])
