"""DWPose end to end with tiny ONNX models that have the real files' tensor names and shapes.

The models compute constructed outputs whose right answer is known:
  * detector (``images`` 1x3x640x640 -> ``output`` 1x8400x85): a constant table of raw YOLOX
    outputs, plus (optionally) an objectness for each stride-8 cell taken from the brightest pixel
    of that cell of the network input, so the letterbox pre-processing is exercised;
  * pose model (``input`` 1x3x384x288 -> ``simcc_x`` 1x133x576, ``simcc_y`` 1x133x768): constant
    SimCC vectors, plus (optionally) the input's column / row maxima upsampled to 2 bins per pixel,
    so every keypoint lands on the brightest pixel of the crop.
"""

import math

import numpy as np
import pytest

from lib_animate.errors import InvalidInputError, WeightsFileError
from lib_animate.pose import render_pose
from lib_animate.pose.dwpose import DETECTOR_FILE, POSE_FILE, DWPoseDetector, onnxruntime_available
from lib_animate.pose.dwpose.wholebody import wholebody_to_person

onnx = pytest.importorskip("onnx", reason="the tiny DWPose models are written with the onnx package")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

ANCHORS = 8400
ANCHOR_OFFSET = {8: 0, 16: 80 * 80, 32: 80 * 80 + 40 * 40}
GRID = {8: 80, 16: 40, 32: 20}

COCO17 = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
]
OPENPOSE18 = [
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
]
BACKENDS = [
    "opencv",
    pytest.param(
        "onnxruntime",
        marks=pytest.mark.skipif(not onnxruntime_available(), reason="onnxruntime not installed"),
    ),
]


# ----------------------------------------------------------------------------- tiny ONNX models


def _tensor(name, array, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(array, dtype=dtype), name)


def _save(path, nodes, inputs, outputs, initializers):
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 6  # readable by older runtimes too
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def write_detector(path, raw_table, image_objectness=False):
    """``output`` = raw_table (8400 x 85) [+ per stride-8 cell: relu(brightest grey pixel - 120) / 20
    in the objectness column]. Padding (114) and black give 0; a white pixel gives > 1."""
    weight = 1.0 if image_objectness else 0.0
    nodes = [
        # channel mean by a 1x1 convolution (OpenCV 4.8's ReduceMax over channels is wrong)
        helper.make_node("Conv", ["images", "mean_of_channels"], ["grey"], kernel_shape=[1, 1]),
        helper.make_node("MaxPool", ["grey"], ["cells"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Sub", ["cells", "level"], ["shifted"]),
        helper.make_node("Relu", ["shifted"], ["bright"]),
        helper.make_node("Mul", ["bright", "gain"], ["objectness"]),
        helper.make_node("Reshape", ["objectness", "flat"], ["stride8"]),
        helper.make_node("Concat", ["stride8", "coarser"], ["all_anchors"], axis=1),
        helper.make_node("Reshape", ["all_anchors", "column"], ["as_column"]),
        helper.make_node("Mul", ["as_column", "objectness_column"], ["image_part"]),
        helper.make_node("Add", ["image_part", "table"], ["output"]),
    ]
    initializers = [
        _tensor("mean_of_channels", np.full((1, 3, 1, 1), 1 / 3)),
        _tensor("level", [120.0]), _tensor("gain", [weight / 20.0]),
        _tensor("flat", [1, 6400], np.int64), _tensor("coarser", np.zeros((1, ANCHORS - 6400))),
        _tensor("column", [1, ANCHORS, 1], np.int64), _tensor("objectness_column", np.eye(85)[4][None, None]),
        _tensor("table", raw_table[None]),
    ]
    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 640, 640])]
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, ANCHORS, 85])]
    return _save(path, nodes, inputs, outputs, initializers)


def write_pose(path, simcc_x, simcc_y, image_profiles=False):
    """``simcc_x`` = constant (133 x 576) [+ the channel mean of the input, maximised over rows,
    each pixel repeated for its 2 bins]; ``simcc_y`` likewise over columns."""
    def upsample(n):  # (n, 2n) matrix: pixel i -> bins 2i, 2i + 1
        m = np.zeros((n, 2 * n))
        m[np.arange(n), 2 * np.arange(n)] = m[np.arange(n), 2 * np.arange(n) + 1] = 1
        return m

    nodes = [
        helper.make_node("Conv", ["input", "mean_of_channels"], ["grey"], kernel_shape=[1, 1]),
        helper.make_node("MaxPool", ["grey"], ["column_max"], kernel_shape=[384, 1]),
        helper.make_node("MaxPool", ["grey"], ["row_max"], kernel_shape=[1, 288]),
        helper.make_node("Reshape", ["column_max", "flat_x"], ["columns"]),
        helper.make_node("Reshape", ["row_max", "flat_y"], ["rows"]),
        helper.make_node("MatMul", ["columns", "up_x"], ["bins_x"]),
        helper.make_node("MatMul", ["rows", "up_y"], ["bins_y"]),
        helper.make_node("Reshape", ["bins_x", "shape_x"], ["profile_x"]),
        helper.make_node("Reshape", ["bins_y", "shape_y"], ["profile_y"]),
        helper.make_node("Mul", ["profile_x", "weight"], ["image_x"]),
        helper.make_node("Mul", ["profile_y", "weight"], ["image_y"]),
        helper.make_node("Add", ["image_x", "const_x"], ["simcc_x"]),
        helper.make_node("Add", ["image_y", "const_y"], ["simcc_y"]),
    ]
    initializers = [
        _tensor("mean_of_channels", np.full((1, 3, 1, 1), 1 / 3)),
        _tensor("flat_x", [1, 288], np.int64), _tensor("flat_y", [1, 384], np.int64),
        _tensor("up_x", upsample(288)), _tensor("up_y", upsample(384)),
        _tensor("shape_x", [1, 1, 576], np.int64), _tensor("shape_y", [1, 1, 768], np.int64),
        _tensor("weight", [1.0 if image_profiles else 0.0]),
        _tensor("const_x", simcc_x[None]), _tensor("const_y", simcc_y[None]),
    ]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 384, 288])]
    outputs = [
        helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, [1, 133, 576]),
        helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, [1, 133, 768]),
    ]
    return _save(path, nodes, inputs, outputs, initializers)


def put_box(table, stride, cell, centre, size, objectness, class_probs):
    """Writes the raw YOLOX outputs that decode to ``centre`` / ``size`` (network pixels)."""
    gx, gy = cell
    row = table[ANCHOR_OFFSET[stride] + gy * GRID[stride] + gx]
    row[0], row[1] = centre[0] / stride - gx, centre[1] / stride - gy
    row[2], row[3] = math.log(size[0] / stride), math.log(size[1] / stride)
    row[4] = objectness
    for cls, p in class_probs.items():
        row[5 + cls] = p


def empty_simcc():
    return np.zeros((133, 576)), np.zeros((133, 768))


def make(tmp_path, backend, table=None, simcc=None, image_objectness=False, image_profiles=False):
    table = np.zeros((ANCHORS, 85)) if table is None else table
    simcc_x, simcc_y = empty_simcc() if simcc is None else simcc
    det = write_detector(tmp_path / DETECTOR_FILE, table, image_objectness)
    pose = write_pose(tmp_path / POSE_FILE, simcc_x, simcc_y, image_profiles)
    return DWPoseDetector(det, pose, backend=backend)


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("backend", BACKENDS)
def test_yolox_grid_decoding_letterbox_ratio_nms_and_person_filter(tmp_path, backend):
    # image 320 x 240 -> r = min(640/240, 640/320) = 2: image pixels are network pixels / 2
    t = np.zeros((ANCHORS, 85))
    put_box(t, 16, (12, 7), (200, 120), (80, 160), 0.9, {0: 0.9})  # A: 0.81
    put_box(t, 8, (25, 15), (204, 124), (80, 160), 0.8, {0: 0.75})  # overlaps A: suppressed
    put_box(t, 32, (15, 9), (500, 300), (100, 200), 0.8, {0: 0.7})  # B: 0.56
    put_box(t, 32, (17, 9), (550, 300), (100, 200), 0.5, {0: 1.0})  # C: IoU with B 1/3, kept
    put_box(t, 8, (60, 10), (484, 84), (40, 40), 1.0, {0: 0.0, 1: 1.0})  # a bicycle: ignored
    put_box(t, 16, (5, 30), (88, 488), (60, 60), 0.5, {0: 0.5})  # person at 0.25 < 0.3: dropped
    detector = make(tmp_path, backend, table=t)
    boxes = detector.find_people(np.zeros((240, 320, 3), np.uint8))
    expected = [[80, 20, 120, 100, 0.81], [225, 100, 275, 200, 0.56], [250, 100, 300, 200, 0.5]]
    np.testing.assert_allclose(boxes, expected, atol=1e-4)


def simcc_with_peaks(x_pixels, y_pixels, x_scores, y_scores):
    """Constant SimCC whose keypoint k peaks at input pixel (x_pixels[k], y_pixels[k])."""
    simcc_x, simcc_y = empty_simcc()
    k = np.arange(133)
    simcc_x[k, (2 * np.asarray(x_pixels)).astype(int)] = x_scores
    simcc_y[k, (2 * np.asarray(y_pixels)).astype(int)] = y_scores
    return simcc_x, simcc_y


def one_person_table():
    # image 640 x 480 (r = 1); box centre (320, 240), 230.4 x 307.2: grown by 1.25 it is exactly
    # the 288 x 384 network input, so input pixel (u, v) is image pixel (u + 176, v + 48)
    t = np.zeros((ANCHORS, 85))
    put_box(t, 32, (10, 7), (320, 240), (230.4, 307.2), 1.0, {0: 1.0})
    return t


@pytest.mark.parametrize("backend", BACKENDS)
def test_crop_simcc_decoding_and_133_to_openpose_mapping(tmp_path, backend):
    k = np.arange(133)
    x_scores = np.full(133, 0.9)
    x_scores[COCO17.index("right_shoulder")] = 0.25  # hidden, so the neck is hidden too
    x_scores[23 + 5] = 0.1  # one face point hidden
    x_scores[91:112] = 0.2  # the whole left hand hidden
    simcc = simcc_with_peaks(10 + k, 20 + 2 * k, x_scores, np.full(133, 0.95))
    detector = make(tmp_path, backend, table=one_person_table(), simcc=simcc)

    keypoints, scores = detector.estimate(np.zeros((480, 640, 3), np.uint8), [204.8, 86.4, 435.2, 393.6])
    np.testing.assert_allclose(keypoints, np.stack([186 + k, 68 + 2 * k], axis=1), atol=1e-3)
    np.testing.assert_allclose(scores, x_scores, atol=1e-6)  # min of the x and y peaks

    frame = detector.detect(np.zeros((480, 640, 3), np.uint8))
    assert frame.canvas_size == (640, 480) and len(frame.people) == 1
    person = frame.people[0]

    def image_xy(coco_index):
        return [(186 + coco_index) / 640, (68 + 2 * coco_index) / 480]

    for j, name in enumerate(OPENPOSE18):
        if name == "neck" or name == "right_shoulder":
            assert not person.body[j].any(), name
        else:
            expected = image_xy(COCO17.index(name))
            np.testing.assert_allclose(person.body[j, :2], expected, atol=1e-5, err_msg=name)
            assert person.body[j, 2] == pytest.approx(0.9)
    assert person.left_hand is None
    np.testing.assert_allclose(person.right_hand[:, :2], [image_xy(i) for i in range(112, 133)], atol=1e-5)
    assert person.face.shape == (68, 3)
    np.testing.assert_allclose(person.face[6, :2], image_xy(23 + 6), atol=1e-5)
    assert not person.face[5].any()
    # ranked by the mean of the 18 body scores before hiding: 16 x 0.9 + 0.25 + neck 0
    assert person.score == pytest.approx((16 * 0.9 + 0.25) / 18)


def test_neck_is_the_shoulder_midpoint_when_both_shoulders_show():
    keypoints = np.zeros((133, 2))
    scores = np.full(133, 0.9)
    keypoints[COCO17.index("left_shoulder")] = (100, 40)
    keypoints[COCO17.index("right_shoulder")] = (60, 50)
    person = wholebody_to_person(keypoints, scores, (200, 100))
    np.testing.assert_allclose(person.body[OPENPOSE18.index("neck")], [0.4, 0.45, 1.0])
    assert person.score == pytest.approx((17 * 0.9 + 1.0) / 18)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bright_pixel_is_found_through_letterbox_detection_and_crop(tmp_path, backend):
    # stride-8 anchors predict a 64 x 128 box centred on their cell; objectness comes from the
    # image, so only the cell holding the white pixel (upsampled x2 by the letterbox) fires
    t = np.zeros((ANCHORS, 85))
    t[:6400, 0:2] = 0.5
    t[:6400, 2], t[:6400, 3] = math.log(64 / 8), math.log(128 / 8)
    t[:6400, 5] = 1.0
    detector = make(tmp_path, backend, table=t, image_objectness=True, image_profiles=True)

    image = np.zeros((240, 320, 3), np.uint8)
    for x, y in [(101, 57), (37, 190), (250, 20)]:
        image[:] = 0
        image[y, x] = 255
        boxes = detector.find_people(image)
        assert len(boxes) == 1
        x1, y1, x2, y2, _ = boxes[0]
        assert abs((x1 + x2) / 2 - x) <= 4 and abs((y1 + y2) / 2 - y) <= 4  # one 8 px net cell
        assert (x2 - x1, y2 - y1) == pytest.approx((32, 64))
        keypoints, scores = detector.estimate(image, boxes[0])
        assert np.all(np.abs(keypoints - (x, y)) <= 0.5), (x, y, keypoints.min(0), keypoints.max(0))
        assert np.all(scores > 2)  # white, normalised
        person = detector.detect(image).people[0]
        np.testing.assert_allclose(person.body[:, :2], np.tile([x / 320, y / 240], (18, 1)), atol=0.5 / 240)
        assert np.all(person.body[:, 2] > 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_a_person_the_whole_frame_is_the_crop(tmp_path, backend):
    # frame 288 x 384: crop centre (144, 192), size 1.25 x -> 360 x 480, scale 0.8 into the input
    simcc = simcc_with_peaks(np.full(133, 100), np.full(133, 50), np.full(133, 0.9), np.full(133, 0.9))
    detector = make(tmp_path, backend, simcc=simcc)
    image = np.zeros((384, 288, 3), np.uint8)
    assert len(detector.find_people(image)) == 0
    keypoints, _ = detector.estimate(image, [0, 0, 288, 384])
    assert keypoints[0] == pytest.approx(((100 - 144) / 0.8 + 144, (50 - 192) / 0.8 + 192))
    nose = detector.detect(image).people[0].body[0]
    assert nose == pytest.approx([89 / 288, 14.5 / 384, 0.9])


@pytest.mark.parametrize("backend", BACKENDS)
def test_detected_sequence_renders(tmp_path, backend):
    k = np.arange(133)
    simcc = simcc_with_peaks(10 + k, 20 + 2 * k, np.full(133, 0.9), np.full(133, 0.9))
    detector = make(tmp_path, backend, table=one_person_table(), simcc=simcc)
    assert detector.backend == backend
    calls = []
    frames = [np.zeros((480, 640, 3), np.uint8)] * 3
    poses = detector.detect_sequence(frames, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)] and len(poses) == 3
    image = render_pose(poses[0], 320, 240)
    # the left ear (COCO 3 -> image (189, 74)), the last joint drawn, at half scale
    assert tuple(image[37, 94]) == (255, 0, 85)


def test_files_are_found_in_the_controlnet_folder(tmp_path):
    folder = tmp_path / "webui" / "extensions" / "sd-webui-controlnet" / "annotator" / "downloads"
    folder = folder / "openpose"
    folder.mkdir(parents=True)
    write_detector(folder / DETECTOR_FILE, one_person_table())
    write_pose(folder / POSE_FILE, *empty_simcc())
    detector = DWPoseDetector.from_folders(webui_root=str(tmp_path / "webui"), environ={}, backend="opencv")
    assert detector.detector.path == str(folder / DETECTOR_FILE)
    assert len(detector.find_people(np.zeros((480, 640, 3), np.uint8))) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_swapped_and_broken_files_give_weights_errors(tmp_path, backend):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    pose_as_detector = write_pose(tmp_path / "a" / DETECTOR_FILE, *empty_simcc())
    detector_as_pose = write_detector(tmp_path / "b" / POSE_FILE, np.zeros((ANCHORS, 85)))
    swapped = DWPoseDetector(pose_as_detector, detector_as_pose, backend=backend)
    with pytest.raises(WeightsFileError, match=DETECTOR_FILE.replace(".", r"\.")):
        swapped.find_people(np.zeros((64, 64, 3), np.uint8))

    good_detector = write_detector(tmp_path / DETECTOR_FILE, one_person_table())
    wrong_pose = DWPoseDetector(good_detector, detector_as_pose, backend=backend)
    with pytest.raises(WeightsFileError, match=POSE_FILE.replace(".", r"\.")):
        wrong_pose.detect(np.zeros((480, 640, 3), np.uint8))

    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not a protobuf")
    with pytest.raises(WeightsFileError, match="broken.onnx could not be loaded as an ONNX model"):
        DWPoseDetector(str(broken), detector_as_pose, backend=backend)


def test_images_must_be_rgb_uint8(tmp_path):
    detector = make(tmp_path, "opencv")
    with pytest.raises(InvalidInputError, match=r"H x W x 3 uint8 RGB image, got shape \(8, 8\)"):
        detector.detect(np.zeros((8, 8), np.uint8))
    with pytest.raises(InvalidInputError, match=r"pose video frame 1: .*uint8 RGB"):
        detector.detect_sequence([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.float32)])
