"""edgeinfer: take a trained vision model to edge hardware.

Public API::

    edgeinfer.export(module, example_input, "model.onnx")   # PyTorch -> ONNX
    edgeinfer.inspect("model.onnx", budget="64MB")          # MACs, params, arena plan
    artifact = edgeinfer.load("artifact_dir")               # validated manifest
    edgeinfer.zoo_get("efficientnet-lite0", "out/effnet")   # pretrained, offline
    engine = edgeinfer.Engine(artifact)                      # run it
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgeinfer.errors import (
    ArtifactError,
    EdgeInferError,
    MissingDependencyError,
    ModelLoadError,
    ShapeError,
    UnsupportedOpsetError,
    ZooError,
)

if TYPE_CHECKING:
    from edgeinfer.artifact import Artifact
    from edgeinfer.runtime.engine import Engine

__version__ = "0.1.0"

__all__ = [
    "Artifact",
    "ArtifactError",
    "EdgeInferError",
    "Engine",
    "MissingDependencyError",
    "ModelLoadError",
    "ShapeError",
    "UnsupportedOpsetError",
    "ZooError",
    "export",
    "inspect",
    "load",
    "zoo_get",
]

_LAZY = {
    "Artifact": ("edgeinfer.artifact", "Artifact"),
    "Engine": ("edgeinfer.runtime.engine", "Engine"),
    "export": ("edgeinfer.model.export", "export"),
    "inspect": ("edgeinfer.api", "inspect"),
    "load": ("edgeinfer.api", "load"),
    "zoo_get": ("edgeinfer.zoo", "get"),
}


def __getattr__(name: str) -> Any:
    """Import the public API lazily so `import edgeinfer` stays fast."""
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'edgeinfer' has no attribute {name!r}")
