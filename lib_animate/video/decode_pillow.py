"""Reading GIF, WebP and (A)PNG frames with Pillow, with each frame's stored duration."""

import contextlib
import itertools
from typing import Iterator, Optional

import numpy as np
from PIL import Image

from lib_animate.errors import InvalidInputError

from .decoded import RawFrame
from .source import Source
from .timing import playback_duration_ms, plays_from_gif_repeat

# Pillow's decoders signal corrupt data with many exception types (OSError, SyntaxError,
# ValueError, IndexError on a cut-short GIF in Pillow 13, DecompressionBombError, ...), so any
# exception out of Pillow's open/seek/load means the file is broken. Only those calls are
# wrapped, so this cannot hide a bug of ours.
_NAMES = {"gif": "GIF", "webp": "WebP", "png": "PNG"}


@contextlib.contextmanager
def open_image(source: Source) -> Iterator[Image.Image]:
    """Pillow's image, with decoding errors turned into a message for the user."""
    try:
        image = Image.open(source.open())
    except Exception as exc:
        raise InvalidInputError(damaged_message(source, exc)) from exc
    with image:
        yield image


def damaged_message(source: Source, exc: BaseException) -> str:
    name = _NAMES.get(source.kind, source.kind)
    return (
        f"{source.description} looks like a {name} file but cannot be decoded ({exc}); "
        f"it may be cut short or damaged: export or download it again"
    )


class PillowReader:
    has_durations = True
    nominal_fps = None
    rotation = 0

    def __init__(self, image: Image.Image, source: Source):
        self.image = image
        self.source = source
        self.width, self.height = image.size
        self.loop = self._loop()

    def _loop(self) -> Optional[int]:
        """Plays (0 = forever) as stored; None for a still image."""
        if not getattr(self.image, "is_animated", False):
            return None
        if self.source.kind == "gif":
            return plays_from_gif_repeat(self.image.info.get("loop"))
        return int(self.image.info.get("loop", 0))  # WebP loop count / APNG num_plays

    def frames(self) -> Iterator[RawFrame]:
        time_s = 0.0
        for index in itertools.count():
            try:
                self.image.seek(index)
            except EOFError:  # past the last frame
                return
            except Exception as exc:
                raise InvalidInputError(damaged_message(self.source, exc)) from exc
            try:
                self.image.load()  # WebP updates info["duration"] only on load
            except Exception as exc:
                raise InvalidInputError(damaged_message(self.source, exc)) from exc
            duration_s = playback_duration_ms(self.image.info.get("duration")) / 1000.0
            yield RawFrame(time_s, duration_s, self._rgb)
            time_s += duration_s

    def check_complete(self) -> None:
        """Pillow raises on a cut-short file while reading, so there is nothing left to check."""

    def _rgb(self) -> np.ndarray:
        image = self.image
        if image.mode == "RGB":
            return np.array(image)
        if image.mode not in ("RGBA", "LA", "PA") and "transparency" not in image.info:
            return np.array(image.convert("RGB"))
        # Transparent pixels become black (the background of pose skeleton videos).
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint16)
        alpha = rgba[..., 3:]
        return ((rgba[..., :3] * alpha + 127) // 255).astype(np.uint8)
