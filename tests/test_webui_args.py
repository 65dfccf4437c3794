"""The script's argument contract (plain Python; the webui is not needed)."""

import json
import re
from pathlib import Path

import pytest

from lib_animate.errors import InvalidInputError
from lib_animate.webui.api.args import AnimateArgs, MotionLoraArg, field_names, parse_args
from lib_animate.webui.api.infotext import KEY, encode, pasted_fields
from lib_animate.webui.ui.accordion import ui_fields, values_to_dict


README = Path(__file__).resolve().parents[1] / "README.md"
# The README writes a few defaults in words.
_WORDED_DEFAULTS = {"first found": "", "none": None, "—": None}
# Cells that name where the value comes from in that mode instead of a default.
_FROM_THE_INPUT = ("the pose frames", "the pose video's")
NOT_USED = "n/a"
MODE_COLUMNS = {"animatediff": 2, "animate_anyone": 3}


def _cell_values(raw, names):
    quoted = re.findall(r"`([^`]*)`", raw)
    values = [json.loads(q) for q in quoted] if quoted else [_WORDED_DEFAULTS[raw]] * len(names)
    if len(values) == 1:
        values = values * len(names)
    assert len(values) == len(names), raw
    return values


def documented_fields():
    """``{mode: {field: default}}`` from the README's field table (the one headed ``| field | type | default: ...``);
    cells "n/a" (not used in that mode) and those naming the input the value comes from are left out."""
    lines = README.read_text(encoding="utf8").splitlines()
    start = lines.index("| field | type | default: AnimateDiff | default: Animate Anyone | allowed / meaning |")
    tables = {mode: {} for mode in MODE_COLUMNS}
    rows = set()
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        names = re.findall(r"`([a-z_]+)`", cells[0])
        rows.update(names)
        used = [mode for mode, column in MODE_COLUMNS.items() if cells[column] != NOT_USED]
        assert used, f"{names} is used in neither mode: {line}"
        for mode in used:
            raw = cells[MODE_COLUMNS[mode]]
            if raw not in _FROM_THE_INPUT:
                tables[mode].update(zip(names, _cell_values(raw, names)))
    return rows, tables


def test_defaults_match_the_documented_table():
    """Every field is in the README's table with the default the code has in each mode, and nothing else is."""
    rows, tables = documented_fields()
    assert rows == set(field_names())
    for mode, table in tables.items():
        defaults = parse_args({"mode": mode})
        for name, documented in table.items():
            actual = getattr(defaults, name)
            if name == "motion_loras":
                actual = []
            assert actual == documented, (mode, name, actual, documented)


def test_a_full_request_parses():
    args = parse_args({
        "enable": True, "motion_module": "mm_sd_v15_v2.ckpt", "frames": 24, "fps": 12.5, "loop": 2,
        "formats": ["gif", "MP4", "WEBM", "WEBP", "PNG", "GIF"], "context_length": 16, "context_overlap": 4,
        "closed_loop": True, "noise_schedule": "checkpoint",
        "motion_loras": [{"name": "v2_lora_ZoomIn.ckpt", "strength": 0.8}, {"name": "lora/b.safetensors"}],
        "init_strength": 0.5,
    })
    assert args.formats == ["GIF", "MP4", "WEBM", "WEBP", "PNG"]
    assert args.motion_loras == [MotionLoraArg("v2_lora_ZoomIn.ckpt", 0.8), MotionLoraArg("lora/b.safetensors", 1.0)]
    assert args.fps == 12.5 and args.frames == 24


@pytest.mark.parametrize("values, message", [
    ({"frames": 1}, "'frames' must be at least 2"),
    ({"frames": 2.5}, "'frames' must be a whole number"),
    ({"frames": "16"}, "'frames' must be a whole number"),
    ({"frames": True}, "'frames' must be a whole number"),
    ({"fps": 0}, "'fps' must be greater than 0"),
    ({"fps": -3}, "'fps' must be greater than 0"),
    ({"fps": float("nan")}, "'fps' must be a number"),
    ({"loop": -1}, "'loop' must be at least 0"),
    ({"formats": ["GIF", "AVI"]}, "unknown format 'AVI'"),
    ({"formats": 5}, "'formats' must be a list"),
    ({"enable": "yes"}, "'enable' must be true or false"),
    ({"mode": "magic"}, "'mode' must be one of"),
    ({"noise_schedule": "linear"}, "'noise_schedule' must be one of"),
    ({"motion_loras": [{"name": "x", "weight": 1}]}, "unknown fields \\['weight'\\]"),
    ({"motion_loras": ["x"]}, "must be {\"name\""),
    ({"motion_loras": [{"strength": 1}]}, "must name a motion LoRA file"),
    ({"context_length": 8, "context_overlap": 8}, "must be smaller than 'context_length'"),
    ({"init_strength": 1.5}, "'init_strength' must be at most 1"),
    ({"frame_count": 16}, "unknown field\\(s\\) 'frame_count'; known fields: enable"),
])
def test_bad_values_name_the_field(values, message):
    with pytest.raises(InvalidInputError, match=message):
        parse_args(values)


def test_a_bare_dict_or_list_is_not_args():
    with pytest.raises(InvalidInputError, match="must be a list holding one dict"):
        parse_args([{"enable": True}])


def test_ui_values_become_the_api_dict():
    names = ui_fields(is_img2img=True)
    values = {name: None for name in names}
    values.update(enable=True, mode="animatediff", motion_module="a.ckpt", frames=16.0, fps=8, loop=0.0,
                  formats=["MP4"], context_length=0.0, context_overlap=4.0, context_schedule="auto", context_stride=1.0,
                  fusion="auto", noise_schedule="motion_module", prompt_interpolation="slerp",
                  motion_lora_0_name="zoom.ckpt", motion_lora_0_strength=0.5, motion_lora_1_name="None",
                  motion_lora_1_strength=1.0, motion_lora_2_name=None, motion_lora_2_strength=1.0,
                  init_strength=0.9, latent_power=1.0, latent_scale=32.0, last_frame=None, latent_power_last=2.0,
                  latent_scale_last=16.0, control_upload=None, control_stride=2.0, control_maps=False, init_video=None,
                  pingpong=True, motion_scale="0:1, 8:0.5", noise_init="freenoise", freenoise_window=0.0, freenoise_stride=4.0,
                  freeinit_iterations=2.0, freeinit_filter="gaussian", freeinit_spatial=0.5, freeinit_temporal=0.25, freeinit_order=4,
                  freeinit_all_passes=True)
    args = parse_args(values_to_dict([values[n] for n in names], is_img2img=True))
    assert args.control_stride == 2 and args.control_video is None and args.init_video is None
    assert args.frames == 16 and args.loop == 0 and args.motion_loras == [MotionLoraArg("zoom.ckpt", 0.5)]
    assert args.init_strength == 0.9 and args.formats == ["MP4"]
    assert args.pingpong is True and (args.latent_power_last, args.latent_scale_last) == (2.0, 16.0)
    assert args.motion_scale == "0:1, 8:0.5" and args.noise_init == "freenoise" and args.freenoise_stride == 4
    assert (args.freeinit_iterations, args.freeinit_filter, args.freeinit_spatial) == (2, "gaussian", 0.5)
    values.update(motion_scale=" 0.5 ")
    assert parse_args(values_to_dict([values[n] for n in names], is_img2img=True)).motion_scale == 0.5


def test_infotext_round_trip_restores_every_field():
    args = parse_args({"enable": True, "frames": 20, "fps": 10, "formats": ["MP4", "GIF"], "closed_loop": True,
                       "motion_loras": [{"name": "lora/z.ckpt", "strength": 0.7}, {"name": "pan.safetensors", "strength": -1.25}],
                       "noise_schedule": "checkpoint", "context_length": 12})
    text = encode(args, {"motion_module": "mm.ckpt", "motion_module_version": "v2"})
    # readable and stored unquoted by the webui (no ',' or ':' in the value)
    assert "," not in text and ":" not in text
    assert "frames=20" in text and "formats=MP4+GIF" in text and "motion_loras=lora/z.ckpt@0.7+pan.safetensors@-1.25" in text
    restored = pasted_fields({KEY: text})
    assert restored["enable"] is True
    assert pasted_fields({"Steps": "20"}) == {} and pasted_fields({KEY: ""}) == {}
    # pasting gives back the settings, with the motion module the job actually used
    assert parse_args(restored) == AnimateArgs(**{**args.__dict__, "motion_module": "mm.ckpt"})


def test_infotext_falls_back_to_json_for_odd_file_names():
    args = parse_args({"enable": True, "motion_module": "weird; name=1.ckpt", "motion_loras": [{"name": "a@b.ckpt", "strength": 1}]})
    text = encode(args)
    assert text.startswith("{") and json.loads(text)["motion_module"] == "weird; name=1.ckpt"
    assert parse_args(pasted_fields({KEY: text})) == args


def test_animate_anyone_infotext_has_only_its_own_fields():
    args = parse_args({"enable": True, "mode": "animate_anyone", "pose_stride": 2, "fit": "letterbox"})
    text = encode(args, {"frames": 24, "reference": "512x768"})
    assert "pose_stride=2" in text and "fit=letterbox" in text and "motion_module" not in text and "reference_image" not in text
    restored = pasted_fields({KEY: text})
    assert restored["mode"] == "animate_anyone" and restored["pose_stride"] == 2 and restored["frames"] == 24


def test_settings_table_is_consistent():
    """Every option has (default, label); component overrides name only real options."""
    import inspect

    from lib_animate.webui import settings

    assert all(isinstance(v, tuple) and len(v) == 2 and isinstance(v[1], str) for v in settings.OPTIONS.values())
    source = inspect.getsource(settings.register)
    overridden = [line.split('"')[1] for line in source.splitlines() if line.strip().startswith('"animate_anyone_')]
    assert overridden and all(key in settings.OPTIONS for key in overridden)
    assert all("gr." in line for line in source.splitlines() if line.strip().startswith('"animate_anyone_'))


def test_xyz_overrides_are_checked_like_the_fields_and_enable_the_job():
    from lib_animate.webui.api.args import with_overrides

    args = parse_args({"motion_loras": [{"name": "zoom.ckpt", "strength": 0.5}, {"name": "pan.ckpt"}]})
    cell = with_overrides(args, {"frames": 24, "motion_scale": "0:1, 8:0.5", "motion_lora_strength": 0.8})
    assert cell.enable and cell.frames == 24 and cell.motion_scale == "0:1, 8:0.5"
    assert [lora.strength for lora in cell.motion_loras] == [0.8, 0.8] and "frames" in cell.given
    assert args.frames == 16 and args.motion_loras[0].strength == 0.5  # the shared args are untouched
    with pytest.raises(InvalidInputError, match="'frames' must be at least 2"):
        with_overrides(args, {"frames": 1})
    with pytest.raises(InvalidInputError, match="has no motion LoRA"):
        with_overrides(parse_args({}), {"motion_lora_strength": 1.0})
    with pytest.raises(InvalidInputError, match="'context_overlap' \\(8\\) must be smaller than 'context_length' \\(8\\)"):
        with_overrides(parse_args({"context_length": 8}), {"context_overlap": 8})


def test_xyz_axes_apply_a_new_dict_per_cell_and_confirm_before_any_cell():
    from copy import copy
    from types import SimpleNamespace

    from lib_animate.webui.api.args import XYZ_CELLS, XYZ_OVERRIDES
    from lib_animate.webui.errors import RequestError
    from lib_animate.webui.ui.xyz_axes import AXES, apply_value, confirm_values

    assert {field for _, field, *_ in AXES} >= {"motion_module", "frames", "fps", "context_length", "context_overlap",
                                                 "motion_lora_strength", "motion_scale", "noise_init", "freeinit_iterations"}
    plot_p = SimpleNamespace()
    confirm_values("frames", "frames", int, None)(plot_p, [4, 8])
    assert getattr(plot_p, XYZ_CELLS) == []  # made on the plot's p, shared by the cells' copies
    first, second = copy(plot_p), copy(plot_p)
    apply_value("frames", int)(first, 4, [4, 8])
    apply_value("frames", int)(second, 8, [4, 8])
    apply_value("motion_scale", lambda v: float(v))(second, "0.5", [])
    assert getattr(first, XYZ_OVERRIDES) == {"frames": 4} and getattr(second, XYZ_OVERRIDES) == {"frames": 8, "motion_scale": 0.5}
    assert not hasattr(plot_p, XYZ_OVERRIDES)
    with pytest.raises(RequestError, match=r"\[Animate Anyone\] noise init = 'pink'"):
        confirm_values("noise init", "noise_init", str, None)(plot_p, ["freenoise", "pink"])
    with pytest.raises(RequestError, match="no motion module 'b.ckpt'"):
        confirm_values("motion module", "motion_module", str, lambda: ["a.ckpt"])(plot_p, ["a.ckpt", "b.ckpt"])


# --- context_schedule ------------------------------------------------------------------------------

@pytest.mark.parametrize("values, expected", [
    ({}, ("open", False, "pyramid")),
    ({"mode": "animate_anyone"}, ("reference", True, "flat")),
    ({"context_schedule": "loop"}, ("loop", True, "pyramid")),
    ({"context_schedule": "reference"}, ("reference", True, "flat")),
    ({"mode": "animate_anyone", "context_schedule": "open"}, ("open", False, "pyramid")),
    ({"mode": "animate_anyone", "context_schedule": "open", "fusion": "flat"}, ("open", False, "flat")),
    ({"context_schedule": "reference", "closed_loop": True, "fusion": "flat", "context_stride": 1}, ("reference", True, "flat")),
    # no schedule given: the mode's default where the window fields fit it, else the first of open / loop
    ({"closed_loop": True}, ("loop", True, "pyramid")),
    ({"closed_loop": False, "fusion": "flat"}, ("open", False, "flat")),
    ({"mode": "animate_anyone", "closed_loop": True}, ("reference", True, "flat")),
    ({"mode": "animate_anyone", "closed_loop": False}, ("open", False, "pyramid")),
    ({"mode": "animate_anyone", "fusion": "pyramid"}, ("open", False, "pyramid")),
    ({"mode": "animate_anyone", "closed_loop": True, "fusion": "pyramid"}, ("loop", True, "pyramid")),
    ({"mode": "animate_anyone", "context_stride": 2}, ("open", False, "pyramid")),
])
def test_the_context_schedule_and_the_window_fields_it_implies(values, expected):
    args = parse_args(values)
    assert (args.context_schedule, args.closed_loop, args.fusion) == expected


@pytest.mark.parametrize("values, message", [
    ({"context_schedule": "reference", "fusion": "pyramid"}, "'fusion' 'pyramid' contradicts 'context_schedule' 'reference'"),
    ({"context_schedule": "reference", "closed_loop": False}, "'closed_loop' false contradicts 'context_schedule' 'reference'"),
    ({"context_schedule": "reference", "context_stride": 2}, "'context_stride' 2 contradicts"),
    ({"context_schedule": "reference", "closed_loop": False, "context_stride": 3},
     "'closed_loop' false and 'context_stride' 3 contradict 'context_schedule' 'reference'.*Leave them out"),
    ({"context_schedule": "open", "closed_loop": True}, "'closed_loop' true contradicts 'context_schedule' 'open'"),
    ({"context_schedule": "loop", "closed_loop": False}, "'closed_loop' false contradicts 'context_schedule' 'loop'"),
    ({"context_schedule": "uniform"}, "'context_schedule' must be one of 'reference', 'open', 'loop'"),
])
def test_window_fields_that_contradict_the_chosen_schedule_are_refused(values, message):
    with pytest.raises(InvalidInputError, match=message):
        parse_args(values)


def test_an_xyz_cell_that_sets_the_schedule_resolves_the_window_fields_again():
    from lib_animate.webui.api.args import with_overrides

    args = parse_args({"mode": "animate_anyone"})
    assert (args.context_schedule, args.closed_loop, args.fusion) == ("reference", True, "flat")
    cell = with_overrides(args, {"context_schedule": "open"})
    assert (cell.context_schedule, cell.closed_loop, cell.fusion) == ("open", False, "pyramid")
    looped = with_overrides(args, {"context_schedule": "loop"})
    assert (looped.context_schedule, looped.closed_loop, looped.fusion) == ("loop", True, "pyramid")
    with pytest.raises(InvalidInputError, match="contradicts 'context_schedule' 'reference'"):
        with_overrides(parse_args({"mode": "animate_anyone", "fusion": "pyramid"}), {"context_schedule": "reference"})


def test_infotexts_from_before_the_schedule_had_a_name_restore_what_ran():
    assert pasted_fields({KEY: "mode=animatediff; frames=20; closed_loop=true"})["context_schedule"] == "loop"
    assert pasted_fields({KEY: "mode=animate_anyone; closed_loop=false"})["context_schedule"] == "open"
    text = encode(parse_args({"mode": "animate_anyone"}), {})
    assert "context_schedule=reference" in text
    restored = pasted_fields({KEY: text})
    assert (restored["context_schedule"], restored["closed_loop"], restored["fusion"]) == ("reference", True, "flat")
    assert parse_args({**restored, "mode": "animate_anyone"}).context_schedule == "reference"  # pastes back consistently


# --- the character option ---------------------------------------------------------------------------

@pytest.mark.parametrize("values, message", [
    ({"character": True, "pose_json": [{"people": []}]}, "'character' needs 'reference_image'"),
    ({"character": True, "reference_image": "AAAA"}, "'character' needs a pose input"),
    ({"character": True, "reference_image": "AAAA", "pose_json": [{"people": []}], "control_video": "AAAA"},
     "'character' feeds its pose input to the ControlNet units.*'control_video' cannot be given too"),
    ({"pose_json": [{"people": []}]}, "'pose_json' belong to the Animate Anyone mode or to the AnimateDiff mode's character option"),
    ({"reference_image": "AAAA", "retarget": True}, "'reference_image', 'retarget' belong to"),
    ({"mode": "animate_anyone", "character": True}, "'character' is an option of the AnimateDiff mode"),
    ({"style_fidelity": 1.5}, "'style_fidelity' must be at most 1"),
    ({"reference_strength": -0.1}, "'reference_strength' must be at least 0"),
    ({"reference_noise": "always"}, "'reference_noise' must be one of 'step', 'clean'"),
])
def test_the_character_options_inputs_are_checked_together(values, message):
    with pytest.raises(InvalidInputError, match=message):
        parse_args(values)


def test_the_character_options_fields_are_in_the_infotext_only_where_they_shape_the_video():
    character = parse_args({"character": True, "reference_image": "AAAA", "pose_json": [{"people": []}], "fit": "letterbox",
                            "retarget": True, "reference_pose_json": [{"people": []}]})
    data = character.as_infotext_dict()
    assert data["character"] is True and data["fit"] == "letterbox" and data["retarget"] is True and "sampler" not in data
    assert data["reference_strength"] == 1.0 and data["style_fidelity"] == 0.5 and data["reference_noise"] == "step"
    assert "reference_pose_json" not in data and "pose_json" not in data
    plain = parse_args({}).as_infotext_dict()
    assert not {"character", "reference_strength", "fit", "retarget"} & set(plain)
    animate_anyone = parse_args({"mode": "animate_anyone"}).as_infotext_dict()
    assert "retarget" in animate_anyone and "character" not in animate_anyone
