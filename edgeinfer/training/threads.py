"""How training's CPU threads wait: passively.

Spinning OpenMP workers, the default of torch's CPU build, collapse when the cores are shared:
on the 2-core development box at load 9, one 640 px forward of the defect detector took 7.7 s
with 2 spinning threads and 0.07 s with 2 passive ones. The wait policy is read when OpenMP
starts, so :func:`prefer_passive_threads` must run before torch is first imported (the CLI's
train verbs and the benchmarks call it first thing). This module imports no torch.
"""

from __future__ import annotations

import os

__all__ = ["OMP_WAIT_POLICY", "prefer_passive_threads"]

#: OpenMP's wait policy for training
OMP_WAIT_POLICY = "PASSIVE"


def prefer_passive_threads() -> None:
    """Ask OpenMP for passive waiting unless the user chose a policy (``OMP_WAIT_POLICY``);
    it only takes effect before torch is first imported."""
    os.environ.setdefault("OMP_WAIT_POLICY", OMP_WAIT_POLICY)
