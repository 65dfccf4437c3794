"""img2vid for AnimateDiff: blend an init image's latent into the first frames (and a last image's
latent into the last frames) before img2img noising.

Weights (``img2vid_weights``), for frames ``i = 0 .. F-1``:

1. first image: ``a_i = clamp(1 - i**power / scale, 0, 1)`` (sd-webui-animatediff's
   ``latent_power`` / ``latent_scale``, defaults 1 and 32: the init fades out over 32 frames);
2. last image (optional): ``b_i = clamp(1 - (F-1-i)**power_last / scale_last, 0, 1)``, the same
   curve counted from the end; where ``a_i + b_i > 1`` both are divided by ``a_i + b_i``;
   then frame ``F-1`` is pinned to the last image (``a = 0, b = 1``) and frame 0 to the first
   (``a = 1, b = 0``; frame 0 wins when ``F = 1``);
3. strength: both are multiplied by ``strength`` in ``[0, 1]`` (1: the curves above; 0: no
   image at all).

Frame ``i``'s latent is then ``a_i first + b_i last + (1 - a_i - b_i) other_i``
(``blend_init_latents``), where ``other`` is what a frame falls back to -- sd-webui-animatediff
uses standard-normal latents there; the caller decides.
"""

from typing import Optional, Tuple

import torch


def fade_weights(frames: int, power: float = 1.0, scale: float = 32.0) -> torch.Tensor:
    """``clamp(1 - i**power / scale, 0, 1)`` for ``i = 0 .. frames-1`` (float64)."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if power <= 0 or scale <= 0:
        raise ValueError(f"latent power and scale must be > 0, got power={power}, scale={scale}")
    i = torch.arange(frames, dtype=torch.float64)
    return (1 - i ** power / scale).clamp(0, 1)


def img2vid_weights(
    frames: int,
    power: float = 1.0,
    scale: float = 32.0,
    last_image: bool = False,
    power_last: float = 1.0,
    scale_last: float = 32.0,
    strength: float = 1.0,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Per-frame weights ``(a, b)`` of the first and last images (``b`` is None without a last image)."""
    if not 0 <= strength <= 1:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    a = fade_weights(frames, power, scale)
    if not last_image:
        return strength * a, None
    b = fade_weights(frames, power_last, scale_last).flip(0)
    total = a + b
    over = total > 1
    a = torch.where(over, a / total, a)
    b = torch.where(over, b / total, b)
    a[-1], b[-1] = 0.0, 1.0
    a[0], b[0] = 1.0, 0.0
    return strength * a, strength * b


def blend_init_latents(
    other: torch.Tensor,
    first: torch.Tensor,
    a: torch.Tensor,
    last: Optional[torch.Tensor] = None,
    b: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``a_i first + b_i last + (1 - a_i - b_i) other_i`` for frames ``i`` along dim 0 of ``other``.

    ``first`` / ``last`` broadcast against one frame (e.g. ``[C, H, W]`` or ``[1, C, H, W]``).
    """
    if (last is None) != (b is None):
        raise ValueError("give both the last latent and its weights, or neither")
    shape = (-1,) + (1,) * (other.dim() - 1)
    a = a.to(device=other.device, dtype=other.dtype).view(shape)
    if last is None:
        return a * first + (1 - a) * other
    b = b.to(device=other.device, dtype=other.dtype).view(shape)
    return a * first + b * last + (1 - a - b) * other
