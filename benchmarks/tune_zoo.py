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
from edgeinfer.api import load
from edgeinfer.quantized_io import quantize_input
from edgeinfer.runtime.engine import Engine
from edgeinfer.tuning import TuneConfig, tune
from edgeinfer.tuning.measure import time_rounds, to_layout
from edgeinfer.vision.preprocess import read_image, to_tensor

MODELS = ("efficientnet-lite0", "ppocrv4-det", "blazeface-short")


def _photos_dir(tmp: Path) -> Path:
    d = tmp / "photos"
    d.mkdir()
    for i, p in enumerate(photo_paths()):
        (d / f"{i:03d}-{p.name}").symlink_to(p)
    return d


def _ort_default(path: Path, x: np.ndarray) -> Callable[[], object]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {sess.get_inputs()[0].name: x}
    return lambda: sess.run(None, feeds)


def _ov_default(path: Path, x: np.ndarray) -> Callable[[], object]:
    import openvino as ov

    request = ov.Core().compile_model(str(path), "CPU").create_infer_request()
    return lambda: request.infer([x])


def _litert_default(path: Path, x: np.ndarray) -> Callable[[], object]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    d = interp.get_input_details()[0]
    if np.dtype(d["dtype"]).kind in "iu":
        x = quantize_input(x, *d["quantization"], np.dtype(d["dtype"]))
    index, out = d["index"], interp.get_output_details()[0]["index"]

    def run() -> object:
        interp.set_tensor(index, x)
        interp.invoke()
        return interp.get_tensor(out)

    return run


def _peers(art_dir: Path, source: Path, x_nchw: np.ndarray, src_layout: str) -> dict:
    """Hand-run peers on the source file and on every candidate file tune kept."""
    files = sorted((art_dir / "candidates").iterdir())
    src_model = load(source)
    src_file = src_model.model_path
    x_src = to_layout(x_nchw, "NCHW", src_layout)
    peers: dict[str, Callable[[], object]] = {}
    if src_file.suffix == ".onnx":
        peers["ORT default, source fp32.onnx"] = _ort_default(src_file, x_src)
        peers["OpenVINO default, source fp32.onnx"] = _ov_default(src_file, x_src)
    else:
        peers["LiteRT default, source .tflite"] = _litert_default(src_file, x_src)
        peers["OpenVINO default, source .tflite"] = _ov_default(src_file, x_src)
    for f in files:
        if f.suffix == ".onnx":
            peers[f"ORT default, {f.name}"] = _ort_default(f, x_nchw)
            peers[f"OpenVINO default, {f.name}"] = _ov_default(f, x_nchw)
        elif f.suffix == ".tflite" and src_file.suffix == ".onnx":
            x = to_layout(x_nchw, "NCHW", "NHWC")
            peers[f"LiteRT default, {f.name}"] = _litert_default(f, np.ascontiguousarray(x))
            if "int8" not in f.name:
                peers[f"OpenVINO default, {f.name}"] = _ov_default(f, np.ascontiguousarray(x))
    return peers


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
    # One held-out photo (the last one; tune calibrates on a seeded subset and holds out 30%).
    image = read_image(sorted(photos.iterdir())[-1])
    x, _ = to_tensor(image, spec, src.manifest.preprocess)
    x = np.ascontiguousarray(to_layout(x, spec.layout, "NCHW"), np.float32)
    engine = Engine(art)
    feed = np.ascontiguousarray(to_layout(x, "NCHW", m.inputs[0].layout))
    tuned = {engine.inputs[0].name: feed}
    runners = {"edgeinfer tuned: " + report["winner"]: lambda: engine.run(tuned)}
    runners.update(_peers(art.path, source, x, spec.layout))
    rounds, runs = (4, 5) if quick else (12, 10)
    samples = time_rounds(list(runners.values()), rounds, runs, warmup=5)
    p50 = {k: statistics.median(s) for k, s in zip(runners, samples, strict=True)}
    tuned_key = next(iter(runners))
    peers = {k: v for k, v in p50.items() if k != tuned_key}
    best = min(peers, key=peers.get)
    ort_fp32 = next(v for k, v in peers.items() if k.startswith("ORT default, source"))  \
        if any(k.startswith("ORT default, source") for k in peers) else None
    return {
        "model": name,
        "winner": report["winner"],
        "tune_seconds": tune_s,
        "p50_ms": p50,
        "tuned_ms": p50[tuned_key],
        "best_peer": best,
        "best_peer_ms": peers[best],
        "tuned_over_best_peer": p50[tuned_key] / peers[best],
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
                print(f"  {v:8.3f} ms  {k}")
            verdict = "PASS" if r["tuned_over_best_peer"] <= 1.05 else "FAIL"
            print(f"  tuned / best hand-run ({r['best_peer']}): "
                  f"{r['tuned_over_best_peer']:.3f}  [{verdict}: target <= 1.05]")
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
