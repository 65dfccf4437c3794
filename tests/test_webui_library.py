"""Motion-module and motion-LoRA names from a request never leave their folders."""

import os

import pytest

from lib_animate.errors import AnimateError
from lib_animate.webui.library import MotionLibrary


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
