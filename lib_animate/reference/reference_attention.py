"""ReferenceNet attention: the denoising UNet's self-attention also looks at the reference image.

Two hooks on ldm ``BasicTransformerBlock``s, paired by identical module path (the reference and
the denoising UNet have the same structure; motion modules inserted after the transformers
do not shift those paths):

* record, on the reference UNet: each block stores ``norm1(x)``, the input of its ``attn1``,
  in a :class:`ReferenceBank`, then runs unchanged.
* attend, on the denoising UNet: in rows of "cond" chunks, ``attn1`` attends to the row's own
  tokens followed by the block's banked reference tokens (the same bank for every frame);
  queries are the row's own tokens only, so the output keeps the row's length -- the paper's
  "concatenate along w, self-attend, keep the first half". Rows of "uncond" chunks get plain
  self-attention (the reference pipeline's CFG semantics: no reference for the unconditional
  prediction). Which rows are which comes from the :class:`FrameLayout` at call time.

:class:`ReferenceNet` runs the reference UNet once per video and sampling pass (batch 1,
timestep 0, the clean reference latent, the CLIP image embedding as context) and counts its
runs.
"""

from contextlib import contextmanager
from typing import Dict, Iterator, Mapping, Optional

import torch
import torch.nn as nn

from ..sampling.layout import COND, FrameLayout
from .block_hooks import replaced_block_bodies, run_block, transformer_blocks


class ReferenceBank:
    """The reference UNet's self-attention inputs, ``(1, tokens, channels)`` per block path."""

    def __init__(self, tokens: Optional[Mapping[str, torch.Tensor]] = None):
        self._tokens: Dict[str, torch.Tensor] = dict(tokens or {})

    def store(self, path: str, tokens: torch.Tensor) -> None:
        if path in self._tokens:
            raise RuntimeError(f"the reference bank already holds {path}: the reference UNet ran twice into one bank")
        if tokens.shape[0] != 1:
            raise RuntimeError(f"the reference UNet must run with batch 1 (one reference image), got {tokens.shape[0]}")
        self._tokens[path] = tokens.detach()

    def tokens(self, path: str) -> torch.Tensor:
        return self._tokens[path]

    @property
    def paths(self):
        return list(self._tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, path) -> bool:
        return path in self._tokens

    def to(self, device=None, dtype=None) -> "ReferenceBank":
        """A bank with every entry moved (once, instead of on every UNet call)."""
        return ReferenceBank({p: t.to(device=device, dtype=dtype) for p, t in self._tokens.items()})


@contextmanager
def record_reference(unet: nn.Module) -> Iterator[ReferenceBank]:
    """While active, every transformer block of ``unet`` stores its ``norm1`` output in the yielded bank."""
    bank = ReferenceBank()

    def make_body(path, block):
        def recording_body(x, context=None):
            def attend_self(normed):
                bank.store(path, normed)
                return block.attn1(normed, context=None)

            return run_block(block, x, context, attend_self)

        return recording_body

    with replaced_block_bodies(transformer_blocks(unet), make_body):
        yield bank


@contextmanager
def attend_to_reference(unet: nn.Module, bank: ReferenceBank, layout: FrameLayout):
    """While active, self-attention of "cond" rows in ``unet`` also attends to the bank's tokens.

    ``layout`` is read at every call (the caller updates frames and chunk roles between calls).
    """
    blocks = transformer_blocks(unet)
    _check_pairing(blocks, bank)
    cond_indices: Dict[tuple, torch.Tensor] = {}  # per call shape, so 16 blocks share one index

    def cond_rows_of(rows: int, device) -> torch.Tensor:
        key = (rows, layout.frames, layout.roles, device)
        if key not in cond_indices:
            mask = layout.row_mask(rows, COND)
            cond_indices[key] = torch.tensor([r for r, is_cond in enumerate(mask) if is_cond], dtype=torch.long, device=device)
        return cond_indices[key]

    def make_body(path, block):
        def attending_body(x, context=None):
            rows = x.shape[0]
            cond_rows = cond_rows_of(rows, x.device)

            def attend_self(normed):
                if len(cond_rows) == 0:
                    return block.attn1(normed, context=None)
                reference = bank.tokens(path).to(device=normed.device, dtype=normed.dtype)
                if len(cond_rows) == rows:
                    return _attend_with_reference(block, normed, reference)
                # Mixed call: every row first gets plain self-attention -- exactly the unhooked
                # computation, so "uncond" rows stay bit-identical to a run without the
                # reference -- then the "cond" rows are replaced.
                plain = block.attn1(normed, context=None)
                with_reference = _attend_with_reference(block, normed.index_select(0, cond_rows), reference)
                return plain.index_copy(0, cond_rows, with_reference)

            return run_block(block, x, context, attend_self)

        return attending_body

    with replaced_block_bodies(blocks, make_body):
        yield


def _attend_with_reference(block, normed: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    # keys/values: the row's own tokens, then the reference tokens (one bank for all frames)
    tokens = torch.cat([normed, reference.expand(normed.shape[0], -1, -1)], dim=1)
    return block.attn1(normed, context=tokens)


def _check_pairing(blocks: Mapping[str, nn.Module], bank: ReferenceBank) -> None:
    missing = [p for p in blocks if p not in bank]
    extra = [p for p in bank.paths if p not in blocks]
    if missing or extra:
        detail = []
        if missing:
            detail.append(f"no reference tokens for {', '.join(missing)}")
        if extra:
            detail.append(f"reference tokens for blocks the denoising UNet lacks: {', '.join(extra)}")
        raise RuntimeError(
            "the reference bank does not pair with the denoising UNet's transformer blocks ("
            + "; ".join(detail) + "); both UNets must have the same structure"
        )


class ReferenceNet:
    """The reference UNet and the one call that fills a :class:`ReferenceBank`.

    ``runs`` counts reference passes (one per video and sampling pass is the intended use).
    """

    def __init__(self, unet: nn.Module):
        self.unet = unet
        self.runs = 0

    @torch.no_grad()
    def run(self, latent: torch.Tensor, image_embeds: torch.Tensor) -> ReferenceBank:
        """Run the reference UNet on the clean reference latent ``(1, 4, h, w)`` at timestep 0.

        ``image_embeds`` is the CLIP image embedding as cross-attention context, ``(1, 1, D)``.
        """
        if latent.dim() != 4 or latent.shape[0] != 1:
            raise ValueError(f"the reference latent must be (1, C, h, w), got {tuple(latent.shape)}")
        if image_embeds.dim() != 3 or image_embeds.shape[0] != 1:
            raise ValueError(f"the image embedding context must be (1, tokens, D), got {tuple(image_embeds.shape)}")
        expected = len(transformer_blocks(self.unet))
        if expected == 0:
            raise RuntimeError("the reference UNet has no ldm BasicTransformerBlock to record")
        weight = next(self.unet.parameters())
        timesteps = torch.zeros(1, dtype=torch.long, device=latent.device)
        with record_reference(self.unet) as bank:
            self.unet(latent.to(weight.dtype), timesteps, context=image_embeds.to(weight.dtype))
        self.runs += 1
        if len(bank) != expected:
            raise RuntimeError(f"the reference pass recorded {len(bank)} of {expected} transformer blocks")
        return bank
