"""``defect-detector-small``: the packaged detector compressed by ``edgeinfer compress``
(SYNTHETIC training data). A third of the MACs or less, the same interface (dynamic sizes, the
YOLOv8 layout, the ``yolo`` decoder), torch weights recoverable exactly (so ``train detector
--from defect-detector-small`` works), and it still finds held-out defects, also at half size
(multi-scale training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgeinfer import zoo
from edgeinfer.loading import load
from edgeinfer.model.inspect import inspect_model
from edgeinfer.synthetic import defects as gen
from edgeinfer.training.detect_eval import decode, to_input
from edgeinfer.vision.metrics import match_boxes

DATA = Path(__file__).resolve().parents[2] / "edgeinfer" / "data" / "defects"
SMALL, FULL = DATA / "defect-detector-small.onnx", DATA / "defect-detector.onnx"
#: the held-out crops of test_detector.py (frames of the test seed range, 14 defects)
HELD_OUT = ((999_990_005, 1104, 512), (999_990_004, 1728, 1200))


def _found(session: ort.InferenceSession, side: int) -> tuple[int, int]:
    """Defects found (IoU >= 0.5, any class) on the held-out crops resized to ``side``."""
    import cv2

    found = total = 0
    for seed, x, y in HELD_OUT:
        img, boxes, _ = gen.crop(gen.make_frame(seed, n_defects=24), x, y, 640)
        f = side / 640
        small = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA) if f != 1 else img
        (out,) = session.run(None, {"images": to_input(small)})
        db, ds, _ = decode(out[0], 0.25, 0.5, len(gen.CLASSES))
        found += int((match_boxes(db / f, ds, boxes) >= 0).sum())
        total += len(boxes)
    return found, total


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    return ort.InferenceSession(str(SMALL), providers=["CPUExecutionProvider"])


def test_a_third_of_the_macs_and_a_third_of_the_file() -> None:
    small = inspect_model(SMALL, input_shapes={"images": (1, 3, 640, 640)})
    full = inspect_model(FULL, input_shapes={"images": (1, 3, 640, 640)})
    assert full["macs"]["total"] >= 3 * small["macs"]["total"]
    assert FULL.stat().st_size >= 3 * SMALL.stat().st_size


@pytest.mark.parametrize("side", [640, 320])
def test_finds_held_out_defects_at_full_and_half_size(session: ort.InferenceSession,
                                                      side: int) -> None:
    found, total = _found(session, side)
    assert total == 14
    assert found >= (0.85 if side == 640 else 0.6) * total, (side, found, total)


def test_the_zoo_entry_runs_like_the_full_detector(tmp_path: Path) -> None:
    art = load(zoo.get("defect-detector-small", tmp_path / "small").path)
    m = art.manifest
    assert m.decoder == "yolo" and m.inputs[0].shape == (1, 3, 640, 640)
    assert art.labels() == list(gen.CLASSES) and "SYNTHETIC" in m.source.origin


def test_its_torch_weights_are_recovered_exactly() -> None:
    import torch

    from edgeinfer.training.detector_model import detector_from_onnx

    model = detector_from_onnx(SMALL)
    x = np.random.default_rng(0).random((1, 3, 320, 320), dtype=np.float32)
    (ref,) = ort.InferenceSession(str(SMALL), providers=["CPUExecutionProvider"]).run(
        None, {"images": x})
    with torch.no_grad():
        ours = model(torch.from_numpy(x)).numpy()
    assert np.abs(ours - ref).max() < 1e-2
