"""tune on the zoo models against each peer runtime's own defaults, run by hand, same process.

For each zoo model: ``edgeinfer tune`` (calibrated on the photographs installed packages carry,
see benchmarks/photos.py) picks a configuration. Then every peer runtime is run the way a user
would run it by hand, with its own defaults, on every model file tune built (kept with
``--keep-candidates``) and on the source file:

- onnxruntime: ``InferenceSession(path)`` with default options (threads = cores, spinning on);
- OpenVINO: ``Core().compile_model(path, "CPU")`` (its defaults: LATENCY-agnostic, and bf16
  inference where the CPU has the units);
- LiteRT: ``Interpreter(model_path=path)`` (XNNPACK, its default thread count).

The tuned Engine and all hand-run peers are timed in interleaved rounds (each round runs every
one in turn) on one held-out photo, so machine drift hits them alike. Printed: p50 of each,
``tuned / best hand-run`` (target <= 1.05) and ``ORT FP32 defaults / tuned`` (target >= 1.5 on
EfficientNet-Lite0 and PP-OCR det).

    .venv/bin/python benchmarks/tune_zoo.py [--models efficientnet-lite0,ppocrv4-det] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from photos import photo_paths

from edgeinfer import zoo
from edgeinfer.loading import load
from edgeinfer.optimization.evaluate import compare
from edgeinfer.optimization.optimizer import _drop as optimizer_drop
from edgeinfer.quantized_io import dequantize, quantize_input
from edgeinfer.runtime.engine import Engine
from edgeinfer.timing import time_rounds
from edgeinfer.tuning import TuneConfig, tune
from edgeinfer.tuning.measure import align, to_layout
from edgeinfer.vision.preprocess import read_image, to_tensor

MODELS = ("efficientnet-lite0", "ppocrv4-det", "blazeface-short")


def _photos_dir(tmp: Path) -> Path:
    d = tmp / "photos"
    d.mkdir()
    for i, p in enumerate(photo_paths()):
        (d / f"{i:03d}-{p.name}").symlink_to(p)
    return d


Runner = Callable[[np.ndarray], np.ndarray]


def _ort_default(path: Path) -> Runner:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def _ov_default(path: Path) -> Runner:
    import openvino as ov

    request = ov.Core().compile_model(str(path), "CPU").create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        request.infer([x])
        return request.get_output_tensor(0).data.copy()

    return run


def _litert_default(path: Path) -> Runner:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    d = interp.get_input_details()[0]
    o = interp.get_output_details()[0]

    def run(x: np.ndarray) -> np.ndarray:
        if np.dtype(d["dtype"]).kind in "iu":
            x = quantize_input(x, *d["quantization"], np.dtype(d["dtype"]))
        interp.set_tensor(d["index"], x)
        interp.invoke()
        y = interp.get_tensor(o["index"])
        return dequantize(y, *o["quantization"]) if np.dtype(o["dtype"]).kind in "iu" else y

    return run


def _peers(art_dir: Path, source: Path) -> dict[str, tuple[Runner, str]]:
    """Hand-run peers on the source file and on every candidate file tune kept:
    name -> (run(x) -> first output, the input layout it takes)."""
    files = sorted((art_dir / "candidates").iterdir())
    src = load(source)
    src_file, src_layout = src.model_path, src.manifest.inputs[0].layout
    peers: dict[str, tuple[Runner, str]] = {}
    if src_file.suffix == ".onnx":
        peers["ORT default, source fp32.onnx"] = (_ort_default(src_file), src_layout)
        peers["OpenVINO default, source fp32.onnx"] = (_ov_default(src_file), src_layout)
    else:
        peers["LiteRT default, source .tflite"] = (_litert_default(src_file), src_layout)
        peers["OpenVINO default, source .tflite"] = (_ov_default(src_file), src_layout)
    for f in files:
        if f.suffix == ".onnx":
            peers[f"ORT default, {f.name}"] = (_ort_default(f), "NCHW")
            peers[f"OpenVINO default, {f.name}"] = (_ov_default(f), "NCHW")
        elif f.suffix == ".tflite" and src_file.suffix == ".onnx":
            peers[f"LiteRT default, {f.name}"] = (_litert_default(f), "NHWC")
            if "int8" not in f.name:
                peers[f"OpenVINO default, {f.name}"] = (_ov_default(f), "NHWC")
    return peers


def _drop(reference: np.ndarray, outputs: np.ndarray) -> float:
    """tune's own drop measure (top-1 where FP32 is >= 0.5 sure, else 1 - cosine)."""
    ref = compare(reference, reference, None, 0.5)
    return optimizer_drop(ref, compare(reference, align(reference, outputs), None, 0.5), 0.5)


def bench_model(
    name: str, photos: Path, work: Path, quick: bool, calib_limit: int | None = None
) -> dict:
    """Tune one zoo model and time it against the hand-run peers."""
    source = work / name
    zoo.get(name, source)
    cfg = TuneConfig(
        screen_rounds=2 if quick else 3,
        final_rounds=3 if quick else 7,
        calib_limit=calib_limit or (64 if quick else 200),
    )
    t0 = time.perf_counter()
    art = tune(source, work / f"{name}-tuned", cfg, calib=photos, keep_candidates=True)
    tune_s = time.perf_counter() - t0
    m = art.manifest
    report = m.reports["tune"]
    src = load(source)
    spec = src.manifest.inputs[0]
    # Held-out photos for the accuracy check (the last ones; tune calibrated on a seeded
    # subset of all photos, so a few may overlap: say so in the doc), the first for timing.
    paths = sorted(photos.iterdir())[-(8 if quick else 24):]
    batch = []
    for path in paths:
        x, _ = to_tensor(read_image(path), spec, src.manifest.preprocess)
        batch.append(np.ascontiguousarray(to_layout(x, spec.layout, "NCHW"), np.float32))
    x = batch[0]
    engine = Engine(art)
    tuned = {engine.inputs[0].name: np.ascontiguousarray(to_layout(x, "NCHW", m.inputs[0].layout))}
    peers = _peers(art.path, source)
    ref_run, ref_layout = next(iter(peers.values()))  # the source file in its default runtime

    def outputs(run: Runner, layout: str) -> np.ndarray:
        return np.concatenate(
            [run(np.ascontiguousarray(to_layout(b, "NCHW", layout))) for b in batch]
        )

    reference = outputs(ref_run, ref_layout)
    drops = {k: _drop(reference, outputs(r, lay)) for k, (r, lay) in peers.items()}
    tuned_key = "edgeinfer tuned: " + report["winner"]
    drops[tuned_key] = _drop(
        reference,
        np.concatenate([
            engine.run({engine.inputs[0].name: np.ascontiguousarray(
                to_layout(b, "NCHW", m.inputs[0].layout))})[0] for b in batch
        ]),
    )
    runners = {tuned_key: lambda: engine.run(tuned)}
    for k, (run, layout) in peers.items():
        xl = np.ascontiguousarray(to_layout(x, "NCHW", layout))
        runners[k] = lambda run=run, xl=xl: run(xl)
    rounds, runs = (4, 5) if quick else (12, 10)
    samples = time_rounds(list(runners.values()), rounds, runs, warmup=5)
    p50 = {k: statistics.median(s) for k, s in zip(runners, samples, strict=True)}
    hand = {k: v for k, v in p50.items() if k != tuned_key}
    best = min(hand, key=hand.get)
    within = {k: v for k, v in hand.items() if drops[k] <= cfg.max_drop}
    best_ok = min(within, key=within.get)
    ort_fp32 = next((v for k, v in hand.items() if k.startswith("ORT default, source")), None)
    return {
        "model": name,
        "winner": report["winner"],
        "tune_seconds": tune_s,
        "p50_ms": p50,
        "drop": drops,
        "max_drop": cfg.max_drop,
        "tuned_ms": p50[tuned_key],
        "best_peer": best,
        "best_peer_ms": hand[best],
        "tuned_over_best_peer": p50[tuned_key] / hand[best],
        "best_peer_within_budget": best_ok,
        "tuned_over_best_peer_within_budget": p50[tuned_key] / hand[best_ok],
        "ort_fp32_default_over_tuned": (ort_fp32 / p50[tuned_key]) if ort_fp32 else None,
        "candidates": [
            {k: c[k] for k in ("label", "status", "drop", "screen_p50_ms", "reason")}
            | {"p50_ms": c.get("p50_ms")}
            for c in report["candidates"]
        ],
        "notes": report["notes"],
        "drop_metric": report["drop_metric"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--quick", action="store_true", help="fewer rounds: a smoke run")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--calib-limit", type=int, help="photos to read (default 200)")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="tune-zoo-") as tmp:
        photos = _photos_dir(Path(tmp))
        for name in args.models.split(","):
            r = bench_model(name, photos, Path(tmp), args.quick, args.calib_limit)
            results.append(r)
            print(f"\n== {name}: tune chose {r['winner']} in {r['tune_seconds']:.0f} s")
            for k, v in sorted(r["p50_ms"].items(), key=lambda kv: kv[1]):
                d = r["drop"][k]
                flag = "" if d <= r["max_drop"] else "  (over the accuracy budget)"
                print(f"  {v:8.3f} ms  drop {d:7.2%}  {k}{flag}")
            verdict = "PASS" if r["tuned_over_best_peer_within_budget"] <= 1.05 else "FAIL"
            print(f"  tuned / best hand-run within the budget ({r['best_peer_within_budget']}): "
                  f"{r['tuned_over_best_peer_within_budget']:.3f}  [{verdict}: target <= 1.05]")
            print(f"  tuned / best hand-run at any accuracy ({r['best_peer']}): "
                  f"{r['tuned_over_best_peer']:.3f}")
            if r["ort_fp32_default_over_tuned"] is not None:
                ok = "PASS" if r["ort_fp32_default_over_tuned"] >= 1.5 else "FAIL"
                print(f"  ORT FP32 defaults / tuned: {r['ort_fp32_default_over_tuned']:.2f}x  "
                      f"[{ok}: target >= 1.5x]")
            for c in r["candidates"]:
                if c["status"] != "ok":
                    print(f"  candidate {c['label']}: {c['status']} ({c['reason'][:90]})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
