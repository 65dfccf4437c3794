"""Reference attention from the UNet itself: a character's look from one image on the user's checkpoint.

Animate Anyone's ReferenceNet is a second, retrained UNet; here the loaded UNet plays both parts.
Once per denoiser evaluation (one ``CFGDenoiser.forward``; Heun-like samplers make two per step)
it runs one extra time, batch 1, on the reference latent ``z_ref`` noised to the evaluation's
noise level -- ``(z_ref + sigma * eps) * c_in(sigma)`` at the timestep of ``sigma`` (the caller
computes both from the sampler's own schedule), with ``eps`` drawn once per video -- and its
transformer blocks *record* their self-attention inputs ``norm1(x)``. In the video's calls the
same blocks *attend*: every row's self-attention also looks at the recorded tokens:

    out = plain + w * (reference - plain),   reference = attn1(normed, keys/values = [normed; bank])

with ``w = strength`` for cond rows and ``w = (1 - style_fidelity) * strength`` for uncond rows
(style fidelity 1: the uncond prediction does not see the reference, which pushes the guidance
towards it; 0: both see it). A strength of 0 installs nothing (the job is exactly the job without
a reference); ``w`` of 1 computes only the reference attention, 0 only the plain one.

The record/attend switch lives in one block body per transformer block (installed for the
context's duration, restored exactly); which rows are cond or uncond comes from the shared
:class:`~lib_animate.sampling.layout.FrameLayout`.
"""

from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn as nn

from ..sampling.layout import COND, FrameLayout
from .block_hooks import replaced_block_bodies, run_block, transformer_blocks
from .reference_attention import ReferenceBank, RowSelection, attend_with_reference, put_rows, row_selection, take_rows


class SelfReference:
    """The record/attend state of one job's UNet; see the module notes."""

    def __init__(self, unet: nn.Module, layout: FrameLayout, strength: float = 1.0, style_fidelity: float = 0.5):
        if not 0.0 <= style_fidelity <= 1.0:
            raise ValueError(f"style fidelity must be in [0, 1], got {style_fidelity}")
        self.unet = unet
        self.layout = layout
        self.strength = float(strength)
        self.style_fidelity = float(style_fidelity)
        self.blocks = transformer_blocks(unet)
        if not self.blocks:
            raise RuntimeError("the UNet has no ldm BasicTransformerBlock: nothing to take the reference into")
        self.bank: Optional[ReferenceBank] = None
        self.passes = 0
        self._recording: Optional[ReferenceBank] = None
        self._group_cache: Dict[tuple, List[Tuple[float, RowSelection]]] = {}

    def weight(self, role: str) -> float:
        return self.strength if role == COND else (1.0 - self.style_fidelity) * self.strength

    def record(self, run: Callable[[], object]) -> ReferenceBank:
        """Run the reference pass (``run`` calls the UNet with batch 1); its tokens become the bank."""
        bank = ReferenceBank()
        self._recording = bank
        try:
            run()
        finally:
            self._recording = None
        if len(bank) != len(self.blocks):
            raise RuntimeError(f"the reference pass recorded {len(bank)} of {len(self.blocks)} transformer blocks")
        self.bank = bank
        self.passes += 1
        return bank

    def _blend(self, path: str, block: nn.Module, normed: torch.Tensor, w: float) -> torch.Tensor:
        """``plain + w (reference - plain)`` for rows sharing one weight; only what ``w`` needs is computed."""
        if w == 0.0:
            return block.attn1(normed, context=None)
        reference = attend_with_reference(block, normed, self.bank.tokens(path).to(normed.device, normed.dtype))
        if w == 1.0:
            return reference
        plain = block.attn1(normed, context=None)
        return plain + w * (reference - plain)

    def _groups(self, rows: int, device) -> List[Tuple[float, RowSelection]]:
        """The call's rows grouped by weight (each group a slice where its rows run on), computed once per
        call shape and shared by every block."""
        key = (rows, self.layout.frames, self.layout.roles, device)
        if key not in self._group_cache:
            members: Dict[float, List[int]] = {}
            weights = [self.weight(role) for role in self.layout.chunk_roles(rows) for _ in range(self.layout.frames)]
            for row, w in enumerate(weights):
                members.setdefault(w, []).append(row)
            self._group_cache[key] = [(w, row_selection(rows_of_w, device)) for w, rows_of_w in members.items()]
        return self._group_cache[key]

    def _attend(self, path: str, block: nn.Module, normed: torch.Tensor) -> torch.Tensor:
        rows = normed.shape[0]
        groups = self._groups(rows, normed.device)
        if len(groups) == 1:
            return self._blend(path, block, normed, groups[0][0])
        out = None
        for w, selection in groups:  # cond and uncond rows apart: no row computes what its weight drops
            part = self._blend(path, block, take_rows(normed, selection), w)
            if out is None:
                out = part.new_empty((rows,) + tuple(part.shape[1:]))
            put_rows(out, selection, part)
        return out

    @contextmanager
    def installed(self) -> Iterator["SelfReference"]:
        """The blocks record during :meth:`record`, attend when a bank is set, else run as they are."""
        def make_body(path, block):
            def body(x, context=None):
                def attend_self(normed):
                    if self._recording is not None:
                        self._recording.store(path, normed)
                        return block.attn1(normed, context=None)
                    if self.bank is None:
                        return block.attn1(normed, context=None)
                    return self._attend(path, block, normed)

                return run_block(block, x, context, attend_self)

            return body

        with replaced_block_bodies(self.blocks, make_body):
            yield self


def reference_input(z_ref: torch.Tensor, eps: torch.Tensor, sigma: torch.Tensor, c_in: torch.Tensor) -> torch.Tensor:
    """``(z_ref + sigma * eps) * c_in``: the reference latent at the evaluation's noise level, scaled as
    the sampler scales its own input."""
    return (z_ref + sigma * eps) * c_in


def noise_for_video(seed: int, shape, dtype=torch.float32) -> torch.Tensor:
    """The reference's ``eps``: drawn once per video from a CPU generator seeded with the video's seed."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32).to(dtype)


__all__ = ["SelfReference", "noise_for_video", "reference_input"]
