import dataclasses

import pytest
import torch

from lib_animate.sampling.schedules import (
    ANIMATE_ANYONE,
    SCHEDULES,
    SD15_ANIMATEDIFF,
    SDXL_ANIMATEDIFF,
    WEBUI_TERMINAL_ALPHA_BAR,
    NoiseSchedule,
    alphas_cumprod_from_betas,
    betas_from_alphas_cumprod,
    get_schedule,
    linear_betas,
    rescale_zero_terminal_snr,
    scaled_linear_betas,
    sigmas_from_alphas_cumprod,
    with_finite_terminal_snr,
)

diffusers = pytest.importorskip("diffusers")


def test_beta_curves():
    lin = linear_betas(0.00085, 0.012, 1000)
    assert lin.dtype == torch.float64 and lin.shape == (1000,)
    assert lin[0].item() == 0.00085 and lin[-1].item() == pytest.approx(0.012, abs=1e-18)
    torch.testing.assert_close(lin[1] - lin[0], torch.tensor((0.012 - 0.00085) / 999, dtype=torch.float64))
    sq = scaled_linear_betas(0.00085, 0.020, 1000)
    assert sq[0].item() == pytest.approx(0.00085, rel=1e-15) and sq[-1].item() == pytest.approx(0.020, rel=1e-15)
    torch.testing.assert_close(sq.sqrt().diff(), torch.full((999,), (0.020 ** 0.5 - 0.00085 ** 0.5) / 999,
                                                            dtype=torch.float64))


def test_known_values_from_the_research_notes():
    # research/animate_anyone.md §2: zero-SNR linear schedule of the reference
    a = ANIMATE_ANYONE.alphas_cumprod()
    assert a.dtype == torch.float64
    assert a[999].item() == 0.0
    assert a[998].item() == pytest.approx(6.3e-8, rel=0.01)
    assert a[499].item() == pytest.approx(0.1425, abs=5e-5)
    zsnr_scaled = NoiseSchedule("scaled_linear", 0.00085, 0.012, zero_terminal_snr=True).alphas_cumprod()
    assert zsnr_scaled[499].item() == pytest.approx(0.2424, abs=5e-5)
    assert a[0].item() == pytest.approx(1 - 0.00085, rel=1e-14)  # zSNR keeps alpha_bar_0


def test_alphas_cumprod_is_the_product_of_one_minus_betas():
    betas = linear_betas(0.00085, 0.012, 50)
    a = alphas_cumprod_from_betas(betas)
    prod = 1.0
    for t in range(50):
        prod *= 1 - betas[t].item()
        assert a[t].item() == pytest.approx(prod, rel=1e-14)
    torch.testing.assert_close(betas_from_alphas_cumprod(a), betas, rtol=1e-12, atol=1e-15)


def test_zero_terminal_snr_rescaling():
    betas = linear_betas(0.00085, 0.012, 1000)
    s0, s1 = alphas_cumprod_from_betas(betas).sqrt(), alphas_cumprod_from_betas(rescale_zero_terminal_snr(betas)).sqrt()
    assert s1[-1].item() == 0 and s1[0].item() == pytest.approx(s0[0].item(), rel=1e-15)
    # sqrt(alpha_bar) is an affine map of the original one
    affine = (s0 - s0[-1]) * s0[0] / (s0[0] - s0[-1])
    torch.testing.assert_close(s1, affine, rtol=1e-12, atol=1e-14)
    assert rescale_zero_terminal_snr(betas)[-1].item() == 1.0  # the last step destroys all signal


@pytest.mark.parametrize("schedule,kwargs", [
    (SD15_ANIMATEDIFF, dict(beta_schedule="linear", beta_end=0.012)),
    (SDXL_ANIMATEDIFF, dict(beta_schedule="scaled_linear", beta_end=0.020)),
    (ANIMATE_ANYONE, dict(beta_schedule="linear", beta_end=0.012, rescale_betas_zero_snr=True)),
])
def test_presets_match_diffusers(schedule, kwargs):
    sched = diffusers.DDIMScheduler(beta_start=0.00085, num_train_timesteps=1000, **kwargs)
    torch.testing.assert_close(schedule.alphas_cumprod().float(), sched.alphas_cumprod, rtol=2e-6, atol=1e-7)
    # diffusers rescales in float32, which costs its zero-SNR betas up to ~2e-4 relative (the
    # ratios alpha_bar_t / alpha_bar_{t-1} cancel); the float64 comparison is the test below
    rtol = 5e-4 if schedule.zero_terminal_snr else 2e-6
    torch.testing.assert_close(schedule.betas().float(), sched.betas, rtol=rtol, atol=1e-7)


def test_rescale_matches_diffusers_in_float64():
    from diffusers.schedulers.scheduling_ddim import rescale_zero_terminal_snr as reference

    betas = linear_betas(0.00085, 0.012, 1000)
    torch.testing.assert_close(rescale_zero_terminal_snr(betas), reference(betas.clone()), rtol=1e-12, atol=1e-15)


def test_presets_as_data():
    assert SD15_ANIMATEDIFF == NoiseSchedule("linear", 0.00085, 0.012, 1000, False, "eps")
    assert SDXL_ANIMATEDIFF == NoiseSchedule("scaled_linear", 0.00085, 0.020, 1000, False, "eps")
    assert ANIMATE_ANYONE == NoiseSchedule("linear", 0.00085, 0.012, 1000, True, "v")
    assert get_schedule("animate_anyone") is ANIMATE_ANYONE
    assert set(SCHEDULES) >= {"animatediff_sd15", "animatediff_sdxl", "animate_anyone"}
    with pytest.raises(TypeError):
        SCHEDULES["x"] = SD15_ANIMATEDIFF
    with pytest.raises(dataclasses.FrozenInstanceError):
        ANIMATE_ANYONE.beta_end = 0.02
    with pytest.raises(ValueError, match="animatediff_sd15"):
        get_schedule("cosine")
    for bad in (dict(beta_schedule="cosine"), dict(prediction="x0"), dict(beta_start=0.02)):
        with pytest.raises(ValueError):
            dataclasses.replace(SD15_ANIMATEDIFF, **bad)


def test_sigmas_and_finite_terminal_snr():
    a = ANIMATE_ANYONE.alphas_cumprod()
    sigmas = sigmas_from_alphas_cumprod(a)
    assert torch.isinf(sigmas[-1]) and torch.isfinite(sigmas[:-1]).all()
    finite = with_finite_terminal_snr(a)
    assert finite[-1].item() == WEBUI_TERMINAL_ALPHA_BAR
    assert torch.equal(finite[:-1], a[:-1])
    assert sigmas_from_alphas_cumprod(finite)[-1].item() == pytest.approx(4518.7, rel=1e-4)
