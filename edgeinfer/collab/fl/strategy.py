"""Flower strategies with a round quorum, compressed updates, a byte ledger and a payload audit.

The FL engine is Flower's (``flwr.serverapp.strategy``: FedAvg, FedProx, FedAdam); this module
only wraps its ``configure_train``/``aggregate_train`` hooks:

* **quorum after a deadline**: ``Strategy.start(timeout=...)`` already stops waiting for
  replies at the deadline; we wait (bounded) for the expected sites before round 1, then
  aggregate whatever arrived if it reaches the quorum, and otherwise keep the previous model
  (Flower's FedAvg would aggregate a single reply, or wait forever for ``min_available_nodes``
  nodes once a site has died);
* **compression**: replies carrying int8 deltas (see :mod:`compress`) are turned back into
  float32 weights before Flower averages them;
* **ledger**: array bytes sent to and received from every site, per round;
* **audit**: every array a site sends must have the name and shape of a model parameter, and
  metrics/config values must be scalars: anything else is rejected and recorded, so a sample
  can never ride along in an update. ``dump_dir`` keeps the raw payloads for inspection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer._deps import require
from edgeinfer.collab.fl.compress import decompress_delta
from edgeinfer.errors import EdgeInferError

log = logging.getLogger(__name__)

__all__ = ["RoundLedger", "StrategyOptions", "audit_reply", "make_strategy"]

STRATEGIES = ("fedavg", "fedprox", "fedadam")


@dataclass(frozen=True)
class StrategyOptions:
    """Server-side federation options."""

    name: str = "fedavg"
    expected_sites: int = 3
    quorum: int = 2
    join_timeout: float = 60.0
    proximal_mu: float = 0.01
    server_lr: float = 0.01
    dump_dir: str = ""


@dataclass
class RoundLedger:
    """What crossed the network in one round, and who answered."""

    round: int
    sampled: int = 0
    replies: int = 0
    failures: int = 0
    rejected: int = 0
    aggregated: bool = False
    down_bytes: int = 0
    up_bytes: int = 0
    up_float32_bytes: int = 0  #: the same replies as float32 weights (counted the same way)
    compressed: bool = False
    problems: list[str] = field(default_factory=list)


def audit_reply(content: Any, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """Problems with a site's reply: anything but parameter-shaped arrays and scalar metrics."""
    problems = []
    if list(content.array_records) != ["arrays"] or len(content.metric_records) != 1:
        problems.append("a reply must hold one array record 'arrays' and one metric record")
    for rkey, record in content.array_records.items():
        if set(record.keys()) != set(shapes):
            problems.append(f"array record '{rkey}' keys differ from the model's parameters")
        for k, arr in record.items():
            if tuple(arr.shape) != shapes.get(k):
                problems.append(f"array '{k}' has shape {tuple(arr.shape)}, not a parameter's")
            if arr.dtype not in ("float32", "int8"):
                problems.append(f"array '{k}' has dtype {arr.dtype}")
    int8 = any(a.dtype == "int8" for r in content.array_records.values() for a in r.values())
    if int8 and "scales" not in content.config_records:
        problems.append("int8 arrays without a 'scales' config record")
    for group in (content.metric_records, content.config_records):
        for rkey, record in group.items():
            for k, v in record.items():
                if not isinstance(v, int | float) or isinstance(v, bool):
                    problems.append(f"record '{rkey}' value '{k}' is {type(v).__name__}, "
                                    "not a scalar")
    return problems


class _EdgeMixin:
    """Quorum, decompression, ledger and audit around a Flower strategy's train hooks."""

    def _edge_init(self, options: StrategyOptions, shapes: dict[str, tuple[int, ...]]) -> None:
        self.options = options
        self.shapes = shapes
        self.ledger: list[RoundLedger] = []
        self._global: dict[str, np.ndarray] = {}

    def _wait_for_sites(self, grid: Any) -> int:
        deadline = time.monotonic() + self.options.join_timeout
        while (n := len(list(grid.get_node_ids()))) < self.options.expected_sites:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if n < self.options.quorum:
            raise EdgeInferError(
                f"only {n} site(s) joined within {self.options.join_timeout:.0f} s, quorum is "
                f"{self.options.quorum}: start more `edgeinfer fl client` processes"
            )
        return n

    def configure_train(self, server_round: int, arrays: Any, config: Any,
                        grid: Any) -> Iterable[Any]:
        """Wait for the sites (round 1), then let Flower sample and address them."""
        if server_round == 1:
            self._wait_for_sites(grid)
        n_now = len(list(grid.get_node_ids()))
        self.min_available_nodes = max(self.options.quorum, min(n_now, self.options.expected_sites))
        self.min_train_nodes = self.options.quorum
        self._global = {k: a.numpy() for k, a in arrays.items()}
        messages = list(super().configure_train(server_round, arrays, config, grid))
        entry = RoundLedger(round=server_round, sampled=len(messages))
        for msg in messages:
            entry.down_bytes += sum(r.count_bytes() for r in msg.content.array_records.values())
        self.ledger.append(entry)
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Any]) -> tuple[Any, Any]:
        """Audit, decompress and count the replies; aggregate only with a quorum."""
        flwr_app = require("flwr.app", "fl", "federated learning")
        replies = list(replies)
        entry = self.ledger[-1]
        good = []
        for msg in replies:
            if msg.has_error():
                entry.failures += 1
                continue
            entry.replies += 1
            self._dump(server_round, msg)
            problems = audit_reply(msg.content, self.shapes)
            if problems:
                entry.rejected += 1
                entry.problems.extend(problems[:5])
                continue
            entry.up_bytes += sum(r.count_bytes() for r in msg.content.array_records.values())
            self._decompress(msg, entry, flwr_app)
            entry.up_float32_bytes += msg.content["arrays"].count_bytes()
            good.append(msg)
        entry.failures += max(entry.sampled - len(replies), 0)  # silent past the deadline
        if len(good) < self.options.quorum:
            log.warning("round %d: %d valid replies < quorum %d; keeping the previous model",
                        server_round, len(good), self.options.quorum)
            return None, None
        entry.aggregated = True
        arrays, metrics = super().aggregate_train(server_round, good)
        if arrays is not None and any(a.dtype != "float32" for a in arrays.values()):
            # FedOpt's server optimizer returns float64: keep the wire format float32
            arrays = flwr_app.ArrayRecord(
                {k: flwr_app.Array(a.numpy().astype(np.float32)) for k, a in arrays.items()})
        return arrays, metrics

    def _decompress(self, msg: Any, entry: RoundLedger, flwr_app: Any) -> None:
        content = msg.content
        if "scales" not in content.config_records:
            return
        entry.compressed = True
        q = {k: a.numpy() for k, a in content["arrays"].items()}
        scales = {k: float(v) for k, v in content["scales"].items()}
        weights = decompress_delta(q, scales, self._global)
        content["arrays"] = flwr_app.ArrayRecord(
            {k: flwr_app.Array(v) for k, v in weights.items()})
        del content["scales"]

    def _dump(self, server_round: int, msg: Any) -> None:
        if not self.options.dump_dir:
            return
        out = Path(self.options.dump_dir)
        out.mkdir(parents=True, exist_ok=True)
        blob = b"".join(a.data for r in msg.content.array_records.values() for a in r.values())
        (out / f"round{server_round}-node{msg.metadata.src_node_id}.bin").write_bytes(blob)


def make_strategy(options: StrategyOptions, shapes: dict[str, tuple[int, ...]]) -> Any:
    """A Flower strategy (``fedavg``, ``fedprox`` or ``fedadam``) with the edge wrapper."""
    strat = require("flwr.serverapp.strategy", "fl", "federated learning")
    if options.quorum < 1 or options.quorum > options.expected_sites:
        raise EdgeInferError(f"quorum {options.quorum} must be 1..{options.expected_sites} "
                             "(the expected sites)")
    common = dict(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=options.quorum,
                  min_available_nodes=options.quorum)
    if options.name == "fedavg":
        base, kwargs = strat.FedAvg, common
    elif options.name == "fedprox":
        base, kwargs = strat.FedProx, {**common, "proximal_mu": options.proximal_mu}
    elif options.name == "fedadam":
        base, kwargs = strat.FedAdam, {**common, "eta": options.server_lr}
    else:
        raise EdgeInferError(f"unknown strategy '{options.name}': use one of {STRATEGIES}")
    cls = type(f"Edge{base.__name__}", (_EdgeMixin, base), {})
    strategy = cls(**kwargs)
    strategy._edge_init(options, shapes)
    return strategy
