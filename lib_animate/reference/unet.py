"""The mode's own ldm UNets: the webui's ``UNetModel`` class with the reference's upsample order.

At sizes that are not multiples of 64 (the reference default height 784 gives 98 latent rows,
halved to 49, 25, 13) a skip connection can be one row shorter than twice the feature map
coming up. diffusers, which the Animate Anyone weights were trained and are run with,
interpolates straight to the skip connection's size and then applies the upsampler's conv.
The webui's ldm path upsamples x2, convolves, and resizes the result afterwards
(``TorchHijackForUnet.cat``), which gives different numbers. These UNets are separate objects
from the user's checkpoint, so they simply follow the reference order: each upsampler gets the
size of the skip connection it is about to be concatenated with.

The reference UNet has no output layers in the release; its ``out`` is an ``nn.Identity`` and its
forward returns the last decoder features. Only its transformer blocks' inputs are used.
"""

from contextlib import contextmanager
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from ldm.modules.diffusionmodules import openaimodel
from ldm.modules.diffusionmodules.openaimodel import UNetModel, Upsample

from .convert import UNetLayout


class SkipSizedUpsample(nn.Module):
    """Nearest upsampling to a given size (x2 when none is given), then the 3x3 conv.

    Holds the ldm ``Upsample``'s ``conv`` under the same name, so the weight keys are unchanged.
    ``output_size`` is set by :class:`AnimateAnyoneUNet` for the duration of one block call.
    """

    def __init__(self, conv: nn.Module, channels: int):
        super().__init__()
        self.channels = channels
        self.conv = conv
        self.output_size: Optional[Sequence[int]] = None

    @classmethod
    def from_ldm(cls, upsample: Upsample) -> "SkipSizedUpsample":
        if not upsample.use_conv or upsample.dims != 2:
            raise ValueError("only 2D Upsample layers with a conv are supported")
        return cls(upsample.conv, upsample.channels)

    def forward(self, x):
        size = self.output_size
        if size is None or tuple(size) == (2 * x.shape[-2], 2 * x.shape[-1]):
            x = F.interpolate(x, scale_factor=2, mode="nearest")  # bit-identical to ldm's Upsample
        else:
            x = F.interpolate(x, size=tuple(size), mode="nearest")
        return self.conv(x)


class AnimateAnyoneUNet(UNetModel):
    """ldm ``UNetModel`` whose upsamplers resize to the skip connection's size before their conv.

    Same modules and key names as ``UNetModel``; every block is still called as
    ``block(h, emb, context)``, so modules inserted into the blocks (motion modules) and hooks
    on blocks or transformer blocks work as on the webui's UNet. Defining ``forward`` here also
    keeps the webui's class-level ``UNetModel.forward`` dispatch (``sd_unet``, e.g. TensorRT
    engines built for the user's checkpoint) from replacing these weights.
    """

    def __init__(self, **config):
        super().__init__(**config)
        for block in self.output_blocks:
            for index, layer in enumerate(block):
                if isinstance(layer, Upsample):
                    block[index] = SkipSizedUpsample.from_ldm(layer)

    def forward(self, x, timesteps=None, context=None, y=None, **kwargs):
        if y is not None:
            raise ValueError("this UNet is not class-conditional; y must be None")
        # looked up at call time, so the webui's patch of timestep_embedding applies here too
        t_emb = openaimodel.timestep_embedding(timesteps, self.model_channels, repeat_only=False)
        emb = self.time_embed(t_emb)
        h = x.type(self.dtype)
        skips = []
        for block in self.input_blocks:
            h = block(h, emb, context)
            skips.append(h)
        h = self.middle_block(h, emb, context)
        for block in self.output_blocks:
            h = torch.cat([h, skips.pop()], dim=1)
            next_skip_size = skips[-1].shape[-2:] if skips else None
            with _upsampling_to(block, next_skip_size):
                h = block(h, emb, context)
        return self.out(h.type(x.dtype))


@contextmanager
def _upsampling_to(block: nn.Module, size):
    upsamplers = [layer for layer in block if isinstance(layer, SkipSizedUpsample)]
    for layer in upsamplers:
        layer.output_size = size
    try:
        yield
    finally:
        for layer in upsamplers:
            layer.output_size = None


def build_unet(layout: UNetLayout, with_output: bool = True, device="cpu", num_heads: int = 8) -> AnimateAnyoneUNet:
    """An :class:`AnimateAnyoneUNet` with ``layout``'s widths (parameters initialised on ``device``).

    ``with_output=False`` builds the reference UNet: no ``out`` layers (an ``nn.Identity``).
    Build on ``"meta"`` to read key names and shapes without allocating.
    """
    with torch.device(device):
        unet = AnimateAnyoneUNet(**layout.ldm_config(num_heads=num_heads))
    if not with_output:
        unet.out = nn.Identity()
    unet.layout = layout
    return unet
