"""The EXIF UserComment that carries infotext in WebP files.

The webui's PNG Info tab reads a WebP's infotext from EXIF ``UserComment`` with piexif, as text
behind the 8-byte ``UNICODE\\0`` prefix in UTF-16 big-endian (what piexif writes for
``encoding="unicode"``). Pillow 9.5 cannot write a nested EXIF IFD with the right tag type, so
the few bytes of TIFF structure are written here directly.
"""

import struct
from typing import Optional

from PIL import Image

_EXIF_IFD_POINTER = 0x8769
_USER_COMMENT = 0x9286
_TYPE_LONG = 4
_TYPE_UNDEFINED = 7
_UNICODE_PREFIX = b"UNICODE\x00"
_ASCII_PREFIX = b"ASCII\x00\x00\x00"


def user_comment_exif(text: str) -> bytes:
    """EXIF bytes (with the ``Exif\\0\\0`` header Pillow expects) holding ``text`` as UserComment."""
    comment = _UNICODE_PREFIX + text.encode("utf_16_be")
    # Big-endian TIFF: header, IFD0 with one entry (pointer to the Exif IFD), the Exif IFD with
    # one entry (UserComment, stored after it). Each IFD: count, 12-byte entries, next-IFD offset.
    ifd_size = 2 + 12 + 4
    exif_ifd_offset = 8 + ifd_size
    comment_offset = exif_ifd_offset + ifd_size
    return b"".join((
        b"Exif\x00\x00",
        b"MM\x00\x2a", struct.pack(">I", 8),
        struct.pack(">HHHII", 1, _EXIF_IFD_POINTER, _TYPE_LONG, 1, exif_ifd_offset), struct.pack(">I", 0),
        struct.pack(">HHHII", 1, _USER_COMMENT, _TYPE_UNDEFINED, len(comment), comment_offset), struct.pack(">I", 0),
        comment,
    ))


def decode_user_comment(raw) -> Optional[str]:
    """Text of an EXIF UserComment value (``UNICODE``/``ASCII``/undefined character code)."""
    if isinstance(raw, str):
        return raw or None
    raw = bytes(raw)
    code, body = raw[:8], raw[8:]
    if code == _UNICODE_PREFIX:
        if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
            text = body.decode("utf_16", errors="replace")
        else:
            text = body.decode("utf_16_be", errors="replace")
    elif code == _ASCII_PREFIX or code == b"\x00" * 8:
        text = body.decode("utf-8", errors="replace")
    else:
        text = raw.decode("utf-8", errors="replace")
    text = text.rstrip("\x00")
    return text or None


def user_comment_from_image(image: Image.Image) -> Optional[str]:
    """The UserComment of an opened image's EXIF, or ``None``."""
    if "exif" not in image.info:
        return None
    raw = image.getexif().get_ifd(_EXIF_IFD_POINTER).get(_USER_COMMENT)
    return None if raw is None else decode_user_comment(raw)
