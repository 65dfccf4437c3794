"""The extension's section in the webui's Settings, and typed access to it.

Options are read with ``shared.opts.data.get(key, default)`` so they also work before the
settings UI has been built (early API calls).
"""

import os
from dataclasses import dataclass

SECTION = ("animate_anyone", "Animate Anyone")

# key -> (default, label)
OPTIONS = {
    "animate_anyone_motion_dir": ("", "Motion module folder (empty: the extension's motion_modules folder); motion LoRAs go in its 'lora' subfolder"),
    "animate_anyone_video_dir": ("", "Video output folder (empty: txt2img-videos / img2img-videos beside the image output folders)"),
    "animate_anyone_weights_dir": ("", "Animate Anyone weights folder (empty: models/AnimateAnyone); converted UNets are cached in its 'converted' subfolder"),
    "animate_anyone_dwpose_dir": ("", "DWPose model folder (yolox_l.onnx, dw-ll_ucoco_384.onnx); ControlNet's annotator folder is searched too"),
    "animate_anyone_max_pose_frames": (300, "Longest pose sequence accepted (frames, after stride and fps)"),
    "animate_anyone_default_frames": (16, "Default number of frames in the accordion"),
    "animate_anyone_default_fps": (8, "Default frames per second in the accordion"),
    "animate_anyone_default_formats": (["GIF"], "Default save formats in the accordion"),
    "animate_anyone_keep_in_vram": (True, "Keep the motion module / Animate Anyone weights loaded between jobs (faster; with --medvram/--lowvram they are freed after every job and read from disk again)"),
    "animate_anyone_fast_reference": (True, "Animate Anyone: reference keys/values computed once per video (used with the SDP / xformers attention optimisations only)"),
    "animate_anyone_reference_fp16": (True, "Animate Anyone: round the reference features to float16, as the released pipeline does (off: keep full precision in float32 runs)"),
    "animate_anyone_compile": (False, "Compile the motion modules with torch.compile (experimental: the first job at each size pays the compile)"),
    "animate_anyone_mp4_crf": (18, "MP4 (H.264) quality: CRF 0 (lossless) .. 51, lower is better"),
    "animate_anyone_mp4_preset": ("medium", "MP4 (H.264) encoder speed preset"),
    "animate_anyone_webm_crf": (30, "WebM (VP9) quality: CRF 0 .. 63, lower is better"),
    "animate_anyone_webp_quality": (90, "WebP quality 0 .. 100"),
    "animate_anyone_webp_lossless": (False, "Lossless WebP"),
}


@dataclass(frozen=True)
class Settings:
    motion_dir: str
    video_dir: str
    default_frames: int
    default_fps: float
    default_formats: tuple
    weights_dir: str
    dwpose_dir: str
    max_pose_frames: int
    keep_in_vram: bool
    fast_reference: bool
    reference_fp16: bool
    compile: bool
    mp4_crf: int
    mp4_preset: str
    webm_crf: int
    webp_quality: int
    webp_lossless: bool


def read(opts_data: dict, extension_dir: str, models_path: str) -> Settings:
    def get(key):
        return opts_data.get(key, OPTIONS[key][0])

    return Settings(
        motion_dir=get("animate_anyone_motion_dir") or os.path.join(extension_dir, "motion_modules"),
        video_dir=get("animate_anyone_video_dir"),
        default_frames=int(get("animate_anyone_default_frames")),
        default_fps=float(get("animate_anyone_default_fps")),
        default_formats=tuple(get("animate_anyone_default_formats") or ()),
        weights_dir=get("animate_anyone_weights_dir") or os.path.join(models_path, "AnimateAnyone"),
        dwpose_dir=get("animate_anyone_dwpose_dir"),
        max_pose_frames=int(get("animate_anyone_max_pose_frames")),
        keep_in_vram=bool(get("animate_anyone_keep_in_vram")),
        fast_reference=bool(get("animate_anyone_fast_reference")),
        reference_fp16=bool(get("animate_anyone_reference_fp16")),
        compile=bool(get("animate_anyone_compile")),
        mp4_crf=int(get("animate_anyone_mp4_crf")),
        mp4_preset=str(get("animate_anyone_mp4_preset")),
        webm_crf=int(get("animate_anyone_webm_crf")),
        webp_quality=int(get("animate_anyone_webp_quality")),
        webp_lossless=bool(get("animate_anyone_webp_lossless")),
    )


# Folders on the server: restricted like the webui's own output folders, so with --hide-ui-dir-config
# neither the UI, /sdapi/v1/options nor a request's override_settings can change them.
FOLDER_OPTIONS = ("animate_anyone_motion_dir", "animate_anyone_video_dir", "animate_anyone_weights_dir", "animate_anyone_dwpose_dir")


def register(shared) -> None:
    """Add the options (idempotent). Called when the script module is imported, so they exist for the
    API also when no UI is built (--nowebui), and again from ``on_ui_settings``."""
    import gradio as gr

    from lib_animate.video.options import X264_PRESETS

    from .api.args import FORMATS

    components = {
        "animate_anyone_mp4_crf": (gr.Slider, {"minimum": 0, "maximum": 51, "step": 1}),
        "animate_anyone_mp4_preset": (gr.Dropdown, {"choices": list(X264_PRESETS)}),
        "animate_anyone_webm_crf": (gr.Slider, {"minimum": 0, "maximum": 63, "step": 1}),
        "animate_anyone_webp_quality": (gr.Slider, {"minimum": 0, "maximum": 100, "step": 1}),
        "animate_anyone_max_pose_frames": (gr.Number, {"precision": 0, "minimum": 1}),
        "animate_anyone_default_frames": (gr.Slider, {"minimum": 2, "maximum": 256, "step": 1}),
        "animate_anyone_default_fps": (gr.Number, {"minimum": 1}),
        "animate_anyone_default_formats": (gr.CheckboxGroup, {"choices": list(FORMATS)}),
    }
    for key, (default, label) in OPTIONS.items():
        component, component_args = components.get(key, (None, None))
        if key in FOLDER_OPTIONS:
            shared.restricted_opts.add(key)
            component_args = dict(component_args or {}, **shared.hide_dirs)  # hidden in the UI with --hide-ui-dir-config
        shared.opts.add_option(key, shared.OptionInfo(default, label, component, component_args, section=SECTION))
