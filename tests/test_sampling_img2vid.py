import pytest
import torch

from lib_animate.sampling.img2vid import blend_init_latents, fade_weights, img2vid_weights


def test_default_fade_is_linear_over_32_frames():
    a, b = img2vid_weights(40)
    assert b is None
    expected = [max(0.0, 1 - i / 32) for i in range(40)]
    torch.testing.assert_close(a, torch.tensor(expected, dtype=torch.float64))
    assert a[0].item() == 1.0 and a[32:].eq(0).all()


def test_power_and_scale():
    w = fade_weights(6, power=2, scale=10)
    torch.testing.assert_close(w, torch.tensor([1, 0.9, 0.6, 0.1, 0, 0], dtype=torch.float64))
    torch.testing.assert_close(fade_weights(3, power=0.5, scale=4), torch.tensor([1, 0.75, 1 - 2 ** 0.5 / 4],
                                                                                  dtype=torch.float64))


@pytest.mark.parametrize("frames", [2, 3, 16, 24, 64])
def test_last_image_weights(frames):
    a, b = img2vid_weights(frames, last_image=True)
    assert (a[0].item(), b[0].item()) == (1.0, 0.0)
    assert (a[-1].item(), b[-1].item()) == (0.0, 1.0)
    assert ((a >= 0) & (b >= 0) & (a + b <= 1 + 1e-12)).all()
    torch.testing.assert_close(a[1:-1], b.flip(0)[1:-1])  # same curve from both ends
    raw_a, raw_b = fade_weights(frames), fade_weights(frames).flip(0)
    inner = slice(1, frames - 1)
    over = (raw_a + raw_b > 1)[inner]
    torch.testing.assert_close((a + b)[inner][over], torch.ones(int(over.sum()), dtype=torch.float64))
    torch.testing.assert_close(a[inner][~over], raw_a[inner][~over])


def test_last_image_normalisation_example():
    # 16 frames: frame 4 has a = 1 - 4/32 = 0.875 and b = 1 - 11/32 = 0.65625
    a, b = img2vid_weights(16, last_image=True)
    assert a[4].item() == pytest.approx(0.875 / 1.53125)
    assert b[4].item() == pytest.approx(0.65625 / 1.53125)


def test_separate_curves_for_the_last_image():
    a, b = img2vid_weights(40, last_image=True, power_last=2, scale_last=25)
    assert b[-2].item() == pytest.approx(1 - 1 / 25)
    assert b[-6].item() == 0.0 and b[-5].item() == pytest.approx(1 - 16 / 25)
    assert a[10].item() == pytest.approx(1 - 10 / 32)


def test_strength_scales_both_weights():
    a, b = img2vid_weights(16, last_image=True, strength=0.5)
    full_a, full_b = img2vid_weights(16, last_image=True)
    torch.testing.assert_close(a, 0.5 * full_a)
    torch.testing.assert_close(b, 0.5 * full_b)
    zero_a, _ = img2vid_weights(16, strength=0.0)
    assert zero_a.eq(0).all()


def test_single_frame_belongs_to_the_first_image():
    a, b = img2vid_weights(1, last_image=True)
    assert a.tolist() == [1.0] and b.tolist() == [0.0]


@pytest.mark.parametrize("kwargs", [dict(frames=0), dict(frames=4, power=0), dict(frames=4, scale=-1),
                                    dict(frames=4, strength=1.5), dict(frames=4, strength=-0.1),
                                    dict(frames=4, last_image=True, scale_last=0)])
def test_validation(kwargs):
    with pytest.raises(ValueError):
        img2vid_weights(**kwargs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_blend(dtype):
    g = torch.Generator().manual_seed(0)
    frames = 40
    other = torch.randn(frames, 4, 8, 8, generator=g).to(dtype)
    first, last = torch.randn(4, 8, 8, generator=g).to(dtype), torch.randn(1, 4, 8, 8, generator=g).to(dtype)
    a, _ = img2vid_weights(frames)
    out = blend_init_latents(other, first, a)
    assert out.dtype == dtype
    assert torch.equal(out[0], first)
    assert torch.equal(out[35], other[35])
    torch.testing.assert_close(out[8], (0.75 * first + 0.25 * other[8]).to(dtype))

    a, b = img2vid_weights(frames, last_image=True)
    out = blend_init_latents(other, first, a, last, b)
    assert torch.equal(out[0], first) and torch.equal(out[-1], last[0])
    expected = 0.375 * first.double() + 0.40625 * last[0].double() + 0.21875 * other[20].double()
    torch.testing.assert_close(out[20].double(), expected, rtol=0, atol=4e-3 if dtype == torch.float16 else 1e-6)
    with pytest.raises(ValueError):
        blend_init_latents(other, first, a, last)
