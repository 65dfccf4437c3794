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
