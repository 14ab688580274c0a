"""Detectors under INT8: the decode tail stays in float, and agreement is measured on detections.

A YOLO output concatenates box coordinates in pixels with class scores in 0..1: an output
cosine cannot see the scores, and one INT8 scale for both rounds every score to zero.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeinfer.optimization.evaluate import (
    DetectionDecode,
    compare,
    cosine_rows,
    detection_ap50,
)
from edgeinfer.optimization.quantize import output_tail
from edgeinfer.vision.boxes import Detections
from edgeinfer.vision.decoders import get_decoder


def _dets(boxes, scores, classes) -> Detections:
    return Detections(
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(scores, np.float32),
        np.asarray(classes, np.int64),
    )


def test_ap50_of_identical_empty_and_missing_detections() -> None:
    a = _dets([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.8], [0, 1])
    assert detection_ap50([a], [a]) == 1.0
    assert detection_ap50([_dets([], [], [])], [_dets([], [], [])]) == 1.0
    assert detection_ap50([_dets([], [], [])], [a]) == 0.0
    assert detection_ap50([a], [_dets([], [], [])]) == 0.0
    # class 0 found, class 1 found with the wrong class: AP 1 and 0
    wrong = _dets([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.8], [0, 0])
    assert detection_ap50([a], [wrong]) == 0.5


def test_ap50_ranks_a_false_alarm_above_a_hit() -> None:
    ref = _dets([[0, 0, 10, 10]], [0.9], [0])
    cand = _dets([[50, 50, 60, 60], [1, 0, 10, 10]], [0.95, 0.5], [0, 0])
    assert detection_ap50([ref], [cand]) == 0.5  # the hit comes at precision 1/2


def _yolo_output(rng: np.random.Generator, n: int = 400) -> np.ndarray:
    """One [4 + 2, n] YOLO output: boxes in pixels, a few confident cells."""
    out = np.zeros((6, n), np.float32)
    out[0:2] = rng.uniform(20, 620, (2, n))
    out[2:4] = rng.uniform(8, 40, (2, n))
    hot = rng.choice(n, 6, replace=False)
    out[4 + rng.integers(0, 2, 6), hot] = rng.uniform(0.6, 0.95, 6)
    return out


def test_scores_rounded_away_are_caught_where_cosine_is_blind() -> None:
    rng = np.random.default_rng(0)
    ref = np.stack([_yolo_output(rng) for _ in range(4)])
    broken = ref.copy()
    broken[:, 4:] = 0.0  # what one INT8 scale over pixels and scores does
    cos = cosine_rows(ref.reshape(1, -1), broken.reshape(1, -1))[0]
    assert cos > 0.999
    decode = DetectionDecode(get_decoder("yolo"), {"num_classes": 2}, ("a", "b"), 0.25)
    same = compare(ref, ref, decode=decode)
    assert same.metric == "det-ap50" and same.value == 1.0
    assert compare(ref, broken, decode=decode).value == 0.0


def test_a_score_just_under_the_threshold_costs_little() -> None:
    rng = np.random.default_rng(1)
    ref = np.stack([_yolo_output(rng) for _ in range(4)])
    nudged = ref.copy()
    cell = np.argwhere(ref[0, 4:] > 0)[0]
    nudged[0, 4 + cell[0], cell[1]] = 0.2  # under the 0.25 threshold, still ranked
    decode = DetectionDecode(get_decoder("yolo"), {"num_classes": 2}, ("a", "b"), 0.25)
    assert compare(ref, nudged, decode=decode).value > 0.9


def _head_model() -> onnx.ModelProto:
    """Conv -> (Sigmoid) and Conv -> Mul -> Concat with the scores -> output."""
    w = numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w")
    v = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "v")
    k = numpy_helper.from_array(np.array(8.0, np.float32), "k")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="cls_conv"),
        helper.make_node("Sigmoid", ["c"], ["s"], name="sig"),
        helper.make_node("Conv", ["x", "v"], ["b"], name="box_conv"),
        helper.make_node("Mul", ["b", "k"], ["bk"], name="scale"),
        helper.make_node("Concat", ["bk", "s"], ["y"], name="cat", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "head",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 4, 4])],
        [w, v, k],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_output_tail_stops_at_the_last_layers() -> None:
    assert sorted(output_tail(_head_model())) == ["cat", "scale", "sig"]
