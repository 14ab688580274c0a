"""Tiled inference on large frames: overhead against model time, and memory against frame size.

``TiledPredictor`` (640 px tiles, overlap 0.2, batches of 4 on a dynamic-batch model) on
SYNTHETIC inspection frames (``edgeinfer/synthetic/defects.py``) of 1 MP (1152x864), 5 MP
(2592x1944) and 20 MP (5184x3888). Each frame size runs in its own child process (this script
with ``--child``), so one size cannot move another's memory baseline. Per size:

- time per frame and per stage; the **overhead** is everything but the engine call: the stages
  slice + preprocess + decode + merge, and (stricter) the call's total minus inference, which
  adds the loop itself. Target: at most 10% of the model time.
- memory: the process's peak RSS during ``predict`` (``VmHWM`` reset at the start of the call),
  the RSS when the call began (engine loaded, frame in memory), the call's growth above that,
  and the frame's own size. Target: peak RSS flat within +-10% from 1 MP to 20 MP. The frame
  is the caller's (a 20 MP BGR frame is 58 MiB); the table gives the peak with and without it.

The detector is the zoo's ``defect-detector`` (trained on synthetic defects); ``--model``
takes any artifact or zoo name whose decoder gives Detections.

    .venv/bin/python benchmarks/tiling.py [--quick] [--model NAME_OR_PATH] [--batch 4]
        [--threads N] [--repeats 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"1MP": (864, 1152), "5MP": (1944, 2592), "20MP": (3888, 5184)}  # (height, width)
OVERHEAD_TARGET = 0.10
RSS_TARGET = 0.10


def _trim() -> None:
    gc.collect()
    name = ctypes.util.find_library("c")
    fn = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    if fn is not None:
        fn(0)


def resolve_model(model: str | None, workdir: Path) -> tuple[Path, str]:
    """(artifact or model path, description): ``--model``, else the zoo's defect detector."""
    from edgeinfer.loading import resolve

    del workdir  # artifacts of zoo names live in the user cache
    if model:
        return resolve(model), model
    return resolve("defect-detector"), "defect-detector (zoo, trained on synthetic defects)"


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One frame size in this process: load, generate the frame, warm up, measure."""
    import cv2
    import numpy as np

    from edgeinfer.loading import load
    from edgeinfer.machine import usable_cpus
    from edgeinfer.pipeline.tiled import STAGES, TiledPredictor
    from edgeinfer.runtime.backends import BackendOptions
    from edgeinfer.runtime.engine import Engine
    from edgeinfer.synthetic.defects import make_frame

    cv2.setNumThreads(1)  # the frame generator's threads must not linger into the timing
    height, width = SIZES[args.size]
    engine = Engine(load(args.artifact), "ort",
                    BackendOptions(threads=args.threads or usable_cpus()))
    frame, boxes, _ = make_frame(args.seed, width, height)
    del boxes
    _trim()
    predictor = TiledPredictor(engine, tile=640, overlap=0.2, batch=args.batch)
    for _ in range(2):  # warm-up: buffers, ORT's arena and memory pattern at this batch size
        predictor.predict(frame)
    runs = []
    for _ in range(args.repeats):
        _trim()
        t0 = time.perf_counter()
        pred = predictor.predict(frame)
        wall = (time.perf_counter() - t0) * 1e3
        runs.append({"wall_ms": wall, "times_ms": pred.times_ms,
                     "peak_rss": pred.peak_rss_bytes, "rss_before": pred.rss_before_bytes,
                     "detections": len(pred.detections)})
    med = {k: statistics.median(r["times_ms"][k] for r in runs) for k in (*STAGES, "total")}
    return {
        "size": args.size,
        "frame": [height, width],
        "megapixels": height * width / 1e6,
        "frame_bytes": int(frame.nbytes),
        "tiles": pred.tiles,
        "batches": pred.batches,
        "detections": runs[-1]["detections"],
        "median_ms": med,
        "stages_overhead_ms": med["slice"] + med["preprocess"] + med["decode"] + med["merge"],
        "call_overhead_ms": statistics.median(
            r["times_ms"]["total"] - r["times_ms"]["infer"] for r in runs),
        # the run with the highest peak, and where that run began
        **({"peak_rss": worst["peak_rss"], "rss_before": worst["rss_before"]}
           if (worst := max(runs, key=lambda r: r["peak_rss"] or 0))["peak_rss"]
           else {"peak_rss": None, "rss_before": None}),
        "runs": runs,
        "threads": args.threads or usable_cpus(),
        "numpy": np.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repeat per size")
    parser.add_argument("--model", help="artifact, model file or zoo name (default: see doc)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="ORT threads (0: all CPUs)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=9999_00)
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--artifact", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    if args.quick:
        args.repeats = 1
    sizes = [s for s in args.sizes.split(",") if s]
    with tempfile.TemporaryDirectory(prefix="tiling-bench-") as tmp:
        artifact, described = resolve_model(args.model, Path(tmp))
        results = []
        for size in sizes:
            cmd = [sys.executable, __file__, "--child", "--size", size, "--artifact",
                   str(artifact), "--batch", str(args.batch), "--threads", str(args.threads),
                   "--repeats", str(args.repeats), "--seed", str(args.seed)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
    report(results, described, args)
    if args.json:
        args.json.write_text(json.dumps({"model": described, "machine": platform.processor()
                                         or platform.machine(), "results": results}, indent=2))


def report(results: list[dict[str, Any]], described: str, args: argparse.Namespace) -> None:
    """Print the tables and the verdicts."""
    mib = 1 / 2**20
    print(f"model: {described}; tile 640, overlap 0.2, batch {args.batch}, "
          f"threads {results[0]['threads']}, median of {args.repeats} after a warm-up\n")
    print(f"{'frame':>6} {'px':>10} {'tiles':>5} {'ms/frame':>9} {'infer':>8} {'slice':>6} "
          f"{'prep':>6} {'decode':>6} {'merge':>6} {'overhead':>9} {'(total-infer)':>13} "
          f"{'dets':>5}")
    for r in results:
        m = r["median_ms"]
        h, w = r["frame"]
        print(f"{r['size']:>6} {w}x{h:<5} {r['tiles']:>5} {m['total']:>9.0f} {m['infer']:>8.0f} "
              f"{m['slice']:>6.1f} {m['preprocess']:>6.1f} {m['decode']:>6.1f} {m['merge']:>6.1f} "
              f"{r['stages_overhead_ms'] / m['infer']:>8.1%} "
              f"{r['call_overhead_ms'] / m['infer']:>13.1%} {r['detections']:>5}")
    print(f"\n{'frame':>6} {'frame MiB':>9} {'RSS before':>10} {'peak RSS':>9} {'growth':>7} "
          f"{'peak - frame':>12}   (MiB)")
    for r in results:
        if r["peak_rss"] is None:
            print(f"{r['size']:>6} (peak RSS not measurable here)")
            continue
        print(f"{r['size']:>6} {r['frame_bytes'] * mib:>9.1f} {r['rss_before'] * mib:>10.1f} "
              f"{r['peak_rss'] * mib:>9.1f} {(r['peak_rss'] - r['rss_before']) * mib:>7.1f} "
              f"{(r['peak_rss'] - r['frame_bytes']) * mib:>12.1f}")
    worst = max(r["call_overhead_ms"] / r["median_ms"]["infer"] for r in results)
    print(f"\noverhead (total - infer) at most {worst:.1%} of model time: "
          f"{'meets' if worst <= OVERHEAD_TARGET else 'MISSES'} the <= 10% target")
    measured = [r for r in results if r["peak_rss"] is not None]
    if len(measured) >= 2:
        lo, hi = measured[0], measured[-1]
        raw = hi["peak_rss"] / lo["peak_rss"] - 1
        net = (hi["peak_rss"] - hi["frame_bytes"]) / (lo["peak_rss"] - lo["frame_bytes"]) - 1
        growth = [(r["peak_rss"] - r["rss_before"]) * mib for r in (hi, lo)]
        print(f"peak RSS {hi['size']} vs {lo['size']}: {raw:+.1%} with the frame, {net:+.1%} "
              f"without it (+-10% target: {'meets' if abs(net) <= RSS_TARGET else 'MISSES'} "
              f"without the caller's frame, {'meets' if abs(raw) <= RSS_TARGET else 'misses'} "
              f"with it); the call's own growth {growth[1]:.1f} -> {growth[0]:.1f} MiB")


if __name__ == "__main__":
    main()
