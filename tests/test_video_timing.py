"""Frame durations, loop counts and frame selection: the arithmetic, without files."""

import math

import pytest

from lib_animate.errors import InvalidInputError
from lib_animate.video.selection import KEEP, SKIP, STOP, FrameSelector
from lib_animate.video.timing import (
    frame_durations_ms,
    gif_repeat_from_plays,
    playback_duration_ms,
    plays_from_gif_repeat,
)


def test_durations_spread_rounding_so_the_average_rate_is_exact():
    assert frame_durations_ms(8, 4, tick_ms=10) == [130, 120, 130, 120]
    assert sum(frame_durations_ms(8, 16, tick_ms=10)) == 2000
    assert frame_durations_ms(8, 3, tick_ms=1) == [125, 125, 125]
    assert sum(frame_durations_ms(30, 30, tick_ms=1)) == 1000
    assert frame_durations_ms(12.5, 2, tick_ms=10) == [80, 80]


def test_durations_never_go_below_the_minimum():
    # 60 fps cannot be shown by a GIF: 10 ms delays would be played as 100 ms by browsers.
    assert frame_durations_ms(60, 6, tick_ms=10, min_ms=20) == [20] * 6


def test_playback_duration_follows_browsers():
    assert playback_duration_ms(None) == 100
    assert playback_duration_ms(0) == 100
    assert playback_duration_ms(10) == 100
    assert playback_duration_ms(20) == 20
    assert playback_duration_ms(125.0) == 125


@pytest.mark.parametrize("plays, repeat", [(0, 0), (1, None), (2, 1), (5, 4)])
def test_gif_loop_mapping_round_trips(plays, repeat):
    assert gif_repeat_from_plays(plays) == repeat
    assert plays_from_gif_repeat(repeat) == plays


def _select(times, **kwargs):
    selector = FrameSelector(**kwargs)
    kept = []
    for index, time_s in enumerate(times):
        decision = selector.offer(time_s)
        if decision == STOP:
            break
        if decision == KEEP:
            kept.append(index)
    return kept, selector


def test_stride_keeps_every_nth_frame_from_the_first():
    kept, selector = _select([i / 24 for i in range(10)], stride=3)
    assert kept == [0, 3, 6, 9]
    assert selector.output_fps(24) == 8


def test_target_fps_picks_the_first_frame_at_or_after_each_tick():
    kept, selector = _select([i / 24 for i in range(24)], target_fps=10)
    assert kept == [0, 3, 5, 8, 10, 12, 15, 17, 20, 22]
    assert selector.output_fps(24) == 10


def test_target_fps_tolerates_timestamps_rounded_to_the_clock():
    # GIF times at 8 fps are 0, 130, 250, 380 ms: each is on or just past a 125 ms tick.
    kept, _ = _select([0, 0.13, 0.25, 0.38, 0.5], target_fps=8)
    assert kept == [0, 1, 2, 3, 4]
    # 30 fps in a 90 kHz clock: frame 3 is at 0.0999889 s, just before the 0.1 s tick.
    kept, _ = _select([math.floor(i * 3000) / 90000 for i in range(7)], target_fps=10)
    assert kept == [0, 3, 6]


def test_target_fps_never_adds_frames():
    kept, selector = _select([i / 8 for i in range(8)], target_fps=30)
    assert kept == list(range(8))
    assert selector.output_fps(8) == 8


def test_steps_combine_in_order_and_max_frames_stops():
    kept, selector = _select([i / 24 for i in range(48)], target_fps=12, stride=2, max_frames=3)
    assert kept == [0, 4, 8]
    assert selector.output_fps(24) == 6
    selector = FrameSelector(max_frames=2)
    assert [selector.offer(t) for t in (0, 1, 2)] == [KEEP, KEEP, STOP]
    selector = FrameSelector(stride=2, max_frames=1)
    # The frame after the last kept one is skipped by the stride, not a reason to stop yet.
    assert [selector.offer(t) for t in (0, 1, 2)] == [KEEP, SKIP, STOP]


@pytest.mark.parametrize("kwargs", [
    {"stride": 0}, {"stride": 1.5}, {"stride": True}, {"target_fps": 0}, {"target_fps": -8},
    {"target_fps": float("nan")}, {"target_fps": "8"}, {"max_frames": 0}, {"max_frames": 2.5},
])
def test_bad_selection_settings_are_user_errors(kwargs):
    with pytest.raises(InvalidInputError) as info:
        FrameSelector(**kwargs)
    assert next(iter(kwargs)) in str(info.value)
