"""Pose guider features added right after the denoising UNet's first conv (``input_blocks[0]``).

The reference adds ``pose_guider(pose)`` to ``conv_in``'s output, frame by frame, for the
conditional and the unconditional rows alike. Here the features of the whole video are
computed once; before each UNet call the caller selects the frames of the call (a context
window) with :meth:`PoseFeatures.select_frames`, and the hook adds them to every clip chunk of
the call, as the :class:`~lib_animate.sampling.layout.FrameLayout` describes the rows.

Memory: the features are 320 channels at latent size per frame (about 3.9 MB at 512x768 in
fp16; 1.2 GB for 300 frames). :meth:`PoseFeatures.encode` runs the guider on the device a chunk
of frames at a time and keeps the result on the host (pinned where CUDA is present), and each
call moves only its window's frames, so device memory does not grow with the video's length.
"""

from contextlib import contextmanager
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..sampling.layout import FrameLayout

ENCODE_CHUNK_FRAMES = 16


def _contiguous_run(indices: Sequence[int]) -> Optional[slice]:
    """``slice(a, b)`` when ``indices`` are ``a, a+1, ..., b-1``, else None."""
    if not indices or list(indices) != list(range(indices[0], indices[0] + len(indices))):
        return None
    return slice(indices[0], indices[0] + len(indices))


class PoseFeatures:
    """Pose guider output for a whole video, ``(frames, C, h, w)``, and the frames of the next call.

    The features stay where they were given (the host, for :meth:`encode`); :meth:`for_call` moves
    the selected frames to the UNet's device for each call.
    """

    def __init__(self, features: torch.Tensor):
        if features.dim() != 4:
            raise ValueError(f"pose features must be (frames, channels, h, w), got {tuple(features.shape)}")
        self.features = features
        self.frame_indices: Optional[Sequence[int]] = None

    @classmethod
    def encode(cls, guider: nn.Module, frames: Sequence[np.ndarray], device, dtype,
               chunk_frames: int = ENCODE_CHUNK_FRAMES) -> "PoseFeatures":
        """Run ``guider`` over RGB uint8 frames ``(H, W, 3)`` (scaled to [0, 1] as the reference does),
        ``chunk_frames`` at a time on ``device``; the features are gathered on the host."""
        host = torch.device("cpu")
        features = None
        for start in range(0, len(frames), chunk_frames):
            chunk = torch.from_numpy(np.stack(frames[start:start + chunk_frames])).permute(0, 3, 1, 2)
            pixels = chunk.to(device=device, dtype=dtype) / 255.0
            out = guider(pixels)
            if features is None:
                features = torch.empty((len(frames),) + tuple(out.shape[1:]), dtype=out.dtype, device=host,
                                       pin_memory=torch.cuda.is_available())
            features[start:start + out.shape[0]].copy_(out)
        if features is None:
            raise ValueError("no pose frames to encode")
        return cls(features)

    @property
    def frames(self) -> int:
        return self.features.shape[0]

    def select_frames(self, frame_indices: Optional[Sequence[int]]) -> None:
        """Frames (indices into the video) of the next UNet calls, in row order; None = all frames."""
        if frame_indices is not None:
            frame_indices = [int(i) for i in frame_indices]
            bad = [i for i in frame_indices if not 0 <= i < self.frames]
            if bad:
                raise IndexError(f"pose frame indices {bad} are outside the video's {self.frames} frames")
        self.frame_indices = frame_indices

    def selected(self) -> torch.Tensor:
        """The selected frames where the features are kept: a view for a run of consecutive frames
        (pinned memory stays pinned for an asynchronous copy), a gathered copy otherwise."""
        if self.frame_indices is None:
            return self.features
        run = _contiguous_run(self.frame_indices)
        if run is not None:
            return self.features[run]
        return self.features[torch.as_tensor(self.frame_indices, device=self.features.device)]

    def for_call(self, frames: int, like: torch.Tensor) -> torch.Tensor:
        """The selected features, ``(frames, C, h, w)``, on ``like``'s device and dtype."""
        selected = self.selected()
        if selected.shape[0] != frames:
            raise RuntimeError(
                f"the UNet call has clips of {frames} frames but {selected.shape[0]} pose frames are "
                f"selected; select the frames of the context window with select_frames()"
            )
        return selected.to(device=like.device, dtype=like.dtype, non_blocking=selected.is_pinned())

    def to(self, *args, **kwargs) -> "PoseFeatures":
        """Move the features (e.g. to the UNet's device and dtype once, instead of on every call)."""
        moved = PoseFeatures(self.features.to(*args, **kwargs))
        moved.frame_indices = self.frame_indices
        return moved


@contextmanager
def inject_pose_features(unet: nn.Module, pose: PoseFeatures, layout: FrameLayout):
    """While active, ``unet.input_blocks[0]``'s output gets the selected pose features added per frame.

    A forward hook on that block; removed on exit whatever happens inside.
    """
    first = unet.input_blocks[0]

    def add_features(module, inputs, output):
        rows, channels, height, width = output.shape
        features = pose.for_call(layout.frames, like=output)
        if features.shape[1:] != output.shape[1:]:
            raise RuntimeError(
                f"pose features are {tuple(features.shape[1:])} per frame but the UNet's first conv "
                f"gives {tuple(output.shape[1:])}; the pose must be rendered at the generation size"
            )
        chunks = layout.chunks(rows)
        # broadcast over the clip chunks instead of materialising one copy per chunk
        summed = output.reshape(chunks, layout.frames, channels, height, width) + features.unsqueeze(0)
        return summed.reshape(rows, channels, height, width)

    handle = first.register_forward_hook(add_features)
    try:
        yield pose
    finally:
        handle.remove()
