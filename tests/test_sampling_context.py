import itertools

import pytest
import torch

from lib_animate.sampling.context import (
    apply_windows,
    context_windows,
    fuse_windows,
    normalized_window_weights,
    ordered_halving,
    window_weights,
)

CASES = [  # frames, length, overlap
    (17, 16, 4), (40, 16, 4), (64, 16, 0), (65, 16, 15), (100, 24, 4), (33, 8, 3), (24, 2, 1), (50, 2, 0),
]


def ring_gap(a, b, frames):
    return (b - a) % frames


def assert_covers(windows, frames):
    covered = sorted(set(itertools.chain.from_iterable(windows)))
    assert covered == list(range(frames))


@pytest.mark.parametrize("frames", [1, 5, 16])
@pytest.mark.parametrize("closed_loop", [False, True])
def test_one_window_when_clip_fits(frames, closed_loop):
    assert context_windows(frames, 16, 4, step=3, closed_loop=closed_loop, stride=3) == [tuple(range(frames))]


@pytest.mark.parametrize("frames,length,overlap", CASES)
@pytest.mark.parametrize("step", [0, 1, 2, 3, 7])
@pytest.mark.parametrize("shift", [False, True])
def test_open_windows(frames, length, overlap, step, shift):
    windows = context_windows(frames, length, overlap, step=step, shift=shift)
    assert_covers(windows, frames)
    for w in windows:
        assert len(w) == length
        assert list(w) == list(range(w[0], w[0] + length))  # consecutive, never wraps
    starts = [w[0] for w in windows]
    assert starts == sorted(set(starts))
    assert starts[0] == 0 and windows[-1][-1] == frames - 1
    for a, b in zip(starts, starts[1:]):
        assert b - a <= length - overlap  # consecutive windows share >= overlap frames


def test_open_windows_known_layout():
    assert [w[0] for w in context_windows(40, 16, 4)] == [0, 12, 24]
    assert [w[0] for w in context_windows(41, 16, 4)] == [0, 12, 24, 25]
    assert [w[0] for w in context_windows(100, 24, 4)] == [0, 20, 40, 60, 76]


def test_open_windows_static_by_default_and_shift_on_request():
    static = {tuple(context_windows(100, 16, 4, step=s)) for s in range(8)}
    assert len(static) == 1
    shifted = [context_windows(100, 16, 4, step=s, shift=True) for s in range(8)]
    assert shifted[0] == context_windows(100, 16, 4)
    assert len({tuple(w) for w in shifted}) > 4


@pytest.mark.parametrize("frames,length,overlap", CASES)
@pytest.mark.parametrize("step", [0, 1, 2, 3, 5])
def test_closed_loop_windows(frames, length, overlap, step):
    windows = context_windows(frames, length, overlap, step=step, closed_loop=True)
    assert_covers(windows, frames)
    for w in windows:
        assert len(w) == length and len(set(w)) == length
        assert all(ring_gap(a, b, frames) == 1 for a, b in zip(w, w[1:]))  # consecutive around the ring
    starts = sorted(w[0] for w in windows)
    gaps = [ring_gap(a, b, frames) for a, b in zip(starts, starts[1:] + starts[:1])]
    assert max(gaps) <= length - overlap  # neighbours on the ring share >= overlap frames


def test_closed_loop_wraps_end_into_start():
    windows = context_windows(40, 16, 4, closed_loop=True)
    assert any((39, 0) in zip(w, w[1:]) for w in windows)
    assert not any((39, 0) in zip(w, w[1:]) for w in context_windows(40, 16, 4))


@pytest.mark.parametrize("frames,expected", [
    (25, [(0, 23), (20, 18)]),
    (64, [(0, 23), (20, 43), (40, 63), (60, 19)]),
    (72, [(0, 23), (20, 43), (40, 63), (60, 11)]),
    (120, [(0, 23), (20, 43), (40, 63), (60, 83), (80, 103), (100, 3)]),
])
def test_closed_loop_step_zero_is_the_animate_anyone_reference(frames, expected):
    # research/animate_anyone.md §2: starts 0, 20, ... below F, indices modulo F, 24 frames, overlap 4
    windows = context_windows(frames, 24, 4, step=0, closed_loop=True)
    assert [(w[0], w[-1]) for w in windows] == expected
    assert all(w == tuple((w[0] + k) % frames for k in range(24)) for w in windows)


def test_closed_loop_shifts_between_steps():
    per_step = [context_windows(50, 16, 4, step=s, closed_loop=True) for s in range(6)]
    firsts = [sorted(w[0] for w in ws) for ws in per_step]
    assert len({tuple(f) for f in firsts}) == 6
    assert firsts[1][0] != 0  # step 1 shifts by half the ring
    assert 25 in firsts[1]


def test_ordered_halving():
    assert [ordered_halving(i) for i in range(9)] == [0, .5, .25, .75, .125, .625, .375, .875, .0625]
    with pytest.raises(ValueError):
        ordered_halving(-1)


def dilation_of(w, frames):
    steps = {(b - a) % frames for a, b in zip(w, w[1:])}
    assert len(steps) == 1
    return steps.pop()


@pytest.mark.parametrize("closed_loop", [False, True])
@pytest.mark.parametrize("frames", [64, 70, 81])
@pytest.mark.parametrize("step", [0, 3])
def test_stride_adds_dilated_windows(closed_loop, frames, step):
    plain = context_windows(frames, 16, 4, step=step, closed_loop=closed_loop)
    windows = context_windows(frames, 16, 4, step=step, closed_loop=closed_loop, stride=3)
    assert windows[:len(plain)] == plain
    by_dilation = {}
    for w in windows:
        assert len(w) == 16 and len(set(w)) == 16
        by_dilation.setdefault(dilation_of(w, frames), []).append(w)
        if not closed_loop:
            assert list(w) == sorted(w) and w[-1] < frames  # dilated windows never wrap either
    assert sorted(by_dilation) == [1, 2, 4]
    for d, ws in by_dilation.items():
        assert_covers(ws, frames)  # every dilation level covers the clip on its own


def test_stride_keeps_only_dilations_that_fit():
    windows = context_windows(40, 16, 4, stride=4)  # 16*2 <= 40 < 16*4
    assert {dilation_of(w, 40) for w in windows} == {1, 2}
    assert context_windows(40, 16, 4, stride=1) == context_windows(40, 16, 4)


@pytest.mark.parametrize("kwargs,match", [
    (dict(length=1, overlap=0), "length"),
    (dict(length=16, overlap=-1), "overlap"),
    (dict(length=16, overlap=16), "overlap"),
    (dict(length=16, overlap=4, stride=0), "stride"),
    (dict(length=16, overlap=4, frames=0), "frames"),
    (dict(length=16, overlap=4, step=-1), "step"),
    (dict(length=16.5, overlap=4), "length"),
])
def test_validation(kwargs, match):
    args = dict(frames=40, step=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        context_windows(**args)


def test_window_weights():
    p = window_weights(7)
    assert p.tolist() == [1, 2, 3, 4, 3, 2, 1]
    assert window_weights(6).tolist() == [1, 2, 3, 3, 2, 1]
    assert window_weights(5, "flat").tolist() == [1] * 5
    with pytest.raises(ValueError, match="weighting"):
        window_weights(4, "gauss")


@pytest.mark.parametrize("kind", ["pyramid", "flat"])
@pytest.mark.parametrize("closed_loop,stride", [(False, 1), (True, 1), (False, 2), (True, 3)])
def test_normalized_weights_sum_to_one(kind, closed_loop, stride):
    frames = 70
    windows = context_windows(frames, 16, 4, step=5, closed_loop=closed_loop, stride=stride)
    total = torch.zeros(frames, dtype=torch.float64)
    for w, weights in zip(windows, normalized_window_weights(windows, frames, kind)):
        assert (weights > 0).all()
        total.index_add_(0, torch.tensor(w), weights)
    torch.testing.assert_close(total, torch.ones(frames, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
@pytest.mark.parametrize("kind", ["pyramid", "flat"])
@pytest.mark.parametrize("closed_loop,stride", [(False, 1), (True, 1), (False, 3), (True, 2)])
def test_fusing_identical_outputs_returns_the_input_exactly(dtype, kind, closed_loop, stride):
    frames = 67
    x = torch.randn(frames, 3, 5, 4, generator=torch.Generator().manual_seed(0)).to(dtype)
    windows = context_windows(frames, 16, 5, step=3, closed_loop=closed_loop, stride=stride)
    fused = fuse_windows(windows, [x[list(w)] for w in windows], frames, kind)
    assert fused.dtype == dtype
    assert torch.equal(fused, x)


@pytest.mark.parametrize("kind", ["pyramid", "flat"])
def test_fusion_is_the_normalized_weighted_sum(kind):
    frames = 50
    g = torch.Generator().manual_seed(1)
    windows = context_windows(frames, 16, 4, step=1, closed_loop=True, stride=2)
    outputs = [torch.randn(len(w), 2, 3, generator=g, dtype=torch.float64) for w in windows]
    expected = torch.zeros(frames, 2, 3, dtype=torch.float64)
    for w, out, weights in zip(windows, outputs, normalized_window_weights(windows, frames, kind)):
        expected.index_add_(0, torch.tensor(w), weights[:, None, None] * out)
    torch.testing.assert_close(fuse_windows(windows, outputs, frames, kind), expected, rtol=1e-12, atol=1e-12)


def test_pyramid_favours_the_window_centre():
    # frame 14 is near the end of window 0 (position 14 of 16) and near the start of window 1
    windows = [tuple(range(0, 16)), tuple(range(12, 28))]
    outputs = [torch.zeros(16, 1), torch.ones(16, 1)]
    fused = fuse_windows(windows, outputs, 28)
    assert fused[14].item() == pytest.approx(3 / 5)  # weights 2 (window 0) and 3 (window 1)
    assert fuse_windows(windows, outputs, 28, "flat")[14].item() == pytest.approx(0.5)


def test_windowed_framewise_linear_function_equals_unwindowed():
    frames = 45
    g = torch.Generator().manual_seed(2)
    x = torch.randn(frames, 4, 8, 8, generator=g)
    weight, bias = torch.randn(4, 4, generator=g), torch.randn(4, generator=g)

    def f(frames_x):  # a linear map per frame (e.g. a 1x1 conv)
        return torch.einsum("oc,fchw->fohw", weight, frames_x) + bias[:, None, None]

    for closed_loop, stride in [(False, 1), (True, 1), (False, 2)]:
        windows = context_windows(frames, 16, 4, step=2, closed_loop=closed_loop, stride=stride)
        fused = apply_windows(lambda w: f(x[list(w)]), windows, frames)
        torch.testing.assert_close(fused, f(x), rtol=1e-5, atol=1e-5)


def test_apply_windows_on_another_frame_axis():
    # CFG-like layout: [2 (cond, uncond), frames, C]
    frames = 30
    x = torch.randn(2, frames, 3)
    windows = context_windows(frames, 8, 2, closed_loop=True)
    calls = []

    def model_fn(w):
        calls.append(w)
        return x[:, list(w)] * 2

    torch.testing.assert_close(apply_windows(model_fn, windows, frames, dim=1), x * 2)
    assert calls == windows


def test_fusion_errors():
    with pytest.raises(ValueError, match="no window"):
        fuse_windows([(0, 1), (1, 2)], [torch.zeros(2), torch.zeros(2)], 4)
    with pytest.raises(ValueError, match="outputs"):
        fuse_windows([(0, 1)], [], 2)
    with pytest.raises(ValueError, match="frames"):
        fuse_windows([(0, 1)], [torch.zeros(3)], 2)
    with pytest.raises(ValueError, match="weighting"):
        fuse_windows([(0, 1)], [torch.zeros(2)], 2, "gauss")
    with pytest.raises(ValueError, match="twice"):
        fuse_windows([(0, 1, 1)], [torch.zeros(3)], 2)
    with pytest.raises(ValueError, match="no windows"):
        apply_windows(lambda w: torch.zeros(len(w)), [], 2)
