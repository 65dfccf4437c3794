"""Turn a finished job's frames into videos: files on disk, the UI gallery, the API answer.

Layout of ``processed.images`` afterwards:

* API: every frame in order (PNG base64, as the webui returns images), then one base64 string
  per video and requested format (GIF, MP4, WEBM, WEBP; PNG frames add no item), then extra clips
  of the job (the control video), then whatever other scripts added (ControlNet's detected maps).
  ``info`` gets an ``animate_anyone`` entry listing the frame count, fps, where the frames start
  (``frames_index``) and every video item with its index.
* API, for a request in sd-webui-animatediff's fields: its layout -- per video, one item per
  requested format (GIF, MP4, WEBP, WEBM), then the frames of every video (as in the video) only
  when it asked for "Frame", then what other scripts added.
* UI: an animated GIF/WebP per video first (the gallery shows file paths byte for byte, so it
  animates), then the frames.
"""

import base64
import os
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from ..video import EncodeOptions, encode_video, save_png_frames, save_video
from .scratch import scratch_folder

EXTENSIONS = {"GIF": "gif", "MP4": "mp4", "WEBM": "webm", "WEBP": "webp"}


@dataclass
class VideoItem:
    video: int  # index of the video in the job (n_iter)
    format: str
    path: Optional[str] = None  # saved file or folder, None when not saved
    data: Optional[bytes] = None  # encoded bytes (API answers)
    kind: str = "video"  # "video": the generated frames; else an extra clip of the job (e.g. "control0")


@dataclass
class VideoOutputs:
    items: List[VideoItem] = field(default_factory=list)
    previews: List[str] = field(default_factory=list)  # animated files for the UI gallery
    videos: int = 0
    interrupted: bool = False
    message: str = ""
    first_item_index: int = 0  # where the video items start in the API's images
    frames_index: Optional[int] = None  # where the frames start in the API's images (None: not returned)
    returned_frames: int = 0
    extra: dict = field(default_factory=dict)  # mode-specific facts for the info entry

    def api_entry(self, frames: int, fps: float) -> dict:
        trailing = [i for i in self.items if i.format != "PNG"]
        return {
            "frames": frames,
            "fps": fps,
            "videos": self.videos,
            "interrupted": self.interrupted,
            "message": self.message,
            "items": [
                {"index": self.first_item_index + n, "video": i.video, "format": i.format, "path": i.path, "kind": i.kind}
                for n, i in enumerate(trailing)
            ],
            "frames_index": self.frames_index,
            "returned_frames": self.returned_frames,
            "png_frames": [{"video": i.video, "path": i.path} for i in self.items if i.format == "PNG"],
            **self.extra,
        }


def encode_options(settings, fps: float, loop: int, infotext: Optional[str]) -> EncodeOptions:
    return EncodeOptions(
        fps=fps,
        loop=loop,
        infotext=infotext,
        mp4_crf=settings.mp4_crf,
        mp4_preset=settings.mp4_preset,
        webm_crf=settings.webm_crf,
        webp_quality=settings.webp_quality,
        webp_lossless=settings.webp_lossless,
    )


def write_video(
    video: int,
    frames: list,
    formats: List[str],
    options: EncodeOptions,
    folder: Optional[str],
    basename: str,
    want_bytes: bool,
    write_txt: bool,
) -> List[VideoItem]:
    """Encode one clip in every requested format; save under ``folder`` when it is given."""
    items = []
    for fmt in formats:
        if fmt == "PNG":
            if folder is not None:
                target = os.path.join(folder, f"{basename}-frames")
                save_png_frames(frames, target, options.infotext)
                items.append(VideoItem(video, fmt, path=target))
            continue
        item = VideoItem(video, fmt)
        if folder is not None:
            item.path = save_video(frames, os.path.join(folder, f"{basename}.{EXTENSIONS[fmt]}"), options)
            if want_bytes:
                with open(item.path, "rb") as f:
                    item.data = f.read()
        elif want_bytes:
            item.data = encode_video(frames, EXTENSIONS[fmt], options)
        items.append(item)
    if folder is not None and write_txt and options.infotext:
        with open(os.path.join(folder, f"{basename}.txt"), "w", encoding="utf8") as f:
            f.write(options.infotext)
    return items


def pingpong(clip: list) -> list:
    """Forward, then back: the reversed frames without the two ends (which would show twice in a loop)."""
    return list(clip) + list(clip[-2:0:-1])


def preview_file(frames: list, options: EncodeOptions, existing: List[VideoItem]) -> str:
    """An animated file for the gallery: a saved GIF/WebP if there is one, else a temporary GIF."""
    for item in existing:
        if item.format in ("GIF", "WEBP") and item.path:
            return item.path
    return save_video(frames, os.path.join(scratch_folder("preview"), "preview.gif"), options)


def base64_item(item: VideoItem) -> str:
    return base64.b64encode(item.data).decode("ascii")


def wrap_js(processed, entry_factory: Callable[[], dict]) -> None:
    """Add the ``animate_anyone`` entry to the info JSON the UI and API return (instance-level)."""
    import json

    original = processed.js

    def js():
        info = json.loads(original())
        info["animate_anyone"] = entry_factory()
        return json.dumps(info, default=lambda o: None)

    processed.js = js
