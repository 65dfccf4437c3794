"""Reference attention hooks on real ldm UNets, against an explicit-softmax formula written here."""

import math

import pytest
import torch
import torch.nn as nn

from lib_animate.reference.block_hooks import transformer_blocks
from lib_animate.reference.pose_features import PoseFeatures
from lib_animate.reference.reference_attention import (
    ReferenceBank,
    ReferenceNet,
    attend_to_reference,
    record_reference,
)
from lib_animate.reference.sampling_pass import animate_anyone_pass
from lib_animate.sampling.layout import COND, UNCOND, FrameLayout
from tests.support.reference_files import module_attributes, our_unet, relative_error, same_state, state_bytes

FRAMES = 3
LATENT = (16, 8)


@pytest.fixture(scope="module")
def unets():
    return our_unet(seed=1), our_unet(seed=2, with_output=False)


@pytest.fixture(scope="module")
def reference_inputs():
    g = torch.Generator().manual_seed(5)
    return torch.randn(1, 4, *LATENT, generator=g), torch.randn(1, 1, 64, generator=g)


def denoiser_inputs(rows, seed=9):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 4, *LATENT, generator=g)
    t = torch.full((rows,), 601)
    embeds = torch.randn(1, 1, 64, generator=g)
    return x, t, embeds


def contexts(roles, embeds):
    """[cond/uncond] context rows per chunk: image embedding for cond, zeros for uncond."""
    parts = [embeds if role == COND else torch.zeros_like(embeds) for role in roles]
    return torch.cat([p.expand(FRAMES, -1, -1) for p in parts])


def formula_attention(attn, x, keys_values):
    """softmax(q k^T / sqrt(d)) v per head with ``attn``'s weights, written out."""
    heads = attn.heads
    q = x @ attn.to_q.weight.T
    k = keys_values @ attn.to_k.weight.T
    v = keys_values @ attn.to_v.weight.T
    b, n, inner = q.shape
    d = inner // heads

    def split(t):
        return t.reshape(b, -1, heads, d).transpose(1, 2)

    weights = torch.softmax(split(q) @ split(k).transpose(-1, -2) / math.sqrt(d), dim=-1)
    out = (weights @ split(v)).transpose(1, 2).reshape(b, n, inner)
    return out @ attn.to_out[0].weight.T + attn.to_out[0].bias


def reference_tokens_by_plain_run(reference_unet, latent, embeds):
    """norm1 outputs of every transformer block in a plain (unhooked) reference run at t = 0."""
    captured = {}
    handles = [
        block.norm1.register_forward_hook(lambda m, i, o, path=path: captured.__setitem__(path, o))
        for path, block in transformer_blocks(reference_unet).items()
    ]
    try:
        with torch.no_grad():
            reference_unet(latent, torch.zeros(1, dtype=torch.long), context=embeds)
    finally:
        for h in handles:
            h.remove()
    return captured


def oracle_denoiser(unet, x, t, context, roles, reference_tokens):
    """The denoiser with every block's self-attention written as the formula, row by row."""
    role_of_row = [role for role in roles for _ in range(FRAMES)]

    def make(path, block):
        def oracle_forward(x, context=None):
            normed = block.norm1(x)
            rows = []
            for r in range(x.shape[0]):
                own = normed[r:r + 1]
                kv = torch.cat([own, reference_tokens[path]], dim=1) if role_of_row[r] == COND else own
                rows.append(formula_attention(block.attn1, own, kv))
            x = torch.cat(rows) + x
            x = block.attn2(block.norm2(x), context=context) + x
            return block.ff(block.norm3(x)) + x

        return oracle_forward

    blocks = transformer_blocks(unet)
    try:
        for path, block in blocks.items():
            block._forward = make(path, block)
        with torch.no_grad():
            return unet(x, t, context=context)
    finally:
        for block in blocks.values():
            del block._forward


def test_reference_net_banks_the_attn1_input_of_all_16_blocks(unets, reference_inputs):
    _, reference = unets
    latent, embeds = reference_inputs
    net = ReferenceNet(reference)
    bank = net.run(latent, embeds)
    assert net.runs == 1 and len(bank) == 16
    plain = reference_tokens_by_plain_run(reference, latent, embeds)
    assert bank.paths == list(plain)
    assert bank.paths[0] == "input_blocks.1.1.transformer_blocks.0"
    assert "middle_block.1.transformer_blocks.0" in bank
    full = ReferenceNet(reference, bank_dtype=None).run(latent, embeds)
    for path, tokens in plain.items():
        assert bank.tokens(path).shape[0] == 1  # one bank for all frames, not one per frame
        assert torch.equal(full.tokens(path), tokens)
        # by default rounded through float16, as the released pipeline keeps its bank
        assert torch.equal(bank.tokens(path), tokens.half().float()) and bank.tokens(path).dtype == tokens.dtype
    h, w = LATENT
    assert bank.tokens("input_blocks.1.1.transformer_blocks.0").shape == (1, h * w, 32)
    assert bank.tokens("input_blocks.7.1.transformer_blocks.0").shape == (1, h * w // 16, 128)


@pytest.mark.parametrize("roles", [(COND, UNCOND), (UNCOND, COND), (COND,), None], ids=["cond-uncond", "uncond-cond", "cond-only", "no-roles"])
def test_denoiser_output_equals_the_formula(unets, reference_inputs, roles):
    denoising, reference = unets
    chunks = 1 if roles is None else len(roles)
    effective_roles = roles or (COND,)
    x, t, embeds = denoiser_inputs(FRAMES * chunks)
    context = contexts(effective_roles, embeds)
    bank = ReferenceNet(reference).run(*reference_inputs)
    layout = FrameLayout(FRAMES, roles)
    with attend_to_reference(denoising, bank, layout), torch.no_grad():
        got = denoising(x, t, context=context)
    tokens = reference_tokens_by_plain_run(reference, *reference_inputs)
    expected = oracle_denoiser(denoising, x, t, context, effective_roles, tokens)
    error = relative_error(got, expected)
    print(f"roles {roles}: denoiser output vs formula rel L2 {error:.2e}, max abs {(got - expected).abs().max():.2e}")
    assert error <= 1e-5


def test_attn1_sees_own_then_reference_tokens_and_matches_the_formula(unets, reference_inputs):
    denoising, reference = unets
    x, t, embeds = denoiser_inputs(2 * FRAMES)
    bank = ReferenceNet(reference).run(*reference_inputs)
    calls = []
    handles = [
        block.attn1.register_forward_hook(
            lambda m, args, kwargs, out, path=path: calls.append((path, args[0], kwargs.get("context"), out)), with_kwargs=True)
        for path, block in transformer_blocks(denoising).items()
    ]
    try:
        with attend_to_reference(denoising, bank, FrameLayout(FRAMES, (COND, UNCOND))), torch.no_grad():
            denoising(x, t, context=contexts((COND, UNCOND), embeds))
    finally:
        for h in handles:
            h.remove()
    with_reference = [c for c in calls if c[2] is not None]
    plain = [c for c in calls if c[2] is None]
    assert len(with_reference) == len(plain) == 16
    worst = 0.0
    for path, queries, keys_values, out in with_reference:
        reference_tokens = bank.tokens(path)
        assert queries.shape[0] == FRAMES  # only the cond rows
        assert keys_values.shape[1] == queries.shape[1] + reference_tokens.shape[1]
        assert torch.equal(keys_values[:, :queries.shape[1]], queries)
        assert torch.equal(keys_values[:, queries.shape[1]:], reference_tokens.expand(FRAMES, -1, -1))
        expected = formula_attention(denoising.get_submodule(path).attn1, queries, keys_values)
        worst = max(worst, relative_error(out, expected))
    print(f"attn1 with reference vs formula: worst rel L2 over 16 blocks {worst:.2e}")
    assert worst <= 1e-5


@pytest.mark.parametrize("roles", [(COND, UNCOND), (UNCOND, COND)])
def test_uncond_rows_equal_the_unhooked_unet(unets, reference_inputs, roles):
    denoising, reference = unets
    x, t, embeds = denoiser_inputs(2 * FRAMES)
    context = contexts(roles, embeds)
    with torch.no_grad():
        plain = denoising(x, t, context=context)
    bank = ReferenceNet(reference).run(*reference_inputs)
    with attend_to_reference(denoising, bank, FrameLayout(FRAMES, roles)), torch.no_grad():
        hooked = denoising(x, t, context=context)
    uncond = slice(0, FRAMES) if roles[0] == UNCOND else slice(FRAMES, 2 * FRAMES)
    cond = slice(FRAMES, 2 * FRAMES) if roles[0] == UNCOND else slice(0, FRAMES)
    assert relative_error(hooked[uncond], plain[uncond]) <= 1e-6  # no reference for the uncond rows (float tolerance)
    assert relative_error(hooked[cond], plain[cond]) > 1e-3  # the reference does change the cond rows


def test_an_all_uncond_call_is_the_plain_unet(unets, reference_inputs):
    denoising, reference = unets
    x, t, embeds = denoiser_inputs(FRAMES)
    context = contexts((UNCOND,), embeds)
    with torch.no_grad():
        plain = denoising(x, t, context=context)
    bank = ReferenceNet(reference).run(*reference_inputs)
    with attend_to_reference(denoising, bank, FrameLayout(FRAMES, (UNCOND,))), torch.no_grad():
        assert torch.equal(denoising(x, t, context=context), plain)


def _hooks_and_state(unet):
    return module_attributes(unet), state_bytes(unet)


@pytest.mark.parametrize("fail", [False, True], ids=["normal-exit", "forward-raises"])
def test_restore_leaves_the_unets_exactly_as_before(unets, reference_inputs, fail):
    denoising, reference = unets
    x, t, embeds = denoiser_inputs(2 * FRAMES)
    context = contexts((COND, UNCOND), embeds)
    with torch.no_grad():
        before_out = denoising(x, t, context=context)
        before_ref = reference(reference_inputs[0], torch.zeros(1, dtype=torch.long), context=reference_inputs[1])
    before = {name: _hooks_and_state(u) for name, u in (("denoising", denoising), ("reference", reference))}
    layout = FrameLayout(FRAMES, (COND, UNCOND))
    pose = PoseFeatures(torch.randn(FRAMES, 32, *LATENT))
    net = ReferenceNet(reference)
    with pytest.raises(RuntimeError) if fail else _nothing():
        with animate_anyone_pass(denoising, net, *reference_inputs, layout=layout, pose=pose), torch.no_grad():
            denoising(x, t, context=context)
            if fail:
                layout.set_frames(4)  # 6 rows are not whole clips of 4 frames: the hooked forward raises
                denoising(x, t, context=context)
    after = {name: _hooks_and_state(u) for name, u in (("denoising", denoising), ("reference", reference))}
    for name in before:
        assert after[name][0] == before[name][0], f"{name}: instance attributes or hooks left behind"
        assert same_state(after[name][1], before[name][1])
    assert all("_forward" not in b.__dict__ for u in unets for b in transformer_blocks(u).values())
    with torch.no_grad():
        assert torch.equal(denoising(x, t, context=context), before_out)
        assert torch.equal(reference(reference_inputs[0], torch.zeros(1, dtype=torch.long), context=reference_inputs[1]), before_ref)


def test_recording_restores_when_the_reference_forward_raises(unets):
    _, reference = unets
    before = module_attributes(reference)
    with pytest.raises(RuntimeError):
        with record_reference(reference), torch.no_grad():
            reference(torch.randn(1, 4, *LATENT), torch.zeros(1, dtype=torch.long), context=torch.randn(1, 1, 65))
    assert module_attributes(reference) == before


class _NullContext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _nothing():
    return _NullContext()


def test_a_hook_installed_after_ours_is_left_in_place(unets, reference_inputs):
    denoising, reference = unets
    bank = ReferenceNet(reference).run(*reference_inputs)
    block = denoising.get_submodule("middle_block.1.transformer_blocks.0")
    x, t, embeds = denoiser_inputs(FRAMES)
    context = contexts((COND,), embeds)
    with torch.no_grad():
        plain = denoising(x, t, context=context)
    try:
        with attend_to_reference(denoising, bank, FrameLayout(FRAMES)):
            ours = block._forward

            def foreign(x, context=None):  # e.g. another extension wrapping the block after us
                return ours(x, context)

            block._forward = foreign
        assert block.__dict__["_forward"] is foreign
        with torch.no_grad():  # ours, still called by the foreign wrapper, is now inert
            assert torch.equal(denoising(x, t, context=context), plain)
    finally:
        del block._forward


class _StandInMotionModule(nn.Module):
    """Takes only x, like a motion module inside a TimestepEmbedSequential."""

    def forward(self, x):
        return x


def test_paths_pair_with_modules_inserted_as_motion_modules_are(reference_inputs):
    denoising, reference = our_unet(seed=3), our_unet(seed=4, with_output=False)
    x, t, embeds = denoiser_inputs(FRAMES)
    context = contexts((COND,), embeds)
    bank = ReferenceNet(reference).run(*reference_inputs)
    with attend_to_reference(denoising, bank, FrameLayout(FRAMES)), torch.no_grad():
        before = denoising(x, t, context=context)
    # AnimateDiff's positions: appended to input blocks, before the Upsample, before the last mid resnet
    for index in (1, 2, 4, 5, 7, 8, 10, 11):
        denoising.input_blocks[index].append(_StandInMotionModule())
    for index, block in enumerate(denoising.output_blocks):
        block.insert(len(block) - 1, _StandInMotionModule()) if index in (2, 5, 8) else block.append(_StandInMotionModule())
    denoising.middle_block.insert(2, _StandInMotionModule())
    with attend_to_reference(denoising, bank, FrameLayout(FRAMES)), torch.no_grad():
        assert torch.equal(denoising(x, t, context=context), before)


def test_a_bank_that_does_not_pair_is_an_error(unets, reference_inputs):
    denoising, reference = unets
    bank = ReferenceNet(reference).run(*reference_inputs)
    partial = ReferenceBank({p: bank.tokens(p) for p in bank.paths[1:]})
    with pytest.raises(RuntimeError, match="no reference tokens for input_blocks.1.1.transformer_blocks.0"):
        with attend_to_reference(denoising, partial, FrameLayout(FRAMES)):
            pass
    assert all("_forward" not in b.__dict__ for b in transformer_blocks(denoising).values())


def test_reference_net_runs_once_per_sampling_pass(unets, reference_inputs):
    """A pass of several steps, overlapping context windows and both CFG call styles: one reference run."""
    denoising, reference = unets
    video_frames, window = 5, 3
    windows = [[0, 1, 2], [2, 3, 4]]
    size = (8, 8)  # smaller than the other tests: this one makes 36 UNet calls
    g = torch.Generator().manual_seed(0)
    reference_latent, embeds = torch.randn(1, 4, *size, generator=g), torch.randn(1, 1, 64, generator=g)
    x = torch.randn(window, 4, *size, generator=g)
    forward_calls = []
    counter = reference.register_forward_pre_hook(lambda *a: forward_calls.append(1))
    net = ReferenceNet(reference)
    layout = FrameLayout(window)
    pose = PoseFeatures(torch.randn(video_frames, 32, *size, generator=g) * 0.1)
    uncond = torch.zeros_like(embeds)
    try:
        for video_pass in (1, 2):
            with animate_anyone_pass(denoising, net, reference_latent, embeds, layout=layout, pose=pose), torch.no_grad():
                for step in (999, 666, 333):
                    t = torch.full((2 * window,), step)
                    for frames in windows:
                        pose.select_frames(frames)
                        layout.set_roles((COND, UNCOND))  # batched cond/uncond
                        denoising(torch.cat([x, x]), t, context=torch.cat([embeds, uncond]).repeat_interleave(window, 0))
                        for role, ctx in ((COND, embeds), (UNCOND, uncond)):  # separate passes
                            layout.set_roles((role,))
                            denoising(x, t[:window], context=ctx.expand(window, -1, -1))
            assert net.runs == video_pass and len(forward_calls) == video_pass
    finally:
        counter.remove()


@pytest.mark.parametrize("fast", [False, True], ids=["generic", "fast"])
def test_a_mixed_call_computes_each_row_once(unets, reference_inputs, fast):
    """Batched CFG: the uncond rows get plain attention on their own, the cond rows the reference
    attention on their own -- no attention over the whole batch (issue 11's cost floor)."""
    denoising, reference = unets
    bank = ReferenceNet(reference).run(*reference_inputs)
    x, t, embeds = denoiser_inputs(2 * FRAMES)
    context = contexts((COND, UNCOND), embeds)
    rows_seen = []
    handles = [block.attn1.register_forward_pre_hook(lambda module, args: rows_seen.append(args[0].shape[0]))
               for block in transformer_blocks(denoising).values()]
    try:
        with attend_to_reference(denoising, bank, FrameLayout(FRAMES, (COND, UNCOND)), fast=fast), torch.no_grad():
            denoising(x, t, context=context)
    finally:
        for handle in handles:
            handle.remove()
    assert rows_seen and max(rows_seen) == FRAMES


def test_rounding_the_bank_to_float16_changes_nothing_in_float16(unets, reference_inputs):
    """The default float16 bank is the released pipeline's: float32 features are rounded through
    float16; features of a float16 run come back as they are."""
    from lib_animate.reference.reference_attention import ReferenceBank, round_bank

    _, reference = unets
    full = ReferenceNet(reference, bank_dtype=None).run(*reference_inputs)
    rounded = round_bank(full, torch.float16)
    half_run = ReferenceBank({path: full.tokens(path).half() for path in full.paths})
    for path in full.paths:
        assert torch.equal(rounded.tokens(path), full.tokens(path).half().float())
        assert not torch.equal(rounded.tokens(path), full.tokens(path))  # float32 features do change
        assert torch.equal(round_bank(half_run, torch.float16).tokens(path), half_run.tokens(path))
