"""Writing a clip: to a file atomically, or to bytes."""

import io
import os
import tempfile
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from lib_animate.errors import InvalidInputError

from .atomic import atomic_file, atomic_folder
from .encode_av import write_mp4, write_webm
from .encode_pillow import write_gif, write_png, write_webp
from .frames import Frame, as_rgb_arrays
from .options import EncodeOptions

_WRITERS: Dict[str, Callable[[List[np.ndarray], str, EncodeOptions], None]] = {
    "gif": write_gif,
    "mp4": write_mp4,
    "webm": write_webm,
    "webp": write_webp,
}
FORMATS = tuple(_WRITERS)
MIME_TYPES = {"gif": "image/gif", "mp4": "video/mp4", "webm": "video/webm", "webp": "image/webp"}


def save_video(
    frames: Sequence[Frame], path: str, options: EncodeOptions = EncodeOptions(), fmt: Optional[str] = None,
) -> str:
    """Write the clip to ``path`` atomically (folders are created); returns the absolute path.

    ``fmt`` is one of :data:`FORMATS`; by default it is taken from the file extension.
    """
    fmt = _format(fmt if fmt is not None else os.path.splitext(path)[1].lstrip("."))
    arrays = as_rgb_arrays(frames)
    path = os.path.abspath(path)
    with atomic_file(path) as tmp:
        _WRITERS[fmt](arrays, tmp, options)
    return path


def encode_video(frames: Sequence[Frame], fmt: str, options: EncodeOptions = EncodeOptions()) -> bytes:
    """The bytes of the clip in ``fmt`` (for API answers; see :data:`MIME_TYPES`)."""
    fmt = _format(fmt)
    arrays = as_rgb_arrays(frames)
    # The MP4 writer needs a real file (+faststart rewrites it), so every format goes through one.
    with tempfile.TemporaryDirectory(prefix="lib_animate_video_") as folder:
        path = os.path.join(folder, f"clip.{fmt}")
        _WRITERS[fmt](arrays, path, options)
        with open(path, "rb") as handle:
            return handle.read()


def save_png_frames(frames: Sequence[Frame], folder: str, infotext: Optional[str] = None) -> List[str]:
    """Write each frame as ``<folder>/00000.png``, ``00001.png``, ... with the infotext in each.

    Numbers have at least 5 digits (more for longer clips) so that names sort in frame order.
    A new folder appears complete in one rename; in an existing folder each file is replaced
    atomically. Returns the paths in frame order.
    """
    arrays = as_rgb_arrays(frames)
    folder = os.path.abspath(folder)
    digits = max(5, len(str(len(arrays) - 1)))
    names = [f"{i:0{digits}d}.png" for i in range(len(arrays))]
    with atomic_folder(folder) as tmp:
        for name, frame in zip(names, arrays):
            write_png(frame, os.path.join(tmp, name), infotext)
    return [os.path.join(folder, name) for name in names]


def encode_png(frame: Frame, infotext: Optional[str] = None) -> bytes:
    """One frame as PNG bytes with the infotext in a ``parameters`` chunk."""
    buffer = io.BytesIO()
    write_png(as_rgb_arrays([frame])[0], buffer, infotext)
    return buffer.getvalue()


def _format(fmt: str) -> str:
    name = str(fmt).lower().lstrip(".")
    if name not in _WRITERS:
        raise InvalidInputError(f"cannot write video format {fmt!r}; choose one of {', '.join(FORMATS)} (or PNG frames)")
    return name
