"""The Engine: one model loaded in one backend, behind a small backend-neutral interface.

The backend and its options come from the caller, else from the artifact's ``runtime``
section (written by ``edgeinfer tune``), else from the model format's default. On load the
Engine runs one warm-up inference (kernels are compiled, arenas planned, pages touched), so
the first real request does not pay the cold start; ``warmup_s`` is what that cost.

Outputs come back in the order the manifest's ``outputs`` names them (a converted model's
outputs matched to its source's), so a decoder reads the same tensors on every backend. A
full-integer model takes float feeds and gives float outputs on every backend: where the
backend does not (de)quantize the interface itself (``Capabilities.quantizes_float_inputs``),
the Engine does, with the scale and zero point the model file declares.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from edgeinfer.artifact import Artifact
from edgeinfer.errors import EdgeInferError, ModelLoadError, ShapeError
from edgeinfer.loading import load
from edgeinfer.machine import trim_heap
from edgeinfer.quantized_io import dequantize, quantize_input
from edgeinfer.runtime.backends import (
    DEFAULT_BACKEND,
    Backend,
    BackendOptions,
    TensorSpec,
    capabilities,
    check_options,
    create_backend,
)
from edgeinfer.runtime.cancel import CancelToken


def _dtype_or_none(name: str) -> np.dtype | None:
    try:
        return np.dtype(name)
    except TypeError:
        return None


def _check_format(backend: str, fmt: str) -> None:
    """A one-line error when ``backend`` does not read ``fmt`` files, naming those that do."""
    from edgeinfer.runtime.backends import KNOWN_BACKENDS, PRODUCTION_BACKENDS

    info = KNOWN_BACKENDS.get(backend)
    if info is not None and fmt not in info.formats:
        readers = [n for n in PRODUCTION_BACKENDS if fmt in KNOWN_BACKENDS[n].formats]
        raise ModelLoadError(
            f"backend '{backend}' does not read {fmt} models: use --backend "
            f"{' or '.join(readers)}, or convert the model (`edgeinfer convert`)"
        )


def _output_order(wanted: tuple[str, ...], have: list[str]) -> list[int] | None:
    """Indices that put the backend's outputs ``have`` in the manifest's order ``wanted``;
    None (as they come) when the manifest names none or not exactly the same outputs."""
    if not wanted or list(wanted) == have or len(set(have)) != len(have) or \
            sorted(wanted) != sorted(have):
        return None
    return [have.index(n) for n in wanted]


class Engine:
    """A loaded model; ``run`` checks feeds against the input specs, then calls the backend."""

    def __init__(
        self,
        artifact: Artifact,
        backend: str | None = None,
        options: BackendOptions | None = None,
        *,
        warmup: bool = True,
    ) -> None:
        self.artifact = artifact
        m = artifact.manifest
        runtime = m.runtime
        name = backend or (runtime.backend if runtime else None) or DEFAULT_BACKEND.get(
            m.model.format
        )
        if name is None:
            raise EdgeInferError(
                f"no backend runs {m.model.format} models yet: use an ONNX or TFLite artifact"
            )
        if options is None and runtime is not None and runtime.backend == name:
            fields = runtime.model_dump(exclude={"backend", "chosen_by"})
            options = BackendOptions(**fields)
            check_options(name, options)  # the manifest's runtime section names both
        self.options = options or BackendOptions()
        _check_format(name, m.model.format)
        t0 = time.perf_counter()
        self.backend: Backend = create_backend(name, artifact.model_path, self.options)
        self.load_s = time.perf_counter() - t0
        self.capabilities = capabilities(name)
        self._in_q, self._out_q = self._interface_quantization()
        quantizes = self.capabilities.quantizes_float_inputs or any(self._in_q)
        self._order = _output_order(m.outputs, [o.name for o in self.backend.outputs])
        self._checks = [
            (
                s.name,
                len(s.shape),
                [(i, d) for i, d in enumerate(s.shape) if d is not None],
                _dtype_or_none(s.dtype),
                quantizes and np.dtype(s.dtype).kind in "iu",
            )
            for s in self.backend.inputs
        ]
        self.warmup_s: float | None = self._warm_up() if warmup else None

    @property
    def name(self) -> str:
        """The backend's name (ort, litert, openvino, reference)."""
        return self.backend.name

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        """Input specs as the backend reports them."""
        return self.backend.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        """Output specs in the manifest's order (dequantized ones as float32)."""
        specs = [s if q is None else TensorSpec(s.name, s.shape, "float32")
                 for s, q in zip(self.backend.outputs, self._out_q, strict=True)]
        return tuple(specs if self._order is None else [specs[i] for i in self._order])

    def _interface_quantization(self) -> tuple[list, list]:
        """Per backend input and output: (scale, zero point, dtype) the Engine must apply, or
        None (float, or the backend does it itself)."""
        n_in, n_out = len(self.backend.inputs), len(self.backend.outputs)
        m = self.artifact.manifest
        if self.capabilities.quantizes_float_inputs or m.model.format != "tflite":
            return [None] * n_in, [None] * n_out
        from edgeinfer.model.tflite_graph import io_quantization

        ins, outs = io_quantization(self.artifact.model_path)

        def per_port(ports: tuple[TensorSpec, ...], declared: list) -> list:
            by_name = {d[0]: d for d in declared}
            rows = []
            for i, port in enumerate(ports):
                d = by_name.get(port.name) or (declared[i] if i < len(declared) else None)
                quantized = d is not None and d[2] and np.dtype(d[1]).kind in "iu"
                rows.append((d[2], d[3], np.dtype(d[1])) if quantized else None)
            return rows

        return per_port(self.backend.inputs, ins), per_port(self.backend.outputs, outs)

    def describe(self) -> dict[str, object]:
        """Backend, device and options, JSON-ready (for reports)."""
        return {
            "backend": self.backend.name,
            "device": self.backend.device,
            **asdict(self.options),
        }

    def example_feeds(self) -> dict[str, np.ndarray] | None:
        """Zero feeds of the input shapes (dynamic dims from the manifest), or None when a
        dimension is known to neither the backend nor the manifest."""
        declared = {i.name: i.shape for i in self.artifact.manifest.inputs}
        ordered = [i.shape for i in self.artifact.manifest.inputs]
        feeds = {}
        for k, spec in enumerate(self.inputs):
            fallback = declared.get(spec.name) or (ordered[k] if k < len(ordered) else None)
            shape = []
            for j, d in enumerate(spec.shape):
                if d is None:
                    if fallback is None or len(fallback) != len(spec.shape) or fallback[j] <= 0:
                        return None
                    d = fallback[j]
                shape.append(d)
            dtype = _dtype_or_none(spec.dtype) or np.dtype(np.float32)
            feeds[spec.name] = np.zeros(shape, dtype)
        return feeds

    def _warm_up(self) -> float | None:
        feeds = self.example_feeds()
        if feeds is None:
            return None
        t0 = time.perf_counter()
        self.backend.run(feeds)
        return time.perf_counter() - t0

    @property
    def cancellable(self) -> bool:
        """Whether ``run(..., cancel=token)`` can abort a run in progress (ONNX Runtime)."""
        return self.capabilities.cancel

    def run(self, feeds: dict[str, np.ndarray], *, cancel: CancelToken | None = None,
            ) -> list[np.ndarray]:
        """Run one inference after checking names, ranks, fixed dimensions and dtypes.
        ``cancel``: a :class:`~edgeinfer.runtime.cancel.CancelToken` that aborts the run
        (RunCancelled) where the backend can (``cancellable``); elsewhere it is ignored."""
        for name, rank, fixed, dtype, quantizes in self._checks:
            arr = feeds.get(name)
            if arr is None:
                raise ShapeError(
                    f"missing input '{name}': the model's inputs are "
                    f"{[s.name for s in self.inputs]}"
                )
            shape = arr.shape
            if len(shape) != rank or any(shape[i] != d for i, d in fixed):
                spec = next(s for s in self.inputs if s.name == name)
                raise ShapeError(
                    f"input '{name}' has shape {list(shape)}, the model "
                    f"expects {[d if d is not None else '?' for d in spec.shape]}: "
                    "fix the shape (see `edgeinfer inspect`)"
                )
            if dtype is not None and arr.dtype != dtype and not (
                quantizes and arr.dtype.kind == "f"
            ):
                raise ShapeError(
                    f"input '{name}' is {arr.dtype}, the model expects {dtype}: "
                    f"convert it with .astype(np.{dtype})"
                )
        if any(self._in_q):
            feeds = dict(feeds)
            for spec, q in zip(self.backend.inputs, self._in_q, strict=True):
                if q is not None and feeds[spec.name].dtype.kind == "f":
                    feeds[spec.name] = quantize_input(feeds[spec.name], q[0], q[1], q[2])
        if cancel is not None and self.cancellable:
            outs = self.backend.run(feeds, cancel=cancel)  # type: ignore[call-arg]
        else:
            outs = self.backend.run(feeds)
        if any(self._out_q):
            outs = [o if q is None else dequantize(o, q[0], q[1])
                    for o, q in zip(outs, self._out_q, strict=True)]
        return outs if self._order is None else [outs[i] for i in self._order]

    def close(self) -> None:
        """Release the backend and hand freed memory back to the OS; the Engine is unusable
        afterwards."""
        self.backend.close()
        trim_heap()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def open(
        cls,
        path: str | Path,
        backend: str | None = None,
        options: BackendOptions | None = None,
        *,
        warmup: bool = True,
    ) -> Engine:
        """Load an artifact directory or a bare model file into an Engine."""

        return cls(load(path), backend, options, warmup=warmup)
