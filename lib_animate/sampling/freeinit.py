"""FreeInit: sample, re-noise the result, keep its low frequencies with fresh high-frequency noise,
and sample again (Wu et al., "FreeInit: Bridging Initialization Gap in Video Diffusion Models", 2023).

A video model's initial noise carries no low-frequency structure shared by the frames, while the
noisy latents it was trained on do. FreeInit takes a finished sample ``z0``, noises it back to the
first step with the first pass's own noise, and replaces the high frequencies of that (over frames,
height and width) by fresh noise::

    z = IFFT( H * FFT(z_noised) + (1 - H) * FFT(eps) )

``H`` is a 3-D low-pass filter centred on zero frequency (after ``fftshift``), with a spatial and
a temporal stop frequency. The filter formulas are the published ones (FreeInit's code, diffusers'
``FreeInitMixin``), including the "ideal" filter's threshold of ``2 * d_s`` on the squared distance.
"""

import torch
from torch import fft

FILTERS = ("butterworth", "gaussian", "ideal", "box")


def low_pass_filter(frames: int, height: int, width: int, kind: str = "butterworth", spatial: float = 0.25,
                    temporal: float = 0.25, order: float = 4.0) -> torch.Tensor:
    """(frames, height, width) weights in [0, 1]; 1 near zero frequency (the centre after fftshift)."""
    if kind not in FILTERS:
        raise ValueError(f"unknown FreeInit filter {kind!r}; use one of {', '.join(FILTERS)}")
    if spatial == 0 or temporal == 0:
        return torch.zeros(frames, height, width)
    if kind == "box":
        mask = torch.zeros(frames, height, width)
        ts, tt = round(int(height // 2) * spatial), round(frames // 2 * temporal)
        cf, ch, cw = frames // 2, height // 2, width // 2
        mask[cf - tt:cf + tt, ch - ts:ch + ts, cw - ts:cw + ts] = 1.0
        return mask
    t = (2 * torch.arange(frames, dtype=torch.float64) / frames - 1) * (spatial / temporal)
    h = 2 * torch.arange(height, dtype=torch.float64) / height - 1
    w = 2 * torch.arange(width, dtype=torch.float64) / width - 1
    d_square = t[:, None, None] ** 2 + h[None, :, None] ** 2 + w[None, None, :] ** 2
    if kind == "butterworth":
        mask = 1 / (1 + (d_square / spatial ** 2) ** order)
    elif kind == "gaussian":
        mask = torch.exp(-d_square / (2 * spatial ** 2))
    else:  # ideal
        mask = (d_square <= spatial * 2).to(torch.float64)
    return mask.to(torch.float32)


def mix_frequencies(noised: torch.Tensor, noise: torch.Tensor, lpf: torch.Tensor) -> torch.Tensor:
    """The low frequencies of ``noised`` with the high frequencies of ``noise``, over the last three
    dims (frames, height, width); computed in float32, returned in ``noised``'s dtype."""
    dims = (-3, -2, -1)
    lpf = lpf.to(noised.device)
    low = fft.fftshift(fft.fftn(noised.float(), dim=dims), dim=dims) * lpf
    high = fft.fftshift(fft.fftn(noise.float(), dim=dims), dim=dims) * (1 - lpf)
    return fft.ifftn(fft.ifftshift(low + high, dim=dims), dim=dims).real.to(noised.dtype)


def reinitialize(z0: torch.Tensor, first_noise: torch.Tensor, fresh: torch.Tensor, renoise, lpf: torch.Tensor) -> torch.Tensor:
    """The next pass's initial noise for latents laid out (frames, channels, h, w).

    ``renoise(z0, first_noise)`` noises the finished sample back to the sampler's first step, in
    the units the sampler takes its initial noise in; the filter acts over frames, h and w.
    """
    noised = renoise(z0, first_noise)
    mixed = mix_frequencies(noised.transpose(0, 1), fresh.transpose(0, 1), lpf)  # (channels, frames, h, w)
    return mixed.transpose(0, 1).contiguous()
