"""Motion-module files: every published format loads; everything else is refused clearly."""

import os

import pytest
import torch

from lib_animate.errors import UnsupportedModelError, WeightsFileError
from lib_animate.motion import MotionModel, full_width_spec, load, noise_schedule
from tests.support import motion_files as mf


def _params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "version, params, tensors_with_pe",
    [("v1", 417_137_600, 560), ("v2", 453_209_280, 588), ("v3", 417_137_600, 560), ("animatelcm", 453_209_280, 546)],
)
def test_full_width_shapes_match_published_counts(version, params, tensors_with_pe):
    with torch.device("meta"):
        model = MotionModel(full_width_spec(version))
    assert _params(model) == params
    modules = len(model.modules_at("down")) + len(model.modules_at("mid")) + len(model.modules_at("up"))
    pe_tensors = 0 if version == "animatelcm" else 2 * modules
    assert len(model.state_dict()) + pe_tensors == tensors_with_pe


@pytest.mark.parametrize(
    "version, max_frames, mid, cross_frame",
    [("v1", 24, False, True), ("v2", 32, True, False), ("v3", 32, False, False), ("animatelcm", 64, True, False)],
)
def test_original_files_load_with_detected_version(tmp_path, version, max_frames, mid, cross_frame):
    state = mf.original_state(version, with_pe=version != "animatelcm")
    model = load(mf.save(state, str(tmp_path / f"{version}.ckpt")))
    assert model.version == version
    assert model.max_frames == max_frames
    assert model.sdxl is False
    assert (model.mid_block is not None) == mid
    assert model.family.cross_frame_unet_norm == cross_frame
    assert model.name == f"{version}.ckpt"
    # every tensor of the file (pe excluded: it is recomputed) ends up in the model unchanged
    loaded = model.state_dict()
    for key, tensor in state.items():
        if key.endswith(".pe"):
            continue
        assert torch.equal(loaded[key], tensor), key
    assert next(model.parameters()).device.type == "cpu"


@pytest.mark.parametrize("suffix, wrap, dtype", [
    (".safetensors", False, torch.float16),
    (".ckpt", True, torch.float16),
    (".pth", False, torch.float32),
    (".pt", True, torch.float32),
])
def test_containers_wrappers_and_dtypes(tmp_path, suffix, wrap, dtype):
    state = mf.original_state("v2", dtype=dtype)
    model = load(mf.save(state, str(tmp_path / f"mm{suffix}"), wrap=wrap and suffix != ".safetensors"))
    assert model.version == "v2"
    assert {p.dtype for p in model.parameters()} == {dtype}


def test_diffusers_naming_equals_original_naming(tmp_path):
    state = mf.original_state("v2", seed=3)
    original = load(mf.save(state, str(tmp_path / "orig.safetensors")))
    renamed = load(mf.save(mf.to_diffusers_naming(state), str(tmp_path / "animatediff_lightning_4step_diffusers.safetensors")))
    assert renamed.version == "v2" and renamed.max_frames == 32
    a, b = original.state_dict(), renamed.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_diffusers_naming_without_pe_keeps_family_window(tmp_path):
    state = {k: v for k, v in mf.to_diffusers_naming(mf.original_state("v2")).items() if not k.endswith(".pe")}
    model = load(mf.save(state, str(tmp_path / "adapter.safetensors")))
    assert (model.version, model.max_frames) == ("v2", 32)


def test_prefixed_keys_are_accepted(tmp_path):
    state = {"unet." + k: v for k, v in mf.original_state("v3").items()}
    assert load(mf.save(state, str(tmp_path / "prefixed.safetensors"))).version == "v3"


def test_schedule_is_linear_sd15_for_sd15_modules(tmp_path):
    model = load(mf.save(mf.original_state("v3"), str(tmp_path / "v3.safetensors")))
    ac = noise_schedule(model).alphas_cumprod()
    betas = torch.linspace(0.00085, 0.012, 1000, dtype=torch.float64)
    assert torch.allclose(ac, torch.cumprod(1 - betas, 0), rtol=0, atol=0)
    assert ac.dtype == torch.float64


@pytest.mark.parametrize("version, words", [("sdxl_beta", "SDXL beta"), ("hotshot_native", "HotShot-XL"), ("hotshot_converted", "HotShot-XL")])
def test_sdxl_modules_load_in_either_naming(tmp_path, version, words):
    if version == "sdxl_beta":
        state = mf.sdxl_state("sdxl_beta")
    elif version == "hotshot_native":
        state = mf.to_hotshot_naming(mf.sdxl_state("hotshot"))
    else:
        state = mf.sdxl_state("hotshot")
    model = load(mf.save(state, str(tmp_path / f"{version}.safetensors")))
    assert model.sdxl and words in model.family.description
    assert model.max_frames == (32 if version == "sdxl_beta" else 24)
    assert model.mid_block is None and [len(b.motion_modules) for b in model.down_blocks] == [2, 2, 2]
    assert [len(b.motion_modules) for b in model.up_blocks] == [3, 3, 3]
    # the module's own norm spans the frames for AD-SDXL only; HotShot's spans the UNet's ResBlocks instead
    norm_across = {m.temporal_transformer.norm_across_frames for m in model.modules() if hasattr(m, "temporal_transformer")}
    assert norm_across == {version == "sdxl_beta"}
    assert model.family.cross_frame_unet_norm == (version != "sdxl_beta")


def _sd_checkpoint_state():
    return {
        "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(32, 4, 3, 3),
        "model.diffusion_model.out.2.weight": torch.zeros(4, 32, 3, 3),
        "first_stage_model.encoder.conv_in.weight": torch.zeros(8, 3, 3, 3),
    }


def _image_lora_state():
    return {
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 32),
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(32, 4),
    }


def _v3_adapter_state():
    return {
        "up_blocks.3.attentions.1.transformer_blocks.0.attn1.processor.to_v_lora.up.weight": torch.zeros(32, 4),
        "up_blocks.3.attentions.1.transformer_blocks.0.attn1.processor.to_v_lora.down.weight": torch.zeros(4, 32),
    }


@pytest.mark.parametrize("make, words", [
    (_sd_checkpoint_state, "Stable Diffusion checkpoint"),
    (_image_lora_state, "a LoRA, not a motion module"),
    (_v3_adapter_state, "domain adapter"),
    (lambda: mf.motion_lora_state("v2"), "is a motion LoRA"),
    (lambda: {"controlnet_cond_embedding.conv_in.weight": torch.zeros(16, 4, 3, 3), **mf.original_state("v3")}, "SparseCtrl"),
    (lambda: {"conv_in.weight": torch.zeros(32, 9, 3, 3), **mf.original_state("v3")}, "PIA"),
])
def test_other_files_get_a_clear_error(tmp_path, make, words):
    path = mf.save(make(), str(tmp_path / "not_a_motion_module.safetensors"))
    with pytest.raises(WeightsFileError, match=words) as info:
        load(path)
    assert "not_a_motion_module.safetensors" in str(info.value)


def test_incomplete_module_lists_what_is_missing(tmp_path):
    state = mf.original_state("v2")
    del state["up_blocks.1.motion_modules.2.temporal_transformer.proj_out.bias"]
    with pytest.raises(WeightsFileError, match=r"1 missing keys: up_blocks\.1\.motion_modules\.2\.temporal_transformer\.proj_out\.bias"):
        load(mf.save(state, str(tmp_path / "cut.safetensors")))


def test_wrong_shape_is_reported(tmp_path):
    state = mf.original_state("v2")
    key = "down_blocks.1.motion_modules.0.temporal_transformer.transformer_blocks.0.ff.net.2.weight"
    state[key] = torch.zeros(64, 128)
    with pytest.raises(WeightsFileError, match="tensors with the wrong shape"):
        load(mf.save(state, str(tmp_path / "bad.safetensors")))


def test_garbage_truncated_and_missing_files(tmp_path):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(WeightsFileError, match="garbage.ckpt.*not a readable PyTorch motion module"):
        load(str(garbage))
    good = mf.save(mf.original_state("v3"), str(tmp_path / "good.safetensors"))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(open(good, "rb").read()[:-100])
    with pytest.raises(WeightsFileError, match="truncated.safetensors.*truncated or corrupted"):
        load(str(truncated))
    with pytest.raises(WeightsFileError, match=r"motion module file not found: 'nope.ckpt' was expected in the folder"):
        load(str(tmp_path / "nope.ckpt"))


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > " + _RunsCode.marker,))


def test_code_executing_pickle_is_refused_and_never_run(tmp_path):
    _RunsCode.marker = str(tmp_path / "executed")
    state = mf.original_state("v3")
    state["payload"] = _RunsCode()
    path = str(tmp_path / "evil.ckpt")
    torch.save(state, path)
    with pytest.raises(WeightsFileError, match="Refusing to load.*only weights-only loading is allowed") as info:
        load(path)
    assert "posix.system" in str(info.value) or "system" in str(info.value)
    assert not os.path.exists(_RunsCode.marker)
