"""Chunked VAE encoding of init frames: the same posterior as one call, fewer frames per call, and the
model's own method back afterwards."""

import pytest
import torch
from ldm.modules.distributions.distributions import DiagonalGaussianDistribution

from lib_animate.sampling.encode_chunks import chunked_encode


class Encoder(torch.nn.Module):
    """What the webui calls: ``encode_first_stage(pixels)`` -> a diagonal Gaussian (ldm's class)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.calls = []

    def encode_first_stage(self, x):
        self.calls.append(x.shape[0])
        return DiagonalGaussianDistribution(self.conv(x))


def test_chunks_give_the_whole_batch_posterior_and_the_method_is_restored():
    model = Encoder()
    pixels = torch.randn(19, 3, 16, 16)
    whole = model.encode_first_stage(pixels)
    model.calls.clear()
    with chunked_encode(model, chunk=8):
        chunked = model.encode_first_stage(pixels)
    assert model.calls == [8, 8, 3]
    assert isinstance(chunked, DiagonalGaussianDistribution)
    torch.testing.assert_close(chunked.mean, whole.mean, rtol=0, atol=1e-6)
    torch.testing.assert_close(chunked.std, whole.std, rtol=0, atol=1e-6)
    assert "encode_first_stage" not in vars(model)
    model.calls.clear()
    model.encode_first_stage(pixels)
    assert model.calls == [19]


def test_tensor_outputs_are_joined_and_errors_restore_too():
    class Plain:
        def encode_first_stage(self, x):
            if x.shape[0] > 4:
                raise AssertionError("called with more than a chunk")
            return x * 2

    model = Plain()
    with chunked_encode(model, chunk=4):
        assert torch.equal(model.encode_first_stage(torch.arange(10.0)), torch.arange(10.0) * 2)
    with pytest.raises(RuntimeError):
        with chunked_encode(model, chunk=4):
            raise RuntimeError("boom")
    assert "encode_first_stage" not in vars(model)
    with pytest.raises(ValueError):
        with chunked_encode(model, chunk=0):
            pass
