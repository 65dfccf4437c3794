"""sd-webui-animatediff payloads under our key: every documented field, its closed-loop rules, and
what is refused (plain Python; the answer layout is checked end to end in tests/e2e)."""

import pytest

from lib_animate.errors import InvalidInputError
from lib_animate.webui.api.args import parse_args
from lib_animate.webui.api.compat_animatediff import AnimateDiffCompat, looks_like_animatediff_payload, translate
from lib_animate.webui.api.infotext import KEY, encode, pasted_fields
from lib_animate.webui.jobs.outputs import pingpong

# The payload of their docs (docs/how-to-use.md, API section), every field at its documented value.
DOCUMENTED = {
    "model": "mm_sd15_v3.safetensors", "enable": True, "format": ["GIF", "PNG"], "video_length": 16, "fps": 8,
    "loop_number": 0, "closed_loop": "R-P", "batch_size": 16, "stride": 1, "overlap": -1, "interp": "Off",
    "interp_x": 10, "video_source": None, "video_path": "", "mask_path": "", "freeinit_enable": False,
    "freeinit_filter": "butterworth", "freeinit_ds": 0.25, "freeinit_dt": 0.25, "freeinit_iters": 3,
    "latent_power": 1, "latent_scale": 32, "last_frame": None, "latent_power_last": 1, "latent_scale_last": 32,
    "request_id": "",
}


def parsed(values):
    ours, compat = translate(values)
    return compat.resolve(parse_args(ours), parse_args(ours).frames), compat


def test_the_documented_payload_translates_field_by_field():
    assert looks_like_animatediff_payload(DOCUMENTED)
    ours, compat = translate(DOCUMENTED)
    assert ours == {"motion_module": "mm_sd15_v3.safetensors", "enable": True, "fps": 8, "loop": 0, "context_stride": 1,
                    "latent_power": 1, "latent_scale": 32, "latent_power_last": 1, "latent_scale_last": 32,
                    "context_length": 16, "frames": 16, "context_overlap": 4, "closed_loop": True, "formats": ["GIF", "PNG"]}
    assert compat == AnimateDiffCompat(closed_loop_mode="R-P", frames_in_answer=False, write_txt=False, request_id="")


def test_formats_follow_their_order_and_frame_and_txt_become_rules():
    ours, compat = translate({"model": "m", "format": ["webm", "Frame", "TXT", "WEBP", "MP4", "GIF"]})
    assert ours["formats"] == ["GIF", "MP4", "WEBP", "WEBM"]  # their answer lists videos in this order
    assert compat.frames_in_answer is True and compat.write_txt is True
    ours, compat = translate({"model": "m"})  # their default save formats
    assert ours["formats"] == ["GIF", "PNG"] and compat.frames_in_answer is False
    with pytest.raises(InvalidInputError, match="at least one of GIF, MP4, WEBP, WEBM, PNG"):
        translate({"model": "m", "format": ["Frame", "TXT"]})
    with pytest.raises(InvalidInputError, match=r"unknown format\(s\) \['AVI'\]"):
        translate({"model": "m", "format": ["GIF", "AVI"]})


# (closed_loop, video_length, batch_size) -> (windows wrap, prompt travel wraps, pingpong): their rules
# (scripts/animatediff_infv2v.py uniform() and prompt_closed_loop, animatediff_output.py _add_reverse).
@pytest.mark.parametrize("mode, length, context, expected", [
    ("N", 24, 16, (False, False, False)),
    ("N", 16, 16, (False, False, False)),
    ("R-P", 24, 16, (True, False, False)),
    ("R-P", 16, 16, (True, False, False)),
    ("R+P", 24, 16, (True, True, False)),
    ("R+P", 16, 16, (True, False, False)),  # one window: no closed loop at all
    ("A", 24, 16, (True, True, False)),
    ("A", 16, 16, (True, False, True)),  # one window: the reversed frames are appended instead
    ("A", 0, 12, (True, False, True)),  # video_length 0 = batch_size frames: one window
])
def test_closed_loop_modes_follow_their_rules(mode, length, context, expected):
    args, _ = parsed({"model": "m", "closed_loop": mode, "video_length": length, "batch_size": context})
    assert (args.closed_loop, args.prompt_travel_loop, args.pingpong) == expected
    assert args.frames == (length or context) and args.context_length == context


def test_with_a_video_and_video_length_0_the_rules_wait_for_the_frame_count():
    ours, compat = translate({"model": "m", "closed_loop": "A", "video_length": 0, "batch_size": 16, "video_path": "/frames"})
    assert "frames" not in ours and ours["control_frames_dir"] == "/frames"  # all of the source's frames
    args = parse_args(ours)
    many = compat.resolve(args, 40)
    assert (many.prompt_travel_loop, many.pingpong) == (True, False)
    args.frames = 10  # the job sets the source's frame count
    few = compat.resolve(args, args.frames)
    assert (few.prompt_travel_loop, few.pingpong) == (False, True)


def test_video_length_below_batch_size_is_refused_with_what_to_send():
    with pytest.raises(InvalidInputError, match=r"'video_length' 8 < 'batch_size' 16.*send 'batch_size': 8"):
        translate({"model": "m", "video_length": 8, "batch_size": 16})
    assert translate({"model": "m", "video_length": 8, "batch_size": 8})[0]["frames"] == 8


@pytest.mark.parametrize("field, value, instead", [
    ("interp", "FILM", "send 'interp': 'Off'"),
    ("interp_x", 4, "send 10 or leave it out"),
    ("is_i2i_batch", True, "leave it out"),
    ("video_default", True, "leave it out"),
    ("prompt_scheduler", "x", "leave it out"),
])
def test_fields_without_an_equivalent_are_refused_unless_at_their_default(field, value, instead):
    with pytest.raises(InvalidInputError, match=f"'{field}' = .* is not supported here: .*{instead}"):
        translate(dict(DOCUMENTED, **{field: value}))
    translate(dict(DOCUMENTED))  # the documented defaults pass


def test_freeinit_fields_map_to_ours():
    ours, _ = translate(dict(DOCUMENTED, freeinit_enable=True, freeinit_iters=4, freeinit_filter="box", freeinit_ds=0.5, freeinit_dt=0.125))
    args = parse_args(ours)
    assert (args.freeinit_iterations, args.freeinit_filter, args.freeinit_spatial, args.freeinit_temporal) == (3, "box", 0.5, 0.125)
    assert "freeinit_iterations" not in translate(dict(DOCUMENTED, freeinit_iters=5))[0]  # not enabled: off
    with pytest.raises(InvalidInputError, match="'freeinit_iters' must be a whole number of passes from 2 to 9"):
        translate(dict(DOCUMENTED, freeinit_enable=True, freeinit_iters=1))


def test_latent_last_fields_map_to_ours():
    ours, _ = translate(dict(DOCUMENTED, latent_power_last=2, latent_scale_last=8))
    args = parse_args(ours)
    assert (args.latent_power_last, args.latent_scale_last) == (2.0, 8.0)


def test_the_retired_reverse_field_is_explained():
    with pytest.raises(InvalidInputError, match="'reverse' was merged into 'closed_loop' in sd-webui-animatediff v1.9.4"):
        translate({"model": "m", "reverse": [0]})
    assert looks_like_animatediff_payload({"enable": True, "reverse": [0]})


def test_request_id_is_a_file_name_suffix_and_cannot_escape_the_folder():
    assert translate({"model": "m", "request_id": "job-42_a.b"})[1].request_id == "job-42_a.b"
    for bad in ("../x", "a/b", "a\\b", "x" * 65, 5):
        with pytest.raises(InvalidInputError, match="'request_id' must be up to 64 letters"):
            translate({"model": "m", "request_id": bad})


def test_our_own_payloads_are_never_taken_for_theirs():
    ours = {"enable": True, "closed_loop": True, "fps": 8, "latent_power_last": 2, "latent_scale_last": 8,
            "latent_power": 1, "latent_scale": 32, "last_frame": None, "frames": 8}
    assert not looks_like_animatediff_payload(ours)
    assert looks_like_animatediff_payload({"enable": True, "closed_loop": "A", "video_length": 8})


def test_a_mix_of_their_fields_and_ours_is_refused():
    with pytest.raises(InvalidInputError, match="use either their fields or ours"):
        translate({"model": "m", "frames": 16})
    with pytest.raises(InvalidInputError, match="'closed_loop' must be one of 'N', 'R-P', 'R\\+P', 'A'"):
        translate({"model": "m", "closed_loop": "Z"})


def test_video_fields_map_to_the_control_inputs():
    ours, _ = translate({"model": "x", "video_source": "/videos/dance.mp4", "video_path": "", "mask_path": "/masks"})
    assert ours["control_video_path"] == "/videos/dance.mp4" and ours["control_masks_dir"] == "/masks"
    assert "control_frames_dir" not in ours and "frames" not in ours
    assert translate({"model": "x", "video_path": "/frames"})[0]["control_frames_dir"] == "/frames"


def test_pingpong_appends_the_reversed_frames_without_both_ends():
    assert pingpong([0, 1, 2, 3]) == [0, 1, 2, 3, 2, 1]
    assert pingpong([0, 1]) == [0, 1] and pingpong([0, 1, 2]) == [0, 1, 2, 1]


def test_the_resolved_rules_round_trip_through_the_infotext():
    args, _ = parsed({"model": "m", "closed_loop": "R-P", "video_length": 24, "batch_size": 16})
    restored = pasted_fields({KEY: encode(args)})
    assert restored["closed_loop"] is True and restored["prompt_travel_loop"] is False and restored["pingpong"] is False
    assert "prompt_travel_loop" not in pasted_fields({KEY: encode(parse_args({"enable": True}))})
