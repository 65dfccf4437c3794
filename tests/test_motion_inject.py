"""Injection into the real ldm UNetModel: placement, frame layout, exact restore."""

import pytest
import torch

from lib_animate.errors import IncompatibleModelError, InvalidInputError
from lib_animate.motion import inject, load, remove_stale_modules
from lib_animate.motion import model as motion_model_module
from lib_animate.motion.inject import ACTIVE_ATTRIBUTE, InjectedMotionModule
from lib_animate.sampling.layout import FrameLayout
from tests.support import motion_files as mf
from tests.support.ldm_unet import ldm_unet, unet_inputs

FRAMES = 4


@pytest.fixture(scope="module")
def unet():
    return ldm_unet()


def _motion(tmp_path, version="v2", **kwargs):
    return load(mf.save(mf.original_state(version, **kwargs), str(tmp_path / f"{version}.safetensors")))


def _snapshot(unet):
    """Everything restore must give back: tree, per-module attributes and hooks, weights."""
    modules = []
    for name, m in unet.named_modules():
        hooks = sum(len(getattr(m, attr, {})) for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks"))
        modules.append((name, id(m), type(m).__name__, tuple(m._modules.keys()), tuple(sorted(vars(m).keys())), hooks))
    state = {k: v.detach().clone() for k, v in unet.state_dict().items()}
    return modules, state


def _assert_same(unet, snapshot):
    modules, state = _snapshot(unet)
    assert modules == snapshot[0]
    assert state.keys() == snapshot[1].keys()
    for k in state:
        assert state[k].dtype == snapshot[1][k].dtype and torch.equal(state[k], snapshot[1][k]), k


@torch.no_grad()
def test_zero_proj_out_gives_the_bare_unet_output_exactly(unet, tmp_path):
    model = _motion(tmp_path, zero_proj_out=True)
    x, t, c = unet_inputs(unet, 2 * FRAMES)
    bare = unet(x, t, c)
    with inject(unet, model, FRAMES):
        hooked = unet(x, t, c)
    assert torch.equal(bare, hooked)


@torch.no_grad()
def test_modules_sit_where_animatediff_puts_them(unet, tmp_path):
    model = _motion(tmp_path)
    with inject(unet, model, FRAMES):
        for i in (1, 2, 4, 5, 7, 8, 10, 11):
            assert isinstance(unet.input_blocks[i][-1], InjectedMotionModule), i
        for i in (0, 3, 6, 9):
            assert not any(isinstance(m, InjectedMotionModule) for m in unet.input_blocks[i])
        for i in range(12):
            position = -2 if i in (2, 5, 8) else -1
            assert isinstance(unet.output_blocks[i][position], InjectedMotionModule), i
        for i in (2, 5, 8):
            assert type(unet.output_blocks[i][-1]).__name__ == "Upsample"
        assert [type(m).__name__ for m in unet.middle_block] == ["ResBlock", "SpatialTransformer", "InjectedMotionModule", "ResBlock"]
        injected = [m for m in unet.modules() if isinstance(m, InjectedMotionModule)]
        assert len(injected) == 21
        assert {id(m.module) for m in injected} == {id(m) for _, m in model.modules_at("down") + model.modules_at("mid") + model.modules_at("up")}


@torch.no_grad()
def test_v3_has_no_mid_module(unet, tmp_path):
    with inject(unet, _motion(tmp_path, "v3"), FRAMES):
        assert [type(m).__name__ for m in unet.middle_block] == ["ResBlock", "SpatialTransformer", "ResBlock"]
        assert sum(isinstance(m, InjectedMotionModule) for m in unet.modules()) == 20


@torch.no_grad()
def test_restore_is_bit_exact_after_success_and_after_an_exception(unet, tmp_path):
    model = _motion(tmp_path, "v1")  # v1 also adds cross-frame GroupNorm hooks
    x, t, c = unet_inputs(unet, 2 * FRAMES)
    snapshot = _snapshot(unet)
    before = unet(x, t, c)
    with inject(unet, model, FRAMES):
        hooked = unet(x, t, c)
    assert not torch.equal(before, hooked)
    _assert_same(unet, snapshot)
    assert torch.equal(unet(x, t, c), before)

    with pytest.raises(ZeroDivisionError):
        with inject(unet, model, FRAMES):
            unet(x, t, c)
            1 / 0
    _assert_same(unet, snapshot)
    assert torch.equal(unet(x, t, c), before)
    assert ACTIVE_ATTRIBUTE not in vars(unet)


@torch.no_grad()
def test_exception_inside_the_unet_call_restores(unet, tmp_path):
    model = _motion(tmp_path)
    snapshot = _snapshot(unet)
    x, t, c = unet_inputs(unet, FRAMES + 1)  # not a multiple of the frames: the module raises
    with pytest.raises(RuntimeError, match="not a multiple of the 4 frames"):
        with inject(unet, model, FRAMES):
            unet(x, t, c)
    _assert_same(unet, snapshot)


@torch.no_grad()
def test_nested_injection_is_refused_and_nothing_stacks(unet, tmp_path):
    model = _motion(tmp_path)
    with inject(unet, model, FRAMES):
        with pytest.raises(RuntimeError, match="already injected"):
            with inject(unet, model, FRAMES):
                pass
        assert sum(isinstance(m, InjectedMotionModule) for m in unet.modules()) == 21
    assert not any(isinstance(m, InjectedMotionModule) for m in unet.modules())


@torch.no_grad()
def test_injecting_after_a_run_that_never_cleaned_up_does_not_stack(unet, tmp_path):
    model = _motion(tmp_path)
    x, t, c = unet_inputs(unet, FRAMES)
    snapshot = _snapshot(unet)
    with inject(unet, model, FRAMES):
        expected = unet(x, t, c)
    # A crashed process state: modules were inserted, the context never exited.
    leftover = inject(unet, model, FRAMES)
    leftover.__enter__()
    delattr(unet, ACTIVE_ATTRIBUTE)
    with inject(unet, model, FRAMES):
        assert sum(isinstance(m, InjectedMotionModule) for m in unet.modules()) == 21
        assert torch.equal(unet(x, t, c), expected)
    # the fresh injection removed the stale modules before it saved the tree it restores
    assert not any(isinstance(m, InjectedMotionModule) for m in unet.modules())
    _assert_same(unet, snapshot)
    leftover.__exit__(None, None, None)  # the abandoned context must not resurrect anything
    _assert_same(unet, snapshot)


@torch.no_grad()
def test_remove_stale_modules(unet, tmp_path):
    snapshot = _snapshot(unet)
    leftover = inject(unet, _motion(tmp_path), FRAMES)
    leftover.__enter__()
    assert remove_stale_modules(unet) == 0  # an active injection is never stripped
    delattr(unet, ACTIVE_ATTRIBUTE)
    assert remove_stale_modules(unet) == 21
    _assert_same(unet, snapshot)
    leftover.__exit__(None, None, None)
    _assert_same(unet, snapshot)


@torch.no_grad()
def test_each_run_of_frames_is_one_clip(unet, tmp_path):
    model = _motion(tmp_path)
    x, t, c = unet_inputs(unet, 2 * FRAMES)
    with inject(unet, model, FRAMES):
        together = unet(x, t, c)
        first = unet(x[:FRAMES], t[:FRAMES], c[:FRAMES])
        second = unet(x[FRAMES:], t[FRAMES:], c[FRAMES:])
        # changing one frame of the second clip changes the whole second clip, not the first
        x2 = x.clone()
        x2[FRAMES + 2] += 1.0
        changed = unet(x2, t, c)
    torch.testing.assert_close(together, torch.cat([first, second]), rtol=1e-5, atol=1e-5)
    assert torch.equal(changed[:FRAMES], together[:FRAMES]) or torch.allclose(changed[:FRAMES], together[:FRAMES], atol=1e-6)
    assert (changed[FRAMES] - together[FRAMES]).abs().max() > 1e-3  # frame 0 sees frame 2 through time


@torch.no_grad()
def test_frames_can_change_between_calls(unet, tmp_path):
    """Context windows change the clip length per call through the shared layout."""
    model = _motion(tmp_path)
    layout = FrameLayout(FRAMES)
    x, t, c = unet_inputs(unet, 6)
    with inject(unet, model, FRAMES, layout=layout) as injection:
        injection.frames = 3
        two_clips = unet(x, t, c)
        injection.frames = 6
        one_clip = unet(x, t, c)
        assert layout.frames == 6
        with pytest.raises(InvalidInputError, match="exceed the maximum of 32"):
            injection.frames = 33
    assert not torch.allclose(two_clips, one_clip)


@torch.no_grad()
def test_chunked_temporal_attention_equals_unchunked(unet, tmp_path, monkeypatch):
    model = _motion(tmp_path)
    x, t, c = unet_inputs(unet, 2 * FRAMES)
    with inject(unet, model, FRAMES):
        whole = unet(x, t, c)
        monkeypatch.setattr(motion_model_module, "MAX_ATTENTION_ROWS", 7)  # 512 rows -> 74 chunks
        chunked = unet(x, t, c)
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-6)


def test_frames_over_the_window_and_wrong_width_are_refused_before_touching_the_unet(unet, tmp_path):
    snapshot = _snapshot(unet)
    model = _motion(tmp_path, "v1")
    with pytest.raises(InvalidInputError, match="25 frames in one motion window exceed the maximum of 24"):
        with inject(unet, model, 25):
            pass
    wide = load(mf.save(mf.original_state("v2", model_channels=64), str(tmp_path / "wide.safetensors")))
    with pytest.raises(IncompatibleModelError, match="64 channels"):
        with inject(unet, wide, FRAMES):
            pass
    _assert_same(unet, snapshot)


@torch.no_grad()
def test_half_precision_module_in_float_unet_and_back(unet, tmp_path):
    """The module casts to its weights' dtype and returns the UNet's dtype (norms in float32): a bfloat16
    module gives the float32 module's result to bfloat16 precision, and the UNet is float32 again after."""
    import copy

    full = _motion(tmp_path)
    half = copy.deepcopy(full).to(torch.bfloat16)
    x, t, c = unet_inputs(unet, FRAMES)
    snapshot = _snapshot(unet)
    plain = unet(x, t, c)
    with inject(unet, full, FRAMES):
        reference = unet(x, t, c)
    with inject(unet, half, FRAMES):
        out = unet(x, t, c)
    assert out.dtype == torch.float32
    change = (reference - plain).norm() / plain.norm()
    assert change > 1e-2  # the module does act, so the comparison below means something
    assert (out - reference).norm() / (reference - plain).norm() < 0.05  # bfloat16 rounding of the module's share
    _assert_same(unet, snapshot)
    assert torch.equal(unet(x, t, c), plain)
    assert next(half.parameters()).dtype == torch.bfloat16  # the module keeps its own dtype
