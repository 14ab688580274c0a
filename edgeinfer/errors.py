"""The edgeinfer exception tree.

Every error a user can cause derives from :class:`EdgeInferError` and carries a one-line
message that names the thing at fault and the fix. The CLI prints that line and exits with
code 2; ``--debug`` shows the traceback. Foreign errors (protobuf, onnxruntime, OSError) are
mapped at the boundary with ``raise X(...) from exc``.

    EdgeInferError
    ├── ModelLoadError        missing, truncated, corrupt or unknown-format model file
    │   └── UnsupportedOpsetError
    ├── ShapeError            dynamic dimension not resolved, wrong input shape
    ├── ArtifactError         bad manifest, unknown manifest version, missing model file
    ├── MissingDependencyError  an optional extra is not installed
    ├── DeviceUnavailableError  an accelerator was asked for and none is usable
    ├── ZooError              unknown zoo name
    └── DatasetError          a training dataset that cannot be used: missing data.yaml, a
                              label outside the class list, a box outside its image, no images
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "DatasetError",
    "DeviceUnavailableError",
    "EdgeInferError",
    "MissingDependencyError",
    "ModelLoadError",
    "ShapeError",
    "UnsupportedOpsetError",
    "ZooError",
]


class EdgeInferError(Exception):
    """Base of every error edgeinfer raises for bad input or a missing dependency."""

    exit_code = 2


class ModelLoadError(EdgeInferError):
    """A model file is missing, unreadable, corrupt, or of an unknown format."""


class UnsupportedOpsetError(ModelLoadError):
    """The model's ONNX opset is outside the range edgeinfer supports."""


class ShapeError(EdgeInferError):
    """A dynamic dimension is unresolved or an input shape is wrong."""


class ArtifactError(EdgeInferError):
    """An artifact directory or its manifest is invalid."""


class MissingDependencyError(EdgeInferError):
    """An optional dependency is missing; the message names the extra that installs it."""


class DeviceUnavailableError(EdgeInferError):
    """An accelerator (GPU provider, delegate or plugin) was asked for and none is usable."""


class ZooError(EdgeInferError):
    """An unknown zoo model name."""


class DatasetError(EdgeInferError):
    """A training dataset that cannot be used as given (the message names the file and line)."""
