"""Every benchmark in one process: motion-module overhead and the diffusers peer (bench_motion),
reference attention (bench_reference), peak memory against frames (bench_memory), Animate
Anyone's memory against frames (bench_aa_memory), and on request R_mm on SDXL (bench_motion_sdxl,
``--only sdxl``); one JSON.

    python -m tests.benchmarks.run_all --json OUT.json               # CUDA if present, else CPU tiny
    python -m tests.benchmarks.run_all --device cuda --compile --json "$OUT/bench.json"

On CUDA it runs the issue's configurations (SD1.5 width, fp16 autocast: 2 x 16 frames at
512x512; Animate Anyone 2 x 24 frames at 512x768; 16..64 frames with 16-frame windows at
512x512; Animate Anyone 24..300 frames with 24-frame windows at 512x768), planned to finish
in about 4 minutes on an H100 including the model builds;
``--compile`` adds the regionally compiled motion modules, whose compile is extra (about one
to three minutes, excluded from the timings). The CPU tiny configuration prints the same
tables for information only.
"""

import argparse
import gc
import sys
import time
from dataclasses import asdict, replace
from typing import Dict, Optional, Sequence

import torch

from tests.benchmarks import bench_aa_memory, bench_memory, bench_motion, bench_motion_sdxl, bench_reference


DEFAULT_SECTIONS = ("motion", "reference", "memory", "aa_memory")
ALL_SECTIONS = DEFAULT_SECTIONS + ("sdxl",)  # sdxl: SDXL at 1024 x 1024 on CUDA, about 2 minutes more (gpu_run.sh sdxl)


def _release(device: str) -> None:
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def run_all(device: str, threads: Optional[int] = None, compile: bool = False, sections: Sequence[str] = DEFAULT_SECTIONS,
            log=print, motion_overrides: Optional[dict] = None, reference_overrides: Optional[dict] = None,
            memory_frames: Optional[Sequence[int]] = None) -> Dict[str, object]:
    cuda = torch.device(device).type == "cuda"
    results: Dict[str, object] = {"sections": list(sections), "section_s": {}}
    started = time.perf_counter()
    saved_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        if "motion" in sections:
            log("== motion modules ==")
            t0 = time.perf_counter()
            make = bench_motion.full_config if cuda else bench_motion.tiny_config
            cfg = make(device=device, compile=compile, **(motion_overrides or {}))
            results["motion"] = bench_motion.run_benchmark(cfg, log=log)
            results["section_s"]["motion"] = time.perf_counter() - t0
            _release(device)
        if "reference" in sections:
            log("== reference attention ==")
            t0 = time.perf_counter()
            make = bench_reference.full_config if cuda else bench_reference.tiny_config
            results["reference"] = bench_reference.run_benchmark(make(device=device, **(reference_overrides or {})), log=log)
            results["section_s"]["reference"] = time.perf_counter() - t0
            _release(device)
        if "memory" in sections:
            log("== peak memory vs frames ==")
            t0 = time.perf_counter()
            cfg = bench_motion.full_config(device=device) if cuda else bench_motion.tiny_config(device=device)
            cfg = replace(cfg, **(motion_overrides or {}))
            results["memory_vs_frames"] = {
                "config": asdict(cfg), "environment": bench_motion.environment(cfg),
                "result": bench_memory.measure(cfg, memory_frames or bench_memory.FRAME_COUNTS, log=log),
            }
            results["section_s"]["memory"] = time.perf_counter() - t0
            _release(device)
        if "sdxl" in sections:
            log("== SDXL motion modules ==")
            t0 = time.perf_counter()
            make = bench_motion_sdxl.full_config if cuda else bench_motion_sdxl.tiny_config
            results["sdxl"] = bench_motion_sdxl.run_benchmark(make(device=device), log=log)
            results["section_s"]["sdxl"] = time.perf_counter() - t0
            _release(device)
        if "aa_memory" in sections:
            log("== Animate Anyone memory vs frames ==")
            t0 = time.perf_counter()
            cfg = (bench_reference.full_config if cuda else bench_reference.tiny_config)(device=device)
            results["aa_memory_vs_frames"] = {
                "config": asdict(cfg), "environment": bench_motion.environment(cfg),
                "result": bench_aa_memory.measure(cfg, log=log),
            }
            results["section_s"]["aa_memory"] = time.perf_counter() - t0
            _release(device)
    finally:
        torch.set_num_threads(saved_threads)
    results["elapsed_s"] = time.perf_counter() - started
    return results


def format_report(results: Dict[str, object]) -> str:
    parts = []
    if "motion" in results:
        parts.append(bench_motion.format_report(results["motion"]))
    if "reference" in results:
        parts.append(bench_reference.format_report(results["reference"]))
    if "memory_vs_frames" in results:
        m = results["memory_vs_frames"]
        parts.append(bench_memory.format_report(m["result"], m["environment"], m["config"]))
    if "sdxl" in results:
        parts.append(bench_motion_sdxl.format_report(results["sdxl"]))
    if "aa_memory_vs_frames" in results:
        m = results["aa_memory_vs_frames"]
        parts.append(bench_aa_memory.format_report(m["result"], m["environment"], m["config"]))
    parts.append("sections: " + ", ".join(f"{k} {v:.0f} s" for k, v in results["section_s"].items())
                 + f"; total {results['elapsed_s']:.0f} s")
    return "\n".join(parts)


def parse_args(argv: Optional[Sequence[str]] = None):
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.run_all", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, help="torch CPU threads (CPU runs on a busy machine: 1)")
    p.add_argument("--compile", action="store_true", help="also time the regionally compiled motion modules")
    p.add_argument("--only", help=f"comma-separated sections: {', '.join(ALL_SECTIONS)} (default: {', '.join(DEFAULT_SECTIONS)})")
    p.add_argument("--json", dest="json_path", help="write every number of every section here")
    args = p.parse_args(argv)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda was requested but CUDA is not available")
    sections = tuple(s.strip() for s in args.only.split(",")) if args.only else DEFAULT_SECTIONS
    unknown = [s for s in sections if s not in ALL_SECTIONS]
    if unknown:
        p.error(f"unknown sections {unknown}")
    return device, args.threads, args.compile, sections, args.json_path


def main(argv: Optional[Sequence[str]] = None) -> int:
    device, threads, compile, sections, json_path = parse_args(argv)
    results = run_all(device, threads, compile, sections, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(format_report(results))
    if json_path:
        bench_motion.write_json(results, json_path)
        print(f"wrote {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
