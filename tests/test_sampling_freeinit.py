"""FreeInit's frequency filter and noise mixing against their formulas (diffusers' FreeInitMixin as
the oracle where it is installed)."""

import math

import pytest
import torch

from lib_animate.sampling.freeinit import FILTERS, low_pass_filter, mix_frequencies, reinitialize


def formula_filter(frames, height, width, kind, ds, dt, order):
    """The published per-element formula, written out."""
    mask = torch.zeros(frames, height, width)
    for t in range(frames):
        for h in range(height):
            for w in range(width):
                d2 = ((ds / dt) * (2 * t / frames - 1)) ** 2 + (2 * h / height - 1) ** 2 + (2 * w / width - 1) ** 2
                if kind == "butterworth":
                    mask[t, h, w] = 1 / (1 + (d2 / ds ** 2) ** order)
                elif kind == "gaussian":
                    mask[t, h, w] = math.exp(-1 / (2 * ds ** 2) * d2)
                else:
                    mask[t, h, w] = 1.0 if d2 <= ds * 2 else 0.0
    return mask


@pytest.mark.parametrize("kind", ["butterworth", "gaussian", "ideal"])
@pytest.mark.parametrize("ds, dt, order", [(0.25, 0.25, 4), (0.5, 0.125, 2), (0.375, 0.75, 1)])
def test_filters_equal_the_formula(kind, ds, dt, order):
    got = low_pass_filter(8, 6, 10, kind, ds, dt, order)
    assert torch.allclose(got, formula_filter(8, 6, 10, kind, ds, dt, order), atol=1e-6)
    assert got[4, 3, 5] == 1.0  # zero frequency (the centre after fftshift) passes whole
    assert got.max() <= 1.0 and got.min() >= 0.0


def test_a_lower_cut_off_keeps_less():
    wide, narrow = low_pass_filter(8, 8, 8, "butterworth", 0.5, 0.5), low_pass_filter(8, 8, 8, "butterworth", 0.125, 0.125)
    assert narrow.sum() < wide.sum() and torch.all(narrow <= wide + 1e-6)
    assert not low_pass_filter(8, 8, 8, "gaussian", 0.0, 0.25).any()  # a zero stop frequency keeps nothing


def test_box_filter():
    box = low_pass_filter(8, 8, 8, "box", 0.5, 0.5)
    assert box.sum() == 4 * 4 * 4 and box[4, 4, 4] == 1 and box[0, 0, 0] == 0  # 2 frames / 2 pixels each side of the centre


@pytest.mark.parametrize("kind", ["butterworth", "gaussian", "ideal"])
def test_filters_equal_diffusers(kind):
    free_init = pytest.importorskip("diffusers.pipelines.free_init_utils", reason="the oracle (diffusers' FreeInitMixin) needs diffusers")
    expected = free_init.FreeInitMixin._get_free_init_freq_filter(None, (1, 4, 8, 6, 10), "cpu", kind, 4, 0.25, 0.375)
    assert torch.allclose(low_pass_filter(8, 6, 10, kind, 0.25, 0.375, 4), expected[0, 0], atol=1e-6)


def test_mixing_equals_ifft_of_the_filtered_spectra():
    g = torch.Generator().manual_seed(0)
    noised, fresh = torch.randn(4, 8, 6, 6, generator=g), torch.randn(4, 8, 6, 6, generator=g)
    lpf = low_pass_filter(8, 6, 6, "butterworth", 0.25, 0.25)
    got = mix_frequencies(noised, fresh, lpf)
    dims = (-3, -2, -1)
    spectrum = lambda x: torch.fft.fftshift(torch.fft.fftn(x, dim=dims), dim=dims)  # noqa: E731
    expected = torch.fft.ifftn(torch.fft.ifftshift(lpf * spectrum(noised) + (1 - lpf) * spectrum(fresh), dim=dims), dim=dims).real
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(mix_frequencies(noised, fresh, torch.ones(8, 6, 6)), noised, atol=1e-5)  # all-pass: the noised latent
    assert torch.allclose(mix_frequencies(noised, fresh, torch.zeros(8, 6, 6)), fresh, atol=1e-5)  # no-pass: fresh noise
    pytest.importorskip("diffusers.pipelines.free_init_utils", reason="the oracle needs diffusers")
    from diffusers.pipelines.free_init_utils import FreeInitMixin

    assert torch.allclose(got, FreeInitMixin._apply_freq_filter(None, noised, fresh, lpf), atol=1e-5)


def test_reinitialize_filters_over_frames_height_and_width():
    g = torch.Generator().manual_seed(1)
    z0, eps, fresh = (torch.randn(8, 4, 6, 6, generator=g) for _ in range(3))  # (frames, channels, h, w)
    lpf = low_pass_filter(8, 6, 6, "gaussian", 0.25, 0.25)
    got = reinitialize(z0, eps, fresh, lambda z, e: 0.1 * z + e, lpf)
    expected = mix_frequencies((0.1 * z0 + eps).transpose(0, 1), fresh.transpose(0, 1), lpf).transpose(0, 1)
    assert got.shape == z0.shape and torch.allclose(got, expected, atol=1e-6)


def test_unknown_filter():
    with pytest.raises(ValueError, match="unknown FreeInit filter"):
        low_pass_filter(4, 4, 4, "lanczos")
    assert FILTERS == ("butterworth", "gaussian", "ideal", "box")
