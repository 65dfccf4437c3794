"""The job's noise schedule on the webui's model wrapper, applied only while ``p.sample`` runs.

The webui keeps the schedule in ``sd_model.alphas_cumprod`` and rebuilds it before every batch from
``sd_model.alphas_cumprod_original`` (``sd_models.apply_alpha_schedule_override``, which also applies
the user's "downcast alphas_cumprod" and "Zero Terminal SNR" options), so a job replaces *both*.
It does so in :meth:`ModelState.applied`, a context entered in the job's ``p.sample`` wrapper: the
same context that undoes the motion modules undoes the schedule, on success, exception and
interrupt alike, whether or not anybody calls ``p.close`` afterwards (the X/Y/Z plot copies ``p``
per cell and never closes the copies). Restoring reassigns the very tensor objects that were there
before (same values, dtype and device), plus ``parameterization`` and, for Animate Anyone, the
UNet object. :meth:`restore` is the same, as a safety net (idempotent).
"""

from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional

import torch

_MISSING = object()
ATTRIBUTES = ("alphas_cumprod", "alphas_cumprod_original", "parameterization")
# Animate Anyone swaps the UNet itself: sd_model.model.diffusion_model, see swap_unet().


class ModelState:
    """A snapshot of the schedule attributes of ``sd_model`` and the schedule the job wants."""

    def __init__(self, sd_model):
        self.sd_model = sd_model
        self.saved: Dict[str, Any] = {name: getattr(sd_model, name, _MISSING) for name in ATTRIBUTES}
        self.unet = None  # the webui's UNet object while another one is swapped in
        self.schedule: Optional[torch.Tensor] = None
        self.parameterization: Optional[str] = None

    def swap_unet(self, unet) -> None:
        """Put ``unet`` in place of ``sd_model.model.diffusion_model`` (the original comes back on restore)."""
        if self.unet is None:
            self.unet = self.sd_model.model.diffusion_model
        self.sd_model.model.diffusion_model = unet

    def unswap_unet(self) -> None:
        """Put the webui's UNet back (idempotent)."""
        if self.unet is not None:
            self.sd_model.model.diffusion_model = self.unet
            self.unet = None

    def set_schedule(self, alphas_cumprod: torch.Tensor, parameterization: Optional[str] = None) -> None:
        """The schedule (and parameterization) to sample with; applied by :meth:`applied`."""
        reference = self.saved["alphas_cumprod_original"]
        if reference is _MISSING:
            reference = self.saved["alphas_cumprod"]
        self.schedule = alphas_cumprod.to(device=reference.device, dtype=reference.dtype)
        self.parameterization = parameterization

    @contextmanager
    def applied(self, p, rebuild_sampler: bool) -> Iterator[None]:
        """Sample with the job's schedule: both attributes set, the webui's own schedule options applied on
        top, and (img2img) the sampler that ``p.init`` built with the old schedule built again -- the
        k-diffusion denoiser keeps the sigmas it was made with."""
        if self.schedule is None and self.parameterization is None:
            yield
            return
        from modules import sd_models, sd_samplers

        try:
            if self.schedule is not None:
                self.sd_model.alphas_cumprod = self.schedule
                self.sd_model.alphas_cumprod_original = self.schedule
                sd_models.apply_alpha_schedule_override(self.sd_model, p)
            if self.parameterization is not None:
                self.sd_model.parameterization = self.parameterization
            if rebuild_sampler and getattr(p, "sampler", None) is not None:
                p.sampler = sd_samplers.create_sampler(p.sampler_name, p.sd_model)
            yield
        finally:
            self.restore_schedule()

    def restore_schedule(self) -> None:
        for name, value in self.saved.items():
            if value is _MISSING:
                if name in vars(self.sd_model):
                    delattr(self.sd_model, name)
            else:
                setattr(self.sd_model, name, value)

    def restore(self) -> None:
        self.unswap_unet()
        self.restore_schedule()
