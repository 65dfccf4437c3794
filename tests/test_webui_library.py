"""Motion-module and motion-LoRA names from a request never leave their folders."""

import os

import pytest

from lib_animate.errors import AnimateError
from lib_animate.webui.jobs.library import MotionLibrary


@pytest.fixture()
def library(tmp_path):
    folder = tmp_path / "motion_modules"
    (folder / "sub").mkdir(parents=True)
    (folder / "lora").mkdir()
    for rel in ("mm_v2.safetensors", "sub/mm_v3.ckpt", "lora/zoom.ckpt", "notes.txt"):
        (folder / rel).write_bytes(b"x")
    (tmp_path / "secret.ckpt").write_bytes(b"outside")
    return MotionLibrary([str(folder)]), folder


def test_listed_names_resolve_in_either_separator(library):
    lib, folder = library
    assert lib.modules() == ["mm_v2.safetensors", "sub/mm_v3.ckpt"]
    assert lib.module_path("sub/mm_v3.ckpt")[1] == os.path.join(str(folder), "sub", "mm_v3.ckpt")
    assert lib.module_path("sub\\mm_v3.ckpt")[1] == os.path.join(str(folder), "sub", "mm_v3.ckpt")
    assert lib.module_path("")[0] == "mm_v2.safetensors"
    assert lib.lora_path("zoom.ckpt") == os.path.join(str(folder), "lora", "zoom.ckpt")


@pytest.mark.parametrize("name", ["../secret.ckpt", "sub/../../secret.ckpt", "..\\secret.ckpt", "C:secret.ckpt",
                                  "c:/secret.ckpt"])
def test_paths_are_refused(library, name):
    with pytest.raises(AnimateError, match="not a path"):
        library[0].module_path(name)
    with pytest.raises(AnimateError, match="not a path"):
        library[0].lora_path(name)


def test_unlisted_files_are_not_found_and_nothing_outside_is_named(library, tmp_path):
    lib, _ = library
    for name in ("notes.txt", "secret.ckpt", str(tmp_path / "secret.ckpt").lstrip("/")):
        with pytest.raises(AnimateError, match="was not found") as caught:
            lib.module_path(name)
        assert "outside" not in str(caught.value) and "Available: mm_v2.safetensors, sub/mm_v3.ckpt" in str(caught.value)


# --- the weights cache ----------------------------------------------------------------------------

@pytest.fixture()
def module_files(tmp_path):
    from tests.support import motion_files

    paths = []
    for seed in (0, 1):
        path = tmp_path / f"mm_{seed}.safetensors"
        motion_files.save(motion_files.original_state("v2", seed=seed), str(path))
        paths.append(str(path))
    return paths


def test_a_held_cache_is_not_offloaded_until_every_holder_lets_go(module_files):
    import torch

    from lib_animate.webui.jobs.library import WeightsCache

    cache = WeightsCache()
    cache.hold()
    first = cache.motion_module(module_files[0], torch.device("cpu"), torch.float32)
    assert cache.offload() is False and cache.cached  # a job holds it: nothing outside the job frees it
    assert cache.motion_module(module_files[0], torch.device("cpu"), torch.float32) is first
    cache.hold()
    cache.let_go()
    assert cache.offload() is False
    cache.let_go()
    assert cache.offload() is True and not cache.cached
    assert cache.motion_module(module_files[0], torch.device("cpu"), torch.float32) is not first  # loaded again


def test_changes_of_the_cache_from_other_threads_wait_for_a_load_in_progress(module_files, monkeypatch):
    """The tab's handlers and the Settings page run outside the webui's queue lock: an offload while a
    job is loading must neither interleave with the load nor leave a half-set cache."""
    import threading
    import time

    import torch

    from lib_animate.webui.jobs import library as library_module

    real_load = library_module.load
    loading = threading.Event()
    events = []

    def slow_load(path):
        loading.set()
        time.sleep(0.3)
        events.append("loaded")
        return real_load(path)

    monkeypatch.setattr(library_module, "load", slow_load)
    cache = library_module.WeightsCache()
    loader = threading.Thread(target=lambda: cache.motion_module(module_files[1], torch.device("cpu"), torch.float32))
    loader.start()
    assert loading.wait(5)
    assert cache.offload() is True  # waits for the load to finish, then offloads the complete entry
    events.append("offloaded")
    loader.join(5)
    assert events == ["loaded", "offloaded"] and not cache.cached


def _family_library(tmp_path):
    """Real motion-module files in the published formats: SD1.5 (original naming, .safetensors and a zip
    .ckpt), AD-SDXL (.ckpt), HotShot-XL (native naming), and one file whose family cannot be read."""
    import torch

    from tests.support import motion_files as mf

    folder = tmp_path / "mm"
    folder.mkdir()
    mf.save(mf.original_state("v3"), str(folder / "v3_sd15_mm.safetensors"))
    torch.save(mf.original_state("v2"), str(folder / "mm_sd_v15_v2.ckpt"))
    torch.save(mf.sdxl_state("sdxl_beta"), str(folder / "mm_sdxl_v10_beta.ckpt"))
    mf.save(mf.to_hotshot_naming(mf.sdxl_state("hotshot")), str(folder / "hsxl_temporal_layers.safetensors"))
    torch.save(mf.original_state("v1"), str(folder / "legacy.pth"), _use_new_zipfile_serialization=False)
    return MotionLibrary([str(folder)]), folder


def test_the_listing_keeps_the_modules_made_for_the_checkpoints_family(tmp_path):
    from lib_animate.webui.jobs.model_kind import SD1, SDXL

    lib, folder = _family_library(tmp_path)
    every = lib.modules()
    assert set(every) == {"v3_sd15_mm.safetensors", "mm_sd_v15_v2.ckpt", "mm_sdxl_v10_beta.ckpt",
                          "hsxl_temporal_layers.safetensors", "legacy.pth"}
    # a legacy (non-zip) pickle cannot be read without loading it: listed for both families
    assert lib.modules(SD1) == ["v3_sd15_mm.safetensors", "legacy.pth", "mm_sd_v15_v2.ckpt"]
    assert lib.modules(SDXL) == ["hsxl_temporal_layers.safetensors", "legacy.pth", "mm_sdxl_v10_beta.ckpt"]
    assert lib.module_path("", SDXL)[0] == "hsxl_temporal_layers.safetensors"
    assert lib.module_path("", SD1)[0] == "v3_sd15_mm.safetensors"
    # an explicit name is resolved whatever its family (the job then names both on a mismatch)
    assert lib.module_path("mm_sdxl_v10_beta.ckpt", SD1)[0] == "mm_sdxl_v10_beta.ckpt"


def test_family_detection_reads_names_only_and_is_remembered_per_file(tmp_path, monkeypatch):
    import lib_animate.webui.jobs.library as library_module
    from lib_animate.webui.jobs.model_kind import SDXL

    lib, folder = _family_library(tmp_path)
    calls = []
    real = library_module.read_keys
    monkeypatch.setattr(library_module, "read_keys", lambda path: calls.append(path) or real(path))
    lib.modules(SDXL)
    lib.modules(SDXL)
    assert len(calls) == 5  # once per file
    os.utime(folder / "mm_sdxl_v10_beta.ckpt", ns=(1, 1))  # a changed file is read again
    lib.modules(SDXL)
    assert len(calls) == 6


def test_no_module_for_the_checkpoints_family_says_which_files_would_fit(tmp_path):
    from tests.support import motion_files as mf
    from lib_animate.webui.jobs.model_kind import SDXL

    folder = tmp_path / "mm"
    folder.mkdir()
    mf.save(mf.original_state("v3"), str(folder / "v3_sd15_mm.safetensors"))
    with pytest.raises(AnimateError, match="no motion module for SDXL checkpoints found.*mm_sdxl_v10_beta.ckpt"):
        MotionLibrary([str(folder)]).module_path("", SDXL)


def test_read_keys_reads_headers_and_zip_pickles_without_the_tensors(tmp_path):
    import torch

    from lib_animate.safe_load import read_keys

    state = {"a.weight": torch.zeros(2, 2), "b.bias": torch.ones(3)}
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "x.safetensors"))
    torch.save({"state_dict": state}, str(tmp_path / "x.ckpt"))
    torch.save(state, str(tmp_path / "old.pt"), _use_new_zipfile_serialization=False)
    (tmp_path / "broken.safetensors").write_bytes(b"\x00\x01")
    assert sorted(read_keys(str(tmp_path / "x.safetensors"))) == ["a.weight", "b.bias"]
    assert sorted(read_keys(str(tmp_path / "x.ckpt"))) == ["a.weight", "b.bias"]
    assert read_keys(str(tmp_path / "old.pt")) is None and read_keys(str(tmp_path / "broken.safetensors")) is None


@pytest.mark.parametrize("keys, family", [
    # SD1.x: CLIP-L under cond_stage_model.transformer (as the webui's SD1 checkpoints store it)
    (["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight", "model.diffusion_model.out.2.weight"], "SD1.x"),
    # SDXL base: CLIP-L as embedders.0, OpenCLIP bigG as embedders.1
    (["conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight",
      "conditioner.embedders.1.model.ln_final.weight", "model.diffusion_model.label_emb.0.0.weight"], "SDXL"),
    # SDXL refiner: OpenCLIP bigG only (embedders.0); SD2: cond_stage_model.model
    (["conditioner.embedders.0.model.ln_final.weight", "model.diffusion_model.label_emb.0.0.weight"], None),
    (["cond_stage_model.model.ln_final.weight", "model.diffusion_model.out.2.weight"], None),
])
def test_the_checkpoint_family_is_read_from_its_tensor_names(tmp_path, keys, family):
    import torch
    from safetensors.torch import save_file

    from lib_animate.webui.jobs.model_kind import checkpoint_file_family

    path = tmp_path / "model.safetensors"
    save_file({k: torch.zeros(1) for k in keys}, str(path))
    assert checkpoint_file_family(str(path)) == family
    torch.save({"state_dict": {k: torch.zeros(1) for k in keys}}, str(tmp_path / "model.ckpt"))
    assert checkpoint_file_family(str(tmp_path / "model.ckpt")) == family
