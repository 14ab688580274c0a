"""The split planner's "send a JPEG of the input" option end to end: a real uvicorn node on
loopback serving the zoo's EfficientNet-Lite0 (an artifact, so its manifest says how to
preprocess) and the same model as a bare .onnx (no manifest, so no JPEG option)."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from edgeinfer.collab.compress import Compression
from edgeinfer.collab.link import Link
from edgeinfer.collab.planner import estimate_s
from edgeinfer.collab.profile import JPEG_CUT, DeviceSim, image_feeds
from edgeinfer.serve.split_node import BackgroundNode

MODEL = "efficientnet-lite0"
PHOTO = Path(__file__).resolve().parents[2] / "edgeinfer" / "data" / "coffee.jpg"
MAX_CUTS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Node(BackgroundNode):
    """A real uvicorn offload node on a free loopback port, in a thread."""

    def __init__(self, models: dict[str, str | Path]) -> None:
        super().__init__(models, threads=1, max_cuts=MAX_CUTS, profile_runs=1)


@pytest.fixture(scope="module")
def bare_onnx() -> Path:
    from edgeinfer.collab.profile import resolve_onnx

    try:
        return resolve_onnx(MODEL)[0]
    except Exception as exc:  # the zoo model is fetched once; offline without it: skip
        pytest.skip(f"{MODEL} not available: {exc}")


@pytest.fixture(scope="module")
def node(bare_onnx: Path):
    n = _Node({"effnet": MODEL, "bare": bare_onnx})
    yield n
    n.stop()


def _jpeg_feeds() -> dict[str, np.ndarray]:
    """The photo resized, JPEG q90 encoded and decoded, normalised without a second resize:
    computed independently of the codec, with OpenCV and the manifest directly."""
    import cv2

    from edgeinfer.loading import load, resolve
    from edgeinfer.vision.preprocess import read_image, resize, spatial_size, to_tensor

    m = load(resolve(MODEL)).manifest
    spec, pre = m.inputs[0], m.preprocess
    small, _ = resize(read_image(PHOTO), spatial_size(spec), pre)
    jpg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
    x, _ = to_tensor(cv2.imdecode(jpg, cv2.IMREAD_COLOR), spec,
                     pre.model_copy(update={"resize": "none"}))
    return {spec.name: x}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_planner_picks_jpeg_when_cheapest_and_outputs_match(node) -> None:
    from edgeinfer.collab.offload import SplitClient

    bps, rtt = 5e6, 0.005
    client = SplitClient(MODEL, node.url, "effnet", link=Link(bps, bps, rtt),
                         device=DeviceSim(1, 20.0), compression=Compression.parse("int8+lz4"),
                         bandwidth_bps=bps, rtt_s=rtt, max_cuts=MAX_CUTS, timeout_s=60.0)
    try:
        feeds = image_feeds(MODEL, PHOTO)
        p = client.prepare(feeds, runs=1, image=PHOTO)
        assert p is not None
        jpeg = [c for c in client.cuts if c.tensors == JPEG_CUT]
        assert len(jpeg) == 1 and jpeg[0].tail_s > 0 and jpeg[0].head_s > 0
        first = min((c for c in client.cuts if c.position >= 0), key=lambda c: c.position)
        assert jpeg[0].sent_bytes * 5 < first.sent_bytes  # far smaller than the int8 tensor
        last = max(c.position for c in client.cuts)
        totals = {c.key: sum(estimate_s(c, bps, p.rtt_s, c.position == last))
                  for c in client.cuts}
        assert p.where == "jpeg" and p.total_s == pytest.approx(min(totals.values()))

        r = client.infer(feeds, image=PHOTO)
        assert r.where == "jpeg" and r.fallback is None and r.sent_bytes == jpeg[0].sent_bytes
        assert r.tail_s > 0 and r.transfer_s >= rtt
        ref = client.split.full().run(feeds)
        via_jpeg = client.split.full().run(_jpeg_feeds())
        for k, v in ref.items():
            assert r.outputs[k].shape == v.shape
            # lossy (docs/benchmarks/: cosine 0.953 min over photos), same top-1 here ...
            assert _cosine(r.outputs[k], v) > 0.9
            assert int(r.outputs[k].argmax()) == int(v.argmax())
            # ... and exactly what the JPEG, decoded and normalised here, gives
            np.testing.assert_allclose(r.outputs[k], via_jpeg[k], rtol=1e-4, atol=1e-4)

        plain = client.infer(feeds)  # no image at hand: the next best, never the JPEG
        assert plain.where != "jpeg"
    finally:
        client.close()


def test_node_answers_400_to_undecodable_bytes_and_404_without_manifest(node) -> None:
    import httpx

    r = httpx.post(f"{node.url}/effnet/infer-image", content=b"\xff\xd8 not a jpeg", timeout=60)
    assert r.status_code == 400
    detail = r.json()["detail"]
    assert "not a decodable image" in detail and "\n" not in detail
    r = httpx.post(f"{node.url}/bare/infer-image", content=PHOTO.read_bytes(), timeout=60)
    assert r.status_code == 404 and "manifest" in r.text
    # a real JPEG whose start-of-frame claims 60000x60000 (3.6 GP): refused before decoding
    data = bytearray(PHOTO.read_bytes())
    sof = next(i for i in range(2, len(data) - 9) if data[i] == 0xFF and data[i + 1] == 0xC0)
    data[sof + 5:sof + 9] = (60000).to_bytes(2, "big") * 2
    r = httpx.post(f"{node.url}/effnet/infer-image", content=bytes(data), timeout=60)
    assert r.status_code == 400 and "over the limit" in r.json()["detail"]


def test_node_without_manifest_publishes_no_jpeg_candidate(node, bare_onnx: Path) -> None:
    import httpx

    from edgeinfer.collab.offload import SplitClient

    prof = httpx.get(f"{node.url}/bare/profile", timeout=120).json()
    assert prof["cuts"] and all(c["tensors"] != list(JPEG_CUT) for c in prof["cuts"])
    client = SplitClient(bare_onnx, node.url, "bare", bandwidth_bps=1e6, rtt_s=0.0,
                         max_cuts=MAX_CUTS, timeout_s=60.0)
    try:
        assert client.codec is None
        p = client.prepare(image_feeds(MODEL, PHOTO), runs=1, image=PHOTO)
        assert p is not None and p.where != "jpeg"
        assert all(c.tensors != JPEG_CUT for c in client.cuts)
    finally:
        client.close()


def test_jpeg_request_to_unreachable_node_completes_on_device(bare_onnx: Path) -> None:
    from edgeinfer.collab.offload import SplitClient

    client = SplitClient(MODEL, f"http://127.0.0.1:{_free_port()}/v1/offload", "effnet",
                         bandwidth_bps=1e7, max_cuts=2)
    try:
        feeds = image_feeds(MODEL, PHOTO)
        r = client.infer(feeds, cut=JPEG_CUT, image=PHOTO)
        assert r.where == "device" and r.fallback is not None and client.fallbacks == 1
        ref = client.split.full().run(feeds)
        for k, v in ref.items():
            np.testing.assert_allclose(r.outputs[k], v, rtol=1e-5, atol=1e-5)
    finally:
        client.close()


def test_split_help_mentions_the_image() -> None:
    from edgeinfer.cli import main

    assert main(["split", "--help"]) == 0
