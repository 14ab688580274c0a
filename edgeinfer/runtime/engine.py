"""The Engine: one model loaded in one backend, behind a small backend-neutral interface."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeinfer.artifact import Artifact
from edgeinfer.errors import EdgeInferError, ShapeError
from edgeinfer.runtime.backends import (
    DEFAULT_BACKEND,
    Backend,
    BackendOptions,
    TensorSpec,
    create_backend,
)


class Engine:
    """A loaded model. Immutable after load; ``run`` checks feeds against the input specs."""

    def __init__(
        self,
        artifact: Artifact,
        backend: str | None = None,
        options: BackendOptions | None = None,
    ) -> None:
        self.artifact = artifact
        fmt = artifact.manifest.model.format
        name = backend or DEFAULT_BACKEND.get(fmt)
        if name is None:
            raise EdgeInferError(
                f"no backend runs {fmt} models yet: use an ONNX or TFLite artifact"
            )
        self.backend: Backend = create_backend(name, artifact.model_path, options)

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        """Input specs as the backend reports them."""
        return self.backend.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        """Output specs as the backend reports them."""
        return self.backend.outputs

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run one inference after checking names, ranks and fixed dimensions of ``feeds``."""
        for spec in self.inputs:
            if spec.name not in feeds:
                raise ShapeError(
                    f"missing input '{spec.name}': the model's inputs are "
                    f"{[s.name for s in self.inputs]}"
                )
            arr = feeds[spec.name]
            if len(arr.shape) != len(spec.shape) or any(
                d is not None and d != a for d, a in zip(spec.shape, arr.shape, strict=True)
            ):
                raise ShapeError(
                    f"input '{spec.name}' has shape {list(arr.shape)}, the model "
                    f"expects {[d if d is not None else '?' for d in spec.shape]}: "
                    "fix the shape (see `edgeinfer inspect`)"
                )
        return self.backend.run(feeds)

    @classmethod
    def open(
        cls, path: str | Path, backend: str | None = None, options: BackendOptions | None = None
    ) -> Engine:
        """Load an artifact directory or a bare model file into an Engine."""
        from edgeinfer.api import load

        return cls(load(path), backend, options)
