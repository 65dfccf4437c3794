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


def payload(args=None, **overrides):
    body = dict(BASE)
    body.update(overrides)
    if args is not None:
        body["alwayson_scripts"] = {KEY: {"args": [args]}}
    return body


def post(webui, path, body):
    return webui.post(path, body)


def ok(webui, body, path="/sdapi/v1/txt2img"):
    response = webui.post(path, body)
    assert response.ok, f"{path} answered {response.status}: {response.text()[:3000]}\n{webui.log_tail(40)}"
    data = response.json()
    data["info"] = json.loads(data["info"])
    return data


def rejected(webui, body, path="/sdapi/v1/txt2img"):
    response = webui.post(path, body)
    assert response.status == 422, f"expected 422, got {response.status}: {response.text()[:3000]}"
    return response.json()["errors"]


def image(b64: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def frames_of(data) -> list:
    entry = data["info"]["animate_anyone"]
    return [image(b) for b in data["images"][: entry["frames"] * max(entry["videos"], 1)]]


def trailing(data):
    """[(item, bytes)] for every video item of the answer."""
    entry = data["info"]["animate_anyone"]
    return [(item, base64.b64decode(data["images"][item["index"]])) for item in entry["items"]]
