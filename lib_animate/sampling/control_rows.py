"""Per-frame control hints under context windows: the rows each UNet call gets.

A per-frame hint holds one row per video frame (``[F, C, H, W]``). A UNet call over a context
window holds ``chunks`` clips of the same window frames (cond, uncond, ... -- see
:mod:`.layout`), so its hint is the window's rows repeated once per chunk. That matches the rows
of the call's ``x`` whatever the sampler chose: cond and uncond in one call (2 chunks), in
separate calls or with the uncond skipped (1 chunk), an edit model's 3 chunks.

Hints built for the whole batch arrive either with ``F`` rows or, when the webui batches cond
and uncond, as the same ``F`` rows twice (``2F``); :func:`per_frame_hint` reduces both to ``F``.
A one-row hint broadcasts over any call and is never sliced.
"""

from typing import Optional, Sequence

import torch


class HintRowsError(ValueError):
    """A hint whose row count fits neither one image nor one row per frame."""


def per_frame_hint(hint: torch.Tensor, frames: int) -> torch.Tensor:
    """``hint`` reduced to one row per frame (a view; ``2F`` rows are two copies of the ``F``)."""
    rows = int(hint.shape[0])
    if rows == frames:
        return hint
    if rows == 2 * frames:
        return hint[:frames]
    raise HintRowsError(f"a per-frame hint has {rows} rows for a video of {frames} frames (expected {frames} or {2 * frames})")


def call_frames(frames: int, window: Optional[Sequence[int]]) -> torch.Tensor:
    """The frame index of every row of one clip chunk: the window, or all frames."""
    indices = range(frames) if window is None else window
    return torch.tensor(list(indices), dtype=torch.long)


def select_rows(per_frame: torch.Tensor, window: Optional[Sequence[int]], chunks: int) -> torch.Tensor:
    """The hint rows of one UNet call: the window's frames, repeated for each of ``chunks`` chunks."""
    if chunks < 1:
        raise ValueError(f"chunks must be >= 1, got {chunks}")
    index = call_frames(per_frame.shape[0], window).to(per_frame.device)
    rows = per_frame.index_select(0, index)
    return rows if chunks == 1 else torch.cat([rows] * chunks)
