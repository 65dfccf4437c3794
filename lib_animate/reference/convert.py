"""diffusers ``UNet2DConditionModel`` key names -> ldm ``UNetModel`` key names (SD1.5 layout).

The Animate Anyone release stores both UNets in diffusers naming without a prefix; the webui's
UNet class is ldm's. The conversion is data: a table of module prefixes (which diffusers block
sits at which ldm position) and a table of renames inside a resnet. Transformer internals
(``norm``, ``proj_in``, ``transformer_blocks.0.attn1.to_q`` ...) have the same names in both.

Widths are read from the file, never assumed, so the same tables convert the published
SD1.5-sized files and the tiny test fixtures. The accounting is strict: every source key is
used exactly once, every target key is filled, every shape matches; anything else is a
:class:`WeightsFileError` that lists the keys.
"""

import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import torch

from ..errors import WeightsFileError
from ..key_check import compare_keys, listing

# ldm top-level module -> diffusers module.
TOP_LEVEL = (
    ("time_embed.0", "time_embedding.linear_1"),
    ("time_embed.2", "time_embedding.linear_2"),
    ("input_blocks.0.0", "conv_in"),
    ("out.0", "conv_norm_out"),
    ("out.2", "conv_out"),
)

# Inside a resnet block: ldm child -> diffusers child.
RESNET_RENAMES = (
    ("in_layers.0", "norm1"),
    ("in_layers.2", "conv1"),
    ("emb_layers.1", "time_emb_proj"),
    ("out_layers.0", "norm2"),
    ("out_layers.3", "conv2"),
    ("skip_connection", "conv_shortcut"),
)

# Where each diffusers block sits in ldm, for level i and layer j. ldm numbers its blocks flat
# (an input block per resnet plus one per downsampler; an output block per up resnet), diffusers
# per level; the flat indices are the fields computed in _positions.
#   (kind,       scope,        ldm position,                                  diffusers position)
BLOCK_POSITIONS = (
    ("resnet", "down", "input_blocks.{down}.0", "down_blocks.{i}.resnets.{j}"),
    ("attention", "down", "input_blocks.{down}.1", "down_blocks.{i}.attentions.{j}"),
    ("sampler", "downsample", "input_blocks.{downsample}.0.op", "down_blocks.{i}.downsamplers.0.conv"),
    ("resnet", "mid", "middle_block.0", "mid_block.resnets.0"),
    ("attention", "mid", "middle_block.1", "mid_block.attentions.0"),
    ("resnet", "mid", "middle_block.2", "mid_block.resnets.1"),
    ("resnet", "up", "output_blocks.{up}.0", "up_blocks.{i}.resnets.{j}"),
    ("attention", "up", "output_blocks.{up}.1", "up_blocks.{i}.attentions.{j}"),
    ("sampler", "upsample", "output_blocks.{upsample}.{upsample_slot}.conv", "up_blocks.{i}.upsamplers.0.conv"),
)

_FOREIGN_MARKERS = ("add_embedding.", "add_time_proj.", "class_embedding.", "encoder_hid_proj.")



@dataclass(frozen=True)
class UNetLayout:
    """Shape facts of a UNet read from its weights; enough to build the ldm model."""

    in_channels: int
    out_channels: int
    model_channels: int
    channel_mult: Tuple[int, ...]
    num_res_blocks: int
    attention_levels: Tuple[int, ...]
    transformer_depth: int
    linear_projection: bool
    context_dim: int

    def ldm_config(self, num_heads: int = 8) -> dict:
        """Keyword arguments of ldm's ``UNetModel`` (as the webui's v1-inference.yaml, widths from the file)."""
        return dict(
            image_size=32,  # unused by the model
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            model_channels=self.model_channels,
            attention_resolutions=[2 ** level for level in self.attention_levels],
            num_res_blocks=self.num_res_blocks,
            channel_mult=list(self.channel_mult),
            num_heads=num_heads,
            use_spatial_transformer=True,
            transformer_depth=self.transformer_depth,
            context_dim=self.context_dim,
            use_linear_in_transformer=self.linear_projection,
            use_checkpoint=False,
            legacy=False,
        )


SD15_SHAPE = dict(
    channel_mult=(1, 2, 4, 4),
    num_res_blocks=2,
    attention_levels=(0, 1, 2),
    transformer_depth=1,
    linear_projection=False,
)


def read_layout(weights: Mapping[str, torch.Tensor], what: str) -> UNetLayout:
    """Read a diffusers UNet's layout from its keys and shapes; error unless it is SD1.5-shaped."""
    foreign = sorted({k.split(".")[0] for k in weights if k.startswith(_FOREIGN_MARKERS)})
    if foreign:
        raise WeightsFileError(
            f"{what} is not an SD1.5 UNet: it has {', '.join(foreign)} layers, which SD1.5 UNets do "
            f"not have (an SDXL UNet?). Animate Anyone needs the SD1.5-based release files."
        )
    required = ("conv_in.weight", "down_blocks.0.resnets.0.conv1.weight")
    absent = [k for k in required if k not in weights]
    if absent:
        raise WeightsFileError(
            f"{what} is not a UNet in diffusers naming: {', '.join(absent)} not found "
            f"(found keys such as {', '.join(_first(sorted(weights), 5))})."
        )
    conv_in = weights["conv_in.weight"]
    model_channels = int(conv_in.shape[0])
    levels = _indices(weights, r"down_blocks\.(\d+)\.")
    res_blocks = _indices(weights, r"down_blocks\.0\.resnets\.(\d+)\.")
    attention_levels = tuple(i for i in levels if f"down_blocks.{i}.attentions.0.norm.weight" in weights)
    channel_mult = []
    for i in levels:
        conv1 = weights.get(f"down_blocks.{i}.resnets.0.conv1.weight")
        if conv1 is None or conv1.shape[0] % model_channels:
            raise WeightsFileError(f"{what}: down block {i} has no readable resnet width.")
        channel_mult.append(int(conv1.shape[0]) // model_channels)
    first = attention_levels[0] if attention_levels else None
    depth, linear, context_dim = 0, False, 0
    if first is not None:
        prefix = f"down_blocks.{first}.attentions.0."
        depth = len(_indices(weights, re.escape(prefix) + r"transformer_blocks\.(\d+)\."))
        linear = weights[prefix + "proj_in.weight"].dim() == 2
        to_k = weights.get(prefix + "transformer_blocks.0.attn2.to_k.weight")
        context_dim = int(to_k.shape[1]) if to_k is not None else 0
    conv_out = weights.get("conv_out.weight")
    layout = UNetLayout(
        in_channels=int(conv_in.shape[1]),
        out_channels=int(conv_out.shape[0]) if conv_out is not None else int(conv_in.shape[1]),
        model_channels=model_channels,
        channel_mult=tuple(channel_mult),
        num_res_blocks=len(res_blocks),
        attention_levels=attention_levels,
        transformer_depth=depth,
        linear_projection=linear,
        context_dim=context_dim,
    )
    _check_sd15_shape(layout, what)
    return layout


def _check_sd15_shape(layout: UNetLayout, what: str) -> None:
    found = {name: getattr(layout, name) for name in SD15_SHAPE}
    differences = [f"{name} {found[name]} (SD1.5: {want})" for name, want in SD15_SHAPE.items() if found[name] != want]
    if layout.model_channels % 32:
        differences.append(f"base width {layout.model_channels} (must be a multiple of 32 for GroupNorm(32))")
    if not layout.context_dim:
        differences.append("no cross-attention")
    if differences:
        raise WeightsFileError(
            f"{what} is not an SD1.5-layout UNet: {'; '.join(differences)}. Animate Anyone needs the "
            f"SD1.5-based release files (an SDXL or SD2 UNet does not fit)."
        )


def module_table(layout: UNetLayout) -> List[Tuple[str, str, Tuple[Tuple[str, str], ...]]]:
    """(diffusers module prefix, ldm module prefix, child renames) for every weight-bearing module."""
    rows = [(diffusers, ldm, ()) for ldm, diffusers in TOP_LEVEL]
    levels = len(layout.channel_mult)
    attention = {
        "down": set(layout.attention_levels),
        "up": {levels - 1 - level for level in layout.attention_levels},  # up block i mirrors level L-1-i
        "mid": {0},
    }
    for kind, scope, ldm, diffusers in BLOCK_POSITIONS:
        for fields in _positions(scope, levels, layout.num_res_blocks):
            if kind == "attention" and fields["i"] not in attention[scope]:
                continue
            # the Upsample follows the resnet, and the attention where the level has one
            fields["upsample_slot"] = 2 if fields["i"] in attention["up"] else 1
            renames = RESNET_RENAMES if kind == "resnet" else ()
            rows.append((diffusers.format(**fields), ldm.format(**fields), renames))
    return rows


def _positions(scope: str, levels: int, res: int):
    """Format fields (level i, layer j, flat ldm indices) of every block in ``scope``."""
    if scope == "mid":
        yield dict(i=0)
    elif scope == "down":
        for i in range(levels):
            for j in range(res):
                yield dict(i=i, j=j, down=(res + 1) * i + j + 1)
    elif scope == "downsample":
        for i in range(levels - 1):
            yield dict(i=i, downsample=(res + 1) * (i + 1))
    elif scope == "up":
        for i in range(levels):
            for j in range(res + 1):
                yield dict(i=i, j=j, up=(res + 1) * i + j)
    elif scope == "upsample":
        for i in range(levels - 1):
            yield dict(i=i, upsample=(res + 1) * i + res)


def convert_unet_weights(
    weights: Mapping[str, torch.Tensor],
    layout: UNetLayout,
    expected: Mapping[str, torch.Size],
    what: str,
) -> Dict[str, torch.Tensor]:
    """Rename a diffusers UNet state dict to ldm names, with strict accounting.

    ``expected`` maps every ldm key of the target model to its shape (for the reference UNet,
    built without output layers, that set has no ``out.*``). The tensors are not copied.
    """
    table = module_table(layout)
    by_prefix = {diffusers: (ldm, dict((d, l) for l, d in renames)) for diffusers, ldm, renames in table}
    converted: Dict[str, torch.Tensor] = {}
    sources: Dict[str, str] = {}
    unexpected: List[str] = []
    duplicates: List[str] = []
    for key, tensor in weights.items():
        target = _rename(key, by_prefix)
        if target is None or target not in expected:
            unexpected.append(key)
        elif target in converted:
            duplicates.append(f"{key} and {sources[target]} -> {target}")
        else:
            converted[target] = tensor
            sources[target] = key
    # Accounted in ldm names (what the model expects); reported in the file's own diffusers names.
    report = compare_keys(converted, expected)
    report.unexpected = unexpected
    if duplicates:
        report.other.append(f"{len(duplicates)} keys map to the same target: {listing(duplicates)}")
    inverse = {ldm: diffusers for diffusers, ldm, _ in table}
    report.raise_if_bad(f"{what} does not match an SD1.5 UNet of its own width",
                        name=lambda k: sources.get(k) or _diffusers_name(k, inverse, table))
    return converted


def _rename(key: str, by_prefix) -> Optional[str]:
    parts = key.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:cut])
        entry = by_prefix.get(prefix)
        if entry is None:
            continue
        ldm, renames = entry
        rest = parts[cut:]
        if renames:
            child = renames.get(rest[0])
            if child is None:
                return None
            rest = [child] + rest[1:]
        return ".".join([ldm] + rest)
    return None


def _diffusers_name(ldm_key: str, inverse: Mapping[str, str], table) -> str:
    """Best-effort diffusers name of an ldm key, for error messages."""
    renames = {ldm: dict(r) for _, ldm, r in table}
    parts = ldm_key.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in inverse:
            rest = ".".join(parts[cut:])
            for ldm_child, diffusers_child in renames[prefix].items():
                if rest.startswith(ldm_child + "."):
                    rest = diffusers_child + rest[len(ldm_child):]
            return f"{inverse[prefix]}.{rest}"
    return ldm_key


def _indices(keys: Iterable[str], pattern: str) -> List[int]:
    regex = re.compile("^" + pattern)
    found = set()
    for k in keys:
        m = regex.match(k)
        if m:
            found.add(int(m.group(1)))
    return sorted(found)


def _first(items, n):
    return list(items)[:n]


