"""Pose guider features added right after the denoising UNet's first conv (``input_blocks[0]``).

The reference adds ``pose_guider(pose)`` to ``conv_in``'s output, frame by frame, for the
conditional and the unconditional rows alike. Here the features of the whole video are
computed once; before each UNet call the caller selects the frames of the call (a context
window) with :meth:`PoseFeatures.select_frames`, and the hook adds them to every clip chunk of
the call, as the :class:`~lib_animate.sampling.layout.FrameLayout` describes the rows.
"""

from contextlib import contextmanager
from typing import Optional, Sequence

import torch
import torch.nn as nn

from ..sampling.layout import FrameLayout


class PoseFeatures:
    """Pose guider output for a whole video, ``(frames, C, h, w)``, and the frames of the next call."""

    def __init__(self, features: torch.Tensor):
        if features.dim() != 4:
            raise ValueError(f"pose features must be (frames, channels, h, w), got {tuple(features.shape)}")
        self.features = features
        self.frame_indices: Optional[Sequence[int]] = None

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

    def for_call(self, frames: int, like: torch.Tensor) -> torch.Tensor:
        """The selected features, ``(frames, C, h, w)``, on ``like``'s device and dtype."""
        if self.frame_indices is None:
            selected = self.features
        else:
            selected = self.features[torch.as_tensor(self.frame_indices, device=self.features.device)]
        if selected.shape[0] != frames:
            raise RuntimeError(
                f"the UNet call has clips of {frames} frames but {selected.shape[0]} pose frames are "
                f"selected; select the frames of the context window with select_frames()"
            )
        return selected.to(device=like.device, dtype=like.dtype)

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
