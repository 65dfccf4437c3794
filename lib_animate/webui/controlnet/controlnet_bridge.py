"""sd-webui-controlnet during sampling: every UNet call gets exactly its own hint rows.

ControlNet's ``process()`` computes each unit's hint once for the whole batch (``hint_cond`` and,
with hires fix, ``hr_hint_cond``): one row for a single image, ``F`` or ``2F`` rows (cond/uncond
batched) for a per-frame unit, which it leaves on the CPU. Our denoiser wrapper calls the UNet
per context window, with cond and uncond together or apart, so before every call
:meth:`ControlBridge.on_unet_call` sets the per-frame hints to that call's rows (the window's
frames once per clip chunk, on the call's device and dtype) and resets ControlNet's caches that
would otherwise keep the first call's rows:

* ``ControlParams.hint_cond``'s setter drops ControlNet's cached hint and hint latent;
* a T2I-Adapter keeps its features (``PlugableAdapter.control``) -> cleared when the rows change;
* an IP-Adapter keeps its image keys/values per layer (``PlugableIPAdapter.cache``), computed for
  the first call's cond/uncond rows -> cleared before every call (a few small matmuls);
* reference-only keeps the reference latent repeated to the first call's batch
  (``used_hint_cond_latent``) -> recomputed when the row count changes.

:meth:`restore` puts ControlNet's full hints back. Nothing here imports the webui: the objects
are ControlNet's (``Script.latest_network.control_params`` paired with ``Script.enabled_units``).
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from ...errors import AnimateError
from ...sampling.control_rows import HintRowsError, per_frame_hint, select_rows

PER_FRAME_TYPES = ("ControlNet", "ControlNetUnion", "ControlLoRA", "InstantID", "T2I_Adapter")


class ControlNetSetupError(AnimateError):
    """ControlNet did not set its units up (its process() raised; the webui only logs that)."""


def _type_name(param) -> str:
    kind = getattr(param, "control_model_type", None)
    return str(getattr(kind, "name", kind))


@dataclass
class _PerFrame:
    param: Any
    unit: Any  # ControlNet's unit object (the copy the job planned)
    hint: torch.Tensor  # [F, ...] on the CPU (or wherever ControlNet left it)
    hr_hint: Optional[torch.Tensor]
    saved: Tuple[Any, Any]  # what hint_cond / hr_hint_cond held before the job
    on_device: Dict[Tuple[Any, ...], torch.Tensor] = field(default_factory=dict)

    def is_hires_call(self, x: torch.Tensor) -> bool:
        """ControlNet's own rule: the hires hints when x (in pixels) is closer to their height."""
        if self.hr_hint is None:
            return False
        height = x.shape[-2] * 8
        return abs(height - self.hr_hint.shape[-2]) <= abs(height - self.hint.shape[-2])

    def full(self, hires: bool, device, dtype, keep_on_cpu: bool) -> torch.Tensor:
        """All frames' hints of one size on the call's device and dtype: moved once and kept (one size
        at a time, so the hires pass does not hold both), or moved per call in low-VRAM mode."""
        key = (hires, device, dtype)
        if key not in self.on_device:
            moved = (self.hr_hint if hires else self.hint).to(device, dtype)
            if keep_on_cpu:
                return moved
            self.on_device.clear()
            self.on_device[key] = moved
        return self.on_device[key]


class ControlBridge:
    def __init__(self, frames: int, keep_on_cpu: bool = False):
        self.frames = frames
        self.keep_on_cpu = keep_on_cpu  # --lowvram/--medvram or a unit's "Low VRAM": move per call, keep nothing
        self.per_frame: List[_PerFrame] = []
        self.ip_adapters: List[Any] = []
        self.t2i_adapters: List[Any] = []
        self.references: List[Any] = []
        self._last_key = None
        self._last_rows = None

    @classmethod
    def capture(cls, script, unet, frames: int, expected_units: int, keep_on_cpu: bool = False) -> "ControlBridge":
        """Read ControlNet's state at the start of sampling (its ``process()`` has run by then)."""
        network = getattr(script, "latest_network", None)
        units = list(getattr(script, "enabled_units", None) or [])
        params = getattr(network, "control_params", None) if network is not None else None
        if expected_units and (params is None or getattr(network, "model", unet) is not unet or len(params) != len(units)):
            hint = ""
            if any("sparsectrl" in str(getattr(u, "model", "")).lower() for u in units):
                hint = " (SparseCtrl models need sd-webui-animatediff's code inside ControlNet and are not supported)"
            raise ControlNetSetupError(
                f"ControlNet failed to set up its units{hint}; see the webui's console for its error. "
                f"Refusing to render a video without the control it was asked for."
            )
        bridge = cls(frames, keep_on_cpu or any(getattr(u, "low_vram", False) for u in units))
        for param, unit in zip(params or [], units):
            bridge._add(param, unit)
        return bridge

    def _add(self, param, unit) -> None:
        kind = _type_name(param)
        if kind == "IPAdapter":
            self.ip_adapters.append(param)
        elif kind == "AttentionInjection":
            self.references.append(param)
        if kind == "T2I_Adapter":
            self.t2i_adapters.append(param)
        if not getattr(unit, "animatediff_batch", False):
            return
        model = getattr(param.control_model, "control_model", None)
        if kind not in PER_FRAME_TYPES or type(model).__name__ == "SparseCtrl":
            raise ControlNetSetupError(f"ControlNet unit '{unit.module} / {unit.model}' ({kind}) cannot take one hint per frame")
        try:
            hint = per_frame_hint(param.hint_cond, self.frames)
            hr = param.hr_hint_cond
            hr = per_frame_hint(hr, self.frames) if isinstance(hr, torch.Tensor) else None
        except HintRowsError as e:
            raise ControlNetSetupError(f"ControlNet unit '{unit.module} / {unit.model}': {e}") from e
        self.per_frame.append(_PerFrame(param, unit, hint, hr, (param.hint_cond, param.hr_hint_cond)))

    def hint_frames(self) -> List[Tuple[Any, Any]]:
        """``[(unit, frames)]``: each per-frame unit's hints as the ControlNet sees them (after its
        preprocessor and resize), as ``F x H x W x 3`` uint8 RGB."""
        out = []
        for item in self.per_frame:
            rgb = item.hint[:, :3].detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
            if rgb.shape[1] == 1:
                rgb = rgb.expand(-1, 3, -1, -1)
            out.append((item.unit, rgb.permute(0, 2, 3, 1).contiguous().cpu().numpy()))
        return out

    def on_unet_call(self, window: Optional[Sequence[int]], chunks: int, x: torch.Tensor) -> None:
        """Before a UNet call over ``window`` (None = every frame) with ``chunks`` clip chunks."""
        rows = x.shape[0]
        key = (None if window is None else tuple(window), chunks, tuple(x.shape[-2:]))
        if key != self._last_key:
            for item in self.per_frame:
                # The call's rows of the size this call uses; the other size keeps ControlNet's full CPU
                # tensor, which it only compares shapes with (to tell the hires pass apart).
                hires = item.is_hires_call(x)
                hint = select_rows(item.full(hires, x.device, x.dtype, self.keep_on_cpu), window, chunks)
                item.param.hint_cond = item.saved[0] if hires else hint  # the setter drops ControlNet's cached hint
                item.param.hr_hint_cond = hint if hires else item.saved[1]
            for param in self.t2i_adapters:
                _clear_adapter_features(param)
            self._last_key = key
        for param in self.ip_adapters:
            param.control_model.cache = {}  # image k/v for this call's cond/uncond rows
        if rows != self._last_rows:
            for param in self.references:
                param.hint_cond = param.hint_cond  # re-encodes the reference latent at this call's batch size
            self._last_rows = rows

    def restore(self) -> None:
        """ControlNet's own (full) hints back, its caches empty; idempotent."""
        for item in self.per_frame:
            item.param.hint_cond, item.param.hr_hint_cond = item.saved
            item.on_device.clear()
        for param in self.t2i_adapters:
            _clear_adapter_features(param)
        for param in self.ip_adapters:
            param.control_model.cache = {}
        self._last_key = self._last_rows = None


def _clear_adapter_features(param) -> None:
    model = param.control_model
    if hasattr(model, "control"):
        model.control = None
