"""Benchmark models on every backend: latency percentiles, cold start, memory, agreement.

    report = edgeinfer.bench(["efficientnet-lite0"], backends="all", threads=[1, 2], runs=50)
    report.render(rich.console.Console())     # the table ``edgeinfer bench`` prints
    report.write_json("bench.json")           # everything, raw latency samples included
    report.write_html("bench.html")           # self-contained, inline SVG plots

``harness`` measures one configuration (model x backend x threads) into a frozen
:class:`BenchResult`; ``feeds`` makes the seeded synthetic inputs; ``report`` renders;
``suite`` plans and runs the whole set.
"""

from __future__ import annotations

from edgeinfer.benchmark.harness import BenchResult, measure
from edgeinfer.benchmark.report import BenchReport, ModelInfo
from edgeinfer.benchmark.suite import (
    backends_for,
    bench,
    installed_backends,
    parse_backends,
    parse_spinning,
    parse_threads,
)

__all__ = [
    "BenchReport",
    "BenchResult",
    "ModelInfo",
    "backends_for",
    "bench",
    "installed_backends",
    "measure",
    "parse_backends",
    "parse_spinning",
    "parse_threads",
]
