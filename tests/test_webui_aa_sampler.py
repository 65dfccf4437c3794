"""The "Animate Anyone (DDIM)" sampler's loop equals the reference sampler (no webui needed:
the webui classes are built only when the sampler is registered)."""

import torch

from lib_animate.sampling.aa_ddim import sample_aa_ddim, trailing_timesteps
from lib_animate.webui.jobs.aa_sampler import animate_anyone_ddim


def toy_v_model(x, t):
    """Any deterministic function of (x, t) standing in for the CFG-combined v prediction."""
    return 0.3 * x + 0.001 * float(t) - 0.1


def test_the_webui_sampler_loop_is_the_reference_sampler():
    x = torch.randn(3, 4, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for steps in (4, 20, 25, 30):
        seen = []

        def model(xt, t_rows):
            assert torch.all(t_rows == t_rows[0]) and t_rows.shape == (3,)
            seen.append(int(t_rows[0]))
            return toy_v_model(xt, int(t_rows[0]))

        previews = []
        ours = animate_anyone_ddim(model, x.clone(), trailing_timesteps(steps), callback=lambda d: previews.append(d["i"]))
        reference = sample_aa_ddim(lambda xt, t: toy_v_model(xt, t), x.clone(), steps)
        assert seen == trailing_timesteps(steps)
        assert previews == list(range(steps))
        torch.testing.assert_close(ours, reference, rtol=0, atol=1e-12)
