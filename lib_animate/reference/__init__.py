"""Animate Anyone: ReferenceNet bank and attention hooks, pose guider, image encoder, weights.

Modules (import them directly; ``ldm`` and ``transformers`` are imported only where needed):
    convert              diffusers -> ldm UNet key tables, layout read from the weights
    unet                 AnimateAnyoneUNet: ldm UNetModel with the reference's upsample order
    unet_cache           safetensors cache of converted UNet weights
    weights              locate / validate / load the released weights folder
    pose_guider          the released PoseGuider
    pose_features        pose features added after the denoising UNet's first conv
    block_hooks          instance-level BasicTransformerBlock._forward replacement
    reference_attention  ReferenceBank, record / attend hooks, ReferenceNet (one run per pass)
    sampling_pass        both hooks and the reference run for one sampling pass
    image_encoder        CLIP image encoder loading and reference preprocessing
"""
