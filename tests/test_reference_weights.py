"""The Animate Anyone weights folder: locating, validating, loading, caching."""

import collections
import os
import shutil

import pytest
import torch

pytest.importorskip("diffusers", reason="the Animate Anyone release fixtures are written from diffusers' models "
                    "(test-only; it needs newer packages than the webui's, so the webui-pins leg skips this)")

from lib_animate.errors import WeightsFileError
from lib_animate.reference import unet_cache, weights
from lib_animate.reference.pose_guider import PoseGuider
from lib_animate.reference.unet import AnimateAnyoneUNet
from tests.support.reference_files import (
    OUTPUT_LAYERS,
    diffusers_unet,
    pose_guider_weights,
    relative_error,
    write_image_encoder,
    write_release,
)

RELEASE_FILES = ["denoising_unet.pth", "reference_unet.pth", "pose_guider.pth", "motion_module.pth"]


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("release"))
    models = write_release(folder, seed=20)
    return folder, models


@pytest.fixture
def release_copy(release, tmp_path):
    folder = str(tmp_path / "AnimateAnyone")
    shutil.copytree(release[0], folder)
    return folder


def test_load_weights_builds_every_model(release):
    folder, models = release
    loaded = weights.load_weights(folder)
    assert isinstance(loaded.denoising_unet, AnimateAnyoneUNet)
    assert isinstance(loaded.reference_unet, AnimateAnyoneUNet)
    assert isinstance(loaded.reference_unet.out, torch.nn.Identity)
    assert len(loaded.denoising_unet.state_dict()) == 686 and len(loaded.reference_unet.state_dict()) == 682
    assert isinstance(loaded.pose_guider, PoseGuider) and len(loaded.pose_guider.state_dict()) == 16
    assert loaded.motion_module == os.path.join(folder, "motion_module.pth")
    assert loaded.layout.model_channels == 32 and loaded.layout.context_dim == 64
    assert loaded.image_encoder.config.projection_dim == 64
    for module in (loaded.denoising_unet, loaded.reference_unet, loaded.pose_guider, loaded.image_encoder):
        assert not module.training
        assert all(p.device.type == "cpu" and p.dtype == torch.float32 and not p.requires_grad for p in module.parameters())
    # the weights are the file's: the denoising UNet reproduces diffusers on them
    x = torch.randn(1, 4, 8, 8)
    t = torch.tensor([500])
    c = torch.randn(1, 1, 64)
    with torch.no_grad():
        error = relative_error(loaded.denoising_unet(x, t, context=c), models["denoising"](x, t, encoder_hidden_states=c).sample)
    assert error <= 1e-5


def test_dtype_argument(release):
    unet = weights.load_unet(os.path.join(release[0], "reference_unet.pth"), with_output=False, dtype=torch.float16)
    assert {p.dtype for p in unet.parameters()} == {torch.float16}
    assert unet.dtype == torch.float16
    guider = weights.load_pose_guider(os.path.join(release[0], "pose_guider.pth"), dtype=torch.bfloat16)
    assert {p.dtype for p in guider.parameters()} == {torch.bfloat16}


def test_missing_files_are_listed_in_one_error(release_copy):
    os.remove(os.path.join(release_copy, "reference_unet.pth"))
    os.remove(os.path.join(release_copy, "motion_module.pth"))
    os.remove(os.path.join(release_copy, "image_encoder", "model.safetensors"))
    with pytest.raises(WeightsFileError) as info:
        weights.locate_weights(release_copy)
    message = str(info.value)
    assert "Missing: reference_unet.pth, motion_module.pth, image_encoder/model.safetensors or pytorch_model.bin." in message
    assert os.path.abspath(release_copy) in message
    for name in RELEASE_FILES + ["image_encoder/", "config.json"]:
        assert name in message


def test_empty_folder(tmp_path):
    with pytest.raises(WeightsFileError) as info:
        weights.load_weights(str(tmp_path))
    assert ("Missing: denoising_unet.pth, reference_unet.pth, pose_guider.pth, motion_module.pth, "
            "image_encoder/config.json, image_encoder/model.safetensors or pytorch_model.bin.") in str(info.value)


def test_misshaped_unet_tensor_is_named(release_copy, release):
    state = collections.OrderedDict(release[1]["denoising"].state_dict())
    state["down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_v.weight"] = torch.zeros(64, 32)
    torch.save(state, os.path.join(release_copy, "denoising_unet.pth"))
    with pytest.raises(WeightsFileError, match=r"to_v.weight \(64, 32\) \(expected \(64, 64\)\)"):
        weights.load_weights(release_copy)


def test_sdxl_sized_unet_is_refused(release_copy):
    from diffusers import UNet2DConditionModel

    sdxl = UNet2DConditionModel(
        block_out_channels=(32, 64, 128),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 2), attention_head_dim=(2, 4, 8), use_linear_projection=True,
        cross_attention_dim=2048, addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=2048 + 6 * 8, norm_num_groups=32,
    )
    torch.save(collections.OrderedDict(sdxl.state_dict()), os.path.join(release_copy, "denoising_unet.pth"))
    with pytest.raises(WeightsFileError, match="denoising_unet.pth' is not an SD1.5 UNet.*SDXL"):
        weights.load_weights(release_copy)


def test_reference_and_denoising_of_different_widths(release_copy):
    other = diffusers_unet(seed=5, block_out_channels=(64, 128, 256, 256))
    state = collections.OrderedDict((k, v) for k, v in other.state_dict().items() if k not in OUTPUT_LAYERS)
    torch.save(state, os.path.join(release_copy, "reference_unet.pth"))
    with pytest.raises(WeightsFileError, match="UNets of different shapes"):
        weights.load_weights(release_copy)


def test_wrong_pose_guider_is_refused(release_copy):
    path = os.path.join(release_copy, "pose_guider.pth")
    torch.save(pose_guider_weights(1, out_channels=320), path)  # full-width guider next to tiny UNets
    with pytest.raises(WeightsFileError, match="gives 320 channels but the UNet's first conv has 32"):
        weights.load_weights(release_copy)
    broken = pose_guider_weights(1)
    broken["blocks.3.weight"] = torch.zeros(96, 16, 3, 3)
    torch.save(broken, path)
    with pytest.raises(WeightsFileError, match=r"blocks.3.weight \(96, 16, 3, 3\) \(expected \(96, 32, 3, 3\)\)"):
        weights.load_weights(release_copy)
    torch.save({"conv_in.weight": torch.zeros(16, 3, 3, 3)}, path)
    with pytest.raises(WeightsFileError, match="is not a pose guider"):
        weights.load_weights(release_copy)


def test_image_encoder_of_another_width_is_refused(release_copy):
    shutil.rmtree(os.path.join(release_copy, "image_encoder"))
    write_image_encoder(os.path.join(release_copy, "image_encoder"), projection_dim=48)
    with pytest.raises(WeightsFileError, match="gives 48-dimensional embeddings but the UNets' cross-attention expects 64"):
        weights.load_weights(release_copy)


_payload_ran = []


def _payload():
    _payload_ran.append(True)
    return collections.OrderedDict()


class _CodeExecutingPickle:
    def __reduce__(self):
        return (_payload, ())


def test_unsafe_pickle_is_refused_without_running_it(release_copy):
    torch.save({"conv_in.weight": torch.zeros(1), "extra": _CodeExecutingPickle()}, os.path.join(release_copy, "denoising_unet.pth"))
    with pytest.raises(WeightsFileError, match="Refusing to load"):
        weights.load_weights(release_copy)
    assert not _payload_ran


def test_corrupted_file(release_copy):
    path = os.path.join(release_copy, "reference_unet.pth")
    with open(path, "r+b") as f:
        f.truncate(1000)
    with pytest.raises(WeightsFileError, match="reference_unet.pth"):
        weights.load_weights(release_copy)


class _CountingLoader:
    def __init__(self, monkeypatch):
        self.paths = []
        original = weights.load_state_dict

        def counting(path, what="weights"):
            self.paths.append(os.path.basename(path))
            return original(path, what)

        monkeypatch.setattr(weights, "load_state_dict", counting)


def test_converted_weights_cache(release_copy, tmp_path, monkeypatch):
    cache_dir = str(tmp_path / "cache")
    source = os.path.join(release_copy, "denoising_unet.pth")
    loads = _CountingLoader(monkeypatch)
    first = weights.load_unet(source, with_output=True, cache_dir=cache_dir)
    cached = unet_cache.cache_path(source, cache_dir)
    assert os.path.isfile(cached) and loads.paths == ["denoising_unet.pth"]

    second = weights.load_unet(source, with_output=True, cache_dir=cache_dir)
    assert loads.paths == ["denoising_unet.pth"]  # the source was not read again
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert first.state_dict().keys() == second.state_dict().keys()
    # and laid out alike: every tensor in a 64-byte-aligned storage of its own (safetensors' views sit at
    # 8-byte-aligned addresses, where CPU kernels round the last bit differently: other videos)
    for unet in (first, second):
        for name, tensor in unet.state_dict().items():
            assert tensor.data_ptr() % 64 == 0 and tensor.storage_offset() == 0, name
            assert tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size(), name

    # stale: the source changed (new mtime) -> rebuilt from the source
    stat = os.stat(source)
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    weights.load_unet(source, with_output=True, cache_dir=cache_dir)
    assert loads.paths == ["denoising_unet.pth"] * 2
    weights.load_unet(source, with_output=True, cache_dir=cache_dir)
    assert len(loads.paths) == 2  # and the rewritten cache is current again

    # corrupt cache -> rebuilt
    with open(cached, "r+b") as f:
        f.truncate(os.path.getsize(cached) // 2)
    third = weights.load_unet(source, with_output=True, cache_dir=cache_dir)
    assert len(loads.paths) == 3
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), third.state_dict().values()))
    weights.load_unet(source, with_output=True, cache_dir=cache_dir)
    assert len(loads.paths) == 3


def test_cache_that_does_not_fit_is_rebuilt(release_copy, tmp_path, monkeypatch):
    cache_dir = str(tmp_path / "cache")
    source = os.path.join(release_copy, "reference_unet.pth")
    weights.load_unet(source, with_output=False, cache_dir=cache_dir)
    # a cache whose tensors do not fit its recorded layout (e.g. written by a buggy version)
    import safetensors.torch
    from safetensors import safe_open

    path = unet_cache.cache_path(source, cache_dir)
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata()
    tensors = safetensors.torch.load_file(path)
    tensors.pop("middle_block.1.proj_in.weight")
    safetensors.torch.save_file(tensors, path, metadata=metadata)
    loads = _CountingLoader(monkeypatch)
    unet = weights.load_unet(source, with_output=False, cache_dir=cache_dir)
    assert loads.paths == ["reference_unet.pth"]
    assert "middle_block.1.proj_in.weight" in unet.state_dict()


def test_cache_in_the_weights_folder_and_unwritable_cache(release_copy, tmp_path):
    source = os.path.join(release_copy, "reference_unet.pth")
    weights.load_unet(source, with_output=False, cache_dir=release_copy)
    assert os.path.isfile(unet_cache.cache_path(source, release_copy))
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="could not write the converted-weights cache"):
        unet = weights.load_unet(source, with_output=False, cache_dir=str(blocked))
    assert isinstance(unet, AnimateAnyoneUNet)
