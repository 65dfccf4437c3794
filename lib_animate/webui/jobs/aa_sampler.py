"""The "Animate Anyone (DDIM)" sampler, added to the webui's sampler list.

The released Animate Anyone model is sampled with DDIM over trailing timesteps, a zero-terminal-
SNR linear schedule, v-prediction and the reference's previous-timestep rule ``t - T // steps``
(lib_animate.sampling.aa_ddim). The webui's DDIM uses leading timesteps, steps to the next
evaluated timestep, and converts v to eps through ``sd_model.alphas_cumprod`` -- which cannot
work at alpha_bar = 0 (t = 999). This sampler reuses the webui's CFG denoiser (batching, cond /
uncond passes, callbacks, progress, live preview, interrupt) but keeps the model's raw v output
and does the update with the exact schedule.
"""

import torch

from ...sampling.aa_ddim import sample_aa_ddim, trailing_timesteps
from ...sampling.schedules import ANIMATE_ANYONE
from ..errors import RequestError

# Not "... DDIM": the webui reads a trailing scheduler name ("DDIM" is one) off sampler names.
NAME = "Animate Anyone (DDIM)"
ALIASES = ["animate_anyone_ddim", "Animate Anyone DDIM"]


def exact_alphas_cumprod() -> torch.Tensor:
    return ANIMATE_ANYONE.alphas_cumprod()  # float64, alpha_bar[999] == 0


@torch.no_grad()
def animate_anyone_ddim(model, x, timesteps, extra_args=None, callback=None, disable=None):
    """The webui's sampler-function signature around the reference DDIM (sample_aa_ddim):
    ``model(x, t_rows, **extra_args)`` is the webui's CFG denoiser returning combined v."""
    extra_args = {} if extra_args is None else extra_args
    steps = len(timesteps)
    if [int(t) for t in timesteps] != trailing_timesteps(steps):
        raise ValueError("Animate Anyone DDIM runs on its own trailing timesteps")
    ones = x.new_ones((x.shape[0],))

    def report(i, x_prev, x0):
        if callback is not None:
            callback({"x": x_prev, "i": i, "sigma": 0, "sigma_hat": 0, "denoised": x0})

    return sample_aa_ddim(lambda xt, t: model(xt, t * ones, **extra_args), x, steps, exact_alphas_cumprod(), callback=report)


def _sampler_classes():
    from modules import sd_samplers_timesteps
    from modules.sd_samplers_timesteps import CFGDenoiserTimesteps, CompVisSampler, CompVisTimestepsDenoiser
    from modules import shared

    class VCFGDenoiser(CFGDenoiserTimesteps):
        """The webui's CFG denoiser over the raw model output (v), with x0 from the exact schedule."""

        def __init__(self, sampler):
            super().__init__(sampler)
            self.alphas = exact_alphas_cumprod()

        @property
        def inner_model(self):
            if self.model_wrap is None:
                self.model_wrap = CompVisTimestepsDenoiser(shared.sd_model)
            return self.model_wrap

        def get_pred_x0(self, x_in, x_out, sigma):
            # Indexed on the CPU: the exact schedule is float64, which MPS devices cannot hold.
            a = self.alphas[sigma.detach().cpu().to(torch.long)].to(x_in.device, x_in.dtype)[:, None, None, None]
            return a.sqrt() * x_in - (1 - a).sqrt() * x_out

    class AnimateAnyoneDDIMSampler(CompVisSampler):
        def __init__(self, sd_model):
            super().__init__(animate_anyone_ddim, sd_model)
            self.model_wrap_cfg = VCFGDenoiser(self)
            self.model_wrap = self.model_wrap_cfg.inner_model

        def get_timesteps(self, p, steps):
            return torch.tensor(trailing_timesteps(steps), dtype=torch.long)

        def sample(self, p, *args, **kwargs):
            _check_job(p)
            return super().sample(p, *args, **kwargs)

        def sample_img2img(self, p, *args, **kwargs):
            _check_job(p)
            raise RequestError(f"{NAME} samples from noise only (txt2img); choose another sampler for img2img")

    del sd_samplers_timesteps
    return AnimateAnyoneDDIMSampler


def _check_job(p) -> None:
    """Also where no script ran (``p.scripts`` is None) or a second pass picks the sampler itself."""
    from .animate_anyone_job import AnimateAnyoneJob
    from .job import of

    if not isinstance(of(p), AnimateAnyoneJob):
        raise RequestError(f"the sampler '{NAME}' only samples Animate Anyone jobs (the Animate Anyone mode of this "
                           f"extension); choose another sampler")


def register() -> None:
    """Add the sampler to the webui's lists (idempotent)."""
    from modules import sd_samplers, sd_samplers_common

    if NAME in sd_samplers.all_samplers_map:
        return
    sampler_class = _sampler_classes()
    data = sd_samplers_common.SamplerData(NAME, lambda model: sampler_class(model), ALIASES, {})
    sd_samplers.all_samplers.append(data)
    sd_samplers.all_samplers_map[NAME] = data
    sd_samplers.set_samplers()


def unregister() -> None:
    from modules import sd_samplers

    data = sd_samplers.all_samplers_map.pop(NAME, None)
    if data is not None:
        sd_samplers.all_samplers.remove(data)
        sd_samplers.set_samplers()
