import pytest
import torch

from lib_animate.sampling.aa_ddim import (
    aa_ddim_timesteps,
    alpha_bar,
    cfg,
    ddim_step,
    guided,
    previous_timestep,
    sample_aa_ddim,
    trailing_timesteps,
    v_to_x0_eps,
)
from lib_animate.sampling.schedules import ANIMATE_ANYONE

diffusers = pytest.importorskip("diffusers")


def reference_scheduler():
    """DDIMScheduler configured like Moore-AnimateAnyone's configs/inference/inference_v2.yaml."""
    return diffusers.DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear",
        clip_sample=False, steps_offset=1, prediction_type="v_prediction", rescale_betas_zero_snr=True,
        timestep_spacing="trailing", set_alpha_to_one=True,
    )


def test_timestep_sequences_from_the_research_notes():
    t30 = trailing_timesteps(30)
    assert t30[:6] == [999, 966, 932, 899, 866, 832] and t30[-3:] == [99, 66, 32] and len(t30) == 30
    t25 = trailing_timesteps(25)
    assert t25[:2] == [999, 959] and t25[-1] == 39 and len(t25) == 25
    assert trailing_timesteps(20) == list(range(999, 0, -50))
    assert trailing_timesteps(4) == [999, 749, 499, 249]
    assert trailing_timesteps(1) == [999]
    for bad in (0, 1001):
        with pytest.raises(ValueError):
            trailing_timesteps(bad)


def test_timesteps_equal_diffusers_for_every_step_count():
    sched = reference_scheduler()
    for steps in range(1, 1001):
        sched.set_timesteps(steps)
        assert trailing_timesteps(steps) == sched.timesteps.tolist(), steps


def test_previous_timestep_rule():
    pairs = aa_ddim_timesteps(30)
    assert pairs[1] == (966, 933)  # while the next model call is at 932
    assert previous_timestep(966, 30) == 933
    differs = [(t, p) for (t, p), (nxt, _) in zip(pairs, pairs[1:]) if p != nxt]
    assert len(differs) == 10  # 10 of the 29 transitions
    assert pairs[-1] == (32, -1)  # the last step goes to alpha_bar = 1
    assert aa_ddim_timesteps(4) == [(999, 749), (749, 499), (499, 249), (249, -1)]
    a = ANIMATE_ANYONE.alphas_cumprod()
    assert alpha_bar(a, -1) == 1.0 and alpha_bar(a, 0) == a[0].item()


def test_v_prediction_algebra():
    g = torch.Generator().manual_seed(0)
    x, v = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(3, 4, generator=g, dtype=torch.float64)
    for a in (0.0, 0.3, 0.999):
        x0, eps = v_to_x0_eps(x, v, a)
        torch.testing.assert_close(a ** 0.5 * x0 + (1 - a) ** 0.5 * eps, x)  # x = sqrt(a) x0 + sqrt(1-a) eps
        torch.testing.assert_close(a ** 0.5 * eps - (1 - a) ** 0.5 * x0, v)  # v = sqrt(a) eps - sqrt(1-a) x0
    x0, eps = v_to_x0_eps(x, v, 0.0)  # zero terminal SNR: pure noise in, x0 = -v
    assert torch.equal(x0, -v) and torch.equal(eps, x)
    assert torch.equal(ddim_step(x0, eps, 1.0), x0)


def toy_model(x, t):
    """A deterministic stand-in for the UNet: depends on both x and t."""
    return torch.tanh(x.flip(-1) * 0.7) + 0.3 * x + (t / 1000.0)


def diffusers_trajectory(sched, steps, x):
    sched.set_timesteps(steps)
    out = []
    for t in sched.timesteps:
        result = sched.step(toy_model(x, int(t)), t, x, eta=0.0)
        x = result.prev_sample
        out.append((x, result.pred_original_sample))
    return out


def our_trajectory(steps, x, alphas_cumprod):
    out = []
    sample_aa_ddim(toy_model, x, steps, alphas_cumprod, callback=lambda i, xi, x0: out.append((i, xi, x0)))
    assert [i for i, _, _ in out] == list(range(steps))
    return [(xi, x0) for _, xi, x0 in out]


@pytest.mark.parametrize("steps", [30, 25, 20, 7, 4, 1])
def test_update_rule_matches_diffusers_in_float64(steps):
    sched = reference_scheduler()
    sched.alphas_cumprod = sched.alphas_cumprod.double()
    sched.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    x = torch.randn(2, 4, 3, 5, 6, generator=torch.Generator().manual_seed(steps), dtype=torch.float64)
    ref = diffusers_trajectory(sched, steps, x)
    ours = our_trajectory(steps, x, sched.alphas_cumprod)
    for (rx, rx0), (ox, ox0) in zip(ref, ours):
        torch.testing.assert_close(ox, rx, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(ox0, rx0, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("steps", [30, 25, 4])
def test_update_rule_matches_diffusers_in_float32(steps):
    sched = reference_scheduler()
    x = torch.randn(1, 4, 8, 6, 6, generator=torch.Generator().manual_seed(steps))
    ref = diffusers_trajectory(sched, steps, x)
    ours = our_trajectory(steps, x, sched.alphas_cumprod)
    for (rx, rx0), (ox, ox0) in zip(ref, ours):
        assert ox.dtype == torch.float32
        torch.testing.assert_close(ox, rx, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ox0, rx0, rtol=1e-5, atol=1e-5)
    # with our own float64 schedule (cast by the multiplication) the result agrees too
    final = sample_aa_ddim(toy_model, x, steps)
    torch.testing.assert_close(final, ref[-1][0], rtol=1e-4, atol=1e-4)


def test_the_previous_timestep_rule_is_what_makes_it_match():
    """From t = 966 (30 steps) diffusers steps to alpha_bar[933], not to the next model timestep 932."""
    sched = reference_scheduler()
    sched.alphas_cumprod = sched.alphas_cumprod.double()
    sched.set_timesteps(30)
    a = sched.alphas_cumprod
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    v = toy_model(x, 966)
    ref = sched.step(v, torch.tensor(966), x).prev_sample
    x0, eps = v_to_x0_eps(x, v, alpha_bar(a, 966))
    torch.testing.assert_close(ddim_step(x0, eps, alpha_bar(a, 933)), ref, rtol=1e-13, atol=1e-13)
    wrong = ddim_step(x0, eps, alpha_bar(a, 932))
    assert (wrong - ref).abs().max() > 1e-4


def test_cfg_and_guided():
    c, u = torch.tensor([3.0]), torch.tensor([1.0])
    assert cfg(c, u, 3.5).item() == 1.0 + 3.5 * 2.0
    seen = []

    def pair(x, t):
        seen.append(t)
        return x * 2, x

    model = guided(pair, 3.5)
    assert model(torch.tensor([1.0]), 999).item() == 1 + 3.5 * (2 - 1)
    assert seen == [999]


def test_guided_sampling_equals_sampling_with_the_guided_v():
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    pair = lambda x, t: (toy_model(x, t), 0.5 * toy_model(x, t) - x)  # noqa: E731
    by_hand = lambda x, t: cfg(*pair(x, t), 2.5)  # noqa: E731
    assert torch.equal(sample_aa_ddim(guided(pair, 2.5), x, 6), sample_aa_ddim(by_hand, x, 6))


def test_callback_and_interrupt():
    x = torch.randn(3, 3, generator=torch.Generator().manual_seed(6))
    calls, previews = [], []

    def model(x, t):
        calls.append(t)
        return toy_model(x, t)

    stop_after = 3
    result = sample_aa_ddim(model, x, 10, interrupted=lambda: len(calls) >= stop_after,
                            callback=lambda i, xi, x0: previews.append((i, xi)))
    assert calls == trailing_timesteps(10)[:stop_after]
    assert [i for i, _ in previews] == [0, 1, 2]
    assert torch.equal(result, previews[-1][1])
    assert torch.equal(sample_aa_ddim(toy_model, x, 10, interrupted=lambda: True), x)


def test_last_step_returns_the_x0_prediction():
    x = torch.randn(2, 2, generator=torch.Generator().manual_seed(7))
    last = []
    result = sample_aa_ddim(toy_model, x, 5, callback=lambda i, xi, x0: last.append(x0))
    assert torch.equal(result, last[-1])  # alpha_bar(t_prev < 0) = 1
