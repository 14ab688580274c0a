"""The packaged defect detector (trained on SYNTHETIC data): loads, has the YOLOv8 export
layout, finds the defects of held-out tiles, and builds as the ``defect-detector`` zoo model."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgeinfer import zoo
from edgeinfer.loading import load
from edgeinfer.synthetic import defects as gen
from edgeinfer.vision.metrics import match_boxes

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "inspection"
MODEL = ROOT / "edgeinfer" / "data" / "defects" / "defect-detector.onnx"

#: held-out 640x640 crops (frame seed, x, y): frames of the test seed range (9999 * 100000 + k,
#: never trained on) drawn with 24 defects, at places that hold 7 whole defects each (14 in all,
#: every class), found by a scan of the first ten such frames
HELD_OUT = ((999_990_005, 1104, 512), (999_990_004, 1728, 1200))


def _load(name: str) -> ModuleType:
    """Import one of the example's modules (they import each other by plain name)."""
    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))
    module = importlib.import_module(name)
    assert Path(module.__file__).parent == EXAMPLE, f"another '{name}' module shadows the example"
    return module


ev = _load("evaluate")


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(str(MODEL), opts, providers=["CPUExecutionProvider"])


def test_shipped_model_is_small_opset17_with_dynamic_batch_and_size() -> None:
    assert MODEL.stat().st_size < 3_000_000
    model = onnx.load(str(MODEL))
    assert {o.domain: o.version for o in model.opset_import}[""] == 17
    (inp,) = model.graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "images" and dims[1] == 3
    assert all(isinstance(dims[i], str) for i in (0, 2, 3)), dims  # batch, height, width


def test_output_is_yolov8_layout(session) -> None:
    x = np.random.default_rng(0).random((2, 3, 640, 640), np.float32)
    (out,) = session.run(None, {"images": x})
    n = 80 * 80 + 40 * 40
    assert out.shape == (2, 4 + len(gen.CLASSES), n)
    assert (out[:, 2:4] > 0).all()  # widths and heights
    assert ((out[:, 4:] >= 0) & (out[:, 4:] <= 1)).all()  # sigmoid scores
    (one,) = session.run(None, {"images": x[1:]})
    np.testing.assert_allclose(one[0], out[1], rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("size", [320, 480])
def test_runs_at_other_sizes_with_the_grid_of_that_size(session, size) -> None:
    """The cell grid follows the input: at 320 and 480 the output has that size's cells, and
    a defect in a tile shrunk to ``size`` is found where it lies (centres in input pixels)."""
    import cv2

    img, boxes, _ = gen.crop(gen.make_frame(HELD_OUT[0][0], n_defects=24), *HELD_OUT[0][1:], 640)
    small = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    (out,) = session.run(None, {"images": ev.to_input(small)})
    assert out.shape == (1, 4 + len(gen.CLASSES), (size // 8) ** 2 + (size // 16) ** 2)
    cells = out[0].T
    best = cells[cells[:, 4:].max(1).argmax()]
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2 * (size / 640)
    assert np.hypot(*(centres - best[:2]).T).min() < 8, best[:4]


def test_finds_the_defects_of_held_out_tiles(session) -> None:
    found = total = 0
    for seed, x, y in HELD_OUT:
        img, boxes, classes = gen.crop(gen.make_frame(seed, n_defects=24), x, y, 640)
        (out,) = session.run(None, {"images": ev.to_input(img)})
        db, ds, dc = ev.decode(out[0], 0.25, 0.5)
        m = match_boxes(db, ds, boxes)
        hit = m >= 0
        found += int((classes[m[hit]] == dc[hit]).sum())
        total += len(boxes)
    assert total == 14
    assert found >= 0.9 * total, f"found {found} of {total} defects with the right class"


def test_zoo_builds_the_packaged_detector(tmp_path) -> None:
    artifact = load(zoo.get("defect-detector", tmp_path / "det").path)
    m = artifact.manifest
    assert m.task == "detection" and m.decoder == "yolo"
    assert m.decoder_params["num_classes"] == 4 and 0 < m.decoder_params["conf_threshold"] < 1
    assert m.inputs[0].name == "images" and m.inputs[0].shape == (1, 3, 640, 640)
    assert m.preprocess.resize == "letterbox" and m.preprocess.channel_order == "RGB"
    assert m.preprocess.scale == pytest.approx(1 / 255)
    assert artifact.labels() == list(gen.CLASSES)
    assert "SYNTHETIC" in m.source.origin


@pytest.mark.slow
def test_int8_keeps_the_detections(tmp_path) -> None:
    """Static INT8 of the detector through ``optimize``: the decode tail stays in float (one
    INT8 scale over pixels and scores would zero the scores), agreement is AP@0.5 against
    FP32's detections, and INT8 is recommended unless it timed slower (a CPU without VNNI)."""
    from edgeinfer.optimization.optimizer import OptimizeConfig, Samples, detection_decode

    art = load(zoo.get("defect-detector", tmp_path / "det").path)

    def tiles(seed: int, n: int) -> np.ndarray:
        return np.concatenate([ev.to_input(t[0]) for t in gen.make_tiles(seed, n, 640)])

    samples = Samples(tiles(11, 16), tiles(12, 16), origin="SYNTHETIC tiles",
                      decode=detection_decode(art))
    from edgeinfer.optimization.optimizer import optimize

    out = optimize(art.path, tmp_path / "int8", OptimizeConfig(latency_rounds=2, speed_check=False),
                   samples)
    report = out.manifest.reports["optimize"]
    assert report["result"]["agreement"]["metric"] == "det-ap50"
    # INT8 ships where it is faster (0.54x FP32 on the dev box's VNNI); on a CPU without
    # VNNI it may time no faster over 2 rounds: then the only allowed reason is speed
    assert not any("accuracy drop" in p for p in report["problems"]), report["problems"]
    assert report["recommended"] == "int8" or all(
        "slower than FP32" in p for p in report["problems"]), report["problems"]
    assert report["result"]["agreement"]["value"] >= 0.97
    rejected = sorted(out.path.glob("*.rejected.onnx"))
    model = onnx.load(str(rejected[0] if rejected else out.model_path))
    (final,) = [n for n in model.graph.node if n.output[0] == model.graph.output[0].name]
    assert final.op_type == "Concat"
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    assert all(producers.get(i) != "DequantizeLinear" for i in final.input)
