"""Inspect every zoo model and compare against independent counters and the memory bounds.

For each zoo model: our total MACs against an independent count run side by side (torch's
FlopCounterMode for EfficientNet-Lite0, onnx-tool for the ONNX files, tflite2onnx + onnx-tool
for BlazeFace), ratio ours/peer; the activation memory: naive sum, lower bound, each arena
plan and best / lower bound; and the time `inspect` takes (median of 5).

    .venv/bin/python benchmarks/inspect_zoo.py [--ppocr-size 640]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import _independent_macs as independent

from edgeinfer import zoo
from edgeinfer.model.inspect import inspect_model


def main() -> None:
    """Run the comparison and print two tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ppocr-size", type=int, default=640)
    args = parser.parse_args()
    console = Console(width=150)
    macs = Table(title="MACs: edgeinfer inspect vs an independent counter")
    mem = Table(title="Activation memory (MiB, 64-byte alignment)")
    for col in ("model", "input", "edgeinfer", "independent", "counter", "ours/peer", "inspect s"):
        macs.add_column(col)
    for col in (
        "model",
        "naive",
        "lower bound",
        "greedy_by_size",
        "greedy_by_breadth",
        "size_lifetime",
        "best/LB",
        "saved vs naive",
    ):
        mem.add_column(col)
    s = args.ppocr_size
    with tempfile.TemporaryDirectory() as tmp:
        cases = [
            (
                "efficientnet-lite0",
                None,
                "1x3x224x224",
                independent.torch_macs_efficientnet_lite0,
                "torch FlopCounterMode",
            ),
            (
                "ppocrv4-det",
                {"x": (1, 3, s, s)},
                f"1x3x{s}x{s}",
                lambda: independent.onnx_tool_macs(
                    independent.ppocr_det_path(), {"x": (1, 3, s, s)}
                ),
                "onnx-tool",
            ),
            (
                "blazeface-short",
                None,
                "1x128x128x3",
                independent.blazeface_macs_via_tflite2onnx,
                "tflite2onnx + onnx-tool",
            ),
        ]
        for name, shapes, shape_text, peer, peer_name in cases:
            art = zoo.get(name, Path(tmp) / name)
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                report = inspect_model(art.path, shapes)
                times.append(time.perf_counter() - t0)
            ours, theirs = report["macs"]["total"], peer()
            macs.add_row(
                name,
                shape_text,
                f"{ours / 1e6:,.2f} M",
                f"{theirs / 1e6:,.2f} M",
                peer_name,
                f"{ours / theirs:.4f}",
                f"{statistics.median(times):.3f}",
            )
            m = report["memory"]
            mib = 1 / 2**20
            plans = m["plans"]
            mem.add_row(
                name,
                f"{m['naive_bytes'] * mib:.2f}",
                f"{m['lower_bound_bytes'] * mib:.2f}",
                f"{plans['greedy_by_size'] * mib:.2f}",
                f"{plans['greedy_by_breadth'] * mib:.2f}",
                f"{plans['greedy_by_size_lifetime'] * mib:.2f}",
                f"{m['best_over_lower_bound']:.3f}",
                f"{m['saving_vs_naive']:.1%}",
            )
    console.print(macs)
    console.print(mem)


if __name__ == "__main__":
    main()
