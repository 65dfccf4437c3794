"""The CLIP image encoder: the reference image's embedding replaces the text prompt.

The release's ``image_encoder/`` is a transformers ``CLIPVisionModelWithProjection`` folder
(config.json + model.safetensors or pytorch_model.bin). It is always built from config.json and
filled from weights read by :mod:`lib_animate.safe_load` (a .bin is never unpickled with code
execution, whatever the transformers version would do), offline.

Preprocessing follows the reference pipeline: PIL resize to 224x224 ignoring the aspect ratio
(bicubic), /255, OpenAI CLIP mean/std. The context is ``image_embeds`` -- the projected,
post-layernormed class token, not L2-normalised -- as ``(1, 1, D)``; the unconditional context
is zeros of the same shape.
"""

import os
from typing import Optional

import numpy as np
import torch

from ..errors import WeightsFileError
from ..key_check import compare_keys
from ..safe_load import load_state_dict

CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

CLIP_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# transformers versions disagree on whether this buffer is saved; it is arange(positions) anyway
_IGNORED_KEYS = ("vision_model.embeddings.position_ids",)


def image_encoder_weights_file(folder: str) -> Optional[str]:
    """The weights file the encoder folder holds (safetensors preferred), or None."""
    for name in WEIGHT_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return None


def load_image_encoder(folder: str, dtype: Optional[torch.dtype] = None):
    """``CLIPVisionModelWithProjection`` from ``folder`` on the CPU, eval mode, no gradients."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config_path = os.path.join(folder, CONFIG_FILE)
    weights_path = image_encoder_weights_file(folder)
    if not os.path.isfile(config_path) or weights_path is None:
        raise WeightsFileError(
            f"The image encoder folder '{folder}' must hold {CONFIG_FILE} and one of "
            f"{' or '.join(WEIGHT_FILES)}."
        )
    try:
        config = CLIPVisionConfig.from_pretrained(folder, local_files_only=True)
    except Exception as e:
        raise WeightsFileError(f"'{config_path}' is not a readable CLIP vision config: {e}") from e
    weights = load_state_dict(weights_path, "image encoder")
    weights = {k: v for k, v in weights.items() if k not in _IGNORED_KEYS}
    with _skipping_weight_init():
        model = CLIPVisionModelWithProjection(config)
    expected = {k: v.shape for k, v in model.state_dict().items() if k not in _IGNORED_KEYS}
    compare_keys(weights, expected).raise_if_bad(
        f"'{weights_path}' does not match the CLIPVisionModelWithProjection of '{config_path}'")
    model.load_state_dict(weights, strict=False)
    if dtype is not None:
        model.to(dtype)
    return model.eval().requires_grad_(False)


def _skipping_weight_init():
    """transformers' context that skips random initialisation (every weight is loaded anyway)."""
    try:
        from transformers.initialization import no_init_weights  # transformers 5
    except ImportError:
        try:
            from transformers.modeling_utils import no_init_weights  # transformers 4.x
        except ImportError:
            import contextlib

            return contextlib.nullcontext()
    return no_init_weights()


def preprocess_reference(image) -> torch.Tensor:
    """A PIL image -> ``(1, 3, 224, 224)`` float32 pixel values, as the reference pipeline feeds CLIP."""
    from PIL import Image

    bicubic = getattr(Image, "Resampling", Image).BICUBIC
    resized = image.convert("RGB").resize((CLIP_SIZE, CLIP_SIZE), resample=bicubic)
    pixels = (np.asarray(resized).astype(np.float64) * (1 / 255)).astype(np.float32)
    mean = np.asarray(CLIP_MEAN, dtype=np.float32)
    std = np.asarray(CLIP_STD, dtype=np.float32)
    pixels = (pixels - mean) / std
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None]


@torch.no_grad()
def encode_reference(encoder, image, device=None) -> torch.Tensor:
    """The cross-attention context of the conditional rows: ``(1, 1, D)`` image embedding.

    ``device``: where the encoder runs (default: where its weights are; a low-VRAM hook may move
    them there when it is called)."""
    param = next(encoder.parameters())
    pixels = preprocess_reference(image).to(device=device or param.device, dtype=param.dtype)
    return encoder(pixel_values=pixels).image_embeds.unsqueeze(1)
