"""Backends, one module each, imported only when used (``edgeinfer.runtime.backends.<name>``).

A backend module defines ``create(path, options) -> Backend``. Backends never import each other.
The registry below says which Python package each one needs, which extra installs it, and
which model formats it reads, so that a missing backend is one line naming the extra, and
``bench``/``tune`` know what to try on a model without importing anything.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, get_args

import numpy as np

from edgeinfer.errors import EdgeInferError, MissingDependencyError

Device = Literal["cpu", "gpu", "auto"]
Hint = Literal["latency", "throughput"]
Spinning = Literal["run", "always", "never"]
#: the spinning modes, for checking config values (``BackendOptions.spinning``)
SPINNING_MODES: tuple[str, ...] = get_args(Spinning)


@dataclass(frozen=True)
class TensorSpec:
    """A backend input or output: name, shape (None for dynamic dims) and dtype name."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str


@dataclass(frozen=True)
class BackendOptions:
    """Options common to backends; each backend maps them onto its own knobs.

    ``threads``: 0 is the backend's default. ``spinning`` (ONNX Runtime's worker threads):
    ``run`` spins inside a run and parks the workers when it ends (ORT's latency, no idle
    burn); ``always`` is ORT's default (workers keep spinning after a run, burning CPU while
    idle); ``never`` sleeps between ops: about 35% slower on a quiet machine, but 1.7x faster
    where another process wants the same cores (docs/benchmarks/). ``device``: ``gpu`` asks
    for the accelerator (CUDA/TensorRT provider, LiteRT GPU delegate, OpenVINO GPU plugin) and
    fails if there is none; ``auto`` takes it when present. ``hint``: OpenVINO's performance
    hint. ``streams``: OpenVINO streams (0: from the hint). ``compute_precision``: what
    OpenVINO computes in (``f32`` keeps results independent of the CPU; ``bf16`` and ``f16``
    are faster where the CPU has those units; ``default`` lets the plugin choose).
    ``providers``: ONNX Runtime providers to use instead of those ``device`` picks.
    ``io_binding``: ONNX Runtime I/O binding into pooled output buffers (None: on an
    accelerator only).
    """

    threads: int = 0
    spinning: Spinning = "run"
    device: Device = "cpu"
    hint: Hint = "latency"
    streams: int = 0
    compute_precision: Literal["f32", "bf16", "f16", "default"] = "f32"
    providers: tuple[str, ...] = ()
    io_binding: bool | None = None


class Backend(Protocol):
    """What the Engine needs from a runtime: specs, a run call and close."""

    name: str
    device: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run one inference and return new arrays in ``outputs`` order."""
        ...

    def close(self) -> None:
        """Release the runtime's resources; the backend is unusable afterwards."""
        ...


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, declared in the registry: orchestrators (Engine, Scheduler,
    bench, tune) ask these flags and never branch on a backend's name."""

    cancel: bool = False  #: ``run(feeds, cancel=token)`` aborts a run in progress
    io_binding: bool = False  #: outputs into pooled buffers (``BackendOptions.io_binding``)
    dynamic_shapes: bool = True  #: inputs may change shape from one run to the next
    spinning: bool = False  #: worker-thread spinning can be set (``BackendOptions.spinning``)
    #: ``BackendOptions.compute_precision`` values it takes (the CPU may support fewer)
    compute_precisions: tuple[str, ...] = ("f32",)
    #: the backend itself quantizes float feeds to a full-integer model's integer inputs and
    #: dequantizes its integer outputs (LiteRT); elsewhere the Engine does it with the
    #: parameters the model file declares, so such a model behaves the same on every backend
    quantizes_float_inputs: bool = False
    #: the :class:`BackendOptions` fields it reads; others must stay at their defaults
    options: tuple[str, ...] = ("threads", "device")


@dataclass(frozen=True)
class BackendInfo:
    """A registry entry: where the backend lives, what it needs and what it can do."""

    module: str
    package: str  # the Python package it imports
    extra: str  # `pip install 'edgeinfer[extra]'`; "core" when always installed
    formats: tuple[str, ...]  # model formats it reads
    capabilities: Capabilities = Capabilities()

    @property
    def install_hint(self) -> str:
        """The command that installs this backend's package."""
        return ("pip install onnxruntime" if self.extra == "core"
                else f"pip install 'edgeinfer[{self.extra}]'")


KNOWN_BACKENDS: dict[str, BackendInfo] = {
    "ort": BackendInfo(
        "edgeinfer.runtime.backends.ort", "onnxruntime", "core", ("onnx",),
        Capabilities(cancel=True, io_binding=True, spinning=True,
                     options=("threads", "device", "spinning", "providers", "io_binding")),
    ),
    "litert": BackendInfo(
        "edgeinfer.runtime.backends.litert", "ai_edge_litert", "litert", ("tflite",),
        Capabilities(quantizes_float_inputs=True),
    ),
    "openvino": BackendInfo(
        "edgeinfer.runtime.backends.openvino",
        "openvino",
        "openvino",
        ("openvino", "onnx", "tflite"),
        Capabilities(cancel=True, compute_precisions=("f32", "bf16", "f16", "default"),
                     options=("threads", "device", "hint", "streams", "compute_precision")),
    ),
    "reference": BackendInfo(
        "edgeinfer.runtime.backends.reference", "onnx", "core", ("onnx",),
        Capabilities(options=()),
    ),
}


def capabilities(name: str) -> Capabilities:
    """The declared capabilities of backend ``name`` (a one-line error for an unknown one)."""
    try:
        return KNOWN_BACKENDS[name].capabilities
    except KeyError:
        raise EdgeInferError(
            f"unknown backend '{name}': choose one of {sorted(KNOWN_BACKENDS)}"
        ) from None


def check_options(name: str, options: BackendOptions) -> None:
    """A one-line error when ``options`` sets a field backend ``name`` does not read (say
    ``hint`` for ``ort``): where a backend and its options are named together, a knob that
    would silently do nothing is refused."""
    caps = capabilities(name)
    defaults = BackendOptions()
    unused = [f for f in BackendOptions.__dataclass_fields__
              if f not in caps.options and getattr(options, f) != getattr(defaults, f)]
    if unused:
        raise EdgeInferError(
            f"backend '{name}' does not use {', '.join(unused)}: it reads "
            f"{', '.join(caps.options) or 'no options'}; leave the others unset"
        )

#: model file format -> the backend used when none is named
DEFAULT_BACKEND = {"onnx": "ort", "tflite": "litert", "openvino": "openvino"}

#: backends fit for timing: the reference backend is for correctness only
PRODUCTION_BACKENDS = ("ort", "litert", "openvino")


def not_installed_message(name: str, alternative: str = "") -> str:
    """The one "backend not installed" message: the package, the command that installs it,
    and an ``alternative`` fix where the caller has one."""
    info = KNOWN_BACKENDS[name]
    fix = f", or {alternative}" if alternative else ""
    return (f"backend '{name}' needs the Python package '{info.package}', which is not "
            f"installed: run `{info.install_hint}`{fix}")


def is_installed(name: str) -> bool:
    """Whether the package backend ``name`` needs can be imported (nothing is imported)."""
    return importlib.util.find_spec(KNOWN_BACKENDS[name].package) is not None


def available_backends(fmt: str | None = None, *, production: bool = True) -> list[str]:
    """Installed backends (that read ``fmt``, if given); without the reference backend unless
    ``production`` is False."""
    names = PRODUCTION_BACKENDS if production else tuple(KNOWN_BACKENDS)
    return [
        n
        for n in names
        if is_installed(n) and (fmt is None or fmt in KNOWN_BACKENDS[n].formats)
    ]


def create_backend(name: str, path: str | Path, options: BackendOptions | None = None) -> Backend:
    """Load ``path`` in the backend called ``name``."""
    try:
        info = KNOWN_BACKENDS[name]
    except KeyError:
        raise EdgeInferError(
            f"unknown backend '{name}': choose one of {sorted(KNOWN_BACKENDS)}"
        ) from None
    if not is_installed(name):
        raise MissingDependencyError(not_installed_message(name))
    module = importlib.import_module(info.module)
    return module.create(Path(path), options or BackendOptions())
