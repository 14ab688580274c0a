"""``edgeinfer demo`` / ``make demo``: the main job on embedded defaults.

Today: build the EfficientNet-Lite0 zoo artifact, inspect it (MACs, arena plan, a budget
check), and classify the packaged coffee photograph with the artifact's own preprocessing.
Later stages (optimize, bench, tiled inspection) join as they land.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

from rich.console import Console

from edgeinfer import zoo
from edgeinfer._render import render_inspect
from edgeinfer.model.inspect import inspect_model
from edgeinfer.pipeline.predict import Predictor
from edgeinfer.runtime.engine import Engine
from edgeinfer.vision.preprocess import read_image

DEMO_MODEL = "efficientnet-lite0"
DEMO_BUDGET = 32 * 1024 * 1024


def sample_image_path() -> Path:
    """The packaged sample photograph (see edgeinfer/data/README.md)."""
    return Path(str(importlib.resources.files("edgeinfer").joinpath("data/coffee.jpg")))


def run_demo(out: Path, console: Console) -> dict:
    """Run the demo, print its steps, write ``summary.json`` under ``out``, return the summary."""
    out.mkdir(parents=True, exist_ok=True)
    art_dir = out / DEMO_MODEL
    console.rule(f"1. zoo get {DEMO_MODEL}")
    artifact = zoo.get(DEMO_MODEL, art_dir)
    console.print(f"artifact: {art_dir} ({artifact.manifest.model.bytes / 1e6:.1f} MB ONNX)")

    console.rule("2. inspect")
    report = inspect_model(art_dir, budget=DEMO_BUDGET)
    report["path"] = str(art_dir)
    render_inspect(report, console)

    console.rule("3. classify a sample image (onnxruntime, manifest preprocessing)")
    image_path = sample_image_path()
    pred = Predictor(Engine(artifact)).predict(read_image(image_path), str(image_path))
    for r in pred.result:
        console.print(f"  {r['class_id']:>5}  {r['label']:<24} {r['score']:.3f}")
    top = pred.result[0]
    summary = {
        "model": DEMO_MODEL,
        "macs": report["macs"]["total"],
        "params": report["params"]["count"],
        "arena_bytes": report["memory"]["best"]["arena_bytes"],
        "naive_bytes": report["memory"]["naive_bytes"],
        "fits_budget": report["budget"]["fits"],
        "sample": image_path.name,
        "top1": top,
        "infer_ms": pred.times_ms["infer"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    console.rule("summary")
    console.print(
        f"{DEMO_MODEL}: {summary['macs'] / 1e6:.0f} M MACs, "
        f"{summary['params'] / 1e6:.2f} M params, arena "
        f"{summary['arena_bytes'] / 2**20:.1f} MiB (naive "
        f"{summary['naive_bytes'] / 2**20:.1f} MiB); {image_path.name} -> "
        f"{top['label']} ({top['score']:.2f}); written {out / 'summary.json'}"
    )
    return summary
