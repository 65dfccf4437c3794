"""The motion module's frame-major layout: no layout copies for channels-last inputs, the input's
memory layout kept, every SDPA output layout handled, and the half-precision norm path."""

from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from lib_animate.motion import model as motion_model
from lib_animate.motion.model import TemporalTransformer, _norm_float32, _norm_native

FRAMES, CLIPS, CHANNELS = 4, 2, 64
COPIES = ("clone", "copy_", "contiguous", "_to_copy")


class OpLog(TorchDispatchMode):
    """Counts the aten ops a forward runs (top-level ops only, as the dispatcher sees them)."""

    def __init__(self):
        super().__init__()
        self.ops = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


@pytest.fixture(scope="module")
def module():
    torch.manual_seed(0)
    m = TemporalTransformer(CHANNELS, 32).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.1)
    return m


def _input(channels_last: bool, size=(6, 5)):
    x = torch.randn(CLIPS * FRAMES, CHANNELS, *size, generator=torch.Generator().manual_seed(3))
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _copies(module, x):
    module(x, FRAMES)  # fills the position-encoding cache
    with OpLog() as log:
        out = module(x, FRAMES)
    return sum(n for op, n in log.ops.items() if op in COPIES), log.ops, out


@torch.no_grad()
def test_channels_last_input_needs_no_layout_copy_and_stays_channels_last(module):
    copies, ops, out = _copies(module, _input(channels_last=True))
    assert copies == 0, ops
    # strided views, one SDPA kernel per clip and attention (the CPU kernel's name differs across torch versions)
    assert sum(n for op, n in ops.items() if op.startswith("_scaled_dot_product_flash_attention")) == 2 * CLIPS, ops
    assert out.is_contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def test_nchw_input_needs_one_copy_at_entry_and_stays_nchw(module):
    copies, ops, out = _copies(module, _input(channels_last=False))
    assert copies == 1, ops
    assert out.is_contiguous()


@torch.no_grad()
def test_both_layouts_compute_the_same_function(module):
    x = _input(channels_last=False)
    torch.testing.assert_close(module(x.contiguous(memory_format=torch.channels_last), FRAMES), module(x, FRAMES), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels-last"])
@torch.no_grad()
def test_zero_proj_out_is_the_identity_bit_for_bit_in_the_input_layout(module, channels_last):
    zero = TemporalTransformer(CHANNELS, 32).eval()
    zero.load_state_dict(module.state_dict())
    zero.proj_out.weight.zero_()
    zero.proj_out.bias.zero_()
    x = _input(channels_last)
    out = zero(x, FRAMES)
    assert torch.equal(out, x) and out.stride() == x.stride()


def _sequence_major_reference(module, x):
    """The pre-frame-major formulation: one (frames, channels) sequence per clip and pixel."""
    rows, c, h, w = x.shape
    clips = rows // FRAMES
    t = F.group_norm(x, module.norm.num_groups, module.norm.weight, module.norm.bias, module.norm.eps)
    t = module.proj_in(t.reshape(clips, FRAMES, c, h * w).permute(0, 3, 1, 2).reshape(-1, FRAMES, c))
    block = module.transformer_blocks[0]
    for attention, norm in zip(block.attention_blocks, block.norms):
        a = attention.pos_encoder(norm(t))
        n, f, _ = a.shape

        def heads(y):
            return y.view(n, f, 8, -1).transpose(1, 2)

        o = F.scaled_dot_product_attention(heads(attention.to_q(a)), heads(attention.to_k(a)), heads(attention.to_v(a)))
        t = attention.to_out[0](o.transpose(1, 2).reshape(n, f, c)) + t
    t = block.ff(block.ff_norm(t)) + t
    t = module.proj_out(t).view(clips, h * w, FRAMES, c).permute(0, 2, 3, 1).reshape(rows, c, h, w)
    return x + t


def _as_layout(kind):
    """An SDPA that returns its result in another memory order (same values): the layouts the
    CUDA kernels write (flash: the query's order; memory-efficient: token-major; math: head-major)."""
    sdpa = F.scaled_dot_product_attention

    def wrapped(q, k, v):
        out = sdpa(q, k, v)
        if kind == "token-major":  # memory (n, frames, heads, d)
            return out.transpose(1, 2).contiguous().transpose(1, 2)
        return out.contiguous()  # head-major, memory (n, heads, frames, d)

    return wrapped


@pytest.mark.parametrize("layout", ["kernel's own", "token-major", "head-major"])
@torch.no_grad()
def test_every_sdpa_output_layout_gives_the_same_result(module, monkeypatch, layout):
    x = _input(channels_last=False)
    expected = _sequence_major_reference(module, x)
    if layout != "kernel's own":
        monkeypatch.setattr(motion_model.F, "scaled_dot_product_attention", _as_layout(layout))
    torch.testing.assert_close(module(x, FRAMES), expected, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_token_chunks_equal_one_launch(module, monkeypatch):
    x = _input(channels_last=True)
    whole = module(x, FRAMES)
    monkeypatch.setattr(motion_model, "MAX_ATTENTION_ROWS", 7)  # 30 tokens per clip -> 5 launches
    torch.testing.assert_close(module(x, FRAMES), whole, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("norm", [torch.nn.GroupNorm(8, CHANNELS, eps=1e-6), torch.nn.LayerNorm(CHANNELS)], ids=["group", "layer"])
def test_half_precision_norm_kernel_matches_the_float32_round_trip_and_ignores_autocast(norm):
    """The native path (CUDA, half weights) is checked here in bfloat16 on the CPU."""
    with torch.no_grad():
        norm.weight.normal_(1.0, 0.2)
        norm.bias.normal_(0.0, 0.2)
    norm = norm.to(torch.bfloat16)
    x = (torch.randn(4, CHANNELS, 5, 6) * 3 + 1).to(torch.bfloat16)
    if isinstance(norm, torch.nn.LayerNorm):
        x = x.permute(0, 2, 3, 1).contiguous()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        native = _norm_native(norm, x)
        round_trip = _norm_float32(norm, x)
    assert native.dtype == round_trip.dtype == torch.bfloat16
    # both compute in float32 and round once; they may differ by one bfloat16 ulp
    torch.testing.assert_close(native.float(), round_trip.float(), rtol=2 ** -7, atol=2 ** -7)
