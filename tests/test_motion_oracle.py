"""Numerical oracle: the webui's ldm UNet + our motion modules equals diffusers' UNetMotionModel
with identical random weights (fp32, CPU).

diffusers normalises the motion module's GroupNorm across frames, the original SD1.5 modules per
frame (research/animatediff.md §4), so the oracle's norm is wrapped to per-frame here. For v1 the
original also normalises the UNet's ResBlock and output norms across frames, which diffusers
never does: the oracle's resnet norms are wrapped to cross-frame for that case, and the hook
itself is checked against an explicit formula.
"""

import pytest
import torch
from torch import nn

from lib_animate.motion import inject, load
from tests.support import motion_files as mf
from tests.support.ldm_unet import ldm_unet

diffusers = pytest.importorskip("diffusers", reason="diffusers (test-only oracle) is not installed")
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint  # noqa: E402

CLIPS, FRAMES, SIZE, TOKENS = 2, 4, 16, 5
CHANNELS = (32, 64, 128, 128)


def rel_l2(a, b):
    return ((a - b).norm() / b.norm()).item()


def diffusers_unet_from_ldm(unet):
    config = dict(
        sample_size=SIZE,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        block_out_channels=CHANNELS,
        layers_per_block=2,
        cross_attention_dim=64,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    model = diffusers.UNet2DConditionModel(**config)
    converted = convert_ldm_unet_checkpoint({"model.diffusion_model." + k: v for k, v in unet.state_dict().items()}, model.config)
    model.load_state_dict(converted, strict=True)
    return model.eval()


class PerFrameNorm(nn.Module):
    """diffusers feeds (B, C, F, H, W); normalise each frame on its own, like the originals."""

    def __init__(self, norm):
        super().__init__()
        self.norm = norm

    def forward(self, x):
        b, c, f, h, w = x.shape
        y = self.norm(x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w))
        return y.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)


class CrossFrameNorm(nn.Module):
    """(B*F, C, H, W) normalised over each clip's frames together (v1's 3-D UNet norms)."""

    def __init__(self, norm, frames):
        super().__init__()
        self.norm, self.frames = norm, frames

    def forward(self, x):
        n, c, h, w = x.shape
        y = self.norm(x.reshape(n // self.frames, self.frames, c, h, w).transpose(1, 2))
        return y.transpose(1, 2).reshape(n, c, h, w)


def diffusers_motion_unet(unet2d, state, version):
    adapter = diffusers.MotionAdapter(
        block_out_channels=CHANNELS,
        motion_layers_per_block=2,
        motion_mid_block_layers_per_block=1,
        motion_num_attention_heads=8,
        motion_norm_num_groups=32,
        motion_max_seq_length=24 if version == "v1" else 32,
        use_motion_mid_block=version == "v2",
    )
    adapter.load_state_dict(mf.to_diffusers_naming(state), strict=True)
    model = diffusers.UNetMotionModel.from_unet2d(unet2d, adapter)
    model.load_motion_modules(adapter)
    for module in model.modules():
        if type(module).__name__ == "AnimateDiffTransformer3D":
            module.norm = PerFrameNorm(module.norm)
    if version == "v1":
        for module in list(model.modules()):
            if type(module).__name__ == "ResnetBlock2D":
                module.norm1 = CrossFrameNorm(module.norm1, FRAMES)
                module.norm2 = CrossFrameNorm(module.norm2, FRAMES)
        model.conv_norm_out = CrossFrameNorm(model.conv_norm_out, FRAMES)
    return model.eval()


@pytest.fixture(scope="module")
def unets():
    unet = ldm_unet(model_channels=32, context_dim=64, seed=7)
    return unet, diffusers_unet_from_ldm(unet)


def _inputs():
    g = torch.Generator().manual_seed(11)
    sample = torch.randn(CLIPS, 4, FRAMES, SIZE, SIZE, generator=g)
    context = torch.randn(CLIPS, TOKENS, 64, generator=g)
    t = 613
    # ldm layout: (clips*frames, C, H, W), each clip's frames contiguous, one context per row
    x = sample.permute(0, 2, 1, 3, 4).reshape(CLIPS * FRAMES, 4, SIZE, SIZE)
    return sample, context, t, x, context.repeat_interleave(FRAMES, dim=0)


@torch.no_grad()
def test_bare_unets_agree(unets):
    unet, unet2d = unets
    sample, context, t, x, ctx_rows = _inputs()
    ours = unet(x, torch.full((x.shape[0],), t), ctx_rows)
    theirs = unet2d(x, t, encoder_hidden_states=ctx_rows).sample
    assert rel_l2(ours, theirs) <= 1e-5


@pytest.mark.parametrize("version", ["v2", "v3", "v1"])
@torch.no_grad()
def test_injected_ldm_unet_equals_diffusers_unet_motion_model(unets, tmp_path, version):
    unet, unet2d = unets
    state = mf.original_state(version, seed=5)
    motion = load(mf.save(state, str(tmp_path / f"{version}.ckpt")))
    oracle = diffusers_motion_unet(unet2d, state, version)
    sample, context, t, x, ctx_rows = _inputs()

    # diffusers expects the context already repeated per frame (B*F rows)
    theirs = oracle(sample, t, encoder_hidden_states=ctx_rows).sample  # (B, C, F, H, W)
    theirs = theirs.permute(0, 2, 1, 3, 4).reshape(CLIPS * FRAMES, 4, SIZE, SIZE)
    with inject(unet, motion, FRAMES):
        ours = unet(x, torch.full((x.shape[0],), t), ctx_rows)
    bare = unet(x, torch.full((x.shape[0],), t), ctx_rows)

    assert rel_l2(ours, theirs) <= 1e-5
    assert rel_l2(bare, theirs) > 1e-2  # the motion modules really change the output


@torch.no_grad()
def test_v1_unet_norm_hook_matches_the_cross_frame_formula(unets, tmp_path):
    unet, _ = unets
    motion = load(mf.save(mf.original_state("v1"), str(tmp_path / "v1.ckpt")))
    norm = unet.input_blocks[4][0].out_layers[0]  # a ResBlock GroupNorm32 (64 channels)
    x = torch.randn(CLIPS * FRAMES, 64, 8, 8, generator=torch.Generator().manual_seed(2)) * 3 + 1

    groups = norm.num_groups
    v = x.reshape(CLIPS, FRAMES, groups, 64 // groups, 8, 8)
    mean = v.mean(dim=(1, 3, 4, 5), keepdim=True)
    var = v.var(dim=(1, 3, 4, 5), unbiased=False, keepdim=True)
    expected = ((v - mean) / torch.sqrt(var + norm.eps)).reshape(CLIPS * FRAMES, 64, 8, 8)
    expected = expected * norm.weight[None, :, None, None] + norm.bias[None, :, None, None]

    per_frame = norm(x)
    with inject(unet, motion, FRAMES):
        cross = norm(x)
        transformer_norm = unet.input_blocks[4][1].norm  # SpatialTransformer norm: stays per frame
        assert torch.equal(transformer_norm(x), transformer_norm.__class__.forward(transformer_norm, x))
    torch.testing.assert_close(cross, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(per_frame, expected, atol=1e-3)
    assert torch.equal(norm(x), per_frame)  # hook gone after the injection
