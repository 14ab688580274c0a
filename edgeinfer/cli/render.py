"""Rich rendering of reports for the terminal (the CLI's presentation layer)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def human_bytes(n: float) -> str:
    """``1536`` -> ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


def human_count(n: float) -> str:
    """``385187552`` -> ``385.19 M``."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n:.0f}"


def render_inspect(report: dict[str, Any], console: Console, per_op: bool = False) -> None:
    """Print an inspect report as rich tables."""
    summary = Table(title=f"Model: {report.get('path', '')}", show_header=False)
    summary.add_row(
        "format", f"{report['format']}" + (f", opset {report['opset']}" if report["opset"] else "")
    )
    for key in ("inputs", "outputs"):
        for t in report[key]:
            summary.add_row(key[:-1], f"{t['name']}  {t['shape']}  {t['dtype']}")
    p = report["params"]
    summary.add_row(
        "parameters",
        f"{human_count(p['count'])} ({human_bytes(p['bytes'])}: "
        + ", ".join(f"{d} {human_bytes(v['bytes'])}" for d, v in p["by_dtype"].items())
        + ")",
    )
    m = report["macs"]
    summary.add_row(
        "MACs", f"{human_count(m['total'])} (counted: {', '.join(m['counted_op_types'])})"
    )
    if m["not_counted"]:
        summary.add_row("not counted", ", ".join(f"{k}×{v}" for k, v in m["not_counted"].items()))
    bank = {k.rsplit(".", 1)[-1]: v for k, v in report.get("meta", {}).items()
            if k.startswith("edgeinfer.anomaly.")}
    if "bank_size" in bank:
        summary.add_row(
            "memory bank", f"{bank['bank_size']} x {bank.get('feature_dim', '?')} patch "
            f"features ({bank.get('backbone', '')} {bank.get('layers', '')}, stride "
            f"{bank.get('stride', '?')}; scorer {bank.get('scorer', 'patchcore')})"
        )
    hist = report["ops"]["histogram"]
    summary.add_row(
        "ops", f"{report['ops']['count']}: " + ", ".join(f"{k}×{v}" for k, v in hist.items())
    )
    console.print(summary)

    mem = report["memory"]
    table = Table(title="Activation memory (arena plan)")
    table.add_column("plan")
    table.add_column("bytes", justify="right")
    table.add_column("vs lower bound", justify="right")
    lb = mem["lower_bound_bytes"] or 1
    table.add_row(
        "naive (one buffer per tensor)",
        human_bytes(mem["naive_bytes"]),
        f"{mem['naive_bytes'] / lb:.2f}x",
    )
    table.add_row("lower bound (peak live set)", human_bytes(mem["lower_bound_bytes"]), "1.00x")
    for name, size in mem["plans"].items():
        mark = "  ← best" if name == mem["best"]["strategy"] else ""
        table.add_row(f"{name}{mark}", human_bytes(size), f"{size / lb:.2f}x")
    console.print(table)
    console.print(
        f"peak at op #{mem['peak_step']} ({mem['peak_op']}); the best plan saves "
        f"{mem['saving_vs_naive']:.1%} against the naive sum"
    )
    if "budget" in report:
        b = report["budget"]
        verdict = "[green]fits[/green]" if b["fits"] else "[red]does not fit[/red]"
        how = "spare" if b["fits"] else "over"
        console.print(
            f"budget {human_bytes(b['budget_bytes'])}: weights + arena = "
            f"{human_bytes(b['needed_bytes'])}: {verdict} "
            f"({human_bytes(abs(b['margin_bytes']))} {how})"
        )
    if per_op:
        ops = Table(title="MACs per op")
        for col in ("#", "op", "type", "output shape", "MACs", "share"):
            ops.add_column(col, justify="right" if col in ("#", "MACs", "share") else "left")
        total = m["total"] or 1
        for i, op in enumerate(m["per_op"]):
            macs = op["macs"]
            ops.add_row(
                str(i),
                op["name"],
                op["op_type"],
                str(op["output_shape"]),
                "-" if macs is None else human_count(macs),
                "" if macs is None else f"{macs / total:.1%}",
            )
        console.print(ops)


def render_optimize(report: dict[str, Any], console: Console) -> None:
    """Print the optimize report: before/after table, kept layers, the drop with its interval
    and sample count, and any problem plainly."""
    fp32, res = report["fp32"], report["result"]
    table = Table(title=f"optimize: {report['precision_requested']} vs FP32 (this machine)")
    for col in ("", "FP32", report["precision_requested"], "ratio"):
        table.add_column(col, justify="right" if col else "left")
    table.add_row(
        "size",
        human_bytes(fp32["bytes"]),
        human_bytes(res["bytes"]),
        f"{report['ratios']['size']:.2f}x",
    )
    table.add_row(
        "p50 latency",
        f"{fp32['p50_ms']:.2f} ms",
        f"{res['p50_ms']:.2f} ms",
        f"{report['ratios']['p50']:.2f}x",
    )
    table.add_row("p90 latency", f"{fp32['p90_ms']:.2f} ms", f"{res['p90_ms']:.2f} ms", "")
    agree = res["agreement"]
    if agree is not None:
        label = {"top1": "top-1 agreement", "det-ap50": "AP@0.5 vs FP32"}.get(
            agree["metric"], "output cosine")
        table.add_row(label, "1.000", f"{agree['value']:.3f}", "")
        for k, v in agree.get("by_confidence", {}).items():
            table.add_row(f"  where FP32 confidence {k}", "1.000", f"{v:.3f}", "")
        if "accuracy" in agree:
            table.add_row(
                "accuracy (labels)",
                f"{agree['reference_accuracy']:.3f}",
                f"{agree['accuracy']:.3f}",
                "",
            )
    console.print(table)
    if "plain_int8" in report:
        kept = report["kept_in_float"]
        console.print(
            f"plain INT8 agreement {report['plain_int8']['value']:.3f}; "
            f"{len(kept)} layers kept in float by the fallback"
            + (f": {', '.join(kept[:8])}" + (" ..." if len(kept) > 8 else "") if kept else "")
        )
    q = report.get("quantization")
    if q:
        console.print(f"quantization: reduce_range {'on' if q['reduce_range'] else 'off'} "
                      f"(from {q['reduce_range_from']})")
    console.print(
        f"data: {report['samples']['calibration']} calibration, "
        f"{report['samples']['evaluation']} evaluation samples ({report['samples']['origin']})"
    )
    interval = report.get("drop_interval")
    if interval is not None:
        status = "" if interval["established"] else (
            f"; not established: fewer than {interval['min_samples']} samples")
        console.print(
            f"drop measured as: {report['drop_metric']}: {res['drop']:.2%} (95% interval "
            f"{interval['low']:.2%} to {interval['high']:.2%} on {interval['samples']} "
            f"samples{status}; max {report['max_drop']:.2%})"
        )
    else:
        console.print(f"drop: {report['drop_metric']}")
    for n in report.get("notes", []):
        console.print(f"[yellow]note:[/yellow] {n}")
    for p in report["problems"]:
        console.print(
            f"[bold red]warning:[/bold red] the {report['precision_requested']} model is "
            f"{p}; the artifact keeps FP32 as its recommended model"
            if "stopped" not in report else f"[bold red]stopped:[/bold red] {p}; the artifact "
            "keeps FP32"
        )
    if not report["problems"]:
        console.print(f"[green]recommended:[/green] {report.get('label', report['recommended'])}")


def render_tune(report: dict[str, Any], console: Console) -> None:
    """The candidates ``tune`` tried, fastest first, and the winner against the baseline."""
    table = Table(title=f"tune: {report['objective']}, max drop {report['max_drop']:.2%}")
    for col in ("candidate", "status", "drop", "screen p50", "final p50", "p90", "fps", "size"):
        table.add_column(
            col,
            justify="left" if col in ("candidate", "status") else "right",
            no_wrap=col != "status",
        )

    def ms(v: float | None) -> str:
        return "" if v is None else f"{v:.2f} ms"

    rows = sorted(
        report["candidates"],
        key=lambda c: (c["status"] != "ok", c.get("p50_ms") or 1e9, c["screen_p50_ms"] or 1e9),
    )
    reasons: list[str] = []
    for c in rows:
        label = c["label"] + (" *" if c["label"] == report["winner"] else "")
        status = c["status"]
        if c["status"] != "ok":  # reasons in full below the table, never cut
            reasons.append(f"[{len(reasons) + 1}] {c['label']}: {c['reason']}")
            status = f"{c['status']} [{len(reasons)}]"
        table.add_row(
            label,
            status,
            "" if c["drop"] is None else f"{c['drop']:.2%}",
            ms(c["screen_p50_ms"]),
            ms(c.get("p50_ms")),
            ms(c.get("p90_ms")),
            "" if c.get("throughput_fps") is None else f"{c['throughput_fps']:.0f}",
            human_bytes(c["bytes"]),
        )
    console.print(table)
    for line in reasons:
        console.print(line, overflow="fold")
    b = report["baseline"]
    console.print(
        f"winner: [bold]{report['winner']}[/bold] {report['winner_p50_ms']:.2f} ms p50; "
        f"baseline ({b['label']}) {b['p50_ms']:.2f} ms: "
        f"speed-up [bold]{report['speedup_vs_baseline']:.2f}x[/bold]"
    )
    for note in report["notes"]:
        console.print(f"note: {note}")


def render_convert(r: dict[str, Any], console: Console) -> None:
    """The convert report as one table row: sizes, agreement with ONNX, time."""
    table = Table(title=f"convert: ONNX -> {r['to']} {r['precision']}")
    for col in ("size", "ONNX size", "cosine (worst)", "cosine (mean)", "max abs error",
                "top-1 agreement", "seconds"):
        table.add_column(col, justify="right")
    top1 = "-" if r["top1_agreement"] is None else f"{r['top1_agreement']:.3f}"
    table.add_row(
        f"{r['bytes'] / 1e6:.2f} MB", f"{r['onnx_bytes'] / 1e6:.2f} MB", f"{r['cosine']:.5f}",
        f"{r['cosine_mean']:.5f}", f"{r['max_abs_error']:.3g}", top1, f"{r['seconds']:.1f}",
    )
    console.print(table)
    if r.get("outputs_matched_by"):
        console.print(f"{len(r['outputs'])} output(s) matched to ONNX's by "
                      f"{r['outputs_matched_by']}")
    for w in r.get("warnings", []):
        console.print(f"[bold red]warning:[/bold red] {w}")
