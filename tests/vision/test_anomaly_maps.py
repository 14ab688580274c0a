"""The anomaly decoder, its regions, the tile-map merge and the heat map, on hand-made maps and a
hand-built ONNX "anomaly model" (its map is each 8 x 8 cell's mean brightness), no torch."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgeinfer.artifact import Artifact, InputSpec, Preprocess, SourceInfo
from edgeinfer.cli import main
from edgeinfer.pipeline.predict import Predictor
from edgeinfer.pipeline.tiled import TiledPredictor
from edgeinfer.runtime.engine import Engine
from edgeinfer.vision.anomaly import AnomalyMapMerge, AnomalyResult, anomaly_result, map_regions
from edgeinfer.vision.decoders import get_decoder
from edgeinfer.vision.draw import annotate
from edgeinfer.vision.preprocess import Transform
from edgeinfer.vision.tiling import Tile, TileMergeOptions, tile_grid

TILE = 64


def test_regions_are_connected_components_in_image_pixels() -> None:
    amap = np.zeros((8, 10), np.float32)
    amap[1:3, 1:4] = 2.0  # 6 cells
    amap[2, 2] = 5.0
    amap[6, 8] = 3.0  # 1 cell
    dets = map_regions(amap, 1.0, 8.0, 4.0)
    assert dets.labels == ("anomaly",)
    np.testing.assert_allclose(dets.scores, [5.0, 3.0])  # score-descending, max inside
    np.testing.assert_allclose(dets.boxes, [[8, 4, 32, 12], [64, 24, 72, 28]])
    # min_area is in image pixels: the one-cell region (8 x 4 = 32 px) goes at 33
    assert len(map_regions(amap, 1.0, 8.0, 4.0, min_area=32)) == 2
    assert len(map_regions(amap, 1.0, 8.0, 4.0, min_area=33)) == 1
    assert len(map_regions(amap, 5.0, 8.0, 4.0)) == 0  # strictly above the threshold


def test_image_score_is_the_map_maximum_and_verdict_strict() -> None:
    amap = np.full((4, 4), 0.5, np.float32)
    amap[3, 0] = 1.0
    at = anomaly_result(amap, {"threshold": 1.0}, 8, 8)
    assert at.score == 1.0 and not at.anomalous and len(at) == 0
    above = anomaly_result(amap, {"threshold": 0.99}, 8, 8)
    assert above.anomalous and len(above) == 1
    doc = above.to_json()
    assert set(doc) == {"score", "threshold", "anomalous", "regions"}
    assert doc["regions"][0]["box"] == [0.0, 24.0, 8.0, 32.0]
    json.dumps(doc)


def test_decoder_maps_cells_through_the_transform() -> None:
    decode = get_decoder("anomaly")
    amap = np.zeros((1, 1, 8, 8), np.float32)
    amap[0, 0, 2, 3] = 1.0
    # a 128 x 128 image stretched into the 64 x 64 input: a cell is 16 image pixels
    res = decode([amap], {"threshold": 0.5, "input_size": [64, 64]},
                 Transform(0.5, 0.5, 0.0, 0.0, 128, 128), None)
    assert isinstance(res, AnomalyResult)
    np.testing.assert_allclose(res.regions.boxes, [[48, 32, 64, 48]])


def test_merge_averages_overlaps_and_keeps_a_region_across_tiles_whole() -> None:
    merge = AnomalyMapMerge(96, 64, TileMergeOptions(decoder="anomaly",
                                                     decoder_params={"threshold": 0.5}))
    left, right = np.zeros((8, 8), np.float32), np.zeros((8, 8), np.float32)
    left[3:5, 6:8] = 1.0  # the defect spans the left tile's right edge ...
    right[3:5, 2:4] = 1.0  # ... and is seen again by the right tile (offset 32 px = 4 cells)
    right[0, 0] = 0.4  # an overlap cell: the mean of the two tiles (0 and 0.4) is 0.2
    for m, tile in ((left, Tile(0, 0, 64, 64)), (right, Tile(32, 0, 96, 64))):
        merge.add(anomaly_result(m, {"threshold": 0.5}, 8, 8), tile)
    res = merge.result()
    assert res.map.shape == (8, 12)
    assert res.map[0, 4] == pytest.approx(0.2)
    assert len(res) == 1
    np.testing.assert_allclose(res.regions.boxes, [[48, 24, 64, 40]])


def _brightness_model(batch: int | str = "N") -> onnx.ModelProto:
    """image [B, 3, 64, 64] (0..1) -> anomaly_map [B, 1, 8, 8]: mean brightness per cell."""
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["grey"], axes=[1], keepdims=1),
        helper.make_node("AveragePool", ["grey"], ["anomaly_map"], kernel_shape=[8, 8],
                         strides=[8, 8]),
    ]
    graph = helper.make_graph(
        nodes, "brightness",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, TILE, TILE])],
        [helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, [batch, 1, 8, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture
def brightness_artifact(tmp_path: Path) -> Artifact:
    path = tmp_path / "bright.onnx"
    onnx.save(_brightness_model(), str(path))
    return Artifact.create(
        tmp_path / "art", path, name="bright", task="anomaly-detection",
        inputs=(InputSpec(name="image", shape=(1, 3, TILE, TILE)),), outputs=("anomaly_map",),
        preprocess=Preprocess(resize="stretch", scale=1 / 255), labels=["anomaly"],
        decoder="anomaly", decoder_params={"threshold": 0.5, "input_size": [TILE, TILE]},
        source=SourceInfo(name="test"),
    )


def _frame(h: int, w: int, square: tuple[int, int, int, int]) -> np.ndarray:
    frame = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = square
    frame[y1:y2, x1:x2] = 255
    return frame


def test_tiled_run_merges_tile_maps_into_frame_regions(brightness_artifact: Artifact) -> None:
    # a bright square (cell-aligned) across tile borders of a 200 x 152 frame (overlap 0.25)
    square = (40, 32, 96, 80)
    frame = _frame(152, 200, square)
    with Engine(brightness_artifact) as engine:
        predictor = TiledPredictor(engine, tile=TILE, overlap=0.25, batch=3)
        tiles = predictor.tiles(152, 200)
        assert all(t.x0 % 8 == 0 and t.y0 % 8 == 0 for t in tiles) and len(tiles) == 12
        pred = predictor.predict(frame)
    res = pred.result
    assert isinstance(res, AnomalyResult) and pred.tiles == len(tile_grid(152, 200, TILE, 0.25))
    assert res.map.shape == (19, 25)
    assert res.score == pytest.approx(1.0) and res.anomalous
    assert len(res) == 1
    np.testing.assert_allclose(res.regions.boxes[0], square)
    assert pred.detections is res  # the older name of the result


def test_tiled_run_refuses_full_frame_for_maps(brightness_artifact: Artifact) -> None:
    with Engine(brightness_artifact) as engine:
        predictor = TiledPredictor(engine, tile=TILE, full_frame=True)
        with pytest.raises(Exception, match="full-frame"):
            predictor.predict(_frame(100, 100, (0, 0, 8, 8)))


def test_heat_map_overlay_marks_the_region(brightness_artifact: Artifact) -> None:
    frame = _frame(64, 64, (16, 16, 32, 32))
    with Engine(brightness_artifact) as engine:
        res = Predictor(engine).predict(frame).result
    drawn = annotate(frame, res)
    assert drawn.shape == frame.shape
    # the hot square is tinted red-ish by JET; far cells stay as they were (black)
    assert drawn[24, 24, 2] > 100 and np.array_equal(drawn[60, 60], frame[60, 60])


def test_run_json_reports_score_and_regions(brightness_artifact: Artifact, tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    image = tmp_path / "part.png"
    cv2.imwrite(str(image), _frame(64, 64, (8, 8, 24, 16)))
    save = tmp_path / "saved"
    assert main(["run", str(brightness_artifact.path), "--source", str(image), "--json",
                 "--save", str(save)]) == 0
    doc = json.loads(capsys.readouterr().out)  # one document on a finite source
    result = doc["frames"][0]["result"]
    assert result["anomalous"] is True and result["score"] == pytest.approx(1.0)
    assert result["threshold"] == 0.5
    assert [r["box"] for r in result["regions"]] == [[8.0, 8.0, 24.0, 16.0]]
    assert result["regions"][0]["label"] == "anomaly"
    assert "summary" in doc and (save / "part.jpg").exists()
