"""FreeNoise's noise rescheduling: exact frame sources, diffusers' FreeNoiseMixin as the oracle."""

from types import SimpleNamespace

import pytest
import torch

from lib_animate.sampling.noise import apply_freenoise, freenoise_sources


def test_each_chunk_takes_a_shuffle_of_the_chunk_one_window_earlier():
    generator = torch.Generator().manual_seed(0)
    frames, window, stride = 30, 8, 4
    sources = freenoise_sources(frames, window, stride, generator)
    assert sources[:window] == list(range(window))
    assert all(0 <= s < window for s in sources)  # every frame's noise comes from the first window
    for start in range(window, frames, stride):
        chunk = sources[start:start + stride]
        earlier = sources[start - window:start - window + len(chunk)]
        if len(chunk) == stride:
            assert sorted(chunk) == sorted(earlier)  # the same noises, shuffled
        else:
            assert set(chunk) <= set(sources[start - window:start - window + stride])  # a cut last chunk
    again = freenoise_sources(frames, window, stride, torch.Generator().manual_seed(0))
    assert again == sources  # deterministic for a seed
    assert freenoise_sources(frames, window, stride, torch.Generator().manual_seed(1)) != sources


def test_a_video_within_one_window_is_unchanged():
    noise = torch.randn(8, 4, 3, 3)
    assert apply_freenoise(noise, 8, 4, torch.Generator().manual_seed(0)) is noise
    assert apply_freenoise(noise, 16, 4, torch.Generator().manual_seed(0)) is noise


@pytest.mark.parametrize("frames, window, stride", [(24, 8, 4), (21, 8, 4), (40, 16, 4), (17, 16, 3), (12, 4, 4), (9, 4, 1)])
def test_freenoise_equals_diffusers_shuffle_context(frames, window, stride):
    diffusers_free_noise = pytest.importorskip("diffusers.pipelines.free_noise_utils",
                                              reason="the oracle (diffusers' FreeNoiseMixin) needs diffusers, not in this package set")
    pipe = SimpleNamespace(_free_noise_context_length=window, _free_noise_context_stride=stride,
                           _free_noise_noise_type="shuffle_context", vae_scale_factor=1)
    expected = diffusers_free_noise.AnimateDiffFreeNoiseMixin._prepare_latents_free_noise(
        pipe, 1, 2, frames, 4, 4, torch.float32, torch.device("cpu"), generator=torch.Generator().manual_seed(7))
    generator = torch.Generator().manual_seed(7)
    noise = torch.randn((1, 2, frames, 4, 4), generator=generator)  # what diffusers draws first
    ours = apply_freenoise(noise[0].transpose(0, 1), window, stride, generator)  # frames first
    assert torch.equal(ours, expected[0].transpose(0, 1))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="cannot exceed its window"):
        freenoise_sources(20, 4, 8, torch.Generator())
    with pytest.raises(ValueError, match="at least 1"):
        freenoise_sources(20, 0, 1, torch.Generator())
