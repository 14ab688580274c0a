"""EfficientNet-Lite0 INT8: edgeinfer against onnxruntime's quantize_static defaults and TFLite
full-integer, side by side in one process, on natural photographs.

Data: the 257 natural photographs that PyPI packages carry (benchmarks/photos.py: ai-benchmark,
foolbox, scikit-image, scikit-learn), shuffled with a fixed seed and split three ways:
calibration (quantization ranges), validation (what edgeinfer's fallback search may look at)
and test (what this table reports: never seen by calibration or by the search).

Agreement is top-1 agreement with the FP32 ONNX model on the test photos: on all of them, and
on those where FP32's top-1 probability is >= 0.5 / >= 0.3. Latency: batch 1, median (p50) of
interleaved rounds, 2 threads, onnxruntime for ONNX models and LiteRT (XNNPACK) for TFLite.

    .venv/bin/python benchmarks/optimize_effnet.py [--calib 64] [--val 64] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import photos

import edgeinfer
from edgeinfer import zoo
from edgeinfer.optimization.calibration import CalibrationReader
from edgeinfer.optimization.evaluate import compare, run_outputs, time_interleaved
from edgeinfer.optimization.optimizer import OptimizeConfig, Samples, optimize
from edgeinfer.optimization.passes import optimize_graph
from edgeinfer.ort_session import open_session
from edgeinfer.runtime.backends import BackendOptions
from edgeinfer.runtime.engine import Engine
from edgeinfer.vision.preprocess import read_image, to_tensor

THREADS = 2


def _inputs(artifact: edgeinfer.Artifact, paths: list[Path]) -> np.ndarray:
    spec, pre = artifact.manifest.inputs[0], artifact.manifest.preprocess
    return np.stack([to_tensor(read_image(p), spec, pre)[0][0] for p in paths])


def _ort_defaults(fp32: Path, dst: Path, calib: np.ndarray) -> Path:
    """The peer: onnxruntime's quantize_static with every setting left at its default."""
    from onnxruntime.quantization import quantize_static

    quantize_static(str(fp32), str(dst), CalibrationReader(calib, "input"))
    return dst


def _tflite_outputs(art: edgeinfer.Artifact, x: np.ndarray) -> tuple[np.ndarray, Engine]:
    engine = Engine(art, options=BackendOptions(threads=THREADS))
    name = engine.inputs[0].name
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    return np.concatenate([engine.run({name: s[None]})[0] for s in nhwc]), engine


def main() -> None:
    """Run every candidate and print the comparison table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calib", type=int, default=64)
    parser.add_argument("--val", type=int, default=64)
    parser.add_argument("--max-drop", type=float, default=0.01)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    console = Console(width=200, stderr=args.json)

    paths = photos.photo_paths()
    order = np.random.default_rng(0).permutation(len(paths))
    split = [paths[i] for i in order]
    cal_p, val_p = split[: args.calib], split[args.calib : args.calib + args.val]
    test_p = split[args.calib + args.val :]
    with tempfile.TemporaryDirectory(prefix="bench-effnet-") as tmp_dir:
        tmp = Path(tmp_dir)
        art = zoo.get("efficientnet-lite0", tmp / "fp32")
        cal, val, test = _inputs(art, cal_p), _inputs(art, val_p), _inputs(art, test_p)
        fp32 = optimize_graph(art.model_path, tmp / "fp32.onnx")
        ref = run_outputs(fp32, test)

        onnx_models: dict[str, Path] = {"ONNX Runtime FP32": fp32}
        onnx_models["ORT quantize_static defaults"] = _ort_defaults(fp32, tmp / "ortq.onnx", cal)
        samples = Samples(cal, val, origin="benchmarks/photos.py calibration/validation split")
        reports = {}
        variants = {
            "edgeinfer int8": {"precision": "int8"},
            # ORT's default calibration (per-tensor MinMax) makes plain INT8 lose agreement:
            # the fallback has to find a float/INT8 split by itself.
            "edgeinfer int8, per-tensor minmax + fallback": {
                "precision": "int8",
                "per_channel": False,
                "calib_method": "minmax",
            },
            "edgeinfer mixed, per-tensor minmax + fallback": {
                "precision": "mixed",
                "per_channel": False,
                "calib_method": "minmax",
            },
        }
        for label, kw in variants.items():
            config = OptimizeConfig(max_drop=args.max_drop, threads=THREADS, **kw)
            out = optimize(art.path, tmp / str(len(reports)), config, samples)
            report = out.manifest.reports["optimize"]
            reports[label] = report
            # Report what the search produced, even where it recommends FP32.
            rejected = list(out.path.glob("*.rejected.onnx"))
            onnx_models[label] = rejected[0] if rejected else out.model_path
        plain_out = optimize(
            art.path,
            tmp / "plain",
            OptimizeConfig(precision="int8", fallback=False, max_drop=1.0, threads=THREADS),
            samples,
        )
        onnx_models["edgeinfer int8, fallback off"] = plain_out.model_path

        rows = {}
        for name, path in onnx_models.items():
            rows[name] = {
                "path": path,
                "outputs": run_outputs(path, test),
                "bytes": path.stat().st_size,
            }
        sessions = [open_session(r["path"], threads=THREADS) for r in rows.values()]
        runners = [partial(s.run, None, {"input": test[0][None]}) for s in sessions]

        tfl = edgeinfer.convert(
            art.path,
            tmp / "tfl8",
            edgeinfer.ConvertConfig("tflite", int8=True),
            calib=_npy(tmp, cal),
        )
        tfl32 = edgeinfer.convert(
            art.path, tmp / "tfl32", edgeinfer.ConvertConfig("tflite"), calib=_npy(tmp, cal[:20])
        )
        for name, a in (
            ("TFLite FP32 (LiteRT)", tfl32),
            ("TFLite full-integer (TF converter)", tfl),
        ):
            outputs, engine = _tflite_outputs(a, test)
            rows[name] = {"outputs": outputs, "bytes": a.model_path.stat().st_size}
            feed = {engine.inputs[0].name: np.ascontiguousarray(test[:1].transpose(0, 2, 3, 1))}
            runners.append(partial(engine.run, feed))
        latencies = time_interleaved(runners, rounds=7, runs=10)

    base = rows["ONNX Runtime FP32"]
    # Photos of ImageNet-class objects (ai-benchmark's classification set, foolbox, scikit-image,
    # scikit-learn) vs street scenes and cats, where the classifier has no single right class.
    scenes = np.array([("enhancement" in str(p)) or ("segmentation" in str(p)) for p in test_p])
    table = Table(
        title=f"EfficientNet-Lite0 on {len(test_p)} held-out photos "
        f"(calibration {len(cal_p)}, validation {len(val_p)}), {THREADS} threads"
    )
    for col in (
        "model",
        "size MB",
        "size ratio",
        "p50 ms",
        "p90 ms",
        "p50 ratio",
        "agree all",
        "agree conf>=0.5",
        "agree conf>=0.3",
        f"agree object photos ({int((~scenes).sum())})",
    ):
        table.add_column(col, justify="left" if col == "model" else "right")
    result = {}
    for (name, row), lat in zip(rows.items(), latencies, strict=True):
        agree = compare(ref, row["outputs"])
        objects = compare(ref[~scenes], row["outputs"][~scenes])
        result[name] = {
            "bytes": row["bytes"],
            "size_ratio": row["bytes"] / base["bytes"],
            "p50_ms": lat.p50,
            "p90_ms": lat.p90,
            "p50_ratio": lat.p50 / latencies[0].p50,
            "agreement": agree.value,
            "agreement_conf_0.5": agree.by_confidence.get(">=0.5"),
            "agreement_conf_0.3": agree.by_confidence.get(">=0.3"),
            "agreement_object_photos": objects.value,
        }
        r = result[name]
        table.add_row(
            name,
            f"{r['bytes'] / 1e6:.2f}",
            f"{r['size_ratio']:.2f}x",
            f"{lat.p50:.2f}",
            f"{lat.p90:.2f}",
            f"{r['p50_ratio']:.2f}x",
            f"{agree.value:.3f}",
            _fmt(r["agreement_conf_0.5"]),
            _fmt(r["agreement_conf_0.3"]),
            f"{objects.value:.3f}",
        )
    probs = np.exp(ref - ref.max(1, keepdims=True))
    conf = (probs / probs.sum(1, keepdims=True)).max(1)
    extra = {
        "test_photos": len(test_p),
        "conf>=0.5": int((conf >= 0.5).sum()),
        "conf>=0.3": int((conf >= 0.3).sum()),
        "kept_in_float": {p: reports[p]["kept_in_float"] for p in reports},
        "recommended": {p: reports[p]["recommended"] for p in reports},
        "tflite_fp32_cosine": tfl32.manifest.reports["convert"]["cosine"],
        "tflite_int8_top1_vs_onnx": tfl.manifest.reports["convert"]["top1_agreement"],
    }
    if args.json:
        print(json.dumps({"rows": result, **extra}, indent=2))
        return
    console.print(table)
    console.print(
        f"test photos with FP32 confidence >=0.5: {extra['conf>=0.5']}, >=0.3: {extra['conf>=0.3']}"
    )
    for p in reports:
        plain = reports[p].get("plain_int8", {}).get("by_confidence", {})
        console.print(
            f"{p}: plain INT8 agreement on validation {plain}; kept in float "
            f"{extra['kept_in_float'][p]}; recommended {extra['recommended'][p]}; "
            f"problems {reports[p]['problems']}"
        )
    console.print(f"TFLite FP32 cosine vs ONNX (worst sample): {extra['tflite_fp32_cosine']:.5f}")


def _npy(tmp: Path, x: np.ndarray) -> Path:
    path = tmp / f"calib-{len(x)}.npy"
    np.save(path, x)
    return path


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


if __name__ == "__main__":
    main()
