"""Federated learning parts without a federation: site data, compression, audit, CLI errors."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from edgeinfer.cli import main
from edgeinfer.collab.fl.compress import compress_delta, decompress_delta, nbytes
from edgeinfer.collab.fl.data import CLASSES, site_data, union_test_set
from edgeinfer.collab.fl.deploy import free_port
from edgeinfer.collab.fl.export import next_version
from edgeinfer.errors import EdgeInferError

flwr_app = pytest.importorskip("flwr.app")


def test_sites_are_label_skewed_and_styled_differently():
    hists, means = [], []
    for site in range(3):
        x, y = site_data(site, 400)
        assert x.shape == (400, 3, 16, 16) and x.dtype == np.float32
        hists.append(np.bincount(y, minlength=len(CLASSES)) / len(y))
        means.append(x.mean(axis=(0, 2, 3)))
    for h in hists:  # two classes dominate at each site, and not the same two everywhere
        assert np.sort(h)[-2:].sum() > 0.8
    assert len({tuple(np.argsort(h)[-2:]) for h in hists}) == 3
    assert np.abs(means[0] - means[1]).max() > 0.1  # style skew
    tx, ty = union_test_set(40)
    assert np.bincount(ty).tolist() == [30, 30, 30, 30] and len(tx) == 120


def test_site_data_is_deterministic_and_bad_site_is_an_error():
    a, _ = site_data(1, 10, seed=3)
    b, _ = site_data(1, 10, seed=3)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(EdgeInferError, match="site 7"):
        site_data(7, 10)


def test_int8_delta_roundtrip_is_close_and_four_times_smaller():
    rng = np.random.default_rng(0)
    base = {"w": rng.normal(size=(32, 16, 3, 3)).astype(np.float32),
            "b": rng.normal(size=32).astype(np.float32)}
    local = {k: v + rng.normal(scale=0.01, size=v.shape).astype(np.float32)
             for k, v in base.items()}
    q, scales = compress_delta(local, base)
    assert all(a.dtype == np.int8 and a.shape == base[k].shape for k, a in q.items())
    back = decompress_delta(q, scales, base)
    for k in base:
        assert np.abs(back[k] - local[k]).max() <= scales[k] / 2 + 1e-7
    assert nbytes(q) * 4 == nbytes(local)
    with pytest.raises(EdgeInferError, match="scales"):
        decompress_delta(q, {}, base)


def _reply(arrays: dict, **records) -> object:
    from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

    content = {"arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}),
               "metrics": MetricRecord({"num-examples": 10})}
    for k, v in records.items():
        content[k] = ConfigRecord(v)
    return RecordDict(content)


def test_audit_accepts_parameters_and_rejects_samples():
    from edgeinfer.collab.fl.strategy import audit_reply

    shapes = {"w": (4, 3, 3, 3), "b": (4,)}
    ok = {"w": np.zeros((4, 3, 3, 3), np.float32), "b": np.zeros(4, np.float32)}
    assert audit_reply(_reply(ok), shapes) == []
    x, _ = site_data(0, 2)
    smuggled = {**ok, "extra": x}  # a sample riding along as an array
    assert any("extra" in p for p in audit_reply(_reply(smuggled), shapes))
    # pixels cut to a parameter's shape pass a shape check: the federation test scans payloads
    cropped = {"w": x[:1, :, :3, :3].repeat(4, 0), "b": ok["b"]}
    assert audit_reply(_reply(cropped), shapes) == []
    as_bytes = audit_reply(_reply(ok, scales={"w": x.tobytes()}), shapes)
    assert any("not a scalar" in p for p in as_bytes)


def test_next_version_counts_existing_versions(tmp_path):
    assert next_version(tmp_path) == 1
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1-fp32").mkdir()
    (tmp_path / "v3").mkdir()
    assert next_version(tmp_path) == 4


def test_fl_cli_help():
    assert main(["fl", "--help"]) == 0
    assert main(["fl", "server", "--help"]) == 0
    assert main(["fl", "client", "--help"]) == 0


def test_bad_server_address_is_one_line_error(capsys):
    assert main(["fl", "client", "--server", "no-port-here", "--site", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "HOST:PORT" in err


def test_unreachable_server_fails_within_seconds():
    port = free_port()  # nothing listens there
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from edgeinfer.cli import main; "
         f"sys.exit(main(['fl', 'client', '--server', '127.0.0.1:{port}', '--site', '1']))"],
        capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - t0
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "fl server" in lines[0]
    assert elapsed < 10


def test_wrong_server_that_is_not_flower_fails_within_seconds(capsys):
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    conns = []

    def accept() -> None:  # accepts TCP, never speaks HTTP/2: like a wrong port
        try:
            while True:
                conns.append(listener.accept()[0])
        except OSError:
            return

    threading.Thread(target=accept, daemon=True).start()
    t0 = time.monotonic()
    try:
        code = main(["fl", "client", "--server", f"127.0.0.1:{port}", "--site", "0"])
    finally:
        listener.close()
        for c in conns:
            c.close()
    assert code == 2 and time.monotonic() - t0 < 10
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not answer as a Flower SuperLink" in err


@pytest.mark.parametrize("name", ["fedavg", "fedprox", "fedadam"])
def test_make_strategy_wraps_flowers_strategies(name):
    from flwr.serverapp.strategy import Strategy

    from edgeinfer.collab.fl.strategy import StrategyOptions, make_strategy

    s = make_strategy(StrategyOptions(name=name, quorum=2), {"w": (2,)})
    assert isinstance(s, Strategy) and s.min_train_nodes == 2 and s.fraction_evaluate == 0.0
    with pytest.raises(EdgeInferError, match="unknown strategy"):
        make_strategy(StrategyOptions(name="fedsgd"), {"w": (2,)})
    with pytest.raises(EdgeInferError, match="quorum"):
        make_strategy(StrategyOptions(name=name, quorum=5), {"w": (2,)})


def _train_reply(arrays: dict, scales: dict | None = None) -> object:
    from flwr.app import Message

    content = _reply(arrays, **({"scales": scales} if scales else {}))
    return Message(content=content, dst_node_id=1, message_type="train")


def test_round_aggregates_on_quorum_and_keeps_the_model_below_it():
    from edgeinfer.collab.fl.strategy import RoundLedger, StrategyOptions, make_strategy

    base = {"w": np.ones((2, 3), np.float32)}
    s = make_strategy(StrategyOptions(quorum=2), {"w": (2, 3)})
    s._global = base
    s.ledger = [RoundLedger(round=1, sampled=3)]
    arrays, _ = s.aggregate_train(1, [_train_reply({"w": base["w"] * 3})])
    assert arrays is None and not s.ledger[0].aggregated and s.ledger[0].failures == 2
    s.ledger = [RoundLedger(round=2, sampled=3)]
    q1, sc1 = compress_delta({"w": base["w"] * 2}, base)
    q2, sc2 = compress_delta({"w": base["w"] * 4}, base)
    arrays, _ = s.aggregate_train(2, [_train_reply(q1, sc1), _train_reply(q2, sc2)])
    entry = s.ledger[0]
    assert entry.aggregated and entry.compressed and entry.failures == 1
    np.testing.assert_allclose(arrays["w"].numpy(), 3.0, atol=1e-5)  # mean of 2 and 4
    assert entry.up_bytes < entry.up_float32_bytes
    s.ledger = [RoundLedger(round=3, sampled=2)]  # int8 without scales: rejected, not averaged
    arrays, _ = s.aggregate_train(3, [_train_reply(q1), _train_reply(q2)])
    assert arrays is None and s.ledger[0].rejected == 2
