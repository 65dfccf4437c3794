"""The ControlNet bridge against objects shaped like sd-webui-controlnet 1.1.455's (no webui needed):
``Script.latest_network.control_params`` paired with ``Script.enabled_units``, ``ControlParams`` with
its ``hint_cond`` setter, a T2I-Adapter's feature cache, an IP-Adapter's k/v cache. The end-to-end
tests run the same against the real extension."""

from enum import Enum
from types import SimpleNamespace

import pytest
import torch

from lib_animate.sampling.context import context_windows
from lib_animate.sampling.layout import FrameLayout
from lib_animate.webui.controlnet.controlnet_bridge import ControlBridge, ControlNetSetupError
from lib_animate.webui.jobs.denoiser import WindowedInnerModel, WindowSchedule

FRAMES = 8


class ControlModelType(Enum):  # the names ControlNet's enum uses
    ControlNet = "ControlNet"
    T2I_Adapter = "T2I_Adapter"
    IPAdapter = "IPAdapter"
    AttentionInjection = "AttentionInjection"


class ControlParams:
    """ControlNet's hook.ControlParams: the hint_cond setter drops the cached hint and its latent."""

    def __init__(self, kind, hint, hr=None, model=None):
        self.control_model_type = kind
        self._hint_cond = hint
        self.hr_hint_cond = hr
        self.control_model = model if model is not None else SimpleNamespace(control_model=torch.nn.Identity())
        self.used_hint_cond = self.used_hint_cond_latent = "cached"
        self.setter_calls = 0

    @property
    def hint_cond(self):
        return self._hint_cond

    @hint_cond.setter
    def hint_cond(self, value):
        self._hint_cond = value
        self.used_hint_cond = self.used_hint_cond_latent = None
        self.setter_calls += 1


class Adapter:
    def __init__(self):
        self.control = "features of the first call"
        self.control_model = torch.nn.Identity()


class IPAdapter:
    def __init__(self):
        self.cache = {"1_to_k_ip": "k/v of the first call"}


def frame_hint(rows, value_offset=0.0, size=8):
    """Row f holds f (+ offset): the rows name their frames. ``size`` in pixels (latents are 1/8)."""
    return (torch.arange(rows, dtype=torch.float32) % FRAMES + value_offset).view(rows, 1, 1, 1).expand(rows, 3, size, size).contiguous()


def unit(per_frame=True, low_vram=False, model="m"):
    return SimpleNamespace(animatediff_batch=per_frame, low_vram=low_vram, module="none", model=model)


def script_with(*pairs, unet=None):
    params = [p for p, _ in pairs]
    units = [u for _, u in pairs]
    network = SimpleNamespace(control_params=params, model=unet)
    return SimpleNamespace(latest_network=network, enabled_units=units, detected_map=[("map", "none")])


def frames_of(tensor):
    return tensor[:, 0, 0, 0].long().tolist()


def test_every_call_gets_its_window_rows_once_per_chunk_on_the_calls_device_and_dtype():
    full, full_hr = frame_hint(2 * FRAMES, size=16), frame_hint(2 * FRAMES, 100.0, size=32)
    cn = ControlParams(ControlModelType.ControlNet, full, hr=full_hr)
    unet = object()
    bridge = ControlBridge.capture(script_with((cn, unit()), unet=unet), unet, FRAMES, expected_units=1)
    x = torch.zeros(8, 4, 2, 2, dtype=torch.float64)  # 16 x 16 pixels: the first pass
    bridge.on_unet_call([2, 3, 4, 5], 2, x)
    assert frames_of(cn.hint_cond) == [2, 3, 4, 5] * 2 and cn.hint_cond.dtype == torch.float64
    assert cn.hr_hint_cond is full_hr  # ControlNet only compares its shape in this pass
    assert cn.used_hint_cond is None and cn.used_hint_cond_latent is None  # through ControlNet's setter
    bridge.on_unet_call([6, 7, 0, 1], 1, x[:4])
    assert frames_of(cn.hint_cond) == [6, 7, 0, 1]
    bridge.on_unet_call(None, 1, torch.zeros(FRAMES, 4, 2, 2))
    assert frames_of(cn.hint_cond) == list(range(FRAMES))
    # the hires pass (32 x 32 pixels): the hires rows, and only they are kept on the device
    bridge.on_unet_call([2, 3, 4, 5], 2, torch.zeros(8, 4, 4, 4))
    assert frames_of(cn.hr_hint_cond - 100) == [2, 3, 4, 5] * 2 and cn.hint_cond is full
    assert [key[0] for key in bridge.per_frame[0].on_device] == [True]


def test_one_row_hints_and_other_units_are_left_alone():
    single = ControlParams(ControlModelType.ControlNet, frame_hint(1))
    original = single.hint_cond
    bridge = ControlBridge.capture(script_with((single, unit(per_frame=False))), None, FRAMES, expected_units=1)
    bridge.on_unet_call([0, 1, 2, 3], 2, torch.zeros(8, 4, 2, 2))
    assert single.hint_cond is original and single.setter_calls == 0
    bridge.restore()
    assert single.hint_cond is original


def test_caches_that_would_keep_the_first_calls_rows_are_reset():
    t2i = ControlParams(ControlModelType.T2I_Adapter, frame_hint(FRAMES), model=Adapter())
    ip = ControlParams(ControlModelType.IPAdapter, [{"image_embeds": 1}], model=IPAdapter())
    reference = ControlParams(ControlModelType.AttentionInjection, frame_hint(1))
    bridge = ControlBridge.capture(script_with((t2i, unit()), (ip, unit(False)), (reference, unit(False))), None, FRAMES, 3)
    x = torch.zeros(8, 4, 2, 2)
    bridge.on_unet_call([0, 1, 2, 3], 2, x)
    assert t2i.control_model.control is None and ip.control_model.cache == {} and reference.used_hint_cond_latent is None
    # the same rows again (the next step, same window): T2I features may be reused, IP k/v never
    t2i.control_model.control = "features of [0-3]"
    ip.control_model.cache = {"k": "v"}
    reference.used_hint_cond_latent = "latent at 8 rows"
    bridge.on_unet_call([0, 1, 2, 3], 2, x)
    assert t2i.control_model.control == "features of [0-3]" and ip.control_model.cache == {}
    assert reference.used_hint_cond_latent == "latent at 8 rows"
    # a skipped uncond: 4 rows -> the reference latent is re-encoded at the new batch size
    bridge.on_unet_call([0, 1, 2, 3], 1, x[:4])
    assert reference.used_hint_cond_latent is None and t2i.control_model.control is None
    # the hires pass (other spatial size, same rows): T2I features are recomputed
    t2i.control_model.control = "low-res features"
    bridge.on_unet_call([0, 1, 2, 3], 1, torch.zeros(4, 4, 4, 4))
    assert t2i.control_model.control is None and frames_of(t2i.hint_cond) == [0, 1, 2, 3]  # no hires hints: the only ones


def test_restore_puts_the_full_hints_back_and_is_idempotent():
    full, full_hr = frame_hint(2 * FRAMES), frame_hint(2 * FRAMES, 100.0, size=16)
    cn = ControlParams(ControlModelType.ControlNet, full, hr=full_hr)
    ip = ControlParams(ControlModelType.IPAdapter, [], model=IPAdapter())
    bridge = ControlBridge.capture(script_with((cn, unit()), (ip, unit(False))), None, FRAMES, 2)
    bridge.on_unet_call([1, 2], 2, torch.zeros(4, 4, 1, 1))
    ip.control_model.cache = {"k": "v"}
    bridge.restore()
    assert cn.hint_cond is full and cn.hr_hint_cond is full_hr and ip.control_model.cache == {}
    bridge.restore()
    assert cn.hint_cond is full
    # after a restore the next call sets the rows again (a second sampling pass of the same job)
    bridge.on_unet_call([1, 2], 1, torch.zeros(2, 4, 1, 1))
    assert frames_of(cn.hint_cond) == [1, 2]


def test_without_hires_hints_the_hires_field_keeps_what_controlnet_had():
    cn = ControlParams(ControlModelType.ControlNet, frame_hint(FRAMES), hr=None)
    bridge = ControlBridge.capture(script_with((cn, unit())), None, FRAMES, 1)
    bridge.on_unet_call([0, 1], 1, torch.zeros(2, 4, 2, 2))
    assert cn.hr_hint_cond is None


def test_low_vram_keeps_nothing_on_the_device():
    cn = ControlParams(ControlModelType.ControlNet, frame_hint(FRAMES))
    bridge = ControlBridge.capture(script_with((cn, unit(low_vram=True))), None, FRAMES, 1)
    assert bridge.keep_on_cpu
    bridge.on_unet_call([0, 1], 1, torch.zeros(2, 4, 2, 2))
    assert bridge.per_frame[0].on_device == {}
    fast = ControlBridge.capture(script_with((ControlParams(ControlModelType.ControlNet, frame_hint(FRAMES)), unit())), None, FRAMES, 1)
    fast.on_unet_call([0, 1], 1, torch.zeros(2, 4, 2, 2))
    assert len(fast.per_frame[0].on_device) == 1


@pytest.mark.parametrize("script, words", [
    (SimpleNamespace(latest_network=None, enabled_units=[unit()]), "ControlNet failed to set up"),
    (SimpleNamespace(latest_network=SimpleNamespace(control_params=None, model=None), enabled_units=[unit()]), "failed to set up"),
    (SimpleNamespace(latest_network=None, enabled_units=[unit(model="v3_sd15_sparsectrl_rgb")]), "SparseCtrl"),
    (script_with((ControlParams(ControlModelType.ControlNet, frame_hint(FRAMES)), unit()), unet="another unet"), "failed to set up"),
    (script_with((ControlParams(ControlModelType.ControlNet, frame_hint(3 * FRAMES)), unit())), "has 24 rows for a video of 8"),
    (script_with((ControlParams(ControlModelType.IPAdapter, frame_hint(FRAMES), model=IPAdapter()), unit())), "cannot take one hint per frame"),
])
def test_setup_failures_refuse_instead_of_rendering_unguided(script, words):
    with pytest.raises(ControlNetSetupError, match=words):
        ControlBridge.capture(script, None, FRAMES, expected_units=1)


def test_hint_frames_are_what_the_controlnet_sees():
    hint = torch.rand(FRAMES, 4, 8, 8)  # an inpaint hint: RGB + mask
    bridge = ControlBridge.capture(script_with((ControlParams(ControlModelType.ControlNet, hint), unit())), None, FRAMES, 1)
    [(owner, frames)] = bridge.hint_frames()
    assert owner.model == "m" and frames.shape == (FRAMES, 8, 8, 3) and frames.dtype.name == "uint8"
    assert abs(int(frames[3, 2, 1, 0]) - round(float(hint[3, 0, 2, 1]) * 255)) <= 1


def test_through_the_window_wrapper_every_call_sees_exactly_its_rows():
    """The denoiser wrapper calls the UNet per window with 1 or 2 chunks; a ControlNet-like forward adds
    the hint to x row by row (a 2F-row hint on a 4-row call would fail, as ControlNet's does)."""
    cn = ControlParams(ControlModelType.ControlNet, frame_hint(2 * FRAMES))
    bridge = ControlBridge.capture(script_with((cn, unit())), None, FRAMES, 1)
    schedule = WindowSchedule(FRAMES, 4, 2, closed_loop=True, stride=1, fusion="flat")
    seen = []

    class Inner:
        def forward(self, x, sigma, **kwargs):
            assert cn.hint_cond.shape[0] == x.shape[0]
            assert torch.equal(cn.hint_cond[:, :1, :1, :1].expand_as(x[:, :1]), x[:, :1])  # row r holds frame r's hint
            seen.append(frames_of(x))
            return x

    inner = Inner()
    wrapper = WindowedInnerModel(schedule, FrameLayout(FRAMES), on_call=lambda window, roles, kwargs, x: bridge.on_unet_call(window, len(roles), x))
    wrapper.install(inner)
    expected = []
    for step, chunks in ((0, 2), (1, 1), (2, 2)):
        wrapper.step = step
        x = frame_hint(chunks * FRAMES)[:, :1, :2, :2].expand(-1, 4, -1, -1).contiguous()
        out = inner.forward(x, torch.ones(chunks * FRAMES))
        assert torch.equal(out, x)  # fused windows of an identity: x again
        expected += [list(w) * chunks for w in context_windows(FRAMES, 4, 2, step=step, closed_loop=True)]
    assert seen == expected
    assert any(list(w) != sorted(w) for step in (0, 1, 2) for w in context_windows(FRAMES, 4, 2, step=step, closed_loop=True))
    wrapper.remove()
