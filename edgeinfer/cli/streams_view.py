"""The live terminal view of ``edgeinfer streams``: a per-stream table while the streams run,
then the summary with the energy view (process CPU time busy vs idle)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeinfer.errors import EdgeInferError
from edgeinfer.pipeline.multistream import MultiStreamRunner
from edgeinfer.pipeline.streams_config import load_streams_config

__all__ = ["energy_table", "run_streams_config", "stats_table"]


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def stats_table(stats: Mapping[str, Mapping[str, Any]], title: str = "streams") -> Any:
    """A rich table of ``MultiStreamRunner.stats()``: fps, p50/p99 latency, drops, state."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("stream", "fps", "p50 ms", "p99 ms", "frames", "drops", "idle skip", "state",
                "reconn.", "queue"):
        table.add_column(col, justify="left" if col in ("stream", "state") else "right")
    for name, s in stats.items():
        state = s["state"] if s["running"] else ("error" if s["error"] else "ended")
        table.add_row(name, f"{s['fps']:.1f}", _ms(s["latency_ms_p50"]), _ms(s["latency_ms_p99"]),
                      str(s["frames"]), str(s["drops"]), str(s["idle_skipped"]), state,
                      str(s["reconnects"]), f"{s['queue_len']}/{s['queue_bound']}")
    return table


def energy_table(energy: Mapping[str, Any]) -> Any:
    """A rich table of ``MultiStreamRunner.energy()``: CPU seconds per hour by phase."""
    from rich.table import Table

    table = Table(title="energy view: process CPU time by phase")
    for col in ("phase", "wall s", "CPU s", "CPU s per hour", "cores busy"):
        table.add_column(col, justify="left" if col == "phase" else "right")
    for phase, p in sorted(energy["phases"].items()):
        table.add_row(phase, f"{p['wall_s']:.1f}", f"{p['cpu_s']:.1f}",
                      f"{p['cpu_s_per_hour']:.0f}", f"{p['cores_busy']:.2f}")
    return table


def run_streams_config(path: str | Path, duration_s: float | None, console: Any,
                       refresh_s: float = 0.5) -> dict[str, Any]:
    """Run a streams config for ``duration_s`` seconds (None: until every stream ends or
    Ctrl-C) with a live table on ``console``; the final stats, energy and scheduler figures."""
    from rich.live import Live

    from edgeinfer.runtime.scheduler import Scheduler

    if duration_s is not None and duration_s <= 0:
        raise EdgeInferError(f"bad --duration {duration_s}: give seconds > 0")
    config = load_streams_config(path)
    with Scheduler(config.scheduler_config()) as scheduler:
        runner = MultiStreamRunner(scheduler, config)
        t0 = time.monotonic()
        with runner, Live(stats_table(runner.stats()), console=console,
                          refresh_per_second=4, transient=False) as live:
            try:
                while runner.running and (duration_s is None
                                          or time.monotonic() - t0 < duration_s):
                    left = None if duration_s is None else duration_s - (time.monotonic() - t0)
                    runner.wait(refresh_s if left is None else max(0.0, min(refresh_s, left)))
                    live.update(stats_table(runner.stats(),
                                            f"streams ({time.monotonic() - t0:.0f} s)"))
            except KeyboardInterrupt:
                console.print("stopping")
        stats, sched = runner.stats(), scheduler.stats()
    energy = runner.energy()
    console.print(stats_table(stats, "summary"))
    console.print(energy_table(energy))
    if energy["idle_over_busy"] is not None:
        console.print(f"idle / busy CPU seconds per hour: {energy['idle_over_busy']:.2f}")
    errors = {k: s["error"] for k, s in stats.items() if s["error"]}
    for name, err in errors.items():
        console.print(f"[red]stream {name} ended: {err}[/red]")
    return {"seconds": time.monotonic() - t0, "streams": stats, "energy": energy,
            "scheduler": sched["models"], "workers": sched["workers"],
            "threads": sched["threads"]}
