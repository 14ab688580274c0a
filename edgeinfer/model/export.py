"""PyTorch ``nn.Module`` -> ONNX, the canonical form, with a deliberate opset.

Uses the TorchScript-based exporter (``dynamo=False``): it needs no extra packages and gives
stable node names. The graph is then simplified with onnxslim (constant folding, dead-code
removal, shape-op cleanup), so that padding and shape arithmetic computed at run time become
constants and every tensor gets a static shape.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx

from edgeinfer._deps import require
from edgeinfer.errors import EdgeInferError, UnsupportedOpsetError
from edgeinfer.model.formats import MAX_OPSET, MIN_OPSET

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17


def export(
    module: Any,
    example_input: Any,
    path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    input_names: Sequence[str] = ("input",),
    output_names: Sequence[str] = ("output",),
    dynamic_batch: bool = False,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    simplify: bool = True,
) -> Path:
    """Export a PyTorch module to ONNX at ``path`` and return the path.

    ``dynamic_batch`` makes dimension 0 of every input and output symbolic (``batch``);
    ``dynamic_axes`` (tensor name -> {axis: symbol}) names any others, e.g. a detector's
    ``{"images": {0: "batch", 2: "height", 3: "width"}}``, and takes precedence.
    """
    torch = require("torch", "torch", "exporting PyTorch modules")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UnsupportedOpsetError(
            f"opset {opset} is outside the supported {MIN_OPSET}..{MAX_OPSET}: use opset 17"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    args = example_input if isinstance(example_input, tuple) else (example_input,)
    if dynamic_axes is None and dynamic_batch:
        dynamic_axes = {name: {0: "batch"} for name in [*input_names, *output_names]}
    axes = None if dynamic_axes is None else {k: dict(v) for k, v in dynamic_axes.items()}
    was_training = getattr(module, "training", False)
    module.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                args,
                str(path),
                opset_version=opset,
                dynamo=False,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_axes=axes,
                do_constant_folding=True,
            )
    except Exception as exc:
        raise EdgeInferError(
            f"torch.onnx.export of {type(module).__name__} failed "
            f"({str(exc).splitlines()[0][:160]}): check example_input matches forward()"
        ) from exc
    finally:
        module.train(was_training)
    if simplify:
        simplify_onnx(path)
    return path


def simplify_onnx(path: str | Path) -> None:
    """Simplify an ONNX file in place with onnxslim, keeping it if simplification fails."""
    import onnxslim

    model = onnx.load(str(path))
    try:
        slim = onnxslim.slim(model)
    except Exception as exc:  # keep the exported graph: it is valid, only less tidy
        log.warning("onnxslim could not simplify %s (%s); keeping the exported graph", path, exc)
        return
    onnx.save(slim, str(path))
