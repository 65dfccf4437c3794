"""Frame folders: the webui's frame order, image checks, linked folders for ControlNet's batch loader."""

import os

import numpy as np
import pytest
from PIL import Image

from lib_animate.errors import InvalidInputError
from lib_animate.video.frame_files import check_images, link_frames, list_frame_files, natural_key, write_frames


def save(path, value=0):
    Image.fromarray(np.full((4, 6, 3), value, np.uint8)).save(path)


def test_frames_are_listed_in_natural_order_without_hidden_files_or_folders(tmp_path):
    for name in ("frame10.png", "frame2.png", "Frame1.png", ".DS_Store", "frame3.jpg"):
        save(tmp_path / name) if name.endswith((".png", ".jpg")) else (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    names = [os.path.basename(p) for p in list_frame_files(str(tmp_path), "frames")]
    assert names == ["Frame1.png", "frame2.png", "frame3.jpg", "frame10.png"]
    assert sorted(["a10", "a9", "b1"], key=natural_key) == ["a9", "a10", "b1"]


def test_missing_or_empty_folders_and_non_images_are_named(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist on the server"):
        list_frame_files(str(tmp_path / "nope"), "'control_frames_dir'")
    with pytest.raises(InvalidInputError, match="holds no files"):
        list_frame_files(str(tmp_path), "'control_frames_dir'")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidInputError, match="'notes.txt' is not a readable image"):
        check_images(list_frame_files(str(tmp_path), "x"), "x")


def test_written_frames_read_back_and_links_keep_the_order(tmp_path):
    frames = [np.full((5, 7, 3), 10 * i, np.uint8) for i in range(12)]
    paths = write_frames(frames, str(tmp_path / "written"))
    assert [os.path.basename(p) for p in paths][:2] == ["00000.png", "00001.png"]
    assert all(np.array_equal(np.asarray(Image.open(p)), f) for p, f in zip(paths, frames))
    chosen = [paths[11], paths[2], paths[5]]
    folder = link_frames(chosen, str(tmp_path / "linked"))
    listed = list_frame_files(folder, "linked")
    assert [int(np.asarray(Image.open(p))[0, 0, 0]) // 10 for p in listed] == [11, 2, 5]
    with pytest.raises(FileExistsError):
        link_frames(chosen, folder)
