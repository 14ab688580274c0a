"""The bench report: the measured configurations plus the machine, as a table, JSON and HTML."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.benchmark.harness import BenchResult
from edgeinfer.machine import machine_line

__all__ = ["SCHEMA", "BenchReport", "ModelInfo"]

#: the ``schema`` field of the JSON report; bump when a field changes meaning
SCHEMA = "edgeinfer.bench/1"

MEMORY_NOTES = {
    "clear_refs": "peak RSS per configuration: VmHWM from /proc/self/status after resetting it "
    "by writing 5 to /proc/self/clear_refs just before loading; growth = peak - VmRSS read "
    "just before loading",
    "ru_maxrss": "/proc/self/clear_refs is not writable here: peak RSS is getrusage's "
    "ru_maxrss, the peak since the process started, so after the first configuration it is an "
    "upper bound and growth can include earlier configurations",
}


@dataclass(frozen=True)
class ModelInfo:
    """A benchmarked model: display name, where it is, its format and size with companions."""

    name: str
    path: str
    format: str
    precision: str
    bytes: int
    files: tuple[str, ...]
    input_shapes: dict[str, tuple[int, ...]]
    backends: tuple[str, ...]


def fmt_ms(v: float | None) -> str:
    """Milliseconds for tables, with the digits that matter (``-`` when unknown)."""
    if v is None:
        return "-"
    if v < 1:
        return f"{v:.3f}"
    if v < 100:
        return f"{v:.2f}"
    return f"{v:.1f}"


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f} MiB"


def fmt_rate(v: float | None) -> str:
    """Inferences per second for tables (``-`` when unknown)."""
    if not v:
        return "-"
    return f"{v:.1f}" if v < 1000 else f"{v:.0f}"


def fmt_mib(n: int | None) -> str:
    """Bytes as MiB for tables (``-`` when unknown)."""
    return "-" if n is None else f"{n / 2**20:.1f}"


@dataclass(frozen=True)
class BenchReport:
    """Every configuration's :class:`BenchResult`, the models, the machine and the settings."""

    results: tuple[BenchResult, ...]
    models: tuple[ModelInfo, ...]
    machine: dict[str, Any]
    settings: dict[str, Any]
    memory_method: str
    created: str = ""

    def __post_init__(self) -> None:
        if not self.created:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            object.__setattr__(self, "created", stamp)

    def best_p50(self, model: str) -> float | None:
        """The lowest p50 among the working configurations of ``model``."""
        p50s = [r.p50_ms for r in self.results if r.model == model and r.ok]
        return min((p for p in p50s if p is not None), default=None)

    def ratio(self, result: BenchResult) -> float | None:
        """``result``'s p50 over the best p50 of its model (1.00 for the fastest row)."""
        best = self.best_p50(result.model)
        if result.p50_ms is None or not best:
            return None
        return result.p50_ms / best

    # --- JSON --------------------------------------------------------------------------

    def result_dict(self, r: BenchResult, samples: bool = True) -> dict[str, Any]:
        """One configuration as plain JSON types."""
        s = np.asarray(r.samples_ms) if r.samples_ms else None
        latency = None
        if s is not None:
            latency = {
                "p50": r.p50_ms,
                "p90": r.p90_ms,
                "p99": r.p99_ms,
                "mean": r.mean_ms,
                "std": float(s.std()),
                "min": float(s.min()),
                "max": float(s.max()),
            }
        out: dict[str, Any] = {
            "model": r.model,
            "backend": r.backend,
            "spinning": r.spinning,
            "threads": r.threads,
            "ok": r.ok,
            "error": r.error,
            "load_ms": r.load_ms,
            "cold_ms": r.cold_ms,
            "latency_ms": latency,
            "runs": r.runs,
            "wall_s": r.wall_s,
            "throughput_ips": r.throughput,
            "p50_ratio_to_best": self.ratio(r),
            "memory": {
                "baseline_rss_bytes": r.rss_baseline_bytes,
                "peak_rss_bytes": r.rss_peak_bytes,
                "rss_growth_bytes": r.rss_growth_bytes,
                "method": r.rss_method,
            },
            "model_bytes": r.model_bytes,
            "input_shapes": {k: list(v) for k, v in r.input_shapes.items()},
            "feeds_sha256": r.feeds_sha256 or None,
            "agreement": dict(r.agreement) if r.agreement is not None else None,
        }
        if samples:
            out["samples_ms"] = [round(x, 5) for x in r.samples_ms]
        return out

    def to_dict(self, samples: bool = True) -> dict[str, Any]:
        """The whole report as plain JSON types; ``samples=False`` leaves raw latencies out."""
        return {
            "schema": SCHEMA,
            "created": self.created,
            "machine": self.machine,
            "settings": self.settings,
            "memory": {"method": self.memory_method, "note": MEMORY_NOTES[self.memory_method]},
            "models": [
                {
                    "name": m.name,
                    "path": m.path,
                    "format": m.format,
                    "precision": m.precision,
                    "bytes": m.bytes,
                    "files": list(m.files),
                    "input_shapes": {k: list(v) for k, v in m.input_shapes.items()},
                    "backends": list(m.backends),
                }
                for m in self.models
            ],
            "results": [self.result_dict(r, samples) for r in self.results],
        }

    def to_json(self, indent: int | None = 2, samples: bool = True) -> str:
        """The report as JSON text (raw latency samples in ms included unless ``samples``)."""
        return json.dumps(self.to_dict(samples), indent=indent)

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` (parent directories created)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    # --- HTML --------------------------------------------------------------------------

    def to_html(self) -> str:
        """A self-contained HTML page: the table, percentile bars and a latency CDF per model."""
        from edgeinfer.report_html import cdf_chart, grouped_bar_chart, html_page

        head = (
            "<tr><th>model</th><th>backend</th><th>threads</th><th>load ms</th>"
            "<th>cold ms</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>mean ms</th>"
            "<th>inf/s</th><th>p50 / best</th><th>peak RSS</th><th>RSS growth</th>"
            "<th>size</th><th>cosine</th><th>max abs err</th><th>top-1</th></tr>"
        )
        rows = []
        for r in self.results:
            cells = [html.escape(r.model), html.escape(r.backend_label),
                     str(r.threads or "default")]
            if not r.ok:
                cells.append(f'<td colspan="14" class="bad">{html.escape(str(r.error))}</td>')
                rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells[:3]) + cells[3]
                            + "</tr>")
                continue
            a = r.agreement or {}
            ratio = self.ratio(r)
            if a.get("is_reference"):
                agree = ["reference", "", ""]
            elif "error" in a:
                agree = [html.escape(a["error"]), "", ""]
            else:
                t1 = a.get("top1_agreement")
                agree = [
                    f"{a['cosine']:.6f}",
                    f"{a['max_abs_error']:.2e}",
                    "-" if t1 is None else f"{t1:.3f}",
                ]
            cells += [
                fmt_ms(r.load_ms),
                fmt_ms(r.cold_ms),
                fmt_ms(r.p50_ms),
                fmt_ms(r.p90_ms),
                fmt_ms(r.p99_ms),
                fmt_ms(r.mean_ms),
                f"{r.throughput:.1f}" if r.throughput else "-",
                "-" if ratio is None else f"{ratio:.2f}x",
                _mib(r.rss_peak_bytes),
                _mib(r.rss_growth_bytes),
                f"{r.model_bytes / 1e6:.2f} MB",
                *agree,
            ]
            rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        ok = [r for r in self.results if r.ok]
        charts = ""
        if ok:
            charts += grouped_bar_chart(
                "latency percentiles per configuration (ms, lower is better)",
                [f"{r.model} · {r.backend_label} · {r.threads or 'default'} thr" for r in ok],
                {
                    "p50": [r.p50_ms for r in ok],
                    "p90": [r.p90_ms for r in ok],
                    "p99": [r.p99_ms for r in ok],
                },
                "ms",
                width=760,
            )
        for m in self.models:
            curves = {r.label: r.samples_ms for r in ok if r.model == m.name}
            if curves:
                charts += "<h2>" + html.escape(m.name) + ": latency distribution</h2>"
                charts += cdf_chart(
                    f"{m.name}: share of inferences at or below a latency", curves, width=760
                )
        s = self.settings
        how = f"{s['runs']} timed runs" if s.get("runs") else f"{s.get('duration_s')} s"
        shapes = "; ".join(
            f"{html.escape(m.name)}: "
            + ", ".join(
                f"{html.escape(k)} {'x'.join(map(str, v))}" for k, v in m.input_shapes.items()
            )
            for m in self.models
        )
        body = (
            "<h1>edgeinfer bench</h1>"
            f"<p>Machine: {html.escape(machine_line(self.machine))}. {html.escape(self.created)}."
            f"</p><p>{how} per configuration after {s.get('warmup')} warm-up runs, sequential "
            f"batch 1; inputs: {shapes} (seeded synthetic, seed {s.get('seed')}, the same for "
            "every backend). Agreement is against each model's first backend. "
            f"{html.escape(MEMORY_NOTES[self.memory_method])}.</p>"
            f"<table>{head}{''.join(rows)}</table>{charts}"
        )
        return html_page("edgeinfer bench", body)

    def write_html(self, path: str | Path) -> Path:
        """Write :meth:`to_html` to ``path`` (parent directories created)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_html(), encoding="utf-8")
        return path
