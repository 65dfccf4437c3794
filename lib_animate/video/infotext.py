"""Reading back the infotext (generation parameters) that the encoders store.

Where each format keeps it: PNG ``parameters`` text chunk, GIF comment (UTF-8), WebP EXIF
UserComment, MP4/MOV/WebM/MKV container metadata ``comment``. The first three are also where
the webui's PNG Info tab looks.
"""

import os
from typing import Optional

from lib_animate.errors import InvalidInputError

from .decode_av import open_container
from .decode_pillow import open_image
from .exif import user_comment_from_image
from .source import AV_KINDS, Input, load_source


def read_infotext(source: Input) -> Optional[str]:
    """The infotext stored in a file, its bytes, or a folder of PNG frames; ``None`` if absent.

    Raises :class:`~lib_animate.errors.InvalidInputError` for anything that is not a readable
    video, animation or PNG (a folder without PNG files included).
    """
    if isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
        source = _first_png(os.fspath(source))
    src = load_source(source)
    if src.kind in AV_KINDS:
        with open_container(src) as container:
            tags = {key.lower(): value for key, value in container.metadata.items()}
        return tags.get("comment") or None
    with open_image(src) as image:
        if src.kind == "png":
            text = image.info.get("parameters")
        elif src.kind == "gif":
            text = image.info.get("comment")
            if isinstance(text, bytes):
                text = text.decode("utf-8", errors="replace")
        else:
            text = user_comment_from_image(image)
    return text or None


def _first_png(folder: str) -> str:
    names = sorted(name for name in os.listdir(folder) if name.lower().endswith(".png"))
    if not names:
        raise InvalidInputError(f"the folder {folder!r} holds no PNG frames")
    return os.path.join(folder, names[0])
