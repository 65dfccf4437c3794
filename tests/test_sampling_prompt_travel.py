import math

import pytest
import torch

from lib_animate.errors import InvalidInputError
from lib_animate.sampling.prompt_travel import (
    PromptTravel,
    TravelPrompt,
    interpolation_plan,
    is_travel_prompt,
    join_prompt,
    lerp,
    parse_travel_prompt,
    slerp,
    travel_conds,
)

TEXT = """masterpiece, best quality,
  <lora:style:0.7>

0: a girl, smiling
8 : a girl, (crying:1.2)
15:a girl, asleep
watercolor
"""


def test_parse_head_keyframes_tail():
    travel = parse_travel_prompt(TEXT, 16)
    assert travel == TravelPrompt(
        head="masterpiece, best quality, <lora:style:0.7>",
        keyframes=((0, "a girl, smiling"), (8, "a girl, (crying:1.2)"), (15, "a girl, asleep")),
        tail="watercolor",
    )
    assert travel.indices == [0, 8, 15]
    assert travel.prompts() == [
        "masterpiece, best quality, <lora:style:0.7>, a girl, smiling, watercolor",
        "masterpiece, best quality, <lora:style:0.7>, a girl, (crying:1.2), watercolor",
        "masterpiece, best quality, <lora:style:0.7>, a girl, asleep, watercolor",
    ]


def test_parse_without_head_or_tail():
    travel = parse_travel_prompt("4: cat\n10: dog", 16)
    assert travel.head == "" and travel.tail == ""
    assert travel.prompts() == ["cat", "dog"]


def test_join_prompt_drops_empty_parts_and_stray_commas():
    assert join_prompt(" a, ", "", ", b", "  ") == "a, b"


@pytest.mark.parametrize("text,match", [
    ("0: a\n16: b", "beyond the last frame"),
    ("0: a\n8: b\n4: c", "ascend"),
    ("0: a\n8: b\n8: c", "twice"),
    ("0: a\nshared\n8: b", "after shared text"),
    ("just a prompt", "no keyframe"),
])
def test_parse_errors(text, match):
    with pytest.raises(InvalidInputError, match=match):
        parse_travel_prompt(text, 16)


@pytest.mark.parametrize("text,expected", [
    (TEXT, True),
    ("0: a", True),
    ("a photo of a cat, (detailed:1.2), 1girl: smiling", False),
    ("a photo\nof a cat", False),
    ("", False),
    (None, False),
])
def test_is_travel_prompt(text, expected):
    assert is_travel_prompt(text) is expected


def test_plan_open():
    plan = interpolation_plan([4, 8, 12], 16)
    assert plan[:5] == [(0, 0, 0.0)] * 4 + [(0, 1, 0.0)]
    assert plan[6] == (0, 1, 0.5)
    assert plan[8] == (1, 2, 0.0)
    assert plan[11] == (1, 2, 0.75)
    assert plan[12:] == [(2, 2, 0.0)] * 4


def test_plan_closed_loop_wraps_from_last_keyframe_to_first():
    plan = interpolation_plan([4, 12], 16, closed_loop=True)
    # the segment 12 -> 16 + 4 is 8 frames long
    assert plan[12] == (1, 0, 0.0)
    assert plan[14] == (1, 0, 0.25)
    assert plan[0] == (1, 0, 0.5)
    assert plan[3] == (1, 0, 0.875)
    assert plan[4] == (0, 1, 0.0)
    assert plan[8] == (0, 1, 0.5)


def test_plan_single_keyframe_and_validation():
    assert interpolation_plan([3], 5, closed_loop=True) == [(0, 0, 0.0)] * 5
    assert interpolation_plan([0], 3) == [(0, 0, 0.0)] * 3
    for bad in ([], [3, 3], [2, 1], [0, 5]):
        with pytest.raises(ValueError):
            interpolation_plan(bad, 5)


def test_plan_t_in_unit_interval_and_monotone():
    plan = interpolation_plan([0, 5, 9, 30], 40, closed_loop=True)
    assert all(0 <= t < 1 for _, _, t in plan)
    for (a0, b0, t0), (a1, b1, t1) in zip(plan, plan[1:]):
        assert (a0, b0) != (a1, b1) or t1 > t0


def randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
@pytest.mark.parametrize("interp", [slerp, lerp])
def test_endpoints_are_exact(dtype, interp):
    a, b = randn(77, 768, seed=1, dtype=dtype), randn(77, 768, seed=2, dtype=dtype)
    assert torch.equal(interp(a, b, 0.0), a)
    assert torch.equal(interp(a, b, 1.0), b)
    assert interp(a, b, 0.3).dtype == dtype


def test_slerp_keeps_unit_vectors_on_the_sphere():
    a = torch.nn.functional.normalize(randn(77, 768, seed=3, dtype=torch.float64), dim=-1)
    b = torch.nn.functional.normalize(randn(77, 768, seed=4, dtype=torch.float64), dim=-1)
    for t in (0.1, 0.5, 0.77):
        torch.testing.assert_close(slerp(a, b, t).norm(dim=-1), torch.ones(77, dtype=torch.float64))
    assert (lerp(a, b, 0.5).norm(dim=-1) < 0.9).all()  # what slerp avoids


def test_slerp_of_orthogonal_vectors_follows_the_arc():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    torch.testing.assert_close(slerp(a, b, 0.5), torch.tensor([[1.0, 1.0]]) / math.sqrt(2))
    angle = math.pi / 2 * 0.3
    torch.testing.assert_close(slerp(a, b, 0.3), torch.tensor([[math.cos(angle), math.sin(angle)]]))


def test_slerp_is_per_token():
    a, b = randn(5, 16, seed=5), randn(5, 16, seed=6)
    whole = slerp(a, b, 0.4)
    for k in range(5):
        torch.testing.assert_close(whole[k], slerp(a[k:k + 1], b[k:k + 1], 0.4)[0])


def test_slerp_falls_back_to_lerp_for_parallel_opposite_and_zero_vectors():
    a = randn(4, 8, seed=7, dtype=torch.float64)
    b = torch.stack([2 * a[0], -a[1], torch.zeros(8, dtype=torch.float64), a[3] * 1.5])
    b[3, 0] += 1e-12  # nearly parallel
    a[2] = 0
    out = slerp(a, b, 0.25)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, lerp(a, b, 0.25))
    # a general pair is not lerped
    c, d = randn(1, 8, seed=8), randn(1, 8, seed=9)
    assert not torch.allclose(slerp(c, d, 0.5), lerp(c, d, 0.5))


def test_slerp_shape_mismatch():
    with pytest.raises(ValueError, match="equal shape"):
        slerp(torch.zeros(77, 8), torch.zeros(154, 8), 0.5)


def test_travel_conds():
    conds = [randn(77, 32, seed=s) for s in range(3)]
    plan = interpolation_plan([0, 4, 8], 12, closed_loop=True)
    out = travel_conds(conds, plan)
    assert out.shape == (12, 77, 32)
    for frame, k in ((0, 0), (4, 1), (8, 2)):
        assert torch.equal(out[frame], conds[k])
    torch.testing.assert_close(out[2], slerp(conds[0], conds[1], 0.5))
    torch.testing.assert_close(out[10], slerp(conds[2], conds[0], 0.5))
    torch.testing.assert_close(travel_conds(conds, plan, "lerp")[6], (conds[1] + conds[2]) / 2)
    with pytest.raises(ValueError, match="interpolation"):
        travel_conds(conds, plan, "cubic")


def test_travel_conds_token_count_mismatch_is_a_user_error():
    with pytest.raises(InvalidInputError, match="75-token"):
        travel_conds([torch.zeros(77, 8), torch.zeros(154, 8)], [(0, 1, 0.5)])


def test_prompt_travel_replaces_each_frames_cond_by_its_keyframes_interpolation():
    frames = 8
    travel = PromptTravel([0, 4], frames, closed_loop=False, method="lerp")
    assert travel.frame_keyframes() == [a for a, _, _ in interpolation_plan([0, 4], frames, closed_loop=False)]
    text_cond = torch.randn(frames, 3, 8)
    got = travel.conds(text_cond)
    expected = travel_conds([text_cond[0], text_cond[4]], interpolation_plan([0, 4], frames, closed_loop=False), "lerp")
    assert torch.equal(got, expected.to(text_cond.dtype))
    assert torch.equal(got[0], text_cond[0]) and torch.allclose(got[2], (text_cond[0] + text_cond[4]) / 2, atol=1e-6)
    # closed loop: the frames after the last keyframe travel back to the first
    looped = PromptTravel([0, 4], frames, closed_loop=True, method="lerp").conds(text_cond)
    assert torch.allclose(looped[6], (text_cond[4] + text_cond[0]) / 2, atol=1e-6) and not torch.allclose(got[6], looped[6])
    other = torch.randn(frames * 2, 3, 8)  # not this video's layout (e.g. a hires pass with other prompts)
    assert travel.conds(other) is other


@pytest.mark.parametrize("method", ["slerp", "lerp"])
def test_sdxl_conditioning_travels_per_token_and_only_in_the_pooled_part_of_the_vector(method):
    """SDXL: {"crossattn": [F, tokens, dim], "vector": [F, pooled + size/crop]}. The cross-attention
    travels per token like SD1's; of the vector only the pooled text embedding travels, the size/crop
    embeddings stay exactly as they are (slerp over the whole vector would mix them in)."""
    frames, pooled, sizes = 6, 5, 12
    plan = interpolation_plan([0, 3], frames, closed_loop=False)
    torch.manual_seed(0)
    crossattn = torch.randn(frames, 4, 8)
    size_part = torch.randn(1, sizes).expand(frames, sizes)  # equal in every frame, as the webui makes it
    vector = torch.cat([torch.randn(frames, pooled), size_part], dim=1)
    mask = torch.ones(frames, 1)

    class ShapedDict(dict):  # the webui hands SDXL conds over as its prompt_parser.DictWithShape
        @property
        def shape(self):
            return self["crossattn"].shape

    cond = ShapedDict(crossattn=crossattn, vector=vector, extra=mask)

    got = PromptTravel([0, 3], frames, closed_loop=False, method=method, pooled_width=pooled).conds(cond)

    assert torch.equal(got["crossattn"], travel_conds([crossattn[0], crossattn[3]], plan, method))
    assert torch.equal(got["vector"][:, :pooled], travel_conds([vector[0, :pooled], vector[3, :pooled]], plan, method))
    assert torch.equal(got["vector"][:, pooled:], vector[:, pooled:])
    assert got["extra"] is mask and set(got) == set(cond)
    assert type(got) is ShapedDict and got.shape == crossattn.shape and cond["crossattn"] is crossattn  # a new dict
    assert not torch.allclose(got["vector"][1, :pooled], vector[1, :pooled])  # it did travel
    # what interpolating the whole vector would do to the size/crop part (the reason for the split)
    whole = travel_conds([vector[0], vector[3]], plan, method)
    if method == "slerp":
        assert not torch.allclose(whole[1, pooled:], vector[1, pooled:], atol=1e-4)


def test_sdxl_conditioning_of_another_layout_passes_and_a_missing_pooled_width_is_an_error():
    frames = 4
    travel = PromptTravel([0, 2], frames, closed_loop=False, method="slerp", pooled_width=3)
    other = {"crossattn": torch.randn(frames * 2, 4, 8), "vector": torch.randn(frames * 2, 7)}
    assert travel.conds(other) is other
    cond = {"crossattn": torch.randn(frames, 4, 8), "vector": torch.randn(frames, 7)}
    for width in (None, 0, 8):
        with pytest.raises(InvalidInputError, match="pooled text embedding"):
            PromptTravel([0, 2], frames, closed_loop=False, method="slerp", pooled_width=width).conds(cond)
