"""The accordion in txt2img / img2img.

``build`` returns the components in the order of ``ui_fields(is_img2img)``; the first one is the
enable checkbox (the accordion itself). The API puts one dict in that first slot instead, which
the job recognises, so the UI and the API share one validator.
"""

import os
from typing import Any, Dict, List, Sequence, Tuple

from ..api.args import (AA_DDIM, CONTEXT_SCHEDULES, FITS, FORMATS, FREEINIT_FILTERS, FUSIONS, INTERPOLATIONS, MODES, NOISE_INITS,
                        NOISE_SCHEDULES, POSE_SOURCES, REFERENCE_NOISES, AnimateArgs)
from ..api.infotext import pasted_fields
from . import module_list

MOTION_LORA_ROWS = 3
NO_LORA = "None"
AUTO = "auto"  # the schedule's / mode's default: the field is left out of the request

_COMMON_FIELDS = (
    "enable", "mode", "motion_module", "frames", "fps", "loop", "formats", "pingpong",
    "context_length", "context_overlap", "context_schedule", "context_stride", "fusion", "motion_scale", "noise_init",
    "freenoise_window", "freenoise_stride", "freeinit_iterations", "freeinit_filter", "freeinit_spatial", "freeinit_temporal",
    "freeinit_order", "freeinit_all_passes",
    "noise_schedule", "prompt_interpolation", "control_upload", "control_stride", "control_maps",
)
_IMG2IMG_FIELDS = ("init_strength", "latent_power", "latent_scale", "last_frame", "latent_power_last", "latent_scale_last",
                   "init_video")
_UPLOADS = ("last_frame", "reference_image", "pose_video", "pose_frames", "pose_json", "control_upload", "init_video",
            "reference_pose_json")
_ANIMATE_ANYONE_FIELDS = (
    "reference_image", "pose_video", "pose_frames", "pose_json", "pose_source", "pose_stride", "pose_fps",
    "pose_max_frames", "fit", "draw_face", "draw_hands", "sampler", "retarget", "reference_pose_json",
    "character", "reference_strength", "style_fidelity", "reference_noise",
)


def ui_fields(is_img2img: bool) -> Tuple[str, ...]:
    lora_fields = tuple(f"motion_lora_{i}_{part}" for i in range(MOTION_LORA_ROWS) for part in ("name", "strength"))
    return _COMMON_FIELDS + lora_fields + (_IMG2IMG_FIELDS if is_img2img else _ANIMATE_ANYONE_FIELDS)


def _read_upload(value, as_text=False):
    """gradio 3.41 hands uploads over as paths (gr.Video) or temp-file objects (gr.File)."""
    if value is None:
        return None
    path = getattr(value, "name", value)
    with open(path, "r" if as_text else "rb", **({"encoding": "utf8"} if as_text else {})) as f:
        return f.read()


def _control_upload(files) -> Dict[str, Any]:
    """One file is a control video (or animation); several are control frames, in file-name order."""
    files = [f for f in (files or []) if f is not None]
    if not files:
        return {}
    if len(files) == 1:
        return {"control_video": _read_upload(files[0])}
    from ...video.frame_files import natural_key

    paths = sorted((getattr(f, "name", f) for f in files), key=lambda path: natural_key(os.path.basename(path)))
    return {"control_frames": [_read_upload(path) for path in paths]}


def _motion_scale_text(text):
    """The box holds a number or keyframes; a number goes to the job as a number."""
    if text is None or not str(text).strip():
        return 1.0
    try:
        return float(text)
    except ValueError:
        return str(text).strip()


def values_to_dict(values: Sequence[Any], is_img2img: bool) -> Dict[str, Any]:
    """The UI components' values -> the API's field dict."""
    named = dict(zip(ui_fields(is_img2img), values))
    named.update(_control_upload(named.pop("control_upload", None)))
    if named.get("frames") in (0, 0.0):
        named.pop("frames")  # 0: as many frames as the control / init video
    loras = []
    for i in range(MOTION_LORA_ROWS):
        name = named.pop(f"motion_lora_{i}_name", None)
        strength = named.pop(f"motion_lora_{i}_strength", 1.0)
        if name and name != NO_LORA:
            loras.append({"name": name, "strength": float(strength)})
    named["motion_loras"] = loras
    named["motion_scale"] = _motion_scale_text(named.get("motion_scale"))
    for key in ("context_schedule", "fusion"):
        if named.get(key) in (AUTO, None):
            named.pop(key, None)
    for key in ("frames", "loop", "context_length", "context_overlap", "context_stride", "control_stride",
                "freenoise_window", "freenoise_stride", "freeinit_iterations"):
        if isinstance(named.get(key), float) and named[key].is_integer():
            named[key] = int(named[key])
    named["formats"] = list(named.get("formats") or [])
    if is_img2img:
        named["init_video"] = _read_upload(named.get("init_video"))
    else:
        named["pose_video"] = _read_upload(named.get("pose_video"))
        named["pose_json"] = _read_upload(named.get("pose_json"), as_text=True)
        named["reference_pose_json"] = _read_upload(named.get("reference_pose_json"), as_text=True)
        frames = named.get("pose_frames") or []
        named["pose_frames"] = [_read_upload(f) for f in frames] if frames else None
        if named.get("mode") == "animate_anyone":
            named.pop("fps", None)  # the pose video's fps (or pose_fps) unless the API sets one
        for key in ("pose_stride", "pose_max_frames"):
            if isinstance(named.get(key), float) and named[key].is_integer():
                named[key] = int(named[key])
    return named


def build(script, is_img2img: bool, library, settings=None, module_dropdowns=None) -> List[Any]:
    import gradio as gr
    from modules.ui_components import FormRow, InputAccordion, ToolButton

    defaults = AnimateArgs()
    if settings is not None:  # the accordion's defaults from Settings (the API keeps the documented ones)
        defaults.frames, defaults.fps, defaults.formats = settings.default_frames, settings.default_fps, list(settings.default_formats)
    modules = library.modules(module_list.selected_family())  # those made for the selected checkpoint
    loras = [NO_LORA] + library.loras()

    def eid(name):
        return script.elem_id(name)

    with InputAccordion(False, label="Animate Anyone", elem_id=eid("enable")) as enable:
        mode = gr.Radio(label="Mode", choices=list(MODES) if not is_img2img else ["animatediff"], value="animatediff", elem_id=eid("mode"),
                        tooltip="animatediff: your checkpoint and LoRAs + a motion module; animate_anyone: a reference image and a pose sequence")
        with FormRow():
            motion_module = gr.Dropdown(label="Motion module", choices=modules, value=modules[0] if modules else None, elem_id=eid("motion_module"))
            refresh = ToolButton(value="\U0001f504", elem_id=eid("refresh"), tooltip="Rescan the motion module folders")
        if module_dropdowns is not None:  # follows the checkpoint dropdown
            module_dropdowns.add(motion_module)
        with FormRow():
            frames = gr.Slider(label="Frames (0 = as many as the control / init video)", minimum=0, maximum=256, step=1,
                               value=defaults.frames, elem_id=eid("frames"))
            fps = gr.Number(label="FPS", value=defaults.fps, minimum=1, elem_id=eid("fps"))
            loop = gr.Number(label="Loop (0 = forever)", value=defaults.loop, precision=0, minimum=0, elem_id=eid("loop"))
        with FormRow():
            control_upload = gr.File(label="Control video / frames (one frame per video frame for every ControlNet unit without an image)",
                                     file_count="multiple", file_types=["video", "image", ".gif", ".webp", ".mkv"],
                                     elem_id=eid("control_upload"))
            with gr.Column(scale=0, min_width=160):
                control_stride = gr.Number(label="Control stride", value=defaults.control_stride, precision=0, minimum=1,
                                           elem_id=eid("control_stride"), tooltip="Keep every n-th frame of every per-frame input")
                control_maps = gr.Checkbox(label="Return ControlNet maps", value=defaults.control_maps, elem_id=eid("control_maps"),
                                           tooltip="Also return the hints ControlNet saw, as images after the videos and as a 'control' video")
        with FormRow():
            formats = gr.CheckboxGroup(label="Save formats", choices=list(FORMATS), value=list(defaults.formats), elem_id=eid("formats"))
            pingpong = gr.Checkbox(label="Ping-pong (forward, then back)", value=defaults.pingpong, elem_id=eid("pingpong"),
                                   tooltip="The videos play the frames forward, then backward (without repeating the two ends)")
        with gr.Accordion("Context windows (videos longer than the motion module's window)", open=False):
            with FormRow():
                context_length = gr.Number(label="Context length (0 = module's window)", value=defaults.context_length, precision=0, minimum=0, elem_id=eid("context_length"))
                context_overlap = gr.Number(label="Overlap", value=defaults.context_overlap, precision=0, minimum=0, elem_id=eid("context_overlap"))
                context_stride = gr.Number(label="Stride", value=defaults.context_stride, precision=0, minimum=1, elem_id=eid("context_stride"))
            with FormRow():
                context_schedule = gr.Radio(label="Window schedule", choices=[AUTO, *CONTEXT_SCHEDULES], value=AUTO, elem_id=eid("context_schedule"),
                                            tooltip="auto: open (AnimateDiff), reference (Animate Anyone). open: windows never wrap; "
                                                    "loop: the end joins the start, windows shift every step; reference: Animate "
                                                    "Anyone's static wrapping windows, averaged flat")
                fusion = gr.Radio(label="Window fusion", choices=[AUTO, *FUSIONS], value=AUTO, elem_id=eid("fusion"),
                                  tooltip="auto: flat for the reference schedule, else pyramid (window centres weigh most)")
            with FormRow():
                noise_init = gr.Radio(label="Initial noise", choices=list(NOISE_INITS), value=defaults.noise_init, elem_id=eid("noise_init"),
                                      tooltip="freenoise: frames after the first window start from shuffles of its noise (steadier long videos)")
                freenoise_window = gr.Number(label="FreeNoise window (0 = context length)", value=defaults.freenoise_window, precision=0, minimum=0, elem_id=eid("freenoise_window"))
                freenoise_stride = gr.Number(label="FreeNoise stride", value=defaults.freenoise_stride, precision=0, minimum=1, elem_id=eid("freenoise_stride"))
        with gr.Accordion("FreeInit (steadier videos; each pass costs a full sampling)", open=False):
            with FormRow():
                freeinit_iterations = gr.Slider(label="Extra passes (0 = off)", minimum=0, maximum=8, step=1, value=defaults.freeinit_iterations,
                                                elem_id=eid("freeinit_iterations"))
                freeinit_filter = gr.Radio(label="Filter", choices=list(FREEINIT_FILTERS), value=defaults.freeinit_filter, elem_id=eid("freeinit_filter"))
            with FormRow():
                freeinit_spatial = gr.Slider(label="Spatial stop frequency", minimum=0, maximum=1, step=0.0625, value=defaults.freeinit_spatial, elem_id=eid("freeinit_spatial"))
                freeinit_temporal = gr.Slider(label="Temporal stop frequency", minimum=0, maximum=1, step=0.0625, value=defaults.freeinit_temporal, elem_id=eid("freeinit_temporal"))
                freeinit_order = gr.Number(label="Butterworth order", value=defaults.freeinit_order, minimum=0.5, elem_id=eid("freeinit_order"))
                freeinit_all_passes = gr.Checkbox(label="Also show the earlier passes", value=defaults.freeinit_all_passes,
                                                  elem_id=eid("freeinit_all_passes"))
        motion_scale = gr.Textbox(label="Motion scale", value=str(defaults.motion_scale), elem_id=eid("motion_scale"),
                                  placeholder="1.0, or keyframes 0:1.0, 8:0.6",
                                  tooltip="How strongly the motion module acts: 0 = the image model alone, 1 = as trained; keyframes 'frame:value' per frame")
        with FormRow():
            noise_schedule = gr.Radio(label="Noise schedule", choices=list(NOISE_SCHEDULES), value=defaults.noise_schedule, elem_id=eid("noise_schedule"),
                                      tooltip="motion_module: the schedule the motion module was trained with (recommended); checkpoint: keep the checkpoint's")
            prompt_interpolation = gr.Radio(label="Prompt travel interpolation", choices=list(INTERPOLATIONS), value=defaults.prompt_interpolation, elem_id=eid("prompt_interpolation"),
                                            tooltip="Prompt travel: lines '0: prompt', '8: prompt' in the prompt box")
        lora_components = []
        with gr.Accordion("Motion LoRAs", open=False):
            for i in range(MOTION_LORA_ROWS):
                with FormRow():
                    name = gr.Dropdown(label=f"Motion LoRA {i + 1}", choices=loras, value=NO_LORA, elem_id=eid(f"motion_lora_{i}_name"))
                    strength = gr.Slider(label="Strength", minimum=-2, maximum=2, step=0.05, value=1.0, elem_id=eid(f"motion_lora_{i}_strength"))
                lora_components += [name, strength]
        img2img_components = []
        if is_img2img:
            with gr.Accordion("Image to video", open=True):
                with FormRow():
                    init_strength = gr.Slider(label="First-frame strength", minimum=0, maximum=1, step=0.01, value=defaults.init_strength, elem_id=eid("init_strength"))
                    latent_power = gr.Number(label="Fade power", value=defaults.latent_power, minimum=0.01, elem_id=eid("latent_power"))
                    latent_scale = gr.Number(label="Fade scale", value=defaults.latent_scale, minimum=0.01, elem_id=eid("latent_scale"))
                last_frame = gr.Image(label="Last frame (optional)", type="pil", source="upload", elem_id=eid("last_frame"))
                with FormRow():
                    latent_power_last = gr.Number(label="Last-frame fade power", value=defaults.latent_power_last, minimum=0.01, elem_id=eid("latent_power_last"))
                    latent_scale_last = gr.Number(label="Last-frame fade scale", value=defaults.latent_scale_last, minimum=0.01, elem_id=eid("latent_scale_last"))
            with gr.Accordion("Video to video", open=False):
                init_video = gr.Video(label="Init video: each frame gets its own init image, at the denoising strength "
                                            "(replaces the image above; the first/last-frame pinning is not used)",
                                      source="upload", elem_id=eid("init_video"))
            img2img_components = [init_strength, latent_power, latent_scale, last_frame, latent_power_last, latent_scale_last, init_video]
        animate_anyone_components = [] if is_img2img else _animate_anyone_section(eid, defaults)

    def rescan():
        modules_now = library.modules(module_list.selected_family())
        loras_now = [NO_LORA] + library.loras()
        return [gr.Dropdown.update(choices=modules_now)] + [gr.Dropdown.update(choices=loras_now) for _ in range(MOTION_LORA_ROWS)]

    refresh.click(fn=rescan, inputs=[], outputs=[motion_module] + lora_components[0::2])

    components = [enable, mode, motion_module, frames, fps, loop, formats, pingpong, context_length, context_overlap,
                  context_schedule, context_stride, fusion, motion_scale, noise_init, freenoise_window, freenoise_stride, freeinit_iterations, freeinit_filter, freeinit_spatial,
                  freeinit_temporal, freeinit_order, freeinit_all_passes, noise_schedule, prompt_interpolation, control_upload, control_stride,
                  control_maps] + lora_components + img2img_components + animate_anyone_components
    script.infotext_fields = _infotext_fields(components, is_img2img)
    script.paste_field_names = []
    return components


def _animate_anyone_section(eid, defaults) -> List[Any]:
    """Reference and pose inputs of the Animate Anyone mode (the dedicated tab has the same)."""
    import gradio as gr
    from modules import sd_samplers
    from modules.ui_components import FormRow

    samplers = [AA_DDIM] + [name for name in sd_samplers.visible_sampler_names() if not name.startswith("Animate Anyone")]
    with gr.Accordion("Animate Anyone mode: reference image and pose sequence", open=False):
        with FormRow():
            reference_image = gr.Image(label="Reference image", type="pil", source="upload", elem_id=eid("reference_image"))
            pose_video = gr.Video(label="Pose video (skeletons, or a person with DWPose files)", source="upload", elem_id=eid("pose_video"))
        with FormRow():
            pose_frames = gr.File(label="...or pose images", file_count="multiple", file_types=["image"], elem_id=eid("pose_frames"))
            pose_json = gr.File(label="...or OpenPose JSON", file_types=[".json"], elem_id=eid("pose_json"))
        with FormRow():
            pose_source = gr.Radio(label="Pose video holds", choices=list(POSE_SOURCES), value=defaults.pose_source, elem_id=eid("pose_source"))
            fit = gr.Radio(label="Fit to the size", choices=list(FITS), value=defaults.fit, elem_id=eid("fit"))
        with FormRow():
            pose_stride = gr.Number(label="Pose frame stride", value=defaults.pose_stride, precision=0, minimum=1, elem_id=eid("pose_stride"))
            pose_fps = gr.Number(label="Pose fps (0 = the video's)", value=defaults.pose_fps, minimum=0, elem_id=eid("pose_fps"))
            pose_max_frames = gr.Number(label="Max pose frames (0 = all)", value=defaults.pose_max_frames, precision=0, minimum=0, elem_id=eid("pose_max_frames"))
        with FormRow():
            draw_face = gr.Checkbox(label="Draw face points (JSON / detected poses)", value=defaults.draw_face, elem_id=eid("draw_face"))
            draw_hands = gr.Checkbox(label="Draw hands", value=defaults.draw_hands, elem_id=eid("draw_hands"))
            sampler = gr.Dropdown(label="Sampler", choices=samplers, value=AA_DDIM, elem_id=eid("sampler"),
                                  tooltip="animate_anyone_ddim reproduces the reference pipeline; the webui's samplers run with v-prediction")
        with FormRow():
            retarget = gr.Checkbox(label="Retarget the poses to the reference's body", value=defaults.retarget, elem_id=eid("retarget"),
                                   tooltip="Needs keypoints: OpenPose JSON or a person video (DWPose); the reference's from the file "
                                           "beside, or DWPose on the reference image")
            reference_pose_json = gr.File(label="Reference's keypoints (OpenPose JSON, optional)", file_types=[".json"],
                                          elem_id=eid("reference_pose_json"))
        with FormRow():
            character = gr.Checkbox(label="Character (AnimateDiff mode): your checkpoint animates the reference with these poses",
                                    value=defaults.character, elem_id=eid("character"),
                                    tooltip="The poses go to the enabled ControlNet unit without an image (an OpenPose model, "
                                            "preprocessor 'none'); the look comes from reference attention in your own UNet")
            reference_strength = gr.Slider(label="Reference strength", minimum=0, maximum=2, step=0.05, value=defaults.reference_strength,
                                           elem_id=eid("reference_strength"))
            style_fidelity = gr.Slider(label="Style fidelity", minimum=0, maximum=1, step=0.05, value=defaults.style_fidelity,
                                       elem_id=eid("style_fidelity"))
            reference_noise = gr.Radio(label="Reference noise", choices=list(REFERENCE_NOISES), value=defaults.reference_noise,
                                       elem_id=eid("reference_noise"))
    return [reference_image, pose_video, pose_frames, pose_json, pose_source, pose_stride, pose_fps, pose_max_frames,
            fit, draw_face, draw_hands, sampler, retarget, reference_pose_json, character, reference_strength, style_fidelity,
            reference_noise]


def _infotext_fields(components, is_img2img: bool):
    fields = []
    for name, component in zip(ui_fields(is_img2img), components):
        if name in _UPLOADS:
            continue
        if name.startswith("motion_lora_"):
            _, _, index, part = name.split("_", 3)
            fields.append((component, _lora_getter(int(index), part)))
        else:
            fields.append((component, _field_getter(name)))
    return fields


def _field_getter(name: str):
    def get(params):
        value = pasted_fields(params).get(name)
        if name == "motion_scale" and isinstance(value, list):  # per-frame values: the box takes keyframes
            value = ", ".join(f"{i}:{v:g}" for i, v in enumerate(value))
        return value

    return get


def _lora_getter(index: int, part: str):
    def get(params):
        loras = pasted_fields(params).get("motion_loras")
        if not isinstance(loras, list):
            return None
        if index >= len(loras):
            return NO_LORA if part == "name" else None
        return loras[index].get(part)

    return get
