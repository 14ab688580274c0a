"""The dashboard in headless Debian chromium (Playwright): live numbers change under load."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
from serve_models import AUTH, CHROMIUM, TOKEN
from serve_models import CHROMIUM_ARGS as ARGS


@pytest.mark.slow
def test_dashboard_shows_live_numbers(server, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is missing: apt-get install chromium (make test does)")
    from playwright.sync_api import sync_playwright

    stop = threading.Event()

    def traffic() -> None:
        body = {"inputs": {"x": {"shape": [1, 3, 8, 8], "data": [0.5] * 192}}}
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as c:
            while not stop.is_set():
                c.post("/v1/models/raw/infer", json=body)
                time.sleep(0.02)

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    requests_seen: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            external: list[str] = []
            page.on("request", lambda r: None if r.url.startswith(server.url)
                    else external.append(r.url))
            page.goto(f"{server.url}/#token={TOKEN}")
            page.wait_for_function(
                "document.querySelector('#models tbody tr[data-model=\"raw\"]') !== null",
                timeout=15000)
            first = page.inner_text("#total-requests")
            raw_first = page.inner_text('tr[data-model="raw"] td.requests')
            page.wait_for_function(
                f"document.querySelector('#total-requests').textContent !== '{first}'",
                timeout=15000)
            time.sleep(1.5)
            second = page.inner_text("#total-requests")
            raw_second = page.inner_text('tr[data-model="raw"] td.requests')
            rate = float(page.inner_text("#request-rate"))
            requests_seen = [first, second]
            assert page.inner_text("#ready") == "ready"
            assert page.inner_text('tr[data-model="broken"] td.state') == "failed"
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
    finally:
        stop.set()
        worker.join(timeout=10)
    assert int(second) > int(first) > 0, requests_seen
    assert int(raw_second) > int(raw_first)
    assert rate > 0
    assert shot.stat().st_size > 10_000
    assert external == [], external  # everything the page loads comes from the node
