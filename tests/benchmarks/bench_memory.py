"""Peak memory of one denoiser call against the number of frames, with context windows.

A command that prints a table (and optionally writes JSON); it is not a timed test::

    python -m tests.benchmarks.bench_memory                  # CUDA if present, else the CPU tiny config
    python -m tests.benchmarks.bench_memory --frames 16,32,64

The call pattern is the webui's: ``lib_animate.webui.jobs.denoiser.WindowedInnerModel`` wraps the
denoiser's inner model, so one denoiser call over all frames (cond and uncond batched) becomes
one UNet call per context window (16 frames, overlap 4, pyramid fusion: the job's defaults),
with the v2-shaped motion module injected and its frame count set per window. The UNet and
precision are bench_motion's (the webui's ldm UNet, SDPA, fp16 autocast on CUDA).

CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` around one call
(one unmeasured call first); "activations" = peak - memory allocated before the call, which
holds the weights and the call's inputs. The goal (issue 6) is flat within 5 % from 16 to 64
frames: only the latents, the per-frame conditioning and the fused output grow. CPU: torch's
allocator keeps no peak counter, so no memory number is printed; the table shows the
structural proxy instead (rows per UNet call, which bounds the activations), clearly labelled.
"""

import argparse
import gc
import sys
import time
from dataclasses import replace
from typing import Dict, List, Optional, Sequence

import torch

from lib_animate.motion import inject
from lib_animate.sampling.layout import FrameLayout
from lib_animate.webui.jobs.denoiser import WindowedInnerModel, WindowSchedule
from tests.benchmarks.bench_motion import (
    BenchConfig, autocast_context, build_ldm_unet, build_motion_model, environment, full_config, is_cuda, make_inputs,
    synchronize, tiny_config, webui_attention, write_json,
)

FRAME_COUNTS = (16, 24, 32, 48, 64)
WINDOW, OVERLAP = 16, 4


class UNetInnerModel:
    """Stands in for the webui's inner denoiser (``CompVisDenoiser``): ``forward(x, sigma, cond=...)``
    calls the UNet with the rows' timesteps and cross-attention context."""

    def __init__(self, unet, cfg: BenchConfig):
        self.unet, self.cfg = unet, cfg

    def forward(self, x, sigma, cond):
        with torch.no_grad(), autocast_context(self.cfg):
            return self.unet(x, sigma, cond["c_crossattn"][0])


def measure(cfg: BenchConfig, frame_counts: Sequence[int] = FRAME_COUNTS, log=print) -> Dict[str, object]:
    """Peak memory (CUDA) and wall time of one windowed denoiser call per frame count."""
    unet = build_ldm_unet(cfg)
    motion = build_motion_model(cfg, "v2")
    inner = UNetInnerModel(unet, cfg)
    layout = FrameLayout(WINDOW)
    rows: Dict[int, Dict[str, object]] = {}
    with webui_attention(unet, cfg.attention), inject(unet, motion, min(WINDOW, max(frame_counts)), layout):
        for frames in frame_counts:
            log(f"  {frames} frames ...")
            schedule = WindowSchedule(frames, WINDOW, OVERLAP, closed_loop=False, stride=1, fusion="pyramid")
            fcfg = replace(cfg, frames=frames)
            x, t, context = make_inputs(fcfg)
            calls: List[int] = []
            wrapper = WindowedInnerModel(schedule, layout, on_call=lambda window, roles, kwargs, _x: calls.append(len(roles) * len(window or range(frames))))
            wrapper.install(inner)
            try:
                def call():
                    return inner.forward(x, t, cond={"c_crossattn": [context]})

                del calls[:]
                out = call()  # warm-up; also counts the UNet calls and their rows
                entry: Dict[str, object] = {"unet_calls": len(calls), "rows_per_unet_call": max(calls), "input_rows": x.shape[0]}
                del out
                gc.collect()
                synchronize(cfg)
                if is_cuda(cfg):
                    before = torch.cuda.memory_allocated(cfg.device)
                    torch.cuda.reset_peak_memory_stats(cfg.device)
                started = time.perf_counter()
                out = call()
                synchronize(cfg)
                entry["call_ms"] = (time.perf_counter() - started) * 1000.0
                entry["finite"] = bool(torch.isfinite(out).all())
                if is_cuda(cfg):
                    peak = torch.cuda.max_memory_allocated(cfg.device)
                    entry.update(resident_before=before, peak=peak, activations=peak - before)
                del out
            finally:
                wrapper.remove()
            rows[frames] = entry
            del x, t, context
    result: Dict[str, object] = {"window": WINDOW, "overlap": OVERLAP, "frames": rows}
    if is_cuda(cfg):
        peaks = [e["peak"] for e in rows.values()]
        activations = [e["activations"] for e in rows.values()]
        result["peak_max_over_min"] = max(peaks) / min(peaks)
        result["activations_max_over_min"] = max(activations) / min(activations)
    return result


def format_report(result: Dict[str, object], env: Optional[Dict[str, object]] = None, cfg: Optional[Dict[str, object]] = None) -> str:
    lines = ["=" * 100]
    add = lines.append
    add(f"Peak memory vs frames: context window {result['window']} frames, overlap {result['overlap']}, cond + uncond batched, v2 motion module")
    if env:
        add(f"device: {env['device']}   torch {env['torch']}   {env['date']}")
    if cfg:
        add(f"config: ldm UNet model_channels {cfg['width']}, latent {cfg['size']}x{cfg['size']}, {cfg['dtype']}")
    cuda = "peak_max_over_min" in result
    header = f"  {'frames':>6} {'UNet calls':>10} {'rows/call':>9} {'call ms':>9}"
    header += f" {'peak GiB':>9} {'activations GiB':>16}" if cuda else f" {'peak memory':>12}"
    add(header)
    for frames, e in result["frames"].items():
        row = f"  {frames:>6} {e['unet_calls']:>10} {e['rows_per_unet_call']:>9} {e['call_ms']:>9.1f}"
        row += f" {e['peak'] / 2 ** 30:>9.3f} {e['activations'] / 2 ** 30:>16.3f}" if cuda else f" {'n/a':>12}"
        add(row)
    if cuda:
        add(f"  max / min over frame counts: peak {result['peak_max_over_min']:.3f}, activations {result['activations_max_over_min']:.3f} "
            f"(goal: flat within 5 %)")
    else:
        add("  peak memory n/a on the CPU (no allocator peak counter); proxy: rows per UNet call stay at one window's "
            "rows whatever the frame count")
    add("=" * 100)
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]] = None):
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--frames", help="comma-separated frame counts (default 16,24,32,48,64)")
    p.add_argument("--threads", type=int)
    p.add_argument("--json", dest="json_path")
    args = p.parse_args(argv)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = torch.device(device).type == "cuda"
    cfg = full_config(device=device) if cuda else tiny_config(device=device)
    frames = tuple(int(f) for f in args.frames.split(",")) if args.frames else FRAME_COUNTS
    return cfg, frames, args.threads, args.json_path


def main(argv: Optional[Sequence[str]] = None) -> int:
    cfg, frames, threads, json_path = parse_args(argv)
    saved = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        env = environment(cfg)
        result = measure(cfg, frames, log=lambda m: print(m, file=sys.stderr, flush=True))
    finally:
        torch.set_num_threads(saved)
    from dataclasses import asdict

    print(format_report(result, env, asdict(cfg)))
    if json_path:
        write_json({"environment": env, "config": asdict(cfg), "memory_vs_frames": result}, json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
