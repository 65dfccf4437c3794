"""Smoke test of the motion benchmark command on a minimal CPU config (no timing is asserted)."""

import json
import math

import pytest

from tests.benchmarks import bench_motion

pytest.importorskip("diffusers", reason="diffusers (test-only peer) is not installed")


def test_benchmark_runs_and_reports_finite_ratios(tmp_path):
    cfg = bench_motion.tiny_config(
        size=8, frames=2, clips=2, tokens=5, iters=1, warmup=0, versions=("v1", "v2"), ceilings=False,
        flops=False, threads=1,  # steady on a busy machine; restored afterwards
    )
    results = bench_motion.run_benchmark(cfg, log=lambda message: None)

    for key in ("R_mm v1", "R_mm v2", "ours + v2 / diffusers + v2", "diffusers R_mm v2",
                "chunked (forced) / unchunked (engine)"):
        assert math.isfinite(results["ratios"][key]["ratio_of_medians"]), key
    # The comparison is only honest if the peer computes the same function.
    assert results["numerics"]["rel L2 ours + v2 vs diffusers per-frame norm"] <= 1e-4
    assert results["numerics"]["ours + v1 finite"] and results["numerics"]["ours + v2 finite"]
    assert results["memory"] is None  # CPU: no peak-memory counter, no invented numbers

    path = tmp_path / "bench.json"
    bench_motion.write_json(results, str(path))
    data = json.loads(path.read_text())
    for key in ("config", "environment", "timings_ms", "summary_ms", "ratios", "numerics", "chunking"):
        assert key in data, key
    assert data["environment"]["torch"]
    assert len(data["timings_ms"]["ours bare"]) == 1
    report = bench_motion.format_report(results)
    assert "R_mm v2" in report and "Peak memory: n/a" in report


def test_command_line_defaults_to_the_tiny_cpu_config():
    cfg, json_path = bench_motion.parse_args(["--device", "cpu"])
    assert (cfg.width, cfg.dtype, cfg.rows, json_path) == (32, "fp32", 32, None)
    full, _ = bench_motion.parse_args(["--device", "cpu", "--full-width", "--frames", "4"])
    assert (full.width, full.context_dim, full.dtype, full.frames) == (320, 768, "fp32", 4)


def test_reference_benchmark_runs_and_keeps_its_invariants():
    from tests.benchmarks import bench_reference

    cfg = bench_reference.tiny_config(frames=2, height=8, latent_width=8, iters=1, warmup=0, threads=1, steps_per_pass=2)
    results = bench_reference.run_benchmark(cfg, log=lambda message: None)

    for key in ("R_ref generic", "R_ref fast", "fast / generic", "R_ref fast, two calls"):
        assert math.isfinite(results["ratios"][key]["ratio_of_medians"]), key
    numerics = results["numerics"]
    assert numerics["rel L2 uncond rows vs no reference (generic)"] <= 1e-6
    assert numerics["rel L2 uncond rows vs no reference (fast)"] <= 1e-6
    assert numerics["rel L2 fast vs generic"] <= 1e-5 and numerics["finite"]
    assert numerics["blocks on the fast path"] == "16 of 16"
    assert results["reference_net"]["runs_per_pass"] == 1 and results["reference_net"]["reference_unet_forwards"] == 1
    flops = results["flops"]
    assert flops["reference fast"] < flops["reference generic"]
    assert flops["reference fast"] <= flops["reference fast, two calls"]  # batched: each row once, as two calls do
    assert results["memory"] is None
    assert "R_ref fast" in bench_reference.format_report(results)


def test_memory_benchmark_and_the_one_json_command(tmp_path):
    from tests.benchmarks import run_all

    results = run_all.run_all("cpu", threads=1, sections=("memory",), log=lambda message: None,
                              motion_overrides=dict(size=8, tokens=5), memory_frames=(16, 20))
    frames = results["memory_vs_frames"]["result"]["frames"]
    assert (frames[16]["unet_calls"], frames[20]["unet_calls"]) == (1, 2)  # one window, then two
    assert frames[16]["rows_per_unet_call"] == frames[20]["rows_per_unet_call"] == 32
    assert all(e["finite"] and "peak" not in e for e in frames.values())  # CPU: no invented numbers
    report = run_all.format_report(results)
    assert "n/a" in report and "proxy" in report
    path = tmp_path / "all.json"
    bench_motion.write_json(results, str(path))
    assert json.loads(path.read_text())["memory_vs_frames"]["result"]["window"] == 16
    assert run_all.parse_args(["--device", "cpu", "--only", "reference,memory"])[3] == ("reference", "memory")


def test_animate_anyone_memory_benchmark_prints_a_flat_device_proxy():
    from tests.benchmarks import bench_aa_memory, bench_reference

    cfg = bench_reference.tiny_config(height=8, latent_width=8, threads=1)
    result = bench_aa_memory.measure(cfg, (6, 30), log=lambda message: None)
    rows = result["frames"]
    assert rows[6]["device"] == rows[30]["device"] > 0  # per-video state on the device: flat in the frames
    assert rows[30]["host"] == 5 * rows[6]["host"] > 0  # the pose features grow on the host only
    assert rows[30]["per_call"] == 24 * rows[30]["host"] // 30  # one call moves one window's features
    assert rows[6]["finite"] and rows[30]["finite"]  # the windowed call ran (a wrapped window at 30 frames)
    assert "peak_growth" not in result  # CPU: no allocator peak, no invented number
    assert "proxy" in bench_aa_memory.format_report(result)


def test_the_sdxl_benchmarks_unet_is_sdxls_and_the_command_reports_finite_ratios(tmp_path):
    """At full width the benchmark's ldm UNet in SDXL's layout (per-level transformer depths 2/10, the vector
    embedding) has exactly the parameters of diffusers' SDXL base UNet, so the bare UNet costs what SDXL's
    does; the tiny run reports a finite R_mm per family and writes its JSON."""
    import diffusers
    import torch

    from tests.benchmarks import bench_motion_sdxl, run_all

    with torch.device("meta"):
        ours = bench_motion_sdxl.sdxl_unet()
        sdxl = diffusers.UNet2DConditionModel(
            sample_size=128, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), block_out_channels=(320, 640, 1280),
            layers_per_block=2, cross_attention_dim=2048, transformer_layers_per_block=[1, 2, 10],
            attention_head_dim=[5, 10, 20], use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in sdxl.parameters()) == 2_567_463_684

    cfg = bench_motion_sdxl.tiny_config(size=8, frames=2, tokens=5, iters=1, warmup=0, threads=1)
    results = bench_motion_sdxl.run_benchmark(cfg, log=lambda message: None)
    assert set(results["r_mm"]) == {"sdxl_beta", "hotshotxl"}
    assert all(math.isfinite(r) and r > 0 for r in results["r_mm"].values())
    assert all(floor > 1 for floor in results["flop_floor"].values())  # the modules add work
    assert results["memory"] == {}  # CPU: no peak-memory counter
    path = tmp_path / "sdxl.json"
    bench_motion.write_json(results, str(path))
    assert json.loads(path.read_text())["r_mm"].keys() == {"sdxl_beta", "hotshotxl"}
    assert "| + hotshotxl |" in bench_motion_sdxl.format_report(results)
    assert run_all.parse_args(["--device", "cpu", "--only", "sdxl,aa_memory"])[3] == ("sdxl", "aa_memory")
