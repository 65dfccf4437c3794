"""Fixtures for the Animate Anyone tests: random-weight files in exactly the published formats.

The release (Moore-AnimateAnyone) ships fp32 pickled OrderedDicts without a wrapper, in
diffusers naming: denoising_unet.pth (a full UNet2DConditionModel state dict, 686 tensors at
SD1.5 width), reference_unet.pth (the same keys without conv_norm_out / conv_out, 682),
pose_guider.pth (16 tensors), motion_module.pth, and image_encoder/ (a transformers
CLIPVisionModelWithProjection folder). These writers produce the same key sets at tiny widths.
This module holds helpers only (no tests).
"""

import collections
import os

import torch

from lib_animate.reference.convert import UNetLayout
from lib_animate.reference.unet import build_unet
from tests.support.ldm_unet import ldm_unet

# diffusers UNet2DConditionModel arguments: SD1.5's layout at tiny widths
TINY_UNET = dict(
    block_out_channels=(32, 64, 128, 128),
    cross_attention_dim=64,
    attention_head_dim=8,  # diffusers' name for the number of heads in SD1.5 configs
    norm_num_groups=32,
)
TINY_CONTEXT_DIM = 64
TINY_POSE_WIDTHS = (16, 32, 96, 256)  # the published widths; only conv_out is narrowed
OUTPUT_LAYERS = ("conv_norm_out.weight", "conv_norm_out.bias", "conv_out.weight", "conv_out.bias")

# pose_guider.pth as published: key -> (shape at SD1.5 width, stride)
PUBLISHED_POSE_GUIDER = {
    "conv_in": ((16, 3, 3, 3), 1),
    "blocks.0": ((16, 16, 3, 3), 1),
    "blocks.1": ((32, 16, 3, 3), 2),
    "blocks.2": ((32, 32, 3, 3), 1),
    "blocks.3": ((96, 32, 3, 3), 2),
    "blocks.4": ((96, 96, 3, 3), 1),
    "blocks.5": ((256, 96, 3, 3), 2),
    "conv_out": ((320, 256, 3, 3), 1),
}


def diffusers_unet(seed: int, **overrides):
    """A diffusers UNet2DConditionModel at tiny SD1.5 widths with every weight random (fp32, eval)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**dict(TINY_UNET, **overrides))
    generator = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for p in unet.parameters():
            # layers diffusers or ldm may zero-initialise get random values too, so outputs depend on them
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    return unet.eval()


def pose_guider_weights(seed: int, out_channels: int = 32, widths=TINY_POSE_WIDTHS):
    """pose_guider.pth's 16 tensors (published names) with random values."""
    generator = torch.Generator().manual_seed(seed)
    weights = collections.OrderedDict()
    chain = [("conv_in", 3, widths[0])]
    index = 0
    for width, next_width in zip(widths[:-1], widths[1:]):
        chain.append((f"blocks.{index}", width, width))
        chain.append((f"blocks.{index + 1}", width, next_width))
        index += 2
    chain.append(("conv_out", widths[-1], out_channels))
    for name, c_in, c_out in chain:
        weights[f"{name}.weight"] = torch.randn(c_out, c_in, 3, 3, generator=generator) * (1.0 / (3 * c_in ** 0.5))
        weights[f"{name}.bias"] = torch.randn(c_out, generator=generator) * 0.05
    return weights


def tiny_clip_config(projection_dim: int = TINY_CONTEXT_DIM):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        image_size=224, patch_size=32, projection_dim=projection_dim, hidden_act="quick_gelu",
    )


def write_image_encoder(folder: str, seed: int = 7, weights_format: str = "safetensors", projection_dim: int = TINY_CONTEXT_DIM):
    """image_encoder/: config.json plus model.safetensors, or pytorch_model.bin as older releases ship it."""
    from transformers import CLIPVisionModelWithProjection

    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(seed)
    config = tiny_clip_config(projection_dim)
    model = CLIPVisionModelWithProjection(config).eval()
    config.to_json_file(os.path.join(folder, "config.json"))
    state = collections.OrderedDict((k, v.contiguous()) for k, v in model.state_dict().items())
    if weights_format == "safetensors":
        import safetensors.torch

        state.pop("vision_model.embeddings.position_ids", None)
        safetensors.torch.save_file(dict(state), os.path.join(folder, "model.safetensors"))
    else:
        # transformers < 4.31 saved the position_ids buffer; the lambdalabs .bin has it
        state["vision_model.embeddings.position_ids"] = torch.arange(50)[None]
        torch.save(state, os.path.join(folder, "pytorch_model.bin"))
    return model


def write_release(folder: str, seed: int = 0, image_encoder_format: str = "safetensors"):
    """Write a complete tiny release into ``folder``; returns the diffusers models and the pose weights."""
    os.makedirs(folder, exist_ok=True)
    denoising = diffusers_unet(seed)
    reference = diffusers_unet(seed + 1)
    torch.save(collections.OrderedDict(denoising.state_dict()), os.path.join(folder, "denoising_unet.pth"))
    reference_state = collections.OrderedDict((k, v) for k, v in reference.state_dict().items() if k not in OUTPUT_LAYERS)
    torch.save(reference_state, os.path.join(folder, "reference_unet.pth"))
    pose = pose_guider_weights(seed + 2)
    torch.save(pose, os.path.join(folder, "pose_guider.pth"))
    motion = collections.OrderedDict(
        {"down_blocks.0.motion_modules.0.temporal_transformer.norm.weight": torch.ones(32)}
    )
    torch.save(motion, os.path.join(folder, "motion_module.pth"))
    encoder = write_image_encoder(os.path.join(folder, "image_encoder"), seed + 3, image_encoder_format)
    return dict(denoising=denoising, reference=reference, pose_guider=pose, image_encoder=encoder)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def module_attributes(module: torch.nn.Module):
    """Every submodule's instance attribute names and hook registries, to compare before/after hooks."""
    snapshot = {}
    for path, m in module.named_modules():
        hooks = {k: list(v) for k, v in m.__dict__.items() if "hooks" in k and isinstance(v, dict)}
        snapshot[path] = (sorted(m.__dict__), hooks)
    return snapshot


def state_bytes(module: torch.nn.Module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same_state(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)


TINY_LAYOUT = UNetLayout(
    in_channels=4, out_channels=4, model_channels=32, channel_mult=(1, 2, 4, 4), num_res_blocks=2,
    attention_levels=(0, 1, 2), transformer_depth=1, linear_projection=False, context_dim=64,
)


def our_unet(seed, with_output=True):
    """An AnimateAnyoneUNet (the mode's class) holding a seeded real ldm UNet's weights."""
    unet = build_unet(TINY_LAYOUT, with_output=with_output)
    weights = ldm_unet(model_channels=32, context_dim=64, seed=seed).state_dict()
    if not with_output:
        weights = {k: v for k, v in weights.items() if not k.startswith("out.")}
    unet.load_state_dict(weights)
    return unet.eval().requires_grad_(False)
