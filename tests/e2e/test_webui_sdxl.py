"""The tiny random SDXL checkpoint (tests/support/sdxl_assets.py) loads in the real webui and gives
reproducible txt2img images, offline, and the session's default checkpoint comes back afterwards.

Plain webui requests only (our extension is not enabled in them): this is the baseline that SDXL
tests of the extension build on.
"""

import base64
import io
import json

import pytest

from tests.support.webui_env import CHECKPOINT_NAME, SDXL_CHECKPOINT_NAME
from tests.support.webui_server import checkpoint_stem, current_checkpoint, with_checkpoint

pytestmark = pytest.mark.e2e

PAYLOAD = dict(prompt="a red fox in the snow", negative_prompt="blurry", seed=1234, subseed=-1, steps=2,
               width=64, height=64, cfg_scale=7.0, sampler_name="Euler", scheduler="Automatic", batch_size=2, n_iter=1,
               save_images=False)


PREVIEW_EVERY_STEP = {"live_previews_enable": True, "show_progress_every_n_steps": 1, "show_progress_type": "Approx NN"}


def txt2img(webui, **overrides):
    response = webui.post("/sdapi/v1/txt2img", dict(PAYLOAD, **overrides))
    assert response.ok, f"txt2img answered {response.status}: {response.text()[:2000]}\n{webui.log_tail(30)}"
    data = response.json()
    data["info"] = json.loads(data["info"])
    return data


def decode_png(b64):
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(b64)))


def exceptions(webui):
    """What the webui recorded with errors.record_exception() (live-preview failures go only there)."""
    return json.loads(webui.get("/internal/sysinfo").text())["Exceptions"]


def log_since(webui, offset):
    with open(webui.log_path, "rb") as log:
        log.seek(offset)
        return log.read().decode("utf-8", "replace")


def test_both_tiny_checkpoints_are_listed(webui):
    models = {m["model_name"]: m for m in webui.get("/sdapi/v1/sd-models").json()}
    assert {CHECKPOINT_NAME, SDXL_CHECKPOINT_NAME} <= set(models), sorted(models)
    # the same-named .yaml is the config the webui builds the model from
    assert models[SDXL_CHECKPOINT_NAME]["config"].endswith(SDXL_CHECKPOINT_NAME + ".yaml"), models[SDXL_CHECKPOINT_NAME]
    # the session starts on the SD1 checkpoint (--ckpt), whatever config.json says
    assert checkpoint_stem(current_checkpoint(webui)) == CHECKPOINT_NAME


def test_sdxl_txt2img_is_reproducible_and_sd1_comes_back(webui):
    sd1_before = txt2img(webui, batch_size=1)
    offset = webui.log_path.stat().st_size
    with with_checkpoint(webui, SDXL_CHECKPOINT_NAME) as title:
        assert checkpoint_stem(title) == SDXL_CHECKPOINT_NAME
        # built from the SDXL config: sgm's DiffusionEngine, not ldm's LatentDiffusion
        loaded = log_since(webui, offset)
        assert f"Creating model from config: {webui.prepared.sdxl_checkpoint.with_suffix('.yaml')}" in loaded, loaded[-3000:]
        first, second = txt2img(webui), txt2img(webui)
        assert first["info"]["sd_model_name"] == SDXL_CHECKPOINT_NAME
        assert checkpoint_stem(current_checkpoint(webui)) == SDXL_CHECKPOINT_NAME
        assert len(first["images"]) == 2 and len(second["images"]) == 2
        for b64 in first["images"]:
            image = decode_png(b64)
            assert image.size == (64, 64)
            assert len(image.convert("RGB").getcolors(maxcolors=64 * 64)) > 16, "a flat image would make the identity check meaningless"
        assert first["info"]["all_seeds"] == [1234, 1235]
        assert first["images"][0] != first["images"][1]
        assert first["images"] == second["images"], "identical SDXL requests gave different images"
        # Live previews of an SDXL model use models/VAE-approx/vaeapprox-sdxl.pt (prepare_data_dir links one);
        # without it the webui would try to download it. Previews do not change the result.
        exceptions_before = exceptions(webui)
        previewed = txt2img(webui, override_settings=PREVIEW_EVERY_STEP)
        assert previewed["images"] == first["images"]
        assert exceptions(webui) == exceptions_before
        logged = log_since(webui, offset)
        assert "Downloading VAEApprox" not in logged and "Traceback" not in logged, logged[-3000:]
    assert checkpoint_stem(current_checkpoint(webui)) == CHECKPOINT_NAME
    sd1_after = txt2img(webui, batch_size=1)
    assert sd1_after["info"]["sd_model_name"] == CHECKPOINT_NAME
    # SD1 gives the same image as before the switch: nothing of the SDXL model stayed behind
    assert sd1_after["images"] == sd1_before["images"]
    assert sd1_after["images"][0] != first["images"][0]


def test_webui_sdxl_fixture_selects_sdxl(webui_sdxl):
    assert checkpoint_stem(current_checkpoint(webui_sdxl)) == SDXL_CHECKPOINT_NAME
    assert txt2img(webui_sdxl, batch_size=1)["info"]["sd_model_name"] == SDXL_CHECKPOINT_NAME


def test_after_the_fixture_sd1_is_back(webui):
    # runs after test_webui_sdxl_fixture_selects_sdxl (file order)
    assert checkpoint_stem(current_checkpoint(webui)) == CHECKPOINT_NAME
