"""Motion scale: the motion modules' residuals multiplied, for the whole clip or per frame."""

import pytest
import torch

from lib_animate.errors import InvalidInputError
from lib_animate.motion import MotionScale, inject, load, parse_motion_scale
from lib_animate.motion.groupnorm import cross_frame_group_norm
from lib_animate.motion.scale import keyframe_values
from lib_animate.sampling.layout import FrameLayout
from tests.support import motion_files as mf
from tests.support.ldm_unet import ldm_unet, unet_inputs

FRAMES = 4


@pytest.fixture(scope="module")
def unet():
    return ldm_unet()


def _motion(tmp_path, version="v2"):
    return load(mf.save(mf.original_state(version), str(tmp_path / f"{version}.safetensors")))


@torch.no_grad()
@pytest.mark.parametrize("version", ["v2", "v3"])
def test_scale_0_is_the_bare_unet_and_1_is_the_module_as_trained(unet, tmp_path, version):
    model = _motion(tmp_path, version)
    x, t, c = unet_inputs(unet, 2 * FRAMES)
    bare = unet(x, t, c)
    with inject(unet, model, FRAMES):
        trained = unet(x, t, c)
    with inject(unet, model, FRAMES, scale=MotionScale(0.0)):
        zero = unet(x, t, c)
    with inject(unet, model, FRAMES, scale=MotionScale(1.0)):
        one = unet(x, t, c)
    with inject(unet, model, FRAMES, scale=MotionScale([1.0] * FRAMES)):
        listed_ones = unet(x, t, c)
    assert torch.equal(zero, bare) and torch.equal(one, trained) and torch.equal(listed_ones, trained)
    assert not torch.allclose(trained, bare, atol=1e-3)


@torch.no_grad()
def test_v1_at_scale_0_keeps_its_clip_wide_group_norms(unet, tmp_path):
    """v1 was trained with the UNet's GroupNorms over the whole clip: that stays, the modules go."""
    model = _motion(tmp_path, "v1")
    x, t, c = unet_inputs(unet, 2 * FRAMES)
    layout = FrameLayout(FRAMES)
    with cross_frame_group_norm(unet, layout):
        clip_norms_only = unet(x, t, c)
    with inject(unet, model, FRAMES, scale=MotionScale(0.0)):
        zero = unet(x, t, c)
    assert torch.equal(zero, clip_norms_only)
    assert not torch.allclose(zero, unet(x, t, c), atol=1e-4)  # and that is not the per-frame bare UNet


@torch.no_grad()
def test_a_uniform_scale_in_the_unet_scales_every_residual(unet, tmp_path):
    model = _motion(tmp_path)
    x, t, c = unet_inputs(unet, 2 * FRAMES)
    with inject(unet, model, FRAMES, scale=MotionScale(0.5)):
        half = unet(x, t, c)
    with inject(unet, model, FRAMES, scale=MotionScale([0.5] * FRAMES)):
        listed = unet(x, t, c)
    with inject(unet, model, FRAMES):
        trained = unet(x, t, c)
    assert torch.allclose(half, listed, atol=1e-6) and not torch.allclose(half, trained, atol=1e-3)
    assert not torch.allclose(half, unet(x, t, c), atol=1e-3)


@torch.no_grad()
def test_a_scale_multiplies_each_modules_residual(tmp_path):
    module = _motion(tmp_path).down_blocks[0].motion_modules[0]
    channels = module.channels
    x = torch.randn(2 * FRAMES, channels, 4, 4)
    full = module(x, FRAMES)
    values = torch.tensor([0.0, 0.5, 1.0, 2.0]).repeat(2).view(-1, 1, 1, 1)
    scaled = module(x, FRAMES, values)
    assert torch.allclose(scaled, x + values * (full - x), atol=1e-5)
    assert torch.equal(scaled[2], full[2]) and torch.equal(scaled[0], x[0])


@torch.no_grad()
def test_per_frame_values_follow_the_calls_window(unet, tmp_path):
    """Under context windows a call holds the window's frames: each row gets its frame's value."""
    model = _motion(tmp_path)
    values = [0.0, 0.25, 0.5, 0.75, 1.0, 1.5]
    scale = MotionScale(values)
    x, t, c = unet_inputs(unet, 2 * FRAMES)
    layout = FrameLayout(FRAMES)
    layout.window = (2, 3, 4, 5)
    with inject(unet, model, FRAMES, layout=layout, scale=scale):
        windowed = unet(x, t, c)
    with inject(unet, model, FRAMES, scale=MotionScale([0.5, 0.75, 1.0, 1.5])):
        same_values = unet(x, t, c)
    assert torch.equal(windowed, same_values)
    rows = scale.rows(layout, 2 * FRAMES, torch.device("cpu"), torch.float32).flatten().tolist()
    assert rows == [0.5, 0.75, 1.0, 1.5] * 2


def test_keyframes_are_linear_between_and_held_outside():
    assert keyframe_values("2:1.0, 6:0.6", 9) == pytest.approx((1.0, 1.0, 1.0, 0.9, 0.8, 0.7, 0.6, 0.6, 0.6))
    assert keyframe_values("0:0", 3) == (0.0, 0.0, 0.0)
    assert parse_motion_scale("0.5", 4).uniform == 0.5
    assert parse_motion_scale([1, 1, 1, 1], 4).uniform == 1.0
    assert parse_motion_scale([1, 0.5], 2).values == (1.0, 0.5)


@pytest.mark.parametrize("value, words", [
    ("0:1, 9:0.5", "keyframe 9 is beyond the last frame"),
    ("3:1, 2:0.5", "increasing frame order"),
    ("fast", "is not a keyframe"),
    ([1, 2], "lists 2 values for 4 frames"),
    (5, "between 0 and 4"),
    ("0:-1", "between 0 and 4"),
    (True, "must be a number"),
    (float("nan"), "must be a number"),
])
def test_bad_scales_are_refused(value, words):
    with pytest.raises(InvalidInputError, match=words):
        parse_motion_scale(value, 4)
