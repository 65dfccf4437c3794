"""Cross-frame GroupNorm for the UNet's ResBlocks and output norm (AnimateDiff v1 and HotShot).

v1 was trained on a 3-D UNet whose ResBlock norms and final norm see a whole clip at once:
their statistics span (C/groups, frames, H, W) rather than one frame. The webui's 2-D ldm UNet
normalises per row, so while a v1 module is injected these norms get forward hooks that fold
each clip's frames into the spatial axes. Spatial-transformer norms and the motion modules' own
norms stay per frame (research/animatediff.md §1.8).

The hooks are scoped to one UNet instance and removed on exit; the VAE and other models never
see them. The clip size comes from the job's FrameLayout, so cond and uncond clips, in one call
or in separate calls, are normalised separately.
"""

from contextlib import contextmanager
from typing import Iterator, List

from torch import nn

from ..sampling.layout import FrameLayout


def unet_frame_norms(unet: nn.Module) -> List[nn.GroupNorm]:
    """The GroupNorms that span frames in v1: every ResBlock's two norms and the output norm."""
    norms = []
    for module in unet.modules():
        if type(module).__name__ == "ResBlock":
            norms.append(module.in_layers[0])
            norms.append(module.out_layers[0])
    norms.append(unet.out[0])
    for norm in norms:
        if not isinstance(norm, nn.GroupNorm):
            raise TypeError(f"expected a GroupNorm in the UNet's ResBlocks, found {type(norm).__name__}")
    return norms


@contextmanager
def cross_frame_group_norm(unet: nn.Module, layout: FrameLayout) -> Iterator[None]:
    def fold_frames(module, args):
        x = args[0]
        rows, channels, height, width = x.shape
        frames = layout.frames
        clips = layout.chunks(rows)
        # (clips*frames, c, h, w) -> (clips, c, frames, h, w): GroupNorm accepts (N, C, *).
        return (x.reshape(clips, frames, channels, height, width).transpose(1, 2),) + tuple(args[1:])

    def unfold_frames(module, args, output):
        clips, channels, frames, height, width = output.shape
        return output.transpose(1, 2).reshape(clips * frames, channels, height, width)

    handles = []
    try:
        for norm in unet_frame_norms(unet):
            handles.append(norm.register_forward_pre_hook(fold_frames))
            handles.append(norm.register_forward_hook(unfold_frames))
        yield
    finally:
        for handle in handles:
            handle.remove()
