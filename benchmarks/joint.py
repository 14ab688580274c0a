"""Joint inference on real labelled data: a small CNN on the device, a big one on the node.

Data: scikit-learn's handwritten digits (1797 real 8x8 images, labelled, no download), split
60/10/30 stratified by ``benchmarks/digits_int8.py`` (train / calibration / test, disjoint).
Models: trained here in plain torch, deterministically: ``small`` (8-16-16 channels, 20 epochs)
and ``big`` (32-64-128 channels, 20 epochs), both at 16x16 input, exported to ONNX. The node is
a real uvicorn on a loopback port serving ``edgeinfer.collab.tails.router`` with the big
model; the device runs the small one in an Engine (1 thread) and sends a sample to the node
when its confidence (top-1 minus top-2 probability) is below a threshold picked on the
calibration split so that at most ``--max-sent`` of it would go. Then the node is stopped and
every request must still be answered on the device within 100 ms.

    .venv/bin/python benchmarks/joint.py [--max-sent 0.25] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import digits_int8 as digits

import edgeinfer
from edgeinfer.collab.joint import JointClassifier, pick_threshold, softmax
from edgeinfer.serve.split_node import BackgroundNode

SIDE = 16
SMALL = ((8, 16, 16), 20)
BIG = ((32, 64, 128), 20)




class Node(BackgroundNode):
    """A real uvicorn node serving the offload router on a free loopback port (thread)."""

    def __init__(self, models: dict[str, Path]) -> None:
        super().__init__(models, threads=1, profile_runs=1)


def build_models(workdir: Path) -> tuple[digits.Digits, Path, Path]:
    """The digits splits and the small and big ONNX models trained on the train split."""
    data = digits.load_digits_splits(SIDE)
    paths = []
    for name, (widths, epochs) in (("small", SMALL), ("big", BIG)):
        model = digits.train(data.x_train, data.y_train, widths, epochs)
        dummy = torch.zeros(1, 1, SIDE, SIDE)
        paths.append(edgeinfer.export(model, dummy, workdir / f"{name}.onnx"))
    return data, paths[0], paths[1]


def _probs(path: Path, x: np.ndarray) -> np.ndarray:
    from edgeinfer.ort_session import open_session

    s = open_session(path, threads=1)
    name = s.get_inputs()[0].name
    return softmax(np.concatenate([s.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))]))


def evaluate(workdir: Path, max_sent: float = 0.25) -> dict[str, Any]:
    """Accuracy of small, big and joint on the test split; share sent; node-down latencies."""
    data, small, big = build_models(workdir)
    small_cal = _probs(small, data.x_calib)
    threshold = pick_threshold(small_cal, max_sent)
    acc_small = float((_probs(small, data.x_test).argmax(1) == data.y_test).mean())
    acc_big = float((_probs(big, data.x_test).argmax(1) == data.y_test).mean())
    node = Node({"big": big})
    # node up: a generous budget, so that a loaded machine does not turn answers into fallbacks
    joint = JointClassifier(small, node.url, "big", threshold=threshold, budget_s=2.0)
    # node down: the 100 ms budget the issue asks for
    local = JointClassifier(small, node.url, "big", threshold=threshold, budget_s=0.1)
    try:
        results = [joint.classify({"input": x[None]}) for x in data.x_test]
        hits = [r.label == y for r, y in zip(results, data.y_test, strict=True)]
        acc_joint = float(np.mean(hits))
        lat = {w: [r.latency_s for r in results if r.where == w] for w in ("device", "node")}
        node.stop()
        down = [local.classify({"input": data.x_test[i : i + 1]}) for i in range(100)]
    finally:
        node.stop()
        joint.close()
        local.close()
    unsure_down = [r for r in down if r.confidence < threshold]
    return {
        "test_samples": len(data.y_test),
        "threshold_margin": threshold,
        "accuracy": {"small": acc_small, "big": acc_big, "joint": acc_joint},
        "gap_points": (acc_big - acc_joint) * 100,
        "sent_share": sum(r.where == "node" for r in results) / len(results),
        "fallbacks_node_up": joint.fallbacks,
        "latency_ms_p50": {w: float(np.median(v)) * 1000 if v else None for w, v in lat.items()},
        "node_down": {
            "requests": len(down),
            "answered": sum(r.label >= 0 for r in down),
            "unsure": len(unsure_down),
            "max_ms": max(r.latency_s for r in down) * 1000,
            "max_unsure_ms": max((r.latency_s for r in unsure_down), default=0.0) * 1000,
            "fallbacks": local.fallbacks,
        },
    }


def main() -> None:
    """Run and print the joint-inference figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-sent", type=float, default=0.25)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        res = evaluate(Path(tmp), args.max_sent)
    if args.json:
        print(json.dumps(res, indent=2))
        return
    a = res["accuracy"]
    print(f"digits test set: {res['test_samples']} samples (real handwritten digits, sklearn)")
    print(f"accuracy small {a['small']:.4f}  big {a['big']:.4f}  joint {a['joint']:.4f}  "
          f"(joint - big = {-res['gap_points']:+.2f} points; target within 1)")
    print(f"sent to node: {res['sent_share']:.1%} (target <= 30%), margin threshold "
          f"{res['threshold_margin']:.3f} picked on the calibration split")
    print(f"p50 latency ms: {res['latency_ms_p50']}")
    d = res["node_down"]
    print(f"node down: {d['answered']}/{d['requests']} answered on the device, "
          f"max {d['max_ms']:.1f} ms (unsure ones max {d['max_unsure_ms']:.1f} ms; target 100), "
          f"{d['fallbacks']} node failure(s) before the breaker opened")


if __name__ == "__main__":
    main()
