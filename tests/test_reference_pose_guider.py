"""The pose guider (published layers) and its features added after the UNet's first conv."""

import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lib_animate.errors import WeightsFileError
from lib_animate.reference.pose_features import PoseFeatures, inject_pose_features
from lib_animate.reference.pose_guider import PoseGuider
from lib_animate.reference.weights import load_pose_guider
from lib_animate.sampling.layout import COND, UNCOND, FrameLayout
from tests.support.reference_files import PUBLISHED_POSE_GUIDER, module_attributes, our_unet, pose_guider_weights

FRAMES = 3
LATENT = (8, 8)


def test_full_width_guider_has_the_published_layers():
    with torch.device("meta"):
        guider = PoseGuider()
    state = guider.state_dict()
    assert len(state) == 16
    expected = {}
    for name, (shape, _) in PUBLISHED_POSE_GUIDER.items():
        expected[f"{name}.weight"] = shape
        expected[f"{name}.bias"] = (shape[0],)
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    assert sum(p.numel() for p in guider.parameters()) == 1_086_480
    strides = {name: conv.stride[0] for name, conv in guider.named_modules() if isinstance(conv, nn.Conv2d)}
    assert strides == {name: stride for name, (_, stride) in PUBLISHED_POSE_GUIDER.items()}
    assert all(conv.padding == (1, 1) for conv in guider.modules() if isinstance(conv, nn.Conv2d))


def test_full_width_output_shape_and_range_of_input():
    weights = pose_guider_weights(seed=0, out_channels=320)
    guider = PoseGuider.from_state_dict(weights)
    pose = torch.rand(2, 3, 64, 48)  # RGB in [0, 1]
    with torch.no_grad():
        out = guider(pose)
    assert out.shape == (2, 320, 8, 6)


def test_forward_is_conv_silu_chain_with_published_strides(tmp_path):
    path = os.path.join(tmp_path, "pose_guider.pth")
    weights = pose_guider_weights(seed=3)
    torch.save(weights, path)
    guider = load_pose_guider(path)
    pose = torch.rand(FRAMES, 3, 64, 56)
    x = pose
    for name, (_, stride) in PUBLISHED_POSE_GUIDER.items():
        x = F.conv2d(x, weights[f"{name}.weight"], weights[f"{name}.bias"], stride=stride, padding=1)
        if name != "conv_out":
            x = F.silu(x)
    with torch.no_grad():
        assert torch.allclose(guider(pose), x, rtol=0, atol=1e-6)
        assert torch.allclose(guider.encode(pose, chunk_frames=2), x, rtol=0, atol=1e-6)
    assert x.shape == (FRAMES, 32, 8, 7)


@pytest.mark.parametrize("change, message", [
    (lambda w: w.pop("blocks.5.bias"), "1 missing keys: blocks.5.bias"),
    (lambda w: w.__setitem__("blocks.6.weight", torch.zeros(1)), "its blocks are \\[0, 1, 2, 3, 4, 5, 6\\]"),
    (lambda w: w.__setitem__("conv_out.weight", torch.zeros(32, 256, 1, 1)), "conv_out.weight \\(32, 256, 1, 1\\) \\(expected \\(32, 256, 3, 3\\)\\)"),
    (lambda w: w.__setitem__("conv_in.weight", torch.zeros(16, 4, 3, 3)), "conv_in.weight \\(16, 4, 3, 3\\) \\(expected \\(16, 3, 3, 3\\)\\)"),
])
def test_wrong_pose_guider_files(change, message):
    weights = pose_guider_weights(seed=1)
    change(weights)
    with pytest.raises(WeightsFileError, match=message):
        PoseGuider.from_state_dict(weights)


@pytest.fixture(scope="module")
def unet():
    return our_unet(seed=6)


def _inputs(rows, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, 4, *LATENT, generator=g), torch.full((rows,), 301), torch.randn(rows, 1, 64, generator=g)


class _ConvPlusRows(nn.Module):
    """Oracle: the first conv followed by adding an explicit per-row tensor."""

    def __init__(self, conv, rows):
        super().__init__()
        self.conv, self.rows = conv, rows

    def forward(self, x):
        return self.conv(x) + self.rows


def _oracle(unet, x, t, context, rows_features):
    conv = unet.input_blocks[0][0]
    unet.input_blocks[0][0] = _ConvPlusRows(conv, rows_features)
    try:
        with torch.no_grad():
            return unet(x, t, context=context)
    finally:
        unet.input_blocks[0][0] = conv


def test_zero_features_leave_the_output_unchanged(unet):
    x, t, context = _inputs(2 * FRAMES)
    with torch.no_grad():
        plain = unet(x, t, context=context)
        with inject_pose_features(unet, PoseFeatures(torch.zeros(FRAMES, 32, *LATENT)), FrameLayout(FRAMES, (COND, UNCOND))):
            assert torch.equal(unet(x, t, context=context), plain)


def test_features_are_added_after_the_first_conv_per_frame_in_every_chunk(unet):
    video = torch.randn(7, 32, *LATENT, generator=torch.Generator().manual_seed(4))
    pose = PoseFeatures(video)
    window = [5, 6, 0]  # a wrapped context window
    pose.select_frames(window)
    x, t, context = _inputs(2 * FRAMES)
    layout = FrameLayout(FRAMES, (COND, UNCOND))
    with torch.no_grad():
        plain = unet(x, t, context=context)
        with inject_pose_features(unet, pose, layout):
            hooked = unet(x, t, context=context)
    expected = _oracle(unet, x, t, context, torch.cat([video[window], video[window]]))
    assert torch.equal(hooked, expected)
    assert not torch.equal(hooked, plain)


def test_all_frames_when_none_selected_and_frame_count_errors(unet):
    video = torch.randn(FRAMES, 32, *LATENT)
    pose = PoseFeatures(video)
    x, t, context = _inputs(FRAMES)
    with inject_pose_features(unet, pose, FrameLayout(FRAMES)), torch.no_grad():
        hooked = unet(x, t, context=context)
    assert torch.equal(hooked, _oracle(unet, x, t, context, video))
    before = module_attributes(unet)
    pose.select_frames([0, 1])
    with pytest.raises(RuntimeError, match="clips of 3 frames but 2 pose frames are selected"):
        with inject_pose_features(unet, pose, FrameLayout(FRAMES)), torch.no_grad():
            unet(x, t, context=context)
    assert module_attributes(unet) == before  # the hook is gone after the error too
    with pytest.raises(IndexError):
        pose.select_frames([0, 3])


def test_features_of_the_wrong_size_are_an_error(unet):
    x, t, context = _inputs(FRAMES)
    with pytest.raises(RuntimeError, match="the pose must be rendered at the generation size"):
        with inject_pose_features(unet, PoseFeatures(torch.zeros(FRAMES, 32, 4, 4)), FrameLayout(FRAMES)), torch.no_grad():
            unet(x, t, context=context)
