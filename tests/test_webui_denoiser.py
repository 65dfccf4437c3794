"""The job's hooks inside the webui's CFG denoiser, without a webui: ``WindowedInnerModel`` over a
stand-in inner model that records its calls (the webui's inner model is a plain object whose
``forward`` the job replaces per instance), the cond/uncond roles from the webui's call order and
the window schedule."""

import pytest
import torch

from lib_animate.sampling.context import context_windows, window_weights
from lib_animate.sampling.layout import COND, UNCOND, FrameLayout
from lib_animate.webui.jobs.denoiser import WindowedInnerModel, WindowSchedule, chunk_roles, rows_of

FRAMES = 6


class RecordingInnerModel:
    """Returns a per-row function of x, sigma and the context, so slicing mistakes show in the output."""

    def __init__(self, layout):
        self.layout = layout
        self.calls = []

    def forward(self, x, sigma, cond=None):
        context = cond["c_crossattn"][0]
        self.calls.append((x.shape[0], self.layout.frames))
        return x * 2 + sigma[:, None, None, None] + context.mean(dim=(1, 2))[:, None, None, None]


def cfg_rows(chunks, frames=FRAMES):
    x = torch.randn(chunks * frames, 4, 2, 2)
    sigma = torch.rand(chunks * frames)
    context = torch.randn(chunks * frames, 3, 8)
    return x, sigma, context


def setup(frames=FRAMES, length=None, overlap=0, closed_loop=False, fusion="flat"):
    layout = FrameLayout(frames)
    schedule = WindowSchedule(frames, length or frames, overlap, closed_loop, 1, fusion)
    seen = []
    wrapper = WindowedInnerModel(schedule, layout, on_call=lambda window, roles, kwargs, x: seen.append((window, roles)))
    inner = RecordingInnerModel(layout)
    wrapper.install(inner)
    return wrapper, inner, seen


def run_forward(wrapper, inner, calls, cond_rows, step=0):
    """One CFGDenoiser.forward as the webui makes it: ``calls`` = the row counts of its inner-model calls."""
    wrapper.begin_forward(step, cond_rows)
    outputs = []
    for chunks in calls:
        x, sigma, context = cfg_rows(chunks)
        outputs.append(inner.forward(x, sigma, cond={"c_crossattn": [context]}))
    return outputs


# The webui's branches (modules/sd_samplers_cfg_denoiser.py, CFGDenoiser.forward), frames = batch size:
@pytest.mark.parametrize("calls, cond_rows, expected", [
    ([2], FRAMES, [(COND, UNCOND)]),  # batch_cond_uncond: one [cond; uncond] call
    ([1, 1], FRAMES, [(COND,), (UNCOND,)]),  # batch_cond_uncond off, or prompts of different token lengths
    ([1], FRAMES, [(COND,)]),  # skipped uncond (NGMS / skip early CFG), decided after the callback
], ids=["batched", "separate", "skip-uncond"])
def test_chunk_roles_come_from_the_webuis_call_order(calls, cond_rows, expected):
    wrapper, inner, seen = setup()
    run_forward(wrapper, inner, calls, cond_rows)
    assert [roles for _, roles in seen] == expected
    run_forward(wrapper, inner, calls, cond_rows, step=1)  # every forward starts over
    assert [roles for _, roles in seen[len(expected):]] == expected


def test_roles_do_not_depend_on_the_context_values():
    """An uncond context that is not exactly zero (e.g. a negative prompt) is still uncond."""
    assert chunk_roles(0, 2, FRAMES, FRAMES) == (COND, UNCOND)
    assert chunk_roles(FRAMES, 1, FRAMES, FRAMES) == (UNCOND,)
    assert chunk_roles(0, 3, FRAMES, 2 * FRAMES) == (COND, COND, UNCOND)
    assert chunk_roles(0, 2, FRAMES, None) == (COND, COND)  # no callback ran: no CFG information


def test_every_window_of_a_call_gets_the_calls_roles():
    wrapper, inner, seen = setup(frames=10, length=4, overlap=1)
    wrapper.begin_forward(0, 10)
    x, sigma, context = cfg_rows(2, frames=10)
    inner.forward(x, sigma, cond={"c_crossattn": [context]})
    windows = [list(w) for w in context_windows(10, 4, 1, step=0, closed_loop=False, stride=1)]
    assert [window for window, _ in seen] == windows
    assert all(roles == (COND, UNCOND) for _, roles in seen)
    assert all(rows == 2 * len(w) and frames == len(w) for (rows, frames), w in zip(inner.calls, windows))


def test_a_single_window_call_is_passed_through_unchanged():
    wrapper, inner, _ = setup()
    x, sigma, context = cfg_rows(2)
    wrapper.begin_forward(0, FRAMES)
    got = inner.forward(x, sigma, cond={"c_crossattn": [context]})
    wrapper.remove()
    assert "forward" not in vars(inner)  # removed: the class's forward again
    assert torch.equal(got, inner.forward(x, sigma, cond={"c_crossattn": [context]}))


@pytest.mark.parametrize("fusion", ["flat", "pyramid"])
def test_windows_slice_x_sigma_and_the_cond_dict_alike(fusion):
    """Each window runs the original forward on its rows, with x, sigma and the cond dict sliced alike."""
    frames, length, overlap = 10, 4, 2
    wrapper, inner, _ = setup(frames=frames, length=length, overlap=overlap, fusion=fusion)
    x, sigma, context = cfg_rows(2, frames=frames)
    wrapper.begin_forward(0, frames)
    got = inner.forward(x, sigma, cond={"c_crossattn": [context]})
    wrapper.remove()
    # The stand-in is per row, so every window's output equals the full call's rows; any fusion of
    # equal values is that value -- unless rows were mixed up between windows or chunks.
    full = inner.forward(x, sigma, cond={"c_crossattn": [context]})
    assert torch.allclose(got, full, atol=1e-6)


class CrossFrameInnerModel(RecordingInnerModel):
    """Each row's output also depends on the other frames of its clip chunk in the call (as the
    motion modules make it), so a window's output differs from the full call's."""

    def forward(self, x, sigma, cond=None):
        frames = self.layout.frames
        clips = x.reshape(-1, frames, *x.shape[1:])
        return (clips + clips.mean(dim=1, keepdim=True)).reshape(x.shape) + sigma[:, None, None, None]


@pytest.mark.parametrize("fusion", ["flat", "pyramid"])
def test_overlapping_windows_are_averaged_with_the_schedules_weights(fusion):
    frames, length, overlap = 10, 4, 2
    layout = FrameLayout(frames)
    schedule = WindowSchedule(frames, length, overlap, False, 1, fusion)
    wrapper = WindowedInnerModel(schedule, layout)
    inner = CrossFrameInnerModel(layout)
    wrapper.install(inner)
    x, sigma, context = cfg_rows(2, frames=frames)
    wrapper.begin_forward(0, frames)
    got = inner.forward(x, sigma, cond={"c_crossattn": [context]}).reshape(2, frames, 4, 2, 2)
    wrapper.remove()
    # expected, written out: sum over windows of weight * window output, divided by the summed weights
    total = torch.zeros(2, frames, 4, 2, 2)
    weight_sum = torch.zeros(frames)
    clips, sigmas = x.reshape(2, frames, 4, 2, 2), sigma.reshape(2, frames)
    for window in context_windows(frames, length, overlap, step=0, closed_loop=False, stride=1):
        index = list(window)
        part = clips[:, index]
        out = part + part.mean(dim=1, keepdim=True) + sigmas[:, index][..., None, None, None]
        weights = window_weights(len(index), fusion)
        total[:, index] += weights[None, :, None, None, None] * out
        weight_sum[index] += weights
    expected = total / weight_sum[None, :, None, None, None]
    assert torch.allclose(got, expected, atol=1e-5)
    full = inner.forward(x, sigma, cond={"c_crossattn": [context]}).reshape(2, frames, 4, 2, 2)
    assert not torch.allclose(got, full, atol=1e-3)  # the windows did change the result


def test_a_call_that_does_not_hold_whole_clips_is_refused():
    wrapper, inner, _ = setup()
    wrapper.begin_forward(0, FRAMES)
    with pytest.raises(RuntimeError, match="must hold whole clips"):
        inner.forward(torch.zeros(FRAMES + 1, 4, 2, 2), torch.zeros(FRAMES + 1), cond={"c_crossattn": [torch.zeros(FRAMES + 1, 3, 8)]})


def test_window_schedule_is_the_engines_schedule_per_step():
    schedule = WindowSchedule(12, 8, 4, closed_loop=True, stride=1, fusion="flat")
    assert schedule.active
    for step in range(3):
        assert list(map(list, schedule.windows(step))) == list(map(list, context_windows(12, 8, 4, step=step, closed_loop=True, stride=1)))
    assert not WindowSchedule(8, 8, 2, closed_loop=False, stride=1, fusion="flat").active


def test_rows_of_reads_tensors_and_sdxl_dicts():
    assert rows_of(torch.zeros(5, 77, 8)) == 5
    assert rows_of({"crossattn": torch.zeros(3, 77, 8), "vector": torch.zeros(3, 16)}) == 3


# --- the named schedules, against the Animate Anyone reference ------------------------------------

def reference_windows(num_frames, context_size, context_overlap):
    """The windows of Moore-AnimateAnyone's pose2vid_long, written from its code: animatediff-cli's
    ``uniform`` scheduler (src/pipelines/context.py) called at step 0 with context_stride 1 and
    closed_loop True -- starts ``range(0, F, size - overlap)``, indices modulo F, one window of every
    frame when F <= size."""
    if num_frames <= context_size:
        return [list(range(num_frames))]
    return [[e % num_frames for e in range(j, j + context_size)]
            for j in range(0, num_frames, context_size - context_overlap)]


@pytest.mark.parametrize("frames, length, overlap", [
    (12, 8, 4), (25, 24, 4), (64, 24, 4), (72, 24, 4), (120, 24, 4), (30, 8, 0), (31, 8, 7), (9, 8, 2), (8, 8, 4), (5, 8, 2),
])
def test_the_reference_schedule_is_the_reference_pipelines_at_every_step(frames, length, overlap):
    schedule = WindowSchedule.named("reference", frames, length, overlap, stride=1, fusion="flat")
    expected = reference_windows(frames, length, overlap)
    for step in range(5):  # the reference calls its scheduler with step 0 only: windows never move
        assert [list(w) for w in schedule.windows(step)] == expected
    assert schedule.fusion == "flat"
    # the last start lies within a hop (< length) of the end: with more than one window the last one wraps
    assert any(w != sorted(w) for w in expected) == (frames > length)


def test_the_named_schedules_set_ring_and_shift():
    open_ = WindowSchedule.named("open", 50, 16, 4, stride=1, fusion="pyramid")
    loop = WindowSchedule.named("loop", 50, 16, 4, stride=1, fusion="pyramid")
    reference = WindowSchedule.named("reference", 50, 16, 4, stride=1, fusion="flat")
    assert all(w == tuple(sorted(w)) for step in range(4) for w in open_.windows(step))  # never wraps
    assert open_.windows(0) == open_.windows(3)
    assert loop.windows(0) == reference.windows(0) and loop.windows(1) != loop.windows(0)  # shifts from step 1 on
    assert reference.windows(1) == reference.windows(0)


def _window_function(x_window, t, role_sign):
    """A stand-in for the denoising UNet on one clip chunk of a window: frames interact (the mean over
    the window) and the position in the window matters (the motion module's position encoding), so a
    window's frame order and membership change the result, as they do for the real model."""
    n = x_window.shape[0]
    position = torch.arange(n, dtype=x_window.dtype).view(n, 1, 1, 1)
    return (x_window * (1 + 0.001 * t) + 0.3 * x_window.mean(dim=0, keepdim=True) + 0.02 * position * x_window
            + 0.1 * role_sign)


class WindowFunctionInnerModel:
    """The webui's inner model holding :func:`_window_function`: rows are [cond clip; uncond clip]
    chunks of the current window, the role comes from the context's sign (+1 cond, -1 uncond)."""

    def __init__(self, layout):
        self.layout = layout

    def forward(self, x, sigma, cond=None):
        n = self.layout.frames
        context = cond["c_crossattn"][0]
        out = []
        for c in range(x.shape[0] // n):
            rows = slice(c * n, (c + 1) * n)
            out.append(_window_function(x[rows], int(sigma[rows][0]), float(context[rows][0, 0, 0])))
        return torch.cat(out)


@pytest.mark.parametrize("frames, length, overlap", [(14, 8, 2), (12, 8, 4), (20, 8, 4), (7, 8, 2)])
def test_a_windowed_run_through_the_jobs_wrapper_equals_the_reference_pipelines_loop(frames, length, overlap):
    """Whole runs from the same noise: the job's denoiser wrapper under the "reference" schedule, inside
    the exact Animate Anyone DDIM, against the reference pipeline's loop written from its code (per
    step: every window's [uncond, cond] prediction summed into a per-frame accumulator with a counter,
    divided, then guidance and the DDIM step)."""
    from lib_animate.sampling.aa_ddim import cfg, sample_aa_ddim

    steps, scale = 6, 3.5
    noise = torch.randn(frames, 4, 3, 3, generator=torch.Generator().manual_seed(frames))

    def reference_model(x, t):
        windows = reference_windows(frames, length, overlap)
        pred = torch.zeros(2, *x.shape)
        counter = torch.zeros(frames, 1, 1, 1)
        for window in windows:
            part = x[window]
            pred[0, window] += _window_function(part, t, -1.0)  # uncond
            pred[1, window] += _window_function(part, t, 1.0)  # cond
            counter[window] += 1
        uncond, cond = pred / counter
        return cfg(cond, uncond, scale)

    layout = FrameLayout(frames)
    schedule = WindowSchedule.named("reference", frames, min(length, frames), overlap, stride=1, fusion="flat")
    wrapper = WindowedInnerModel(schedule, layout)
    inner = WindowFunctionInnerModel(layout)
    wrapper.install(inner)
    step = iter(range(10 ** 6))

    def job_model(x, t):
        wrapper.begin_forward(next(step), cond_rows=frames)  # the job's on_cfg_denoiser callback
        rows = torch.cat([x, x])  # the webui batches [cond; uncond]
        context = torch.cat([torch.ones(frames, 1, 1), -torch.ones(frames, 1, 1)])
        out = inner.forward(rows, torch.full((2 * frames,), float(t)), cond={"c_crossattn": [context]})
        return cfg(out[:frames], out[frames:], scale)

    ours = sample_aa_ddim(job_model, noise.clone(), steps)
    reference = sample_aa_ddim(reference_model, noise.clone(), steps)
    wrapper.remove()
    assert ((ours - reference).norm() / reference.norm()).item() <= 1e-6
    if frames > length:  # and the schedule matters: the open schedule gives another result
        open_schedule = WindowSchedule.named("open", frames, length, overlap, stride=1, fusion="flat")
        wrapper = WindowedInnerModel(open_schedule, layout)
        wrapper.install(inner)
        step = iter(range(10 ** 6))
        other = sample_aa_ddim(job_model, noise.clone(), steps)
        wrapper.remove()
        assert ((other - reference).norm() / reference.norm()).item() > 1e-3
