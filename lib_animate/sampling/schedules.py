"""Noise schedules as data: betas, alphas_cumprod (``alpha_bar``) and named presets.

Names follow diffusers: ``"linear"`` is a plain ``linspace`` of the betas (ComfyUI calls it
``sqrt_linear``); ``"scaled_linear"`` is a ``linspace`` of ``sqrt(beta)``, squared (what the ldm
code that the webui runs calls ``"linear"``). Everything is computed and returned in float64;
callers cast to the model's dtype and device.
"""

from dataclasses import dataclass
from types import MappingProxyType

import torch

BETA_SCHEDULES = ("linear", "scaled_linear")
PREDICTIONS = ("eps", "v")

# The webui's "Zero Terminal SNR" option replaces alpha_bar[T-1] = 0 by this value so that
# sigma_max = sqrt((1 - a) / a) (about 4518.7) stays finite for k-diffusion samplers.
WEBUI_TERMINAL_ALPHA_BAR = 4.8973451890853435e-08


def linear_betas(beta_start: float, beta_end: float, timesteps: int = 1000) -> torch.Tensor:
    """``beta_t = linspace(beta_start, beta_end, T)``."""
    return torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)


def scaled_linear_betas(beta_start: float, beta_end: float, timesteps: int = 1000) -> torch.Tensor:
    """``beta_t = linspace(sqrt(beta_start), sqrt(beta_end), T) ** 2``."""
    return torch.linspace(beta_start ** 0.5, beta_end ** 0.5, timesteps, dtype=torch.float64) ** 2


def alphas_cumprod_from_betas(betas: torch.Tensor) -> torch.Tensor:
    """``alpha_bar_t = prod_{s <= t} (1 - beta_s)`` (float64)."""
    return torch.cumprod(1 - betas.to(torch.float64), dim=0)


def betas_from_alphas_cumprod(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`alphas_cumprod_from_betas`: ``beta_0 = 1 - alpha_bar_0``,
    ``beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}``."""
    a = alphas_cumprod.to(torch.float64)
    return 1 - torch.cat([a[:1], a[1:] / a[:-1]])


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Betas with zero terminal SNR (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample
    Steps are Flawed", Algorithm 1).

    With ``s_t = sqrt(alpha_bar_t)``: ``s'_t = (s_t - s_{T-1}) * s_0 / (s_0 - s_{T-1})``, so
    ``s'_0 = s_0`` and ``s'_{T-1} = 0``; the new betas are those of ``alpha_bar' = s'^2``.
    """
    s = alphas_cumprod_from_betas(betas).sqrt()
    first, last = s[0], s[-1]
    s = (s - last) * first / (first - last)
    return betas_from_alphas_cumprod(s ** 2)


def with_finite_terminal_snr(alphas_cumprod: torch.Tensor, floor: float = WEBUI_TERMINAL_ALPHA_BAR) -> torch.Tensor:
    """``max(alpha_bar_t, floor)``: a zero-terminal-SNR table usable by sigma-based (k-diffusion)
    samplers, as the webui's own zero-SNR option does for its last entry."""
    return alphas_cumprod.clamp_min(floor)


def sigmas_from_alphas_cumprod(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """k-diffusion noise levels ``sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t)`` (inf where alpha_bar is 0)."""
    a = alphas_cumprod.to(torch.float64)
    return ((1 - a) / a).sqrt()


@dataclass(frozen=True)
class NoiseSchedule:
    """A discrete DDPM training schedule: ``T`` betas plus the model's prediction target."""

    beta_schedule: str
    beta_start: float
    beta_end: float
    timesteps: int = 1000
    zero_terminal_snr: bool = False
    prediction: str = "eps"

    def __post_init__(self):
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"unknown beta schedule {self.beta_schedule!r}; use one of {BETA_SCHEDULES}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction type {self.prediction!r}; use one of {PREDICTIONS}")
        if self.timesteps < 2 or not 0 < self.beta_start <= self.beta_end < 1:
            raise ValueError(f"need T >= 2 and 0 < beta_start <= beta_end < 1, got {self}")

    def betas(self) -> torch.Tensor:
        make = linear_betas if self.beta_schedule == "linear" else scaled_linear_betas
        betas = make(self.beta_start, self.beta_end, self.timesteps)
        return rescale_zero_terminal_snr(betas) if self.zero_terminal_snr else betas

    def alphas_cumprod(self) -> torch.Tensor:
        return alphas_cumprod_from_betas(self.betas())


SD15_ANIMATEDIFF = NoiseSchedule("linear", 0.00085, 0.012)
SDXL_ANIMATEDIFF = NoiseSchedule("scaled_linear", 0.00085, 0.020)
ANIMATE_ANYONE = NoiseSchedule("linear", 0.00085, 0.012, zero_terminal_snr=True, prediction="v")
SD15_CHECKPOINT = NoiseSchedule("scaled_linear", 0.00085, 0.012)  # what SD1.x checkpoints were trained with
# SDXL base's own schedule (sgm's LegacyDDPMDiscretization, the diffusers scheduler config of SDXL).
# HotShot-XL trains and samples with it: its fine_tune.py and inference.py take the scheduler from
# the hub repo's config (built from SDXL's) and never change its betas.
SDXL_CHECKPOINT = NoiseSchedule("scaled_linear", 0.00085, 0.012)

SCHEDULES = MappingProxyType({
    "animatediff_sd15": SD15_ANIMATEDIFF,
    "animatediff_sdxl": SDXL_ANIMATEDIFF,
    "animate_anyone": ANIMATE_ANYONE,
    "sd15": SD15_CHECKPOINT,
    "sdxl": SDXL_CHECKPOINT,
})


def get_schedule(name: str) -> NoiseSchedule:
    """The preset called ``name`` (``ValueError`` listing the known names otherwise)."""
    try:
        return SCHEDULES[name]
    except KeyError:
        raise ValueError(f"unknown noise schedule {name!r}; known: {', '.join(SCHEDULES)}") from None
