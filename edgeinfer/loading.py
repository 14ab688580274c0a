"""Open anything a user names: an artifact directory, a bare ``.onnx``/``.tflite`` file or a zoo
name. The one place zoo names resolve; every verb and every layer above this one calls it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeinfer import zoo
from edgeinfer.artifact import Artifact, InputSpec, Manifest, ModelFile, SourceInfo, file_sha256
from edgeinfer.artifact import load_artifact as _load_artifact
from edgeinfer.errors import ModelLoadError
from edgeinfer.model.formats import detect_format

__all__ = ["inspect", "load", "resolve", "zoo_cache_dir"]


def zoo_cache_dir(name: str) -> Path:
    """Where zoo model ``name`` is built once for this user (``~/.cache/edgeinfer/zoo/NAME``)."""
    return Path.home() / ".cache" / "edgeinfer" / "zoo" / name


def resolve(model: str | Path) -> Path:
    """``model`` as a path when it exists, else a zoo name built once into the user cache
    directory; anything else is a one-line error."""
    path = Path(model)
    if path.exists():
        return path
    if str(model) in zoo.ZOO:
        cache = zoo_cache_dir(str(model))
        if not (cache / "edgeinfer.json").exists():
            zoo.get(str(model), cache, force=True)  # a cache without a manifest is broken
        return cache
    raise ModelLoadError(
        f"{model}: no such file, and not a zoo model name: check the path "
        f"or see `edgeinfer zoo list`"
    )


def load(model: str | Path) -> Artifact:
    """Load an artifact directory (validated), a zoo name, or wrap a bare .onnx/.tflite file in
    memory.

    A bare model's dynamic dimensions are -1 in the in-memory manifest: preprocessing refuses
    them with a one-line error, since only an artifact can say what size to feed.
    """
    path = resolve(model)
    if path.is_dir():
        return _load_artifact(path)
    fmt = detect_format(path)
    if fmt not in ("onnx", "tflite"):
        raise ModelLoadError(
            f"{path} is a {fmt} file: load a .onnx or .tflite model or an artifact"
        )
    inputs, outputs = _onnx_io(path) if fmt == "onnx" else _tflite_io(path)
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
    model: str | Path,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    budget: int | str | None = None,
) -> dict[str, Any]:
    """The inspect report of a model file, artifact or zoo name (see ``edgeinfer inspect``):
    shapes, parameters, MACs per op, the activation memory plan and the budget check."""
    from edgeinfer.model.inspect import inspect_model

    return inspect_model(resolve(model), input_shapes, budget)


def _onnx_io(path: Path) -> tuple[tuple[InputSpec, ...], tuple[str, ...]]:
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
    return inputs, tuple(o.name for o in model.graph.output)


def _tflite_io(path: Path) -> tuple[tuple[InputSpec, ...], tuple[str, ...]]:
    from edgeinfer.model.inspect import read_graph

    graph = read_graph(path)
    inputs = tuple(
        InputSpec(
            name=n,
            shape=graph.tensors[n].shape,
            dtype=graph.tensors[n].dtype,
            layout="NHWC" if len(graph.tensors[n].shape) == 4 else "other",
        )
        for n in graph.inputs
    )
    return inputs, tuple(graph.outputs)
