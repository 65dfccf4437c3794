"""SDXL motion modules in the webui's own SDXL UNet class (``sgm``), checked with the webui's Python.

``sgm`` is not on PyPI and must not be vendored, and it imports the webui's packages, so these tests
run ``tests/support/sgm_checks.py`` with ``$WEBUI_DIR``'s Python (``repositories/generative-models``
on its path) and check the report. Without a webui they are skipped with the reason printed; CI covers
the same layout with the ldm UNet (tests/test_motion_sdxl.py), which the first test here shows to be
the same network.
"""

import json
import subprocess
import sys

import pytest

from tests.support import webui_env
from tests.support.sgm_checks import __file__ as SGM_CHECKS


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    try:
        checkout = webui_env.find_webui()
    except webui_env.WebuiUnavailable as err:
        pytest.skip(f"sgm (the webui's SDXL UNet) comes from a webui checkout: {err}")
    out = tmp_path_factory.mktemp("sgm") / "report.json"
    proc = subprocess.run([str(checkout.python), SGM_CHECKS, "--webui", str(checkout.root), "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
    assert proc.returncode == 0, "sgm_checks.py failed (its output is above)"
    return json.loads(out.read_text())


def test_the_ci_tests_ldm_sdxl_layout_is_the_webuis_sgm_unet(report):
    layout = report["families"]["layout"]
    assert layout["sgm_class"] == "sgm.modules.diffusionmodules.openaimodel.UNetModel"
    assert layout["missing"] == [] and layout["unexpected"] == []  # the same parameter names
    assert layout["plain_rel_l2"] <= 1e-6  # and the same function


@pytest.mark.parametrize("version, family, schedule", [("sdxl_beta", "sdxl_beta", "animatediff_sdxl"),
                                                        ("hotshot", "hotshotxl", "sdxl")])
def test_modules_in_the_sgm_unet_match_the_checked_ldm_path_and_leave_no_trace(report, version, family, schedule):
    got = report["families"][version]
    assert got["family"] == family and got["schedule"] == schedule
    assert got["rel_l2_vs_ldm"] <= 1e-6 and got["rel_l2_vs_plain"] > 1e-3
    assert got["holders"] == {"input": [1, 2, 4, 5, 7, 8], "middle": False, "output_before_upsample": [2, 5],
                              "output_modules": [1] * 9}
    assert got["restored_state"] and got["restored_output"] and got["hooks_left"] == 0


def test_hotshot_normalises_the_sgm_resblocks_across_frames_and_ad_sdxl_does_not(report):
    resblocks = report["families"]["layout"]["resblocks"]
    hotshot = report["families"]["hotshot"]
    assert hotshot["norm_hooks"] == 2 * resblocks + 1  # both norms of every ResBlock and the output norm
    assert hotshot["norm_classes"] == ["sgm.modules.diffusionmodules.util.GroupNorm32"]
    assert report["families"]["sdxl_beta"]["norm_hooks"] == 0


def test_zero_proj_out_is_the_identity_and_an_sd15_module_is_refused(report):
    assert report["families"]["zero_proj_out_identical"] is True
    message = report["families"]["sd15_module_refused"]
    assert message and "SD1.5 motion module" in message and "SDXL UNet" in message


def test_hotshot_samples_with_sdxls_own_schedule_and_ad_sdxl_with_its_own(report):
    assert report["schedule"]["sdxl_max_abs_diff"] <= 1e-12  # sgm's LegacyDDPMDiscretization
    assert report["schedule"]["animatediff_sdxl_differs_by"] > 1e-2


def test_prompt_travel_splits_the_real_sdxl_vector_into_pooled_text_and_size_embeddings(report):
    pooled = report["pooled"]
    assert pooled["vector_width"] == 2816 and pooled["pooled_width"] == 1280  # OpenCLIP bigG's pooled projection
    assert pooled["size_keys"] == ["original_size_as_tuple", "crop_coords_top_left", "target_size_as_tuple"]


def test_sdxl_base_runs_animatediff_and_refiners_and_inpainting_models_are_refused(report):
    base, refiner, inpaint = (report["kinds"][k] for k in ("base", "refiner", "inpaint"))
    assert base["describe"] == "SDXL" and base["family"] == "SDXL" and base["animatediff"] == "SDXL"
    assert "SD1.5 checkpoints only" in base["sd1_only"] and "AnimateDiff mode" in base["sd1_only"]
    assert refiner["describe"] == "an SDXL refiner" and refiner["family"] is None  # told apart by its aesthetic score
    assert refiner["animatediff"].startswith("refused:") and "sd_xl_refiner.yaml" in refiner["animatediff"]
    assert inpaint["family"] is None and "9 input channels" in inpaint["animatediff"]
