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

Two ways to compute a cond row's attention to [own tokens; reference tokens]:

* generic (the default): ``block.attn1(normed, context=[normed; reference])``, so whatever
  attention function the webui installed on ``CrossAttention`` (SDP, xformers, sub-quadratic,
  hypernetworks, upcast) computes it; the reference tokens' keys and values are projected again
  for every frame of every call.
* fast (``fast=True``, opt-in per sampling pass): the reference tokens' keys and values are
  projected once per block and pass, with the block's own ``to_k`` / ``to_v``, and the cond
  rows' queries attend over [own K/V; cached reference K/V] with
  ``F.scaled_dot_product_attention``. Same formula, fewer FLOPs (``2 * rows * tokens * c^2``
  multiply-adds per block and call), no copy of the normed tokens. It bypasses the installed
  attention function, so the caller may only ask for it when that function is plain softmax
  attention whose memory SDPA can match: the webui's SDP optimisations (or xformers on CUDA),
  no hypernetwork, no "upcast attention". Blocks whose ``attn1`` is not exactly ldm's
  ``CrossAttention`` with bias-free q/k/v Linears and no hooks or instance-level wrappers of its
  own keep the generic path (:func:`fast_path_blocker` says why).

In a call that mixes cond and uncond rows (batched CFG), the uncond rows get the block's plain
``attn1`` on their own and the cond rows the reference attention on their own; each result goes
into its rows of the output. No row is computed twice, so the reference costs only its own keys
and values. The requirement is equality to the formula within float tolerance (relative L2 of
1e-6 in float32, 2e-3 in float16): the uncond rows are not bit-identical to an unhooked run of
the whole batch, because kernels may pick other algorithms for another batch size.
"""

from contextlib import contextmanager, nullcontext
from typing import Callable, ContextManager, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from ldm.modules.attention import CrossAttention

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


class ReferenceAttention:
    """What :func:`attend_to_reference` yields: which blocks take the fast path and why not the others."""

    def __init__(self, fast_paths: List[str], generic_reasons: Dict[str, str]):
        self.fast_paths = fast_paths
        self.generic_reasons = generic_reasons  # path -> why it uses the generic path


def fast_path_blocker(block: nn.Module) -> Optional[str]:
    """Why the fast path cannot compute ``block``'s reference attention, or None if it can."""
    if not hasattr(F, "scaled_dot_product_attention"):
        return "this torch has no F.scaled_dot_product_attention"
    attn = block.attn1
    if type(attn) is not CrossAttention:
        return f"attn1 is a {type(attn).__name__}, not ldm's CrossAttention"
    if "forward" in vars(attn) or attn._forward_hooks or attn._forward_pre_hooks:
        return "attn1 has an instance-level forward or hooks of its own"
    for name in ("to_q", "to_k", "to_v"):
        linear = getattr(attn, name, None)
        if type(linear) is not nn.Linear or linear.bias is not None:
            return f"attn1.{name} is not a bias-free nn.Linear"
    if not isinstance(attn.to_out, nn.Sequential) or type(attn.to_out[0]) is not nn.Linear:
        return "attn1.to_out is not Sequential(Linear, ...)"
    if attn.to_q.out_features % attn.heads:
        return "attn1's width is not a multiple of its heads"
    return None


class _CachedReferenceKV:
    """One block's reference tokens projected by its attn1.to_k / to_v, once per dtype and device
    (the first call of a pass computes them under the same autocast state as the own tokens)."""

    def __init__(self, attn: nn.Module, tokens: torch.Tensor):
        self.attn = attn
        self.tokens = tokens
        self._kv: Dict[Tuple[torch.device, torch.dtype], Tuple[torch.Tensor, torch.Tensor]] = {}

    def get(self, like: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        key = (like.device, like.dtype)
        if key not in self._kv:
            tokens = self.tokens.to(device=like.device, dtype=like.dtype)
            self._kv[key] = (self.attn.to_k(tokens), self.attn.to_v(tokens))
        return self._kv[key]


def without_memory_efficient_sdpa():
    """SDPA with every kernel but the memory-efficient one: the webui's "sdp-no-mem" attention
    (which users pick where that kernel misbehaves or is not deterministic)."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel  # torch >= 2.3
    except ImportError:
        return torch.backends.cuda.sdp_kernel(enable_flash=True, enable_math=True, enable_mem_efficient=False)
    backends = [b for name, b in SDPBackend.__members__.items() if name not in ("ERROR", "EFFICIENT_ATTENTION")]
    return sdpa_kernel(backends)


def _attend_fast(attn: nn.Module, normed: torch.Tensor, reference_kv: _CachedReferenceKV,
                 sdpa_context: Callable[[], ContextManager] = nullcontext) -> torch.Tensor:
    """softmax(q [k; k_ref]^T / sqrt(d)) [v; v_ref] per head, then to_out: attn1's formula."""
    rows, tokens, _ = normed.shape
    q, k, v = attn.to_q(normed), attn.to_k(normed), attn.to_v(normed)
    k_ref, v_ref = reference_kv.get(normed)
    # One (rows, own + reference tokens) tensor each: SDPA takes a single key/value sequence.
    k = torch.cat([k, k_ref.to(k.dtype).expand(rows, -1, -1)], dim=1)
    v = torch.cat([v, v_ref.to(v.dtype).expand(rows, -1, -1)], dim=1)

    def split_heads(t):  # (rows, n, heads * d) -> (rows, heads, n, d), a view
        return t.view(rows, t.shape[1], attn.heads, -1).transpose(1, 2)

    with sdpa_context():
        out = F.scaled_dot_product_attention(split_heads(q), split_heads(k), split_heads(v))
    return attn.to_out(out.transpose(1, 2).reshape(rows, tokens, -1))


RowSelection = Union[slice, torch.Tensor]


@contextmanager
def attend_to_reference(unet: nn.Module, bank: ReferenceBank, layout: FrameLayout, fast: bool = False,
                        sdpa_context: Callable[[], ContextManager] = nullcontext) -> Iterator[ReferenceAttention]:
    """While active, self-attention of "cond" rows in ``unet`` also attends to the bank's tokens.

    ``layout`` is read at every call (the caller updates frames and chunk roles between calls).
    ``fast`` opts in to the cached-K/V path for the blocks that allow it (see the module notes);
    its SDPA calls run under ``sdpa_context()`` (e.g. :func:`without_memory_efficient_sdpa`).
    """
    blocks = transformer_blocks(unet)
    _check_pairing(blocks, bank)
    generic_reasons = {path: "fast path not requested" for path in blocks} if not fast else {}
    reference_kv: Dict[str, _CachedReferenceKV] = {}
    if fast:
        for path, block in blocks.items():
            reason = fast_path_blocker(block)
            if reason is None:
                reference_kv[path] = _CachedReferenceKV(block.attn1, bank.tokens(path))
            else:
                generic_reasons[path] = reason
    selections: Dict[tuple, Tuple[int, RowSelection, RowSelection]] = {}  # per call shape, shared by all blocks

    def rows_of(rows: int, device) -> Tuple[int, RowSelection, RowSelection]:
        """(number of cond rows, the cond rows, the uncond rows): a slice for one run of rows, else
        an index tensor."""
        key = (rows, layout.frames, layout.roles, device)
        if key not in selections:
            mask = layout.row_mask(rows, COND)
            cond = [r for r, is_cond in enumerate(mask) if is_cond]
            uncond = [r for r, is_cond in enumerate(mask) if not is_cond]
            selections[key] = (len(cond), row_selection(cond, device), row_selection(uncond, device))
        return selections[key]

    def make_body(path, block):
        kv = reference_kv.get(path)

        def with_reference(normed):
            if kv is not None:
                return _attend_fast(block.attn1, normed, kv, sdpa_context)
            return attend_with_reference(block, normed, bank.tokens(path).to(device=normed.device, dtype=normed.dtype))

        def attending_body(x, context=None):
            rows = x.shape[0]
            count, cond_rows, uncond_rows = rows_of(rows, x.device)

            def attend_self(normed):
                if count == 0:
                    return block.attn1(normed, context=None)
                if count == rows:
                    return with_reference(normed)
                # Mixed call: plain self-attention on the uncond rows only, reference attention
                # on the cond rows only, each written into its rows of the output.
                plain = block.attn1(take_rows(normed, uncond_rows), context=None)
                out = plain.new_empty((rows,) + tuple(plain.shape[1:]))
                put_rows(out, uncond_rows, plain)
                put_rows(out, cond_rows, with_reference(take_rows(normed, cond_rows)).to(out.dtype))
                return out

            return run_block(block, x, context, attend_self)

        return attending_body

    with replaced_block_bodies(blocks, make_body):
        yield ReferenceAttention(list(reference_kv), generic_reasons)


def row_selection(indices: List[int], device) -> RowSelection:
    if indices and indices == list(range(indices[0], indices[-1] + 1)):
        return slice(indices[0], indices[-1] + 1)  # views, no gather
    return torch.tensor(indices, dtype=torch.long, device=device)


def take_rows(t: torch.Tensor, rows: RowSelection) -> torch.Tensor:
    return t[rows] if isinstance(rows, slice) else t.index_select(0, rows)


def put_rows(out: torch.Tensor, rows: RowSelection, values: torch.Tensor) -> None:
    if isinstance(rows, slice):
        out[rows] = values
    else:
        out.index_copy_(0, rows, values)


def attend_with_reference(block, normed: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``block.attn1`` with keys/values of the row's own tokens followed by the reference tokens
    ``(1, tokens, channels)``, the same for every row (the installed attention function computes it)."""
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


def round_bank(bank: ReferenceBank, dtype: Optional[torch.dtype]) -> ReferenceBank:
    """The bank's features rounded through ``dtype`` and kept in their own dtype (None: unchanged).
    Features already in ``dtype`` (a float16 run with a float16 bank) come back as they are."""
    if dtype is None:
        return bank
    return ReferenceBank({path: bank.tokens(path).to(dtype).to(bank.tokens(path).dtype) for path in bank.paths})


class ReferenceNet:
    """The reference UNet and the one call that fills a :class:`ReferenceBank`.

    ``runs`` counts reference passes (one per video and sampling pass is the intended use).
    ``bank_dtype``: the recorded features are rounded through this dtype (the released pipeline
    keeps its bank in float16, also in float32 runs); None keeps them as computed.
    """

    def __init__(self, unet: nn.Module, bank_dtype: Optional[torch.dtype] = torch.float16):
        self.unet = unet
        self.runs = 0
        self.bank_dtype = bank_dtype

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
        return round_bank(bank, self.bank_dtype)
