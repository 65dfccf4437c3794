"""Frame durations and loop counts, as each animation format stores them.

``loop`` throughout this package means *how many times the animation plays*; ``0`` means
forever. WebP and APNG store exactly that. GIF stores a NETSCAPE *repeat* count instead, which
browsers play ``1 + repeat`` times, with no NETSCAPE block meaning "play once".
"""

from typing import List, Optional

# Browsers play a GIF/WebP frame delay of 10 ms or less as 100 ms.
BROWSER_MIN_DELAY_MS = 10
BROWSER_DEFAULT_DELAY_MS = 100


def frame_durations_ms(fps: float, count: int, tick_ms: int = 1, min_ms: int = 1) -> List[int]:
    """Per-frame durations for ``count`` frames at ``fps``, in whole ``tick_ms`` steps.

    Each frame ends at the tick nearest to its exact end time, so rounding errors do not pile
    up: at 8 fps in GIF's 10 ms ticks the frames last 130, 120, 130, 120 ms (125 ms average).
    No duration is shorter than ``min_ms``.
    """
    ticks_per_second = 1000.0 / tick_ms
    durations = []
    previous_end = 0
    for i in range(count):
        end = int((i + 1) * ticks_per_second / fps + 0.5)
        durations.append(max(min_ms, (end - previous_end) * tick_ms))
        previous_end = end
    return durations


def playback_duration_ms(stored: Optional[float]) -> float:
    """The delay a browser uses for a stored GIF/WebP/APNG frame duration (missing or <= 10 ms -> 100 ms)."""
    if stored is None or stored <= BROWSER_MIN_DELAY_MS:
        return float(BROWSER_DEFAULT_DELAY_MS)
    return float(stored)


def gif_repeat_from_plays(plays: int) -> Optional[int]:
    """NETSCAPE repeat count for ``plays`` (0 = forever); ``None`` means write no NETSCAPE block."""
    if plays == 0:
        return 0
    if plays == 1:
        return None
    return plays - 1


def plays_from_gif_repeat(repeat: Optional[int]) -> int:
    """Inverse of :func:`gif_repeat_from_plays` (``None``: the GIF has no NETSCAPE block)."""
    if repeat is None:
        return 1
    if repeat == 0:
        return 0
    return repeat + 1
