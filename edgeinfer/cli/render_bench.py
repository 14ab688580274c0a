"""The ``bench`` report in the terminal: per model, latency, start-up/memory and agreement
tables narrow enough for 80 columns, then errors, settings and the machine."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgeinfer.benchmark.harness import BenchResult
from edgeinfer.benchmark.report import (
    MEMORY_NOTES,
    BenchReport,
    ModelInfo,
    fmt_mib,
    fmt_ms,
    fmt_rate,
)
from edgeinfer.machine import machine_line


def render_bench(report: BenchReport, console: Console) -> None:
    """Print, per model, rich tables (latency; start-up and memory; agreement), each narrow
    enough for an 80-column terminal, then the errors, the settings and the machine."""
    for m in report.models:
        _render_model(report, m, [r for r in report.results if r.model == m.name], console)
    for r in report.results:
        if not r.ok:
            console.print(f"[red]{escape(r.model)} on {r.label}:[/red] {escape(str(r.error))}")
        elif r.agreement and "error" in r.agreement:
            console.print(
                f"[yellow]{escape(r.model)} on {r.label}: agreement not compared:[/yellow] "
                f"{escape(r.agreement['error'])}"
            )
    runs = report.settings.get("runs")
    how = f"{runs} runs" if runs else f"{report.settings.get('duration_s')} s"
    console.print(
        f"{how} after {report.settings.get('warmup')} warm-up runs per configuration; "
        f"agreement against each model's first backend on the same seeded inputs; "
        f"machine: {escape(machine_line(report.machine))}",
        highlight=False,
    )
    if report.memory_method != "clear_refs":
        console.print(f"[yellow]note:[/yellow] {MEMORY_NOTES[report.memory_method]}")

def _render_model(
    report: BenchReport, m: ModelInfo, results: list[BenchResult], console: Console
) -> None:

    def table(title: str, columns: tuple[str, ...]) -> Table:
        t = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
        t.add_column("backend", no_wrap=True)
        t.add_column("threads", justify="right", no_wrap=True)
        for col in columns:
            t.add_column(col, justify="right", no_wrap=True)
        return t

    shapes = ", ".join(f"{k}={'x'.join(map(str, v))}" for k, v in m.input_shapes.items())
    console.print(
        f"[bold]{escape(m.name)}[/bold]: {m.format} {m.precision}, "
        f"{m.bytes / 1e6:.2f} MB on disk, inputs {escape(shapes)}",
        highlight=False,
    )
    latency = table(
        "latency (ms, sequential batch 1)",
        ("p50", "p90", "p99", "mean", "inf/s", "p50 / best"),
    )
    startup = table(
        "start-up (ms) and memory (MiB)",
        ("load", "cold start", "peak RSS", "RSS growth"),
    )
    agreement = table(
        "output agreement with the first backend (same inputs)",
        ("cosine", "max abs error", "top-1"),
    )
    compared = False
    for r in results:
        head = (r.backend_label, str(r.threads) if r.threads else "default")
        if not r.ok:
            for t in (latency, startup, agreement):
                t.add_row(*head, "[red]failed[/red]", *[""] * (len(t.columns) - 3))
            continue
        ratio = report.ratio(r)
        ratio_text = "-" if ratio is None else f"{ratio:.2f}x"
        if ratio is not None and ratio == 1.0:
            ratio_text = f"[green]{ratio_text}[/green]"
        latency.add_row(
            *head,
            fmt_ms(r.p50_ms),
            fmt_ms(r.p90_ms),
            fmt_ms(r.p99_ms),
            fmt_ms(r.mean_ms),
            fmt_rate(r.throughput),
            ratio_text,
        )
        startup.add_row(
            *head,
            fmt_ms(r.load_ms),
            fmt_ms(r.cold_ms),
            fmt_mib(r.rss_peak_bytes),
            fmt_mib(r.rss_growth_bytes),
        )
        a = r.agreement or {}
        if a.get("is_reference"):
            agree = ["reference", "", ""]
        elif "error" in a or not a:
            agree = ["n/a", "", ""]
        else:
            compared = True
            t1 = a.get("top1_agreement")
            agree = [
                f"{a['cosine']:.6f}",
                f"{a['max_abs_error']:.2e}",
                "-" if t1 is None else f"{t1:.3f}",
            ]
        agreement.add_row(*head, *agree)
    console.print(latency)
    console.print(startup)
    if compared:
        console.print(agreement)

