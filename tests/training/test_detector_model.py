"""The detector's torch weights recovered from the shipped ONNX: exact on real inputs, re-exported
to the very same file, BatchNorm statistics restored without changing eval outputs, and a class
head replaced keeping the classes it knew."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from edgeinfer.errors import ModelLoadError
from edgeinfer.synthetic.defects import make_frame
from edgeinfer.training.detector_model import (
    DefectDetector,
    calibrate_batchnorm,
    detector_from_onnx,
    export_detector,
    load_onnx_weights,
    replace_class_head,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "edgeinfer" / "data" / "defects" / "defect-detector.onnx"


@pytest.fixture(scope="module")
def real_inputs() -> np.ndarray:
    """Two 160 px crops of a generated frame (the shipped model's own kind of input), around
    defects."""
    img, boxes, _ = make_frame(999_990_005, 960, 640, n_defects=12)
    crops = []
    for b in boxes[:2]:
        x, y = (int(np.clip(v - 60, 0, lim - 160)) for v, lim in zip(b[:2], (960, 640),
                                                                        strict=True))
        crops.append(img[y : y + 160, x : x + 160])
    return np.stack([c[..., ::-1].transpose(2, 0, 1) for c in crops]).astype(np.float32) / 255


@pytest.fixture(scope="module")
def recovered() -> DefectDetector:
    torch.set_num_threads(2)
    return detector_from_onnx(SHIPPED)


def test_recovered_weights_reproduce_the_onnx_outputs(recovered, real_inputs) -> None:
    sess = ort.InferenceSession(str(SHIPPED), providers=["CPUExecutionProvider"])
    (ref,) = sess.run(None, {"images": real_inputs})
    with torch.no_grad():
        ours = recovered(torch.from_numpy(real_inputs)).numpy()
    assert ours.shape == ref.shape == (2, 8, 20 * 20 + 10 * 10)
    np.testing.assert_allclose(ours[:, 4:], ref[:, 4:], atol=1e-5)  # scores
    np.testing.assert_allclose(ours[:, :4], ref[:, :4], atol=5e-3)  # boxes, pixels


@pytest.mark.slow
def test_re_export_is_byte_identical_to_the_shipped_file(recovered, tmp_path) -> None:
    path = export_detector(recovered, tmp_path / "d.onnx")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(
        SHIPPED.read_bytes()).hexdigest()


def test_calibrated_batchnorm_keeps_eval_outputs_and_has_real_statistics(real_inputs) -> None:
    model = detector_from_onnx(SHIPPED)
    x = torch.from_numpy(real_inputs)
    with torch.no_grad():
        before = model(x)
        bn = model.stem[0].bn
        assert float(bn.running_mean.abs().max()) == 0  # identity after recovery
        calibrate_batchnorm(model, [x])
        after = model(x)
        torch.testing.assert_close(after, before, atol=5e-3, rtol=1e-4)
        assert float(bn.running_mean.abs().max()) > 0
        # training mode normalises with the batch's own statistics: on the calibration batch
        # they are the running ones, so training starts where eval mode is
        model.train()
        _, logits, _ = model.raw(x)
        model.eval()
        scores = logits.sigmoid().transpose(1, 2)
        torch.testing.assert_close(scores, before[:, 4:], atol=1e-3, rtol=1e-3)


def test_new_class_head_keeps_the_classes_it_knew(recovered, real_inputs) -> None:
    model = detector_from_onnx(SHIPPED)
    carried = replace_class_head(model, ["hole", "spot", "scratch"],
                                 ["scratch", "spot", "crack", "dent"])
    assert carried == ["spot", "scratch"] and model.num_classes == 3
    x = torch.from_numpy(real_inputs)
    with torch.no_grad():
        old, new = recovered(x), model(x)
    assert new.shape[1] == 4 + 3
    torch.testing.assert_close(new[:, :4], old[:, :4])  # boxes untouched
    torch.testing.assert_close(new[:, 5], old[:, 5])  # spot
    torch.testing.assert_close(new[:, 6], old[:, 4])  # scratch
    assert float(new[:, 4].max()) < 0.05  # the new class starts near 1%


def test_onnx_of_another_architecture_is_refused(tmp_path) -> None:
    path = export_detector(DefectDetector(2, width=4, head=8), tmp_path / "small.onnx", 64)
    assert detector_from_onnx(path).num_classes == 2  # its own sizes are read back
    with pytest.raises(ModelLoadError, match="another architecture"):
        load_onnx_weights(DefectDetector(2, width=8, head=8), path)
