"""Reference-attention benchmark: R_ref = t(denoiser step with reference) / t(same step without).

A command that prints a table (and optionally writes JSON); it is not a timed test::

    python -m tests.benchmarks.bench_reference                 # CUDA if present, else the CPU tiny config
    python -m tests.benchmarks.bench_reference --device cpu    # force the CPU tiny config

The denoising step is what the Animate Anyone mode runs: the mode's UNet class
(``AnimateAnyoneUNet``) with a v2-shaped motion module injected and pose features added after
its first conv, called on cond and uncond clips in one batch (CFG batched; cond rows get the
CLIP image embedding as context, uncond rows zeros). "with reference" adds
``attend_to_reference`` with the bank of one ReferenceNet run, in its generic form (every cond
row calls the installed attn1 with [own; reference] tokens) and its fast form (reference K/V
cached per block, SDPA); "two calls" runs the same rows as a cond call and an uncond call, the
webui's layout without batched cond/uncond, where no uncond-identity work is needed.

As in the webui with ``--opt-sdp-attention``, ldm's ``CrossAttention.forward`` is replaced at
class level (for the duration of the run) by an SDPA forward; on CUDA the models hold fp16
weights and run under ``torch.autocast`` fp16. Weights are random and seeded; nothing is
downloaded. Timing protocol as in ``bench_motion`` (interleaved rounds, medians, p90).
"""

import argparse
import contextlib
import gc
import sys
import time
from dataclasses import asdict, dataclass, replace
from typing import Dict, Optional, Sequence

import torch
from torch import nn

from lib_animate.motion import MotionModel, full_width_spec, inject
from lib_animate.reference.convert import UNetLayout
from lib_animate.reference.pose_features import PoseFeatures, inject_pose_features
from lib_animate.reference.reference_attention import ReferenceNet, attend_to_reference
from lib_animate.reference.sampling_pass import animate_anyone_pass
from lib_animate.reference.unet import build_unet
from lib_animate.sampling.layout import COND, UNCOND, FrameLayout
from tests.benchmarks.bench_motion import (
    CPU_HALF_MESSAGE, DTYPES, Variant, autocast_context, environment, is_cuda, load_average, measure_interleaved, measure_peak_memory,
    rel_l2, sdpa_cross_attention_forward, summarize, synchronize, torch_threads,
)

LATENT_CHANNELS = 4
TIMESTEP = 601


@dataclass
class RefConfig:
    device: str = "cpu"
    dtype: str = "fp32"
    width: int = 32  # model_channels (SD1.5: 320)
    context_dim: int = 64  # CLIP image embedding width (the release: 768)
    frames: int = 24
    height: int = 16  # latent rows (96 = 768 px)
    latent_width: int = 12  # latent columns (64 = 512 px)
    iters: int = 8
    warmup: int = 2
    steps_per_pass: int = 3  # UNet calls in the sampling pass that counts ReferenceNet runs
    flops: bool = True
    memory: bool = True
    threads: Optional[int] = None
    seed: int = 0

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def half(self) -> bool:
        return self.torch_dtype in (torch.float16, torch.bfloat16)


def tiny_config(**overrides) -> RefConfig:
    return replace(RefConfig(), **overrides)


def full_config(**overrides) -> RefConfig:
    """SD1.5 width, 24 frames at 512x768 (latent 64 wide, 96 high): the issue's R_ref configuration."""
    base = RefConfig(device="cuda", dtype="fp16", width=320, context_dim=768, height=96, latent_width=64, iters=10, warmup=2)
    return replace(base, **overrides)


@contextlib.contextmanager
def class_level_sdpa():
    """ldm CrossAttention.forward = an SDPA forward, at class level as the webui's optimisation
    does (an instance-level patch would look like a third-party wrapper to the fast path)."""
    from ldm.modules.attention import CrossAttention

    saved = CrossAttention.forward
    CrossAttention.forward = sdpa_cross_attention_forward
    try:
        yield
    finally:
        CrossAttention.forward = saved


def _layout(cfg: RefConfig) -> UNetLayout:
    return UNetLayout(in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS, model_channels=cfg.width,
                      channel_mult=(1, 2, 4, 4), num_res_blocks=2, attention_levels=(0, 1, 2), transformer_depth=1,
                      linear_projection=False, context_dim=cfg.context_dim)


def _seeded(module: nn.Module, seed: int) -> nn.Module:
    """ldm zero-initialises output convs and projections; give them small random values so the
    reference attention changes the output (the weights are random anyway)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.device.type != "meta" and torch.count_nonzero(p) == 0:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return module


def build_models(cfg: RefConfig, device=None):
    device = device or cfg.device
    torch.manual_seed(cfg.seed)
    denoising = _seeded(build_unet(_layout(cfg), device=device), cfg.seed + 1)
    reference = _seeded(build_unet(_layout(cfg), with_output=False, device=device), cfg.seed + 2)
    with torch.device(device):
        motion = MotionModel(full_width_spec("v2", cfg.width), name="random v2")
    dtype = cfg.torch_dtype
    return (denoising.to(dtype).eval().requires_grad_(False), reference.to(dtype).eval().requires_grad_(False),
            motion.to(dtype).eval().requires_grad_(False))


def make_inputs(cfg: RefConfig, device=None):
    device = device or cfg.device
    g = torch.Generator(device="cpu").manual_seed(cfg.seed + 100)
    rows, size = 2 * cfg.frames, (cfg.height, cfg.latent_width)
    x = torch.randn(rows, LATENT_CHANNELS, *size, generator=g)
    embeds = torch.randn(1, 1, cfg.context_dim, generator=g)
    context = torch.cat([embeds.expand(cfg.frames, -1, -1), torch.zeros(cfg.frames, 1, cfg.context_dim)])  # cond, uncond
    reference_latent = torch.randn(1, LATENT_CHANNELS, *size, generator=g)
    pose = torch.randn(cfg.frames, cfg.width, *size, generator=g) * 0.1
    t = torch.full((rows,), TIMESTEP, dtype=torch.long)
    to = dict(device=device)
    return (x.to(**to, dtype=cfg.torch_dtype), t.to(**to), context.to(**to, dtype=cfg.torch_dtype),
            reference_latent.to(**to), embeds.to(**to), PoseFeatures(pose.to(**to, dtype=cfg.torch_dtype)))


def count_flops(cfg: RefConfig) -> Dict[str, float]:
    """FLOPs of one batched-CFG step without / with reference attention (generic and fast), on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    denoising, reference, motion = build_models(replace(cfg, dtype="fp32"), device="meta")
    x, t, context, latent, embeds, pose = make_inputs(replace(cfg, dtype="fp32"), device="meta")
    layout = FrameLayout(cfg.frames, (COND, UNCOND))
    out = {}
    with class_level_sdpa(), torch.no_grad(), inject(denoising, motion, cfg.frames, layout), inject_pose_features(denoising, pose, layout):
        bank = ReferenceNet(reference).run(latent, embeds)
        for name, setup in (("no reference", contextlib.nullcontext),
                            ("reference generic", lambda: attend_to_reference(denoising, bank, layout)),
                            ("reference fast", lambda: attend_to_reference(denoising, bank, layout, fast=True))):
            with setup():
                denoising(x, t, context=context)  # the fast path's once-per-pass reference K/V is not per-step work
                with FlopCounterMode(display=False) as counter:
                    denoising(x, t, context=context)
            out[name] = float(counter.get_total_flops())
        frames = cfg.frames
        with attend_to_reference(denoising, bank, layout, fast=True), FlopCounterMode(display=False) as counter:
            for role, rows in ((COND, slice(0, frames)), (UNCOND, slice(frames, 2 * frames))):
                layout.set_roles((role,))
                denoising(x[rows], t[rows], context=context[rows])
        out["reference fast, two calls"] = float(counter.get_total_flops())
        with FlopCounterMode(display=False) as counter:
            ReferenceNet(reference).run(latent, embeds)
        out["ReferenceNet run"] = float(counter.get_total_flops())
    return out


def run_benchmark(cfg: RefConfig, log=print) -> Dict[str, object]:
    with torch_threads(cfg.threads):
        return _run(cfg, log)


def _run(cfg: RefConfig, log) -> Dict[str, object]:
    if cfg.half and not is_cuda(cfg):
        raise ValueError(CPU_HALF_MESSAGE)
    started = time.perf_counter()
    results: Dict[str, object] = {"config": asdict(cfg), "environment": environment(cfg)}
    if is_cuda(cfg):
        torch.backends.cuda.matmul.allow_tf32 = True  # as the webui
        torch.backends.cudnn.allow_tf32 = True
    if cfg.flops:
        log("counting FLOPs on the meta device ...")
        results["flops"] = count_flops(cfg)

    log("building models ...")
    t0 = time.perf_counter()
    denoising, reference, motion = build_models(cfg)
    x, t, context, latent, embeds, pose = make_inputs(cfg)
    synchronize(cfg)
    results["build_s"] = time.perf_counter() - t0
    frames = cfg.frames
    layout = FrameLayout(frames, (COND, UNCOND))
    net = ReferenceNet(reference)

    with class_level_sdpa(), inject(denoising, motion, frames, layout), inject_pose_features(denoising, pose, layout):
        with autocast_context(cfg):
            bank = net.run(latent, embeds)

        def step():
            layout.set_roles((COND, UNCOND))
            with torch.no_grad(), autocast_context(cfg):
                return denoising(x, t, context=context)

        def two_calls():
            outs = []
            with torch.no_grad(), autocast_context(cfg):
                for role, rows in ((COND, slice(0, frames)), (UNCOND, slice(frames, 2 * frames))):
                    layout.set_roles((role,))
                    outs.append(denoising(x[rows], t[rows], context=context[rows]))
            layout.set_roles((COND, UNCOND))
            return torch.cat(outs)

        def reference_on(fast: bool):
            return lambda: attend_to_reference(denoising, bank, layout, fast=fast)

        variants = [
            Variant("step, no reference", step),
            Variant("step + reference, generic", step, reference_on(False), note="attn1 on [own; reference] tokens per cond row"),
            Variant("step + reference, fast", step, reference_on(True), note="reference K/V cached per block, SDPA"),
            Variant("two calls, no reference", two_calls),
            Variant("two calls + reference, fast", two_calls, reference_on(True), note="cond call + uncond call"),
        ]
        log(f"timing {len(variants)} variants, {cfg.warmup} warm-up + {cfg.iters} interleaved rounds ...")
        t0, cpu0 = time.perf_counter(), time.process_time()
        samples, failed = measure_interleaved(cfg, variants, cfg.iters, cfg.warmup, log=log)
        results["timing_s"] = time.perf_counter() - t0
        if not is_cuda(cfg):
            results["environment"]["cpu_share_while_timing"] = (
                (time.process_time() - cpu0) / results["timing_s"] / torch.get_num_threads())
        results["timings_ms"] = samples
        results["failed_variants"] = failed
        results["notes"] = {v.name: v.note for v in variants if v.note}
        summary = {name: summarize(values) for name, values in samples.items()}
        results["summary_ms"] = summary
        results["ratios"] = ratios(samples, summary)

        log("numerical checks and ReferenceNet runs ...")
        plain = step().float()
        with attend_to_reference(denoising, bank, layout) as generic_handle:
            generic = step().float()
        with attend_to_reference(denoising, bank, layout, fast=True) as fast_handle:
            fast = step().float()
        uncond = slice(frames, 2 * frames)
        results["numerics"] = {
            "rel L2 fast vs generic": rel_l2(fast, generic),
            "rel L2 reference effect on cond rows": rel_l2(generic[:frames], plain[:frames]),
            "rel L2 uncond rows vs no reference (generic)": rel_l2(generic[uncond], plain[uncond]),
            "rel L2 uncond rows vs no reference (fast)": rel_l2(fast[uncond], plain[uncond]),
            "finite": bool(torch.isfinite(fast).all() and torch.isfinite(generic).all()),
            "blocks on the fast path": f"{len(fast_handle.fast_paths)} of {len(fast_handle.fast_paths) + len(fast_handle.generic_reasons)}",
        }
        del generic_handle
        results["reference_net"] = reference_net_runs(cfg, denoising, reference, x, t, context, latent, embeds, layout, pose)

        if cfg.memory and is_cuda(cfg):
            log("peak memory ...")
            results["memory"] = {
                v.name: measure_peak_memory(cfg, v.run, v.setup) for v in variants if v.name not in failed
            }
        else:
            results["memory"] = None
    results["environment"]["load_average_end"] = load_average()
    results["elapsed_s"] = time.perf_counter() - started
    return results


def reference_net_runs(cfg, denoising, reference, x, t, context, latent, embeds, layout, pose) -> Dict[str, object]:
    """One sampling pass of ``steps_per_pass`` batched steps (the motion module and pose hook are
    already on): how many ReferenceNet runs it makes and what one run costs next to a step."""
    net = ReferenceNet(reference)
    forward_calls = []
    handle = reference.register_forward_pre_hook(lambda *a: forward_calls.append(1))
    try:
        with autocast_context(cfg), torch.no_grad():
            with animate_anyone_pass(denoising, net, latent, embeds, layout):
                for _ in range(cfg.steps_per_pass):
                    layout.set_roles((COND, UNCOND))
                    denoising(x, t, context=context)
    finally:
        handle.remove()
    timings = []
    for _ in range(3):
        gc.collect()
        synchronize(cfg)
        started = time.perf_counter()
        with autocast_context(cfg):
            ReferenceNet(reference).run(latent, embeds)
        synchronize(cfg)
        timings.append((time.perf_counter() - started) * 1000.0)
    return {"unet_calls_in_pass": cfg.steps_per_pass, "runs_per_pass": net.runs, "reference_unet_forwards": len(forward_calls),
            "run_ms": summarize(timings[1:])}  # the first run warms up


def ratios(samples, summary) -> Dict[str, object]:
    import statistics

    from tests.benchmarks.bench_motion import percentile

    def ratio(a, b):
        if a not in summary or b not in summary:
            return None
        paired = [p / q for p, q in zip(samples[a], samples[b])]
        return {"ratio_of_medians": summary[a]["median"] / summary[b]["median"],
                "paired_median": statistics.median(paired), "paired_p90": percentile(paired, 90)}

    out = {
        "R_ref generic": ratio("step + reference, generic", "step, no reference"),
        "R_ref fast": ratio("step + reference, fast", "step, no reference"),
        "fast / generic": ratio("step + reference, fast", "step + reference, generic"),
        "R_ref fast, two calls": ratio("two calls + reference, fast", "two calls, no reference"),
        "two calls / one batched call, no reference": ratio("two calls, no reference", "step, no reference"),
    }
    return {k: v for k, v in out.items() if v is not None}


def format_report(results: Dict[str, object]) -> str:
    cfg, env = results["config"], results["environment"]
    lines = []
    add = lines.append
    add("=" * 100)
    add(f"Reference-attention benchmark, {env['date']}")
    add(f"device: {env['device']}   torch {env['torch']}   python {env['python']}")
    if "cpu_share_while_timing" in env:
        add(f"CPU threads {env['torch_threads']}, CPU share while timing {env['cpu_share_while_timing']:.2f}, "
            f"load average at start {env['load_average_start']}, at end {env.get('load_average_end')} (CPU numbers are informational only)")
    dtype = cfg["dtype"] + (" weights, torch.autocast " + cfg["dtype"] if cfg["dtype"] != "fp32" else "")
    add(f"config: AnimateAnyoneUNet SD1.5 layout, model_channels {cfg['width']}, context {cfg['context_dim']} x 1 token, "
        f"latent {cfg['latent_width']}x{cfg['height']} ({cfg['latent_width'] * 8}x{cfg['height'] * 8} px), 2 x {cfg['frames']} frames "
        f"(cond + uncond), v2-shaped motion module, pose features, {dtype}, ldm attention = SDPA (class level)")
    add(f"build {results.get('build_s', 0):.1f} s; timing {results.get('timing_s', 0):.1f} s; total {results.get('elapsed_s', 0):.1f} s")
    flops = results.get("flops") or {}
    summary = results.get("summary_ms", {})
    base = summary.get("step, no reference", {}).get("median")
    add("")
    add(f"Per denoiser step: {cfg['warmup']} warm-up excluded, {cfg['iters']} interleaved rounds")
    add(f"  {'variant':<40} {'median ms':>10} {'p90 ms':>9} {'/ no ref':>9} {'GFLOP':>9}")
    flop_of = {"step, no reference": "no reference", "step + reference, generic": "reference generic",
               "step + reference, fast": "reference fast", "two calls, no reference": "no reference",
               "two calls + reference, fast": "reference fast, two calls"}
    for name, stats in summary.items():
        gflop = flops.get(flop_of.get(name, ""), None)
        add(f"  {name:<40} {stats['median']:>10.2f} {stats['p90']:>9.2f} {stats['median'] / base:>9.3f}"
            + (f" {gflop / 1e9:>9.1f}" if gflop else ""))
    for name, note in (results.get("notes") or {}).items():
        add(f"    {name}: {note}")
    for name, why in (results.get("failed_variants") or {}).items():
        add(f"  {name}: FAILED - {why}")
    add("")
    add("Ratios (ratio of medians; paired = median over rounds of a_i / b_i)")
    for name, r in results.get("ratios", {}).items():
        add(f"  {name:<44} {r['ratio_of_medians']:>7.3f}   paired {r['paired_median']:.3f} (p90 {r['paired_p90']:.3f})")
    if flops:
        add(f"  FLOP floor with / without reference: generic {flops['reference generic'] / flops['no reference']:.3f}, "
            f"fast {flops['reference fast'] / flops['no reference']:.3f}, "
            f"two calls {flops['reference fast, two calls'] / flops['no reference']:.3f} "
            f"(a batched call computes each row once, as two calls do)")
    ref = results.get("reference_net") or {}
    if ref:
        add("")
        add(f"ReferenceNet: {ref['runs_per_pass']} run(s) and {ref['reference_unet_forwards']} reference-UNet forward(s) in a sampling "
            f"pass of {ref['unet_calls_in_pass']} batched UNet calls; one run {ref['run_ms']['median']:.1f} ms"
            + (f" ({100 * ref['run_ms']['median'] / base:.0f} % of a step without reference)" if base else "")
            + (f"; {flops['ReferenceNet run'] / 1e9:.1f} GFLOP" if flops else ""))
    add("")
    add("Numerics")
    for name, value in (results.get("numerics") or {}).items():
        add(f"  {name:<60} {value:.3e}" if isinstance(value, float) else f"  {name:<60} {value}")
    memory = results.get("memory")
    add("")
    if not memory:
        add("Peak memory: n/a (" + ("CPU run: torch's CPU allocator has no peak counter" if "cuda" not in env else "disabled") + ")")
    else:
        add("Peak memory per step (torch.cuda.max_memory_allocated; activations = peak - allocated before the call)")
        for name, m in memory.items():
            add(f"  {name:<40} activations {m['activations'] / 2 ** 30:.2f} GiB, raw peak {m['peak'] / 2 ** 30:.2f} GiB")
    add("=" * 100)
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]] = None):
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_reference", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda or cuda:N")
    p.add_argument("--frames", type=int)
    p.add_argument("--size", help="latent WIDTHxHEIGHT, e.g. 64x96 for 512x768 (CPU default 12x16)")
    p.add_argument("--model-width", type=int, help="model_channels (CPU default 32, CUDA 320)")
    p.add_argument("--dtype", choices=sorted(DTYPES))
    p.add_argument("--iters", type=int)
    p.add_argument("--warmup", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--no-flops", action="store_true")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--json", dest="json_path")
    args = p.parse_args(argv)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = torch.device(device).type == "cuda"
    if cuda and not torch.cuda.is_available():
        p.error("--device cuda was requested but CUDA is not available")
    cfg = full_config(device=device) if cuda else tiny_config(device=device)
    if args.size:
        w, h = (int(v) for v in args.size.lower().split("x"))
        cfg = replace(cfg, latent_width=w, height=h)
    overrides = {"frames": args.frames, "width": args.model_width, "dtype": args.dtype, "iters": args.iters,
                 "warmup": args.warmup, "threads": args.threads}
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None}, flops=not args.no_flops, memory=not args.no_memory)
    if cfg.half and not cuda:
        p.error(CPU_HALF_MESSAGE)
    return cfg, args.json_path


def main(argv: Optional[Sequence[str]] = None) -> int:
    from tests.benchmarks.bench_motion import write_json

    cfg, json_path = parse_args(argv)
    results = run_benchmark(cfg, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(format_report(results))
    if json_path:
        write_json(results, json_path)
        print(f"wrote {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
