"""TiledPredictor on a hand-built ONNX "detector" whose boxes are exact.

The model (onnx.helper, opset 17) finds, in each image of the batch, the bounding box of the
pixels whose blue channel is bright (class 0, ``blue``) and of those whose red channel is
(class 1, ``red``), and outputs them YOLO-style: ``[B, 4 + 2, 2]`` (two anchors; rows cx, cy,
w, h, then the two class scores: 1 where such pixels exist, else 0). Squares drawn into a frame
so that no tile holds two of one colour therefore come back as exact boxes from every tile,
cut where the tile cuts them: the merge must put them together again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgeinfer.artifact import Artifact, InputSpec, Preprocess, SourceInfo
from edgeinfer.errors import EdgeInferError
from edgeinfer.pipeline.tiled import STAGES, TiledPredictor
from edgeinfer.runtime.backends import BackendOptions
from edgeinfer.runtime.engine import Engine

TILE = 64
IR_VERSION = 8


def _const(name: str, values: list[int]) -> onnx.NodeProto:
    return helper.make_node(
        "Constant", [], [name], value=helper.make_tensor(name, TensorProto.INT64, [len(values)],
                                                         values)
    )


def bright_box_model(batch: int | str, size: int = TILE) -> onnx.ModelProto:
    """x [batch, 3, size, size] -> y [batch, 6, 2]: per channel 0 and 2, the box of x > 0.5."""
    nodes = [
        _const("rev_starts", [-1]),
        _const("rev_ends", [-(size + 1)]),
        _const("axis1", [1]),
        _const("step_back", [-1]),
        helper.make_node("Constant", [], ["size"],
                         value=helper.make_tensor("size", TensorProto.FLOAT, [], [float(size)])),
        helper.make_node("Constant", [], ["half"],
                         value=helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])),
        helper.make_node("Constant", [], ["zero"],
                         value=helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])),
    ]
    anchors = []
    for k, channel in enumerate((0, 2)):
        p = f"c{k}_"
        nodes += [
            _const(p + "s", [channel]),
            _const(p + "e", [channel + 1]),
            helper.make_node("Slice", ["x", p + "s", p + "e", "axis1"], [p + "x"]),
            helper.make_node("Greater", [p + "x", "half"], [p + "gt"]),
            helper.make_node("Cast", [p + "gt"], [p + "m"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMax", [p + "m"], [p + "col"], axes=[1, 2], keepdims=0),
            helper.make_node("ReduceMax", [p + "m"], [p + "row"], axes=[1, 3], keepdims=0),
            helper.make_node("ReduceMax", [p + "col"], [p + "score"], axes=[1], keepdims=1),
            helper.make_node("Mul", [p + "score", "zero"], [p + "none"]),
        ]
        edges = []
        for v in ("col", "row"):  # first and last bright index along x (col) and y (row)
            q = p + v
            nodes += [
                helper.make_node("ArgMax", [q], [q + "_lo_i"], axis=1, keepdims=1),
                helper.make_node("Cast", [q + "_lo_i"], [q + "_lo"], to=TensorProto.FLOAT),
                helper.make_node("Slice", [q, "rev_starts", "rev_ends", "axis1", "step_back"],
                                 [q + "_rev"]),
                helper.make_node("ArgMax", [q + "_rev"], [q + "_hi_i"], axis=1, keepdims=1),
                helper.make_node("Cast", [q + "_hi_i"], [q + "_hi_r"], to=TensorProto.FLOAT),
                helper.make_node("Sub", ["size", q + "_hi_r"], [q + "_hi"]),
                helper.make_node("Add", [q + "_lo", q + "_hi"], [q + "_sum"]),
                helper.make_node("Mul", [q + "_sum", "half"], [q + "_c"]),
                helper.make_node("Sub", [q + "_hi", q + "_lo"], [q + "_len"]),
            ]
            edges.append(q)
        cx, cy = edges[0] + "_c", edges[1] + "_c"
        w, h = edges[0] + "_len", edges[1] + "_len"
        scores = [p + "score", p + "none"] if k == 0 else [p + "none", p + "score"]
        nodes += [
            helper.make_node("Concat", [cx, cy, w, h, *scores], [p + "row6"], axis=1),
            helper.make_node("Unsqueeze", [p + "row6", "axis_last"], [p + "anchor"]),
        ]
        anchors.append(p + "anchor")
    nodes.insert(0, _const("axis_last", [2]))
    nodes.append(helper.make_node("Concat", anchors, ["y"], axis=2))
    graph = helper.make_graph(
        nodes,
        "bright-boxes",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 6, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              ir_version=IR_VERSION, producer_name="edgeinfer-tests")
    onnx.checker.check_model(model)
    return model


def make_engine(tmp_path: Path, batch: int | str, resize: str = "none",
                params: dict | None = None) -> Engine:
    model_file = tmp_path / f"bright-{batch}.onnx"
    onnx.save(bright_box_model(batch), str(model_file))
    artifact = Artifact.create(
        tmp_path / f"art-{batch}-{resize}",
        model_file,
        labels=["blue", "red"],
        name="bright-boxes",
        task="detection",
        inputs=(InputSpec(name="x", shape=(1, 3, TILE, TILE)),),
        preprocess=Preprocess(resize=resize, channel_order="BGR", scale=1 / 255),
        decoder="yolo",
        decoder_params={"conf_threshold": 0.5, "iou_threshold": 0.5, **(params or {})},
        source=SourceInfo(name="test"),
    )
    return Engine(artifact, "ort", BackendOptions(threads=1))


def frame_with(shape: tuple[int, int], squares: dict[str, list[tuple[int, int, int, int]]],
               seed: int = 0) -> np.ndarray:
    """A dark noisy BGR frame with blue / red rectangles x0, y0, x1, y1 (end exclusive)."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 100, (*shape, 3), dtype=np.uint8)
    for colour, boxes in squares.items():
        channel = 0 if colour == "blue" else 2
        for x0, y0, x1, y1 in boxes:
            frame[y0:y1, x0:x1, channel] = 255
    return frame


def as_set(dets) -> list[tuple[int, tuple[float, ...]]]:
    return sorted((int(c), tuple(b.round(2).tolist())) for c, b in zip(dets.class_ids,
                                                                        dets.boxes, strict=True))


# No tile of TILE px (any overlap) holds two squares of one colour: blue ones are > TILE apart,
# red ones too. The first blue square sits on the corner of the zero-overlap grid (4 pieces),
# the big red one spans three tiles.
SQUARES = {
    "blue": [(56, 56, 72, 72), (150, 125, 171, 141)],
    "red": [(100, 6, 140, 30), (20, 120, 125, 150)],
}


@pytest.fixture
def engines(tmp_path: Path) -> tuple[Engine, Engine]:
    return make_engine(tmp_path, "N"), make_engine(tmp_path, 1)


@pytest.mark.parametrize("overlap", [0.0, 0.25])
def test_squares_cut_by_tiles_come_back_whole(engines, overlap: float) -> None:
    dynamic, _ = engines
    frame = frame_with((160, 200), SQUARES)
    pred = TiledPredictor(dynamic, tile=TILE, overlap=overlap, batch=4).predict(frame, "f.png")
    expected = sorted([(0, tuple(map(float, b))) for b in SQUARES["blue"]]
                      + [(1, tuple(map(float, b))) for b in SQUARES["red"]])
    assert as_set(pred.detections) == expected
    assert pred.detections.labels == ("blue", "red")
    assert pred.source == "f.png" and pred.frame_size == (160, 200)
    assert pred.tiles == len(TiledPredictor(dynamic, tile=TILE, overlap=overlap).tiles(160, 200))
    assert pred.batches == -(-pred.tiles // 4)
    assert set(STAGES) | {"total"} <= set(pred.times_ms)
    assert pred.result is pred.detections


def test_batched_and_unbatched_give_the_same_detections(engines) -> None:
    dynamic, static1 = engines
    frame = frame_with((190, 230), SQUARES, seed=1)
    runs = [
        TiledPredictor(dynamic, tile=TILE, overlap=0.2, batch=4).predict(frame),
        TiledPredictor(dynamic, tile=TILE, overlap=0.2, batch=3).predict(frame),
        TiledPredictor(dynamic, tile=TILE, overlap=0.2, batch=1).predict(frame),
        TiledPredictor(static1, tile=TILE, overlap=0.2, batch=4).predict(frame),
    ]
    assert runs[3].batches == runs[3].tiles  # a static batch of 1: one tile per call
    assert runs[0].batches < runs[0].tiles
    first = runs[0].detections
    for run in runs[1:]:
        np.testing.assert_array_equal(run.detections.boxes, first.boxes)
        np.testing.assert_array_equal(run.detections.scores, first.scores)
        np.testing.assert_array_equal(run.detections.class_ids, first.class_ids)


def test_frame_smaller_than_a_tile(engines) -> None:
    dynamic, static1 = engines
    frame = frame_with((40, 50), {"blue": [(30, 20, 50, 40)], "red": [(0, 0, 5, 7)]})
    for engine in (dynamic, static1):
        pred = TiledPredictor(engine, tile=TILE, overlap=0.2).predict(frame)
        assert pred.tiles == 1
        assert as_set(pred.detections) == [(0, (30.0, 20.0, 50.0, 40.0)),
                                           (1, (0.0, 0.0, 5.0, 7.0))]


def test_full_frame_pass(engines) -> None:
    dynamic, _ = engines
    frame = frame_with((128, 160), {"blue": [(20, 30, 44, 50)]})
    pred = TiledPredictor(dynamic, tile=TILE, overlap=0.25, full_frame=True).predict(frame)
    assert "full_frame" in pred.times_ms
    assert len(pred.detections) == 1
    np.testing.assert_allclose(pred.detections.boxes[0], [20, 30, 44, 50], atol=3)


def test_tile_larger_than_the_model_input_is_resized(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, "N", resize="letterbox")
    frame = frame_with((200, 260), {"blue": [(40, 40, 80, 80)], "red": [(150, 100, 230, 180)]})
    pred = TiledPredictor(engine, tile=2 * TILE, overlap=0.25).predict(frame)
    assert sorted(pred.detections.class_ids.tolist()) == [0, 1]
    order = np.argsort(pred.detections.class_ids)
    np.testing.assert_allclose(pred.detections.boxes[order],
                               [[40, 40, 80, 80], [150, 100, 230, 180]], atol=2)
    with pytest.raises(EdgeInferError, match="resize is 'none'"):
        TiledPredictor(make_engine(tmp_path, 1), tile=2 * TILE)


def test_decoder_params_are_honoured(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, "N", params={"conf_threshold": 1.5, "iou_threshold": 0.3})
    predictor = TiledPredictor(engine, tile=TILE)
    assert predictor.iou_threshold == 0.3
    assert len(predictor.predict(frame_with((100, 100), SQUARES)).detections) == 0
    assert TiledPredictor(engine, tile=TILE, iou_threshold=0.6).iou_threshold == 0.6


def test_memory_is_measured(engines) -> None:
    dynamic, _ = engines
    pred = TiledPredictor(dynamic, tile=TILE).predict(frame_with((100, 100), SQUARES))
    if Path("/proc/self/clear_refs").exists():
        assert pred.peak_rss_bytes is not None and pred.rss_before_bytes is not None
        assert pred.rss_growth_bytes is not None and pred.rss_growth_bytes >= 0
    off = TiledPredictor(dynamic, tile=TILE, measure_memory=False).predict(
        frame_with((100, 100), SQUARES))
    assert off.peak_rss_bytes is None and off.rss_growth_bytes is None


def test_bad_input(engines) -> None:
    dynamic, _ = engines
    predictor = TiledPredictor(dynamic, tile=TILE)
    with pytest.raises(EdgeInferError, match="H x W x 3"):
        predictor.predict(np.zeros((100, 100), np.uint8))
    with pytest.raises(ValueError, match="overlap"):
        TiledPredictor(dynamic, tile=TILE, overlap=1.0)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("resize", ["none", "letterbox", "stretch"])
@pytest.mark.parametrize(
    "pre",
    [
        {"channel_order": "RGB", "scale": 1 / 255, "mean": (0.485, 0.456, 0.406),
         "std": (0.229, 0.224, 0.225)},
        {"channel_order": "BGR", "scale": 1.0, "mean": (103.5, 116.3, 123.7)},
        {"channel_order": "RGB", "scale": 1 / 255},  # YOLO's: no mean, no std
    ],
)
def test_direct_preprocessing_equals_to_tensor(layout: str, resize: str, pre: dict) -> None:
    """The tile path writes the value transform straight into the batch buffer; it must give
    exactly what the artifact's to_tensor gives."""
    from types import SimpleNamespace

    from edgeinfer.vision.preprocess import to_tensor

    shape = (1, 3, TILE, TILE) if layout == "NCHW" else (1, TILE, TILE, 3)
    spec = InputSpec(name="x", shape=shape, layout=layout)
    preprocess = Preprocess(resize=resize, **pre)
    manifest = SimpleNamespace(decoder="yolo", decoder_params={}, preprocess=preprocess,
                               inputs=(spec,), name="stub")
    engine = SimpleNamespace(artifact=SimpleNamespace(manifest=manifest, labels=lambda: None),
                             inputs=(SimpleNamespace(name="x", shape=(None, *shape[1:])),))
    predictor = TiledPredictor(engine, tile=TILE)  # type: ignore[arg-type]
    assert predictor._direct
    frame = np.random.default_rng(3).integers(0, 256, (150, 170, 3), dtype=np.uint8)
    crop = frame[20 : 20 + TILE, 33 : 33 + TILE]  # a view, not contiguous
    out = np.full(shape[1:], np.nan, np.float32)
    transform = predictor._tensor_into(crop, out)
    expected, expected_transform = to_tensor(np.ascontiguousarray(crop), spec, preprocess)
    np.testing.assert_array_equal(out, expected[0])
    assert transform == expected_transform
