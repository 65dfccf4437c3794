"""A generation started from the Animate Anyone tab, through the webui's txt2img processing.

Like the txt2img tab: a ``StableDiffusionProcessingTxt2Img`` whose script args are every script's
UI default, the webui's Seed and Sampler scripts given the tab's seed, steps and sampler, and ours
the mode's args dict, run by ``process_images``. The caller wraps it in ``wrap_gradio_gpu_call``, so
it holds the queue lock, reports progress with live previews and stops on Interrupt / Skip like any
webui job. It is a UI job (``p.is_api`` stays False): other extensions see what they see for the
txt2img tab, and nothing is base64-encoded. The job lists its videos (saved under
``txt2img-videos`` when the webui's "save images" setting is on, temporary files for the page
otherwise) in ``processed.js()``'s ``animate_anyone`` entry.
"""

import json
import os
import zipfile
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ..jobs import aa_sampler
from ..api.args import AA_DDIM
from ..scratch import scratch_folder

SCRIPT_TITLE = "Animate Anyone"
PLAYABLE = ("MP4", "WEBM")  # what gr.Video plays in every browser (H.264 MP4, VP9 WebM)


@dataclass
class TabResult:
    frames: List[str]  # PNG files in frame order, each with its infotext
    video: Optional[str] = None  # an MP4 / WebM for the player
    files: List[str] = field(default_factory=list)  # one download per requested format
    infotext: str = ""
    info_js: str = ""
    message: str = ""  # e.g. "interrupted, no video was written"
    seed: Optional[int] = None


def our_script(runner):
    for script in runner.alwayson_scripts:
        if script.title() == SCRIPT_TITLE:
            return script
    raise RuntimeError("the 'Animate Anyone' script is not loaded in txt2img")


def script_args(runner, args: Dict[str, Any], seed: int, steps: int, sampler: str) -> list:
    """The full flat list: every script's UI defaults, the Seed and Sampler scripts' values (which
    their setup() puts on p, as for the txt2img tab), our slot holding the args dict."""
    values = [0] + [component.value for component in runner.inputs[1:]]
    values[our_script(runner).args_from] = args
    own = {"Seed": [seed, False, -1, 0.0, 0, 0], "Sampler": [steps, sampler, "Automatic"]}
    for script in runner.alwayson_scripts:
        given = own.get(script.title())
        if given is None:
            continue
        if script.args_to - script.args_from != len(given):
            raise RuntimeError(f"the webui's {script.title()} script takes {script.args_to - script.args_from} values, "
                               f"not the {len(given)} of webui v1.10")
        values[script.args_from:script.args_to] = given
    return values


def run(args: Dict[str, Any], width: int, height: int, steps: int, cfg_scale: float, seed: int, user=None) -> TabResult:
    from modules import processing, scripts, shared
    from modules.shared import opts

    sampler = aa_sampler.NAME if args["sampler"] == AA_DDIM else args["sampler"]
    p = processing.StableDiffusionProcessingTxt2Img(
        sd_model=shared.sd_model,
        outpath_samples=opts.outdir_samples or opts.outdir_txt2img_samples,
        outpath_grids=opts.outdir_grids or opts.outdir_txt2img_grids,
        prompt="",  # the reference image's CLIP embedding takes the prompt's place in this mode
        negative_prompt="",
        seed=seed,
        sampler_name=sampler,
        batch_size=1,
        n_iter=1,
        steps=steps,
        cfg_scale=cfg_scale,
        width=width,
        height=height,
    )
    p.scripts = scripts.scripts_txt2img
    p.script_args = script_args(scripts.scripts_txt2img, args, seed, steps, sampler)
    p.do_not_save_samples = not opts.samples_save  # the job saves videos when this allows it
    p.user = user
    with closing(p):
        processed = processing.process_images(p)
    shared.total_tqdm.clear()
    return collect(processed, args.get("formats") or [])


def collect(processed, formats: List[str]) -> TabResult:
    """The player's video, the downloads, the frame files and the texts from a finished job."""
    from PIL import Image

    info_js = processed.js()
    entry = json.loads(info_js).get("animate_anyone") or {}
    # A UI job's images: the videos' animated previews (file paths), then the frames, then what
    # other scripts added; the infotexts are in the same order.
    first_frame = next((i for i, image in enumerate(processed.images) if isinstance(image, Image.Image)), len(processed.images))
    images = [image for image in processed.images[first_frame:] if isinstance(image, Image.Image)]
    scratch = _scratch_folder()
    result = TabResult(frames=_frame_files(images, processed.infotexts[first_frame:], scratch, processed.seed),
                       info_js=info_js, seed=processed.seed,
                       infotext=processed.infotexts[0] if processed.infotexts else processed.info,
                       message=_message(entry, processed.comments))
    if not entry.get("videos"):
        return result

    by_format = {item["format"]: item["path"] for item in entry.get("items", []) if item["video"] == 0 and item.get("path")}
    result.files = [by_format[fmt] for fmt in formats if fmt in by_format]
    if "PNG" in formats:
        result.files.append(_zip(result.frames[:entry["frames"]], os.path.join(scratch, f"{processed.seed}-frames.zip")))
    playable = [by_format[f] for f in PLAYABLE if f in by_format]
    if playable:
        result.video = playable[0]
    else:  # e.g. only GIF requested: the player still gets a video
        from ...video import EncodeOptions, save_video

        result.video = save_video(images[:entry["frames"]], os.path.join(scratch, f"{processed.seed}-player.mp4"),
                                  EncodeOptions(fps=entry["fps"]))
    return result


def _scratch_folder() -> str:
    """A new folder for files only the page needs (older ones are pruned)."""
    return scratch_folder("tab")


def _frame_files(frames, infotexts: List[str], folder: str, seed) -> List[str]:
    """The frames as PNG files named in frame order, each with its infotext: the gallery serves
    them as they are, and Extras' batch keeps their order."""
    from ...video import encode_png

    paths = []
    for i, frame in enumerate(frames):
        path = os.path.join(folder, f"{seed}-{i:05}.png")
        with open(path, "wb") as f:
            f.write(encode_png(frame, infotexts[i] if i < len(infotexts) else None))
        paths.append(path)
    return paths


def _message(entry: dict, comments: Optional[str]) -> str:
    """What the page says under Generate besides the time taken."""
    if entry.get("interrupted") and not entry.get("videos"):
        return "Interrupted: no video was written; the frames below are not finished."
    # the job also writes its message into the comments ("Animate Anyone: ...")
    lines = [line.strip() for line in (comments or "").splitlines() if line.strip()]
    message = entry.get("message") or ""
    if message and not any(message in line for line in lines):
        lines.insert(0, message)
    return "\n".join(lines)


def _zip(paths: List[str], target: str) -> str:
    """The PNG frames as one download."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in paths:
            archive.write(path, os.path.basename(path))
    return target
