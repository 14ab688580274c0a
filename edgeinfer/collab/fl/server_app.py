"""The federation's Flower ``ServerApp``: R rounds of a strategy, then a new artifact version.

Run configuration (``[tool.flwr.app.config]`` in ``app/pyproject.toml``, overridable with
``flwr run -c``) picks the strategy, rounds, round deadline, quorum and compression. After every
round the global model is scored on the union test set (synthetic, made here from a seed no site
uses) and ``progress.json`` is rewritten; at the end ``result.json`` holds the per-round ledger
(bytes down/up, replies, failures) and, with ``artifact-dir`` set, the aggregated model is
exported, re-optimized to INT8 and written as the next artifact version.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

from edgeinfer.collab.fl.data import union_test_set
from edgeinfer.collab.fl.model import accuracy, get_arrays, make_model, set_arrays
from edgeinfer.collab.fl.strategy import StrategyOptions, make_strategy

app = ServerApp()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the federation; on failure ``result.json`` says why (the caller is another process)."""
    out = Path(str(context.run_config["out-dir"]) or ".").expanduser()
    out.mkdir(parents=True, exist_ok=True)
    try:
        _run(grid, context, out)
    except Exception as exc:
        _write_json(out / "result.json", {"error": f"{type(exc).__name__}: {exc}"})
        raise


def _run(grid: Grid, context: Context, out: Path) -> None:
    import torch

    torch.set_num_threads(1)
    rc = context.run_config
    model = make_model(seed=int(rc["seed"]))
    init = get_arrays(model)
    options = StrategyOptions(
        name=str(rc["strategy"]), expected_sites=int(rc["expected-sites"]),
        quorum=int(rc["quorum"]), join_timeout=float(rc["join-timeout"]),
        proximal_mu=float(rc["proximal-mu"]), server_lr=float(rc["server-lr"]),
        dump_dir=str(rc["dump-dir"]),
    )
    strategy = make_strategy(options, {k: v.shape for k, v in init.items()})
    tx, ty = union_test_set(int(rc["test-per-site"]))
    history: list[dict[str, Any]] = []
    started = time.monotonic()

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        set_arrays(model, {k: a.numpy() for k, a in arrays.items()})
        acc = accuracy(model, tx, ty)
        ledger = [asdict(e) for e in strategy.ledger]
        history.append({"round": server_round, "accuracy": acc,
                        "elapsed_s": time.monotonic() - started})
        _write_json(out / "progress.json", {"history": history, "ledger": ledger})
        return MetricRecord({"accuracy": acc})

    train_config = ConfigRecord({
        "lr": float(rc["lr"]), "local-epochs": int(rc["local-epochs"]),
        "samples": int(rc["samples-per-site"]), "seed": int(rc["seed"]),
        "compress": bool(rc["compress"]),
    })
    initial = ArrayRecord({k: Array(v) for k, v in init.items()})
    result = strategy.start(grid=grid, initial_arrays=initial,
                            num_rounds=int(rc["num-server-rounds"]),
                            timeout=float(rc["round-timeout"]), train_config=train_config,
                            evaluate_fn=evaluate)
    final = {k: a.numpy() for k, a in result.arrays.items()}
    np.savez(out / "global.npz", **final)
    summary: dict[str, Any] = {
        "strategy": options.name, "rounds": int(rc["num-server-rounds"]),
        "compress": bool(rc["compress"]), "history": history,
        "ledger": [asdict(e) for e in strategy.ledger], "run_id": context.run_id,
    }
    if str(rc["artifact-dir"]):
        from edgeinfer.collab.fl.export import export_version

        calib, _ = union_test_set(20, seed=20_000)
        meta = {"run_id": context.run_id, "round": summary["rounds"],
                "strategy": options.name, "compress": summary["compress"],
                "accuracy_torch": history[-1]["accuracy"]}
        art = export_version(final, str(rc["artifact-dir"]), meta, calib, (tx, ty))
        summary["artifact"] = {"path": str(art.path), **art.manifest.reports["federated"]}
    _write_json(out / "result.json", summary)
