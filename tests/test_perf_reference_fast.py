"""The reference-attention fast path (cached reference K/V, SDPA over [own; reference]) against the
same formula oracle and bit-identity requirements as the generic path, and when it is refused."""

import pytest
import torch
import torch.nn as nn

from lib_animate.reference.block_hooks import transformer_blocks
from lib_animate.reference.reference_attention import ReferenceNet, attend_to_reference, fast_path_blocker
from lib_animate.sampling.layout import COND, UNCOND, FrameLayout
from tests.support.reference_files import relative_error
from tests.test_reference_attention import (  # noqa: F401  (unets, reference_inputs: shared fixtures)
    FRAMES, contexts, denoiser_inputs, oracle_denoiser, reference_inputs, reference_tokens_by_plain_run, unets,
)


@pytest.fixture(scope="module")
def bank(unets, reference_inputs):
    return ReferenceNet(unets[1]).run(*reference_inputs)


ROLES = [(COND, UNCOND), (UNCOND, COND), (COND,), None, (COND, UNCOND, COND)]
ROLE_IDS = ["cond-uncond", "uncond-cond", "cond-only", "no-roles", "cond-uncond-cond"]


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "generic"])
@pytest.mark.parametrize("roles", ROLES, ids=ROLE_IDS)
def test_denoiser_output_equals_the_formula(unets, reference_inputs, bank, roles, fast):
    """cond-uncond-cond has two separate runs of cond rows: the gather/scatter path."""
    denoising, reference = unets
    effective_roles = roles or (COND,)
    x, t, embeds = denoiser_inputs(FRAMES * len(effective_roles))
    context = contexts(effective_roles, embeds)
    with attend_to_reference(denoising, bank, FrameLayout(FRAMES, roles), fast=fast) as handle, torch.no_grad():
        got = denoising(x, t, context=context)
    assert len(handle.fast_paths) == (16 if fast else 0)
    tokens = reference_tokens_by_plain_run(reference, *reference_inputs)
    expected = oracle_denoiser(denoising, x, t, context, effective_roles, tokens)
    assert relative_error(got, expected) <= 1e-5


@pytest.mark.parametrize("roles", [(COND, UNCOND), (UNCOND, COND), (COND, UNCOND, COND)], ids=["cond-uncond", "uncond-cond", "cond-uncond-cond"])
def test_fast_path_keeps_uncond_rows_equal_to_the_unhooked_unet(unets, bank, roles):
    denoising, _ = unets
    x, t, embeds = denoiser_inputs(FRAMES * len(roles))
    context = contexts(roles, embeds)
    with torch.no_grad():
        plain = denoising(x, t, context=context)
    with attend_to_reference(denoising, bank, FrameLayout(FRAMES, roles), fast=True), torch.no_grad():
        hooked = denoising(x, t, context=context)
    for chunk, role in enumerate(roles):
        rows = slice(chunk * FRAMES, (chunk + 1) * FRAMES)
        if role == UNCOND:
            assert relative_error(hooked[rows], plain[rows]) <= 1e-6
        else:
            assert relative_error(hooked[rows], plain[rows]) > 1e-3


def test_reference_keys_and_values_are_projected_once_per_block_and_pass(unets, bank):
    denoising, _ = unets
    calls = {path: 0 for path in transformer_blocks(denoising)}
    handles = [
        block.attn1.to_k.register_forward_hook(lambda *a, path=path: calls.__setitem__(path, calls[path] + 1))
        for path, block in transformer_blocks(denoising).items()
    ]
    x, t, embeds = denoiser_inputs(2 * FRAMES)
    context = contexts((COND, UNCOND), embeds)
    try:
        with attend_to_reference(denoising, bank, FrameLayout(FRAMES, (COND, UNCOND)), fast=True), torch.no_grad():
            for _ in range(3):
                denoising(x, t, context=context)
    finally:
        for h in handles:
            h.remove()
    # per call: attn1 on all rows (1) + the cond rows' own keys (1); the reference keys once per pass
    assert set(calls.values()) == {3 * 2 + 1}


def test_blocks_the_fast_path_cannot_replicate_keep_the_generic_path(unets, bank):
    denoising, _ = unets
    blocks = list(transformer_blocks(denoising).items())
    hooked_path, hooked_block = blocks[0]
    wrapped_path, wrapped_block = blocks[1]
    handle = hooked_block.attn1.register_forward_hook(lambda *a: None)  # e.g. another extension's hook
    wrapped_block.attn1.forward = lambda x, context=None, mask=None: type(wrapped_block.attn1).forward(wrapped_block.attn1, x, context, mask)
    x, t, embeds = denoiser_inputs(2 * FRAMES)
    context = contexts((COND, UNCOND), embeds)
    try:
        with attend_to_reference(denoising, bank, FrameLayout(FRAMES, (COND, UNCOND)), fast=True) as attention, torch.no_grad():
            got = denoising(x, t, context=context)
        with attend_to_reference(denoising, bank, FrameLayout(FRAMES, (COND, UNCOND))), torch.no_grad():
            generic = denoising(x, t, context=context)
    finally:
        handle.remove()
        del wrapped_block.attn1.forward
    assert "hooks" in attention.generic_reasons[hooked_path]
    assert "instance-level forward" in attention.generic_reasons[wrapped_path]
    assert len(attention.fast_paths) == 14
    assert relative_error(got, generic) <= 1e-5
    assert all("_forward" not in b.__dict__ for b in transformer_blocks(denoising).values())


class _OtherAttention(nn.Module):
    pass


def test_fast_path_blocker_names_the_reason():
    block = nn.Module()
    block.attn1 = _OtherAttention()
    assert "not ldm's CrossAttention" in fast_path_blocker(block)


def test_the_fast_path_runs_its_sdpa_under_the_webuis_kernel_choice(unets, bank):
    """With the webui's "sdp-no-mem" the job passes without_memory_efficient_sdpa: every SDPA call of
    the fast path runs inside it (and gives the same result where the kernel choice is moot)."""
    from contextlib import contextmanager

    from lib_animate.reference.reference_attention import without_memory_efficient_sdpa

    denoising, _ = unets
    entered = []

    @contextmanager
    def recording():
        with without_memory_efficient_sdpa():
            entered.append(1)
            yield

    x, t, embeds = denoiser_inputs(2 * FRAMES)
    context = contexts((COND, UNCOND), embeds)
    layout = FrameLayout(FRAMES, (COND, UNCOND))
    with attend_to_reference(denoising, bank, layout, fast=True), torch.no_grad():
        default = denoising(x, t, context=context)
    with attend_to_reference(denoising, bank, layout, fast=True, sdpa_context=recording), torch.no_grad():
        no_mem = denoising(x, t, context=context)
    assert len(entered) == len(transformer_blocks(denoising))  # one SDPA call per block and UNet call
    assert torch.equal(no_mem, default)
