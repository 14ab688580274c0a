"""The compress report as one self-contained HTML page: the Pareto chart (score against ONNX
Runtime latency, every point tried, the chosen one marked) and the table of every point."""

from __future__ import annotations

import html
from typing import Any

from edgeinfer.report_html import html_page, scatter_chart

__all__ = ["compress_report_html"]


def _cells(row: dict[str, Any], backends: list[str]) -> list[str]:
    ms = [f"{row['latency_ms'][b]:.2f} ({row['latency_ratio'][b]:.2f}x)" for b in backends]
    before = row.get("score_before_fine_tune")
    return [row["name"], f"{row['macs'] / 1e6:.0f} M ({row['macs_ratio']:.2f}x fewer)",
            f"{row['params'] / 1e3:.0f} k", f"{row['bytes'] / 1e6:.2f}", *ms,
            "" if before is None else f"{before:.3f}", f"{row['score']:.3f}",
            f"{row['drop']:+.3f}"]


def compress_report_html(name: str, report: dict[str, Any]) -> str:
    """The page for ``reports.compress`` of artifact ``name``."""
    rows, metric = report["points"], report["metric"]
    backends = sorted({b for r in rows for b in r["latency_ms"]})
    x_backend = "ort" if "ort" in backends else (backends[0] if backends else None)
    points = [(r["latency_ms"][x_backend] if x_backend else r["macs"] / 1e6, r["score"],
               r["name"]) for r in rows]
    chart = scatter_chart(f"{metric} against latency", points,
                          f"{x_backend} latency (ms, batch 1)" if x_backend else "M MACs",
                          metric, highlight=report["chosen_index"])
    head = ["point", "MACs", "params", "MB", *[f"{b} ms" for b in backends],
            f"{metric} before fine-tune", metric, "drop"]
    table = "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
    for i, r in enumerate(rows):
        style = ' style="font-weight:bold"' if i == report["chosen_index"] else ""
        table += f"<tr{style}>" + "".join(f"<td>{html.escape(c)}</td>"
                                          for c in _cells(r, backends)) + "</tr>"
    table += "</table>"
    m = report.get("machine", {})
    body = (f"<h1>compress: {html.escape(name)}</h1><p>{html.escape(report['model'])}; chosen: "
            f"<b>{html.escape(report['chosen'])}</b> ({html.escape(report['reason'])}).</p>"
            f"{chart}{table}<p>Machine: {html.escape(str(m.get('cpu', '?')))}, "
            f"{m.get('usable_cpus', '?')} CPUs.</p>")
    return html_page(f"compress {name}", body)
