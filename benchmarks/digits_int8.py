"""INT8 on real labelled data: a small CNN trained on scikit-learn's handwritten digits.

The data: ``sklearn.datasets.load_digits``, 1797 real handwritten digits (8x8 grey images,
pixels 0..16, 10 classes, labelled; a copy of the UCI "Optical Recognition of Handwritten
Digits" test set, shipped inside scikit-learn, so no download). Split stratified and disjoint:
60% train, 10% calibration, 30% test; calibration images are never test images.

The model: a few Conv+BN+ReLU layers, global average pooling and a linear head, trained in plain
torch, deterministically (fixed seeds, deterministic algorithms, one thread). It is exported
with ``edgeinfer.export``, wrapped as a classification artifact (labels "0".."9") and
optimized with ``edgeinfer.optimization.optimizer.optimize`` at ``int8`` and at ``mixed``,
calibrated on the calibration split and evaluated against the test labels. The peer is
onnxruntime's ``quantize_static`` with its default settings (QDQ, per-tensor, MinMax, QInt8
activations and weights) on the same FP32 model and the same calibration images.

Two sizes run: ``small`` (16x16 input, 16-32-64 channels: the model this issue asks for) and
``large`` (32x32 input, 32-64-128 channels), because on a model this small the Q/DQ overhead can
outweigh the cheaper integer convolutions, and that is worth seeing next to a model where it
does not. Latencies are batch-1 p50 on this machine, measured interleaved (all models of one
size in alternating rounds) so drift hits them equally.

    .venv/bin/python benchmarks/digits_int8.py [--sizes small,large] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

import edgeinfer
from edgeinfer.artifact import Artifact, InputSpec, Preprocess, SourceInfo
from edgeinfer.optimization.calibration import CalibrationReader
from edgeinfer.optimization.evaluate import interleaved_latency, run_outputs
from edgeinfer.optimization.optimizer import OptimizeConfig, Samples, optimize

SEED = 0


@dataclass(frozen=True)
class Variant:
    """One model size: input side (the 8x8 digits are upsampled to it) and channel widths."""

    name: str
    side: int
    widths: tuple[int, int, int]
    epochs: int


VARIANTS = {
    "small": Variant("small", 16, (16, 32, 64), 20),
    "large": Variant("large", 32, (32, 64, 128), 12),
}


@dataclass(frozen=True)
class Digits:
    """The three disjoint splits, preprocessed (pixels / 16, upsampled), NCHW float32."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_calib: np.ndarray
    y_calib: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits_splits(side: int, seed: int = SEED) -> Digits:
    """Stratified 60/10/30 split of sklearn's digits, upsampled bilinearly to side x side."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]  # [N, 1, 8, 8] in [0, 1]
    if side != 8:
        with torch.no_grad():
            x = torch.nn.functional.interpolate(
                torch.from_numpy(x), size=(side, side), mode="bilinear", align_corners=False
            ).numpy()
    y = d.target.astype(np.int64)
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=0.30, stratify=y, random_state=seed)
    train, calib = train_test_split(
        rest, test_size=0.10 / 0.70, stratify=y[rest], random_state=seed
    )
    assert not (set(calib) & set(test)) and not (set(train) & set(test))
    return Digits(x[train], y[train], x[calib], y[calib], x[test], y[test])


def make_model(widths: tuple[int, int, int]) -> nn.Module:
    """Conv+BN+ReLU x3 (the last two stride 2), global average pool, linear head."""
    a, b, c = widths
    return nn.Sequential(
        nn.Conv2d(1, a, 3, padding=1, bias=False), nn.BatchNorm2d(a), nn.ReLU(),
        nn.Conv2d(a, b, 3, padding=1, stride=2, bias=False), nn.BatchNorm2d(b), nn.ReLU(),
        nn.Conv2d(b, c, 3, padding=1, stride=2, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10),
    )  # fmt: skip


def train(
    x: np.ndarray, y: np.ndarray, widths: tuple[int, int, int], epochs: int, seed: int = SEED
) -> nn.Module:
    """Deterministic training: fixed seeds, deterministic algorithms, one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(seed)
        model = make_model(widths)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
        steps_per_epoch = -(-len(x) // 64)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=3e-3, total_steps=epochs * steps_per_epoch
        )
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        gen = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(epochs):
            perm = torch.randperm(len(xt), generator=gen)
            for i in range(0, len(xt), 64):
                batch = perm[i : i + 64]
                loss = nn.functional.cross_entropy(model(xt[batch]), yt[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        return model.eval()
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads)


def make_artifact(model: nn.Module, side: int, workdir: Path, name: str) -> Artifact:
    """Export with edgeinfer.export and wrap as a classification artifact (labels 0..9)."""
    onnx_path = edgeinfer.export(model, torch.zeros(1, 1, side, side), workdir / f"{name}.onnx")
    return Artifact.create(
        workdir / f"{name}-fp32",
        onnx_path,
        name=name,
        task="classification",
        inputs=(InputSpec(name="input", shape=(1, 1, side, side)),),
        outputs=("output",),
        preprocess=Preprocess(resize="stretch", interpolation="linear", scale=1 / 16),
        decoder="classification",
        labels=[str(i) for i in range(10)],
        source=SourceInfo(
            name=name,
            origin="trained on scikit-learn load_digits (UCI handwritten digits), "
            "benchmarks/digits_int8.py",
        ),
    )


def ort_default_int8(src: Path, dst: Path, calib: np.ndarray) -> Path:
    """The peer: onnxruntime's quantize_static with every setting left at its default."""
    from onnxruntime.quantization import quantize_static

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its "consider pre-processing" advice, printed every call
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(str(src), str(dst), CalibrationReader(calib, "input"))
    finally:
        root.setLevel(level)
    return dst


def accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of an ONNX classifier on (x, y), batch 1 per sample."""
    return float((run_outputs(path, x, "input").argmax(1) == y).mean())


def run_variant(v: Variant, workdir: Path) -> dict[str, Any]:
    """Train, export, optimize (int8, mixed), quantize with the peer, measure all of it."""
    data = load_digits_splits(v.side)
    t0 = time.perf_counter()
    model = train(data.x_train, data.y_train, v.widths, v.epochs)
    train_s = time.perf_counter() - t0
    art = make_artifact(model, v.side, workdir, f"digits-{v.name}")
    samples = Samples(
        calib=data.x_calib,
        evaluation=data.x_test,
        labels=tuple(int(t) for t in data.y_test),
        origin="sklearn digits: stratified 10% calibration / 30% test split (disjoint)",
    )
    fp32_acc = accuracy(art.model_path, data.x_test, data.y_test)
    rows: list[dict[str, Any]] = []
    files: list[Path] = []
    for precision in ("int8", "mixed"):
        t0 = time.perf_counter()
        out = optimize(
            art.path,
            workdir / f"digits-{v.name}-{precision}",
            OptimizeConfig(precision=precision, max_drop=0.01),
            samples,
        )
        rep = out.manifest.reports["optimize"]
        shipped = out.model_path
        rejected = sorted(out.path.glob("*.rejected.onnx"))
        candidate = rejected[0] if rejected else shipped  # what INT8 gave, shipped or not
        files.append(candidate)
        rows.append(
            {
                "method": f"edgeinfer optimize --precision {precision}",
                "fp32_accuracy": rep["fp32"]["accuracy"],
                "accuracy": rep["result"]["agreement"]["accuracy"],
                "drop_points": 100 * rep["result"]["drop"],
                "size_ratio": rep["ratios"]["size"],
                "p50_ratio_report": rep["ratios"]["p50"],
                "kept_in_float": rep["kept_in_float"],
                "shipped": out.manifest.model.precision,
                "problems": rep["problems"],
                "seconds": time.perf_counter() - t0,
            }
        )
    t0 = time.perf_counter()
    peer = ort_default_int8(art.model_path, workdir / f"digits-{v.name}-ort.onnx", data.x_calib)
    peer_acc = accuracy(peer, data.x_test, data.y_test)
    files.append(peer)
    rows.append(
        {
            "method": "onnxruntime quantize_static (defaults)",
            "fp32_accuracy": fp32_acc,
            "accuracy": peer_acc,
            "drop_points": 100 * (fp32_acc - peer_acc),
            "size_ratio": peer.stat().st_size / art.model_path.stat().st_size,
            "p50_ratio_report": None,
            "kept_in_float": [],
            "shipped": "int8",
            "problems": [],
            "seconds": time.perf_counter() - t0,
        }
    )
    # one interleaved measurement of FP32 and every INT8 file per thread count, so the ratios
    # are comparable: ORT's default (all cores) and one thread (a small edge CPU)
    fp32_p50 = {}
    for threads, key in ((0, "all"), (1, "1")):
        lat = interleaved_latency(
            [art.model_path, *files], data.x_test[0], rounds=10, runs=20, threads=threads
        )
        fp32_p50[key] = lat[0].p50
        for row, result in zip(rows, lat[1:], strict=True):
            row[f"p50_ms_{key}"] = result.p50
            row[f"p50_ratio_{key}"] = result.p50 / lat[0].p50
    return {
        "variant": {"name": v.name, "input": [1, 1, v.side, v.side], "widths": list(v.widths)},
        "data": {
            "dataset": "sklearn.datasets.load_digits (real handwritten digits, labelled)",
            "train": len(data.y_train),
            "calibration": len(data.y_calib),
            "test": len(data.y_test),
        },
        "train_seconds": train_s,
        "fp32_test_accuracy": fp32_acc,
        "fp32_p50_ms": fp32_p50,
        "fp32_bytes": art.model_path.stat().st_size,
        "rows": rows,
    }


def render(result: dict[str, Any], console: Console) -> None:
    """One rich table per variant, then what its numbers mean."""
    v, d, fp = result["variant"], result["data"], result["fp32_p50_ms"]
    table = Table(
        title=(
            f"digits-{v['name']}: input {'x'.join(map(str, v['input']))}, channels "
            f"{'-'.join(map(str, v['widths']))}; {d['train']} train / {d['calibration']} "
            f"calibration / {d['test']} test; trained in {result['train_seconds']:.1f} s\n"
            f"FP32: {result['fp32_bytes'] / 1024:.0f} KiB, test accuracy "
            f"{result['fp32_test_accuracy']:.2%}, p50 {fp['all'] * 1000:.0f} us (all cores) / "
            f"{fp['1'] * 1000:.0f} us (1 thread)"
        ),
        title_justify="left",
    )
    columns = {
        "method": "left",
        "FP32 acc": "right",
        "INT8 acc": "right",
        "drop (pts)": "right",
        "size ratio": "right",
        "p50 ratio\nin report": "right",
        "p50 ratio\nall cores": "right",
        "p50 ratio\n1 thread": "right",
        "kept in float": "left",
        "shipped": "right",
    }
    for col, justify in columns.items():
        table.add_column(col, justify=justify)
    for r in result["rows"]:
        in_report = r["p50_ratio_report"]
        table.add_row(
            r["method"],
            f"{r['fp32_accuracy']:.2%}",
            f"{r['accuracy']:.2%}",
            f"{r['drop_points']:+.2f}",
            f"{r['size_ratio']:.2f}",
            "-" if in_report is None else f"{in_report:.2f}",
            f"{r['p50_ratio_all']:.2f}",
            f"{r['p50_ratio_1']:.2f}",
            ", ".join(r["kept_in_float"]) or "-",
            r["shipped"],
        )
    console.print(table)
    for r in result["rows"]:
        for p in r["problems"]:
            console.print(f"  [yellow]{r['method']}[/]: {p} -> the artifact keeps FP32")
    ours = result["rows"][:2]
    if all(not r["kept_in_float"] for r in ours):
        console.print(
            "  mixed = int8 here: INT8 already meets --max-drop 1 pt, so no layer returns to float."
        )
    slower = [r for r in result["rows"] if max(r["p50_ratio_all"], r["p50_ratio_1"]) > 1.02]
    if slower:
        console.print(
            f"  [yellow]INT8 is slower than FP32 here at some thread count[/]: FP32 takes "
            f"{fp['1'] * 1000:.0f} us on one thread; on a model this small the Quantize/"
            "Dequantize nodes and the int8 kernel setup cost about as much as the convolutions "
            "they make cheaper. optimize times FP32 and INT8 interleaved with all cores "
            "(its default) and calls INT8 slower only beyond a 5% margin; smaller gaps are "
            "reported as a note."
        )
    if fp["1"] < fp["all"] / 1.2:
        console.print(
            f"  FP32 is faster on one thread ({fp['1'] * 1000:.0f} us) than on all cores "
            f"({fp['all'] * 1000:.0f} us): at this size the thread hand-off costs more than "
            "the work, so the all-cores ratio compares overheads, not arithmetic."
        )


def main() -> None:
    """Run the requested variants and print tables (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="small,large", help="comma-separated: small,large")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args()
    names = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown size(s) {unknown}: choose from {sorted(VARIANTS)}")
    console = Console(width=160, stderr=args.json)
    t0 = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="digits-int8-") as tmp:
        for name in names:
            results.append(run_variant(VARIANTS[name], Path(tmp)))
            if not args.json:
                render(results[-1], console)
    wall = time.perf_counter() - t0
    if args.json:
        json.dump({"results": results, "wall_seconds": wall}, sys.stdout, indent=2)
        print()
    else:
        console.print(
            "p50 ratio: INT8 / FP32 batch-1 p50; 'in report': optimize's own measurement (the "
            "one that decides what ships); 'all cores' / '1 thread': all files measured "
            "interleaved in this run. size ratio: file bytes / FP32 file bytes."
        )
        console.print(f"wall time {wall:.1f} s")


if __name__ == "__main__":
    main()
