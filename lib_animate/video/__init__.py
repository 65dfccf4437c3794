"""Video files in and out: GIF, MP4 (H.264), WebM (VP9), animated WebP, PNG frames.

Pure Python over Pillow (>= 9.5) and PyAV (>= 17, FFmpeg inside the wheel); no ffmpeg binary,
no webui imports.

Writing (frames: a sequence of H x W x 3 uint8 arrays or PIL images, all the same size)::

    options = EncodeOptions(fps=8, loop=0, infotext=text)       # checked on creation
    save_video(frames, "out/clip.mp4", options)  -> absolute path; format from the extension
    encode_video(frames, "webm", options)        -> bytes (for API answers; MIME_TYPES[fmt])
    save_png_frames(frames, "out/clip", text)    -> [".../00000.png", ...]
    encode_png(frame, text)                      -> bytes of one PNG

Every file write is atomic: a hidden ``*.tmp`` sibling is renamed over the final name, so a
crash never leaves a half-written file under it. ``loop`` is how many times a GIF/WebP plays
(0 = forever). MP4 is yuv420p; an odd width/height is padded by one copied row/column.

Reading a user's file (a path or its bytes; recognised by content, not name)::

    clip = read_video(src, stride=1, target_fps=None, max_frames=None)
    clip.frames (N x H x W x 3 uint8, upright), clip.fps, clip.durations_ms, clip.loop, ...
    read_infotext(src)                           -> the stored infotext or None

MP4/MOV and WebM/MKV are read with PyAV (rotation metadata applied), GIF/WebP/APNG with
Pillow (per-frame durations). Anything unusable raises
:class:`lib_animate.errors.InvalidInputError` with a message for the user.
"""

from .decode import DEFAULT_MAX_DECODED_FRAMES, DEFAULT_MAX_TOTAL_PIXELS, read_video
from .decoded import DecodedVideo
from .encode import FORMATS, MIME_TYPES, encode_png, encode_video, save_png_frames, save_video
from .infotext import read_infotext
from .options import EncodeOptions
from .source import ACCEPTED

__all__ = [
    "ACCEPTED",
    "DEFAULT_MAX_DECODED_FRAMES",
    "DEFAULT_MAX_TOTAL_PIXELS",
    "DecodedVideo",
    "EncodeOptions",
    "FORMATS",
    "MIME_TYPES",
    "encode_png",
    "encode_video",
    "read_infotext",
    "read_video",
    "save_png_frames",
    "save_video",
]
