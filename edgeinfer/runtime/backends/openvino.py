"""OpenVINO backend: an IR (``.xml`` + ``.bin``), ONNX or TFLite file compiled for a device.

Inference precision is pinned to FP32 by default so results do not depend on whether the CPU
has bf16 units (the plugin's default switches to bf16 there: about 1.8x faster on PP-OCR here,
with small output changes); ``compute_precision`` opts in, and ``tune`` verifies the outputs
before it picks that. Infer requests come from a pool, so concurrent callers each get their
own request (with the THROUGHPUT hint they then run in parallel streams); each request keeps
its input and output buffers between runs.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer._deps import require
from edgeinfer.errors import DeviceUnavailableError, ModelLoadError
from edgeinfer.runtime.backends import BackendOptions, TensorSpec
from edgeinfer.runtime.cancel import CancelToken, RunCancelled

_UNCONVERTED = re.compile(r"No conversion rule found for operations: ([^\n]+)")


def _spec(port: Any) -> TensorSpec:
    pshape = port.get_partial_shape()
    if pshape.rank.is_dynamic:
        shape: tuple[int | None, ...] = ()
    else:
        shape = tuple(d.get_length() if d.is_static else None for d in pshape)
    try:
        dtype = np.dtype(port.get_element_type().to_dtype()).name
    except Exception:  # an element type numpy has no name for
        dtype = str(port.get_element_type())
    return TensorSpec(port.get_any_name(), shape, dtype)


def _device(core: Any, wanted: str) -> str:
    gpus = [d for d in core.available_devices if d.startswith("GPU") or d.startswith("NPU")]
    if wanted == "gpu" and not gpus:
        raise DeviceUnavailableError(
            f"OpenVINO sees no GPU here (devices: {core.available_devices}): install the GPU "
            "driver, or use --device cpu"
        )
    return gpus[0] if wanted in ("gpu", "auto") and gpus else "CPU"


def compile_config(options: BackendOptions) -> dict[str, Any]:
    """The OpenVINO properties that ``options`` stand for."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": options.hint.upper()}
    if options.compute_precision != "default":
        config["INFERENCE_PRECISION_HINT"] = options.compute_precision
    if options.threads:
        config["INFERENCE_NUM_THREADS"] = int(options.threads)
    if options.streams:
        config["NUM_STREAMS"] = int(options.streams)
    return config


class OpenVINOBackend:
    """A compiled OpenVINO model with a pool of infer requests."""

    name = "openvino"

    def __init__(self, path: Path, options: BackendOptions) -> None:
        ov = require("openvino", "openvino", "running OpenVINO IR models")
        core = ov.Core()
        self.device = _device(core, options.device)
        try:
            self._compiled = core.compile_model(str(path), self.device, compile_config(options))
        except Exception as exc:
            message = str(exc)
            ops = _UNCONVERTED.search(message)
            if ops:
                raise ModelLoadError(
                    f"OpenVINO cannot run {path}: it has no conversion for op(s) "
                    f"{ops.group(1).strip()}; replace them, or use another backend (--backend ort)"
                ) from exc
            raise ModelLoadError(
                f"OpenVINO cannot load {path} ({message.strip().splitlines()[0][:160]}): "
                "check the file (an IR needs its .bin beside the .xml)"
            ) from exc
        self.inputs = tuple(_spec(p) for p in self._compiled.inputs)
        self.outputs = tuple(_spec(p) for p in self._compiled.outputs)
        self._free = [self._compiled.create_infer_request()]
        self._lock = threading.Lock()

    def run(self, feeds: dict[str, np.ndarray], cancel: CancelToken | None = None,
            ) -> list[np.ndarray]:
        """Run one inference; outputs are copies (the request reuses its buffers). ``cancel``
        aborts it (RunCancelled)."""
        with self._lock:
            request = self._free.pop() if self._free else self._compiled.create_infer_request()
        inputs = {i: feeds[s.name] for i, s in enumerate(self.inputs)}
        try:
            if cancel is None:
                request.infer(inputs)
            else:
                self._run_cancellable(request, inputs, cancel)
            return [request.get_output_tensor(i).data.copy() for i in range(len(self.outputs))]
        finally:
            with self._lock:
                self._free.append(request)

    @staticmethod
    def _run_cancellable(request: Any, inputs: dict[int, np.ndarray],
                         cancel: CancelToken) -> None:
        """``start_async`` + ``wait``, with ``cancel`` wired to this run only (the request goes
        back to the pool afterwards: a late cancel must not reach the next run on it)."""
        guard = threading.Lock()
        active = [True]

        def abort() -> None:
            with guard:
                if active[0]:
                    request.cancel()

        cancel.on_cancel(abort)
        try:
            if cancel.cancelled:
                raise RunCancelled("the run was cancelled before it started")
            request.start_async(inputs)
            request.wait()
        except RunCancelled:
            raise
        except Exception as exc:
            if cancel.cancelled:
                raise RunCancelled("the run was cancelled (preempted)") from exc
            raise
        finally:
            with guard:
                active[0] = False

    def close(self) -> None:
        """Drop the requests and the compiled model."""
        self._free.clear()
        self._compiled = None


def create(path: Path, options: BackendOptions) -> OpenVINOBackend:
    """Backend factory used by the registry."""
    return OpenVINOBackend(path, options)
