"""HTML reports with inline SVG charts: one self-contained file, no plotting library.

A bar chart is a few rectangles; drawing it ourselves keeps matplotlib (tens of MB) out of the
core install, which the edge device also gets.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem;
text-align:right}th:first-child,td:first-child{text-align:left}.bad{color:#b00020}
.ok{color:#0a7a2f}svg text{font-size:12px}
"""


def bar_chart(
    title: str, labels: Sequence[str], values: Sequence[float], unit: str, width: int = 560
) -> str:
    """A horizontal bar chart as an inline SVG string."""
    row, left, pad = 24, 190, 60
    height = row * len(labels) + 40
    top = max(values) if values and max(values) > 0 else 1.0
    parts = [
        f'<svg width="{width}" height="{height}" role="img" aria-label="{html.escape(title)}">',
        f'<text x="0" y="16" font-weight="bold">{html.escape(title)}</text>',
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 28 + i * row
        w = (width - left - pad) * value / top
        parts.append(f'<text x="0" y="{y + 14}">{html.escape(label)}</text>')
        parts.append(
            f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{row - 6}" '
            f'fill="{"#4878d0" if i % 2 == 0 else "#ee854a"}"/>'
        )
        parts.append(f'<text x="{left + w + 4:.1f}" y="{y + 14}">{value:.3g} {unit}</text>')
    parts.append("</svg>")
    return "".join(parts)


def optimize_report_html(name: str, report: dict[str, Any]) -> str:
    """The optimize report as a self-contained HTML page with a latency/size chart."""
    fp32, res, prec = report["fp32"], report["result"], report["precision_requested"]
    agree = res["agreement"]
    rows = [
        (
            "size (MB)",
            f"{fp32['bytes'] / 1e6:.2f}",
            f"{res['bytes'] / 1e6:.2f}",
            f"{report['ratios']['size']:.2f}x",
        ),
        (
            "p50 latency (ms)",
            f"{fp32['p50_ms']:.2f}",
            f"{res['p50_ms']:.2f}",
            f"{report['ratios']['p50']:.2f}x",
        ),
        ("p90 latency (ms)", f"{fp32['p90_ms']:.2f}", f"{res['p90_ms']:.2f}", ""),
        (
            "top-1 agreement" if agree["metric"] == "top1" else "output cosine",
            "1.000",
            f"{agree['value']:.3f}",
            "",
        ),
    ]
    rows += [
        (f"agreement where FP32 confidence {k}", "1.000", f"{v:.3f}", "")
        for k, v in agree.get("by_confidence", {}).items()
    ]
    if "accuracy" in agree:
        rows.append(
            (
                "accuracy (labels)",
                f"{agree['reference_accuracy']:.3f}",
                f"{agree['accuracy']:.3f}",
                "",
            )
        )
    table = "".join(
        f"<tr><td>{html.escape(a)}</td><td>{b}</td><td>{c}</td><td>{d}</td></tr>"
        for a, b, c, d in rows
    )
    chart = bar_chart(
        "p50 latency on this machine", ["FP32", prec], [fp32["p50_ms"], res["p50_ms"]], "ms"
    )
    chart += bar_chart(
        "model size", ["FP32", prec], [fp32["bytes"] / 1e6, res["bytes"] / 1e6], "MB"
    )
    verdict = "".join(
        f'<p class="bad">The {html.escape(prec)} model is {html.escape(p)}; the '
        "artifact keeps FP32 as its recommended model.</p>"
        for p in report["problems"]
    )
    if not report["problems"]:
        verdict = f'<p class="ok">Recommended: {html.escape(report["recommended"])}</p>'
    if "fallback_latency" in report:
        f = report["fallback_latency"]
        verdict += (f"<p>{len(report['kept_in_float'])} layers kept in float cost "
                    f"{f['ratio']:.2f}x the latency of INT8 everywhere "
                    f"({f['result_p50_ms']:.2f} vs {f['plain_int8_p50_ms']:.2f} ms).</p>")
    sens = report.get("sensitivity") or []
    kept = set(report.get("kept_in_float") or [])
    sens_rows = "".join(
        f"<tr><td>{html.escape(s['name'])}</td><td>{html.escape(s['op_type'])}</td>"
        f"<td>{s['output_sqnr_db']:.1f}</td><td>{s['loss_db']:.1f}</td>"
        f"<td>{'float' if s['name'] in kept else 'int8'}</td></tr>"
        for s in sens
    )
    sens_html = (
        "<h2>Layer sensitivity (most sensitive first)</h2><table><tr><th>layer</th><th>op</th>"
        "<th>output SQNR, this layer alone INT8 (dB)</th><th>dB lost in this layer (activation "
        f"matching)</th><th>kept as</th></tr>{sens_rows}</table>"
        if sens
        else ""
    )
    samples = report["samples"]
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>edgeinfer optimize: "
        f"{html.escape(name)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>edgeinfer optimize: {html.escape(name)} ({html.escape(prec)})</h1>{verdict}"
        f"<table><tr><th></th><th>FP32</th><th>{html.escape(prec)}</th><th>ratio</th></tr>"
        f"{table}</table>{chart}"
        f"<p>Data: {samples['calibration']} calibration and {samples['evaluation']} evaluation "
        f"samples ({html.escape(samples['origin'])}).</p>{sens_html}</body></html>"
    )
