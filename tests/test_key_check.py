"""The one accounting of a weight file's keys against what a model expects."""

import pytest
import torch

from lib_animate.errors import WeightsFileError
from lib_animate.key_check import compare_keys, listing


def test_missing_unexpected_and_wrong_shapes_are_all_reported():
    expected = {"a.weight": (4, 2), "a.bias": (4,), "b.weight": (3,)}
    tensors = {"a.weight": torch.zeros(2, 4), "b.weight": torch.zeros(3), "c.extra": torch.zeros(1)}
    report = compare_keys(tensors, expected)
    assert report.missing == ["a.bias"] and report.unexpected == ["c.extra"]
    assert report.wrong_shape == [("a.weight", (2, 4), (4, 2))] and not report.ok
    with pytest.raises(WeightsFileError) as info:
        report.raise_if_bad("'x.safetensors' is not a tiny model")
    assert str(info.value) == ("'x.safetensors' is not a tiny model: 1 missing keys: a.bias; 1 unexpected keys: c.extra; "
                               "1 tensors with the wrong shape: a.weight (2, 4) (expected (4, 2)).")


def test_a_matching_file_passes_and_names_can_be_the_files_own():
    expected = {"out.0.weight": torch.zeros(2)}
    assert compare_keys({"out.0.weight": torch.ones(2)}, expected).ok
    compare_keys({"out.0.weight": torch.ones(2)}, expected).raise_if_bad("never raised")
    report = compare_keys({}, expected)
    with pytest.raises(WeightsFileError, match="1 missing keys: conv_norm_out.weight"):
        report.raise_if_bad("m", name=lambda key: key.replace("out.0", "conv_norm_out"))


def test_long_lists_are_cut_with_a_count():
    assert listing([str(i) for i in range(11)]) == "0, 1, 2, 3, 4, 5, 6, 7, ... and 3 more"
    assert listing(["a"]) == "a"
