"""HTML reports with inline SVG charts: one self-contained file, no plotting library.

A bar chart is a few rectangles; drawing it ourselves keeps matplotlib (tens of MB) out of the
core install, which the edge device also gets.
"""

from __future__ import annotations

import html
import math
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


#: colours of series (percentiles, configurations), colour-blind friendly (seaborn "muted")
PALETTE = (
    "#4878d0", "#ee854a", "#6acc64", "#d65f5f", "#956cb4",
    "#8c613c", "#dc7ec0", "#797979", "#d5bb67", "#82c6e2",
)


def html_page(title: str, body: str) -> str:
    """A self-contained HTML page (the shared style, no external resources) around ``body``."""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def grouped_bar_chart(
    title: str,
    labels: Sequence[str],
    series: dict[str, Sequence[float | None]],
    unit: str,
    width: int = 640,
) -> str:
    """Horizontal bars, one group per label and one bar per series (e.g. p50/p90/p99), as an
    inline SVG string; a None value leaves its bar out."""
    names = list(series)
    bar, gap, left, pad = 12, 10, 230, 90
    group = bar * len(names) + gap
    height = 48 + group * len(labels)
    values = [v for vs in series.values() for v in vs if v is not None]
    top = max(values) if values and max(values) > 0 else 1.0
    parts = [
        f'<svg width="{width}" height="{height}" role="img" aria-label="{html.escape(title)}">',
        f'<text x="0" y="16" font-weight="bold">{html.escape(title)}</text>',
    ]
    for j, name in enumerate(names):
        x = left + j * 80
        parts.append(
            f'<rect x="{x}" y="24" width="10" height="10" fill="{PALETTE[j % len(PALETTE)]}"/>'
            f'<text x="{x + 14}" y="33">{html.escape(name)}</text>'
        )
    for i, label in enumerate(labels):
        y0 = 42 + i * group
        parts.append(
            f'<text x="0" y="{y0 + group / 2:.1f}">{html.escape(label)}</text>'
        )
        for j, name in enumerate(names):
            value = series[name][i]
            if value is None:
                continue
            y = y0 + j * bar
            w = (width - left - pad) * value / top
            parts.append(
                f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar - 2}" '
                f'fill="{PALETTE[j % len(PALETTE)]}"/>'
                f'<text x="{left + w + 4:.1f}" y="{y + bar - 3}" font-size="10">'
                f"{value:.3g} {html.escape(unit)}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def cdf_chart(
    title: str,
    curves: dict[str, Sequence[float]],
    unit: str = "ms",
    width: int = 640,
    height: int = 300,
) -> str:
    """Empirical cumulative distribution of each sample set (x: value, y: share of samples at
    or below it) as an inline SVG line chart.

    The x axis runs from 0 to 1.25x the largest 99th percentile, so one slow outlier does not
    squash the curves; the few samples beyond sit on the right edge. At most 400 steps are
    drawn per curve (evenly spaced in rank).
    """
    left, right, top_m, bottom = 50, 20, 30, 40
    plot_w, plot_h = width - left - right, height - top_m - bottom
    data = {k: sorted(v) for k, v in curves.items() if len(v)}
    p99s = [v[min(len(v) - 1, int(0.99 * len(v)))] for v in data.values()]
    step = _nice_step(1.25 * max(p99s, default=1.0) / 5)
    ticks = math.ceil(1.25 * max(p99s, default=1.0) / step)
    xmax = step * ticks
    legend_h = 16 * len(data)
    parts = [
        f'<svg width="{width}" height="{height + legend_h}" role="img" '
        f'aria-label="{html.escape(title)}">',
        f'<text x="0" y="16" font-weight="bold">{html.escape(title)}</text>',
        f'<rect x="{left}" y="{top_m}" width="{plot_w}" height="{plot_h}" fill="none" '
        'stroke="#999"/>',
    ]
    for k in range(ticks + 1):  # vertical grid and x labels at round values
        x = left + plot_w * k / ticks
        parts.append(
            f'<line x1="{x:.1f}" y1="{top_m}" x2="{x:.1f}" y2="{top_m + plot_h}" stroke="#eee"/>'
            f'<text x="{x:.1f}" y="{top_m + plot_h + 14}" text-anchor="middle">'
            f"{k * step:.4g}</text>"
        )
    for k in range(6):  # horizontal grid and y labels
        y = top_m + plot_h - plot_h * k / 5
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{k / 5:.1f}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{top_m + plot_h + 30}" text-anchor="middle">'
        f"latency ({html.escape(unit)})</text>"
    )
    for i, (name, values) in enumerate(data.items()):
        colour = PALETTE[i % len(PALETTE)]
        n = len(values)
        ranks = range(n) if n <= 400 else sorted({round(k * (n - 1) / 399) for k in range(400)})
        points = [f"{left:.1f},{top_m + plot_h:.1f}"]
        prev = 0
        for j in ranks:  # a step function: up at each sample
            x = left + plot_w * min(values[j], xmax) / xmax
            points.append(f"{x:.1f},{top_m + plot_h - plot_h * prev / n:.1f}")
            points.append(f"{x:.1f},{top_m + plot_h - plot_h * (j + 1) / n:.1f}")
            prev = j + 1
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
            f'points="{" ".join(points)}"/>'
        )
        ly = height + 16 * i
        parts.append(
            f'<rect x="{left}" y="{ly - 9}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{left + 14}" y="{ly}">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def scatter_chart(
    title: str,
    points: Sequence[tuple[float, float, str]],
    x_label: str,
    y_label: str,
    highlight: int | None = None,
    width: int = 640,
    height: int = 320,
) -> str:
    """Labelled points ``(x, y, label)`` joined in order (a Pareto curve) as an inline SVG;
    ``highlight`` draws that point larger and in another colour. Both axes start at round
    values below the data."""
    left, right, top_m, bottom = 60, 30, 30, 40
    plot_w, plot_h = width - left - right, height - top_m - bottom
    xs, ys = [p[0] for p in points] or [0.0, 1.0], [p[1] for p in points] or [0.0, 1.0]

    def axis(lo: float, hi: float) -> tuple[float, float, float]:
        span = (hi - lo) or abs(hi) or 1.0
        step = _nice_step(span / 4)
        start = math.floor((lo - 0.05 * span) / step) * step
        return start, step, math.ceil((hi + 0.05 * span - start) / step) * step + start

    x0, xs_step, x1 = axis(min(xs), max(xs))
    y0, ys_step, y1 = axis(min(ys), max(ys))

    def at(x: float, y: float) -> tuple[float, float]:
        return (left + plot_w * (x - x0) / (x1 - x0),
                top_m + plot_h - plot_h * (y - y0) / (y1 - y0))

    parts = [
        f'<svg width="{width}" height="{height}" role="img" aria-label="{html.escape(title)}">',
        f'<text x="0" y="16" font-weight="bold">{html.escape(title)}</text>',
        f'<rect x="{left}" y="{top_m}" width="{plot_w}" height="{plot_h}" fill="none" '
        'stroke="#999"/>',
    ]
    for k in range(round((x1 - x0) / xs_step) + 1):
        x, _ = at(x0 + k * xs_step, y0)
        parts.append(f'<text x="{x:.1f}" y="{top_m + plot_h + 14}" text-anchor="middle">'
                     f"{x0 + k * xs_step:.4g}</text>")
    for k in range(round((y1 - y0) / ys_step) + 1):
        _, y = at(x0, y0 + k * ys_step)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
                     f'stroke="#eee"/><text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">'
                     f"{y0 + k * ys_step:.4g}</text>")
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{top_m + plot_h + 32}" '
                 f'text-anchor="middle">{html.escape(x_label)}</text>'
                 f'<text x="12" y="{top_m + plot_h / 2:.1f}" text-anchor="middle" '
                 f'transform="rotate(-90 12 {top_m + plot_h / 2:.1f})">{html.escape(y_label)}'
                 "</text>")
    line = " ".join("{:.1f},{:.1f}".format(*at(x, y)) for x, y, _ in points)
    parts.append(f'<polyline fill="none" stroke="{PALETTE[0]}" points="{line}"/>')
    for i, (x, y, label) in enumerate(points):
        cx, cy = at(x, y)
        big = i == highlight
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{6 if big else 4}" '
                     f'fill="{PALETTE[3] if big else PALETTE[0]}"/>'
                     f'<text x="{cx + 8:.1f}" y="{cy - 6:.1f}">{html.escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _nice_step(raw: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is at least ``raw`` (> 0)."""
    if not raw > 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


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
    ]
    agree = agree or {}
    if agree:
        rows.append((
            {"top1": "top-1 agreement", "det-ap50": "AP@0.5 vs FP32"}.get(
                agree["metric"], "output cosine"),
            "1.000",
            f"{agree['value']:.3f}",
            "",
        ))
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
        f'<p class="bad">{html.escape(p)}; the artifact keeps FP32.</p>' if "stopped" in report
        else f'<p class="bad">The {html.escape(prec)} model is {html.escape(p)}; the '
        "artifact keeps FP32 as its recommended model.</p>"
        for p in report["problems"]
    )
    if not report["problems"]:
        label = report.get("label", report["recommended"])
        verdict = f'<p class="ok">Recommended: {html.escape(label)}</p>'
    interval = report.get("drop_interval")
    if interval is not None:
        verdict += (
            f"<p>Drop ({html.escape(report['drop_metric'])}): {res['drop']:.2%}, 95% interval "
            f"{interval['low']:.2%} to {interval['high']:.2%} on {interval['samples']} "
            f"samples ({html.escape(interval['method'])})"
            + ("." if interval["established"] else
               f": <b>not established</b> (fewer than {interval['min_samples']} samples).")
            + "</p>")
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
