"""R_mm on SDXL: the SDXL UNet with AnimateDiff-SDXL or HotShot-XL modules injected, against the bare
UNet, on identical inputs, interleaved in one run.

    python -m tests.benchmarks.bench_motion_sdxl                      # CUDA if present, else the CPU tiny config
    python -m tests.benchmarks.bench_motion_sdxl --device cuda --json OUT.json

The UNet is the real ldm ``UNetModel`` in SDXL's block layout (three levels, channel_mult 1/2/4,
attention at levels 1-2, ``adm_in_channels`` 2816, linear projections, 64-channel heads) with each
level's ``SpatialTransformer`` at SDXL's depth (2 at level 1, 10 at level 2 and in the middle block) --
the same classes and names as sgm's, which the webui loads SDXL with (sgm is not on PyPI). At full
width its parameter count equals diffusers' SDXL base ``UNet2DConditionModel`` (checked by
``tests/test_benchmark_smoke.py`` on the meta device), so the bare UNet costs what SDXL's costs.

On CUDA: width 320, context 2048, fp16 weights under ``torch.autocast`` (as the webui runs them),
2 clips (cond + uncond) x 16 frames at 1024 x 1024 (latent 128). The modules' weights are random at the
published sizes. R_mm = hooked / bare time per UNet call (median of interleaved rounds).
"""

import argparse
import contextlib
import sys
from dataclasses import asdict, dataclass, replace
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from lib_animate.motion import MotionModel, full_width_spec, inject
from tests.benchmarks import bench_motion as bm

FAMILIES = ("sdxl_beta", "hotshotxl")
SDXL_DEPTHS = (0, 2, 10)  # transformer blocks per level (level 0 has none); the middle block has the last


@dataclass
class SdxlConfig:
    device: str = "cpu"
    dtype: str = "fp32"
    width: int = 32
    context_dim: int = 64
    head_channels: int = 16
    depths: Tuple[int, int, int] = (0, 1, 2)
    adm_in_channels: int = 48
    tokens: int = 77
    size: int = 16  # latent side (128 = 1024 x 1024)
    frames: int = 16
    clips: int = 2
    iters: int = 6
    warmup: int = 1
    memory: bool = True
    seed: int = 0
    threads: Optional[int] = None

    @property
    def rows(self) -> int:
        return self.clips * self.frames

    @property
    def torch_dtype(self) -> torch.dtype:
        return bm.DTYPES[self.dtype]

    @property
    def half(self) -> bool:
        return self.torch_dtype in (torch.float16, torch.bfloat16)


def tiny_config(**overrides) -> SdxlConfig:
    return replace(SdxlConfig(), **overrides)


def full_config(**overrides) -> SdxlConfig:
    """SDXL at 1024 x 1024, 2 x 16 frames, fp16: the issue's configuration."""
    base = SdxlConfig(device="cuda", dtype="fp16", width=320, context_dim=2048, head_channels=64, depths=SDXL_DEPTHS,
                      adm_in_channels=2816, size=128, iters=10, warmup=2)
    return replace(base, **overrides)


def _deep_spatial_transformer_class():
    from ldm.modules.attention import SpatialTransformer

    class DeepSpatialTransformer(SpatialTransformer):
        """ldm's SpatialTransformer taking one context for all its blocks, as sgm's does (ldm's indexes a
        list of contexts per block)."""

        def forward(self, x, context=None):
            if not isinstance(context, list):
                context = [context] * len(self.transformer_blocks)
            return super().forward(x, context)

    return DeepSpatialTransformer


def sdxl_unet(width: int = 320, context_dim: int = 2048, head_channels: int = 64, depths: Sequence[int] = SDXL_DEPTHS,
              adm_in_channels: int = 2816) -> nn.Module:
    """ldm's UNetModel in SDXL's layout, each SpatialTransformer replaced by one of its level's depth, the
    label embedding SDXL's two-layer MLP of the vector conditioning (sgm's parameter names)."""
    from ldm.modules.attention import SpatialTransformer
    from ldm.modules.diffusionmodules.openaimodel import UNetModel

    deep = _deep_spatial_transformer_class()
    unet = UNetModel(image_size=32, in_channels=4, out_channels=4, model_channels=width, num_res_blocks=2,
                     channel_mult=[1, 2, 4], attention_resolutions=[2, 4], num_head_channels=head_channels,
                     use_spatial_transformer=True, use_linear_in_transformer=True, transformer_depth=1,
                     context_dim=context_dim, num_classes="continuous", legacy=False, use_checkpoint=False)
    # SDXL's vector embedding (sgm's num_classes="sequential"; the ldm package on PyPI predates that option)
    time_embed_dim = width * 4
    unet.label_emb = nn.Sequential(nn.Sequential(nn.Linear(adm_in_channels, time_embed_dim), nn.SiLU(),
                                                 nn.Linear(time_embed_dim, time_embed_dim)))
    depth_of_channels = {width * m: d for m, d in zip((1, 2, 4), depths)}
    for block in list(unet.input_blocks) + [unet.middle_block] + list(unet.output_blocks):
        for i, layer in enumerate(block):
            if isinstance(layer, SpatialTransformer):
                channels = layer.in_channels
                depth = depth_of_channels[channels]
                if depth != len(layer.transformer_blocks):
                    block[i] = deep(channels, channels // head_channels, head_channels, depth=depth,
                                                  context_dim=[context_dim] * depth, use_linear=True, use_checkpoint=False)
    return unet


def build_unet(cfg: SdxlConfig) -> nn.Module:
    torch.manual_seed(cfg.seed)
    with torch.device(cfg.device):
        unet = sdxl_unet(cfg.width, cfg.context_dim, cfg.head_channels, cfg.depths, cfg.adm_in_channels)
        with torch.no_grad():  # zero-initialised output layers get values, so every layer counts
            for p in unet.parameters():
                if torch.count_nonzero(p) == 0:
                    p.normal_(0.0, 0.02)
    return unet.to(cfg.torch_dtype).eval()


def build_motion(cfg: SdxlConfig, family: str) -> MotionModel:
    return bm.random_motion_model(family, cfg.width, cfg.device, cfg.torch_dtype, cfg.seed + 1 + FAMILIES.index(family))


def make_inputs(cfg: SdxlConfig):
    g = torch.Generator(device=cfg.device).manual_seed(cfg.seed + 100)
    x = torch.randn(cfg.rows, 4, cfg.size, cfg.size, generator=g, device=cfg.device).to(cfg.torch_dtype)
    context = torch.randn(cfg.rows, cfg.tokens, cfg.context_dim, generator=g, device=cfg.device).to(cfg.torch_dtype)
    y = torch.randn(cfg.rows, cfg.adm_in_channels, generator=g, device=cfg.device).to(cfg.torch_dtype)
    t = torch.full((cfg.rows,), bm.TIMESTEP, dtype=torch.long, device=cfg.device)
    return x, t, context, y


def count_flops(cfg: SdxlConfig) -> Dict[str, float]:
    """FLOPs of one UNet call, bare and per family, counted on the meta device with the timed runs'
    attention path: the floor of R_mm at this configuration (1 multiply-add = 2 FLOP)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        unet = sdxl_unet(cfg.width, cfg.context_dim, cfg.head_channels, cfg.depths, cfg.adm_in_channels).eval()
        x = torch.empty(cfg.rows, 4, cfg.size, cfg.size)
        t = torch.zeros(cfg.rows, dtype=torch.long)
        context = torch.empty(cfg.rows, cfg.tokens, cfg.context_dim)
        y = torch.empty(cfg.rows, cfg.adm_in_channels)
    flops = {}
    with bm.webui_attention(unet, "sdpa"), torch.no_grad():
        for family in (None,) + FAMILIES:
            setup = contextlib.nullcontext()
            if family is not None:
                with torch.device("meta"):
                    motion = MotionModel(full_width_spec(family, cfg.width))
                setup = inject(unet, motion, cfg.frames)
            with setup, FlopCounterMode(display=False) as counter:
                unet(x, t, context, y)
            flops["bare" if family is None else family] = float(counter.get_total_flops())
    return flops


def run_benchmark(cfg: SdxlConfig, log=print) -> Dict[str, object]:
    with bm.torch_threads(cfg.threads):
        return _run(cfg, log)


def _run(cfg: SdxlConfig, log) -> Dict[str, object]:
    if cfg.half and not bm.is_cuda(cfg):
        raise SystemExit(bm.CPU_HALF_MESSAGE)
    log(f"building the SDXL-layout UNet (width {cfg.width}, depths {cfg.depths}) and the modules on {cfg.device}")
    unet = build_unet(cfg)
    motions = {family: build_motion(cfg, family) for family in FAMILIES}
    x, t, context, y = make_inputs(cfg)

    def forward():
        with torch.no_grad(), bm.autocast_context(cfg):
            return unet(x, t, context, y)

    def injected(family):
        return lambda: inject(unet, motions[family], cfg.frames)

    with contextlib.ExitStack() as stack:
        stack.enter_context(bm.webui_attention(unet, "sdpa"))  # the webui's --opt-sdp-attention, as bench_motion
        variants = [bm.Variant("bare SDXL UNet", forward)] + [
            bm.Variant(f"+ {family}", forward, setup=injected(family)) for family in FAMILIES]
        samples, failed = bm.measure_interleaved(cfg, variants, cfg.iters, cfg.warmup, log=log)
        memory = {}
        if cfg.memory and bm.is_cuda(cfg):
            memory["bare SDXL UNet"] = bm.measure_peak_memory(cfg, forward, contextlib.nullcontext)
            for family in FAMILIES:
                memory[f"+ {family}"] = bm.measure_peak_memory(cfg, forward, injected(family))
    summary = {name: bm.summarize(values) for name, values in samples.items()}
    bare = summary["bare SDXL UNet"]["median"]
    ratios = {family: summary[f"+ {family}"]["median"] / bare for family in FAMILIES if f"+ {family}" in summary}
    weights = {"unet": bm.param_bytes(unet), **{family: bm.param_bytes(m) for family, m in motions.items()}}
    flops = count_flops(cfg)
    floors = {family: flops[family] / flops["bare"] for family in FAMILIES}
    return {"config": asdict(cfg), "environment": bm.environment(cfg), "samples_ms": samples, "summary_ms": summary,
            "r_mm": ratios, "flops": flops, "flop_floor": floors, "memory": memory, "failed": failed, "weights_bytes": weights,
            "unet_parameters": sum(p.numel() for p in unet.parameters())}


def format_report(results: Dict[str, object]) -> str:
    cfg, env = results["config"], results["environment"]
    lines = [f"SDXL motion modules: {env.get('device', cfg['device'])}, torch {env.get('torch')}, {cfg['dtype']}, "
             f"width {cfg['width']}, depths {tuple(cfg['depths'])}, {cfg['clips']} x {cfg['frames']} frames at "
             f"{cfg['size'] * 8} x {cfg['size'] * 8}, {cfg['iters']} interleaved rounds",
             f"  UNet parameters {results['unet_parameters']:,}", "",
             "| variant | median ms | p90 ms | GFLOP | R_mm | FLOP floor |", "|---|---|---|---|---|---|"]
    for name, s in results["summary_ms"].items():
        family = name[2:] if name.startswith("+ ") else None
        ratio = f"{results['r_mm'][family]:.3f}" if family in results["r_mm"] else "1"
        floor = f"{results['flop_floor'][family]:.3f}" if family in results["flop_floor"] else "1"
        gflop = results["flops"][family or "bare"] / 1e9
        lines.append(f"| {name} | {s['median']:.1f} | {s['p90']:.1f} | {gflop:.1f} | {ratio} | {floor} |")
    for name, m in results["memory"].items():
        lines.append(f"  peak above resident, {name}: {bm._gib(m['activations'])}")
    for name, why in results["failed"].items():
        lines.append(f"  {name}: dropped ({why})")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_motion_sdxl", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int)
    p.add_argument("--iters", type=int)
    p.add_argument("--json", dest="json_path")
    args = p.parse_args(argv)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = torch.device(device).type == "cuda"
    cfg = (full_config if cuda else tiny_config)(device=device, threads=args.threads)
    if args.iters:
        cfg = replace(cfg, iters=args.iters)
    results = run_benchmark(cfg, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(format_report(results))
    if args.json_path:
        bm.write_json(results, args.json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
