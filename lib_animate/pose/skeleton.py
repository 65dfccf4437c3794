"""Keypoint layouts and drawing tables: plain data, public OpenPose facts.

COCO-18 (OpenPose) body order, used everywhere in this package:
    0 nose, 1 neck, 2 R-shoulder, 3 R-elbow, 4 R-wrist, 5 L-shoulder, 6 L-elbow, 7 L-wrist,
    8 R-hip, 9 R-knee, 10 R-ankle, 11 L-hip, 12 L-knee, 13 L-ankle, 14 R-eye, 15 L-eye,
    16 R-ear, 17 L-ear   ("R" is the person's right).
"""

BODY_POINTS = 18
HAND_POINTS = 21
FACE_POINTS = 68  # DWPose / iBUG-68; OpenPose's face has 2 more (the pupils, 68 and 69)
OPENPOSE_FACE_POINTS = 70

BODY_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)

# BODY_25 (CMU OpenPose's default model) -> COCO-18: BODY_25 adds a mid-hip (8) and six foot points
# (19..24); dropping them leaves the COCO-18 order.
BODY25_TO_COCO18 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)

# The 17 limbs the OpenPose renderer draws, as (from, to) joint indices; limb i is drawn in
# BODY_COLOURS[i]. (OpenPose lists 19 pairs; the last two, shoulders to ears, are never drawn.)
BODY_LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)

# RGB; joint j is drawn in BODY_COLOURS[j], limb i in BODY_COLOURS[i] at LIMB_INTENSITY.
BODY_COLOURS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)

LIMB_INTENSITY = 0.6
LIMB_HALF_WIDTH = 4  # "stickwidth": the minor semi-axis of each limb ellipse, in pixels
JOINT_RADIUS = 4

# Hand: wrist (0) to each finger's four joints; thumb 1-4, index 5-8, middle 9-12, ring 13-16,
# little 17-20. Edge i is drawn in the HSV colour with hue i / 20.
HAND_EDGES = (
    (0, 1), (1, 2), (2, 3), (3, 4),
    (0, 5), (5, 6), (6, 7), (7, 8),
    (0, 9), (9, 10), (10, 11), (11, 12),
    (0, 13), (13, 14), (14, 15), (15, 16),
    (0, 17), (17, 18), (18, 19), (19, 20),
)
HAND_LINE_WIDTH = 2
HAND_JOINT_RADIUS = 4
HAND_JOINT_COLOUR = (0, 0, 255)  # RGB blue

FACE_DOT_RADIUS = 3
FACE_DOT_COLOUR = (255, 255, 255)


def hsv_colour(hue: float) -> tuple:
    """RGB (0..255 ints) of the fully saturated, full-value colour with ``hue`` in [0, 1)."""
    h = (hue % 1.0) * 6.0
    sector = int(h)
    f = h - sector
    rising, falling = f, 1.0 - f
    rgb = (
        (1.0, rising, 0.0), (falling, 1.0, 0.0), (0.0, 1.0, rising),
        (0.0, falling, 1.0), (rising, 0.0, 1.0), (1.0, 0.0, falling),
    )[sector]
    return tuple(int(round(c * 255)) for c in rgb)


HAND_EDGE_COLOURS = tuple(hsv_colour(i / len(HAND_EDGES)) for i in range(len(HAND_EDGES)))
