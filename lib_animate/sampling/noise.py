"""FreeNoise: the initial noise of a long video rescheduled from its first window's noise.

FreeNoise (Qiu et al., "FreeNoise: Tuning-Free Longer Video Diffusion via Noise Rescheduling",
ICLR 2024) keeps the noise of the first ``window`` frames and gives every later chunk of ``stride``
frames the noise of the chunk ``window`` frames before it, in a random order. Every context window
then starts from a shuffle of the same noise, which keeps the subject and the scene of a long video
together while each frame still has its own noise arrangement. The order of the chunk copies and
the shuffles follows diffusers' ``FreeNoiseMixin`` ("shuffle_context"), so the same generator gives
the same noise there and here.
"""

from typing import List

import torch


def freenoise_sources(frames: int, window: int, stride: int, generator: torch.Generator) -> List[int]:
    """For every frame, the frame of the original noise whose noise it gets.

    Frames ``< window`` keep their own. For ``start = window, window + stride, ...`` the frames
    ``[start, start + stride)`` get the (already rescheduled) noise of ``[start - window,
    start - window + stride)`` in the order of one ``torch.randperm(stride)`` each.
    """
    if window < 1 or stride < 1:
        raise ValueError(f"FreeNoise needs a window and a stride of at least 1, got {window} and {stride}")
    if stride > window:
        raise ValueError(f"the FreeNoise stride ({stride}) cannot exceed its window ({window})")
    sources = list(range(frames))
    for start in range(window, frames, stride):
        chunk = [sources[start - window + k] for k in range(stride)]
        order = torch.randperm(stride, generator=generator).tolist()
        shuffled = [chunk[k] for k in order]
        end = min(frames, start + stride)
        sources[start:end] = shuffled[: end - start]
    return sources


def apply_freenoise(noise: torch.Tensor, window: int, stride: int, generator: torch.Generator) -> torch.Tensor:
    """``noise`` with frames along dim 0 (one video), rescheduled; unchanged when it fits one window."""
    frames = noise.shape[0]
    if frames <= window:
        return noise
    return noise[freenoise_sources(frames, window, stride, generator)]
