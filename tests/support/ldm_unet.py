"""The real ldm UNetModel (the class the webui loads SD1.x with) at test widths.

``pip install --no-deps stable-diffusion-sdkit==2.1.5`` provides the same ``ldm`` package the
webui imports its UNet from. ``tiny_unet`` keeps SD1.5's block layout (4 levels, channel_mult
1/2/4/4, attention at the first three levels, a mid block) at small widths.
"""

import torch

SD15_UNET_CONFIG = dict(
    image_size=32,
    in_channels=4,
    out_channels=4,
    model_channels=320,
    attention_resolutions=[4, 2, 1],
    num_res_blocks=2,
    channel_mult=[1, 2, 4, 4],
    num_heads=8,
    use_spatial_transformer=True,
    transformer_depth=1,
    context_dim=768,
    use_checkpoint=False,
    legacy=False,
)


def ldm_unet(model_channels=32, context_dim=64, num_heads=8, seed=0, randomize_zero_init=True, **overrides):
    """An ldm UNetModel with SD1.5's layout at ``model_channels`` width, seeded weights.

    ldm zero-initialises some output convolutions (ResBlock out conv, SpatialTransformer
    proj_out, the UNet's out conv); with ``randomize_zero_init`` they get random values too, so
    the output depends on every layer.
    """
    from ldm.modules.diffusionmodules.openaimodel import UNetModel

    config = dict(SD15_UNET_CONFIG, model_channels=model_channels, context_dim=context_dim, num_heads=num_heads)
    config.update(overrides)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        unet = UNetModel(**config)
        if randomize_zero_init:
            with torch.no_grad():
                for p in unet.parameters():
                    if torch.count_nonzero(p) == 0:
                        p.normal_(0.0, 0.05)
    finally:
        torch.random.set_rng_state(generator_state)
    return unet.eval()


def unet_inputs(unet, batch, height=16, width=16, tokens=7, seed=1, dtype=torch.float32):
    """Random (x, timesteps, context) for ``unet`` with ``batch`` rows; one timestep for all rows."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, unet.in_channels, height, width, generator=g, dtype=dtype)
    t = torch.full((batch,), 437, dtype=torch.long)
    context_dim = unet.input_blocks[1][1].transformer_blocks[0].attn2.to_k.in_features
    context = torch.randn(batch, tokens, context_dim, generator=g, dtype=dtype)
    return x, t, context
