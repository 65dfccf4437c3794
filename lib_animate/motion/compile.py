"""Optional regional compilation: ``torch.compile`` of the motion modules only.

Each motion module's temporal transformer gets a compiled ``forward`` (an instance attribute,
removed on exit) for the duration of a ``with`` block; the host UNet, its attention and every
hook stay eager. Inductor fuses what eager mode cannot: the GroupNorm with the token layout
change, LayerNorm, the GEGLU, the position encoding and the residual adds.

* Feature-detected: without ``torch.compile`` (torch < 2.1 here) nothing is compiled and a
  warning says why.
* Guarded: if a compiled call raises where the eager call succeeds (no C++ compiler or Triton,
  an unsupported op, a compiler bug), the block warns once and runs every module eagerly from
  then on; an error the eager code also raises is the caller's and propagates, and so does
  running out of memory (the job fails and restores, as it would eagerly).
* Weights may change in place inside the block (motion LoRA merges use ``copy_``): compiled
  graphs read the parameters at run time, they are not frozen into them.
* Graph count: torch >= 2.5 inlines nn.Module calls, so modules of the same shape share one
  graph (a few per motion model); older versions compile every module on its own, so the cache
  limit is raised for the block (else dynamo silently runs the modules past the 8th eagerly).
  The first call at each shape pays the compile (tens of seconds to minutes); frame counts
  and latent sizes that change between calls trigger recompiles until dynamo turns the
  dimension dynamic.
"""

import warnings
from contextlib import ExitStack, contextmanager
from typing import Iterator, List, Optional, Tuple

import torch
from torch import nn

from .model import MotionModel, TemporalTransformer


class CompileStatus:
    """What a :func:`compiled_motion_modules` block did: modules compiled, and why it fell back (or None)."""

    def __init__(self):
        self.modules = 0
        self.fallback: Optional[str] = None

    @property
    def active(self) -> bool:
        return self.modules > 0 and self.fallback is None

    def fall_back(self, reason: str) -> None:
        if self.fallback is None:
            self.fallback = reason
            warnings.warn(f"compiling the motion modules failed ({reason}); they run eagerly", RuntimeWarning, stacklevel=3)


def _torch_version() -> Tuple[int, int]:
    major, minor = torch.__version__.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def compile_blocker() -> Optional[str]:
    """Why this torch cannot compile the motion modules, or None."""
    if not hasattr(torch, "compile") or _torch_version() < (2, 1):
        return f"torch {torch.__version__} has no usable torch.compile (2.1 or newer is needed)"
    return None


def temporal_transformers(motion_model: MotionModel) -> List[TemporalTransformer]:
    return [module.temporal_transformer for kind in ("down", "mid", "up") for _, module in motion_model.modules_at(kind)]


def _summary(error: Exception) -> str:
    """The error's type and first two non-empty lines (dynamo puts the backend's own error on the second)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()][:2]
    return f"{type(error).__name__}: {' '.join(lines)}"[:300]


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's OutOfMemoryError (torch >= 1.13), or another backend's "out of memory" RuntimeError (MPS)."""
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(error, oom)) or (isinstance(error, RuntimeError) and "out of memory" in str(error).lower())


def _guarded(module: TemporalTransformer, compiled, status: CompileStatus):
    eager = type(module).forward.__get__(module)

    def forward(x: torch.Tensor, frames: int, scale=None) -> torch.Tensor:
        if status.fallback is None:
            try:
                return compiled(x, frames, scale)
            except Exception as error:  # noqa: BLE001 - decided below by running the eager code
                if is_out_of_memory(error):
                    raise  # the job fails and restores, as it would eagerly; retrying eagerly would only thrash
                out = eager(x, frames, scale)  # an error the eager code shares propagates from here
                status.fall_back(_summary(error))
                return out
        return eager(x, frames, scale)

    return forward


def _dynamo_limits(stack: ExitStack, modules: int) -> None:
    """Before torch 2.5 every module instance is a separate cache entry of one code object."""
    if _torch_version() >= (2, 5):
        return  # nn.Module calls are inlined: same-shaped modules share graphs
    import torch._dynamo

    config = torch._dynamo.config
    if getattr(config, "inline_inbuilt_nn_modules", False):
        return
    if hasattr(config, "inline_inbuilt_nn_modules"):  # 2.3 / 2.4: opt in to shared graphs
        stack.enter_context(config.patch(inline_inbuilt_nn_modules=True))
        return
    limits = {"cache_size_limit": max(config.cache_size_limit, 4 * modules)}
    if hasattr(config, "accumulated_cache_size_limit"):
        limits["accumulated_cache_size_limit"] = max(config.accumulated_cache_size_limit, 8 * modules)
    stack.enter_context(config.patch(**limits))


@contextmanager
def compiled_motion_modules(motion_model: MotionModel, mode: Optional[str] = None, backend="inductor",
                            dynamic: Optional[bool] = None) -> Iterator[CompileStatus]:
    """Run ``motion_model``'s temporal transformers through ``torch.compile`` inside the block.

    ``mode``, ``backend`` and ``dynamic`` go to ``torch.compile``. Yields a :class:`CompileStatus`.
    Use it around (or inside) :func:`~lib_animate.motion.inject`; leaving it restores the
    modules' own ``forward`` exactly.
    """
    status = CompileStatus()
    reason = compile_blocker()
    if reason is not None:
        status.fall_back(reason)
        yield status
        return
    installed: List[nn.Module] = []
    with ExitStack() as stack:
        try:
            transformers = temporal_transformers(motion_model)
            _dynamo_limits(stack, len(transformers))
            for module in transformers:
                compiled = torch.compile(type(module).forward.__get__(module), mode=mode, backend=backend, dynamic=dynamic)
                module.forward = _guarded(module, compiled, status)
                installed.append(module)
            status.modules = len(installed)
            yield status
        finally:
            for module in installed:
                if "forward" in vars(module):
                    del module.forward
