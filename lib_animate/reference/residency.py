"""Which of an Animate Anyone video's tensors stay on the compute device for the whole job.

A structural measure for the "memory flat in the number of frames" goal, readable on any machine:
the per-video state is the reference bank (one frame of self-attention inputs per transformer
block), the CLIP image embedding, the reference latent -- all on the device, none growing with
the frames -- and the pose features, which :meth:`PoseFeatures.encode` keeps on the host (each UNet
call moves its window's frames). On a GPU the benchmark also measures the real peak.
"""

from typing import Dict, Iterable

import torch

from .pose_features import PoseFeatures
from .reference_attention import ReferenceBank


def _bytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def video_state_bytes(bank: ReferenceBank, image_embeds: torch.Tensor, reference_latent: torch.Tensor,
                      pose: PoseFeatures, window: int) -> Dict[str, int]:
    """Bytes of the per-video state by placement.

    ``device``: the tensors kept on the compute device for the whole job (the pose features count
    here unless they are on the host); ``host``: the pose features kept on the host; ``per_call``:
    the most pose-feature bytes one UNet call moves to the device (a ``window``-frame slice).
    """
    kept = [bank.tokens(path) for path in bank.paths] + [image_embeds, reference_latent]
    # On a CPU-only machine host and device are one memory: the features count as host because that
    # is where they are on a GPU too (PoseFeatures.encode gathers them on the CPU whatever the device).
    on_host = pose.features.device.type == "cpu"
    features = _bytes([pose.features])
    per_frame = features // max(pose.frames, 1)
    return {
        "device": _bytes(kept) + (0 if on_host else features),
        "host": features if on_host else 0,
        "per_call": per_frame * min(window, pose.frames),
    }

