"""Swap the noise schedule on the webui's model wrapper for a job, and put it back exactly.

The webui keeps the schedule in ``sd_model.alphas_cumprod`` and resets it every batch from
``sd_model.alphas_cumprod_original`` (``sd_models.apply_alpha_schedule_override``), so a job
replaces *both*. Restoring reassigns the very tensor objects that were there before (same values,
dtype and device), plus ``parameterization`` and, for Animate Anyone, the UNet object.
"""

from typing import Any, Dict, Optional

import torch

_MISSING = object()
ATTRIBUTES = ("alphas_cumprod", "alphas_cumprod_original", "parameterization")
# Animate Anyone swaps the UNet itself: sd_model.model.diffusion_model, see swap_unet().


class ModelState:
    """A snapshot of the schedule attributes of ``sd_model``; ``restore()`` is idempotent."""

    def __init__(self, sd_model):
        self.sd_model = sd_model
        self.saved: Dict[str, Any] = {name: getattr(sd_model, name, _MISSING) for name in ATTRIBUTES}
        self.unet = None  # the webui's UNet object while another one is swapped in
        self.restored = False

    def swap_unet(self, unet) -> None:
        """Put ``unet`` in place of ``sd_model.model.diffusion_model`` (the original comes back on restore)."""
        if self.unet is None:
            self.unet = self.sd_model.model.diffusion_model
        self.sd_model.model.diffusion_model = unet

    def set_schedule(self, alphas_cumprod: torch.Tensor, parameterization: Optional[str] = None) -> None:
        reference = self.saved["alphas_cumprod_original"]
        if reference is _MISSING:
            reference = self.saved["alphas_cumprod"]
        values = alphas_cumprod.to(device=reference.device, dtype=reference.dtype)
        self.sd_model.alphas_cumprod = values
        self.sd_model.alphas_cumprod_original = values
        if parameterization is not None:
            self.sd_model.parameterization = parameterization

    def unswap_unet(self) -> None:
        """Put the webui's UNet back (idempotent)."""
        if self.unet is not None:
            self.sd_model.model.diffusion_model = self.unet
            self.unet = None

    def restore(self) -> None:
        self.unswap_unet()
        for name, value in self.saved.items():
            if value is _MISSING:
                if name in vars(self.sd_model):
                    delattr(self.sd_model, name)
            else:
                setattr(self.sd_model, name, value)
        self.restored = True
