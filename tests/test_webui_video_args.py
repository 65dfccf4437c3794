"""The video-input fields (control sources, init video) at the edge, the accordion's upload, and prompt
travel keeping ControlNet's cond/uncond marker."""

import pytest
import torch

from lib_animate.errors import InvalidInputError
from lib_animate.sampling.prompt_travel import interpolation_plan, travel_conds
from lib_animate.webui.api.args import control_inputs_given, parse_args
from lib_animate.webui.api.infotext import encode
from lib_animate.webui.ui.accordion import ui_fields, values_to_dict


@pytest.mark.parametrize("values, message", [
    ({"control_video": "AAAA", "control_frames": ["AAAA"]}, "several control sources at once \\(control_video, control_frames\\)"),
    ({"control_frames_dir": "/a", "control_pose_json": {"people": []}}, "several control sources"),
    ({"control_stride": 0}, "'control_stride' must be at least 1"),
    ({"control_maps": "yes"}, "'control_maps' must be true or false"),
    ({"control_video": 12}, "'control_video' must be a base64 string"),
    ({"control_frames": "AAAA"}, "'control_frames' must be a list"),
    ({"mode": "animate_anyone", "control_frames": ["AAAA"]}, "belong to the AnimateDiff mode"),
    ({"mode": "animate_anyone", "init_video": "AAAA"}, "belong to the AnimateDiff mode"),
    ({"init_video": "AAAA", "last_frame": "AAAA"}, "cannot be combined with the first/last-frame pinning \\('last_frame'\\)"),
    ({"init_video": "AAAA", "latent_power": 2.0, "init_strength": 0.5}, "'init_strength', 'latent_power'"),
])
def test_bad_video_inputs_are_refused_at_the_edge(values, message):
    with pytest.raises(InvalidInputError, match=message):
        parse_args(dict({"enable": True}, **values))


def test_video_inputs_parse_and_only_settings_reach_the_infotext():
    args = parse_args({"enable": True, "control_video": "AAAA", "control_stride": 2, "control_maps": True,
                       "control_masks_dir": "/masks", "init_video": "BBBB", "latent_power": 1, "init_strength": 1.0})
    assert control_inputs_given(args) == ("control_video",) and args.control_stride == 2
    text = encode(args)
    assert "control_stride=2" in text and "control_maps=true" in text
    assert "AAAA" not in text and "BBBB" not in text and "/masks" not in text
    assert "control_stride" not in encode(parse_args({"enable": True, "mode": "animate_anyone"}))


def test_the_accordions_control_upload_is_a_video_or_frames(tmp_path):
    names = ui_fields(is_img2img=False)
    base = {name: None for name in names}
    base.update(enable=True, mode="animatediff", frames=0, fps=8, loop=0, formats=["GIF"], context_length=0,
                context_overlap=4, closed_loop=False, context_stride=1, fusion="pyramid", noise_schedule="motion_module",
                prompt_interpolation="slerp", control_stride=1.0, control_maps=False, pose_source="auto", pose_stride=1,
                pose_fps=0, pose_max_frames=0, fit="resize", draw_face=True, draw_hands=True, sampler="animate_anyone_ddim")
    video = tmp_path / "dance.mp4"
    video.write_bytes(b"video bytes")
    one = values_to_dict([dict(base, control_upload=[str(video)])[n] for n in names], is_img2img=False)
    assert one["control_video"] == b"video bytes" and "frames" not in one  # 0: as many as the video
    frames = []
    for name in ("f10.png", "f2.png", "f1.png"):
        (tmp_path / name).write_bytes(name.encode())
        frames.append(type("Upload", (), {"name": str(tmp_path / name)})())  # gradio's temp-file objects
    several = values_to_dict([dict(base, control_upload=frames, frames=8.0)[n] for n in names], is_img2img=False)
    assert several["control_frames"] == [b"f1.png", b"f2.png", b"f10.png"] and several["frames"] == 8
    assert "control_video" not in values_to_dict([base[n] for n in names], is_img2img=False)


def test_prompt_travel_keeps_controlnets_cond_marker_row():
    """ControlNet marks cond/uncond by a first token row of +-1024 (its hook.py); per-token slerp between
    two marked keyframes keeps that row exactly (equal vectors interpolate to themselves)."""
    g = torch.Generator().manual_seed(0)
    mark = torch.full((1, 64), 1024.0)
    keyframes = [torch.cat([mark, torch.randn(77, 64, generator=g)]) for _ in range(3)]
    for method in ("slerp", "lerp"):
        per_frame = travel_conds(keyframes, interpolation_plan([0, 5, 11], 16), method)
        marker = per_frame[:, 0, :]
        assert torch.allclose(marker, mark.expand_as(marker), rtol=0, atol=1e-3)  # ControlNet's MARK_EPS
