"""Folders of frame images: listing a user's folder in frame order, and laying out frame folders.

Frame order is the webui's (``modules.util.listfiles``): file names sorted "naturally" (digit
runs compare as numbers, so ``frame2`` comes before ``frame10``), case-insensitive, hidden files
skipped. A frame folder that another program reads (ControlNet's batch loader) is laid out with
names ``00000.png``, ``00001.png``, ... so every sort order agrees.
"""

import os
import re
import shutil
from typing import Iterable, List, Sequence

from PIL import Image, UnidentifiedImageError

from lib_animate.errors import InvalidInputError

from .frames import as_rgb_arrays


def natural_key(name: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_frame_files(folder: str, what: str) -> List[str]:
    """Every non-hidden file in ``folder`` in frame order; a clear error for a missing or empty folder."""
    if not folder or not os.path.isdir(folder):
        raise InvalidInputError(f"{what}: the folder {folder!r} does not exist on the server")
    names = sorted((n for n in os.listdir(folder) if not n.startswith(".")), key=natural_key)
    files = [os.path.join(folder, n) for n in names if os.path.isfile(os.path.join(folder, n))]
    if not files:
        raise InvalidInputError(f"{what}: the folder {folder!r} holds no files")
    return files


def check_images(paths: Sequence[str], what: str) -> List[tuple]:
    """Open every file's header (nothing is decoded): each must be an image (a clear error names the
    first that is not). Returns the (width, height) of each."""
    sizes = []
    for path in paths:
        try:
            with Image.open(path) as image:
                sizes.append(image.size)  # parsed from the header on open
        except (UnidentifiedImageError, OSError) as e:
            raise InvalidInputError(f"{what}: {os.path.basename(path)!r} is not a readable image ({e.__class__.__name__})") from e
    return sizes


def write_frames(frames: Iterable, folder: str) -> List[str]:
    """Write frames (H x W x 3 uint8 arrays or PIL images; an iterable is consumed one frame at a time)
    as fast, lossless PNGs; returns the paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, frame in enumerate(frames):
        path = os.path.join(folder, f"{i:05d}.png")
        Image.fromarray(as_rgb_arrays([frame])[0]).save(path, format="PNG", compress_level=1)
        paths.append(path)
    return paths


def link_frames(paths: Sequence[str], folder: str) -> str:
    """A new folder holding exactly ``paths`` in this order (``00000<ext>``, ...): links where the
    file system allows them, copies elsewhere. Returns the folder."""
    os.makedirs(folder, exist_ok=True)
    if os.listdir(folder):
        raise FileExistsError(f"{folder} is not empty")
    for i, path in enumerate(paths):
        target = os.path.join(folder, f"{i:05d}{os.path.splitext(path)[1].lower() or '.png'}")
        try:
            os.symlink(os.path.abspath(path), target)
        except OSError:  # e.g. Windows without the symlink privilege
            shutil.copyfile(path, target)
    return folder
