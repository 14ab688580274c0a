"""A node started with --streams and an uplink: live stream figures in /v1/status, /metrics
and the dashboard, the latest annotated frame, and results kept in the outbox while no
broker is up."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from serve_models import AUTH, CHROMIUM, TOKEN, make_repository, wait_ready
from serve_models import CHROMIUM_ARGS as ARGS


def closed_port() -> int:
    """A loopback port nobody listens on (the broker is 'down')."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def stream_node(tmp_path_factory: pytest.TempPathFactory):
    """A node running one looping 20 fps stream on 'tiny', uplink to a closed port."""
    from edgeinfer.serve.app import create_app
    from edgeinfer.serve.config import NodeConfig, UplinkSettings
    from edgeinfer.serve.server import BackgroundServer

    tmp = tmp_path_factory.mktemp("streams")
    repo = make_repository(tmp / "repo", corrupt=False)
    video = tmp / "cam.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 20, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(20):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    streams = tmp / "streams.yaml"
    streams.write_text(
        f"models:\n  tiny: {repo / 'tiny'}\n"
        f"streams:\n  - {{name: cam0, source: {video}, model: tiny, loop: true, live: true, "
        "fps: 20}\n")
    uplink = UplinkSettings(host="127.0.0.1", port=closed_port(), site="test",
                            outbox=tmp / "outbox.sqlite")
    config = NodeConfig(repository=repo, token=TOKEN, streams=streams, uplink=uplink)
    with BackgroundServer(create_app(config)) as srv:
        wait_ready(srv.url)
        yield srv


@pytest.mark.slow
def test_streams_status_frame_metrics_and_outbox(stream_node) -> None:
    with httpx.Client(base_url=stream_node.url, headers=AUTH, timeout=30) as c:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            status = c.get("/v1/status").json()
            cam = status["streams"].get("cam0", {})
            if (cam.get("frames") or 0) >= 10 and cam.get("fps"):
                break
            time.sleep(0.2)
        assert cam["frames"] >= 10 and cam["fps"] > 0, cam
        assert status["uplink"]["connected"] is False
        assert status["uplink"]["backlog"] >= 10  # kept on disk, not lost
        # the model's HTTP request count is not inflated by the stream's frames
        tiny = next(m for m in status["models"] if m["name"] == "tiny")
        before = tiny["requests"]
        assert tiny["stream_frames"] >= 10
        body = {"inputs": {"x": {"shape": [1, 3, 8, 8], "data": [0.0] * 192}}}
        assert c.post("/v1/models/tiny/infer", json=body).status_code == 200
        tiny = next(m for m in c.get("/v1/status").json()["models"] if m["name"] == "tiny")
        assert tiny["requests"] == before + 1
        r = c.get("/v1/streams/cam0/frame.jpg")
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        frame = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
        assert frame.shape == (48, 64, 3)
        text = c.get("/metrics").text
        assert 'edgeinfer_stream_fps{stream="cam0"}' in text
        assert "edgeinfer_uplink_backlog " in text
        assert 'edgeinfer_uplink_dropped_total{reason="full"} 0.0' in text
        assert "edgeinfer_uplink_resent_total 0.0" in text  # no broker: nothing sent yet
        assert c.get("/v1/streams/nope/frame.jpg").status_code == 404


@pytest.mark.slow
def test_dashboard_shows_live_stream(stream_node, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(f"{stream_node.url}/#token={TOKEN}")
        card = '.stream[data-stream="cam0"]'
        page.wait_for_selector(f"{card} .fps", timeout=15000)
        page.wait_for_function(
            f"document.querySelector('{card} img').naturalWidth > 0", timeout=15000)
        first = page.inner_text(f"{card} .frames")
        page.wait_for_function(
            f"document.querySelector('{card} .frames').textContent !== '{first}'",
            timeout=15000)
        second = page.inner_text(f"{card} .frames")
        fps = float(page.inner_text(f"{card} .fps"))
        shot = tmp_path / "streams.png"
        page.screenshot(path=str(shot), full_page=True)
        uplink_visible = page.is_visible("#uplink-section")
        browser.close()
    assert int(second.split()[-1]) > int(first.split()[-1])
    assert fps > 0
    assert uplink_visible
    assert shot.stat().st_size > 10_000
