"""The initial noise of a video job's sampling passes: FreeNoise and FreeInit.

The webui draws a sampler's initial noise with ``p.rng.next()`` at the start of ``p.sample`` (the
sampler then scales it to its first noise level). :func:`on_first_draw` replaces that one draw,
per instance and only once, so ancestral samplers' later draws and the next job are untouched.

FreeInit runs the webui's own ``p.sample`` several times (:class:`FreeInitPasses`): the first pass
as usual; each further pass starts from the previous result noised back to the sampler's first
step with the first pass's noise, low frequencies kept, high frequencies from a fresh draw of
``p.rng`` (so seeds, variation seeds and the webui's RNG setting still apply). Hires fix runs on
the last pass only; interrupt or skip ends the passes and returns the current one.
"""

import math
from typing import Callable, List, Optional

import torch

from ...sampling.freeinit import low_pass_filter, reinitialize
from ...sampling.noise import apply_freenoise
from ..errors import RequestError


def on_first_draw(p, transform: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
    """Make the next ``p.rng.next()`` return ``transform(noise)``; returns the undo (idempotent)."""
    rng = p.rng
    original = type(rng).next.__get__(rng)

    def first_draw():
        vars(rng).pop("next", None)
        return transform(original())

    rng.next = first_draw
    return lambda: vars(rng).pop("next", None)


def freenoise_transform(args, window: int, seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """FreeNoise on one video's noise (identity unless the job asks for it)."""
    if args.noise_init != "freenoise":
        return lambda noise: noise
    return lambda noise: apply_freenoise(noise, window, args.freenoise_stride, torch.Generator().manual_seed(seed))


def renoise_for(p) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``(z0, noise) -> initial noise`` that puts ``z0`` at the sampler's first step, in the units the
    sampler takes its initial noise in: k-diffusion samplers multiply it by sigma_0 (or by
    sqrt(1 + sigma_0^2) with the SGM noise multiplier), the timestep samplers take the latent at
    their first timestep as it is."""
    from modules import sd_samplers_kdiffusion, sd_samplers_timesteps, shared

    sampler = p.sampler
    if isinstance(sampler, sd_samplers_kdiffusion.KDiffusionSampler):
        sigma = float(sampler.get_sigmas(p, p.steps)[0])
        if getattr(shared.opts, "sgm_noise_multiplier", False):
            return lambda z0, noise: (z0 + sigma * noise) / math.sqrt(1 + sigma ** 2)
        return lambda z0, noise: z0 / sigma + noise
    if isinstance(sampler, sd_samplers_timesteps.CompVisSampler):
        first = int(torch.as_tensor(sampler.get_timesteps(p, p.steps)).max())
        alpha_bar = float(p.sd_model.alphas_cumprod[first])
        return lambda z0, noise: math.sqrt(alpha_bar) * z0 + math.sqrt(1 - alpha_bar) * noise
    raise RequestError(f"FreeInit does not know how the sampler '{p.sampler_name}' starts from noise; choose a "
                       f"k-diffusion sampler (Euler, DPM++ ...) or DDIM / PLMS / UniPC")


class FreeInitPasses:
    """``run(sample, ...)``: FreeInit's passes over the webui's ``p.sample``."""

    def __init__(self, p, args, frames: int, freenoise: Callable[[torch.Tensor], torch.Tensor], keep_passes: bool = False):
        self.p, self.args, self.frames, self.freenoise = p, args, frames, freenoise
        self.passes_run = 0
        self.keep_passes = keep_passes
        self.kept: List[torch.Tensor] = []  # the latents of the passes before the last (on the CPU), when kept

    def run(self, sample, *sample_args, **sample_kwargs):
        from modules import shared

        p, args = self.p, self.args
        passes = args.freeinit_iterations + 1
        enable_hr = bool(getattr(p, "enable_hr", False))
        first_noise: Optional[torch.Tensor] = None
        lpf: Optional[torch.Tensor] = None  # the same for every pass: made once
        samples = None
        undo = lambda: None  # noqa: E731
        try:
            for index in range(passes):
                p.enable_hr = enable_hr and index == passes - 1
                if passes > 1:
                    shared.state.textinfo = f"FreeInit pass {index + 1}/{passes}"
                if index == 0:
                    def record(noise):
                        nonlocal first_noise
                        first_noise = self.freenoise(noise)
                        return first_noise

                    undo = on_first_draw(p, record)
                else:
                    renoise = renoise_for(p)  # the sampler of the pass before: the same kind every pass
                    z0 = samples
                    if lpf is None:
                        lpf = low_pass_filter(self.frames, z0.shape[-2], z0.shape[-1], args.freeinit_filter,
                                              args.freeinit_spatial, args.freeinit_temporal, args.freeinit_order)
                    undo = on_first_draw(p, lambda fresh, z0=z0, lpf=lpf, renoise=renoise: reinitialize(
                        z0.float(), first_noise.float(), self.freenoise(fresh).float(), renoise, lpf).to(fresh.dtype))
                samples = sample(*sample_args, **sample_kwargs)
                undo()
                self.passes_run = index + 1
                if self.keep_passes and index < passes - 1:
                    self.kept.append(samples.detach().to("cpu"))
                if shared.state.interrupted or shared.state.skipped:
                    break
        finally:
            undo()
            p.enable_hr = enable_hr
        return samples
