"""The zoo's text detector taken as the bare ``.onnx`` file from its PyPI package, through the
whole flow with the CLI as a user types it: import -> optimize --input-shape -> convert --to
tflite and --to openvino -> run, each step timed, and the text lines each artifact finds on
SYNTHETIC pages (Hershey text on light noise) scored against where they were drawn.

    .venv/bin/python benchmarks/import_e2e.py [--size 640] [--pages 16] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from edgeinfer import zoo
from edgeinfer.cli import main as cli_main
from edgeinfer.machine import machine_line
from edgeinfer.vision.boxes import box_iou


def pages(folder: Path, n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` SYNTHETIC 640x480 pages; the boxes of the lines drawn on each."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    words = ["EDGE", "infer", "2024", "TEXT", "model", "import", "camera", "serial A-42"]
    truth = []
    for i in range(n):
        img = np.full((480, 640, 3), 230, np.uint8)
        img += rng.integers(0, 20, img.shape, dtype=np.uint8)
        boxes = []
        for k in range(5):
            text = " ".join(rng.choice(words, 2))
            scale = float(rng.uniform(1.0, 1.4))
            x, y = int(rng.integers(10, 200)), 70 + 85 * k
            (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
            cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (30, 30, 30), 2,
                        cv2.LINE_AA)
            boxes.append((x, y - h, x + w, y))
        cv2.imwrite(str(folder / f"page{i:02d}.png"), img)
        truth.append(np.array(boxes, float))
    return truth


def edgeinfer(*args: object) -> tuple[int, str, float]:
    """One CLI call in this process: exit code, stdout, seconds."""
    out = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = cli_main([str(a) for a in args])
    return code, out.getvalue(), time.perf_counter() - t0


def recall(run_json: str, truth: list[np.ndarray]) -> float:
    """Share of drawn lines a detection overlaps at IoU > 0.3."""
    frames = json.loads(run_json)["frames"]
    hit = 0
    for frame, boxes in zip(frames, truth, strict=True):
        got = np.array([r["box"] for r in frame["result"]]).reshape(-1, 4)
        if len(got):
            hit += int((box_iou(boxes, got).max(1) > 0.3).sum())
    return hit / sum(len(b) for b in truth)


def main() -> int:
    """Run the flow and print what each step took and found."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--pages", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    bare = zoo._package_file("ppocrv4-det", "models", "ch_PP-OCRv4_det_infer.onnx")
    shape = f"x=1x3x{args.size}x{args.size}"
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp_dir:
        tmp = Path(tmp_dir)
        truth = pages(tmp / "pages", args.pages)
        steps = [
            ("import --like ppocrv4-det", ("import", bare, "-o", tmp / "det", "--like",
                                           "ppocrv4-det")),
            ("optimize --input-shape (int8)", ("optimize", tmp / "det", "-o", tmp / "int8",
                                               "--input-shape", shape, "--calib",
                                               tmp / "pages", "--json")),
            ("convert --to openvino --input-shape", ("convert", tmp / "det", "--to", "openvino",
                                                     "-o", tmp / "ov", "--input-shape", shape,
                                                     "--json")),
            ("convert --to tflite --input-shape", ("convert", tmp / "det", "--to", "tflite",
                                                   "-o", tmp / "tfl", "--input-shape", shape,
                                                   "--json")),
        ]
        for name, argv in steps:
            code, out, seconds = edgeinfer(*argv)
            row = {"step": name, "exit": code, "seconds": seconds}
            if code == 0 and argv[0] == "optimize":
                rep = json.loads(out)["report"]
                row["note"] = (f"recommended {rep.get('label', rep['recommended'])}, "
                               f"p50 {rep['ratios']['p50']:.2f}x FP32")
            if code == 0 and argv[0] == "convert":
                rep = json.loads(out)["report"]
                row["note"] = (f"worst cosine {rep['cosine']:.5f}, outputs matched by "
                               f"{rep['outputs_matched_by']}")
            rows.append(row)
            if code:
                break
        for art in ("int8", "ov", "tfl"):
            if not (tmp / art).exists():
                continue
            code, out, seconds = edgeinfer("run", tmp / art, "-s", tmp / "pages", "--json")
            summary = json.loads(out)["summary"] if code == 0 else {}
            rows.append({"step": f"run {art}", "exit": code, "seconds": seconds,
                         "note": f"line recall {recall(out, truth):.2f}, p50 "
                                 f"{summary.get('p50_ms', 0):.0f} ms per page" if code == 0
                         else ""})
    doc = {"machine": machine_line(), "size": args.size, "pages": args.pages, "rows": rows}
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(doc["machine"])
        for r in rows:
            print(f"{r['step']:<40} exit {r['exit']}  {r['seconds']:6.1f} s  {r.get('note', '')}")
    return 0 if all(r["exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
