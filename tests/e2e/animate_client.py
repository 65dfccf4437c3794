"""Helpers for the end-to-end tests: requests, motion-module fixture files, decoding answers."""

import base64
import io
import json
from pathlib import Path

import numpy as np

from tests.support import motion_files as mf

KEY = "animate anyone"
BASE = dict(prompt="a red fox running in the snow", negative_prompt="blurry", seed=1234, subseed=-1, steps=4,
            width=64, height=64, cfg_scale=7.0, sampler_name="Euler", scheduler="Automatic", batch_size=1, n_iter=1,
            save_images=False)

MODULE = "aa_tiny_v2.safetensors"  # first in the listing, so also the default module
ZERO_MODULE = "zero_tiny_v2.safetensors"
V1_MODULE = "tiny_v1.ckpt"
V3_MODULE = "tiny_v3.pth"
LORA = "tiny_zoom.safetensors"


def motion_folder(webui) -> Path:
    """<data-dir>/models/AnimateDiff with tiny modules that fit the tiny checkpoint (width 32)."""
    folder = webui.prepared.data_dir / "models" / "AnimateDiff"
    if not (folder / MODULE).exists():
        (folder / "lora").mkdir(parents=True, exist_ok=True)
        mf.save(mf.original_state("v2", seed=11), str(folder / MODULE))
        mf.save(mf.original_state("v2", seed=11, zero_proj_out=True), str(folder / ZERO_MODULE))
        mf.save(mf.original_state("v1", seed=12), str(folder / V1_MODULE), wrap=True)
        mf.save(mf.original_state("v3", seed=13), str(folder / V3_MODULE))
        mf.save(mf.motion_lora_state("v2", seed=14, rank=4), str(folder / "lora" / LORA))
        bad = folder / "zz_bad"
        bad.mkdir(exist_ok=True)
        mf.save(mf.sdxl_state("sdxl_beta"), str(bad / "mm_sdxl_tiny.safetensors"))
        mf.save(mf.motion_lora_state("v2"), str(bad / "a_motion_lora.safetensors"))
        (bad / "garbage.ckpt").write_bytes(b"\x80\x02not a checkpoint" * 64)
        mf.save(mf.original_state("v2", model_channels=64, seed=15), str(bad / "wide_v2.safetensors"))
    return folder


# SDXL modules for the tiny SDXL checkpoint (width 32), in their published formats: AD-SDXL in the
# original naming as a zip .ckpt, HotShot-XL in its native naming
AD_SDXL = "sdxl/mm_sdxl_tiny_beta.ckpt"
AD_SDXL_ZERO = "sdxl/mm_sdxl_tiny_zero.safetensors"
HOTSHOT = "sdxl/hsxl_tiny_temporal_layers.safetensors"
HOTSHOT_ZERO = "sdxl/hsxl_tiny_zero.safetensors"


def sdxl_motion_folder(webui) -> Path:
    """motion_folder() plus the SDXL modules in its sdxl/ subfolder."""
    import torch

    folder = motion_folder(webui)
    if not (folder / HOTSHOT_ZERO).exists():
        (folder / "sdxl").mkdir(exist_ok=True)
        torch.save(mf.sdxl_state("sdxl_beta", seed=31), str(folder / AD_SDXL))
        mf.save(mf.sdxl_state("sdxl_beta", seed=31, zero_proj_out=True), str(folder / AD_SDXL_ZERO))
        mf.save(mf.to_hotshot_naming(mf.sdxl_state("hotshot", seed=32)), str(folder / HOTSHOT))
        mf.save(mf.to_hotshot_naming(mf.sdxl_state("hotshot", seed=32, zero_proj_out=True)), str(folder / HOTSHOT_ZERO))
    return folder


def animate_anyone_release(webui) -> Path:
    """The Animate Anyone release's files (tiny random weights, published formats) in the webui's
    default weights folder, with a real tiny v2 motion module."""
    from tests.support import reference_files as rf

    folder = webui.prepared.data_dir / "models" / "AnimateAnyone"
    if not (folder / "motion_module.pth").exists() or (folder / "motion_module.pth").stat().st_size < 10000:
        rf.write_release(str(folder), seed=3)
        mf.save(mf.original_state("v2", seed=21), str(folder / "motion_module.pth"))
    return folder


def pose_frames_json(count, size=64):
    """OpenPose JSON frames of one person raising the right arm."""
    frames = []
    for i in range(count):
        arm = 0.45 - 0.2 * i / max(count - 1, 1)
        body = [0.5, 0.2, 1, 0.5, 0.3, 1, 0.4, 0.3, 1, 0.33, arm, 1, 0.3, arm - 0.1, 1, 0.6, 0.3, 1, 0.65, 0.4, 1,
                0.7, 0.5, 1, 0.45, 0.6, 1, 0.45, 0.75, 1, 0.45, 0.9, 1, 0.55, 0.6, 1, 0.55, 0.75, 1, 0.55, 0.9, 1,
                0.48, 0.18, 1, 0.52, 0.18, 1, 0.46, 0.19, 1, 0.54, 0.19, 1]
        frames.append({"canvas_width": size, "canvas_height": size, "people": [{"pose_keypoints_2d": body}]})
    return frames


def payload(args=None, **overrides):
    body = dict(BASE)
    body.update(overrides)
    if args is not None:
        body["alwayson_scripts"] = {KEY: {"args": [args]}}
    return body


def failing_at_step(body, step=2):
    """``body`` with the marker that makes the test-only extension (tests/support/failure_injection)
    raise inside the UNet call of sampling step ``step``."""
    return dict(body, prompt=f"{body.get('prompt', '')} TEST_FAIL_AT_STEP_{step}".strip())


def post(webui, path, body):
    return webui.post(path, body)


def ok(webui, body, path="/sdapi/v1/txt2img"):
    response = webui.post(path, body)
    assert response.ok, f"{path} answered {response.status}: {response.text()[:3000]}\n{webui.log_tail(40)}"
    data = response.json()
    data["info"] = json.loads(data["info"])
    return data


def rejected(webui, body, path="/sdapi/v1/txt2img"):
    """POST a request that must be answered 422; returns the message. A request error is an
    HTTPException for the webui, so its API logs no "API error" with a traceback (other components may
    still log their own errors, e.g. ControlNet when it fails to set up)."""
    start = webui.log_path.stat().st_size if webui.log_path.is_file() else 0
    response = webui.post(path, body)
    assert response.status == 422, f"expected 422, got {response.status}: {response.text()[:3000]}"
    with open(webui.log_path, "rb") as log:
        log.seek(start)
        logged = log.read().decode("utf-8", "replace")
    assert "API error" not in logged, logged[-3000:]
    return response.json()["errors"]


def image(b64: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def frames_of(data) -> list:
    """The returned frames, wherever the answer's layout put them (``frames_index``)."""
    entry = data["info"]["animate_anyone"]
    start = entry["frames_index"]
    return [] if start is None else [image(b) for b in data["images"][start:start + entry["returned_frames"]]]


def trailing(data):
    """[(item, bytes)] for every video item of the answer."""
    entry = data["info"]["animate_anyone"]
    return [(item, base64.b64decode(data["images"][item["index"]])) for item in entry["items"]]


def lossless_mp4(frames, path=None, fps=8):
    """H.264 at qp 0 in 4:4:4 (decodes to exactly these frames; a GIF would merge identical ones):
    base64 of the file, or the file itself at ``path`` (for uploads)."""
    import av

    target = str(path) if path is not None else io.BytesIO()
    with av.open(target, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv444p"
        stream.options = {"qp": "0", "preset": "ultrafast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path if path is not None else base64.b64encode(target.getvalue()).decode()
