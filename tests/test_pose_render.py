"""The DWPose-style renderer: colours, sizes, toggles, coordinate conventions, fitting."""

import json

import numpy as np
import pytest

from lib_animate.errors import InvalidInputError
from lib_animate.pose import Person, PoseFrame, RenderOptions, parse_pose_json, render_pose

# Written out here (OpenPose's published tables) rather than imported, so a typo in the package's
# tables fails these tests.
COLOURS = [
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
]
LIMBS_1_BASED = [
    (2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11),
    (2, 12), (12, 13), (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18),
]
W, H = 200, 100


def person_with(points: dict, **parts) -> Person:
    """A person whose body has only ``points`` {joint: (x, y) normalized} visible."""
    body = np.zeros((18, 3))
    for j, (x, y) in points.items():
        body[j] = (x, y, 1.0)
    return Person(body=body, **parts)


def pose(*people, canvas=(W, H)) -> PoseFrame:
    return PoseFrame(people=people, canvas_size=canvas)


def rgb(image, x, y):
    return tuple(int(v) for v in image[y, x])


def test_output_is_black_uint8_rgb_of_the_asked_size():
    image = render_pose(pose(), W, H)
    assert image.shape == (H, W, 3) and image.dtype == np.uint8 and not image.any()


@pytest.mark.parametrize("limb", range(17))
def test_each_limb_at_its_midpoint_has_its_colour_at_0_6_and_joints_full_colour(limb):
    a, b = LIMBS_1_BASED[limb][0] - 1, LIMBS_1_BASED[limb][1] - 1
    image = render_pose(pose(person_with({a: (0.2, 0.5), b: (0.8, 0.5)})), W, H)
    expected = tuple(int(c * 0.6) for c in COLOURS[limb])
    assert rgb(image, 100, 50) == expected
    # the limb is an ellipse of half-width 4: 3 px off the axis still coloured, 6 px off not
    assert rgb(image, 100, 53) == expected and rgb(image, 100, 56) == (0, 0, 0)
    assert rgb(image, 40, 50) == COLOURS[a] and rgb(image, 160, 50) == COLOURS[b]
    assert rgb(image, 44, 50) == COLOURS[a] and rgb(image, 40, 46) == COLOURS[a]  # radius 4
    assert rgb(image, 46, 50) == expected  # just outside the dot: the limb


def test_a_hidden_joint_hides_its_limbs_and_feet_are_never_drawn():
    body = person_with({2: (0.2, 0.5), 3: (0.8, 0.5)}).body
    body[3, 2] = 0
    image = render_pose(pose(Person(body=body)), W, H)
    assert image.sum() == render_pose(pose(person_with({2: (0.2, 0.5)})), W, H).sum()
    assert rgb(image, 100, 50) == (0, 0, 0)
    # BODY_25 feet (19..24) are dropped when read, so a foot-only pose draws nothing
    b25 = [0.0] * 75
    for k in range(19, 25):
        b25[3 * k : 3 * k + 3] = [0.5, 0.5, 1.0]
    assert not render_pose(parse_pose_json({"people": [{"pose_keypoints_2d": b25}]})[0], W, H).any()


def hand(points: dict):
    out = np.zeros((21, 3))
    for j, (x, y) in points.items():
        out[j] = (x, y, 1.0)
    return out


def test_hands_are_rainbow_lines_with_blue_dots_and_can_be_turned_off():
    # edge 0 (wrist-thumb) is red, edge 4 (wrist-index base) has hue 4/20 -> (204, 255, 0)
    left = hand({0: (0.2, 0.5), 1: (0.8, 0.5)})
    right = hand({0: (0.2, 0.2), 5: (0.8, 0.2)})
    frame = pose(person_with({}, left_hand=left, right_hand=right))
    image = render_pose(frame, W, H)
    assert rgb(image, 100, 50) == (255, 0, 0) and rgb(image, 100, 51) == (255, 0, 0)
    assert rgb(image, 100, 20) == (204, 255, 0)
    assert rgb(image, 40, 50) == (0, 0, 255) and rgb(image, 160, 20) == (0, 0, 255)
    assert rgb(image, 43, 52) == (0, 0, 255)  # dot radius 4
    assert rgb(image, 100, 53) == (0, 0, 0)  # 2 px line
    assert not render_pose(frame, W, H, options=RenderOptions(hands=False)).any()


def test_face_dots_are_white_and_toggle_and_openpose_pupils_are_not_drawn():
    face = np.zeros((70, 3))
    face[10] = (0.5, 0.5, 1.0)
    face[68] = (0.25, 0.25, 1.0)  # OpenPose's pupils (68, 69) were never in the training renders
    frame = pose(person_with({}, face=face))
    image = render_pose(frame, W, H)
    assert rgb(image, 100, 50) == (255, 255, 255) and rgb(image, 102, 52) == (255, 255, 255)
    assert rgb(image, 100, 54) == (0, 0, 0)  # radius 3
    assert rgb(image, 50, 25) == (0, 0, 0)
    assert not render_pose(frame, W, H, options=RenderOptions(face=False)).any()


def test_only_the_top_person_unless_all_people():
    weak = person_with({2: (0.2, 0.2), 3: (0.8, 0.2)})
    strong = person_with({2: (0.2, 0.8), 3: (0.8, 0.8), 5: (0.5, 0.5)})
    frame = pose(weak, strong)
    one = render_pose(frame, W, H)
    assert rgb(one, 100, 80) != (0, 0, 0) and rgb(one, 100, 20) == (0, 0, 0)
    both = render_pose(frame, W, H, options=RenderOptions(all_people=True))
    assert rgb(both, 100, 80) != (0, 0, 0) and rgb(both, 100, 20) != (0, 0, 0)


def random_openpose_json(rng, width, height, normalized):
    def part(n):
        pts = np.concatenate([rng.uniform(0.05, 0.95, (n, 2)), (rng.uniform(size=(n, 1)) > 0.2)], axis=1)
        pts[pts[:, 2] == 0] = 0
        if not normalized:
            pts[:, :2] *= (width, height)
        return [float(v) for v in pts.ravel()]

    person = {
        "pose_keypoints_2d": part(18), "hand_left_keypoints_2d": part(21),
        "hand_right_keypoints_2d": part(21), "face_keypoints_2d": part(68),
    }
    return {"people": [person], "canvas_width": width, "canvas_height": height}


def test_normalized_and_pixel_coordinates_give_identical_images():
    rng = np.random.default_rng(0)
    for _ in range(10):
        pixel = random_openpose_json(rng, 512, 768, normalized=False)
        normalized = json.loads(json.dumps(pixel))
        for key, values in normalized["people"][0].items():
            normalized["people"][0][key] = [
                v / (512 if i % 3 == 0 else 768) if i % 3 < 2 else v for i, v in enumerate(values)
            ]
        a = render_pose(parse_pose_json(pixel)[0], 512, 768)
        b = render_pose(parse_pose_json(normalized)[0], 512, 768)
        assert a.any() and np.array_equal(a, b)


def test_pixel_coordinates_land_on_the_same_pixel_at_canvas_size():
    data = {"people": [{"pose_keypoints_2d": [0.0] * 3 * 12 + [37, 61, 1.0] + [0.0] * 15}],
            "canvas_width": 120, "canvas_height": 90}
    image = render_pose(parse_pose_json(data)[0], 120, 90)
    ys, xs = np.nonzero(image.any(axis=2))
    assert (xs.min() + xs.max()) / 2 == 37 and (ys.min() + ys.max()) / 2 == 61
    assert rgb(image, 37, 61) == COLOURS[12]


def test_letterbox_keeps_aspect_and_centres_resize_squashes():
    # canvas 200 x 100 drawn on 100 x 100: letterbox scales by 0.5 into rows 25..74
    frame = pose(person_with({2: (0.0, 0.2), 3: (1.0, 0.2), 5: (0.25, 1.0)}), canvas=(200, 100))
    boxed = render_pose(frame, 100, 100, fit="letterbox")
    squashed = render_pose(frame, 100, 100, fit="resize")
    assert rgb(boxed, 25, 74) == COLOURS[5] and rgb(squashed, 25, 99) == COLOURS[5]
    assert rgb(boxed, 50, 35) == tuple(int(c * 0.6) for c in COLOURS[2])  # limb at y = 25 + 0.2 * 50
    assert rgb(squashed, 50, 20) == tuple(int(c * 0.6) for c in COLOURS[2])
    rows = np.nonzero(boxed.any(axis=(1, 2)))[0]
    # y = 1.0 is the box's far edge (25 + 50 = 75); only dot radii reach past it
    assert rows.min() >= 25 and rows.max() == 75 + 4
    # a taller canvas is pillarboxed: 100 x 200 on 100 x 100 -> columns 25..74
    tall = pose(person_with({0: (0.0, 0.5)}), canvas=(100, 200))
    assert rgb(render_pose(tall, 100, 100, fit="letterbox"), 25, 50) == COLOURS[0]
    # unknown canvas: both modes fill the output
    free = pose(person_with({0: (0.0, 0.5)}), canvas=None)
    assert np.array_equal(render_pose(free, 100, 100, fit="letterbox"), render_pose(free, 100, 100))


def test_points_far_off_canvas_do_not_break_drawing():
    frame = pose(person_with({2: (-1e9, 0.5), 3: (0.5, 0.5), 4: (1e12, 1e12)}))
    image = render_pose(frame, W, H)
    assert image.shape == (H, W, 3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(width=0, height=10), "width must be a positive whole number"),
        (dict(width=10, height=10.5), "height must be a positive whole number"),
        (dict(width=10, height=10, fit="crop"), "fit mode must be one of"),
    ],
)
def test_bad_render_arguments(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        render_pose(pose(), **kwargs)
