"""Context windows: run a motion module over a video longer than its window, then fuse.

A *window* is a tuple of frame indices in the order the motion module sees them (temporal order;
for a closed loop that order runs through the end of the clip into its start). Every function here
is pure: the same arguments give the same windows.

Schedules (``context_windows``):

* ``frames <= length``: one window holding every frame.
* open (``closed_loop=False``): windows of exactly ``length`` frames whose starts advance by
  ``hop = length - overlap``; the last window is anchored at the end of the clip, so no window is
  shorter than ``length`` and no window wraps. Consecutive windows share at least ``overlap``
  frames (the last pair may share more).
* closed loop: the frames lie on a ring; ``ceil(frames / hop)`` windows start ``hop`` apart and
  indices run modulo ``frames``, so a window near the end continues with the first frames. With
  ``step = 0`` this is exactly the Moore-AnimateAnyone windowing (starts ``0, hop, 2 hop, ...``).
* shift: with ``shift`` on, the whole pattern moves by ``round(span * h(step))`` where ``h`` is the
  ordered-halving (van der Corput) sequence 0, 1/2, 1/4, 3/4, 1/8, ... (the idea of
  animatediff-cli's "uniform" schedule). Window seams then fall on different frames at different
  sampling steps, so no frame sits on a seam for the whole run. Open windows shift too but are
  clamped into ``[0, frames - length]`` (they never wrap; the first and last windows stay anchored
  at the clip's ends). Default: shift for closed loops, static for open clips -- the static open
  schedule is what the Animate Anyone reference and ComfyUI's "standard static" do; pass
  ``shift=True`` for the shifting behaviour of sd-webui-animatediff / "standard uniform".
* stride ``s > 1``: additional dilated windows with frame step ``d = 2, 4, ..., 2**(s-1)`` (only
  those ``d`` with ``length * d <= frames``, so a dilated window never spans more than the clip).
  Open: the frames ``r, r+d, r+2d, ...`` of each phase ``r < d`` get the open schedule. Closed
  loop: stepping by ``d`` around the ring splits the frames into ``gcd(frames, d)`` cycles, each
  of which gets the ring schedule.

Named schedules (``SCHEDULES``, the job's ``context_schedule``): "reference" = closed loop, no
shift, flat fusion, stride 1 (Moore-AnimateAnyone's ``pose2vid_long`` exactly); "open" = open
windows, no shift; "loop" = closed loop with shift.

Fusion (``fuse_windows``, ``apply_windows``): per-window outputs are combined per frame by a
weighted mean, ``out[f] = sum_i w_i(f) y_i(f) / sum_i w_i(f)``, with ``w`` the "pyramid" weights
(``min(k + 1, n - k)`` at position ``k`` of an ``n``-frame window: largest in the centre, 1 at the
edges) or "flat" (all 1).
"""

import math
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import torch

Window = Tuple[int, ...]

WEIGHTINGS = ("pyramid", "flat")


@dataclass(frozen=True)
class NamedSchedule:
    """A named window schedule: what it fixes of ``context_windows``' arguments and the fusion.

    ``fusion`` is the weighting it uses by default; ``fixed`` says that it allows no other
    weighting and no dilated windows (stride 1), so that it stays what it is named after.
    """

    name: str
    closed_loop: bool
    shift: bool
    fusion: str
    fixed: bool
    summary: str


SCHEDULES = {
    # Moore-AnimateAnyone's pose2vid_long: animatediff-cli's "uniform" scheduler called at step 0
    # with closed_loop=True and stride 1 -- starts 0, hop, 2 hop, ... below the frame count, indices
    # modulo it, the same windows at every step -- and a per-frame sum / count of the outputs.
    "reference": NamedSchedule("reference", closed_loop=True, shift=False, fusion="flat", fixed=True,
                               summary="static windows that wrap around the end, averaged flat, as the Animate Anyone reference samples"),
    "open": NamedSchedule("open", closed_loop=False, shift=False, fusion="pyramid", fixed=False,
                          summary="static windows that never wrap, the last one anchored at the end"),
    "loop": NamedSchedule("loop", closed_loop=True, shift=True, fusion="pyramid", fixed=False,
                          summary="windows around a ring that shift at every step (seamless loops)"),
}
CONTEXT_SCHEDULES = tuple(SCHEDULES)


def validate_context(length: int, overlap: int, stride: int = 1) -> None:
    """Raise ``ValueError`` unless ``length >= 2``, ``0 <= overlap < length`` and ``stride >= 1``."""
    if int(length) != length or length < 2:
        raise ValueError(f"context length must be an integer >= 2, got {length!r}")
    if int(overlap) != overlap or not 0 <= overlap < length:
        raise ValueError(f"context overlap must be an integer with 0 <= overlap < length ({length}), got {overlap!r}")
    if int(stride) != stride or stride < 1:
        raise ValueError(f"context stride must be an integer >= 1, got {stride!r}")


def ordered_halving(step: int) -> float:
    """The base-2 radical inverse of ``step``: its binary digits mirrored behind the point.

    ``h(0), h(1), h(2), h(3), h(4), ... = 0, 1/2, 1/4, 3/4, 1/8, ...`` -- each new value halves the
    largest gap left by the previous ones (the van der Corput sequence).
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    value, unit = 0.0, 0.5
    while step:
        value += unit * (step & 1)
        step >>= 1
        unit *= 0.5
    return value


def open_starts(count: int, length: int, hop: int, offset: int = 0) -> List[int]:
    """Starts of ``length``-windows over ``count`` positions, ``hop`` apart, no wrap-around.

    Starts ``offset + k hop`` (all integers ``k``) clamped into ``[0, count - length]``, deduplicated;
    with ``offset = 0`` that is ``0, hop, 2 hop, ...`` with the last start ``count - length``.
    Consecutive starts are at most ``hop`` apart, so every position is covered.
    """
    last = count - length
    if last <= 0:
        return [0]
    offset %= hop
    starts = [0] if offset else []
    starts += list(range(offset, last, hop))
    return starts + [last]


def ring_starts(count: int, hop: int, offset: int = 0) -> List[int]:
    """Starts ``offset + k hop (mod count)`` for ``k < ceil(count / hop)``: windows around a ring."""
    return [(offset + k * hop) % count for k in range(math.ceil(count / hop))]


def open_windows(positions: Sequence[int], length: int, overlap: int, offset: int = 0) -> List[Window]:
    """Windows of ``length`` consecutive entries of ``positions`` (see :func:`open_starts`)."""
    if len(positions) <= length:
        return [tuple(positions)]
    return [tuple(positions[s:s + length]) for s in open_starts(len(positions), length, length - overlap, offset)]


def ring_windows(cycle: Sequence[int], length: int, overlap: int, offset: int = 0) -> List[Window]:
    """Windows of ``length`` consecutive entries of the ring ``cycle`` (see :func:`ring_starts`)."""
    n = len(cycle)
    if n <= length:
        return [tuple(cycle)]
    return [tuple(cycle[(s + k) % n] for k in range(length)) for s in ring_starts(n, length - overlap, offset)]


def dilations(frames: int, length: int, stride: int) -> List[int]:
    """Frame steps ``1, 2, 4, ..., 2**(stride-1)``, keeping only ``d`` with ``length * d <= frames``."""
    return [d for d in (1 << i for i in range(stride)) if d == 1 or length * d <= frames]


def ring_cycles(frames: int, d: int) -> List[List[int]]:
    """The ``gcd(frames, d)`` cycles ``c, c + d, c + 2d, ... (mod frames)`` of stepping by ``d``."""
    g = math.gcd(frames, d)
    return [[(c + k * d) % frames for k in range(frames // g)] for c in range(g)]


def shift_offset(span: int, step: int) -> int:
    """``round(span * h(step))`` with ``h`` the ordered-halving sequence: the step's pattern shift."""
    return int(round(span * ordered_halving(step)))


def context_windows(
    frames: int,
    length: int,
    overlap: int,
    step: int = 0,
    closed_loop: bool = False,
    stride: int = 1,
    shift: Optional[bool] = None,
) -> List[Window]:
    """The windows for sampling step ``step`` (see the module docstring for the schedules).

    ``shift=None`` means "shift when ``closed_loop``". Windows of dilation 1 come first, then those
    of dilation 2, 4, ...; within a dilation they are ordered by phase/cycle, then by start.
    """
    validate_context(length, overlap, stride)
    if int(frames) != frames or frames < 1:
        raise ValueError(f"frames must be an integer >= 1, got {frames!r}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if frames <= length:
        return [tuple(range(frames))]
    shift = closed_loop if shift is None else shift
    windows: List[Window] = []
    for d in dilations(frames, length, stride):
        if closed_loop:
            for cycle in ring_cycles(frames, d):
                offset = shift_offset(len(cycle), step) if shift else 0
                windows += ring_windows(cycle, length, overlap, offset)
        else:
            for phase in range(d):
                positions = list(range(phase, frames, d))
                offset = shift_offset(length - overlap, step) if shift else 0
                windows += open_windows(positions, length, overlap, offset)
    return windows


def window_weights(length: int, kind: str = "pyramid") -> torch.Tensor:
    """Per-position fusion weights of a ``length``-frame window (float64).

    pyramid: ``w_k = min(k + 1, length - k)`` (1 at the edges, largest in the centre); flat: ``w_k = 1``.
    """
    if kind == "flat":
        return torch.ones(length, dtype=torch.float64)
    if kind == "pyramid":
        k = torch.arange(length, dtype=torch.float64)
        return torch.minimum(k + 1, length - k)
    raise ValueError(f"unknown window weighting {kind!r}; use one of {WEIGHTINGS}")


def normalized_window_weights(windows: Sequence[Window], frames: int, kind: str = "pyramid") -> List[torch.Tensor]:
    """``w_i(f) / sum_j w_j(f)`` for every window ``i``: each frame's weights sum to 1 (float64)."""
    raw = [window_weights(len(w), kind) for w in windows]
    total = torch.zeros(frames, dtype=torch.float64)
    for w, r in zip(windows, raw):
        total.index_add_(0, torch.tensor(w), r)
    if (total == 0).any():
        missing = torch.nonzero(total == 0).flatten().tolist()
        raise ValueError(f"frames {missing} are in no window")
    return [r / total[list(w)] for w, r in zip(windows, raw)]


def _weighted_mean(pairs: Iterable[Tuple[Window, torch.Tensor]], frames: int, kind: str, dim: int) -> torch.Tensor:
    """Running weighted mean ``m <- m + (w / W_new) (y - m)``, ``W_new = W + w``, per frame.

    Exact where all windows agree on a frame (then ``y - m == 0``); accumulated in at least float32.
    """
    mean = total = None
    dtype = None
    for window, out in pairs:
        if len(set(window)) != len(window):
            raise ValueError(f"window {window} lists a frame twice")
        if out.shape[dim] != len(window):
            raise ValueError(f"a window of {len(window)} frames gave an output with {out.shape[dim]} on dim {dim}")
        y = out.movedim(dim, 0)
        if mean is None:
            dtype = out.dtype
            acc = torch.promote_types(out.dtype, torch.float32)
            mean = torch.zeros((frames,) + tuple(y.shape[1:]), dtype=acc, device=out.device)
            total = torch.zeros(frames, dtype=torch.float64)  # bookkeeping stays on the CPU (MPS has no float64)
        idx = torch.tensor(window)
        w = window_weights(len(window), kind)
        new_total = total[idx] + w
        ratio = (w / new_total).to(device=out.device, dtype=mean.dtype).view((-1,) + (1,) * (y.dim() - 1))
        didx = idx.to(out.device)
        m = mean[didx]
        mean[didx] = m + ratio * (y.to(mean.dtype) - m)
        total[idx] = new_total
    if mean is None:
        raise ValueError("no windows to fuse")
    if (total == 0).any():
        missing = torch.nonzero(total == 0).flatten().tolist()
        raise ValueError(f"frames {missing} are in no window")
    return mean.to(dtype).movedim(0, dim)


def fuse_windows(
    windows: Sequence[Window], outputs: Sequence[torch.Tensor], frames: int, weights: str = "pyramid", dim: int = 0
) -> torch.Tensor:
    """Fuse per-window outputs into one per-frame tensor: ``sum_i w~_i(f) y_i(f)`` (weights normalised).

    ``outputs[i]`` has the frames of ``windows[i]`` along ``dim`` in window order; the result has
    ``frames`` entries along ``dim``, in the dtype of the outputs.
    """
    if len(windows) != len(outputs):
        raise ValueError(f"{len(windows)} windows but {len(outputs)} outputs")
    window_weights(1, weights)  # validates the name before any work
    return _weighted_mean(zip(windows, outputs), frames, weights, dim)


def apply_windows(
    model_fn: Callable[[Window], torch.Tensor],
    windows: Sequence[Window],
    frames: int,
    weights: str = "pyramid",
    dim: int = 0,
) -> torch.Tensor:
    """``fuse_windows(windows, [model_fn(w) for w in windows], ...)``, fusing as each output arrives."""
    window_weights(1, weights)
    return _weighted_mean(((w, model_fn(w)) for w in windows), frames, weights, dim)
