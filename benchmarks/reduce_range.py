"""The accuracy cost of ``reduce_range`` (7-bit INT8 weights), side by side in one process.

On x86 CPUs without VNNI, optimize quantizes with ``reduce_range`` (onnxruntime's advice against
VPMADDUBSW saturation). Its accuracy cost is a property of the 7-bit weights, not of the CPU:
the integer results are exact wherever they are computed, so forcing ``reduce_range`` on a
VNNI machine measures what an AVX2-only machine gets. Its speed is a property of the CPU and is
not what this script is about (latency is printed for this machine only).

Model: EfficientNet-Lite0 (zoo). Data: the 257 natural photographs PyPI packages carry
(benchmarks/photos.py), shuffled with a fixed seed; the first ``--calib`` calibrate, the rest
are the held-out test set. Agreement: top-1 agreement with FP32 on the test photos, all of them
and where FP32's top-1 probability is >= 0.5 / >= 0.3, each with its 95% Wilson interval.

    .venv/bin/python benchmarks/reduce_range.py [--calib 64] [--json]
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

from edgeinfer import zoo
from edgeinfer.machine import machine_line
from edgeinfer.optimization import quantize as q
from edgeinfer.optimization.calibration import CalibrationReader
from edgeinfer.optimization.evaluate import run_outputs, time_interleaved
from edgeinfer.optimization.int8 import features_text
from edgeinfer.optimization.passes import optimize_graph
from edgeinfer.ort_session import open_session
from edgeinfer.stats import wilson_interval
from edgeinfer.vision.preprocess import read_image, to_tensor

THREADS = 2


def _agreement(ref: np.ndarray, out: np.ndarray, conf: np.ndarray, t: float) -> dict:
    mask = conf >= t
    k = int((ref.argmax(1)[mask] == out.argmax(1)[mask]).sum())
    n = int(mask.sum())
    lo, hi = wilson_interval(k, n)
    return {"agree": k / n if n else None, "low": lo, "high": hi, "n": n}


def main() -> None:
    """Quantize with and without reduce_range, compare on held-out photos, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calib", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    console = Console(width=160, stderr=args.json)
    paths = photos.photo_paths()
    order = np.random.default_rng(0).permutation(len(paths))
    cal_p = [paths[i] for i in order[: args.calib]]
    test_p = [paths[i] for i in order[args.calib:]]
    with tempfile.TemporaryDirectory(prefix="bench-rr-") as tmp_dir:
        tmp = Path(tmp_dir)
        art = zoo.get("efficientnet-lite0", tmp / "fp32")
        spec, pre = art.manifest.inputs[0], art.manifest.preprocess
        cal = np.stack([to_tensor(read_image(p), spec, pre)[0][0] for p in cal_p])
        test = np.stack([to_tensor(read_image(p), spec, pre)[0][0] for p in test_p])
        fp32 = optimize_graph(art.model_path, tmp / "fp32.onnx")
        models = {"FP32": fp32}
        for per_channel in (True, False):
            for rr in (False, True):
                name = (f"INT8 {'per-channel' if per_channel else 'per-tensor'}, "
                        f"{'reduce_range (7-bit weights)' if rr else 'full range'}")
                settings = q.QuantSettings(per_channel=per_channel, reduce_range=rr)
                models[name] = q.quantize_int8_static(
                    fp32, tmp / f"m{len(models)}.onnx", CalibrationReader(cal, "input"), settings)
        outs = {k: run_outputs(p, test) for k, p in models.items()}
        sessions = [open_session(p, threads=THREADS) for p in models.values()]
        runners = [partial(s.run, None, {"input": test[:1]}) for s in sessions]
        latencies = time_interleaved(runners, rounds=7, runs=10)
    ref = outs["FP32"]
    probs = np.exp(ref - ref.max(1, keepdims=True))
    conf = (probs / probs.sum(1, keepdims=True)).max(1)
    rows = {}
    for (name, out), lat in zip(outs.items(), latencies, strict=True):
        rows[name] = {t: _agreement(ref, out, conf, t) for t in (0.0, 0.3, 0.5)}
        rows[name]["p50_ms"] = lat.p50
    doc = {"machine": machine_line(), "cpu": features_text(), "calibration": len(cal_p),
           "test": len(test_p), "threads": THREADS, "rows": rows}
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    table = Table(title=f"EfficientNet-Lite0 INT8 on {len(test_p)} held-out photos "
                        f"(calibration {len(cal_p)}): top-1 agreement with FP32 [95% interval]")
    for col in ("model", "all", "FP32 conf >= 0.3", "FP32 conf >= 0.5", "p50 ms (this CPU)"):
        table.add_column(col, justify="left" if col == "model" else "right")

    def cell(a: dict) -> str:
        return f"{a['agree']:.3f} [{a['low']:.3f}-{a['high']:.3f}] n={a['n']}"

    for name, r in rows.items():
        table.add_row(name, cell(r[0.0]), cell(r[0.3]), cell(r[0.5]), f"{r['p50_ms']:.2f}")
    console.print(table)
    console.print(f"{doc['machine']}; {doc['cpu']}")


if __name__ == "__main__":
    main()
