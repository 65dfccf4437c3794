"""The Animate Anyone weights folder: locate, validate and load the released files.

Expected in one folder (where that folder is, is the webui layer's decision)::

    denoising_unet.pth    diffusers-named SD1.5 UNet (with conv_out)
    reference_unet.pth    the same without conv_norm_out / conv_out (the reference UNet has no output)
    pose_guider.pth       16 tensors, see pose_guider.py
    motion_module.pth     AnimateDiff v2 format; only located here, the motion engine loads it
    image_encoder/        transformers CLIPVisionModelWithProjection: config.json and
                          model.safetensors or pytorch_model.bin

Everything is read with weights-only loading. The UNets are converted to ldm names (strict
accounting, convert.py) and built as :class:`AnimateAnyoneUNet` on the CPU in the file's dtype
(or ``dtype``); converted weights may be cached as safetensors (unet_cache.py).
"""

import os
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
import torch.nn as nn

from ..errors import WeightsFileError
from ..safe_load import load_state_dict
from . import unet_cache
from .convert import UNetLayout, convert_unet_weights, read_layout
from .image_encoder import CONFIG_FILE, WEIGHT_FILES, image_encoder_weights_file, load_image_encoder
from .pose_guider import PoseGuider
from .unet import AnimateAnyoneUNet, build_unet

DENOISING_UNET = "denoising_unet.pth"
REFERENCE_UNET = "reference_unet.pth"
POSE_GUIDER = "pose_guider.pth"
MOTION_MODULE = "motion_module.pth"
IMAGE_ENCODER = "image_encoder"


@dataclass(frozen=True)
class AnimateAnyoneFiles:
    folder: str
    denoising_unet: str
    reference_unet: str
    pose_guider: str
    motion_module: str
    image_encoder: str  # a folder


def locate_weights(folder: str) -> AnimateAnyoneFiles:
    """The paths of the release's files in ``folder``; one error naming every missing file."""
    folder = os.path.abspath(folder)
    files = AnimateAnyoneFiles(
        folder=folder,
        denoising_unet=os.path.join(folder, DENOISING_UNET),
        reference_unet=os.path.join(folder, REFERENCE_UNET),
        pose_guider=os.path.join(folder, POSE_GUIDER),
        motion_module=os.path.join(folder, MOTION_MODULE),
        image_encoder=os.path.join(folder, IMAGE_ENCODER),
    )
    missing: List[str] = [
        name for name in (DENOISING_UNET, REFERENCE_UNET, POSE_GUIDER, MOTION_MODULE)
        if not os.path.isfile(os.path.join(folder, name))
    ]
    if not os.path.isfile(os.path.join(files.image_encoder, CONFIG_FILE)):
        missing.append(f"{IMAGE_ENCODER}/{CONFIG_FILE}")
    if image_encoder_weights_file(files.image_encoder) is None:
        missing.append(f"{IMAGE_ENCODER}/{' or '.join(WEIGHT_FILES)}")
    if missing:
        raise WeightsFileError(
            f"The Animate Anyone weights in '{folder}' are incomplete. Missing: {', '.join(missing)}. "
            f"The folder must hold {DENOISING_UNET}, {REFERENCE_UNET}, {POSE_GUIDER}, {MOTION_MODULE} and "
            f"{IMAGE_ENCODER}/ (with {CONFIG_FILE} and {' or '.join(WEIGHT_FILES)}), as published in "
            f"the Moore-AnimateAnyone release."
        )
    return files


def load_unet(path: str, with_output: bool, dtype: Optional[torch.dtype] = None,
              cache_dir: Optional[str] = None) -> AnimateAnyoneUNet:
    """A released diffusers-named UNet file as an ldm :class:`AnimateAnyoneUNet` (CPU, eval).

    ``with_output=False`` for reference_unet.pth, which has no output layers. ``cache_dir``:
    where converted weights are cached (None: no cache).
    """
    what = f"'{path}'"
    cached = unet_cache.read_cache(path, cache_dir)
    if cached is not None:
        layout, converted = cached
        try:
            return _materialize(build_unet(layout, with_output, device="meta"), converted, dtype)
        except Exception:
            pass  # a cache that does not fit its own record is rebuilt from the source
    weights = load_state_dict(path, "UNet")
    layout = read_layout(weights, what)
    unet = build_unet(layout, with_output, device="meta")
    expected = {k: v.shape for k, v in unet.state_dict().items()}
    converted = convert_unet_weights(weights, layout, expected, what)
    unet_cache.write_cache(path, cache_dir, layout, converted)
    return _materialize(unet, converted, dtype)


def _own_storage(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in a contiguous, 64-byte-aligned storage of its own (torch's allocator gives that).
    safetensors' CPU tensors sit at 8-byte-aligned addresses, and CPU kernels pick their code path by
    alignment, rounding the last bit differently: a UNet read from the converted cache gave videos
    that differed (by one level in a few pixels) from the freshly converted one."""
    exact = tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size()
    if tensor.is_contiguous() and tensor.storage_offset() == 0 and exact and tensor.data_ptr() % 64 == 0:
        return tensor
    return tensor.clone(memory_format=torch.contiguous_format)


def _materialize(unet: nn.Module, weights: Dict[str, torch.Tensor], dtype: Optional[torch.dtype]) -> nn.Module:
    """Put ``weights`` into a meta-device ``unet`` (strict), in ``dtype`` if given."""
    weights = {k: _own_storage(v.to(dtype) if dtype is not None else v) for k, v in weights.items()}
    unet.load_state_dict(weights, strict=True, assign=True)
    still_meta = [name for name, p in unet.state_dict().items() if p.is_meta]
    if still_meta:
        raise RuntimeError(f"weights left unset: {', '.join(still_meta[:8])}")
    unet.dtype = unet.input_blocks[0][0].weight.dtype  # ldm casts the input to this in forward
    return unet.eval().requires_grad_(False)


def load_pose_guider(path: str, dtype: Optional[torch.dtype] = None) -> PoseGuider:
    return PoseGuider.from_state_dict(load_state_dict(path, "pose guider"), what=f"'{path}'", dtype=dtype)


@dataclass
class AnimateAnyoneModels:
    """The loaded release, on the CPU. ``motion_module`` is a path for the motion engine."""

    denoising_unet: AnimateAnyoneUNet
    reference_unet: AnimateAnyoneUNet
    pose_guider: PoseGuider
    image_encoder: nn.Module
    motion_module: str
    layout: UNetLayout


def load_weights(folder: str, dtype: Optional[torch.dtype] = None, cache_dir: Optional[str] = None) -> AnimateAnyoneModels:
    """Load and cross-check the whole release from ``folder`` (see the module docstring)."""
    files = locate_weights(folder)
    denoising = load_unet(files.denoising_unet, with_output=True, dtype=dtype, cache_dir=cache_dir)
    reference = load_unet(files.reference_unet, with_output=False, dtype=dtype, cache_dir=cache_dir)
    layout = _layout_of(denoising)
    if _layout_of(reference) != layout:
        raise WeightsFileError(
            f"'{files.reference_unet}' and '{files.denoising_unet}' are UNets of different shapes "
            f"({_describe(_layout_of(reference))} vs {_describe(layout)}); they must come from the same release."
        )
    pose_guider = load_pose_guider(files.pose_guider, dtype=dtype)
    if pose_guider.out_channels != layout.model_channels:
        raise WeightsFileError(
            f"'{files.pose_guider}' gives {pose_guider.out_channels} channels but the UNet's first conv has "
            f"{layout.model_channels}; the pose guider does not belong to these UNets."
        )
    image_encoder = load_image_encoder(files.image_encoder, dtype=dtype)
    projection = image_encoder.config.projection_dim
    if projection != layout.context_dim:
        raise WeightsFileError(
            f"the image encoder in '{files.image_encoder}' gives {projection}-dimensional embeddings but the "
            f"UNets' cross-attention expects {layout.context_dim}; it is not the encoder these UNets were trained with."
        )
    return AnimateAnyoneModels(denoising, reference, pose_guider, image_encoder, files.motion_module, layout)


def _layout_of(unet: AnimateAnyoneUNet) -> UNetLayout:
    return unet.layout


def _describe(layout: UNetLayout) -> str:
    return f"width {layout.model_channels}, context {layout.context_dim}"
