"""How the rows of one UNet call map to video frames.

Every hook that needs to know which rows belong together (motion modules, cross-frame
GroupNorm, reference attention, pose features) reads one :class:`FrameLayout` that the caller
owns and updates between UNet calls (a context window changes ``frames``; a separate CFG pass
changes ``roles``). Nothing is global: each job creates its own layout.

Layout rule: a UNet call with ``N`` rows has ``N % frames == 0``; rows
``[k * frames, (k + 1) * frames)`` are clip ``k`` in frame order.
"""

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

COND = "cond"
UNCOND = "uncond"


@dataclass
class FrameLayout:
    frames: int
    # Role of each clip chunk of the *next* UNet call ("cond" / "uncond"), or None when every
    # chunk is treated as conditional (no CFG information available).
    roles: Optional[Tuple[str, ...]] = None
    # The video frames of the next call's clip rows (a context window), or None: frames 0 .. frames-1.
    window: Optional[Tuple[int, ...]] = None

    def __post_init__(self):
        self.set_frames(self.frames)

    def set_frames(self, frames: int) -> None:
        if int(frames) < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        self.frames = int(frames)

    def set_roles(self, roles: Optional[Sequence[str]]) -> None:
        if roles is not None:
            roles = tuple(roles)
            unknown = [r for r in roles if r not in (COND, UNCOND)]
            if unknown:
                raise ValueError(f"unknown chunk roles {unknown}; use {COND!r} or {UNCOND!r}")
        self.roles = roles

    def chunks(self, rows: int) -> int:
        """Number of clips in a call of ``rows`` rows; raises if rows is not a multiple of frames."""
        if rows % self.frames:
            raise RuntimeError(
                f"a UNet call has {rows} rows, which is not a multiple of the {self.frames} frames of "
                f"the video; the batch must hold whole clips (cond and uncond rows of the same frames)"
            )
        return rows // self.frames

    def chunk_roles(self, rows: int) -> Tuple[str, ...]:
        """The role of every clip chunk in a call of ``rows`` rows."""
        count = self.chunks(rows)
        if self.roles is None:
            return (COND,) * count
        if len(self.roles) != count:
            raise RuntimeError(
                f"the frame layout expects {len(self.roles)} clip chunks but the UNet call has {count}"
            )
        return self.roles

    def row_mask(self, rows: int, role: str):
        """Boolean list over rows: True where the row's chunk has ``role``."""
        mask = []
        for r in self.chunk_roles(rows):
            mask.extend([r == role] * self.frames)
        return mask
