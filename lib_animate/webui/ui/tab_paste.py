"""Re-opening a result in the Animate Anyone tab, and handing its frames to other tabs.

The restore button goes through the webui's own paste machinery (``infotext_utils``): the
infotext is parsed by ``parse_generation_parameters`` and every control gets its value from the
standard keys (Size, Steps, CFG scale, Seed) or from the mode's ``Animate Anyone: {json}`` entry.
"""

import html
import json
from typing import Any, List, Optional

from ..api.args import AA_DDIM, CONTEXT_SCHEDULES, FITS, FORMATS, POSE_SOURCES
from ..api.infotext import KEY, pasted_fields

# control -> how a value from the infotext's JSON becomes the control's value
_JSON_FIELDS = {
    "fps": float,
    "loop": int,
    "context_length": int,
    "context_overlap": int,
    "context_schedule": lambda v: v if v in CONTEXT_SCHEDULES else None,
    "pingpong": bool,
    "pose_stride": int,
    "pose_fps": float,
    "pose_max_frames": int,
    "draw_face": bool,
    "draw_hands": bool,
    "retarget": bool,
    "pose_source": lambda v: v if v in POSE_SOURCES else None,
    "fit": lambda v: v if v in FITS else None,
    "formats": lambda v: [f for f in v if f in FORMATS] if isinstance(v, list) else None,
}


def paste_fields(c, samplers: List[str]) -> list:
    """(component, infotext key or getter) pairs for ``infotext_utils.add_paste_fields``."""
    fields = [(c["width"], "Size-1"), (c["height"], "Size-2"), (c["steps"], "Steps"), (c["cfg_scale"], "CFG scale"),
              (c["seed"], "Seed"), (c["sampler"], _sampler_getter(samplers))]
    fields += [(c[name], _json_getter(name, convert)) for name, convert in _JSON_FIELDS.items()]
    fields.append((c["paste_note"], _note))
    return fields


def _json_getter(name: str, convert):
    def get(params):
        import gradio as gr

        value = pasted_fields(params).get(name)
        if value is None:
            return None
        try:
            value = convert(value)
        except (TypeError, ValueError):
            return None
        return None if value is None else gr.update(value=value)

    return get


def _sampler_getter(samplers: List[str]):
    def get(params):
        from ..jobs import aa_sampler

        for name in (pasted_fields(params).get("sampler"), params.get("Sampler")):
            if name == aa_sampler.NAME:
                name = AA_DDIM
            if name in samplers:
                return name
        return None

    return get


def _note(params) -> str:
    if KEY in params:
        text = "Settings restored. Upload the reference image and the pose sequence again: they are not stored in the infotext."
        return f"<div class='animate-anyone-note'>{html.escape(text)}</div>"
    text = "This infotext has no 'Animate Anyone' entry: only the size, steps, CFG scale and seed were read."
    return f"<div class='animate-anyone-error' role='alert'>{html.escape(text)}</div>"


def seed_of(generation_info: str):
    """The seed of the last result (from its ``processed.js()``), -1 without one."""
    try:
        return int(json.loads(generation_info)["seed"])
    except (ValueError, KeyError, TypeError):
        return -1


def gallery_files(gallery: Optional[list]) -> List[str]:
    """The files a gr.Gallery shows (gradio 3.41 sends ``{"name": path, ...}`` or ``[that, caption]``)."""
    paths = []
    for item in gallery or []:
        if isinstance(item, (list, tuple)) and item:
            item = item[0]
        name = item.get("name") if isinstance(item, dict) else None
        if name:
            paths.append(name.rsplit("?", 1)[0])  # the webui adds "?mtime" to saved images
    return paths


def infotext_of_file(upload: Any):
    """(infotext, note HTML) read from a result file the user dropped."""
    from ...errors import AnimateError
    from ...video import read_infotext

    if upload is None:
        return "", ""
    path = getattr(upload, "name", upload)
    try:
        text = read_infotext(path)
    except (AnimateError, OSError) as e:
        text, problem = None, str(e)
    else:
        problem = "no infotext stored in this file"
    if not text:
        return "", f"<div class='animate-anyone-error' role='alert'>{html.escape(problem)}</div>"
    return text, "<div class='animate-anyone-note'>Infotext read from the file; press 'Restore the settings'.</div>"
