"""Motion LoRA: published key formats, several at once with strengths, exact merge and unmerge."""

import re

import pytest
import torch

from lib_animate.errors import IncompatibleModelError, WeightsFileError
from lib_animate.motion import apply_motion_loras, load, load_motion_lora
from tests.support import motion_files as mf


def _model(tmp_path, version="v2", dtype=torch.float32, channels=32):
    return load(mf.save(mf.original_state(version, dtype=dtype, model_channels=channels), str(tmp_path / f"{version}-{channels}.safetensors")))


def _lora(tmp_path, name, **kwargs):
    return load_motion_lora(mf.save(mf.motion_lora_state(**kwargs), str(tmp_path / name)))


def _clone_state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _target(key):
    """Original LoRA key -> the weight it modifies (written out independently of the loader)."""
    key = key.replace(".processor.", ".").replace("_lora.down.weight", "").replace("_lora.up.weight", "")
    key = re.sub(r"\.to_out$", ".to_out.0", key)
    return key + ".weight"


def test_merge_is_w_plus_strength_up_down_and_restore_is_exact(tmp_path):
    model = _model(tmp_path)
    before = _clone_state(model)
    raw = mf.motion_lora_state(seed=1)
    lora = load_motion_lora(mf.save(raw, str(tmp_path / "v2_lora_ZoomIn.ckpt")))
    assert len(lora.pairs) == 21 * 2 * 4
    with apply_motion_loras(model, [(lora, 0.75)]):
        merged = model.state_dict()
        for key in raw:
            if key.endswith("down.weight"):
                up = raw[key.replace("down.weight", "up.weight")]
                target = _target(key)
                expected = before[target] + 0.75 * (up @ raw[key])
                torch.testing.assert_close(merged[target], expected, rtol=1e-6, atol=1e-6)
        untouched = "down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight"
        assert torch.equal(merged[untouched], before[untouched])
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_several_loras_add_up(tmp_path):
    model = _model(tmp_path)
    before = _clone_state(model)
    a = _lora(tmp_path, "a.safetensors", seed=1)
    b = _lora(tmp_path, "b.safetensors", seed=2, rank=8)
    key = "up_blocks.2.motion_modules.1.temporal_transformer.transformer_blocks.0.attention_blocks.1.to_v.weight"
    da, ua = a.pairs[key]
    db, ub = b.pairs[key]
    with apply_motion_loras(model, [(a, 1.0), (b, -0.5)]):
        expected = before[key] + (1.0 * (ua @ da) - 0.5 * (ub @ db))
        torch.testing.assert_close(model.state_dict()[key], expected, rtol=1e-6, atol=1e-6)
    assert torch.equal(model.state_dict()[key], before[key])


def test_half_precision_restore_is_bit_exact_after_an_exception(tmp_path):
    model = _model(tmp_path, dtype=torch.float16)
    before = _clone_state(model)
    lora = _lora(tmp_path, "l.ckpt", dtype=torch.float16)
    with pytest.raises(KeyboardInterrupt):
        with apply_motion_loras(model, [(lora, 1.0)]):
            raise KeyboardInterrupt
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) and after[k].dtype == torch.float16 for k in before)


def test_diffusers_converted_naming_reads_the_same_pairs(tmp_path):
    raw = mf.motion_lora_state(seed=4)
    converted = {}
    for key, tensor in raw.items():
        key = key.replace(".temporal_transformer.", ".").replace(".attention_blocks.0.", ".attn1.").replace(".attention_blocks.1.", ".attn2.")
        key = re.sub(r"\.processor\.(to_q|to_k|to_v)_lora\.(down|up)\.weight$", r".\1.lora.\2.weight", key)
        key = re.sub(r"\.processor\.to_out_lora\.(down|up)\.weight$", r".to_out.0.lora.\1.weight", key)
        converted["unet." + key] = tensor
    original = load_motion_lora(mf.save(raw, str(tmp_path / "orig.safetensors")))
    diffusers_style = load_motion_lora(mf.save(converted, str(tmp_path / "diffusers.safetensors")))
    assert original.pairs.keys() == diffusers_style.pairs.keys()
    for k in original.pairs:
        assert all(torch.equal(x, y) for x, y in zip(original.pairs[k], diffusers_style.pairs[k]))


def test_mid_block_pairs_are_ignored_by_modules_without_a_mid_block(tmp_path):
    model = _model(tmp_path, "v3")
    before = _clone_state(model)
    lora = _lora(tmp_path, "v2lora.safetensors", version="v2")
    assert any(k.startswith("mid_block.") for k in lora.pairs)
    with apply_motion_loras(model, [(lora, 1.0)]):
        changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) == 20 * 2 * 4


def test_incompatible_lora_is_refused_before_any_weight_changes(tmp_path):
    model = _model(tmp_path)
    before = _clone_state(model)
    good = _lora(tmp_path, "good.safetensors")
    wide = _lora(tmp_path, "wide.safetensors", model_channels=64)
    with pytest.raises(IncompatibleModelError, match="wide.safetensors"):
        with apply_motion_loras(model, [(good, 1.0), (wide, 1.0)]):
            pass
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_files_that_are_not_motion_loras(tmp_path):
    with pytest.raises(WeightsFileError, match="not a motion LoRA"):
        load_motion_lora(mf.save({"lora_unet_x.lora_down.weight": torch.zeros(4, 8)}, str(tmp_path / "image_lora.safetensors")))
    with pytest.raises(WeightsFileError, match="not a motion-module LoRA key"):
        load_motion_lora(mf.save(mf.original_state("v3"), str(tmp_path / "a_motion_module.safetensors")))
    raw = mf.motion_lora_state()
    del raw[next(k for k in raw if k.endswith("up.weight"))]
    with pytest.raises(WeightsFileError, match="only the down half"):
        load_motion_lora(mf.save(raw, str(tmp_path / "half.safetensors")))
