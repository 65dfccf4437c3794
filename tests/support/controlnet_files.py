"""Tiny random-weight sd-webui-controlnet models in the published key formats, sized for the
tiny SD1 checkpoint of the end-to-end tests (UNet width 32, context 64).

* ``ControlNet``: ldm keys under ``control_model.`` -- the UNet's encoder half (``time_embed``,
  ``input_blocks``, ``middle_block``, taken from a real ldm UNetModel at width 32), the hint
  encoder ``input_hint_block`` (3 -> 16 -> 16 -> 32 -> 32 -> 96 -> 96 -> 256 -> width, three
  stride-2 convs) and one 1x1 ``zero_convs`` per input block plus ``middle_block_out``. ControlNet
  1.1.455 builds SD1 ControlNets from a hard-coded config of width 320; the e2e support patches
  that to 32 in the test webui only (:data:`TINY_CONFIG_EXTENSION`).
* ``T2I-Adapter``: ``conv_in`` (3 x 8 x 8 = 192 unshuffled channels in) and eight ResNet blocks
  (``body.N.block1/block2``, ``in_conv`` where the width changes), kernel 1, widths 32/64/128/128:
  ControlNet reads the widths from the file.
* ``IP-Adapter`` (plain, safetensors): ``image_proj.proj`` (CLIP embedding 16 -> 4 tokens x 64),
  ``image_proj.norm`` and ``ip_adapter.{1,3,...,31}.to_k_ip/to_v_ip`` for the 16 cross-attention
  layers of SD1 in ControlNet's order (input 1,2,4,5,7,8, output 3..11, middle). Used with
  ``ipadapter_input`` (a saved CLIP image embedding), so no CLIP vision model is needed.

"Zero" convolutions get random weights, so every model changes the UNet's output.
"""

import base64
import io
from pathlib import Path

import torch
from safetensors.torch import save_file

from tests.support.ldm_unet import ldm_unet

WIDTH, CONTEXT, CLIP_DIM, IP_TOKENS = 32, 64, 16, 4
CONTROLNET = "tiny_controlnet_sd15"
T2I_ADAPTER = "tiny_t2iadapter_sd15"
IP_ADAPTER = "tiny_ip-adapter_sd15"
HINT_CHANNELS = (16, 16, 32, 32, 96, 96, 256)
# Width of the 16 cross-attention layers of SD1 in ControlNet's IP-Adapter order, in units of WIDTH.
IP_LAYER_WIDTHS = (1, 1, 2, 2, 4, 4) + (4, 4, 4, 2, 2, 2, 1, 1, 1) + (4,)

# The test-only extension that sizes ControlNet's SD1 config for the tiny checkpoint (never shipped).
TINY_CONFIG_EXTENSION = Path(__file__).resolve().parent / "controlnet_tiny_config"


def _random(shape, g, scale=None):
    fan_in = max(1, int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else shape[0])
    return torch.randn(shape, generator=g) * (scale if scale is not None else fan_in ** -0.5)


def _conv(state, key, cin, cout, k, g, scale=None):
    state[f"{key}.weight"] = _random((cout, cin, k, k), g, scale)
    state[f"{key}.bias"] = 0.01 * torch.randn(cout, generator=g)


def _input_block_channels(unet):
    """Output channels of every input block (the width each zero conv sees)."""
    channels = []
    for block in unet.input_blocks:
        for layer in reversed(list(block)):
            width = getattr(layer, "out_channels", None)
            if width is None and hasattr(layer, "proj_out"):
                width = layer.proj_out.out_channels
            if width is not None:
                channels.append(int(width))
                break
    return channels


def controlnet_state(seed=0):
    unet = ldm_unet(model_channels=WIDTH, context_dim=CONTEXT, seed=seed)
    state = {f"control_model.{k}": v.clone() for k, v in unet.state_dict().items()
             if k.startswith(("time_embed.", "input_blocks.", "middle_block."))}
    g = torch.Generator().manual_seed(seed + 1)
    cin = 3
    for i, cout in enumerate(HINT_CHANNELS + (WIDTH,)):
        _conv(state, f"control_model.input_hint_block.{2 * i}", cin, cout, 3, g)
        cin = cout
    for i, width in enumerate(_input_block_channels(unet)):
        _conv(state, f"control_model.zero_convs.{i}.0", width, width, 1, g, scale=0.3 / width ** 0.5)
    mid = 4 * WIDTH
    _conv(state, "control_model.middle_block_out.0", mid, mid, 1, g, scale=0.3 / mid ** 0.5)
    return {k: v.contiguous() for k, v in state.items()}


def t2i_adapter_state(seed=0):
    g = torch.Generator().manual_seed(seed)
    widths = [WIDTH, 2 * WIDTH, 4 * WIDTH, 4 * WIDTH]
    state = {}
    _conv(state, "conv_in", 3 * 64, widths[0], 3, g)
    index, previous = 0, widths[0]
    for width in widths:
        for _ in range(2):  # two ResNet blocks per level; the first of levels 1..3 downsamples (avg pool)
            if previous != width:
                _conv(state, f"body.{index}.in_conv", previous, width, 1, g)
            _conv(state, f"body.{index}.block1", width, width, 3, g)
            _conv(state, f"body.{index}.block2", width, width, 1, g, scale=0.3 / width ** 0.5)
            index, previous = index + 1, width
    return state


def ip_adapter_state(seed=0):
    g = torch.Generator().manual_seed(seed)
    state = {
        "image_proj.proj.weight": _random((IP_TOKENS * CONTEXT, CLIP_DIM), g),
        "image_proj.proj.bias": 0.01 * torch.randn(IP_TOKENS * CONTEXT, generator=g),
        "image_proj.norm.weight": 1.0 + 0.1 * torch.randn(CONTEXT, generator=g),
        "image_proj.norm.bias": 0.1 * torch.randn(CONTEXT, generator=g),
    }
    for i, factor in enumerate(IP_LAYER_WIDTHS):
        for name in ("to_k_ip", "to_v_ip"):
            state[f"ip_adapter.{2 * i + 1}.{name}.weight"] = _random((factor * WIDTH, CONTEXT), g, scale=0.5)
    return state


def ipadapter_input(seed=0) -> str:
    """ControlNet's API field ``ipadapter_input``: base64 of a saved CLIP image embedding."""
    g = torch.Generator().manual_seed(seed)
    buffer = io.BytesIO()
    torch.save({"image_embeds": torch.randn(1, CLIP_DIM, generator=g)}, buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def write_models(folder) -> dict:
    """The three models as ``<folder>/<name>.safetensors``; returns {kind: name}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, state in ((CONTROLNET, controlnet_state(3)), (T2I_ADAPTER, t2i_adapter_state(4)), (IP_ADAPTER, ip_adapter_state(5))):
        target = folder / f"{name}.safetensors"
        if not target.exists():
            save_file(state, str(target), metadata={"format": "pt"})
    return {"controlnet": CONTROLNET, "t2i_adapter": T2I_ADAPTER, "ip_adapter": IP_ADAPTER}
