"""What a user handed us: a path or bytes, recognised by its first bytes (never its name).

Uploads arrive under temporary names and users rename files, so the container is identified
from its signature. Anything else is refused here, with a message that says what it looks like.
"""

import io
import os
from dataclasses import dataclass
from typing import BinaryIO, Optional, Union

from lib_animate.errors import InvalidInputError

ACCEPTED = "MP4, MOV, WebM, MKV, GIF, animated WebP or APNG"

# Kinds: "mp4" (ISO base media: MP4, MOV, M4V, 3GP), "matroska" (WebM, MKV), and the
# animation formats Pillow reads.
PILLOW_KINDS = ("gif", "webp", "png")
AV_KINDS = ("mp4", "matroska")

# Box types that can open an ISO base media file (old QuickTime files may not start with ftyp).
_ISO_FIRST_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot")

# Signatures of things people upload by mistake, to name them in the error message.
_KNOWN_OTHERS = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"ID3", "an MP3 audio file"),
    (b"OggS", "an Ogg file"),
    (b"\x1f\x8b", "a gzip archive"),
)

Input = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]


@dataclass(frozen=True)
class Source:
    kind: str
    description: str  # for messages, e.g. "the file 'dance.mp4' (1.2 MB)"
    path: Optional[str] = None
    data: Optional[bytes] = None

    def open(self) -> Union[str, BinaryIO]:
        """Something PyAV and Pillow can open: the path, or a fresh in-memory file."""
        return self.path if self.path is not None else io.BytesIO(self.data)


def load_source(source: Input) -> Source:
    """Identify ``source``; raise :class:`InvalidInputError` for anything we cannot decode."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        description = f"the uploaded data ({_size(len(data))})"
        head, path = data[:64], None
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        data = None
        description = _describe_path(path)
        try:
            with open(path, "rb") as handle:
                head = handle.read(64)
        except FileNotFoundError:
            raise InvalidInputError(f"{description} does not exist; give the path of a video file ({ACCEPTED})") from None
        except IsADirectoryError:
            raise InvalidInputError(f"{description} is a folder; give the path of a video file ({ACCEPTED})") from None
        except OSError as exc:
            raise InvalidInputError(f"{description} cannot be read: {exc.strerror or exc}") from None
    else:
        raise InvalidInputError(
            f"expected a file path or the bytes of a video, got {type(source).__name__}"
        )
    kind = sniff(head)
    if kind is None:
        raise InvalidInputError(
            f"{description} is {_looks_like(head)}, not a video or animation; accepted formats are {ACCEPTED}"
        )
    return Source(kind=kind, description=description, path=path, data=data)


def sniff(head: bytes) -> Optional[str]:
    """The container kind from a file's first bytes, or ``None``."""
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[4:8] in _ISO_FIRST_BOXES:
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    return None


def _looks_like(head: bytes) -> str:
    if not head:
        return "empty"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "an AVI video (convert it to MP4 or WebM)"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "a WAV audio file"
    for signature, name in _KNOWN_OTHERS:
        if head.startswith(signature):
            return name
    if _is_text(head):
        return "text"
    return "a file of unknown type"


def _is_text(head: bytes) -> bool:
    if any(byte < 0x09 for byte in head):
        return False
    for cut in range(4):  # the 64-byte head may end inside a multi-byte character
        try:
            head[:len(head) - cut].decode("utf-8")
            return True
        except UnicodeDecodeError:
            continue
    return False


def _describe_path(path: str) -> str:
    name = path if len(path) <= 120 else path[:60] + "..." + path[-40:]
    try:
        return f"the file {name!r} ({_size(os.path.getsize(path))})"
    except OSError:
        return f"the file {name!r}"


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KB"
    return f"{count / (1024 * 1024):.1f} MB"
