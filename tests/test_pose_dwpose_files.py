"""Where the DWPose ONNX files are looked for, and the error when they are not there."""

import os

import pytest

from lib_animate.errors import WeightsFileError
from lib_animate.pose.dwpose import DETECTOR_FILE, ENV_VAR, POSE_FILE, find_dwpose_files

CONTROLNET = os.path.join("extensions", "sd-webui-controlnet", "annotator", "downloads", "openpose")


@pytest.fixture
def places(tmp_path):
    dirs = {
        "setting": tmp_path / "setting",
        "env": tmp_path / "env",
        "controlnet": tmp_path / "webui" / CONTROLNET,
        "extra": tmp_path / "cn_models" / "openpose",
        "moore": tmp_path / "Moore" / "pretrained_weights" / "DWPose",
    }
    for d in dirs.values():
        d.mkdir(parents=True)
    return tmp_path, dirs


def put(folder, *names):
    for name in names:
        (folder / name).write_bytes(b"onnx")


def search(tmp_path, env=True, **overrides):
    kwargs = dict(
        model_dir=str(tmp_path / "setting"),
        webui_root=str(tmp_path / "webui"),
        extra_dirs=[str(tmp_path / "cn_models" / "openpose")],
        animate_anyone_dirs=[str(tmp_path / "Moore")],
        environ={ENV_VAR: str(tmp_path / "env")} if env else {},
    )
    kwargs.update(overrides)
    return find_dwpose_files(**kwargs)


def test_search_order_setting_env_controlnet_extra_moore(places):
    tmp_path, dirs = places
    order = ["setting", "env", "controlnet", "extra", "moore"]
    for name in order:
        put(dirs[name], DETECTOR_FILE, POSE_FILE)
    for expected in order:
        files = search(tmp_path)
        assert files.detector == str(dirs[expected] / DETECTOR_FILE)
        assert files.pose == str(dirs[expected] / POSE_FILE)
        for name in (DETECTOR_FILE, POSE_FILE):
            (dirs[expected] / name).unlink()


def test_each_file_is_found_on_its_own(places):
    tmp_path, dirs = places
    put(dirs["env"], DETECTOR_FILE)
    put(dirs["moore"], POSE_FILE)
    files = search(tmp_path)
    assert files.detector == str(dirs["env"] / DETECTOR_FILE)
    assert files.pose == str(dirs["moore"] / POSE_FILE)


def test_moore_root_may_be_the_pretrained_weights_folder(places):
    tmp_path, dirs = places
    put(dirs["moore"], DETECTOR_FILE, POSE_FILE)
    weights = str(tmp_path / "Moore" / "pretrained_weights")
    files = find_dwpose_files(animate_anyone_dirs=[weights], environ={})
    assert files.pose == str(dirs["moore"] / POSE_FILE)


def test_a_folder_named_like_the_file_does_not_count(places):
    tmp_path, dirs = places
    (dirs["setting"] / DETECTOR_FILE).mkdir()
    put(dirs["setting"], POSE_FILE)
    put(dirs["controlnet"], DETECTOR_FILE)
    assert search(tmp_path).detector == str(dirs["controlnet"] / DETECTOR_FILE)


def test_missing_files_error_lists_every_searched_folder_and_both_names(places):
    tmp_path, dirs = places
    with pytest.raises(WeightsFileError) as caught:
        search(tmp_path)
    message = str(caught.value)
    assert DETECTOR_FILE in message and POSE_FILE in message
    assert f"not found: {DETECTOR_FILE}, {POSE_FILE}" in message
    for folder in dirs.values():
        assert str(folder) in message
    assert str(tmp_path / "Moore" / "DWPose") in message
    assert "never downloads" in message
    assert "$" + ENV_VAR in message


def test_error_names_only_the_missing_file_and_says_when_env_is_unset(places):
    tmp_path, dirs = places
    put(dirs["controlnet"], POSE_FILE)
    with pytest.raises(WeightsFileError, match=f"not found: {DETECTOR_FILE}\\.") as caught:
        search(tmp_path, env=False)
    assert f"({ENV_VAR} is not set)" in str(caught.value)


def test_nothing_to_search(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(WeightsFileError, match="No folder to search was given"):
        find_dwpose_files()


def test_environment_variable_is_read_from_os_environ_by_default(places, monkeypatch):
    tmp_path, dirs = places
    put(dirs["env"], DETECTOR_FILE, POSE_FILE)
    monkeypatch.setenv(ENV_VAR, str(dirs["env"]))
    assert find_dwpose_files().detector == str(dirs["env"] / DETECTOR_FILE)
