"""The pose guider (published layers) and its features added after the UNet's first conv."""

import os

import numpy as np
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


# --- memory flat in the number of frames -----------------------------------------------------------

class CountingGuider(torch.nn.Module):
    """A small pose guider of the released architecture that records the frames of every call."""

    def __init__(self):
        super().__init__()
        from lib_animate.reference.pose_guider import PoseGuider

        torch.manual_seed(0)
        self.guider = PoseGuider((4, 8, 8, 16), 32).eval()
        self.calls = []

    def forward(self, pixels):
        self.calls.append(pixels.shape[0])
        return self.guider(pixels)


def _pose_frames(count, height=32, width=24):
    rng = np.random.default_rng(count)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def test_encoding_runs_a_chunk_at_a_time_and_keeps_the_features_on_the_host():
    guider = CountingGuider()
    frames = _pose_frames(37)
    pose = PoseFeatures.encode(guider, frames, device="cpu", dtype=torch.float32, chunk_frames=16)
    assert guider.calls == [16, 16, 5]  # the device never holds more than a chunk of pixels
    assert pose.features.device.type == "cpu" and pose.features.shape == (37, 32, 4, 3)
    pixels = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        assert torch.equal(pose.features, guider.guider(pixels))  # the same features as one call on every frame


def test_a_call_moves_only_its_windows_frames():
    video = torch.randn(30, 32, *LATENT, generator=torch.Generator().manual_seed(1))
    pose = PoseFeatures(video)
    like = torch.zeros(1, dtype=torch.float64)
    for window in ([4, 5, 6, 7], [28, 29, 0, 1]):  # a run of frames (a view) and a wrapped window (gathered)
        pose.select_frames(window)
        selected = pose.selected()
        assert selected.shape[0] == len(window)
        assert (selected.untyped_storage().data_ptr() == video.untyped_storage().data_ptr()) == (window[0] == 4)
        moved = pose.for_call(len(window), like)
        assert moved.dtype == torch.float64 and torch.equal(moved, video[window].double())


def test_the_per_video_state_on_the_device_does_not_grow_with_the_frames():
    """The structural proxy the benchmark prints on the CPU: bytes of per-video tensors kept on the
    device for the whole job stay the same from 24 to 96 frames; only the host part grows."""
    from lib_animate.reference.reference_attention import ReferenceNet
    from lib_animate.reference.residency import video_state_bytes
    from tests.support.ldm_unet import ldm_unet

    net = ReferenceNet(ldm_unet(model_channels=32, context_dim=16))
    latent = torch.randn(1, 4, 8, 8)
    embeds = torch.randn(1, 1, 16)
    bank = net.run(latent, embeds)
    rows = {}
    for frames in (24, 48, 96):
        pose = PoseFeatures.encode(CountingGuider(), _pose_frames(frames), device="cpu", dtype=torch.float32)
        rows[frames] = video_state_bytes(bank, embeds, latent, pose, window=24)
    assert rows[24]["device"] == rows[48]["device"] == rows[96]["device"] > 0
    assert rows[24]["per_call"] == rows[96]["per_call"]
    assert rows[96]["host"] == 4 * rows[24]["host"] > 0
