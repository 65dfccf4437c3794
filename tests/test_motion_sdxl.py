"""SDXL motion modules in the engine (issue 12, engine part): AnimateDiff-SDXL beta and HotShot-XL as
published, injected into a UNet of the SDXL block layout.

``sgm`` (the webui's SDXL UNet) is not on PyPI and fetched code is not committed, so the layout is built
with the ``ldm`` package's ``UNetModel``, which expresses it exactly: three levels (channel_mult 1/2/4),
level 0 ResBlocks only, levels 1-2 ResBlock + SpatialTransformer (depth 1), the same block classes and
names -- input blocks 1, 2, 4, 5, 7, 8 take a module, every output block one (before the Upsample of
output blocks 2 and 5), no mid-block module. The SDXL-only parts (``adm_in_channels``, the size/crop
vector) feed the time embedding, not the block layout.
"""

import pytest
import torch

from lib_animate.errors import IncompatibleModelError
from lib_animate.motion import MotionModel, full_width_spec, inject, load
from lib_animate.motion.inject import check_compatible
from tests.support import motion_files as mf
from tests.support.ldm_unet import ldm_unet
from tests.support.reference_files import same_state, state_bytes

CLIPS, FRAMES, SIZE, TOKENS, CONTEXT = 2, 4, 16, 5, 64
PUBLISHED_PARAMETERS = 236_779_200  # research/animatediff.md §1: both SDXL families, pe excluded


def sdxl_layout_unet(seed=3):
    return ldm_unet(model_channels=32, context_dim=CONTEXT, seed=seed, channel_mult=[1, 2, 4], attention_resolutions=[2, 4])


def rel_l2(a, b):
    return ((a - b).norm() / b.norm()).item()


def inputs(seed=4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(CLIPS * FRAMES, 4, SIZE, SIZE, generator=g)
    return x, torch.full((x.shape[0],), 500), torch.randn(CLIPS * FRAMES, TOKENS, CONTEXT, generator=g)


@pytest.mark.parametrize("version", ["sdxl_beta", "hotshotxl"])
def test_full_width_modules_have_the_published_size(version):
    with torch.device("meta"):
        model = MotionModel(full_width_spec(version, 320))
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_PARAMETERS
    assert len(mf.sdxl_state("sdxl_beta" if version == "sdxl_beta" else "hotshot")) == 420  # 15 modules x 28 tensors


def test_the_sdxl_layout_is_the_one_the_webui_loads():
    unet = sdxl_layout_unet()
    kinds = [[type(layer).__name__ for layer in block] for block in unet.input_blocks]
    assert kinds[1] == kinds[2] == ["ResBlock"] and kinds[4] == kinds[5] == kinds[7] == kinds[8] == ["ResBlock", "SpatialTransformer"]
    assert len(unet.input_blocks) == 9 and len(unet.output_blocks) == 9
    assert [type(b[-1]).__name__ for b in unet.output_blocks].count("Upsample") == 2


@pytest.mark.parametrize("version", ["sdxl_beta", "hotshot"])
@torch.no_grad()
def test_modules_go_where_the_originals_put_them_and_leave_no_trace(tmp_path, version):
    unet = sdxl_layout_unet()
    motion = load(mf.save(mf.sdxl_state(version), str(tmp_path / f"{version}.safetensors")))
    x, t, context = inputs()
    before = state_bytes(unet)
    plain = unet(x, t, context)
    with inject(unet, motion, FRAMES):
        holders = [i for i, block in enumerate(unet.input_blocks) if any(getattr(m, "is_lib_animate_motion", False) for m in block)]
        assert holders == [1, 2, 4, 5, 7, 8]
        for n, block in enumerate(unet.output_blocks):
            names = [type(m).__name__ for m in block]
            assert names.count("InjectedMotionModule") == 1, (n, names)
            if n in (2, 5):
                assert names[-1] == "Upsample" and names[-2] == "InjectedMotionModule"
        assert not any(getattr(m, "is_lib_animate_motion", False) for m in unet.middle_block)
        moved = unet(x, t, context)
    assert rel_l2(moved, plain) > 1e-3
    assert same_state(before, state_bytes(unet)) and torch.equal(unet(x, t, context), plain)


@torch.no_grad()
def test_an_ad_sdxl_module_with_zero_proj_out_leaves_the_unet_exactly_as_it_was(tmp_path):
    state = mf.sdxl_state("sdxl_beta", zero_proj_out=True)
    unet = sdxl_layout_unet()
    motion = load(mf.save(state, str(tmp_path / "zero.safetensors")))
    x, t, context = inputs()
    plain = unet(x, t, context)
    with inject(unet, motion, FRAMES):
        assert torch.equal(unet(x, t, context), plain)  # AD-SDXL leaves the UNet's norms per frame


@torch.no_grad()
def test_hotshot_normalises_the_unets_resblocks_across_frames(tmp_path):
    """HotShot's ResnetBlock3D normalises the 5-D tensor: with its modules zeroed the UNet equals the one
    whose ResBlock and output norms span the clip's frames (the v1 hook, checked against its formula in
    test_motion_oracle.py), and differs from the plain UNet."""
    from tests.test_motion_oracle import CrossFrameNorm

    state = mf.sdxl_state("hotshot", zero_proj_out=True)
    unet = sdxl_layout_unet()
    motion = load(mf.save(state, str(tmp_path / "zero-hotshot.safetensors")))
    x, t, context = inputs()
    plain = unet(x, t, context)
    with inject(unet, motion, FRAMES):
        ours = unet(x, t, context)
    oracle = sdxl_layout_unet()
    for module in list(oracle.modules()):
        if type(module).__name__ == "ResBlock":
            module.in_layers[0] = CrossFrameNorm(module.in_layers[0], FRAMES)
            module.out_layers[0] = CrossFrameNorm(module.out_layers[0], FRAMES)
    oracle.out[0] = CrossFrameNorm(oracle.out[0], FRAMES)
    assert rel_l2(ours, oracle(x, t, context)) <= 1e-5
    assert rel_l2(ours, plain) > 1e-3


@pytest.mark.parametrize("version", ["sdxl_beta", "hotshot"])
@torch.no_grad()
def test_each_module_equals_diffusers_motion_adapter_on_the_same_weights(tmp_path, version):
    """diffusers' SDXL motion adapter (3 levels, no mid block) normalises a module across frames, as
    AD-SDXL does; for HotShot its norm is wrapped to per frame, HotShot's temporal layer norm."""
    diffusers = pytest.importorskip("diffusers", reason="diffusers (test-only oracle) is not installed")
    from tests.test_motion_oracle import PerFrameNorm

    state = mf.sdxl_state(version)
    ours = load(mf.save(state, str(tmp_path / f"{version}.safetensors")))
    adapter = diffusers.MotionAdapter(block_out_channels=(32, 64, 128), motion_layers_per_block=2, motion_num_attention_heads=8,
                                      motion_norm_num_groups=32, motion_max_seq_length=32 if version == "sdxl_beta" else 24,
                                      use_motion_mid_block=False)
    adapter.load_state_dict(mf.to_diffusers_naming(state), strict=True)
    adapter.eval()
    g = torch.Generator().manual_seed(9)
    for kind, blocks, theirs_blocks in (("down", ours.down_blocks, adapter.down_blocks), ("up", ours.up_blocks, adapter.up_blocks)):
        for level, (block, theirs_block) in enumerate(zip(blocks, theirs_blocks)):
            for j, (module, theirs) in enumerate(zip(block.motion_modules, theirs_block.motion_modules)):
                if version == "hotshot":
                    theirs.norm = PerFrameNorm(theirs.norm)
                x = torch.randn(CLIPS * FRAMES, module.channels, 8, 8, generator=g)
                expected = theirs(x, num_frames=FRAMES)
                expected = expected.sample if hasattr(expected, "sample") else expected
                assert rel_l2(module(x, FRAMES), expected) <= 1e-5, (kind, level, j)


def test_an_sd15_module_on_an_sdxl_unet_and_the_reverse_are_refused_naming_both(tmp_path):
    sdxl = load(mf.save(mf.sdxl_state("sdxl_beta"), str(tmp_path / "mm_sdxl.safetensors")))
    sd15 = load(mf.save(mf.original_state("v2"), str(tmp_path / "mm_sd15.safetensors")))
    with pytest.raises(IncompatibleModelError, match="'mm_sdxl.safetensors' is an SDXL motion module .* an SD1.5 UNet"):
        check_compatible(ldm_unet(model_channels=32, context_dim=CONTEXT), sdxl)
    with pytest.raises(IncompatibleModelError, match="'mm_sd15.safetensors' is an SD1.5 motion module .* an SDXL UNet"):
        check_compatible(sdxl_layout_unet(), sd15)


def test_each_sdxl_family_samples_with_the_schedule_it_was_trained_with(tmp_path):
    """AD-SDXL: scaled-linear beta 0.00085 -> 0.020 (guoyww/AnimateDiff, sdxl branch, inference.yaml).
    HotShot-XL: SDXL's own scaled-linear 0.00085 -> 0.012 -- its fine_tune.py and inference.py both take
    the scheduler config of the hub repo (SDXL's) and never change the betas."""
    from lib_animate.motion import noise_schedule
    from lib_animate.sampling.schedules import NoiseSchedule

    ad = noise_schedule(load(mf.save(mf.sdxl_state("sdxl_beta"), str(tmp_path / "ad.safetensors"))))
    hotshot = noise_schedule(load(mf.save(mf.sdxl_state("hotshot"), str(tmp_path / "hs.safetensors"))))
    assert ad == NoiseSchedule("scaled_linear", 0.00085, 0.020)
    assert hotshot == NoiseSchedule("scaled_linear", 0.00085, 0.012)
    expected = torch.cumprod(1 - torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2, 0)
    assert torch.equal(hotshot.alphas_cumprod(), expected)
