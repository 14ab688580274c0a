"""The small public Python API, re-exported by ``edgeinfer/__init__.py``: names only, each
defined in the layer that does the work."""

from __future__ import annotations

from edgeinfer.conversion import ConvertConfig, convert
from edgeinfer.importing import ImportSpec, import_model
from edgeinfer.loading import inspect, load, resolve
from edgeinfer.optimization.optimizer import OptimizeConfig
from edgeinfer.optimization.optimizer import optimize_with_calibration as optimize

__all__ = ["ConvertConfig", "ImportSpec", "OptimizeConfig", "convert", "import_model", "inspect",
           "load", "optimize", "resolve"]
