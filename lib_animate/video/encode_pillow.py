"""GIF, animated WebP and PNG frames, written with Pillow (9.5 or later).

Pillow (and libwebp) merge identical consecutive frames into one longer frame; playback time is
unchanged but a reader then sees fewer frames.
"""

from typing import BinaryIO, List, Optional, Union

import numpy as np
from PIL import Image, PngImagePlugin

from .exif import user_comment_exif
from .options import EncodeOptions
from .timing import frame_durations_ms, gif_repeat_from_plays

Target = Union[str, BinaryIO]

# GIF delays are whole 10 ms ticks, and browsers play 10 ms or less as 100 ms: GIF tops out at
# 50 fps. WebP has 1 ms steps with the same 10 ms rule.
_GIF_TICK_MS, _GIF_MIN_MS = 10, 20
_WEBP_MIN_MS = 11


def write_gif(frames: List[np.ndarray], target: Target, options: EncodeOptions) -> None:
    images = [Image.fromarray(frame) for frame in frames]
    extra = {}
    repeat = gif_repeat_from_plays(options.loop)
    if repeat is not None:
        extra["loop"] = repeat
    if options.infotext:
        # The webui's PNG Info tab reads a GIF's infotext from its comment, as UTF-8.
        extra["comment"] = options.infotext.encode("utf-8")
    images[0].save(
        target, format="GIF", save_all=True, append_images=images[1:],
        duration=frame_durations_ms(options.fps, len(images), _GIF_TICK_MS, _GIF_MIN_MS),
        **extra,
    )


def write_webp(frames: List[np.ndarray], target: Target, options: EncodeOptions) -> None:
    images = [Image.fromarray(frame) for frame in frames]
    extra = {}
    if options.infotext:
        extra["exif"] = user_comment_exif(options.infotext)
    images[0].save(
        target, format="WEBP", save_all=True, append_images=images[1:],
        duration=frame_durations_ms(options.fps, len(images), 1, _WEBP_MIN_MS),
        loop=options.loop, quality=options.webp_quality, lossless=options.webp_lossless,
        method=options.webp_method, **extra,
    )


def write_png(frame: np.ndarray, target: Target, infotext: Optional[str] = None) -> None:
    """One PNG with the infotext in a ``parameters`` text chunk, as the webui writes it."""
    pnginfo = None
    if infotext:
        pnginfo = PngImagePlugin.PngInfo()
        pnginfo.add_text("parameters", infotext)  # iTXt (UTF-8) when not Latin-1
    Image.fromarray(frame).save(target, format="PNG", pnginfo=pnginfo)
