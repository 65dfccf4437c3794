"""Regional compilation of the motion modules: compiled equals eager, failures fall back, exact restore.

The inductor test compiles the tiny model for real (about 30-60 s on two CPU cores, three graphs);
the others use small stand-in backends.
"""

import warnings

import pytest
import torch

from lib_animate.motion import MotionModel, full_width_spec, inject
from lib_animate.motion.compile import compile_blocker, compiled_motion_modules, temporal_transformers
from lib_animate.motion.lora import MotionLoRA, apply_motion_loras
from tests.support.ldm_unet import ldm_unet, unet_inputs

FRAMES = 4

pytestmark = pytest.mark.skipif(compile_blocker() is not None, reason=str(compile_blocker()))


@pytest.fixture(scope="module")
def unet():
    return ldm_unet()


@pytest.fixture(scope="module")
def motion():
    torch.manual_seed(4)
    model = MotionModel(full_width_spec("v2", 32)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.05)
    return model


def rel_l2(a, b):
    return ((a - b).norm() / b.norm()).item()


def _forwards(motion):
    return [vars(m).get("forward") for m in temporal_transformers(motion)]


@torch.no_grad()
def test_compiled_motion_modules_match_eager_and_see_in_place_weight_changes(unet, motion):
    x, t, c = unet_inputs(unet, 2 * FRAMES)
    lora = MotionLoRA("test", {"up_blocks.1.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.to_q.weight":
                               (torch.randn(2, 128), torch.randn(128, 2))})
    with inject(unet, motion, FRAMES):
        eager = unet(x, t, c)
        with apply_motion_loras(motion, [(lora, 0.5)]):
            eager_lora = unet(x, t, c)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # a fallback would warn
            with compiled_motion_modules(motion) as status:
                compiled = unet(x, t, c)
                with apply_motion_loras(motion, [(lora, 0.5)]):  # weight.copy_ inside the block
                    compiled_lora = unet(x, t, c)
                compiled_again = unet(x, t, c)
    assert status.modules == 21 and status.active
    assert rel_l2(compiled, eager) <= 1e-5
    assert rel_l2(compiled_lora, eager_lora) <= 1e-5 and rel_l2(eager_lora, eager) > 1e-4
    assert rel_l2(compiled_again, eager) <= 1e-5
    assert _forwards(motion) == [None] * 21


def _failing_backend(graph_module, example_inputs):
    raise RuntimeError("no compiler here")


@torch.no_grad()
def test_a_compile_failure_warns_once_and_runs_eagerly(unet, motion):
    # Dynamo keeps compiled code per code object for the process; torch 2.1 reuses what an earlier test
    # compiled with inductor instead of calling this backend, so start from a clean cache.
    torch._dynamo.reset()
    x, t, c = unet_inputs(unet, 2 * FRAMES)
    with inject(unet, motion, FRAMES):
        eager = unet(x, t, c)
        with pytest.warns(RuntimeWarning, match="compiling the motion modules failed") as caught:
            with compiled_motion_modules(motion, backend=_failing_backend) as status:
                first = unet(x, t, c)
                second = unet(x, t, c)
    assert len([w for w in caught if "compiling the motion modules" in str(w.message)]) == 1
    assert not status.active and "no compiler here" in status.fallback
    assert torch.equal(first, eager) and torch.equal(second, eager)
    assert _forwards(motion) == [None] * 21


@torch.no_grad()
def test_an_error_the_eager_code_shares_propagates_and_compilation_stays_on(motion):
    module = temporal_transformers(motion)[0]
    with compiled_motion_modules(motion, backend="eager") as status:
        with pytest.raises(RuntimeError, match="exceeds this motion module's maximum"):
            module(torch.randn(33, 32, 4, 4), 33)
        module(torch.randn(8, 32, 4, 4), 4)
    assert status.active
    assert _forwards(motion) == [None] * 21


def test_restore_after_an_exception_inside_the_block(motion):
    with pytest.raises(KeyError):
        with compiled_motion_modules(motion, backend="eager"):
            assert all(f is not None for f in _forwards(motion))
            raise KeyError("inside")
    assert _forwards(motion) == [None] * 21


def _out_of_memory_backend(graph_module, example_inputs):
    def run(*args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    return run


@torch.no_grad()
def test_running_out_of_memory_is_raised_not_retried_eagerly(unet, motion):
    torch._dynamo.reset()
    x, t, c = unet_inputs(unet, 2 * FRAMES)
    with inject(unet, motion, FRAMES):
        with pytest.raises(torch.cuda.OutOfMemoryError):
            with compiled_motion_modules(motion, backend=_out_of_memory_backend) as status:
                unet(x, t, c)
    assert status.fallback is None and _forwards(motion) == [None] * 21
