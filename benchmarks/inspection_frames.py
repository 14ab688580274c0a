"""The inspection case on many 5 MP frames: tiled FP32 and INT8 against the whole-frame resize.

The demo's measurement (``edgeinfer.demo.inspect_frames``) on more frames, so that the
small-defect recall rests on enough small defects. Frames: SYNTHETIC 2592x1944 frames of the
evaluation seed (``edgeinfer/synthetic/defects.py``, never trained on), with exact boxes.

- ``FP32 tiled`` / ``INT8 tiled``: 640 px tiles, overlap 0.2, batches of 4, border merge;
- ``FP32 whole frame 640``: the frame letterboxed into the model's 640x640 input, the usual
  way to run a 640 detector on a large frame.

Per variant: recall (IoU >= 0.5, any class), recall of defects whose longest side is under
32 px, precision, classification accuracy of the found defects, seconds per frame (median)
and frames per second (the whole predict call: slicing, preprocessing, inference, decoding,
merging; not the frame generation). INT8 comes from ``optimize`` as in the demo.

    .venv/bin/python benchmarks/inspection_frames.py [--frames 60] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from rich.console import Console

from edgeinfer import zoo
from edgeinfer.cli.demo_view import render_frames
from edgeinfer.demo import DemoSize, inspect_frames, make_int8
from edgeinfer.loading import load
from edgeinfer.machine import machine_info, machine_line
from edgeinfer.runtime.engine import Engine


def main() -> None:
    """Command-line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--compressed", type=Path, default=None,
                    help="an artifact of `edgeinfer compress` (benchmarks/compress_detector.py) "
                         "to run tiled beside FP32 and INT8")
    args = ap.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="edgeinfer-frames-") as tmp:
        fp32 = zoo.get("defect-detector", Path(tmp) / "fp32")
        int8 = make_int8(fp32, Path(tmp) / "int8", DemoSize())
        engines = {"FP32": Engine(fp32), "INT8": Engine(int8)}
        if args.compressed is not None:
            engines["pruned FP32"] = Engine(load(args.compressed))
        try:
            rows = inspect_frames(engines, args.frames)
        finally:
            for engine in engines.values():
                engine.close()
    machine = machine_line(machine_info())
    render_frames(rows, console)
    by = {r["name"]: r for r in rows}
    console.print(
        f"INT8 / FP32 tiled seconds per frame: "
        f"{by['INT8 tiled']['s_per_frame_p50'] / by['FP32 tiled']['s_per_frame_p50']:.2f}; "
        + (f"pruned / FP32: {by['pruned FP32 tiled']['s_per_frame_p50'] / by['FP32 tiled']['s_per_frame_p50']:.2f}; "  # noqa: E501
           if "pruned FP32 tiled" in by else "") +
        f"machine: {machine}"
    )
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "frames": args.frames,
                                         "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
