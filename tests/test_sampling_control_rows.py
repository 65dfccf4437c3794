"""Per-frame hint rows of a UNet call: the window's frames once per clip chunk."""

import pytest
import torch

from lib_animate.sampling.context import context_windows
from lib_animate.sampling.control_rows import HintRowsError, call_frames, per_frame_hint, select_rows


def frame_ids(frames):
    """A hint whose row f holds the value f everywhere: rows name their frame."""
    return torch.arange(frames, dtype=torch.float32).view(frames, 1, 1, 1).expand(frames, 3, 4, 4).contiguous()


def row_frames(hint):
    return hint[:, 0, 0, 0].long().tolist()


def test_per_frame_hint_keeps_f_rows_and_halves_the_doubled_cond_uncond_copy():
    hint = frame_ids(6)
    assert per_frame_hint(hint, 6) is hint
    doubled = torch.cat([hint, hint])
    assert row_frames(per_frame_hint(doubled, 6)) == list(range(6))
    assert per_frame_hint(doubled, 6).data_ptr() == doubled.data_ptr()  # a view, no copy
    with pytest.raises(HintRowsError, match="has 7 rows for a video of 6 frames"):
        per_frame_hint(frame_ids(7), 6)


@pytest.mark.parametrize("chunks", [1, 2, 3])
def test_rows_are_the_window_once_per_chunk(chunks):
    hint = frame_ids(8)
    assert row_frames(select_rows(hint, [2, 3, 4, 5], chunks)) == [2, 3, 4, 5] * chunks
    assert row_frames(select_rows(hint, None, chunks)) == list(range(8)) * chunks


def test_closed_loop_windows_wrap_in_frame_order():
    hint = frame_ids(10)
    windows = context_windows(10, 4, 1, step=1, closed_loop=True)
    wrapping = [w for w in windows if list(w) != sorted(w)]
    assert wrapping, windows
    for window in windows:
        assert row_frames(select_rows(hint, window, 2)) == list(window) * 2
    assert call_frames(10, wrapping[0]).tolist() == list(wrapping[0])


def test_rows_stay_on_the_hint_device_and_dtype_and_bad_chunks_fail():
    hint = frame_ids(4).to(torch.float64)
    rows = select_rows(hint, [1, 2], 2)
    assert rows.dtype == torch.float64 and rows.shape == (4, 3, 4, 4)
    with pytest.raises(ValueError):
        select_rows(hint, [1], 0)
