"""Hooks inside the webui's CFG denoiser for one video job: context windows and the cond/uncond roles.

The webui calls its inner model (k-diffusion's ``CompVisDenoiser`` or the timestep samplers'
``CompVisTimestepsDenoiser``) with ``N = chunks * frames`` rows: the cond clip, then the uncond
clip, in one call or in separate calls (``batch_cond_uncond`` off, different token lengths,
skipped uncond steps). Per ``CFGDenoiser.forward`` the rows arrive in one order: first every cond
row (``text_cond``'s count), then the uncond rows unless that step skips them; so a chunk's role
is known from where its rows fall in that sequence (:func:`chunk_roles`), with no look at the
tensors. The job calls :meth:`WindowedInnerModel.begin_forward` from its ``on_cfg_denoiser``
callback, which the webui runs once per forward, before any of its calls. :class:`WindowedInnerModel` replaces that object's ``forward`` at
instance level for the job: each call is cut into context windows (the same frame indices in
every chunk), the original forward runs per window with the motion modules' layout set to the
window length, and the per-window outputs are fused with weights. Denoiser outputs are affine
in the UNet output with per-row scalars that are equal across frames, so fusing them equals
fusing the UNet outputs.
"""

from typing import Any, Callable, List, Optional, Tuple

import torch

from ...sampling.context import SCHEDULES, apply_windows, context_windows
from ...sampling.layout import COND, UNCOND, FrameLayout

WRAPPED_MARK = "_animate_anyone_windowed"


def _slice_rows(value: Any, rows: torch.Tensor, total: int) -> Any:
    """Select ``rows`` from every tensor whose first dim is the batch (``total``), recursively."""
    if isinstance(value, torch.Tensor):
        return value[rows] if value.dim() > 0 and value.shape[0] == total else value
    if isinstance(value, dict):
        return {k: _slice_rows(v, rows, total) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_slice_rows(v, rows, total) for v in value)
    return value


def chunk_roles(first_row: int, chunks: int, frames: int, cond_rows: Optional[int]) -> Tuple[str, ...]:
    """The role of each clip chunk of a call whose rows start at ``first_row`` of the forward's row
    sequence (cond rows first, then uncond). ``cond_rows`` None: unknown, every chunk is cond."""
    if cond_rows is None:
        return (COND,) * chunks
    return tuple(COND if first_row + c * frames < cond_rows else UNCOND for c in range(chunks))


def rows_of(cond: Any) -> int:
    """The batch rows of the webui's text conditioning (a tensor, or SDXL's dict of tensors)."""
    if isinstance(cond, dict):
        cond = next(iter(cond.values()))
    return int(cond.shape[0])


class WindowSchedule:
    """The context-window settings of a job; ``windows(step)`` gives the frame windows of a step."""

    def __init__(self, frames: int, length: int, overlap: int, closed_loop: bool, stride: int, fusion: str,
                 shift: Optional[bool] = None):
        self.frames, self.length, self.overlap = frames, length, overlap
        self.closed_loop, self.stride, self.fusion = closed_loop, stride, fusion
        self.shift = shift  # None: as context_windows decides (shift closed loops)

    @classmethod
    def named(cls, name: str, frames: int, length: int, overlap: int, stride: int, fusion: str) -> "WindowSchedule":
        """The schedule ``name`` of ``sampling.context.SCHEDULES`` (its ring and shift; fusion as resolved)."""
        schedule = SCHEDULES[name]
        return cls(frames, length, overlap, schedule.closed_loop, stride, fusion, shift=schedule.shift)

    def windows(self, step: int):
        return context_windows(self.frames, self.length, self.overlap, step=step, closed_loop=self.closed_loop,
                               stride=self.stride, shift=self.shift)

    @property
    def active(self) -> bool:
        return self.frames > self.length


class WindowedInnerModel:
    """Installs and removes the windowed ``forward`` on the denoiser inner models of a job."""

    def __init__(self, schedule: WindowSchedule, layout: FrameLayout, on_call: Optional[Callable] = None):
        self.schedule = schedule
        self.layout = layout
        # on_call(frame_indices or None for all frames, roles of the clip chunks, kwargs of the call,
        # x of the call): per-call set-up of other hooks (Animate Anyone: pose frames of the window,
        # cond/uncond roles; ControlNet: the window's hint rows on x's device).
        self.on_call = on_call
        self.step = 0
        self.cond_rows: Optional[int] = None  # cond rows of the current CFGDenoiser.forward
        self.rows_seen = 0  # rows this forward has passed to the inner model so far
        self.wrapped: List[Any] = []

    def begin_forward(self, step: int, cond_rows: Optional[int]) -> None:
        """A new ``CFGDenoiser.forward``: its sampling step and how many cond rows it makes."""
        self.step = int(step)
        self.cond_rows = cond_rows
        self.rows_seen = 0

    def install(self, inner_model) -> None:
        if vars(inner_model).get(WRAPPED_MARK) is self:
            return
        original = inner_model.forward
        inner_model.forward = self._forward_for(original)
        setattr(inner_model, WRAPPED_MARK, self)
        self.wrapped.append(inner_model)

    def remove(self) -> None:
        for inner_model in self.wrapped:
            if vars(inner_model).get(WRAPPED_MARK) is self:
                for name in ("forward", WRAPPED_MARK):
                    if name in vars(inner_model):
                        delattr(inner_model, name)
        self.wrapped = []

    def _forward_for(self, original: Callable) -> Callable:
        def forward(x, sigma, **kwargs):
            frames = self.schedule.frames
            rows = x.shape[0]
            chunks = rows // frames
            if rows % frames:
                raise RuntimeError(
                    f"the denoiser got {rows} rows for a video of {frames} frames; the batch must hold whole clips"
                )
            roles = chunk_roles(self.rows_seen, chunks, frames, self.cond_rows)
            self.rows_seen += rows
            if not self.schedule.active:
                self.layout.set_frames(frames)
                self.layout.window = None
                if self.on_call is not None:
                    self.on_call(None, roles, kwargs, x)
                return original(x, sigma, **kwargs)

            def run(window):
                index = torch.tensor([c * frames + f for c in range(chunks) for f in window], device=x.device)
                self.layout.set_frames(len(window))
                self.layout.window = tuple(window)
                window_kwargs = _slice_rows(kwargs, index, rows)
                window_x = x[index]
                if self.on_call is not None:
                    self.on_call(list(window), roles, window_kwargs, window_x)
                out = original(window_x, sigma[index], **window_kwargs)
                return out.reshape(chunks, len(window), *out.shape[1:])

            try:
                fused = apply_windows(run, self.schedule.windows(self.step), frames, weights=self.schedule.fusion, dim=1)
            finally:
                self.layout.set_frames(self.schedule.length)
                self.layout.window = None
            return fused.reshape(rows, *fused.shape[2:]).to(x.dtype)

        return forward
