"""How long ``optimize --precision int8`` takes to answer "INT8 not faster here" on PP-OCRv4 det
(about 400 ONNX nodes), against the same request without the speed check (full calibration,
plain INT8, the fallback search), side by side in one process.

The speed check times full INT8 against FP32 with the real interleaved onnxruntime timer. On a
CPU with VNNI, INT8 is faster and optimize goes on; to time the stop branch here, the timer
reports what it measured with the INT8 latency multiplied by ``--force-slower`` (default 1.5,
as on a CPU without VNNI where INT8 ran 1.14-1.31x FP32); everything else is real work. Data:
SYNTHETIC text pages (dark Hershey text on light noise), 640x640 letterboxed.

    .venv/bin/python benchmarks/int8_speed_check.py [--pages 24] [--skip-full] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from edgeinfer import zoo
from edgeinfer.machine import machine_line
from edgeinfer.optimization.evaluate import interleaved_latency
from edgeinfer.optimization.int8 import features_text
from edgeinfer.optimization.optimizer import OptimizeConfig, optimize_with_calibration


def write_pages(folder: Path, n: int, seed: int = 0) -> Path:
    """``n`` SYNTHETIC text pages, 640x480."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    words = ["EDGE", "infer", "2024", "TEXT", "model", "import", "camera", "serial A-42"]
    for i in range(n):
        img = np.full((480, 640, 3), 230, np.uint8)
        img += rng.integers(0, 20, img.shape, dtype=np.uint8)
        for k in range(6):
            text = " ".join(rng.choice(words, 3))
            cv2.putText(img, text, (int(rng.integers(10, 200)), 60 + 70 * k),
                        cv2.FONT_HERSHEY_SIMPLEX, float(rng.uniform(0.8, 1.4)),
                        (int(rng.integers(0, 60)),) * 3, 2, cv2.LINE_AA)
        cv2.imwrite(str(folder / f"page{i:02d}.png"), img)
    return folder


def forced_slower(factor: float, rounds: int):
    """The real timer, with every model after the first reported ``factor`` times slower."""
    def timer(paths, sample):
        lats = interleaved_latency(paths, sample, rounds=rounds)
        return [lats[0]] + [replace(x, p50=x.p50 * factor, p90=x.p90 * factor) for x in lats[1:]]
    return timer


def main() -> None:
    """Time the stop branch and, unless --skip-full, the search it saves."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=24)
    parser.add_argument("--force-slower", type=float, default=1.5)
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench-speed-") as tmp_dir:
        tmp = Path(tmp_dir)
        pages = write_pages(tmp / "pages", args.pages)
        art = zoo.get("ppocrv4-det", tmp / "det")
        config = OptimizeConfig(precision="int8")
        t0 = time.perf_counter()
        out = optimize_with_calibration(
            art.path, tmp / "stopped", config, calib=pages,
            timer=forced_slower(args.force_slower, config.latency_rounds))
        report = out.manifest.reports["optimize"]
        check = report["int8_speed_check"]
        rows["speed check, stop branch"] = {
            "seconds": time.perf_counter() - t0, "check_seconds": check["seconds"],
            "measured_int8_over_fp32": check["ratio"] / args.force_slower,
            "answer": report["problems"][0],
        }
        if not args.skip_full:
            t0 = time.perf_counter()
            out = optimize_with_calibration(art.path, tmp / "full",
                                            replace(config, speed_check=False), calib=pages)
            full = out.manifest.reports["optimize"]
            rows["no speed check (calibration + fallback search)"] = {
                "seconds": time.perf_counter() - t0,
                "fallback_trials": len(full.get("fallback_trials", [])),
                "kept_in_float": len(full["kept_in_float"]),
                "answer": f"recommended {full['label']}; p50 {full['ratios']['p50']:.2f}x FP32",
            }
    doc = {"machine": machine_line(), "cpu": features_text(), "pages": args.pages,
           "force_slower": args.force_slower, "rows": rows}
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    print(f"{doc['machine']}; {doc['cpu']}")
    for name, r in rows.items():
        rest = {k: v for k, v in r.items() if k != "seconds"}
        print(f"{name}: {r['seconds']:.0f} s  {json.dumps(rest)}")


if __name__ == "__main__":
    sys.exit(main())
