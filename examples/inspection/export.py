"""Re-export the packaged defect detector with a dynamic batch, height and width.

    .venv/bin/python examples/inspection/export.py                 # check, then replace
    .venv/bin/python examples/inspection/export.py --dry-run       # check only

The first shipped ``defect-detector.onnx`` had its cell-centre grid baked for 640x640 (the
graph was simplified at a static input shape, so the grid became a constant): at 320 it failed
in an ``Add`` with a broadcast error. ``DefectDetector`` now builds the grid from the feature map
itself, so this script:

1. loads the shipped weights from the ONNX initializers into ``DefectDetector``
   (``edgeinfer.training.detector_model.detector_from_onnx``: the export folded BatchNorm into
   the convolutions);
2. exports it again (``export_detector``: opset 17, TorchScript exporter, input ``images``
   ``[batch, 3, height, width]``, output ``output0`` ``[batch, 8, cells]``), simplified by
   onnxslim, which keeps the grid dynamic because no spatial size is known;
3. checks the new file against the shipped one at 640x640 on ``--tiles`` generated tiles
   (SYNTHETIC, seed 9999, the evaluation series) with onnxruntime: max abs difference of the
   outputs under ``--atol`` (boxes are in pixels, 0..640, so 1e-3 is float32 rounding), and
   runs it at 320, 480 and 960 (output cells ``(H/8)(W/8) + (H/16)(W/16)``), and on OpenVINO
   where it is installed;
4. replaces ``--model`` (unless ``--dry-run``), printing the figures.

Input sides must be multiples of 16 (the stride-16 map is upsampled by 2 onto the stride-8 one).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from edgeinfer.synthetic.defects import CLASSES, make_tiles
from edgeinfer.training.detector_model import DefectDetector, detector_from_onnx, export_detector

log = logging.getLogger(__name__)

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "edgeinfer/data/defects/defect-detector.onnx"
CHECK_SIZES = (320, 480, 960)


def export_dynamic(model: DefectDetector, path: Path) -> Path:
    """Export ``model`` to ONNX opset 17 with dynamic batch/height/width, simplified."""
    path = export_detector(model, path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path


def _session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def compare(old: Path, new: Path, tiles: int) -> float:
    """Max abs difference of the two files' outputs on ``tiles`` generated 640x640 tiles."""
    a, b = _session(old), _session(new)
    worst = 0.0
    for img, _, _ in make_tiles(9999, tiles, 640):
        x = np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1)[None], np.float32) / 255.0
        (ya,), (yb,) = a.run(None, {"images": x}), b.run(None, {"images": x})
        worst = max(worst, float(np.abs(ya - yb).max()))
    return worst


def check_sizes(path: Path, sizes: tuple[int, ...] = CHECK_SIZES) -> dict[str, list[int]]:
    """Run ``path`` at each square size (batch 2) on onnxruntime and, where installed,
    OpenVINO; returns the output shapes, raising if one is wrong."""
    sess = _session(path)
    shapes: dict[str, list[int]] = {}
    for s in sizes:
        x = np.random.default_rng(s).random((2, 3, s, s), np.float32)
        (y,) = sess.run(None, {"images": x})
        cells = (s // 8) ** 2 + (s // 16) ** 2
        if y.shape != (2, 4 + len(CLASSES), cells):
            raise RuntimeError(f"{path} at {s}x{s}: output {y.shape}, expected {cells} cells")
        shapes[f"ort {s}"] = list(y.shape)
        try:
            import openvino as ov
        except ImportError:
            continue
        # f32 hint: OpenVINO's CPU plugin may otherwise run in a lower precision here
        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        yv = compiled({"images": x})[0]
        diff = float(np.abs(yv - y).max())
        if yv.shape != y.shape or diff > 1e-3:
            raise RuntimeError(f"OpenVINO at {s}x{s}: {yv.shape}, max abs diff {diff:.2g}")
        shapes[f"openvino {s}"] = list(yv.shape)
    return shapes


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="the file to re-export")
    ap.add_argument("--tiles", type=int, default=16, help="generated tiles for the check")
    ap.add_argument("--atol", type=float, default=1e-3, help="max abs difference allowed")
    ap.add_argument("--dry-run", action="store_true", help="check, do not replace --model")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    model = detector_from_onnx(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        new = export_dynamic(model, Path(tmp) / "defect-detector.onnx")
        diff = compare(args.model, new, args.tiles)
        print(f"max abs diff at 640x640 against {args.model.name}, {args.tiles} SYNTHETIC "
              f"tiles: {diff:.2e}")
        if diff > args.atol:
            raise SystemExit(f"difference {diff:.2e} exceeds --atol {args.atol}: not replaced")
        for key, shape in check_sizes(new).items():
            print(f"  {key}: output {shape}")
        print(f"size {new.stat().st_size / 1e6:.2f} MB")
        if not args.dry_run:
            args.model.write_bytes(new.read_bytes())
            print(f"replaced {args.model}")


if __name__ == "__main__":
    main()
