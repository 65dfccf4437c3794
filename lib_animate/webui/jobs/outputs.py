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
* A cell of the X/Y/Z plot: the frames first in every layout (the plot draws each cell's first
  image), then the videos.
"""

import base64
import os
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from ...video import EncodeOptions, encode_video, save_png_frames, save_video
from ..api.args import XYZ_CELLS
from ..scratch import scratch_folder

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


@dataclass
class FinishedJob:
    """What writing a finished job's outputs needs to know of it."""

    p: object
    args: object  # AnimateArgs
    settings: object  # Settings
    frames: int
    fps: float
    is_img2img: bool
    save_requested: bool
    video_infotext: Callable[[int, int], str]  # (index of the video's first frame, iteration) -> infotext
    info_extra: dict  # mode-specific entries of the API's info.animate_anyone
    extra_clips: list  # [(name, frames)]: further videos of the job (e.g. the control video)


def write_job_outputs(processed, job: "FinishedJob") -> None:
    """Write the job's videos and lay ``processed.images`` out as the module doc says. The generated
    frames are the images that have an infotext; what other scripts appended (ControlNet's detected
    maps) has none, is never counted as a frame and stays after our items, whichever postprocess ran
    first."""
    from modules import images, shared

    p, args = job.p, job.args
    frames = job.frames
    first = processed.index_of_first_image
    generated = max(0, min(len(processed.images), len(processed.infotexts)) - first)
    all_frames = list(processed.images[first:first + generated])
    others = list(processed.images[first + generated:])
    result = VideoOutputs(videos=len(all_frames) // frames, extra=job.info_extra)
    result.interrupted = bool(shared.state.interrupted or shared.state.skipped)
    cells = getattr(p, XYZ_CELLS, None)  # in an X/Y/Z plot with axes of ours: every cell's videos
    if isinstance(cells, list):
        cells.append(lambda: result.api_entry(frames, job.fps))
        wrap_js(processed, lambda: dict(result.api_entry(frames, job.fps), xyz_cells=[entry() for entry in cells]))
    else:
        wrap_js(processed, lambda: result.api_entry(frames, job.fps))
    if result.interrupted and not shared.opts.save_incomplete_images:
        result.videos = 0
        result.message = "interrupted, no video was written"
    if result.videos == 0:
        result.frames_index, result.returned_frames = (first if generated else None), generated
        result.message = result.message or "no complete video"
        processed.comments = (processed.comments or "") + f"\nAnimate Anyone: {result.message}."
        return

    compat = args.compat  # an sd-webui-animatediff request: its file names, TXT and answer layout
    video_infotexts = []
    video_frames = []  # per video, the indices (into the generated frames) of the frames its video shows
    first_video = (None, None)  # (folder, basename) of the first video, where extra clips are saved beside it
    for v in range(result.videos):
        order = list(range(v * frames, (v + 1) * frames))
        if args.pingpong:
            order = pingpong(order)
        video_frames.append(order)
        clip = [all_frames[i] for i in order]
        index = v * frames
        text = job.video_infotext(index, v)
        video_infotexts.append(text)
        options = encode_options(job.settings, job.fps, args.loop, text if shared.opts.enable_pnginfo else None)
        if job.save_requested:
            folder = video_folder(job, p.all_seeds[index], p.all_prompts[index], clip[0])
        else:  # the page still shows and offers the videos; an API answer carries their bytes
            folder = None if p.is_api else scratch_folder("videos")
        basename = None
        if folder is not None:
            os.makedirs(folder, exist_ok=True)
            basename = f"{images.get_next_sequence_number(folder, ''):05}-{p.all_seeds[index]}"
            if compat is not None and compat.request_id:
                basename += f"-{compat.request_id}"
        if v == 0:
            first_video = (folder, basename)
        video_items = write_video(v, clip, args.formats, options, folder, basename, want_bytes=p.is_api,
                                  write_txt=bool(getattr(shared.opts, "save_txt", False) or (compat and compat.write_txt)))
        result.items.extend(video_items)
        if not p.is_api:
            result.previews.append(preview_file(clip, options, video_items))

    for name, clip in job.extra_clips:  # once per job, saved beside the first video as <its name>-<name>
        options = encode_options(job.settings, job.fps, args.loop, None)
        folder, basename = first_video
        extra_items = write_video(0, clip, [f for f in args.formats if f != "PNG"], options, folder,
                                  f"{basename}-{name}" if basename else None, want_bytes=p.is_api, write_txt=False)
        for item in extra_items:
            item.kind = name
        result.items.extend(extra_items)
        if not p.is_api:
            result.previews.append(preview_file(clip, options, extra_items))

    count = result.videos * frames
    frame_infotexts = list(processed.infotexts[first:first + count])
    cell = in_xyz_plot(p)  # the plot keeps each cell's first image and draws it: frame 0 must come first
    if p.is_api and compat is not None and not cell:
        trailing = [i for i in result.items if i.format != "PNG"]
        returned = [i for order in video_frames for i in order] if compat.frames_in_answer else []
        processed.images = [base64_item(i) for i in trailing] + [all_frames[i] for i in returned] + others
        processed.infotexts = [video_infotexts[i.video] for i in trailing] + [frame_infotexts[i] for i in returned]
        result.first_item_index = 0
        result.frames_index = len(trailing) if returned else None
        result.returned_frames = len(returned)
    elif p.is_api:
        trailing = [i for i in result.items if i.format != "PNG"]
        processed.images = all_frames[:count] + [base64_item(i) for i in trailing] + others
        processed.infotexts = frame_infotexts + [video_infotexts[i.video] for i in trailing]
        result.first_item_index = count
        result.frames_index, result.returned_frames = (0 if count else None), count
    elif cell:
        processed.images = all_frames[:count] + result.previews + others
        result.frames_index, result.returned_frames = (0 if count else None), count
        extra_previews = len(result.previews) - len(video_infotexts)
        processed.infotexts = frame_infotexts + video_infotexts + [video_infotexts[0]] * extra_previews
    else:
        processed.images = result.previews + all_frames[:count] + others
        result.frames_index, result.returned_frames = (len(result.previews) if count else None), count
        extra_previews = len(result.previews) - len(video_infotexts)
        processed.infotexts = video_infotexts + [video_infotexts[0]] * extra_previews + frame_infotexts
    processed.index_of_first_image = 0


def in_xyz_plot(p) -> bool:
    """Whether ``p`` is a cell of the webui's X/Y/Z plot (the selected script of its run)."""
    runner, args = getattr(p, "scripts", None), getattr(p, "script_args", None)
    try:
        index = int(args[0]) if args else 0
        scripts = runner.selectable_scripts
    except (AttributeError, TypeError, ValueError):
        return False
    return 0 < index <= len(scripts) and scripts[index - 1].title().lower() == "x/y/z plot"


def video_folder(job: "FinishedJob", seed, prompt, image) -> str:
    from modules import images, shared

    p = job.p
    base = job.settings.video_dir
    if not base:
        kind = "img2img-videos" if job.is_img2img else "txt2img-videos"
        base = os.path.join(os.path.dirname(os.path.normpath(p.outpath_samples)), kind)
    if shared.opts.save_to_dirs:
        namegen = images.FilenameGenerator(p, seed, prompt, image)
        sub = namegen.apply(shared.opts.directories_filename_pattern or "[prompt_words]").lstrip(" ").rstrip("\\ /")
        base = os.path.join(base, sub)
    return base
