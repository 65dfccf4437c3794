"""Pose retargeting on synthetic skeletons: bone lengths from the reference, angles and the driving
video's relative lengths kept, identity for matching bodies, missing joints missing, JSON round trip."""

import math

import numpy as np
import pytest

from lib_animate.errors import InvalidInputError
from lib_animate.pose.keypoints import Person, PoseFrame
from lib_animate.pose.openpose_json import parse_pose_json, to_pose_json
from lib_animate.pose.retarget import BONES, retarget

SIZE = (512, 512)

# A standing person in pixels of a 512 x 512 canvas (COCO-18 order).
DRIVER = np.array([
    [256, 100], [256, 150], [216, 150], [196, 210], [186, 270], [296, 150], [316, 210], [326, 270],
    [231, 270], [226, 360], [221, 450], [281, 270], [286, 360], [291, 450], [246, 90], [266, 90],
    [236, 95], [276, 95],
], dtype=float)


def body_with_proportions(base, factors, root_at=None):
    """``base`` with each bone's vector scaled by ``factors[bone]`` (walked from the neck)."""
    out = np.array(base, dtype=float)
    if root_at is not None:
        out[1] = root_at
    for parent, child in BONES:
        out[child] = out[parent] + factors.get((parent, child), 1.0) * (base[child] - base[parent])
    return out


def rotate_limbs(base, angle, zoom=1.0, shift=(0.0, 0.0)):
    """Each arm and leg bone turned by ``angle`` about its parent, the whole body scaled about the neck
    and moved: a driving frame with other angles and another apparent size."""
    out = np.array(base, dtype=float)
    c, s = math.cos(angle), math.sin(angle)
    turn = np.array([[c, -s], [s, c]])
    for parent, child in BONES:
        vector = base[child] - base[parent]
        if child in (3, 4, 6, 7, 9, 10, 12, 13):
            vector = turn @ vector
        out[child] = out[parent] + vector
    return (out - out[1]) * zoom + out[1] + np.asarray(shift)


def person(xy, shown=None, canvas=SIZE):
    conf = np.ones(len(xy)) if shown is None else np.asarray(shown, dtype=float)
    body = np.column_stack([xy / canvas, conf])
    body[conf == 0] = 0.0
    return Person(body=body)


def frame(xy, shown=None, canvas=SIZE, **parts):
    return PoseFrame(people=(Person(body=person(xy, shown, canvas).body, **parts),), canvas_size=canvas)


def pixels(frame_):
    body = frame_.people[0].body
    return body[:, :2] * SIZE, body[:, 2] > 0


def lengths(xy, shown):
    return {bone: float(np.linalg.norm(xy[bone[1]] - xy[bone[0]])) for bone in BONES if shown[bone[0]] and shown[bone[1]]}


def directions(xy, shown):
    return {bone: math.atan2(*(xy[bone[1]] - xy[bone[0]])[::-1]) for bone in BONES if shown[bone[0]] and shown[bone[1]]}


REFERENCE_FACTORS = {(8, 9): 1.3, (9, 10): 1.25, (11, 12): 1.3, (12, 13): 1.25, (2, 3): 0.8, (3, 4): 0.85,
                     (5, 6): 0.8, (6, 7): 0.85, (1, 0): 1.1, (1, 8): 0.9, (1, 11): 0.9, (1, 2): 1.2, (1, 5): 1.2}


@pytest.fixture
def driving():
    return [frame(rotate_limbs(DRIVER, 0.15 * i, zoom=1 + 0.05 * i, shift=(6 * i, -3 * i))) for i in range(8)]


def test_the_measured_frame_gets_the_references_bone_lengths_and_later_frames_keep_their_ratios(driving):
    reference_xy = body_with_proportions(DRIVER, REFERENCE_FACTORS, root_at=(240, 130))
    out, measured = retarget(driving, person(reference_xy), SIZE, SIZE, "resize")
    ref_lengths = lengths(reference_xy, np.ones(18, bool))
    first = lengths(*pixels(out[0]))
    assert max(abs(first[b] - ref_lengths[b]) for b in BONES) <= 0.5  # the measured frame
    drive_first = lengths(*pixels(driving[0]))
    for before, after in zip(driving, out):
        drive, new = lengths(*pixels(before)), lengths(*pixels(after))
        for bone in BONES:
            assert new[bone] / first[bone] == pytest.approx(drive[bone] / drive_first[bone], rel=1e-9)
        for bone, angle in directions(*pixels(before)).items():
            assert directions(*pixels(after))[bone] == pytest.approx(angle, abs=1e-9)  # joint angles kept
    # the root: the first frame's neck on the reference's, later ones moved by the scaled displacement
    np.testing.assert_allclose(pixels(out[0])[0][1], reference_xy[1], atol=1e-9)
    drive_shift = pixels(driving[5])[0][1] - pixels(driving[0])[0][1]
    np.testing.assert_allclose(pixels(out[5])[0][1] - pixels(out[0])[0][1], measured.height_ratio * drive_shift, atol=1e-9)
    assert measured.height_ratio == pytest.approx(
        (0.9 * 120 + 1.3 * 90 + 1.25 * 90) / (120 + 90 + 90), rel=1e-3)  # torso + leg, reference / driving


def test_matching_bodies_give_the_driving_poses_back(driving):
    out, measured = retarget(driving, driving[0].people[0], SIZE, SIZE, "resize")
    assert list(measured.scales.values()) == pytest.approx([1.0] * len(BONES)) and measured.height_ratio == pytest.approx(1.0)
    for before, after in zip(driving, out):
        np.testing.assert_allclose(after.people[0].body, before.people[0].body, atol=1e-12)


def test_missing_joints_stay_missing_and_the_others_are_still_placed(driving):
    shown = np.ones(18)
    shown[[4, 9, 16]] = 0  # a wrist, a knee, an ear
    frames = [frame(rotate_limbs(DRIVER, 0.1 * i), shown) for i in range(4)]
    reference_xy = body_with_proportions(DRIVER, REFERENCE_FACTORS)
    out, measured = retarget(frames, person(reference_xy), SIZE, SIZE, "resize")
    for after in out:
        xy, visible = pixels(after)
        assert not visible[[4, 9, 16]].any() and visible.sum() == 15
        assert np.all(after.people[0].body[[4, 9, 16]] == 0)
    # the ankle hangs from the hip over the missing knee: both bones' scales, the same direction
    xy, _ = pixels(out[0])
    drive_xy, _ = pixels(frames[0])
    expected = xy[8] + measured.scales[(8, 9)] * measured.scales[(9, 10)] * (drive_xy[10] - drive_xy[8])
    np.testing.assert_allclose(xy[10], expected, atol=1e-9)


def test_a_frame_without_the_neck_places_the_hips_from_the_mid_hip(driving):
    shown = np.ones(18)
    shown[1] = 0
    frames = [driving[0], frame(DRIVER, shown)]
    out, measured = retarget(frames, person(body_with_proportions(DRIVER, REFERENCE_FACTORS)), SIZE, SIZE, "resize")
    xy, visible = pixels(out[1])
    assert not visible[1] and visible.sum() == 17
    assert np.linalg.norm(xy[8] - xy[11]) == pytest.approx(0.9 * np.linalg.norm(DRIVER[8] - DRIVER[11]), rel=1e-9)


def test_hands_and_face_move_with_their_joints(driving):
    hand = np.column_stack([DRIVER[7] + np.arange(21)[:, None] * (1.0, 2.0), np.ones(21)])
    hand[:, :2] /= SIZE
    face = np.column_stack([DRIVER[0] + np.arange(68)[:, None] * (0.5, -0.25), np.ones(68)])
    face[:, :2] /= SIZE
    frames = [frame(DRIVER, left_hand=hand, face=face)]
    out, measured = retarget(frames, person(body_with_proportions(DRIVER, REFERENCE_FACTORS)), SIZE, SIZE, "resize")
    new = out[0].people[0]
    body_xy, _ = pixels(out[0])
    hand_xy = new.left_hand[:, :2] * SIZE
    np.testing.assert_allclose(hand_xy - body_xy[7], measured.scales[(6, 7)] * (hand[:, :2] * SIZE - DRIVER[7]), atol=1e-9)
    face_xy = new.face[:, :2] * SIZE
    np.testing.assert_allclose(face_xy - body_xy[0], measured.scales[(1, 0)] * (face[:, :2] * SIZE - DRIVER[0]), atol=1e-9)
    assert new.right_hand is None


def test_different_canvases_are_fitted_before_measuring():
    """A reference measured on a 256 x 512 image and driving poses on 512 x 512, both letterboxed onto
    512 x 768: lengths compare on the output canvas."""
    ref_canvas = (256, 512)
    reference_xy = DRIVER * (0.5, 1.0)  # squashed horizontally on its own canvas
    driving = [frame(DRIVER)]
    out, _ = retarget(driving, person(reference_xy, canvas=ref_canvas), ref_canvas, (512, 768), "letterbox")
    # letterbox: the reference's canvas scales by 1.5 (256 x 512 -> 384 x 768), the driving one's by 1.0
    xy = out[0].people[0].body[:, :2] * (512, 768)
    ref_on_canvas = reference_xy * 1.5 + (64, 0)
    for bone in BONES:
        assert np.linalg.norm(xy[bone[1]] - xy[bone[0]]) == pytest.approx(
            np.linalg.norm(ref_on_canvas[bone[1]] - ref_on_canvas[bone[0]]), abs=0.5)


def test_a_reference_without_neck_or_hips_is_refused(driving):
    shown = np.ones(18)
    shown[[1, 8, 11]] = 0
    with pytest.raises(InvalidInputError, match="neither the neck nor both hips"):
        retarget(driving, person(DRIVER, shown), SIZE, SIZE, "resize")


def test_the_json_round_trip_keeps_the_format(driving):
    shown = np.ones(18)
    shown[[4, 16]] = 0
    hand = np.column_stack([np.linspace(0.1, 0.4, 21), np.linspace(0.2, 0.3, 21), np.ones(21)])
    frames = [frame(rotate_limbs(DRIVER, 0.1 * i), shown, right_hand=hand) for i in range(3)]
    out, _ = retarget(frames, person(body_with_proportions(DRIVER, REFERENCE_FACTORS)), SIZE, SIZE, "resize")
    data = to_pose_json(out)
    assert [sorted(f) for f in data] == [["canvas_height", "canvas_width", "people"]] * 3
    assert sorted(data[0]["people"][0]) == ["hand_right_keypoints_2d", "pose_keypoints_2d"]
    assert len(data[0]["people"][0]["pose_keypoints_2d"]) == 54 and data[0]["people"][0]["pose_keypoints_2d"][12:15] == [0.0] * 3
    back = parse_pose_json(data)
    for a, b in zip(out, back):
        assert b.canvas_size == SIZE
        np.testing.assert_allclose(b.people[0].body, a.people[0].body, atol=1e-12)
        np.testing.assert_allclose(b.people[0].right_hand, a.people[0].right_hand, atol=1e-12)
