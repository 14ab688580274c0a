"""The shipped defect detector compressed by ``edgeinfer compress`` (Torch-Pruning channel
pruning + distillation from the unpruned detector + fine-tuning), trained multi-scale, on
SYNTHETIC data: every point of the curve and the chosen one, latency side by side.

    .venv/bin/python benchmarks/compress_detector.py [--macs 0.3] [--steps 3] [--epochs 6]
        [--steps-per-epoch 50] [--lr 2e-3] [--scales 0.5,1.0] [--train 1600] [--val 160]
        [-o out/compressed-detector] [--json report.json]

Data: ``edgeinfer.training.synth.generated_defects`` (``--train`` 256x256 crops of training
frames; ``--val`` 640x640 tiles of the held-out test frames, seed 9999, the frames
``examples/inspection/evaluate.py`` uses). The score is mAP@0.5 (pycocotools) on val.
Latency: batch-1 640x640, median of interleaved rounds through the Engine, ONNX Runtime and
OpenVINO, all points timed beside the original in one process. Then the chosen artifact at
320 and 480 against 640 (the resolution ladder): mAP@0.5 on the same val tiles resized.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see edgeinfer/training/threads.py

from edgeinfer.compression.compress import CompressConfig, compress  # noqa: E402
from edgeinfer.compression.tasks import FineTune  # noqa: E402
from edgeinfer.machine import machine_line  # noqa: E402
from edgeinfer.progress import Step  # noqa: E402
from edgeinfer.training.synth import generated_defects  # noqa: E402


def _log(step: Step) -> None:
    if step.kind == "finish" or (step.task == "epochs" and step.kind == "advance"):
        print(f"  [{time.strftime('%H:%M:%S')}] {step.task} {step.detail}", flush=True)


def main() -> None:
    """Run the benchmark; print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--macs", type=float, default=0.3)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--steps-per-epoch", type=int, default=50)
    ap.add_argument("--scales", default="0.5,1.0")
    ap.add_argument("--train", type=int, default=1600)
    ap.add_argument("--val", type=int, default=160)
    ap.add_argument("--max-drop", type=float, default=0.01)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("-o", "--out", default="out/compressed-detector")
    ap.add_argument("--json")
    args = ap.parse_args()
    print(machine_line(), flush=True)
    t0 = time.perf_counter()
    data = generated_defects(args.train, args.val)
    print(f"data: {len(data.train)} train crops, {len(data.val)} val tiles "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    scales = tuple(float(v) for v in args.scales.split(",")) if args.scales else None
    config = CompressConfig(macs=args.macs, steps=args.steps, max_drop=args.max_drop,
                            backends=("ort", "openvino"),
                            tune=FineTune(epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                                          scales=scales, lr=args.lr))
    art = compress("defect-detector", args.out, data=data, config=config, force=True,
                   progress=_log)
    report = art.manifest.reports["compress"]
    print(f"\ncompress: {time.perf_counter() - t0:.0f} s in all; chosen {report['chosen']}")
    print(f"{'point':10} {'GMACs':>6} {'fewer':>6} {'params':>8} {'MB':>5} {'ort ms':>12} "
          f"{'ov ms':>12} {'mAP50 pre':>9} {'mAP50':>6} {'mAP':>6} {'drop':>6}")
    for r in report["points"]:
        ms = {b: f"{r['latency_ms'][b]:.1f} ({r['latency_ratio'][b]:.2f}x)"
              for b in r["latency_ms"]}
        pre = r.get("score_before_fine_tune")
        print(f"{r['name']:10} {r['macs'] / 1e9:6.2f} {r['macs_ratio']:5.2f}x "
              f"{r['params']:8d} {r['bytes'] / 1e6:5.2f} {ms.get('ort', '-'):>12} "
              f"{ms.get('openvino', '-'):>12} {'' if pre is None else f'{pre:.3f}':>9} "
              f"{r['map50']:6.3f} {r['map']:6.3f} {r['drop']:+6.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
