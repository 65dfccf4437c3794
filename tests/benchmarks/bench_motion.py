"""Motion-engine benchmark: the webui's ldm UNet with our motion modules, bare, and against diffusers.

A command that prints a table (and optionally writes JSON); it is not a timed test. Run from
the repository root::

    python -m tests.benchmarks.bench_motion                     # CUDA if present, else CPU tiny
    python -m tests.benchmarks.bench_motion --device cpu        # force the CPU tiny config
    python -m tests.benchmarks.bench_motion --json OUT.json     # also write every raw timing

Protocol (research/performance.md §6): everything is measured side by side in one process on
one device. All per-step variants are timed interleaved (round i runs every variant once, the
order rotated by one each round), warm-up iterations are excluded, and the table shows the
median and p90 of the per-call times (CUDA events around each call on a GPU, ``perf_counter``
on the CPU). Ratios are ratios of medians.

What runs:

* "ours": the real ldm ``UNetModel`` (sdkit's copy of the webui's ``ldm`` package) at SD1.5
  layout. On CUDA it runs like the webui with ``--opt-sdp-attention``: fp16 weights,
  ``torch.autocast`` fp16, and ldm's ``CrossAttention`` computing attention with
  ``F.scaled_dot_product_attention`` (patched onto the benchmark's UNet instance only). Motion
  modules are put in with ``lib_animate.motion.inject`` on the same UNet instance.
* "diffusers": ``UNet2DConditionModel`` and ``UNetMotionModel`` (v2 layout) holding the same
  weights, converted with diffusers' own ``convert_ldm_unet_checkpoint`` and a ``MotionAdapter``
  loaded from our module's tensors. It runs as diffusers pipelines run it: fp16 weights, no
  autocast, its default attention processor. Its motion GroupNorm normalises across frames;
  the timing leaves that as is, the numerical check wraps it per frame like the originals.

Weights are random and seeded, built directly on the device. Nothing is downloaded.
"""

import argparse
import contextlib
import copy
import datetime
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
import types
from dataclasses import asdict, dataclass, replace
from typing import Callable, ContextManager, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lib_animate.motion import MotionModel, full_width_spec, inject
from lib_animate.motion import model as motion_model_module
from lib_animate.motion.model import sinusoidal_encoding
from tests.support.ldm_unet import SD15_UNET_CONFIG, ldm_unet

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
VERSIONS = ("v1", "v2", "v3")
PEER_VERSION = "v2"  # the layout diffusers' MotionAdapter / UNetMotionModel is compared on
LATENT_CHANNELS = 4
TIMESTEP = 437
CPU_HALF_MESSAGE = (
    "half precision runs only on CUDA: the webui's fp16 path is torch.autocast on CUDA, where group_norm "
    "is upcast with its weights; CPU autocast does not upcast group_norm and ldm's GroupNorm32 fails with "
    "half weights. Use fp32 on the CPU."
)


# --- configuration ------------------------------------------------------------------------------

@dataclass
class BenchConfig:
    device: str = "cpu"
    dtype: str = "fp32"
    width: int = 32  # ldm model_channels (SD1.5: 320)
    context_dim: int = 64  # text-embedding width (SD1.5: 768)
    tokens: int = 77
    size: int = 16  # latent height = width (64 is 512x512)
    frames: int = 16
    clips: int = 2  # 2 = cond and uncond batched in one UNet call (CFG)
    iters: int = 10
    warmup: int = 2
    versions: Sequence[str] = VERSIONS
    diffusers: bool = True
    attention: str = "sdpa"  # "sdpa" (webui --opt-sdp-attention) or "ldm" (sdkit's einsum softmax)
    memory: bool = True
    ceilings: bool = True
    flops: bool = True
    chunk_rows: Optional[int] = None  # rows per launch for the forced-chunking variant
    threads: Optional[int] = None  # torch CPU threads for the run (None: torch's default)
    seed: int = 0
    compile: bool = False  # add "ours + v2 compiled" (lib_animate.motion.compile, regional torch.compile)

    @property
    def rows(self) -> int:
        return self.clips * self.frames

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def half(self) -> bool:
        return self.torch_dtype in (torch.float16, torch.bfloat16)


def tiny_config(**overrides) -> BenchConfig:
    return replace(BenchConfig(), **overrides)


def full_config(**overrides) -> BenchConfig:
    """SD1.5 at 512x512 with 2 x 16 frames: the configuration the performance goals are stated for."""
    base = BenchConfig(device="cuda", dtype="fp16", width=320, context_dim=768, tokens=77, size=64, iters=20, warmup=3)
    return replace(base, **overrides)


# --- small helpers ------------------------------------------------------------------------------

def is_cuda(cfg: BenchConfig) -> bool:
    return torch.device(cfg.device).type == "cuda"


def synchronize(cfg: BenchConfig) -> None:
    if is_cuda(cfg):
        torch.cuda.synchronize(cfg.device)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile, q in [0, 100]."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(values: Sequence[float]) -> Dict[str, float]:
    return {
        "median": statistics.median(values),
        "p90": percentile(values, 90),
        "mean": statistics.fmean(values),
        "min": min(values),
        "n": len(values),
    }


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item()


def autocast_context(cfg: BenchConfig) -> ContextManager:
    """The webui runs the ldm UNet under torch.autocast in its half dtype; fp32 runs without."""
    if not cfg.half:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(cfg.device).type, dtype=cfg.torch_dtype)


def param_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


# --- the webui's SDPA attention, for the benchmark's UNet only --------------------------------

def sdpa_cross_attention_forward(self, x, context=None, mask=None, **kwargs):
    """ldm CrossAttention computed with F.scaled_dot_product_attention, as the webui's
    --opt-sdp-attention does (sdkit's own forward materialises the softmax with einsum)."""
    context = x if context is None else context
    batch, heads = x.shape[0], self.heads

    def split_heads(t):  # (b, n, heads*d) -> (b, heads, n, d), a view
        return t.view(batch, t.shape[1], heads, t.shape[2] // heads).transpose(1, 2)

    q, k, v = split_heads(self.to_q(x)), split_heads(self.to_k(context)), split_heads(self.to_v(context))
    if mask is not None:  # ldm masks are (b, keys) booleans, True = attend
        mask = mask.reshape(batch, 1, 1, -1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    out = out.transpose(1, 2).reshape(batch, -1, heads * out.shape[-1])
    return self.to_out(out)


@contextlib.contextmanager
def webui_attention(unet: nn.Module, mode: str):
    """Patch (instance level) every ldm CrossAttention of ``unet`` to SDPA; undone on exit."""
    patched = []
    if mode == "sdpa":
        for module in unet.modules():
            if type(module).__name__ == "CrossAttention":
                module.forward = types.MethodType(sdpa_cross_attention_forward, module)
                patched.append(module)
    try:
        yield len(patched)
    finally:
        for module in patched:
            del module.forward


@contextlib.contextmanager
def attention_rows_limit(rows: int):
    """Set the motion modules' rows-per-SDPA-launch limit (module global read at call time)."""
    saved = motion_model_module.MAX_ATTENTION_ROWS
    motion_model_module.MAX_ATTENTION_ROWS = rows
    try:
        yield
    finally:
        motion_model_module.MAX_ATTENTION_ROWS = saved


# --- model builds ---------------------------------------------------------------------------------

def build_ldm_unet(cfg: BenchConfig) -> nn.Module:
    with torch.device(cfg.device):
        unet = ldm_unet(model_channels=cfg.width, context_dim=cfg.context_dim, num_heads=8, seed=cfg.seed)
    return unet.to(cfg.torch_dtype).eval()


def random_motion_model(version: str, width: int, device: str, dtype: torch.dtype, seed: int) -> MotionModel:
    """A motion model of family ``version`` at ``width`` with seeded random weights; norm affine parameters
    perturbed so they matter."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = MotionModel(full_width_spec(version, width), name=f"random {version}")
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, (nn.GroupNorm, nn.LayerNorm)):
                    module.weight.normal_(1.0, 0.1)
                    module.bias.normal_(0.0, 0.1)
    return model.to(dtype).eval()


def build_motion_model(cfg: BenchConfig, version: str) -> MotionModel:
    return random_motion_model(version, cfg.width, cfg.device, cfg.torch_dtype, cfg.seed + 1 + VERSIONS.index(version))


def make_inputs(cfg: BenchConfig, rows: Optional[int] = None):
    """(x, timesteps, context) in the ldm layout: each clip's frames contiguous, one context per row."""
    rows = cfg.rows if rows is None else rows
    g = torch.Generator(device=cfg.device).manual_seed(cfg.seed + 100)
    x = torch.randn(rows, LATENT_CHANNELS, cfg.size, cfg.size, generator=g, device=cfg.device).to(cfg.torch_dtype)
    clip_context = torch.randn(rows // cfg.frames, cfg.tokens, cfg.context_dim, generator=g, device=cfg.device)
    context = clip_context.repeat_interleave(cfg.frames, dim=0).to(cfg.torch_dtype)
    t = torch.full((rows,), TIMESTEP, dtype=torch.long, device=cfg.device)
    return x, t, context


class DiffusersPeer:
    """diffusers' UNet2DConditionModel and UNetMotionModel with the ldm UNet's and motion model's weights."""

    def __init__(self, cfg: BenchConfig, unet: nn.Module, motion: MotionModel):
        import diffusers
        from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

        # Quiet its "cast with to()" advice: random weights, nothing to keep in fp32.
        diffusers.utils.logging.set_verbosity_error()
        self.version = diffusers.__version__
        channels = tuple(cfg.width * m for m in SD15_UNET_CONFIG["channel_mult"])
        config = dict(
            sample_size=cfg.size,
            in_channels=LATENT_CHANNELS,
            out_channels=LATENT_CHANNELS,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            block_out_channels=channels,
            layers_per_block=SD15_UNET_CONFIG["num_res_blocks"],
            cross_attention_dim=cfg.context_dim,
            attention_head_dim=SD15_UNET_CONFIG["num_heads"],  # diffusers' SD1.5 name for the head count
            norm_num_groups=32,
        )
        with torch.device(cfg.device):
            unet2d = diffusers.UNet2DConditionModel(**config)
        ldm_state = {"model.diffusion_model." + k: v for k, v in unet.state_dict().items()}
        unet2d.load_state_dict(convert_ldm_unet_checkpoint(ldm_state, unet2d.config), strict=True)
        del ldm_state
        self.unet2d = unet2d.to(cfg.torch_dtype).eval()

        with torch.device(cfg.device):
            adapter = diffusers.MotionAdapter(
                block_out_channels=channels,
                motion_layers_per_block=2,
                motion_mid_block_layers_per_block=1,
                motion_num_attention_heads=8,
                motion_norm_num_groups=32,
                motion_max_seq_length=motion.max_frames,
                use_motion_mid_block=motion.mid_block is not None,
            )
        adapter.load_state_dict(adapter_state(motion), strict=True)
        with torch.device(cfg.device):
            motion_unet = diffusers.UNetMotionModel.from_unet2d(self.unet2d, adapter)
        motion_unet.load_motion_modules(adapter)
        del adapter
        self.motion_unet = motion_unet.to(cfg.torch_dtype).eval()
        processors = {type(p).__name__ for p in self.motion_unet.attn_processors.values()}
        self.attention_processors = sorted(processors)


def adapter_state(motion: MotionModel) -> Dict[str, torch.Tensor]:
    """Our motion model's tensors under diffusers MotionAdapter names (one position encoding per block)."""
    from tests.support.motion_files import to_diffusers_naming

    state = dict(motion.state_dict())
    for slot, module in motion.modules_at("down") + motion.modules_at("mid") + motion.modules_at("up"):
        pe = sinusoidal_encoding(motion.max_frames, module.channels).unsqueeze(0)
        state[f"{slot.prefix}transformer_blocks.0.attention_blocks.0.pos_encoder.pe"] = pe
    return to_diffusers_naming(state)


class PerFrameGroupNorm(nn.Module):
    """diffusers hands its motion GroupNorm (clips, C, frames, H, W); this normalises every frame
    on its own, as the original AnimateDiff SD1.5 modules (and ours) do."""

    def __init__(self, norm: nn.GroupNorm):
        super().__init__()
        self.norm = norm

    def forward(self, x):
        clips, channels, frames, height, width = x.shape
        per_frame = x.transpose(1, 2).reshape(clips * frames, channels, height, width)
        out = self.norm(per_frame)
        return out.reshape(clips, frames, channels, height, width).transpose(1, 2)


@contextlib.contextmanager
def diffusers_per_frame_norm(motion_unet: nn.Module):
    swapped = []
    for module in motion_unet.modules():
        if type(module).__name__ == "AnimateDiffTransformer3D":
            swapped.append((module, module.norm))
            module.norm = PerFrameGroupNorm(module.norm)
    try:
        yield len(swapped)
    finally:
        for module, norm in swapped:
            module.norm = norm


# --- measurement primitives ---------------------------------------------------------------------

@dataclass
class Variant:
    name: str
    run: Callable[[], torch.Tensor]
    setup: Callable[[], ContextManager] = contextlib.nullcontext
    optional: bool = False  # a failure in warm-up drops the variant (recorded) instead of aborting
    note: str = ""


def time_call(cfg: BenchConfig, fn: Callable[[], object]) -> float:
    """Milliseconds for one call: CUDA events between synchronisations, or perf_counter on the CPU."""
    if is_cuda(cfg):
        torch.cuda.synchronize(cfg.device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn()
        end.record()
        torch.cuda.synchronize(cfg.device)
        del out
        return start.elapsed_time(end)
    started = time.perf_counter()
    out = fn()
    elapsed = (time.perf_counter() - started) * 1000.0
    del out
    return elapsed


def measure_interleaved(cfg: BenchConfig, variants: List[Variant], iters: int, warmup: int, log=print):
    """Warm up every variant, then ``iters`` rounds; round i runs every variant once, starting at
    variant i mod n (A/B/A/B with a rotating start so no variant always follows the same one)."""
    failed: Dict[str, str] = {}
    ready: List[Variant] = []
    for variant in variants:
        try:
            with variant.setup():
                for _ in range(warmup):
                    variant.run()
            synchronize(cfg)
            ready.append(variant)
        except RuntimeError as error:
            if not variant.optional:
                raise
            failed[variant.name] = f"{type(error).__name__}: {str(error).splitlines()[0]}"
            log(f"  {variant.name}: failed in warm-up, dropped ({failed[variant.name]})")
            if is_cuda(cfg):
                torch.cuda.synchronize(cfg.device)
    samples: Dict[str, List[float]] = {v.name: [] for v in ready}
    for i in range(iters):
        for j in range(len(ready)):
            variant = ready[(i + j) % len(ready)]
            gc.collect()
            with variant.setup():
                samples[variant.name].append(time_call(cfg, variant.run))
        log(f"  round {i + 1}/{iters} done")
    return samples, failed


def measure_ceilings(cfg: BenchConfig) -> Dict[str, object]:
    """Matmul TFLOP/s and device-copy GB/s in this run (informational on the CPU)."""
    out: Dict[str, object] = {}
    if is_cuda(cfg):
        n, dtypes, copy_bytes, reps = 8192, ("fp16", "bf16"), 1 << 30, 20
    else:
        n, dtypes, copy_bytes, reps = 2048, ("fp32",), 256 << 20, 5
    for name in dtypes:
        a = torch.randn(n, n, device=cfg.device, dtype=DTYPES[name])
        b = torch.randn(n, n, device=cfg.device, dtype=DTYPES[name])
        for _ in range(3):
            torch.mm(a, b)
        times = [time_call(cfg, lambda: torch.mm(a, b)) for _ in range(reps)]
        med = statistics.median(times)
        out[f"matmul_{name}"] = {"n": n, "ms": times, "tflops": 2 * n ** 3 / (med / 1000.0) / 1e12}
        del a, b
    src = torch.empty(copy_bytes // 4, device=cfg.device, dtype=torch.float32).normal_()
    dst = torch.empty_like(src)
    for _ in range(2):
        dst.copy_(src)
    times = [time_call(cfg, lambda: dst.copy_(src)) for _ in range(reps)]
    med = statistics.median(times)
    # A copy reads and writes every byte: 2 x size of traffic.
    out["copy"] = {"bytes": copy_bytes, "ms": times, "gbps": 2 * copy_bytes / (med / 1000.0) / 1e9}
    del src, dst
    if is_cuda(cfg):
        torch.cuda.empty_cache()
    return out


def sdpa_kernel_for(q: torch.Tensor) -> str:
    """The aten attention op F.scaled_dot_product_attention dispatches to for ``q`` (= k = v)."""
    try:
        from torch.profiler import ProfilerActivity, profile

        with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
            F.scaled_dot_product_attention(q, q, q)
        names = sorted({
            e.key for e in prof.key_averages()
            if "attention" in e.key and e.key != "aten::scaled_dot_product_attention"
        })
        return ", ".join(names) or "aten::scaled_dot_product_attention (no inner op recorded)"
    except Exception as error:  # informational only
        return f"unknown ({type(error).__name__})"


def sdpa_info(cfg: BenchConfig) -> Dict[str, object]:
    info: Dict[str, object] = {}
    if is_cuda(cfg):
        for flag in ("flash_sdp_enabled", "mem_efficient_sdp_enabled", "math_sdp_enabled", "cudnn_sdp_enabled"):
            fn = getattr(torch.backends.cuda, flag, None)
            info[flag] = fn() if fn is not None else "n/a in this torch"
    heads = 8
    temporal_rows = min(cfg.size * cfg.size, motion_model_module.MAX_ATTENTION_ROWS)  # one launch per clip
    shapes = {
        "spatial self-attention, level 0": (cfg.rows, heads, cfg.size * cfg.size, cfg.width // heads),
        "temporal attention, level 0": (temporal_rows, heads, cfg.frames, cfg.width // heads),
    }
    kernels = {}
    for label, shape in shapes.items():
        q = torch.randn(*shape, device=cfg.device, dtype=cfg.torch_dtype)
        kernels[label] = {"shape": list(shape), "op": sdpa_kernel_for(q)}
        del q
    info["kernels"] = kernels
    return info


COPY_OPS = ("aten::copy_", "aten::clone", "aten::contiguous", "aten::_to_copy")


def layout_copies(cfg: BenchConfig, motion: MotionModel) -> Dict[str, object]:
    """Copy ops (as the profiler records them, C++ internals included) in one level-0 motion
    module call, for an NCHW and a channels-last input: the frame-major layout should need one
    copy at entry for NCHW, none for channels-last, and SDPA should read its strided views in place."""
    from torch.profiler import ProfilerActivity, profile

    (_, module), = motion.modules_at("down")[:1]
    x = torch.randn(cfg.rows, module.channels, cfg.size, cfg.size, device=cfg.device, dtype=cfg.torch_dtype)
    out: Dict[str, object] = {}
    for label, tensor in (("NCHW input", x), ("channels-last input", x.contiguous(memory_format=torch.channels_last))):
        with torch.no_grad(), autocast_context(cfg):
            module(tensor, cfg.frames)  # warm: the position-encoding cache
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                module(tensor, cfg.frames)
        counts = {e.key: e.count for e in prof.key_averages() if e.key in COPY_OPS}
        attention = sorted({e.key for e in prof.key_averages() if "attention" in e.key and e.key != "aten::scaled_dot_product_attention"})
        addmm = sum(e.count for e in prof.key_averages() if e.key == "aten::addmm")
        out[label] = {"copies": counts, "addmm": addmm, "attention_ops": attention}
    return out


def count_flops(cfg: BenchConfig, versions: Sequence[str]) -> Dict[str, float]:
    """FLOPs of one UNet step (bare and hooked) counted on the meta device, with the same
    attention path as the timed runs. 1 multiply-add = 2 FLOP; SDPA = 4 * Lq * Lk * d per head."""
    from ldm.modules.diffusionmodules.openaimodel import UNetModel
    from torch.utils.flop_counter import FlopCounterMode

    meta = "meta"
    with torch.device(meta):
        unet = UNetModel(**dict(SD15_UNET_CONFIG, model_channels=cfg.width, context_dim=cfg.context_dim)).eval()
        x = torch.empty(cfg.rows, LATENT_CHANNELS, cfg.size, cfg.size)
        t = torch.zeros(cfg.rows, dtype=torch.long)
        context = torch.empty(cfg.rows, cfg.tokens, cfg.context_dim)
    results = {}
    with webui_attention(unet, cfg.attention), torch.no_grad():
        for version in (None,) + tuple(versions):
            setup = contextlib.nullcontext()
            if version is not None:
                with torch.device(meta):
                    motion = MotionModel(full_width_spec(version, cfg.width))
                setup = inject(unet, motion, cfg.frames)
            with setup, FlopCounterMode(display=False) as counter:
                unet(x, t, context)
            results["bare" if version is None else version] = float(counter.get_total_flops())
    return results


def measure_peak_memory(cfg: BenchConfig, run: Callable[[], torch.Tensor], setup: Callable[[], ContextManager]):
    """CUDA: peak bytes allocated during one call, above what was allocated before it. One
    unmeasured call first, so one-time allocations (cuDNN/cuBLAS workspaces) count as they do
    in a running job, not twice."""
    with setup():
        warm = run()
        del warm
        gc.collect()
        torch.cuda.synchronize(cfg.device)
        before = torch.cuda.memory_allocated(cfg.device)
        torch.cuda.reset_peak_memory_stats(cfg.device)
        out = run()
        torch.cuda.synchronize(cfg.device)
        peak = torch.cuda.max_memory_allocated(cfg.device)
        del out
    return {"resident_before": before, "peak": peak, "activations": peak - before}


# --- environment ----------------------------------------------------------------------------------

def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def environment(cfg: BenchConfig) -> Dict[str, object]:
    env: Dict[str, object] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_start": load_average(),
    }
    try:
        import diffusers

        env["diffusers"] = diffusers.__version__
    except ImportError:
        env["diffusers"] = None
    if is_cuda(cfg):
        props = torch.cuda.get_device_properties(cfg.device)
        env.update(
            device=torch.cuda.get_device_name(cfg.device),
            device_memory_gib=round(props.total_memory / 2 ** 30, 1),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
            tf32_cudnn=torch.backends.cudnn.allow_tf32,
            cudnn_benchmark=torch.backends.cudnn.benchmark,
        )
    else:
        env["device"] = f"CPU ({env['cpu']}, {env['cpu_count']} cores)"
    return env


# --- the benchmark ------------------------------------------------------------------------------

def chunking_plan(cfg: BenchConfig) -> Dict[str, object]:
    """How the temporal attention is launched at this config, and the variant that contrasts it."""
    engine_limit = motion_model_module.MAX_ATTENTION_ROWS
    largest = cfg.size * cfg.size  # level 0: one launch per clip, one sequence per latent pixel
    plan: Dict[str, object] = {"engine_rows_per_launch": engine_limit, "largest_level_rows": largest}
    if largest > engine_limit:
        plan.update(engine_chunks=True, contrast="unchunked", contrast_rows=largest)
    else:
        # Force a split of every launch into all rows but one, then one.
        rows = cfg.chunk_rows or max(1, largest - 1)
        plan.update(engine_chunks=False, contrast="chunked", contrast_rows=rows)
    plan["launches_largest_level"] = {
        "engine": math.ceil(largest / engine_limit),
        plan["contrast"]: math.ceil(largest / plan["contrast_rows"]),
    }
    return plan


@contextlib.contextmanager
def torch_threads(threads: Optional[int]):
    """torch's CPU thread count set to ``threads`` (None: unchanged) for the block, restored after it.
    On a busy machine two OpenMP threads wait on each other at every op; one is steadier."""
    saved = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def run_benchmark(cfg: BenchConfig, log=print) -> Dict[str, object]:
    """Build, measure and return every number (raw timings, summaries, ratios, environment)."""
    with torch_threads(cfg.threads):
        return _run_benchmark(cfg, log)


def _run_benchmark(cfg: BenchConfig, log) -> Dict[str, object]:
    if is_cuda(cfg) and not torch.cuda.is_available():
        raise SystemExit("--device cuda was requested but torch.cuda.is_available() is False")
    if cfg.half and not is_cuda(cfg):
        raise ValueError(CPU_HALF_MESSAGE)
    versions = tuple(v for v in cfg.versions if v in VERSIONS)
    if cfg.diffusers and PEER_VERSION not in versions:
        versions = versions + (PEER_VERSION,)
    started = time.perf_counter()
    results: Dict[str, object] = {"config": asdict(cfg), "environment": environment(cfg)}
    results["config"]["versions"] = list(versions)

    if is_cuda(cfg):
        if torch.device(cfg.device).index is not None:
            torch.cuda.set_device(torch.device(cfg.device))  # events record on the current device's stream
        # The webui turns TF32 on for CUDA devices; it only touches fp32 matmuls/convs here.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        results["environment"].update(tf32_matmul=True, tf32_cudnn=True)

    if cfg.ceilings:
        log("device ceilings ...")
        results["ceilings"] = measure_ceilings(cfg)
    if cfg.flops:
        log("counting FLOPs on the meta device ...")
        results["flops"] = count_flops(cfg, versions)

    log("building models ...")
    t0 = time.perf_counter()
    unet = build_ldm_unet(cfg)
    motions = {v: build_motion_model(cfg, v) for v in versions}
    build_s = {"ldm_unet_and_motion": time.perf_counter() - t0}
    peer = None
    if cfg.diffusers:
        t0 = time.perf_counter()
        peer = DiffusersPeer(cfg, unet, motions[PEER_VERSION])
        build_s["diffusers"] = time.perf_counter() - t0
        results["environment"]["diffusers_attention_processors"] = peer.attention_processors
    results["build_s"] = build_s
    results["weights_bytes"] = {"ldm_unet": param_bytes(unet), **{f"motion_{v}": param_bytes(m) for v, m in motions.items()}}
    synchronize(cfg)

    x, t, context = make_inputs(cfg)
    sample = x.view(cfg.clips, cfg.frames, LATENT_CHANNELS, cfg.size, cfg.size).transpose(1, 2).contiguous()
    clip_t = t[:: cfg.frames].clone()

    with webui_attention(unet, cfg.attention) as patched:
        results["environment"]["ldm_attention"] = (
            f"SDPA forward patched on {patched} ldm CrossAttention modules (webui --opt-sdp-attention)"
            if cfg.attention == "sdpa" else "sdkit ldm CrossAttention (einsum + softmax)"
        )
        results["sdpa"] = sdpa_info(cfg)
        if PEER_VERSION in motions or versions:
            results["layout_copies"] = layout_copies(cfg, motions[PEER_VERSION if PEER_VERSION in motions else versions[0]])

        def ours():
            with torch.no_grad(), autocast_context(cfg):
                return unet(x, t, context)

        def hooked(version: str):
            return lambda: inject(unet, motions[version], cfg.frames)

        variants = [Variant("ours bare", ours)]
        for version in versions:
            note = {"v1": "cross-frame ResBlock GroupNorm", "v2": "mid-block module", "v3": "no mid block"}[version]
            variants.append(Variant(f"ours + {version}", ours, hooked(version), note=note))

        plan = chunking_plan(cfg)
        chunk_version = PEER_VERSION if PEER_VERSION in versions else versions[0] if versions else None
        if chunk_version is not None:
            contrast_rows = plan["contrast_rows"]

            def chunk_setup(version=chunk_version, rows=contrast_rows):
                stack = contextlib.ExitStack()
                stack.enter_context(inject(unet, motions[version], cfg.frames))
                stack.enter_context(attention_rows_limit(rows))
                return stack

            label = f"ours + {chunk_version} {plan['contrast']} ({contrast_rows} rows/launch)"
            plan["variant"] = label
            plan["engine_variant"] = f"ours + {chunk_version}"
            variants.append(Variant(label, ours, chunk_setup, optional=True))
        results["chunking"] = plan

        compiled_stack = contextlib.ExitStack()
        if cfg.compile:
            # A copy of the v2 model holds the compiled forwards for the whole run, so the eager
            # variants keep the eager model; the first call pays the compile (not timed below).
            from lib_animate.motion.compile import compiled_motion_modules  # imported here: --compile only

            compiled_motion = copy.deepcopy(motions[PEER_VERSION])
            status = compiled_stack.enter_context(compiled_motion_modules(compiled_motion))
            log("compiling the motion modules (first call) ...")
            started = time.perf_counter()
            with inject(unet, compiled_motion, cfg.frames):
                first = ours()
            synchronize(cfg)
            results["compile"] = {"first_call_s": time.perf_counter() - started, "modules": status.modules,
                                  "fallback": status.fallback}
            del first

            def compiled_setup():
                return inject(unet, compiled_motion, cfg.frames)

            variants.append(Variant(f"ours + {PEER_VERSION} compiled", ours, compiled_setup,
                                    note="motion modules only, torch.compile (inductor, default mode)"))

        if peer is not None:
            def diffusers_bare():
                with torch.no_grad():
                    return peer.unet2d(x, t, encoder_hidden_states=context).sample

            def diffusers_motion():
                with torch.no_grad():
                    return peer.motion_unet(sample, clip_t, encoder_hidden_states=context).sample

            variants.append(Variant("diffusers bare", diffusers_bare, note="UNet2DConditionModel"))
            variants.append(Variant(f"diffusers + {PEER_VERSION}", diffusers_motion,
                                    note="UNetMotionModel, motion GroupNorm across frames (as shipped)"))

        log(f"timing {len(variants)} variants, {cfg.warmup} warm-up + {cfg.iters} interleaved rounds ...")
        t0, cpu0 = time.perf_counter(), time.process_time()
        samples, failed = measure_interleaved(cfg, variants, cfg.iters, cfg.warmup, log=log)
        results["timing_s"] = time.perf_counter() - t0
        if not is_cuda(cfg):
            # Process CPU seconds per wall second per torch thread while timing: well below 1 means
            # other processes took the cores (ops between parallel regions also lower it a little).
            results["environment"]["cpu_share_while_timing"] = (
                (time.process_time() - cpu0) / results["timing_s"] / torch.get_num_threads()
            )
        results["timings_ms"] = samples
        results["failed_variants"] = failed
        results["notes"] = {v.name: v.note for v in variants if v.note}
        summary = {name: summarize(values) for name, values in samples.items()}
        results["summary_ms"] = summary
        results["ratios"] = compute_ratios(cfg, versions, samples, summary, results.get("chunking"))

        log("numerical checks ...")
        results["numerics"] = numerics(cfg, unet, motions, peer, ours, sample, clip_t, x, t, context)
        if cfg.compile:
            with inject(unet, compiled_motion, cfg.frames):
                compiled_out = ours().float()
            with inject(unet, motions[PEER_VERSION], cfg.frames):
                eager_out = ours().float()
            results["numerics"][f"rel L2 ours + {PEER_VERSION} compiled vs eager"] = rel_l2(compiled_out, eager_out)
            del compiled_out, eager_out
        compiled_stack.close()

        if cfg.memory and is_cuda(cfg):
            log("peak memory ...")
            results["memory"] = memory_table(cfg, unet, motions, peer, ours)
        else:
            results["memory"] = None

    results["environment"]["load_average_end"] = load_average()
    results["elapsed_s"] = time.perf_counter() - started
    return results


def compute_ratios(cfg, versions, samples, summary, plan) -> Dict[str, object]:
    def ratio(a: str, b: str) -> Optional[Dict[str, float]]:
        if a not in summary or b not in summary:
            return None
        paired = [p / q for p, q in zip(samples[a], samples[b])]
        return {
            "ratio_of_medians": summary[a]["median"] / summary[b]["median"],
            "paired_median": statistics.median(paired),
            "paired_p90": percentile(paired, 90),
        }

    ratios: Dict[str, object] = {}
    for version in versions:
        ratios[f"R_mm {version}"] = ratio(f"ours + {version}", "ours bare")
    if plan and plan.get("variant"):
        if plan["contrast"] == "unchunked":
            ratios["chunked (engine) / unchunked"] = ratio(plan["engine_variant"], plan["variant"])
        else:
            ratios["chunked (forced) / unchunked (engine)"] = ratio(plan["variant"], plan["engine_variant"])
    peer = f"diffusers + {PEER_VERSION}"
    ratios[f"ours + {PEER_VERSION} / {peer}"] = ratio(f"ours + {PEER_VERSION}", peer)
    ratios["ours bare / diffusers bare"] = ratio("ours bare", "diffusers bare")
    compiled = f"ours + {PEER_VERSION} compiled"
    ratios[f"R_mm {PEER_VERSION} compiled"] = ratio(compiled, "ours bare")
    ratios[f"{compiled} / {peer}"] = ratio(compiled, peer)
    ratios[f"diffusers R_mm {PEER_VERSION}"] = ratio(peer, "diffusers bare")
    return {k: v for k, v in ratios.items() if v is not None}


def numerics(cfg, unet, motions, peer, ours, sample, clip_t, x, t, context) -> Dict[str, object]:
    """Finite outputs, and ours vs diffusers on identical weights (rel L2 over the whole output)."""
    out: Dict[str, object] = {}
    bare = ours().float()
    out["ours bare finite"] = bool(torch.isfinite(bare).all())
    out["ours bare max |out|"] = bare.abs().max().item()
    hooked = {}
    for version, motion in motions.items():
        with inject(unet, motion, cfg.frames):
            hooked[version] = ours().float()
        out[f"ours + {version} finite"] = bool(torch.isfinite(hooked[version]).all())
        out[f"rel L2 ours + {version} vs ours bare (motion effect)"] = rel_l2(hooked[version], bare)
    if peer is None:
        return out

    def to_rows(y):  # (clips, C, frames, H, W) -> (clips*frames, C, H, W)
        return y.transpose(1, 2).reshape(cfg.rows, LATENT_CHANNELS, cfg.size, cfg.size).float()

    with torch.no_grad():
        theirs_bare = peer.unet2d(x, t, encoder_hidden_states=context).sample.float()
        theirs_as_shipped = to_rows(peer.motion_unet(sample, clip_t, encoder_hidden_states=context).sample)
        with diffusers_per_frame_norm(peer.motion_unet) as wrapped:
            theirs = to_rows(peer.motion_unet(sample, clip_t, encoder_hidden_states=context).sample)
    mine = hooked[PEER_VERSION]
    out["diffusers motion norms wrapped per frame"] = wrapped
    out["rel L2 ours bare vs diffusers bare"] = rel_l2(bare, theirs_bare)
    out[f"rel L2 ours + {PEER_VERSION} vs diffusers per-frame norm"] = rel_l2(mine, theirs)
    out[f"max abs ours + {PEER_VERSION} vs diffusers per-frame norm"] = (mine - theirs).abs().max().item()
    out[f"rel L2 ours + {PEER_VERSION} vs diffusers as shipped (cross-frame norm)"] = rel_l2(mine, theirs_as_shipped)
    return out


def memory_table(cfg, unet, motions, peer, ours) -> Dict[str, object]:
    version = PEER_VERSION if PEER_VERSION in motions else next(iter(motions))
    table: Dict[str, object] = {"version": version}
    for label, clips in (("batched CFG", cfg.clips), ("unbatched", 1)):
        rows = clips * cfg.frames
        x_r, t_r, c_r = make_inputs(cfg, rows)

        def run(x_r=x_r, t_r=t_r, c_r=c_r):
            with torch.no_grad(), autocast_context(cfg):
                return unet(x_r, t_r, c_r)

        bare = measure_peak_memory(cfg, run, contextlib.nullcontext)
        hooked = measure_peak_memory(cfg, run, lambda: inject(unet, motions[version], cfg.frames))
        entry = {"rows": rows, "bare": bare, "hooked": hooked}
        # What a process holding only this UNet and this motion module would peak at.
        entry["bare_est_process_peak"] = param_bytes(unet) + bare["activations"]
        entry["hooked_est_process_peak"] = param_bytes(unet) + param_bytes(motions[version]) + hooked["activations"]
        if peer is not None and clips == cfg.clips:
            sample = x_r.view(clips, cfg.frames, LATENT_CHANNELS, cfg.size, cfg.size).transpose(1, 2).contiguous()

            def run_peer(sample=sample, c_r=c_r, t_r=t_r):
                with torch.no_grad():
                    return peer.motion_unet(sample, t_r[:: cfg.frames], encoder_hidden_states=c_r).sample

            entry["diffusers_motion"] = measure_peak_memory(cfg, run_peer, contextlib.nullcontext)
            entry["diffusers_motion_est_process_peak"] = param_bytes(peer.motion_unet) + entry["diffusers_motion"]["activations"]
        table[label] = entry
        del x_r, t_r, c_r
    return table


# --- output ---------------------------------------------------------------------------------------

def _gib(n: float) -> str:
    return f"{n / 2 ** 30:.2f} GiB"


def format_report(results: Dict[str, object]) -> str:
    cfg = results["config"]
    env = results["environment"]
    lines = []
    add = lines.append
    add("=" * 100)
    add(f"Motion-engine benchmark, {env['date']}")
    add(f"device: {env['device']}   torch {env['torch']}   python {env['python']}   diffusers {env.get('diffusers')}")
    if "cuda" in env:
        add(f"CUDA {env['cuda']}, cuDNN {env['cudnn']}, TF32 matmul/cudnn {env['tf32_matmul']}/{env['tf32_cudnn']}, "
            f"cudnn.benchmark {env['cudnn_benchmark']}, {env['device_memory_gib']} GiB")
    else:
        add(f"CPU threads used by torch: {env['torch_threads']}   (CPU numbers are informational only)")
    add(f"load average (1/5/15 min) at start {env['load_average_start']}, at end {env.get('load_average_end')} "
        f"(the end value includes this run)")
    if "cpu_share_while_timing" in env:
        add(f"CPU share while timing: {env['cpu_share_while_timing']:.2f} of {env['torch_threads']} thread(s) "
            f"(process CPU time / wall time / threads; near 1 = the cores were ours)")
    start_load = env["load_average_start"]
    share = env.get("cpu_share_while_timing")
    # Rough thresholds: one thread keeps its core (~0.99) on a quiet machine; with two threads the
    # serial parts between parallel regions alone bring the share to ~0.8 (measured here).
    threshold = 0.9 if env["torch_threads"] == 1 else 0.65
    busy = share < threshold if share is not None else bool(start_load and start_load[0] > (env["cpu_count"] or 1) * 0.5)
    if "cuda" not in env and busy:
        add("WARNING: the machine was busy; CPU timings (and their ratios) are unreliable. "
            "With --threads 1 a busy machine hurts less.")
    dtype = cfg["dtype"] + (" weights, torch.autocast " + cfg["dtype"] if cfg["dtype"] != "fp32" else "")
    add(f"config: ldm UNet SD1.5 layout, model_channels {cfg['width']}, context {cfg['context_dim']} x {cfg['tokens']} tokens, "
        f"latent {cfg['size']}x{cfg['size']} ({cfg['size'] * 8}x{cfg['size'] * 8} px), {cfg['clips']} x {cfg['frames']} frames "
        f"= {cfg['clips'] * cfg['frames']} rows, {dtype}")
    add(f"ldm attention: {env.get('ldm_attention')}")
    if env.get("diffusers_attention_processors"):
        add(f"diffusers attention processors: {', '.join(env['diffusers_attention_processors'])} (no autocast, as its pipelines run)")
    sdpa = results.get("sdpa") or {}
    flags = {k: v for k, v in sdpa.items() if k != "kernels"}
    if flags:
        add("SDPA backends enabled: " + ", ".join(f"{k.replace('_sdp_enabled', '')}={v}" for k, v in flags.items()))
    for label, k in (sdpa.get("kernels") or {}).items():
        add(f"SDPA op for {label} {tuple(k['shape'])}: {k['op']}")
    for label, entry in (results.get("layout_copies") or {}).items():
        copies = ", ".join(f"{k} x{v}" for k, v in entry["copies"].items()) or "none"
        add(f"copies in one level-0 motion module call, {label}: {copies} (with {entry['addmm']} addmm: the CPU addmm "
            f"copies its bias into the output, one copy_ each); attention op {', '.join(entry['attention_ops'])}")
    add(f"builds: " + ", ".join(f"{k} {v:.1f} s" for k, v in results.get("build_s", {}).items())
        + f"; timing {results.get('timing_s', 0):.1f} s; total {results.get('elapsed_s', 0):.1f} s")

    compiled = results.get("compile")
    if compiled:
        add(f"compiled motion modules: {compiled['modules']} temporal transformers, first call (compile) {compiled['first_call_s']:.1f} s"
            + (f"; FELL BACK TO EAGER: {compiled['fallback']}" if compiled["fallback"] else ""))

    ceilings = results.get("ceilings")
    if ceilings:
        add("")
        add("Device ceilings (this run)" + ("" if "cuda" in env else " - informational on the CPU"))
        for key, value in ceilings.items():
            if key.startswith("matmul"):
                add(f"  {key.split('_')[1]} matmul {value['n']}^3: {value['tflops']:.2f} TFLOP/s (median of {len(value['ms'])})")
            else:
                add(f"  device copy of {_gib(value['bytes'])}: {value['gbps']:.1f} GB/s (read + write counted)")

    flops = results.get("flops") or {}
    peak = None
    if ceilings and "cuda" in env:
        peak = ceilings.get("matmul_" + cfg["dtype"], {}).get("tflops")
    summary = results.get("summary_ms", {})
    bare_ms = summary.get("ours bare", {}).get("median")
    add("")
    add(f"Per UNet step: {cfg['warmup']} warm-up excluded, {cfg['iters']} interleaved rounds")
    header = f"  {'variant':<52} {'median ms':>10} {'p90 ms':>9} {'/ ours bare':>12} {'GFLOP':>10}"
    if peak:
        header += f" {'% of matmul peak':>17}"
    add(header)
    for name, stats in summary.items():
        version = name.split(" + ")[1].split(" ")[0] if " + " in name else "bare"
        gflop = flops.get(version) if name.startswith("ours") or name.startswith("diffusers") else None
        row = f"  {name:<52} {stats['median']:>10.2f} {stats['p90']:>9.2f} {stats['median'] / bare_ms:>12.3f}"
        row += f" {gflop / 1e9:>10.1f}" if gflop else f" {'':>10}"
        if peak and gflop:
            row += f" {100 * gflop / (stats['median'] / 1000) / (peak * 1e12):>16.1f}%"
        add(row)
    notes = results.get("notes") or {}
    for name, note in notes.items():
        add(f"    {name}: {note}")
    for name, why in (results.get("failed_variants") or {}).items():
        add(f"  {name}: FAILED - {why}")

    add("")
    add("Ratios (ratio of medians; paired = median over rounds of a_i / b_i)")
    for name, r in results.get("ratios", {}).items():
        floor = ""
        if name.startswith("R_mm "):
            version = name.split()[1]
            if version in flops and "bare" in flops:
                floor = f"   FLOP floor {flops[version] / flops['bare']:.3f}"
        add(f"  {name:<52} {r['ratio_of_medians']:>7.3f}   paired {r['paired_median']:.3f} (p90 {r['paired_p90']:.3f}){floor}")
    plan = results.get("chunking") or {}
    if plan:
        add(f"  temporal attention at this config: largest level {plan['largest_level_rows']} rows per clip; engine limit "
            f"{plan['engine_rows_per_launch']} rows/launch -> {plan['launches_largest_level']['engine']} launch(es)"
            + ("" if plan["engine_chunks"] else f"; the chunked variant is forced ({plan['contrast_rows']} rows/launch)"))

    add("")
    add("Numerics (identical weights; rel L2 = |a - b| / |b| over the whole output)")
    for name, value in (results.get("numerics") or {}).items():
        add(f"  {name:<72} {value:.3e}" if isinstance(value, float) else f"  {name:<72} {value}")

    add("")
    memory = results.get("memory")
    if not memory:
        add("Peak memory: n/a (" + ("CPU run: torch's CPU allocator has no peak counter" if "cuda" not in env else "disabled") + ")")
    else:
        add(f"Peak memory (torch.cuda.max_memory_allocated; activations = peak - allocated before the call), {memory['version']}")
        add(f"  weights: ldm UNet {_gib(results['weights_bytes']['ldm_unet'])}, motion {memory['version']} "
            f"{_gib(results['weights_bytes']['motion_' + memory['version']])}")
        for label in ("batched CFG", "unbatched"):
            entry = memory[label]
            add(f"  {label} ({entry['rows']} rows): bare activations {_gib(entry['bare']['activations'])}, "
                f"hooked activations {_gib(entry['hooked']['activations'])}; est. process peak UNet+MM "
                f"{_gib(entry['hooked_est_process_peak'])} (bare {_gib(entry['bare_est_process_peak'])}); "
                f"raw peak with everything resident {_gib(entry['hooked']['peak'])}")
            if "diffusers_motion" in entry:
                add(f"    diffusers + {memory['version']}: activations {_gib(entry['diffusers_motion']['activations'])}, "
                    f"est. process peak {_gib(entry['diffusers_motion_est_process_peak'])}")
    add("=" * 100)
    return "\n".join(lines)


def _json_default(value):
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json(results: Dict[str, object], path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=2, default=_json_default)


# --- command line ---------------------------------------------------------------------------------

def parse_args(argv: Optional[Sequence[str]] = None):
    """(BenchConfig, JSON output path or None) from the command line."""
    p = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.bench_motion",
        description="Motion-module overhead (hooked / bare ldm UNet), ours vs diffusers, memory and "
                    "chunking, side by side in one run. CUDA: SD1.5 width, fp16, 512x512, 2 x 16 frames. "
                    "CPU: a tiny width, fp32 (informational).",
    )
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda or cuda:N")
    p.add_argument("--full-width", action="store_true", help="SD1.5 width (320, context 768) on any device")
    p.add_argument("--width", type=int, help="ldm model_channels (tiny default 32, full 320)")
    p.add_argument("--context-dim", type=int, help="text context width (tiny default 64, full 768)")
    p.add_argument("--tokens", type=int, help="text tokens (default 77)")
    p.add_argument("--size", type=int, help="latent size in pixels per side (tiny default 16, CUDA default 64 = 512x512)")
    p.add_argument("--frames", type=int, help="frames per clip (default 16)")
    p.add_argument("--clips", type=int, help="clips per UNet call (default 2 = batched cond/uncond)")
    p.add_argument("--dtype", choices=sorted(DTYPES), help="weights dtype (CUDA default fp16 under autocast, CPU fp32)")
    p.add_argument("--iters", type=int, help="timed interleaved rounds (CPU default 10, CUDA 20)")
    p.add_argument("--warmup", type=int, help="warm-up calls per variant (CPU default 2, CUDA 3)")
    p.add_argument("--versions", help="motion layouts to time, comma separated (default v1,v2,v3; v2 is added when the diffusers peer runs)")
    p.add_argument("--attention", choices=("sdpa", "ldm"), default="sdpa",
                   help="ldm CrossAttention: sdpa (webui --opt-sdp-attention, default) or ldm (sdkit einsum)")
    p.add_argument("--chunk-rows", type=int, help="rows per launch for the forced-chunking variant")
    p.add_argument("--no-diffusers", action="store_true", help="skip the diffusers peer")
    p.add_argument("--no-memory", action="store_true", help="skip peak memory (CUDA only anyway)")
    p.add_argument("--no-ceilings", action="store_true", help="skip the matmul / copy ceilings")
    p.add_argument("--no-flops", action="store_true", help="skip FLOP counting on the meta device")
    p.add_argument("--compile", action="store_true",
                   help="add the regionally compiled v2 motion modules (the compile itself takes minutes; excluded from timing)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", dest="json_path", help="write all raw timings, ratios and the environment here")
    args = p.parse_args(argv)

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = torch.device(device).type == "cuda"
    if cuda and not torch.cuda.is_available():
        p.error("--device cuda was requested but CUDA is not available")
    base = full_config(device=device) if (cuda or args.full_width) else tiny_config(device=device)
    if args.full_width and not cuda:
        base = replace(base, dtype="fp32", size=16, warmup=2)  # a CPU dry run of the full-width build
    overrides = {
        "width": args.width, "context_dim": args.context_dim, "tokens": args.tokens, "size": args.size,
        "frames": args.frames, "clips": args.clips, "dtype": args.dtype, "iters": args.iters,
        "warmup": args.warmup, "chunk_rows": args.chunk_rows, "threads": args.threads,
    }
    cfg = replace(base, **{k: v for k, v in overrides.items() if v is not None})
    if args.versions:
        cfg = replace(cfg, versions=tuple(v.strip() for v in args.versions.split(",") if v.strip()))
        unknown = [v for v in cfg.versions if v not in VERSIONS]
        if unknown:
            p.error(f"unknown versions {unknown}; choose from {', '.join(VERSIONS)}")
    cfg = replace(cfg, attention=args.attention, seed=args.seed, diffusers=not args.no_diffusers,
                  memory=not args.no_memory, ceilings=not args.no_ceilings, flops=not args.no_flops,
                  compile=args.compile)
    if cfg.half and not cuda:
        p.error(CPU_HALF_MESSAGE)
    if cfg.width % 32:
        p.error("--width must be a multiple of 32 (GroupNorm with 32 groups)")
    if cfg.size % 8:
        p.error("--size must be a multiple of 8 (three downsamplings)")
    if cfg.iters < 1 or cfg.warmup < 0 or cfg.frames < 1 or cfg.clips < 1:
        p.error("--iters, --frames and --clips must be positive, --warmup non-negative")
    return cfg, args.json_path


def main(argv: Optional[Sequence[str]] = None) -> int:
    cfg, json_path = parse_args(argv)
    results = run_benchmark(cfg, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(format_report(results))
    if json_path:
        write_json(results, json_path)
        print(f"wrote {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
