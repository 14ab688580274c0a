"""INT8 on real labelled data: a small CNN trained here on scikit-learn's handwritten digits.

``sklearn.datasets.load_digits`` is 1797 real, labelled 8x8 handwritten digits shipped inside
scikit-learn (no download). The test trains deterministically (seeds, deterministic algorithms,
one thread), splits stratified into disjoint train / calibration / test, and checks that
``optimize`` at INT8 keeps the accuracy on the test labels within 1 point, and that its report's
accuracy really is accuracy against those labels. Self-contained: nothing is cached.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from edgeinfer.artifact import Artifact, InputSpec, SourceInfo
from edgeinfer.optimization.optimizer import OptimizeConfig, Samples, optimize

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
nn = torch.nn

SIDE = 16


def _splits(seed: int = 0):
    """Stratified 60/10/30 train/calibration/test, pixels / 16, upsampled to 16x16."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.nn.functional.interpolate(
        torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None],
        size=(SIDE, SIDE),
        mode="bilinear",
        align_corners=False,
    ).numpy()
    y = d.target.astype(np.int64)
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=0.30, stratify=y, random_state=seed)
    train, calib = train_test_split(rest, test_size=1 / 7, stratify=y[rest], random_state=seed)
    return (x[train], y[train]), (x[calib], y[calib]), (x[test], y[test])


def _train(x: np.ndarray, y: np.ndarray, epochs: int = 12) -> nn.Module:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, stride=2, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1, stride=2, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
        )  # fmt: skip
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
        steps = epochs * -(-len(x) // 64)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        gen = torch.Generator().manual_seed(0)
        model.train()
        for _ in range(epochs):
            perm = torch.randperm(len(xt), generator=gen)
            for i in range(0, len(xt), 64):
                b = perm[i : i + 64]
                loss = nn.functional.cross_entropy(model(xt[b]), yt[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        return model.eval()
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads)


def _ort_accuracy(path, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy computed directly with a plain onnxruntime session, independent of edgeinfer."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    pred = [int(sess.run(None, {name: s[None]})[0].argmax()) for s in x]
    return float((np.asarray(pred) == y).mean())


def test_int8_on_digits_keeps_accuracy_within_one_point(tmp_path):
    import edgeinfer

    (x_tr, y_tr), (x_cal, _), (x_te, y_te) = _splits()
    assert len(x_cal) == 180 and len(x_te) == 540
    model = _train(x_tr, y_tr)
    onnx_path = edgeinfer.export(model, torch.zeros(1, 1, SIDE, SIDE), tmp_path / "digits.onnx")
    art = Artifact.create(
        tmp_path / "digits-fp32", onnx_path, name="digits", task="classification",
        inputs=(InputSpec(name="input", shape=(1, 1, SIDE, SIDE)),), decoder="classification",
        labels=[str(i) for i in range(10)], source=SourceInfo(name="digits"),
    )  # fmt: skip
    fp32_acc = _ort_accuracy(art.model_path, x_te, y_te)
    assert fp32_acc >= 0.95  # a real classifier on real labelled data

    samples = Samples(
        calib=x_cal, evaluation=x_te, labels=tuple(int(t) for t in y_te), origin="sklearn digits"
    )
    out = optimize(
        art.path, tmp_path / "digits-int8", OptimizeConfig(precision="int8", max_drop=0.01), samples
    )
    rep = out.manifest.reports["optimize"]
    assert rep["samples"]["labels"] is True
    assert rep["samples"]["calibration"] == 180 and rep["samples"]["evaluation"] == 540
    # the report's accuracies are accuracies against the test labels, not agreement with FP32
    assert rep["fp32"]["accuracy"] == pytest.approx(fp32_acc, abs=1e-9)
    int8_acc = rep["result"]["agreement"]["accuracy"]
    assert rep["result"]["drop"] == pytest.approx(fp32_acc - int8_acc, abs=1e-9)
    # the INT8 model itself (shipped, or kept beside FP32 as *.rejected.onnx if it was slower)
    rejected = sorted(out.path.glob("*.rejected.onnx"))
    int8_file = rejected[0] if rejected else out.model_path
    assert int8_acc == pytest.approx(_ort_accuracy(int8_file, x_te, y_te), abs=1e-9)
    assert fp32_acc - int8_acc <= 0.01
    # whether INT8 ships can depend on the latency check (a ~20 us model): only accuracy is
    # asserted; a rejection must be for speed, never for accuracy
    assert not any("accuracy drop" in p for p in rep["problems"])
