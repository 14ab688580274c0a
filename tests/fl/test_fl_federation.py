"""A real federation on loopback: flower-superlink, three flower-supernode processes, `flwr run`.

One run covers what must hold end to end: a site killed mid-round and the round still closes
on the quorum at its deadline; int8 updates counted and smaller than float32; nothing but
parameter-shaped arrays crossed (audit), and no site sample's bytes appear in any payload; the
aggregated model lands as a new INT8 artifact version that records its round.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from edgeinfer.collab.fl.data import site_data
from edgeinfer.collab.fl.deploy import Federation, kill, submit_run, wait_result

pytest.importorskip("flwr")
pytest.importorskip("torch")

SAMPLES = 300


def _clientapp_starts(log: Path) -> int:
    return log.read_text(errors="replace").count("Start `flwr-clientapp` process") if \
        log.exists() else 0


def _contains_sample(blob: bytes, x: np.ndarray, window: int = 64) -> bool:
    """True if any ``window``-byte run taken from any sample of ``x`` occurs in ``blob``."""
    for sample in x:
        raw = sample.tobytes()
        for start in range(0, len(raw) - window + 1, window):  # any 2*window slice is caught
            if raw[start:start + window] in blob:
                return True
    return False


def test_contains_sample_finds_a_smuggled_sample():
    x, _ = site_data(0, 4)
    assert _contains_sample(b"header" + x[2].tobytes()[100:400] + b"tail", x)
    assert not _contains_sample(np.zeros(4096, np.float32).tobytes(), x)


@pytest.mark.slow
def test_federation_survives_a_killed_site_and_ships_weights_only(tmp_path):
    run_dir, dump_dir, art_dir = tmp_path / "run", tmp_path / "dump", tmp_path / "artifacts"
    config = {
        "num-server-rounds": 2, "round-timeout": 30.0, "quorum": 2, "compress": True,
        "local-epochs": 1, "samples-per-site": SAMPLES, "test-per-site": 60,
        "out-dir": str(run_dir), "dump-dir": str(dump_dir), "artifact-dir": str(art_dir),
        "expected-sites": 3,
    }
    with Federation(tmp_path / "fed", sites=3) as fed:
        submit_run(fed.home, config)
        victim = fed.workdir / "logs" / "site2.log"
        deadline = time.monotonic() + 90
        while _clientapp_starts(victim) < 2:  # site 2 has begun round 2's training
            assert time.monotonic() < deadline, "site 2 never started round 2"
            assert fed.link.poll() is None
            time.sleep(0.05)
        kill(fed.nodes[2])  # SIGKILL its SuperNode and the ClientApp it spawned
        t_kill = time.monotonic()
        result = wait_result(run_dir, 120, [fed.link])
    r1, r2 = result["ledger"]
    assert (r1["replies"], r1["failures"], r1["aggregated"]) == (3, 0, True)
    assert (r2["sampled"], r2["replies"], r2["failures"], r2["aggregated"]) == (3, 2, 1, True)
    assert [h["round"] for h in result["history"]] == [0, 1, 2]
    assert time.monotonic() - t_kill < 30 + 60  # closed on the deadline, not hung
    # bytes: the global model down to each site, int8 deltas up (about a quarter of float32)
    n_params = 16 * 27 + 16 + 32 * 144 + 32 + 512 * 4 + 4
    assert r1["down_bytes"] >= 3 * 4 * n_params
    assert r1["compressed"] and 3 * n_params <= r1["up_bytes"] < 0.3 * r1["up_float32_bytes"]
    # only parameter-shaped arrays arrived, and no sample's bytes are in any payload
    assert all(e["rejected"] == 0 and not e["problems"] for e in result["ledger"])
    blobs = [p.read_bytes() for p in sorted(dump_dir.glob("*.bin"))]
    assert len(blobs) == 5
    for site in range(3):
        x, _ = site_data(site, SAMPLES)
        assert not any(_contains_sample(b, x[:40]) for b in blobs)
    # the aggregated model, re-optimized, as a new artifact version that records its round
    manifest = json.loads((art_dir / "v1" / "edgeinfer.json").read_text())
    fed_report = manifest["reports"]["federated"]
    assert fed_report["version"] == 1 and fed_report["round"] == 2
    assert manifest["model"]["precision"] == fed_report["precision"]
    assert fed_report["accuracy_int8"] is not None  # INT8 built and scored, shipped or not
    assert fed_report["precision"] != "fp32" or fed_report["optimize_problems"]  # says why
    assert abs(fed_report["accuracy_fp32"] - result["history"][-1]["accuracy"]) < 0.02
