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
