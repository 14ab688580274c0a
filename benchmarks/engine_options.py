"""Why the ORT backend's defaults are what they are: spinning and I/O binding, measured.

EfficientNet-Lite0 (zoo), batch 1, onnxruntime with its default thread count, timed in
interleaved rounds (each round runs every variant in turn):

- spinning: ORT's default (workers keep spinning after a run), ``intra_op.allow_spinning=0``
  (workers never spin), ``force_spinning_stop=1`` (spin inside a run, park when it ends: the
  Engine's default); then the CPU this process burns in the 2 s after one last run of each;
- I/O binding: ``session.run`` against ``run_with_iobinding`` with pre-allocated output buffers
  and with ORT-allocated outputs.

    .venv/bin/python benchmarks/engine_options.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgeinfer import loading
from edgeinfer.timing import time_rounds


def _session(path: Path, **config: str) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    for k, v in config.items():
        so.add_session_config_entry(k, v)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    path = loading.resolve("efficientnet-lite0") / "efficientnet-lite0.onnx"
    x = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
    sessions = {
        "ORT default (spins after runs)": _session(path),
        "allow_spinning=0 (never spins)": _session(
            path, **{"session.intra_op.allow_spinning": "0"}
        ),
        "force_spinning_stop=1 (Engine default)": _session(
            path, **{"session.force_spinning_stop": "1"}
        ),
    }
    runners = [lambda s=s: s.run(None, {"input": x}) for s in sessions.values()]
    times = time_rounds(runners, args.rounds, 20, warmup=10)
    print("spinning, p50 latency and idle CPU in the 2 s after one run:")
    for (name, sess), t in zip(sessions.items(), times, strict=True):
        sess.run(None, {"input": x})
        c0 = sum(os.times()[:2])
        time.sleep(2)
        idle = (sum(os.times()[:2]) - c0) / 2
        print(f"  {statistics.median(t):7.3f} ms   idle {idle:6.1%} of a core   {name}")

    sess = sessions["force_spinning_stop=1 (Engine default)"]
    out_name = sess.get_outputs()[0].name
    pre = sess.io_binding()
    buf = np.empty((1, 1000), np.float32)
    pre.bind_output(out_name, "cpu", 0, np.float32, list(buf.shape), buf.ctypes.data)
    alloc = sess.io_binding()
    alloc.bind_output(out_name, "cpu")

    def bound_prealloc() -> np.ndarray:
        pre.bind_cpu_input("input", x)
        sess.run_with_iobinding(pre)
        return buf.copy()

    def bound_alloc() -> list:
        alloc.bind_cpu_input("input", x)
        sess.run_with_iobinding(alloc)
        return alloc.copy_outputs_to_cpu()

    variants = {
        "session.run": lambda: sess.run(None, {"input": x}),
        "I/O binding, pooled output buffer": bound_prealloc,
        "I/O binding, ORT-allocated output": bound_alloc,
    }
    times = time_rounds(list(variants.values()), args.rounds, 20, warmup=10)
    print("I/O binding on the CPU provider, p50 latency:")
    base = statistics.median(times[0])
    for name, t in zip(variants, times, strict=True):
        p50 = statistics.median(t)
        print(f"  {p50:7.3f} ms  ({p50 / base:5.3f}x)  {name}")


if __name__ == "__main__":
    main()
