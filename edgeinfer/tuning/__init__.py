"""``edgeinfer tune``: pick the fastest backend x precision x threads within an accuracy budget."""

from edgeinfer.tuning.tuner import TuneConfig, tune

__all__ = ["TuneConfig", "tune"]
