"""OpenPose / ControlNet pose JSON: every accepted shape, and a precise error for every bad one."""

import json

import numpy as np
import pytest

from lib_animate.errors import InvalidInputError
from lib_animate.pose import DEFAULT_CONFIDENCE_THRESHOLD, parse_pose_json


def body54(points=None, conf=1.0):
    """18 COCO points; point k at (10 + k, 20 + 2k) unless given."""
    points = points or [(10 + k, 20 + 2 * k) for k in range(18)]
    return [v for x, y in points for v in (x, y, conf)]


def frame(people, width=512, height=768):
    out = {"people": people}
    if width is not None:
        out["canvas_width"], out["canvas_height"] = width, height
    return out


def test_single_frame_in_pixels_is_normalized_by_its_canvas():
    (f,) = parse_pose_json(frame([{"pose_keypoints_2d": body54()}], 512, 768))
    assert f.canvas_size == (512, 768)
    body = f.people[0].body
    assert body.shape == (18, 3)
    np.testing.assert_allclose(body[3], [13 / 512, 26 / 768, 1.0])


def test_list_wrapper_text_and_bytes_give_the_same_frames():
    frames = [frame([{"pose_keypoints_2d": body54()}]), frame([])]
    for data in (frames, {"poses": frames}, json.dumps({"poses": frames}), json.dumps(frames).encode()):
        parsed = parse_pose_json(data)
        assert len(parsed) == 2
        assert len(parsed[0].people) == 1 and len(parsed[1].people) == 0
        np.testing.assert_allclose(parsed[0].people[0].body[0], [10 / 512, 20 / 768, 1.0])


def test_body25_is_mapped_to_coco18():
    # BODY_25: 0 nose, 1 neck, 2-7 arms, 8 mid-hip, 9-14 legs, 15-18 eyes/ears, 19-24 feet.
    b25 = [v for k in range(25) for v in (100 + k, 200 + k, 1.0)]
    (f,) = parse_pose_json(frame([{"pose_keypoints_2d": b25}], 1000, 1000))
    xs = np.round(f.people[0].body[:, 0] * 1000).astype(int) - 100
    assert list(xs) == [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]


def test_hands_and_faces_of_68_and_70_points():
    hand = [v for k in range(21) for v in (0.5, 0.01 * k, 1.0)]
    person = {
        "pose_keypoints_2d": body54([(0.5, 0.5)] * 18),
        "hand_left_keypoints_2d": hand,
        "hand_right_keypoints_2d": hand,
        "face_keypoints_2d": [0.3, 0.3, 1.0] * 70,
    }
    (f,) = parse_pose_json(frame([person]))
    p = f.people[0]
    assert p.left_hand.shape == p.right_hand.shape == (21, 3)
    assert p.face.shape == (70, 3)
    person["face_keypoints_2d"] = [0.3, 0.3, 1.0] * 68
    assert parse_pose_json(frame([person]))[0].people[0].face.shape == (68, 3)


@pytest.mark.parametrize("empty", [None, [], "absent"])
def test_absent_parts(empty):
    person = {"pose_keypoints_2d": body54()}
    if empty != "absent":
        person.update(hand_left_keypoints_2d=empty, hand_right_keypoints_2d=empty, face_keypoints_2d=empty)
    p = parse_pose_json(frame([person]))[0].people[0]
    assert p.left_hand is None and p.right_hand is None and p.face is None
    body_missing = parse_pose_json(frame([{"hand_left_keypoints_2d": [0.5, 0.5, 1.0] * 21}]))[0].people[0]
    assert not body_missing.body.any() and body_missing.left_hand is not None


def test_normalized_input_is_kept_and_needs_no_canvas():
    pts = [(0.25, 0.5)] * 18
    (with_canvas,) = parse_pose_json(frame([{"pose_keypoints_2d": body54(pts)}], 640, 480))
    (without,) = parse_pose_json(frame([{"pose_keypoints_2d": body54(pts)}], None))
    assert with_canvas.canvas_size == (640, 480) and without.canvas_size is None
    np.testing.assert_allclose(with_canvas.people[0].body[:, :2], 0.25 * np.array([[1, 2]] * 18))
    np.testing.assert_allclose(without.people[0].body, with_canvas.people[0].body)


def test_pixels_without_canvas_use_the_given_size_or_fail():
    data = frame([{"pose_keypoints_2d": body54()}], None)
    with pytest.raises(InvalidInputError, match=r"frame 0: the coordinates are in pixels .*canvas_width"):
        parse_pose_json(data)
    (f,) = parse_pose_json(data, canvas_size=(100, 200))
    assert f.canvas_size == (100, 200)
    np.testing.assert_allclose(f.people[0].body[0, :2], [0.1, 0.1])


def test_missing_points_and_confidence_threshold():
    assert DEFAULT_CONFIDENCE_THRESHOLD == 0.05
    pts = body54()
    pts[2], pts[5], pts[8] = 0.04, 0.06, 0.5  # confidences of points 0, 1, 2
    pts[9:12] = [0, 0, 0]  # point 3 missing
    body = parse_pose_json(frame([{"pose_keypoints_2d": pts}]))[0].people[0].body
    assert list(body[:4, 2]) == [0.0, 0.06, 0.5, 0.0]
    assert not body[0].any()  # hidden points are zeroed entirely
    strict = parse_pose_json(frame([{"pose_keypoints_2d": pts}]), threshold=0.3)[0].people[0].body
    assert list(strict[:4, 2]) == [0.0, 0.0, 0.5, 0.0]


def test_hidden_hand_becomes_absent():
    person = {"pose_keypoints_2d": body54(), "hand_left_keypoints_2d": [5, 5, 0.01] * 21}
    assert parse_pose_json(frame([person]))[0].people[0].left_hand is None


def test_top_person_has_highest_mean_body_confidence():
    low, high = body54(conf=0.4), body54(conf=0.9)
    f = parse_pose_json(frame([{"pose_keypoints_2d": low}, {"pose_keypoints_2d": high}]))[0]
    assert f.top_person() is f.people[1]
    assert parse_pose_json(frame([]))[0].top_person() is None


def test_animals_and_unknown_keys_are_ignored():
    data = frame([{"pose_keypoints_2d": body54(), "person_id": [-1], "pose_keypoints_3d": []}])
    data["animals"], data["version"] = [[1, 2, 3]], 1.3
    assert len(parse_pose_json(data)[0].people) == 1


GOOD = {"pose_keypoints_2d": body54()}


@pytest.mark.parametrize(
    "data, message",
    [
        ("{not json", r"not valid JSON"),
        (42, r"expected a frame object with 'people', a list of frames or \{\"poses\": \[\.\.\.\]\}, "
             r"got int"),
        ("\"text\"", r"got a string"),
        ([], r"the sequence has no frames"),
        ({"poses": []}, r"the sequence has no frames"),
        ({"poses": {"people": []}}, r"'poses': expected a list of frames, got an object"),
        ([frame([GOOD]), [1, 2]], r"frame 1: expected an object with 'people', got a list"),
        ({"canvas_width": 5, "canvas_height": 5}, r"frame 0: missing 'people'"),
        ({"people": {"a": 1}}, r"frame 0 'people': expected a list of persons, got an object"),
        (frame([GOOD, 7]), r"frame 0, person 1: expected an object with keypoint lists, got int"),
        (
            [frame([GOOD]), frame([GOOD]), frame([{"pose_keypoints_2d": [1.0] * 51}])],
            r"frame 2, person 0, 'pose_keypoints_2d': expected 54 numbers \(18 COCO points as x, y, "
            r"confidence\) or 75 \(BODY_25\), got 51 numbers",
        ),
        (
            frame([{"pose_keypoints_2d": body54(), "hand_right_keypoints_2d": [1.0] * 60}]),
            r"frame 0, person 0, 'hand_right_keypoints_2d': expected 63 numbers \(21 points .*got 60",
        ),
        (
            frame([{"face_keypoints_2d": [0.5] * 207}]),
            r"'face_keypoints_2d': expected 204 numbers \(68 points as x, y, confidence\) or 210 "
            r"\(70 points\), got 207",
        ),
        (
            frame([{"pose_keypoints_2d": body54()[:10] + ["3"] + body54()[11:]}]),
            r"frame 0, person 0, 'pose_keypoints_2d'\[10\]: expected a finite number, got '3'",
        ),
        (frame([{"pose_keypoints_2d": [True] + body54()[1:]}]), r"'pose_keypoints_2d'\[0\]: .*got True"),
        (frame([{"pose_keypoints_2d": [None] + body54()[1:]}]), r"'pose_keypoints_2d'\[0\]: .*got None"),
        (frame([{"pose_keypoints_2d": [float("nan")] + body54()[1:]}]), r"\[0\]: .*got nan"),
        (
            frame([{"pose_keypoints_2d": [[1, 2, 3]] * 18}]),
            r"'pose_keypoints_2d'\[0\]: expected a finite number, got \[1, 2, 3\]",
        ),
        (
            frame([{"pose_keypoints_2d": {"x": 1}}]),
            r"'pose_keypoints_2d': expected a flat list of 54 numbers .* got an object",
        ),
        ({"people": [], "canvas_width": 512}, r"frame 0: give both canvas_width and canvas_height"),
        (frame([], 512, 0), r"frame 0 'canvas_height': expected a positive whole number of pixels, got 0"),
        (frame([], 512.5, 10), r"'canvas_width': expected a positive whole number of pixels, got 512.5"),
        (frame([], "512", 10), r"'canvas_width': .*got '512'"),
    ],
)
def test_malformed_input_names_the_place_and_the_expected_shape(data, message):
    with pytest.raises(InvalidInputError, match=message):
        parse_pose_json(data)


@pytest.mark.parametrize("threshold", [-0.1, 1.5, "0.3", None])
def test_bad_threshold(threshold):
    with pytest.raises(InvalidInputError, match="confidence threshold"):
        parse_pose_json(frame([GOOD]), threshold=threshold)


@pytest.mark.parametrize("size", [(0, 10), (10,), "512x512", (10.5, 10)])
def test_bad_canvas_size_argument(size):
    with pytest.raises(InvalidInputError, match="canvas"):
        parse_pose_json(frame([GOOD]), canvas_size=size)


def test_canvas_given_as_integral_floats_is_accepted():
    (f,) = parse_pose_json(frame([GOOD], 512.0, 768.0))
    assert f.canvas_size == (512, 768) and isinstance(f.canvas_size[0], int)
