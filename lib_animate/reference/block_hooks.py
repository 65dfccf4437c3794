"""Instance-level replacement of ldm ``BasicTransformerBlock._forward``, always undone.

``BasicTransformerBlock.forward`` calls ``self._forward(x, context)`` (through ldm's
``checkpoint``), looked up on the instance at call time, so an instance attribute replaces one
block's body without touching the class, and the block keeps calling ``self.attn1`` /
``self.attn2`` -- whatever attention function the webui's optimisation has installed on the
``CrossAttention`` class (SDP, xformers, sub-quadratic, ...) keeps being used.

Restoring puts back exactly what was there (removing the attribute when there was none) and
only for blocks whose ``_forward`` is still ours: if someone replaced it after us, theirs
stays, and ours, still called from inside theirs, falls back to the block's previous body.
"""

from contextlib import contextmanager
from typing import Callable, Dict, Mapping

import torch
import torch.nn as nn
from ldm.modules.attention import BasicTransformerBlock

SelfAttention = Callable[[torch.Tensor], torch.Tensor]
BlockBody = Callable[..., torch.Tensor]

_ABSENT = object()


def transformer_blocks(unet: nn.Module) -> Dict[str, BasicTransformerBlock]:
    """Every ldm ``BasicTransformerBlock`` of ``unet`` by module path, in traversal order."""
    return {path: m for path, m in unet.named_modules() if isinstance(m, BasicTransformerBlock)}


def run_block(block: BasicTransformerBlock, x: torch.Tensor, context, attend_self: SelfAttention) -> torch.Tensor:
    """ldm's ``BasicTransformerBlock._forward`` with the self-attention step supplied by the caller.

    ``attend_self`` gets ``norm1(x)`` (the input of ``attn1``) and returns attn1's output.
    """
    x = attend_self(block.norm1(x)) + x
    x = block.attn2(block.norm2(x), context=context) + x
    x = block.ff(block.norm3(x)) + x
    return x


@contextmanager
def replaced_block_bodies(blocks: Mapping[str, BasicTransformerBlock], make_body: Callable[[str, BasicTransformerBlock], BlockBody]):
    """Install ``make_body(path, block)`` as each block's ``_forward`` while the context is active."""
    installed = []
    active = [True]
    try:
        for path, block in blocks.items():
            if block.disable_self_attn:
                raise ValueError(f"{path}: attn1 is a cross-attention in this block; it has no self-attention to extend")
            previous = block.__dict__.get("_forward", _ABSENT)
            body = make_body(path, block)
            fallback = previous if previous is not _ABSENT else type(block)._forward.__get__(block)

            def _forward(x, context=None, _body=body, _fallback=fallback):
                return _body(x, context) if active[0] else _fallback(x, context)

            block._forward = _forward
            installed.append((block, _forward, previous))
        yield
    finally:
        active[0] = False
        for block, ours, previous in reversed(installed):
            if block.__dict__.get("_forward") is not ours:
                continue  # replaced after us by someone else: leave theirs in place
            if previous is _ABSENT:
                del block._forward
            else:
                block._forward = previous
