"""Torch-Pruning to a MACs target: the target is met, outputs keep their shape, the original
is untouched, and the detector's chunked CSP split is made prunable without changing it."""

from __future__ import annotations

from pathlib import Path

import torch
from compress_nets import classifier

from edgeinfer.compression.pruning import TOLERANCE, count_macs, prune_to_macs
from edgeinfer.training.detector_model import DefectDetector, make_prunable


def test_pruning_meets_the_macs_target_and_keeps_the_output_layer() -> None:
    model = classifier()
    x = torch.rand(1, 3, 64, 64)
    macs0, _ = count_macs(model, x)
    before = model(x).detach()
    result = prune_to_macs(model, x, macs0 // 2, ignored=lambda m: [m.head], round_to=None)
    assert result.macs <= macs0 // 2 and result.macs >= macs0 // 2 * (1 - 5 * TOLERANCE)
    assert result.macs_before == macs0 and result.params < result.params_before
    assert result.model(x).shape == (1, 5)
    assert result.model.head.out_features == 5
    assert torch.equal(model(x).detach(), before)  # the original is not changed


def test_a_target_above_the_model_changes_nothing() -> None:
    model = classifier()
    x = torch.rand(1, 3, 64, 64)
    macs0, _ = count_macs(model, x)
    result = prune_to_macs(model, x, macs0 * 2, ignored=lambda m: [m.head])
    assert result.ratio == 0 and result.macs == macs0


def test_make_prunable_keeps_the_detector_function_and_lets_it_be_pruned() -> None:
    torch.manual_seed(0)
    det = DefectDetector(num_classes=2, width=8, head=16).eval()
    x = torch.rand(1, 3, 64, 64)
    ref = det(x).detach()
    make_prunable(det)
    assert torch.allclose(det(x), ref, atol=1e-5)
    macs0, _ = count_macs(det, x)
    heads = lambda m: [layer for h in m.heads for layer in (h.box[-1], h.cls[-1])]  # noqa: E731
    result = prune_to_macs(det, x, macs0 // 3, ignored=heads, round_to=4)
    assert result.macs <= macs0 // 3
    assert result.model(x).shape == ref.shape  # same boxes + classes layout, same cells


def test_a_pruned_detector_is_rebuilt_exactly_from_its_onnx(tmp_path: Path) -> None:
    from edgeinfer.training.detector_model import detector_from_onnx, export_detector

    torch.manual_seed(0)
    det = make_prunable(DefectDetector(num_classes=4, width=8, head=16)).eval()
    x = torch.rand(1, 3, 64, 64)
    macs0, _ = count_macs(det, x)
    heads = lambda m: [layer for h in m.heads for layer in (h.box[-1], h.cls[-1])]  # noqa: E731
    pruned = prune_to_macs(det, x, macs0 // 2, ignored=heads, round_to=4).model
    rebuilt = detector_from_onnx(export_detector(pruned, tmp_path / "p.onnx", 64))
    assert torch.allclose(rebuilt(x), pruned(x), atol=1e-4)

