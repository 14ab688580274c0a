"""edgeinfer: take a trained vision model to edge hardware.

Public API::

    edgeinfer.export(module, example_input, "model.onnx")   # PyTorch -> ONNX
    edgeinfer.import_model("model.onnx", "art", edgeinfer.ImportSpec(like="efficientnet-lite0"))
    edgeinfer.inspect("model.onnx", budget="64MB")          # MACs, params, arena plan
    edgeinfer.optimize("model.onnx", "art-int8", edgeinfer.OptimizeConfig("int8"), calib="img/")
    edgeinfer.convert("art-int8", "art-tfl", edgeinfer.ConvertConfig("tflite"), calib="img/")
    artifact = edgeinfer.load("artifact_dir")               # validated manifest
    edgeinfer.zoo_get("efficientnet-lite0", "out/effnet")   # pretrained, offline
    engine = edgeinfer.Engine(artifact)                      # run it
    edgeinfer.bench(["model.onnx"], backends="all", threads=[1, 2])  # every backend, timed
    edgeinfer.tune("model.onnx", "art-tuned", calib="img/")  # fastest config within 1% drop
    edgeinfer.train_detector("data.yaml", "art-det")         # fine-tune the defect detector
    edgeinfer.train_anomaly("good/", "art-anomaly")          # anomaly model from good images
    edgeinfer.compress("defect-detector", "art-small", data=..., config=CompressConfig(macs=0.33))
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
    from edgeinfer.api import convert, inspect, load, optimize
    from edgeinfer.artifact import Artifact
    from edgeinfer.benchmark import bench
    from edgeinfer.compression.compress import CompressConfig, compress
    from edgeinfer.conversion import ConvertConfig
    from edgeinfer.importing import ImportSpec, import_model
    from edgeinfer.optimization.optimizer import OptimizeConfig
    from edgeinfer.runtime.engine import Engine
    from edgeinfer.training.anomaly import train_anomaly
    from edgeinfer.training.detect_train import TrainConfig as DetectorTrainConfig
    from edgeinfer.training.detector import train_detector
    from edgeinfer.tuning import TuneConfig, tune

__version__ = "0.1.0"

__all__ = [
    "Artifact",
    "ArtifactError",
    "CompressConfig",
    "ConvertConfig",
    "DetectorTrainConfig",
    "EdgeInferError",
    "Engine",
    "ImportSpec",
    "MissingDependencyError",
    "ModelLoadError",
    "OptimizeConfig",
    "ShapeError",
    "TuneConfig",
    "UnsupportedOpsetError",
    "ZooError",
    "bench",
    "compress",
    "convert",
    "export",
    "import_model",
    "inspect",
    "load",
    "optimize",
    "train_anomaly",
    "train_detector",
    "tune",
    "zoo_get",
]

_LAZY = {
    "Artifact": ("edgeinfer.artifact", "Artifact"),
    "ConvertConfig": ("edgeinfer.conversion", "ConvertConfig"),
    "OptimizeConfig": ("edgeinfer.optimization.optimizer", "OptimizeConfig"),
    "bench": ("edgeinfer.benchmark", "bench"),
    "compress": ("edgeinfer.compression.compress", "compress"),
    "CompressConfig": ("edgeinfer.compression.compress", "CompressConfig"),
    "convert": ("edgeinfer.api", "convert"),
    "optimize": ("edgeinfer.api", "optimize"),
    "Engine": ("edgeinfer.runtime.engine", "Engine"),
    "export": ("edgeinfer.model.export", "export"),
    "import_model": ("edgeinfer.api", "import_model"),
    "ImportSpec": ("edgeinfer.api", "ImportSpec"),
    "inspect": ("edgeinfer.api", "inspect"),
    "load": ("edgeinfer.api", "load"),
    "zoo_get": ("edgeinfer.zoo", "get"),
    "tune": ("edgeinfer.tuning", "tune"),
    "TuneConfig": ("edgeinfer.tuning", "TuneConfig"),
    "train_detector": ("edgeinfer.training.detector", "train_detector"),
    "DetectorTrainConfig": ("edgeinfer.training.detect_train", "TrainConfig"),
    "train_anomaly": ("edgeinfer.training.anomaly", "train_anomaly"),
}


def __getattr__(name: str) -> Any:
    """Import the public API lazily so `import edgeinfer` stays fast."""
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'edgeinfer' has no attribute {name!r}")
