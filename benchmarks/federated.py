"""Federated learning across three sites (Flower deployment engine, real processes on loopback).

Data: SYNTHETIC defect-shape images made at each site (``edgeinfer.collab.fl.data``), non-IID by
label (two main classes per site) and style (background, tint, noise); the union test set has
every class in every style. For each strategy a real federation runs: ``flower-superlink`` and
three ``flower-supernode`` processes, the app submitted with ``flwr run``; R rounds of E local
epochs; the aggregated model is exported, INT8-optimized and written as an artifact version.

Baseline (side by side, same data, same model, same total epochs): each site trains alone for
R x E epochs. Printed: global accuracy / best local-only accuracy (must be > 1), bytes per
round down and up, and the compression ratio (float32 bytes / int8 bytes of the updates).

    .venv/bin/python benchmarks/federated.py [--rounds 8] [--epochs 3]
        [--runs fedavg,fedavg+int8,fedprox+int8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from edgeinfer.collab.fl.data import site_data, union_test_set
from edgeinfer.collab.fl.deploy import Federation
from edgeinfer.collab.fl.model import TrainConfig, accuracy, make_model, train

SAMPLES, TEST_PER_SITE = 600, 200


def local_only(rounds: int, epochs: int, lr: float) -> list[float]:
    """Union-test accuracy of a model trained on one site's data only, per site."""
    torch.set_num_threads(1)
    tx, ty = union_test_set(TEST_PER_SITE)
    out = []
    for site in range(3):
        x, y = site_data(site, SAMPLES)
        model = make_model()
        train(model, x, y, TrainConfig(epochs=rounds * epochs, lr=lr, seed=site))
        out.append(accuracy(model, tx, ty))
    return out


def federated(spec: str, rounds: int, epochs: int, lr: float, work: Path) -> dict[str, Any]:
    """One real federation for ``spec`` (``strategy[+int8]``); returns its result.json."""
    strategy, _, codec = spec.partition("+")
    config = {"num-server-rounds": rounds, "strategy": strategy, "compress": codec == "int8",
              "local-epochs": epochs, "lr": lr, "samples-per-site": SAMPLES,
              "test-per-site": TEST_PER_SITE, "round-timeout": 120.0,
              "artifact-dir": str(work / "artifacts"), "out-dir": str(work / spec)}
    t0 = time.monotonic()
    with Federation(work / f"fed-{spec}", sites=3) as fed:
        result = fed.run(config, timeout=rounds * 150 + 300, on_progress=lambda p: print(
            f"  {spec}: round {p['history'][-1]['round']} accuracy "
            f"{p['history'][-1]['accuracy']:.3f}", flush=True))
    result["wall_s"] = time.monotonic() - t0
    return result


def report(spec: str, result: dict[str, Any], local: list[float]) -> dict[str, Any]:
    """Print one run's table and return its summary."""
    ledger = result["ledger"]
    acc = {h["round"]: h["accuracy"] for h in result["history"]}
    print(f"\n{spec}: {len(ledger)} rounds in {result['wall_s']:.0f} s wall")
    print("round | replies | down bytes | up bytes | up as float32 | global acc")
    for e in ledger:
        print(f"{e['round']:5d} | {e['replies']:7d} | {e['down_bytes']:10d} | {e['up_bytes']:8d}"
              f" | {e['up_float32_bytes']:13d} | {acc[e['round']]:.3f}")
    down = sum(e["down_bytes"] for e in ledger)
    up = sum(e["up_bytes"] for e in ledger)
    up32 = sum(e["up_float32_bytes"] for e in ledger)
    final = acc[max(acc)]
    art = result.get("artifact", {})
    summary = {
        "run": spec, "rounds": len(ledger), "global_accuracy": final,
        "local_only_accuracy": local, "global_over_best_local": final / max(local),
        "bytes_down_total": down, "bytes_up_total": up, "bytes_total": down + up,
        "update_compression": up32 / up if up else None,
        "round_wall_s_median": statistics.median(
            b["elapsed_s"] - a["elapsed_s"]
            for a, b in zip(result["history"], result["history"][1:], strict=False)),
        "artifact_version": art.get("version"), "int8_accuracy": art.get("accuracy_int8"),
        "shipped_precision": art.get("precision"),
    }
    print(f"total bytes: down {down}, up {up}, all {down + up}; update compression "
          f"(float32 bytes / sent bytes) {summary['update_compression']:.2f}x")
    print(f"global {final:.3f} vs local-only {', '.join(f'{a:.3f}' for a in local)}: "
          f"ratio global / best local = {summary['global_over_best_local']:.2f}")
    if art:
        print(f"artifact v{art['version']} (round {art['round']}, shipped {art['precision']}): "
              f"fp32 {art['accuracy_fp32']:.3f}, int8 {art['accuracy_int8']}; "
              f"optimizer: {art['optimize_problems'] or 'int8 accepted'}")
    return summary


def main() -> int:
    """Run the local-only baselines and each federated run; print tables and ratios."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--runs", default="fedavg,fedavg+int8,fedprox+int8")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    local = local_only(args.rounds, args.epochs, args.lr)
    print("local-only accuracy on the union test set:", [round(a, 3) for a in local])
    summaries = []
    with tempfile.TemporaryDirectory(prefix="edgeinfer-fl-bench-") as tmp:
        for spec in args.runs.split(","):
            result = federated(spec, args.rounds, args.epochs, args.lr, Path(tmp))
            summaries.append(report(spec, result, local))
    if args.json:
        args.json.write_text(json.dumps(summaries, indent=2), encoding="utf-8")
    return 0 if all(s["global_over_best_local"] > 1 for s in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
