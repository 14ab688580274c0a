"""Compression at the cut against the honest baseline: sending the input as a JPEG (q 90).

For each ONNX zoo model and real photographs (``benchmarks/photos.py``: files inside installed
wheels, no download), every variant is measured on the same inputs, side by side:

- ``jpeg q90``: the device resizes the photo to the model's input (as its preprocessing does),
  encodes it as JPEG quality 90 and the node decodes, normalises and runs the whole model;
- ``input int8+lz4`` etc.: our frame of the normalised input tensor;
- at two split cuts (the smallest cut in the first half of the graph, and the cut a third of
  the way in): the cut tensors as raw, fp16 and int8 (per-tensor scale / zero point), each
  with lz4 and zstd.

Reported: median bytes on the wire (frame or JPEG) and the effect on the outputs against the
uncompressed float32 model on the original photo: top-1 agreement (classifier) and the cosine
similarity of the output tensors (all models). Batch 1, onnxruntime, 1 thread.

    .venv/bin/python benchmarks/split_compress.py [--photos 40] [--json out]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import photos

from edgeinfer.collab.compress import Compression, decode, encode
from edgeinfer.collab.profile import SplitModel

MODELS = ("efficientnet-lite0", "defect-detector", "ppocrv4-det")
VARIANTS = ("raw", "fp16+lz4", "fp16+zstd", "int8+lz4", "int8+zstd")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two tensors, flattened (float64)."""
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def pick_cuts(sm: SplitModel) -> dict[str, tuple[str, ...]]:
    """The input, the smallest cut in the first half, and the cut a third of the way in."""
    n = len(sm.partition.nodes)
    inner = [c for c in sm.all_cuts if 0 < c.position < n]
    first_half = [c for c in inner if c.position <= n // 2]
    small = min(first_half, key=lambda c: c.nbytes)
    third = min(inner, key=lambda c: abs(c.position - n // 3))
    return {"input": tuple(sm.inputs), f"smallest@{small.position}/{n}": small.tensors,
            f"third@{third.position}/{n}": third.tensors}


def run_model(model: str, images: list[np.ndarray]) -> dict[str, Any]:
    """Bytes and output agreement of every variant on ``images`` for one model."""
    from edgeinfer.loading import load, resolve
    from edgeinfer.vision.preprocess import resize, spatial_size, to_tensor

    art = load(resolve(model))
    spec, pre = art.manifest.inputs[0], art.manifest.preprocess
    classifier = art.manifest.task == "classification"
    as_is = pre.model_copy(update={"resize": "none"})
    sm = SplitModel(model, threads=1, max_cuts=2)
    cuts = pick_cuts(sm)
    stats: dict[str, dict[str, list[float]]] = {}

    def add(name: str, nbytes: int, out: np.ndarray, ref: np.ndarray) -> None:
        s = stats.setdefault(name, {"bytes": [], "cos": [], "top1": [], "diff": []})
        s["bytes"].append(nbytes)
        s["cos"].append(cosine(out, ref))
        s["diff"].append(float(np.abs(out.astype(np.float64) - ref).max()))
        if classifier:
            s["top1"].append(float(out.argmax() == ref.argmax()))

    try:
        for img in images:
            x, _ = to_tensor(img, spec, pre)
            feeds = {spec.name: x}
            ref = sm.full().run(feeds)[sm.outputs[0]]
            resized, _ = resize(img, spatial_size(spec), pre)
            _ok, jpg = cv2.imencode(".jpg", resized, [cv2.IMWRITE_JPEG_QUALITY, 90])
            back = cv2.imdecode(jpg, cv2.IMREAD_COLOR)
            xj, _ = to_tensor(back, spec, as_is)  # already resized: only normalise
            add("input as JPEG q90", len(jpg), sm.full().run({spec.name: xj})[sm.outputs[0]], ref)
            for label, cut in cuts.items():
                values = sm.run_head(cut, feeds)
                for v in VARIANTS:
                    if label == "input" and v.startswith("fp16"):
                        continue
                    frame = encode(values, Compression.parse(v))
                    out = sm.run_tail(cut, decode(frame))[sm.outputs[0]]
                    raw_kb = sum(a.nbytes for a in values.values()) / 1000
                    add(f"{label} ({raw_kb:.0f} kB raw) {v}", len(frame), out, ref)
    finally:
        sm.close()
    rows = []
    for name, s in stats.items():
        rows.append({
            "variant": name,
            "kb_median": statistics.median(s["bytes"]) / 1000,
            "cosine_min": min(s["cos"]),
            "cosine_median": statistics.median(s["cos"]),
            "max_abs_diff": max(s["diff"]),
            "top1_agreement": statistics.mean(s["top1"]) if s["top1"] else None,
        })
    return {"model": model, "images": len(images), "rows": rows}


def render(results: list[dict[str, Any]], console: Console) -> None:
    """A table per model, with the JPEG baseline first and each row's ratio to it."""
    for res in results:
        t = Table(title=f"{res['model']}: {res['images']} photos")
        cols = ("variant", "kB", "x JPEG bytes", "cos min", "cos median", "max |diff|", "top-1")
        for col in cols:
            t.add_column(col)
        jpeg = res["rows"][0]["kb_median"]
        for r in res["rows"]:
            t.add_row(
                r["variant"], f"{r['kb_median']:.1f}", f"{r['kb_median'] / jpeg:.2f}",
                f"{r['cosine_min']:.5f}", f"{r['cosine_median']:.5f}", f"{r['max_abs_diff']:.3g}",
                "-" if r["top1_agreement"] is None else f"{r['top1_agreement']:.3f}",
            )
        console.print(t)


def main() -> None:
    """Run every model on the photos and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--photos", type=int, default=40, help="photos for the classifier")
    ap.add_argument("--detector-photos", type=int, default=8)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    paths = photos.photo_paths()
    step = max(1, len(paths) // args.photos)
    chosen = paths[::step][: args.photos]
    images = [cv2.imread(str(p)) for p in chosen]
    console = Console(width=150)
    results = []
    for m in args.models.split(","):
        n = args.photos if m == "efficientnet-lite0" else args.detector_photos
        results.append(run_model(m, images[:n]))
        console.print(f"{m}: done")
    render(results, console)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
