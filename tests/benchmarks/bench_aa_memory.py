"""Animate Anyone: device memory against the number of frames (a command that prints a table; not a test)::

    python -m tests.benchmarks.bench_aa_memory                     # CUDA if present, else the CPU tiny config
    python -m tests.benchmarks.bench_aa_memory --frames 24,96,300

Per frame count the per-video state is built as the job builds it: the ReferenceNet's bank (one
reference pass), the CLIP embedding, the reference latent, and the pose features through
``PoseFeatures.encode`` from uint8 pose frames (kept on the host, a chunk of frames at a time on
the device). Then one denoiser call over all frames runs the job's way: ``WindowedInnerModel``
with the "reference" schedule (24-frame windows, overlap 4, flat), cond and uncond batched, the
v2-shaped motion module injected, reference attention and the window's pose features per call.

CUDA (SD1.5 widths, 512x768 = latent 64x96, fp16): ``max_memory_allocated`` over the state's
construction and the call, above what the weights take. Goal (issue 11): from 24 to 300 frames it
grows by at most the latents and the call's inputs/outputs (reported as "latents" = x, the fused
output and the cond context, all proportional to the frames). CPU: no allocator peak; the table
prints the structural proxy instead -- bytes of per-video tensors kept on the device for the
whole job, the pose bytes kept on the host, and the most pose bytes one UNet call moves.
"""

import argparse
import gc
import sys
import time
from dataclasses import asdict, replace
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from lib_animate.motion import inject
from lib_animate.reference.pose_features import PoseFeatures
from lib_animate.reference.pose_guider import PUBLISHED_BLOCK_CHANNELS, PoseGuider
from lib_animate.reference.reference_attention import ReferenceNet
from lib_animate.reference.residency import video_state_bytes
from lib_animate.reference.sampling_pass import animate_anyone_pass
from lib_animate.sampling.layout import FrameLayout
from lib_animate.webui.jobs.denoiser import WindowedInnerModel, WindowSchedule
from tests.benchmarks.bench_motion import environment, write_json
from tests.benchmarks.bench_reference import (
    LATENT_CHANNELS, TIMESTEP, RefConfig, build_models, class_level_sdpa, full_config, tiny_config,
)

FRAME_COUNTS = (24, 48, 96, 300)
WINDOW, OVERLAP = 24, 4


def _pose_guider(cfg: RefConfig) -> PoseGuider:
    channels = PUBLISHED_BLOCK_CHANNELS if cfg.width == 320 else (4, 8, 8, 16)
    torch.manual_seed(cfg.seed + 3)
    return PoseGuider(channels, cfg.width).to(cfg.device, cfg.torch_dtype).eval().requires_grad_(False)


def _pose_frames(cfg: RefConfig, frames: int) -> List[np.ndarray]:
    rng = np.random.default_rng(cfg.seed)
    one = rng.integers(0, 256, (cfg.height * 8, cfg.latent_width * 8, 3), dtype=np.uint8)
    return [one] * frames  # the same pixels: the memory, not the content, is measured


class InnerModel:
    """The webui's inner denoiser: ``forward(x, sigma, cond=...)`` calls the UNet."""

    def __init__(self, unet):
        self.unet = unet

    def forward(self, x, sigma, cond):
        return self.unet(x, sigma, context=cond["c_crossattn"][0])


def measure(cfg: RefConfig, frame_counts: Sequence[int] = FRAME_COUNTS, log=print) -> Dict[str, object]:
    cuda = torch.device(cfg.device).type == "cuda"
    denoising, reference, motion = build_models(cfg)
    guider = _pose_guider(cfg)
    net = ReferenceNet(reference)
    rows: Dict[int, Dict[str, object]] = {}
    g = torch.Generator(device="cpu").manual_seed(cfg.seed + 100)
    size = (cfg.height, cfg.latent_width)
    latent = torch.randn(1, LATENT_CHANNELS, *size, generator=g).to(cfg.device, cfg.torch_dtype)
    embeds = torch.randn(1, 1, cfg.context_dim, generator=g).to(cfg.device, cfg.torch_dtype)
    weights = torch.cuda.memory_allocated(cfg.device) if cuda else 0
    for frames in frame_counts:
        log(f"  {frames} frames ...")
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(cfg.device)
        started = time.perf_counter()
        with torch.no_grad():
            pose = PoseFeatures.encode(guider, _pose_frames(cfg, frames), cfg.device, cfg.torch_dtype)
            bank = net.run(latent, embeds)
        entry: Dict[str, object] = dict(video_state_bytes(bank, embeds, latent, pose, WINDOW))
        entry["per_frame_host"] = entry["host"] / frames
        # the windowed call runs everywhere (the CPU checks the path); only CUDA has a peak counter
        layout = FrameLayout(WINDOW)
        schedule = WindowSchedule.named("reference", frames, min(WINDOW, frames), OVERLAP, stride=1, fusion="flat")
        inner = InnerModel(denoising)

        def on_call(window, roles, kwargs, x):
            pose.select_frames(window)
            layout.set_roles(roles)

        wrapper = WindowedInnerModel(schedule, layout, on_call=on_call)
        wrapper.install(inner)
        x = torch.randn(2 * frames, LATENT_CHANNELS, *size, device=cfg.device, dtype=cfg.torch_dtype)
        sigma = torch.full((2 * frames,), TIMESTEP, device=cfg.device, dtype=torch.long)
        context = torch.cat([embeds.expand(frames, -1, -1), torch.zeros(frames, 1, cfg.context_dim, device=cfg.device,
                                                                        dtype=cfg.torch_dtype)])
        # what must grow with the frames: x, the call's output and its float32 fusion accumulator, the context
        entry["latents"] = 2 * x.numel() * x.element_size() + 4 * x.numel() + context.numel() * context.element_size()
        try:
            with torch.no_grad(), class_level_sdpa(), inject(denoising, motion, schedule.length, layout), \
                    animate_anyone_pass(denoising, net, latent, embeds, layout, pose):
                wrapper.begin_forward(0, frames)
                out = inner.forward(x, sigma, cond={"c_crossattn": [context]})
                if cuda:
                    torch.cuda.synchronize(cfg.device)
                entry["finite"] = bool(torch.isfinite(out).all())
                del out
        finally:
            wrapper.remove()
        if cuda:
            entry["peak_above_weights"] = torch.cuda.max_memory_allocated(cfg.device) - weights
        del x, context
        entry["seconds"] = time.perf_counter() - started
        rows[frames] = entry
    result: Dict[str, object] = {"window": WINDOW, "overlap": OVERLAP, "frames": rows}
    if cuda:
        first, last = rows[min(rows)], rows[max(rows)]
        result["peak_growth"] = last["peak_above_weights"] - first["peak_above_weights"]
        result["latents_growth"] = last["latents"] - first["latents"]
    return result


def format_report(result: Dict[str, object], env: Optional[Dict[str, object]] = None, cfg: Optional[Dict[str, object]] = None) -> str:
    lines = ["=" * 100]
    add = lines.append
    add(f"Animate Anyone: memory vs frames, windows of {result['window']} (overlap {result['overlap']}, reference schedule)")
    if env:
        add(f"device: {env['device']}   torch {env['torch']}   {env['date']}")
    if cfg:
        add(f"config: UNet width {cfg['width']}, latent {cfg['latent_width']}x{cfg['height']}, {cfg['dtype']}")
    cuda = "peak_growth" in result
    mb = 2 ** 20
    header = f"  {'frames':>6} {'on device MB':>13} {'pose on host MB':>16} {'pose per call MB':>17} {'call s':>7}"
    header += f" {'peak above weights MB':>22} {'latents MB':>11}" if cuda else ""
    add(header)
    for frames, e in result["frames"].items():
        row = f"  {frames:>6} {e['device'] / mb:>13.3f} {e['host'] / mb:>16.3f} {e['per_call'] / mb:>17.3f} {e['seconds']:>7.1f}"
        row += f" {e['peak_above_weights'] / mb:>22.1f} {e['latents'] / mb:>11.1f}" if cuda else ""
        add(row)
    if cuda:
        add(f"  growth from the fewest to the most frames: peak {result['peak_growth'] / mb:.1f} MB, latents and call "
            f"buffers {result['latents_growth'] / mb:.1f} MB (goal: peak growth <= that)")
    else:
        add("  CPU: no allocator peak counter; proxy: the bytes kept on the device for the whole job do not grow with "
            "the frames, the pose features grow on the host only, one call moves one window's pose features")
    add("=" * 100)
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]] = None):
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_aa_memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--frames", help="comma-separated frame counts (default 24,48,96,300)")
    p.add_argument("--threads", type=int)
    p.add_argument("--json", dest="json_path")
    args = p.parse_args(argv)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    cfg = full_config(device=device) if torch.device(device).type == "cuda" else tiny_config(device=device)
    frames = tuple(int(f) for f in args.frames.split(",")) if args.frames else FRAME_COUNTS
    return cfg, frames, args.threads, args.json_path


def main(argv: Optional[Sequence[str]] = None) -> int:
    cfg, frames, threads, json_path = parse_args(argv)
    if threads:
        torch.set_num_threads(threads)
    env = environment(replace(cfg))
    result = measure(cfg, frames, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(format_report(result, env, asdict(cfg)))
    if json_path:
        write_json({"environment": env, "config": asdict(cfg), "aa_memory_vs_frames": result}, json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
