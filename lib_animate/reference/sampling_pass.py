"""Everything one sampling pass of one video puts on the denoising UNet, as one context.

On entry the ReferenceNet runs once (batch 1, t = 0) and fills the bank; while active, the
denoising UNet's self-attention reads that bank for "cond" rows and its first conv's output
gets the pose features. Every UNet call of the pass -- all steps, all context windows, cond and
uncond passes -- reuses the same bank. On exit both hooks are removed, whatever happened.
"""

from contextlib import ExitStack, contextmanager, nullcontext
from typing import Callable, ContextManager, Optional

import torch
import torch.nn as nn

from ..sampling.layout import FrameLayout
from .pose_features import PoseFeatures, inject_pose_features
from .reference_attention import ReferenceNet, attend_to_reference


@contextmanager
def animate_anyone_pass(
    denoising_unet: nn.Module,
    reference_net: ReferenceNet,
    reference_latent: torch.Tensor,
    image_embeds: torch.Tensor,
    layout: FrameLayout,
    pose: Optional[PoseFeatures] = None,
    fast_reference_attention: bool = False,
    sdpa_context: Callable[[], ContextManager] = nullcontext,
):
    """Yields the :class:`ReferenceBank` built for this pass.

    ``fast_reference_attention`` opts in to the cached reference K/V path (see
    reference_attention.py); only ask for it when the installed attention is plain softmax attention.
    ``sdpa_context`` wraps its SDPA calls (the webui's kernel choice, e.g. "sdp-no-mem").
    """
    bank = reference_net.run(reference_latent, image_embeds)
    with ExitStack() as stack:
        stack.enter_context(attend_to_reference(denoising_unet, bank, layout, fast=fast_reference_attention,
                                                sdpa_context=sdpa_context))
        if pose is not None:
            stack.enter_context(inject_pose_features(denoising_unet, pose, layout))
        yield bank
