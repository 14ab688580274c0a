"""EfficientNet-Lite0 (ImageNet weights) compressed by ``edgeinfer compress`` with only
UNLABELLED photographs: pruned to 50% and 25% of its MACs, distilled from the original.

    .venv/bin/python benchmarks/compress_effnet.py [--macs 0.25] [--steps 2] [--epochs 4]
        [--steps-per-epoch 50] [-o out/effnet-small] [--json report.json]

Data: the natural colour photographs that installed PyPI packages carry
(``benchmarks/photos.py``: ai-benchmark, foolbox, scikit-image, scikit-learn, matplotlib),
preprocessed as the zoo artifact says (224x224). compress holds out a quarter of them
(seeded) and reports top-1 agreement with the original there; the rest are distilled on.
Latency: batch 1, ONNX Runtime and OpenVINO, every point timed beside the original.
The peer figure beside it is Torch-Pruning's published ImageNet result (not rerun here).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see edgeinfer/training/threads.py

from photos import photo_paths  # noqa: E402

from edgeinfer.compression.compress import CompressConfig, compress  # noqa: E402
from edgeinfer.compression.tasks import FineTune  # noqa: E402
from edgeinfer.machine import machine_line  # noqa: E402
from edgeinfer.progress import Step  # noqa: E402


def _log(step: Step) -> None:
    if step.kind == "finish":
        print(f"  [{time.strftime('%H:%M:%S')}] {step.task} {step.detail}", flush=True)


def main() -> None:
    """Run the benchmark; print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--macs", type=float, default=0.25)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--steps-per-epoch", type=int, default=50)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("-o", "--out", default="out/effnet-small")
    ap.add_argument("--json")
    args = ap.parse_args()
    print(machine_line(), flush=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i, p in enumerate(photo_paths()):
            (Path(tmp) / f"{i:04d}{p.suffix.lower()}").symlink_to(p)
        config = CompressConfig(macs=args.macs, steps=args.steps, max_drop=0.05,
                                backends=("ort", "openvino"),
                                tune=FineTune(epochs=args.epochs, batch=args.batch,
                                              steps_per_epoch=args.steps_per_epoch, lr=5e-4))
        art = compress("efficientnet-lite0", args.out, data=tmp, config=config, force=True,
                       progress=_log)
    report = art.manifest.reports["compress"]
    print(f"\ncompress: {time.perf_counter() - t0:.0f} s; held-out photos: "
          f"{report['points'][0]['held_out']}")
    print(f"{'point':9} {'MMACs':>6} {'fewer':>6} {'params':>8} {'ort ms':>13} {'ov ms':>13} "
          f"{'agree pre':>9} {'agree':>6}")
    for r in report["points"]:
        ms = {b: f"{r['latency_ms'][b]:.2f} ({r['latency_ratio'][b]:.2f}x)"
              for b in r["latency_ms"]}
        pre = r.get("score_before_fine_tune")
        print(f"{r['name']:9} {r['macs'] / 1e6:6.0f} {r['macs_ratio']:5.2f}x {r['params']:8d} "
              f"{ms.get('ort', '-'):>13} {ms.get('openvino', '-'):>13} "
              f"{'' if pre is None else f'{pre:.3f}':>9} {r['agreement']:6.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
