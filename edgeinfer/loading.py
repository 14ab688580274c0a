"""Open anything a user names: an artifact directory, a bare ``.onnx``/``.tflite`` file or a zoo
name. The one place zoo names resolve; every verb and every layer above this one calls it."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgeinfer import zoo
from edgeinfer.artifact import (
    Artifact,
    InputSpec,
    Manifest,
    ModelFile,
    Preprocess,
    SourceInfo,
    file_sha256,
)
from edgeinfer.artifact import load_artifact as _load_artifact
from edgeinfer.errors import ModelLoadError
from edgeinfer.model.formats import detect_format
from edgeinfer.model.shapes import Shape, check_names, fix_shape

__all__ = [
    "bare_model_warning",
    "check_manifest_inputs",
    "inspect",
    "load",
    "model_input_dims",
    "resolve",
    "with_input_shapes",
    "zoo_cache_dir",
]

log = logging.getLogger(__name__)
_warned: set[str] = set()


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


def load(model: str | Path, *, warn: bool = True) -> Artifact:
    """Load an artifact directory (validated), a zoo name, or wrap a bare .onnx/.tflite file in
    memory.

    A bare model's dynamic dimensions are -1 in the in-memory manifest: preprocessing refuses
    them with a one-line error, since only an artifact can say what size to feed. A model
    whose preprocessing nobody declared is logged once as a warning naming ``edgeinfer
    import`` (``warn=False``: not, for the verb that declares it).
    """
    path = resolve(model)
    artifact = _load_artifact(path) if path.is_dir() else _wrap_bare(path)
    if warn and not artifact.manifest.preprocess.declared and str(path) not in _warned:
        _warned.add(str(path))
        log.warning(bare_model_warning(path))
    return artifact


def bare_model_warning(path: str | Path) -> str:
    """The one-line warning for a model whose preprocessing nobody declared."""
    return (
        f"{path} declares no preprocessing: it is fed raw 0-255 RGB pixels (scale 1, "
        f"mean 0, std 1); declare the model's own with `edgeinfer import {Path(path).name} "
        "-o ARTIFACT --like ZOO_NAME` or --mean/--std/--scale"
    )


def _wrap_bare(path: Path) -> Artifact:
    """A bare .onnx/.tflite file as an in-memory artifact (no preprocessing declared)."""
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
        preprocess=Preprocess(declared=False),
        source=SourceInfo(name=str(path), sha256=sha),
    )
    return Artifact(path.parent, manifest)


def model_input_dims(artifact: Artifact) -> dict[str, list[int | str | None]]:
    """Each input's dims as the model file itself declares them (dynamic ones as -1, None or a
    name), to check ``--input-shape`` against; formats without a reader give the manifest's."""
    m = artifact.manifest
    if m.model.format == "onnx":
        from edgeinfer.model.formats import load_onnx
        from edgeinfer.model.onnx_graph import graph_input_names, value_dims

        model = load_onnx(artifact.model_path)
        vis = {v.name: v for v in model.graph.input}
        return {n: value_dims(vis[n]) for n in graph_input_names(model)}
    if m.model.format == "tflite":
        from edgeinfer._deps import require
        from edgeinfer.model.tflite_graph import tflite_input_dims

        litert = require("ai_edge_litert.interpreter", "litert", "reading .tflite models")
        return dict(tflite_input_dims(litert.Interpreter(model_path=str(artifact.model_path))))
    return {i.name: list(i.shape) for i in m.inputs}


def check_manifest_inputs(artifact: Artifact) -> dict[str, list[int | str | None]]:
    """A one-line ShapeError when the manifest's inputs disagree with the model file's (names,
    ranks, fixed dimensions: a hand-edited or stale manifest), before any verb feeds them;
    returns the file's dims."""
    from edgeinfer.errors import ShapeError
    from edgeinfer.model.shapes import example_fix, format_dims, is_fixed

    dims = model_input_dims(artifact)
    m = artifact.manifest
    for spec in m.inputs:
        own = dims.get(spec.name)
        if own is None:
            raise ShapeError(
                f"{artifact.path}: the manifest names input '{spec.name}', the model's inputs "
                f"are {list(dims)}: re-create the artifact with `edgeinfer import`"
            )
        given = [d if is_fixed(d) else None for d in spec.shape]
        if len(given) != len(own) or any(
            is_fixed(a) and g is not None and a != g for a, g in zip(own, given, strict=False)
        ):
            raise ShapeError(
                f"{artifact.path}: the manifest gives input '{spec.name}' shape "
                f"{format_dims(spec.shape)}, the model's is {format_dims(own)}: fix it with "
                f"`edgeinfer import {m.model.path} -o ARTIFACT --input-shape "
                f"{example_fix(spec.name, own)}`"
            )
    return dims


def with_input_shapes(
    artifact: Artifact, shapes: Mapping[str, Sequence[int]] | None
) -> Artifact:
    """``artifact`` (in memory) with the inputs that ``shapes`` names fixed to those shapes,
    checked against the model file's own dims (names, rank, fixed dimensions: one-line
    errors). Nothing is written; verbs that write an artifact carry the shapes into it."""
    if not shapes:
        return artifact
    dims = model_input_dims(artifact)
    check_names(shapes, list(dims))
    fixed: dict[str, Shape] = {n: fix_shape(n, dims[n], s) for n, s in shapes.items()}
    inputs = tuple(
        i.model_copy(update={"shape": fixed[i.name]}) if i.name in fixed else i
        for i in artifact.manifest.inputs
    )
    return Artifact(artifact.path, artifact.manifest.model_copy(update={"inputs": inputs}))


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
    from edgeinfer.model.shapes import is_fixed

    model = load_onnx(path)
    vis = {v.name: v for v in model.graph.input}
    inputs = tuple(
        InputSpec(
            name=n,
            shape=tuple(d if is_fixed(d) else -1 for d in value_dims(vis[n])),
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
