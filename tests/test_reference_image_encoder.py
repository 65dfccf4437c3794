"""The CLIP image encoder: safe, offline loading and the reference pipeline's preprocessing."""

import os
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from lib_animate.errors import WeightsFileError
from lib_animate.reference.image_encoder import (
    encode_reference,
    load_image_encoder,
    preprocess_reference,
)
from tests.support.reference_files import write_image_encoder


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def reference_image():
    pixels = np.random.default_rng(0).integers(0, 256, size=(91, 60, 4), dtype=np.uint8)
    return Image.fromarray(pixels, "RGBA")  # the shipped references are RGBA with odd sizes


def _processor():
    try:
        from transformers import CLIPImageProcessorPil as processor  # transformers 5 without torchvision
    except ImportError:
        from transformers import CLIPImageProcessor as processor
    return processor()


def test_preprocessing_is_squash_to_224_then_clip_normalisation(reference_image):
    pixels = preprocess_reference(reference_image)
    assert pixels.shape == (1, 3, 224, 224) and pixels.dtype == torch.float32
    squashed = reference_image.convert("RGB").resize((224, 224), Image.BICUBIC)  # Moore: ref.resize((224, 224))
    expected = _processor()(images=squashed, return_tensors="pt").pixel_values
    assert torch.equal(pixels, expected)


@pytest.mark.parametrize("weights_format", ["safetensors", "bin"])
def test_loads_offline_and_embeds_like_transformers(tmp_path, reference_image, weights_format, no_network):
    folder = str(tmp_path / "image_encoder")
    written = write_image_encoder(folder, seed=3, weights_format=weights_format)
    encoder = load_image_encoder(folder)
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    context = encode_reference(encoder, reference_image)
    assert context.shape == (1, 1, 64)
    with torch.no_grad():
        expected = written(pixel_values=preprocess_reference(reference_image)).image_embeds
    assert torch.allclose(context[:, 0], expected, rtol=0, atol=1e-6)


def test_dtype_argument(tmp_path, reference_image):
    folder = str(tmp_path / "image_encoder")
    write_image_encoder(folder)
    encoder = load_image_encoder(folder, dtype=torch.bfloat16)
    assert {p.dtype for p in encoder.parameters()} == {torch.bfloat16}
    assert encode_reference(encoder, reference_image).dtype == torch.bfloat16


class _Payload:
    ran = False

    def __reduce__(self):
        return (_mark_ran, ())


def _mark_ran():
    _Payload.ran = True
    return {}


def test_a_bin_that_needs_code_is_refused(tmp_path):
    folder = str(tmp_path / "image_encoder")
    write_image_encoder(folder, weights_format="bin")
    state = torch.load(os.path.join(folder, "pytorch_model.bin"), weights_only=True)
    state["extra"] = _Payload()
    torch.save(state, os.path.join(folder, "pytorch_model.bin"))
    with pytest.raises(WeightsFileError, match="Refusing to load"):
        load_image_encoder(folder)
    assert not _Payload.ran


def test_missing_and_mismatched_files(tmp_path):
    folder = str(tmp_path / "image_encoder")
    os.makedirs(folder)
    with pytest.raises(WeightsFileError, match="must hold config.json and one of model.safetensors or pytorch_model.bin"):
        load_image_encoder(folder)
    write_image_encoder(folder)
    import safetensors.torch

    path = os.path.join(folder, "model.safetensors")
    tensors = safetensors.torch.load_file(path)
    tensors["visual_projection.weight"] = torch.zeros(64, 16)
    del tensors["vision_model.post_layernorm.bias"]
    safetensors.torch.save_file(tensors, path)
    with pytest.raises(WeightsFileError) as info:
        load_image_encoder(folder)
    message = str(info.value)
    assert "missing keys: vision_model.post_layernorm.bias" in message
    assert "visual_projection.weight (64, 16) (expected (64, 32))" in message
