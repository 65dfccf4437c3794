"""Reference attention from the loaded UNet itself (the character option), on a real ldm UNet, against
the explicit-softmax formula of tests/test_reference_attention.py."""

import pytest
import torch

from lib_animate.reference.block_hooks import transformer_blocks
from lib_animate.reference.self_reference import SelfReference, noise_for_video, reference_input
from lib_animate.sampling.layout import COND, UNCOND, FrameLayout
from tests.support.ldm_unet import ldm_unet
from tests.support.reference_files import relative_error, same_state, state_bytes
from tests.test_reference_attention import formula_attention

FRAMES = 3
LATENT = (8, 8)
CONTEXT = 64


@pytest.fixture(scope="module")
def unet():
    return ldm_unet(model_channels=32, context_dim=CONTEXT)


def inputs(rows, seed=3):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, 4, *LATENT, generator=g), torch.full((rows,), 420),
            torch.randn(rows, 5, CONTEXT, generator=g))


def reference_tokens_of(unet, x_ref, t_ref, context):
    """norm1 outputs of every block in a plain batch-1 run: what the record pass must bank."""
    captured = {}
    handles = [block.norm1.register_forward_hook(lambda m, i, o, path=path: captured.__setitem__(path, o))
               for path, block in transformer_blocks(unet).items()]
    try:
        with torch.no_grad():
            unet(x_ref, t_ref, context=context)
    finally:
        for handle in handles:
            handle.remove()
    return captured


def oracle(unet, x, t, context, weights, tokens):
    """Every block's self-attention as ``plain + w (reference - plain)`` per row, written as the formula."""
    def make(path, block):
        def body(h, context=None):
            normed = block.norm1(h)
            rows = []
            for r in range(h.shape[0]):
                own = normed[r:r + 1]
                plain = formula_attention(block.attn1, own, own)
                reference = formula_attention(block.attn1, own, torch.cat([own, tokens[path]], dim=1))
                rows.append(plain + weights[r] * (reference - plain))
            h = torch.cat(rows) + h
            h = block.attn2(block.norm2(h), context=context) + h
            return block.ff(block.norm3(h)) + h
        return body

    blocks = transformer_blocks(unet)
    try:
        for path, block in blocks.items():
            block._forward = make(path, block)
        with torch.no_grad():
            return unet(x, t, context=context)
    finally:
        for block in blocks.values():
            del block._forward


@pytest.mark.parametrize("strength, fidelity", [(1.0, 1.0), (1.0, 0.5), (0.6, 0.0), (0.7, 1.0)])
def test_the_video_call_equals_the_formula_with_the_reference_pass_input(unet, strength, fidelity):
    g = torch.Generator().manual_seed(11)
    z_ref = torch.randn(1, 4, *LATENT, generator=g)
    eps = noise_for_video(1234, z_ref.shape)
    sigma, c_in = torch.tensor(2.5), 1 / (2.5 ** 2 + 1) ** 0.5
    x_ref = reference_input(z_ref, eps, sigma, torch.tensor(c_in))
    assert torch.allclose(x_ref, (z_ref + 2.5 * eps) * c_in)
    t_ref = torch.tensor([420])
    empty = torch.randn(1, 5, CONTEXT, generator=g)
    layout = FrameLayout(FRAMES, (COND, UNCOND))
    x, t, context = inputs(2 * FRAMES)
    before = state_bytes(unet)
    reference = SelfReference(unet, layout, strength=strength, style_fidelity=fidelity)
    with reference.installed(), torch.no_grad():
        layout.set_frames(1)
        layout.set_roles(None)
        bank = reference.record(lambda: unet(x_ref, t_ref, context=empty))
        layout.set_frames(FRAMES)
        layout.set_roles((COND, UNCOND))
        hooked = unet(x, t, context=context)
    tokens = reference_tokens_of(unet, x_ref, t_ref, empty)
    assert set(bank.paths) == set(tokens) and all(torch.equal(bank.tokens(p), tokens[p]) for p in tokens)
    weights = [strength] * FRAMES + [(1 - fidelity) * strength] * FRAMES
    expected = oracle(unet, x, t, context, weights, tokens)
    assert relative_error(hooked, expected) <= 1e-6
    with torch.no_grad():
        plain = unet(x, t, context=context)
    assert relative_error(hooked[:FRAMES], plain[:FRAMES]) > 1e-4  # the cond rows see the reference
    if fidelity == 1.0:  # the uncond rows do not see it at all
        assert relative_error(hooked[FRAMES:], plain[FRAMES:]) <= 1e-6
    assert same_state(before, state_bytes(unet)) and not any("_forward" in vars(b) for b in transformer_blocks(unet).values())


def test_without_a_bank_the_blocks_run_as_they_are_and_leaving_restores_on_error(unet):
    layout = FrameLayout(FRAMES, (COND, UNCOND))
    x, t, context = inputs(2 * FRAMES)
    with torch.no_grad():
        plain = unet(x, t, context=context)
    reference = SelfReference(unet, layout)
    with pytest.raises(RuntimeError, match="boom"):
        with reference.installed(), torch.no_grad():
            assert torch.equal(unet(x, t, context=context), plain)  # installed, no bank yet: unchanged

            def failing():
                unet(x[:1], t[:1], context=context[:1])
                raise RuntimeError("boom")

            layout.set_frames(1)
            layout.set_roles(None)
            reference.record(failing)
    assert reference.bank is None and reference.passes == 0
    assert not any("_forward" in vars(b) for b in transformer_blocks(unet).values())
    with torch.no_grad():
        assert torch.equal(unet(x, t, context=context), plain)


def test_the_same_noise_for_every_step_of_a_video_and_another_for_another_seed():
    a, b = noise_for_video(7, (1, 4, 8, 8)), noise_for_video(7, (1, 4, 8, 8))
    assert torch.equal(a, b) and not torch.equal(a, noise_for_video(8, (1, 4, 8, 8)))
    assert noise_for_video(7, (1, 4, 8, 8), dtype=torch.float16).dtype == torch.float16
