"""The small public Python API, re-exported by ``edgeinfer/__init__.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeinfer.artifact import Artifact, InputSpec, Manifest, ModelFile, SourceInfo, file_sha256
from edgeinfer.artifact import load_artifact as _load_artifact
from edgeinfer.errors import ModelLoadError
from edgeinfer.model.formats import detect_format


def load(path: str | Path) -> Artifact:
    """Load an artifact directory (validated), or wrap a bare .onnx/.tflite file in memory.

    A bare model's dynamic dimensions are -1 in the in-memory manifest: preprocessing refuses
    them with a one-line error, since only an artifact can say what size to feed.
    """
    path = Path(path)
    if path.is_dir():
        return _load_artifact(path)
    fmt = detect_format(path)
    if fmt not in ("onnx", "tflite"):
        raise ModelLoadError(
            f"{path} is a {fmt} file: load a .onnx or .tflite model or an artifact"
        )
    from edgeinfer.model.inspect import read_graph

    graph = read_graph(path) if fmt == "tflite" else None
    inputs: tuple[InputSpec, ...]
    if graph is None:
        from edgeinfer.model.formats import load_onnx
        from edgeinfer.model.onnx_graph import graph_input_names, value_dims

        model = load_onnx(path)
        vis = {v.name: v for v in model.graph.input}
        inputs = tuple(
            InputSpec(
                name=n,
                shape=tuple(d if isinstance(d, int) else -1 for d in value_dims(vis[n])),
                layout="NCHW",
            )
            for n in graph_input_names(model)
        )
        outputs = tuple(o.name for o in model.graph.output)
    else:
        inputs = tuple(
            InputSpec(
                name=n,
                shape=graph.tensors[n].shape,
                dtype=graph.tensors[n].dtype,
                layout="NHWC" if len(graph.tensors[n].shape) == 4 else "other",
            )
            for n in graph.inputs
        )
        outputs = graph.outputs
    sha = file_sha256(path)
    manifest = Manifest(
        name=path.stem,
        task="other",
        model=ModelFile(path=path.name, format=fmt, sha256=sha, bytes=path.stat().st_size),
        inputs=inputs,
        outputs=outputs,
        source=SourceInfo(name=str(path), sha256=sha),
    )
    return Artifact(path.parent, manifest)


def inspect(
    path: str | Path,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    budget: int | str | None = None,
) -> dict[str, Any]:
    """The inspect report of a model file or artifact (see ``edgeinfer inspect``)."""
    from edgeinfer.model.inspect import inspect_model, parse_bytes

    if isinstance(budget, str):
        budget = parse_bytes(budget)
    return inspect_model(path, input_shapes, budget)
