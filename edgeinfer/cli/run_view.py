"""What ``edgeinfer run`` shows: a line or two per frame, or JSON (one document for a finite
source, JSON lines for a camera, URL or ``--live``), then the summary."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeinfer.cli.common import console, print_json


@dataclass
class FrameView:
    """Renders each prediction as it arrives (``show``) and the run's summary (``finish``)."""

    as_json: bool
    streaming: bool
    top_k: int
    frames: list[dict[str, Any]] = field(default_factory=list)

    def show(self, pred: Any) -> None:
        """One prediction: a JSON record, or the source, its time and its results."""
        result = pred.result
        items = result.to_dicts() if hasattr(result, "to_dicts") else list(result)[: self.top_k]
        if self.as_json:
            record = {
                "source": pred.source,
                "result": result.to_json() if hasattr(result, "to_json") else items,
                "times_ms": {k: round(v, 3) for k, v in pred.times_ms.items()},
            }
            if self.streaming:
                print(json.dumps(record), flush=True)
            else:
                self.frames.append(record)
            return
        total = sum(pred.times_ms.values())
        console.print(f"[bold]{pred.source}[/bold]  ({total:.1f} ms, {len(items)} results)")
        if hasattr(result, "describe"):
            console.print(f"  {result.describe()}")
        for r in items[: max(self.top_k, 20)]:
            where = " ".join(f"{v:.0f}" for v in r["box"]) if "box" in r else ""
            console.print(f"  {r['class_id']:>5}  {r['label']:<24} {r['score']:.3f}  {where}")

    def finish(self, summary: dict[str, Any], save: Path | None) -> None:
        """The summary: the last JSON line or the one document, or one line of figures."""
        if self.as_json:
            if self.streaming:
                print(json.dumps({"summary": summary}))
            else:
                print_json({"frames": self.frames, "summary": summary})
            return
        stages = ", ".join(f"{k} {v:.1f}" for k, v in summary["stages_ms"].items())
        fps_text = f"{summary['fps']:.1f}" if summary["fps"] else "-"
        lat = (f"latency p50 {summary['p50_ms']:.1f} ms, p99 {summary['p99_ms']:.1f} ms"
               if summary["p50_ms"] is not None else "no latency")
        console.print(
            f"{summary['frames']} frames in {summary['seconds']:.2f} s ({fps_text} fps); {lat}; "
            f"dropped {summary['dropped']}, reconnects {summary['reconnects']}; "
            f"mean ms per stage: {stages}"
            + (f"; saved {len(summary['saved'])} file(s) in {save}" if save else "")
            + (f"; skipped {summary['skipped']} unreadable image(s)" if summary.get("skipped")
               else "")
        )
