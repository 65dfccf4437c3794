"""diffusers -> ldm conversion of the Animate Anyone UNets, checked against diffusers itself."""

import collections

import pytest
import torch

pytest.importorskip("diffusers", reason="the Animate Anyone release fixtures are written from diffusers' models "
                    "(test-only; it needs newer packages than the webui's, so the webui-pins leg skips this)")

from lib_animate.errors import WeightsFileError
from lib_animate.reference.convert import convert_unet_weights, module_table, read_layout
from lib_animate.reference.reference_attention import record_reference
from lib_animate.reference.unet import AnimateAnyoneUNet, build_unet
from tests.support.ldm_unet import SD15_UNET_CONFIG
from tests.support.reference_files import OUTPUT_LAYERS, diffusers_unet, relative_error

TOLERANCE = 1e-5


def _convert(state, with_output=True):
    layout = read_layout(state, "test UNet")
    unet = build_unet(layout, with_output, device="meta")
    expected = {k: v.shape for k, v in unet.state_dict().items()}
    converted = convert_unet_weights(state, layout, expected, "test UNet")
    unet.load_state_dict(converted, strict=True, assign=True)
    return unet.eval()


def _inputs(batch, height, width, seed=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, height, width, generator=g)
    t = torch.tensor([999, 437][:batch] + [0] * max(0, batch - 2))
    context = torch.randn(batch, 1, 64, generator=g)
    return x, t, context


@pytest.fixture(scope="module")
def denoising():
    return diffusers_unet(seed=11)


@pytest.fixture(scope="module")
def reference():
    unet = diffusers_unet(seed=12)
    state = collections.OrderedDict((k, v) for k, v in unet.state_dict().items() if k not in OUTPUT_LAYERS)
    # the released reference UNet: no output layers; its forward ends after the last up block
    unet.conv_norm_out = None
    unet.conv_out = torch.nn.Identity()
    return unet, state


def test_full_width_sd15_key_sets_on_meta():
    from diffusers import UNet2DConditionModel
    from ldm.modules.diffusionmodules.openaimodel import UNetModel

    with torch.device("meta"):
        diffusers_sd15 = UNet2DConditionModel(cross_attention_dim=768)
        webui_unet = UNetModel(**SD15_UNET_CONFIG)
    state = diffusers_sd15.state_dict()
    assert len(state) == 686
    reference_state = {k: v for k, v in state.items() if k not in OUTPUT_LAYERS}
    assert len(reference_state) == 682

    layout = read_layout(state, "SD1.5")
    assert (layout.model_channels, layout.context_dim, layout.channel_mult) == (320, 768, (1, 2, 4, 4))
    ours = build_unet(layout, device="meta")
    expected = {k: v.shape for k, v in ours.state_dict().items()}
    converted = convert_unet_weights(state, layout, expected, "SD1.5")
    # same names and shapes as the webui's own SD1.5 UNet
    webui_shapes = {k: tuple(v.shape) for k, v in webui_unet.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == webui_shapes
    assert sum(v.numel() for v in converted.values()) == 859_520_964

    reference_layout = read_layout(reference_state, "SD1.5 reference")
    reference_unet = build_unet(reference_layout, with_output=False, device="meta")
    reference_expected = {k: v.shape for k, v in reference_unet.state_dict().items()}
    assert len(reference_expected) == 682
    converted = convert_unet_weights(reference_state, reference_layout, reference_expected, "SD1.5 reference")
    assert set(converted) == set(webui_shapes) - {"out.0.weight", "out.0.bias", "out.2.weight", "out.2.bias"}


def test_table_maps_every_block_once():
    with torch.device("meta"):
        from diffusers import UNet2DConditionModel

        state = UNet2DConditionModel(cross_attention_dim=768).state_dict()
    table = module_table(read_layout(state, "SD1.5"))
    diffusers_prefixes = [d for d, _, _ in table]
    ldm_prefixes = [l for _, l, _ in table]
    assert len(set(diffusers_prefixes)) == len(diffusers_prefixes) == len(set(ldm_prefixes))
    attentions = [l for d, l, _ in table if ".attentions." in d]
    assert len(attentions) == 16  # the 16 blocks the reference attention pairs
    assert ("up_blocks.0.upsamplers.0.conv", "output_blocks.2.1.conv", ()) in table
    assert ("up_blocks.1.upsamplers.0.conv", "output_blocks.5.2.conv", ()) in table
    assert ("down_blocks.2.downsamplers.0.conv", "input_blocks.9.0.op", ()) in table


@pytest.mark.parametrize("height, width", [(8, 8), (98, 8)], ids=["latent-64-multiple", "height-784"])
def test_denoising_unet_equals_diffusers(denoising, height, width):
    ours = _convert(denoising.state_dict())
    assert isinstance(ours, AnimateAnyoneUNet)
    x, t, context = _inputs(2, height, width)
    with torch.no_grad():
        expected = denoising(x, t, encoder_hidden_states=context).sample
        got = ours(x, t, context=context)
    error = relative_error(got, expected)
    print(f"denoising UNet {height}x{width} latent: rel L2 {error:.2e}, max abs {(got - expected).abs().max():.2e}")
    assert error <= TOLERANCE


@pytest.mark.parametrize("height, width", [(8, 8), (98, 8)], ids=["latent-64-multiple", "height-784"])
def test_reference_unet_equals_diffusers(reference, height, width):
    model, state = reference
    ours = _convert(state, with_output=False)
    assert not any(k.startswith("out.") for k in ours.state_dict())
    x, _, context = _inputs(1, height, width)
    t = torch.zeros(1, dtype=torch.long)
    norm1_outputs = {}
    hooks = [
        m.norm1.register_forward_hook(lambda mod, inp, out, name=name: norm1_outputs.__setitem__(name, out))
        for name, m in model.named_modules() if type(m).__name__ == "BasicTransformerBlock"
    ]
    try:
        with torch.no_grad():
            expected = model(x, t, encoder_hidden_states=context).sample
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad(), record_reference(ours) as bank:
        got = ours(x, t, context=context)
    error = relative_error(got, expected)
    print(f"reference UNet {height}x{width} latent: rel L2 {error:.2e}")
    assert error <= TOLERANCE

    # the bank holds, per ldm block path, what diffusers' block fed its attn1
    to_ldm = {d: l for d, l, _ in module_table(read_layout(state, "ref"))}
    assert len(bank) == len(norm1_outputs) == 16
    worst = 0.0
    for name, tokens in norm1_outputs.items():
        attention, _, block = name.partition(".transformer_blocks.")
        banked = bank.tokens(f"{to_ldm[attention]}.transformer_blocks.{block}")
        worst = max(worst, relative_error(banked, tokens))
    print(f"reference bank vs diffusers norm1 outputs: worst rel L2 {worst:.2e}")
    assert worst <= TOLERANCE


class _ResizeAfterConvTorch:
    """The webui's ``th`` replacement in openaimodel: ``cat`` resizes the upsampled map to the skip's size."""

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def cat(tensors, *args, **kwargs):
        a, b = tensors
        if a.shape[-2:] != b.shape[-2:]:
            a = torch.nn.functional.interpolate(a, b.shape[-2:], mode="nearest")
        return torch.cat((a, b), *args, **kwargs)


def test_784_follows_the_reference_upsample_order_not_the_webuis(denoising, monkeypatch):
    """At 98 latent rows the webui's order (x2, conv, resize) differs from diffusers; ours does not."""
    from ldm.modules.diffusionmodules import openaimodel
    from ldm.modules.diffusionmodules.openaimodel import UNetModel

    ours = _convert(denoising.state_dict())
    webui_order = UNetModel(**ours.layout.ldm_config()).eval()
    state = ours.state_dict()
    webui_order.load_state_dict(state)
    monkeypatch.setattr(openaimodel, "th", _ResizeAfterConvTorch())
    x, t, context = _inputs(2, 98, 8)
    with torch.no_grad():
        expected = denoising(x, t, encoder_hidden_states=context).sample
        webui_error = relative_error(webui_order(x, t, context=context), expected)
        our_error = relative_error(ours(x, t, context=context), expected)
    print(f"height 784: webui order rel L2 {webui_error:.2e}, ours {our_error:.2e}")
    assert our_error <= TOLERANCE < webui_error


def test_at_64_multiples_our_unet_is_the_webui_unet_bit_for_bit(denoising):
    from ldm.modules.diffusionmodules.openaimodel import UNetModel

    ours = _convert(denoising.state_dict())
    plain = UNetModel(**ours.layout.ldm_config()).eval()
    plain.load_state_dict(ours.state_dict())
    x, t, context = _inputs(2, 16, 8)
    with torch.no_grad():
        assert torch.equal(ours(x, t, context=context), plain(x, t, context=context))


def _meta_expected(state, with_output=True):
    layout = read_layout(state, "f")
    return layout, {k: v.shape for k, v in build_unet(layout, with_output, device="meta").state_dict().items()}


def test_unexpected_missing_and_misshaped_keys_are_listed(denoising):
    state = dict(denoising.state_dict())
    layout, expected = _meta_expected(state)
    state["down_blocks.0.resnets.0.extra.weight"] = torch.zeros(1)
    del state["up_blocks.3.attentions.2.transformer_blocks.0.attn1.to_q.weight"]
    state["mid_block.resnets.1.conv2.weight"] = torch.zeros(128, 128, 1, 1)
    with pytest.raises(WeightsFileError) as info:
        convert_unet_weights(state, layout, expected, "'x.pth'")
    message = str(info.value)
    assert "1 unexpected keys: down_blocks.0.resnets.0.extra.weight" in message
    assert "1 missing keys: up_blocks.3.attentions.2.transformer_blocks.0.attn1.to_q.weight" in message
    assert "mid_block.resnets.1.conv2.weight (128, 128, 1, 1) (expected (128, 128, 3, 3))" in message


def test_reference_file_with_output_layers_is_rejected_for_the_reference_unet(denoising):
    state = denoising.state_dict()
    layout, expected = _meta_expected(state, with_output=False)
    with pytest.raises(WeightsFileError, match="4 unexpected keys: conv_norm_out.weight"):
        convert_unet_weights(state, layout, expected, "'reference_unet.pth'")


def test_denoising_file_without_output_layers_is_missing_them(denoising):
    state = {k: v for k, v in denoising.state_dict().items() if k not in OUTPUT_LAYERS}
    layout = read_layout(state, "f")
    expected = {k: v.shape for k, v in build_unet(layout, True, device="meta").state_dict().items()}
    with pytest.raises(WeightsFileError, match="4 missing keys: conv_norm_out.bias, conv_norm_out.weight, conv_out.bias, conv_out.weight"):
        convert_unet_weights(state, layout, expected, "'denoising_unet.pth'")


def test_sdxl_unet_is_refused():
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        sdxl = UNet2DConditionModel(
            block_out_channels=(32, 64, 128),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 2),
            attention_head_dim=(2, 4, 8),
            use_linear_projection=True,
            cross_attention_dim=2048,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=2048 + 6 * 8,
            norm_num_groups=32,
        )
    state = sdxl.state_dict()
    with pytest.raises(WeightsFileError, match="add_embedding.*SDXL"):
        read_layout(state, "'denoising_unet.pth'")
    state = {k: v for k, v in state.items() if not k.startswith("add_embedding.")}
    with pytest.raises(WeightsFileError, match="not an SD1.5-layout UNet.*channel_mult \\(1, 2, 4\\)"):
        read_layout(state, "'denoising_unet.pth'")


def test_not_a_unet_file():
    with pytest.raises(WeightsFileError, match="not a UNet in diffusers naming"):
        read_layout({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)}, "'x.pth'")
