"""ONNX Runtime backend: the CPU provider, or CUDA/TensorRT/OpenVINO providers when present.

Outputs go through I/O binding into buffers that are allocated once per input-shape signature
and reused (a pool of slots, so concurrent callers never share one). On the CPU provider the
binding measured no faster than ``session.run`` on EfficientNet-Lite0 (docs/benchmarks/), so
it is used by default only on an accelerator, where it saves a device-to-host allocation per
run; ``io_binding=True`` forces it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgeinfer.errors import DeviceUnavailableError
from edgeinfer.ort_session import numpy_dtype, open_session
from edgeinfer.runtime.backends import BackendOptions, TensorSpec
from edgeinfer.runtime.cancel import CancelToken, RunCancelled

#: accelerator providers in order of preference; each falls back to the CPU provider per op
GPU_PROVIDERS = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
)


def providers_for(device: str) -> list[str]:
    """Execution providers for ``device`` (cpu, gpu, auto) among those this onnxruntime has."""
    available = ort.get_available_providers()
    gpu = [p for p in GPU_PROVIDERS if p in available]
    if device == "gpu" and not gpu:
        raise DeviceUnavailableError(
            f"onnxruntime has no GPU provider here (it has {available}): install "
            "onnxruntime-gpu on a machine with a GPU, or use --device cpu"
        )
    if device in ("gpu", "auto") and gpu:
        return [*gpu, "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _spec(arg: ort.NodeArg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
    return TensorSpec(arg.name, shape, numpy_dtype(arg.type))


class _Slot:
    """An IOBinding with output buffers for one input-shape signature."""

    def __init__(self, session: ort.InferenceSession, outputs: tuple[TensorSpec, ...]) -> None:
        self.binding = session.io_binding()
        self.buffers: list[np.ndarray] | None = None  # None: let ORT allocate (first run)
        self._outputs = outputs
        for spec in outputs:
            self.binding.bind_output(spec.name, "cpu")

    def preallocate(self, shapes: list[tuple[int, ...]]) -> None:
        self.buffers = [
            np.empty(s, np.dtype(o.dtype)) for s, o in zip(shapes, self._outputs, strict=True)
        ]
        for buf, spec in zip(self.buffers, self._outputs, strict=True):
            self.binding.bind_output(
                spec.name, "cpu", 0, buf.dtype, list(buf.shape), buf.ctypes.data
            )


class OrtBackend:
    """An onnxruntime InferenceSession; safe for concurrent ``run`` calls."""

    name = "ort"

    def __init__(self, path: Path, options: BackendOptions) -> None:
        providers = (
            list(options.providers) if options.providers else providers_for(options.device)
        )
        self.session = open_session(
            path,
            threads=options.threads,
            spinning=options.spinning,
            providers=providers,
        )
        self.providers = tuple(self.session.get_providers())
        self.device = "cpu" if self.providers[0] == "CPUExecutionProvider" else "gpu"
        self.inputs = tuple(_spec(a) for a in self.session.get_inputs())
        self.outputs = tuple(_spec(a) for a in self.session.get_outputs())
        self._output_names = [o.name for o in self.outputs]
        self.io_binding = (
            self.device != "cpu" if options.io_binding is None else options.io_binding
        )
        self._slots: dict[tuple, list[_Slot]] = {}
        self._varying: set[tuple] = set()  # input shapes whose output shapes vary with the data
        self._lock = threading.Lock()

    def run(self, feeds: dict[str, np.ndarray], cancel: CancelToken | None = None,
            ) -> list[np.ndarray]:
        """Run one inference; the arrays returned belong to the caller. ``cancel`` aborts it
        (RunCancelled)."""
        if cancel is None:
            return self._run(feeds, None)
        options = ort.RunOptions()
        cancel.on_cancel(lambda: setattr(options, "terminate", True))
        try:
            return self._run(feeds, options)
        except Exception as exc:
            if cancel.cancelled:
                raise RunCancelled("the run was cancelled (preempted)") from exc
            raise

    def _run(self, feeds: dict[str, np.ndarray], options: Any) -> list[np.ndarray]:
        if not self.io_binding:
            return self.session.run(self._output_names, feeds, options)
        key = tuple(feeds[s.name].shape for s in self.inputs)
        with self._lock:
            free = self._slots.setdefault(key, [])
            slot = free.pop() if free else _Slot(self.session, self.outputs)
        try:
            for spec in self.inputs:
                slot.binding.bind_cpu_input(spec.name, np.ascontiguousarray(feeds[spec.name]))
            if slot.buffers is not None:
                try:
                    self.session.run_with_iobinding(slot.binding, options)
                    return [b.copy() for b in slot.buffers]
                except Exception:  # an output whose shape depends on the data (e.g. NMS)
                    self._varying.add(key)
                    slot = _Slot(self.session, self.outputs)
                    for spec in self.inputs:
                        slot.binding.bind_cpu_input(
                            spec.name, np.ascontiguousarray(feeds[spec.name])
                        )
            self.session.run_with_iobinding(slot.binding, options)
            outs = slot.binding.copy_outputs_to_cpu()
            if key not in self._varying:
                slot.preallocate([o.shape for o in outs])
            return outs
        finally:
            with self._lock:
                self._slots[key].append(slot)

    def close(self) -> None:
        """Drop the session and the pooled buffers."""
        self._slots.clear()
        self.session = None  # type: ignore[assignment]


def create(path: Path, options: BackendOptions) -> OrtBackend:
    """Backend factory used by the registry."""
    return OrtBackend(path, options)
