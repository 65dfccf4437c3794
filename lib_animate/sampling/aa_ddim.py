"""The Animate Anyone sampler: DDIM (eta 0) exactly as the Moore-AnimateAnyone reference runs it.

The reference configures diffusers' ``DDIMScheduler`` with linear betas 0.00085 -> 0.012 rescaled
to zero terminal SNR, v-prediction, "trailing" timestep spacing and ``set_alpha_to_one``. Its rules:

* timesteps ``t_k = round(T - k T / N) - 1`` for ``k = 0 .. N-1`` (30 steps: 999, 966, 932, ...);
* the previous timestep of ``t`` is ``t - T // N`` -- *not* the next evaluated timestep: with 30
  steps ``966 -> 933`` although the next model call is at 932 -- and ``alpha_bar(t < 0) = 1``;
* v-prediction: ``x0 = sqrt(a) x - sqrt(1 - a) v``, ``eps = sqrt(a) v + sqrt(1 - a) x``;
* DDIM eta 0: ``x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps``;
* guidance on v: ``v = v_uncond + g (v_cond - v_uncond)``.

The model is any function ``model(x, t) -> v`` with ``t`` a Python int; :func:`guided` turns a
function returning ``(v_cond, v_uncond)`` into one. The webui layer puts the UNet, CFG batching and
context windows behind that function.
"""

from typing import Callable, List, Optional, Tuple

import numpy as np
import torch

from lib_animate.sampling.schedules import ANIMATE_ANYONE

Model = Callable[[torch.Tensor, int], torch.Tensor]
PairModel = Callable[[torch.Tensor, int], Tuple[torch.Tensor, torch.Tensor]]
Callback = Callable[[int, torch.Tensor, torch.Tensor], None]


def trailing_timesteps(steps: int, train_steps: int = 1000) -> List[int]:
    """``round(arange(T, 0, -T / N)) - 1``: N timesteps ending ``T / N - 1`` above zero, starting at ``T - 1``.

    Evaluated like the reference (numpy float64 ``arange``, round half to even).
    """
    if not 1 <= steps <= train_steps:
        raise ValueError(f"steps must be in [1, {train_steps}], got {steps}")
    timesteps = np.round(np.arange(train_steps, 0, -train_steps / steps)).astype(np.int64) - 1
    return [int(t) for t in timesteps]


def previous_timestep(t: int, steps: int, train_steps: int = 1000) -> int:
    """``t - T // N``: the timestep DDIM steps to from ``t`` (may differ from the next evaluated one)."""
    return t - train_steps // steps


def aa_ddim_timesteps(steps: int, train_steps: int = 1000) -> List[Tuple[int, int]]:
    """``(t, t_prev)`` for every step, in sampling order."""
    return [(t, previous_timestep(t, steps, train_steps)) for t in trailing_timesteps(steps, train_steps)]


def alpha_bar(alphas_cumprod: torch.Tensor, t: int) -> float:
    """``alpha_bar_t`` for ``t >= 0``; 1.0 for ``t < 0`` ("set_alpha_to_one")."""
    return float(alphas_cumprod[t]) if t >= 0 else 1.0


def v_to_x0_eps(x: torch.Tensor, v: torch.Tensor, a: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """v-prediction at ``alpha_bar = a``: ``x0 = sqrt(a) x - sqrt(1-a) v``, ``eps = sqrt(a) v + sqrt(1-a) x``."""
    sa, s1a = a ** 0.5, (1 - a) ** 0.5
    return sa * x - s1a * v, sa * v + s1a * x


def ddim_step(x0: torch.Tensor, eps: torch.Tensor, a_prev: float) -> torch.Tensor:
    """DDIM with eta 0: ``x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps``."""
    return a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * eps


def cfg(v_cond: torch.Tensor, v_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: ``v_uncond + scale (v_cond - v_uncond)``."""
    return v_uncond + scale * (v_cond - v_uncond)


def guided(model: PairModel, scale: float) -> Model:
    """Wrap ``model(x, t) -> (v_cond, v_uncond)`` into ``(x, t) -> cfg(v_cond, v_uncond, scale)``."""
    def guided_model(x: torch.Tensor, t: int) -> torch.Tensor:
        v_cond, v_uncond = model(x, t)
        return cfg(v_cond, v_uncond, scale)
    return guided_model


def sample_aa_ddim(
    model: Model,
    x: torch.Tensor,
    steps: int,
    alphas_cumprod: Optional[torch.Tensor] = None,
    callback: Optional[Callback] = None,
    interrupted: Optional[Callable[[], bool]] = None,
) -> torch.Tensor:
    """Run the reference DDIM from pure noise ``x`` (``init_noise_sigma`` is 1) over ``steps`` steps.

    ``alphas_cumprod`` defaults to the Animate Anyone schedule (T = its length). After step ``i``
    ``callback(i, x_prev, x0)`` receives the new latent and the step's x0 preview. ``interrupted()``
    is asked before every model call; when it says True the loop stops and returns the current ``x``.
    """
    if alphas_cumprod is None:
        alphas_cumprod = ANIMATE_ANYONE.alphas_cumprod()
    train_steps = len(alphas_cumprod)
    for i, (t, t_prev) in enumerate(aa_ddim_timesteps(steps, train_steps)):
        if interrupted is not None and interrupted():
            break
        x0, eps = v_to_x0_eps(x, model(x, t), alpha_bar(alphas_cumprod, t))
        x = ddim_step(x0, eps, alpha_bar(alphas_cumprod, t_prev))
        if callback is not None:
            callback(i, x, x0)
    return x
