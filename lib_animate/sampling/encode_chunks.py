"""VAE-encode a batch of frames a few at a time.

The webui's img2img set-up encodes every init image in one VAE call; for a video that is one call
over all frames, whose activations (the encoder's first blocks run at full resolution) grow with the
frame count. :func:`chunked_encode` replaces ``encode_first_stage`` on one model instance, for the
duration of a ``with`` block, by a version that encodes ``chunk`` frames per call and joins the
results: a tensor, or a diagonal Gaussian posterior (ldm's ``DiagonalGaussianDistribution``,
rebuilt from the joined ``parameters``). The instance attribute is removed on exit.
"""

from contextlib import contextmanager
from typing import Iterator

import torch

DEFAULT_CHUNK = 8


def _join(parts):
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts)
    if hasattr(first, "parameters") and isinstance(first.parameters, torch.Tensor):
        return type(first)(torch.cat([p.parameters for p in parts]), deterministic=getattr(first, "deterministic", False))
    raise TypeError(f"cannot join encoder outputs of type {type(first).__name__}")


@contextmanager
def chunked_encode(model, chunk: int = DEFAULT_CHUNK) -> Iterator[None]:
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    had_own = "encode_first_stage" in vars(model)
    previous = vars(model).get("encode_first_stage")
    original = model.encode_first_stage

    def encode_first_stage(x, *args, **kwargs):
        if x.shape[0] <= chunk:
            return original(x, *args, **kwargs)
        return _join([original(x[i:i + chunk], *args, **kwargs) for i in range(0, x.shape[0], chunk)])

    model.encode_first_stage = encode_first_stage
    try:
        yield
    finally:
        if had_own:
            model.encode_first_stage = previous
        else:
            del model.encode_first_stage
