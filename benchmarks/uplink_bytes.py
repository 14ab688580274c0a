"""Upload bytes of the uplink against the raw JPEG frames it replaces, for two scenarios.

    .venv/bin/python benchmarks/uplink_bytes.py [--inspection-frames 3] [--retail-frames 150]

- inspection: the shipped ``defect-detector`` (zoo, FP32, onnxruntime) tile by tile (640 px,
  overlap 0.2, as ``edgeinfer demo``) on generated 5 MP frames (2592x1944,
  ``edgeinfer/synthetic/defects.py``, the demo's evaluation series); one results message per
  frame: the defects' boxes, scores and classes.
- retail: BlazeFace short range (zoo ``blazeface-short``, LiteRT) on the generated shop entrance
  (640x480, 15 fps, ``edgeinfer/synthetic/retail.py``); one results message per frame, empty
  frames included (the face count is the product).

Every message goes through a real :class:`~edgeinfer.serve.uplink.Uplink` (outbox on, QoS 1) to
a Mosquitto started here on loopback, in JSON and in CBOR; the uplink counts the MQTT PUBLISH
bytes it sends (fixed header, topic, packet id, envelope) and the raw bytes passed with each
message: the frame encoded as JPEG at quality 90 (OpenCV), what a camera-to-cloud design would
upload instead. Printed: bytes per frame both ways and the ratio (target <= 10%). Not counted
on either side: TCP/IP headers and MQTT PUBACKs (a few dozen bytes per packet; a JPEG of a
5 MP frame takes hundreds of packets, so leaving them out flatters the frames, not us).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from rich.progress import Progress

sys.path.insert(0, str(Path(__file__).parent))
from uplink_throughput import _start_broker  # the same directory: a script

from edgeinfer.serve.messages import detections_payload
from edgeinfer.serve.uplink import Uplink, UplinkConfig

TARGET = 0.10


def _jpeg(image: np.ndarray) -> int:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return len(buf)


def inspection_results(n: int) -> list[tuple[dict, int, int]]:
    """(payload, JPEG bytes, true defects) per generated 5 MP frame (tiled defect detector)."""
    from edgeinfer.artifact import load_artifact
    from edgeinfer.demo import FIRST_FRAME
    from edgeinfer.loading import resolve
    from edgeinfer.pipeline.tiled import TiledPredictor
    from edgeinfer.runtime.engine import Engine
    from edgeinfer.synthetic.defects import make_frame

    out = []
    with Engine(load_artifact(resolve("defect-detector"))) as engine, Progress() as bar:
        tiled = TiledPredictor(engine, tile=640, overlap=0.2, batch=4, measure_memory=False)
        task = bar.add_task("inspection 5 MP frames", total=n)
        for k in range(n):
            image, gt_boxes, _classes = make_frame(FIRST_FRAME + k)
            pred = tiled.predict(image)
            d = pred.detections
            payload = detections_payload(d.boxes, d.scores, d.class_ids, frame=k,
                                         ms=round(pred.times_ms["total"], 1))
            out.append((payload, _jpeg(image), len(gt_boxes)))
            bar.advance(task)
    return out


def retail_results(n: int) -> list[tuple[dict, int, int]]:
    """(payload, JPEG bytes, visible faces) per generated entrance frame, from BlazeFace."""
    from edgeinfer.artifact import load_artifact
    from edgeinfer.loading import resolve
    from edgeinfer.pipeline.predict import Predictor
    from edgeinfer.runtime.engine import Engine
    from edgeinfer.synthetic.retail import entrance_frames

    out = []
    with Engine(load_artifact(resolve("blazeface-short"))) as engine, Progress() as bar:
        predictor = Predictor(engine)
        task = bar.add_task("retail entrance frames", total=n)
        for k, frame in enumerate(entrance_frames(seed=7, n_frames=n)):
            pred = predictor.predict(frame.image)
            d = pred.result
            payload = detections_payload(d.boxes, d.scores, d.class_ids, frame=k,
                                         faces=len(d.boxes))
            out.append((payload, _jpeg(frame.image), len(frame.boxes)))
            bar.advance(task)
    return out


def send(port: int, work: Path, name: str, encoding: str,
         results: list[tuple[dict, int, int]]) -> dict:
    """Publish every result through a real uplink; its byte counters."""
    up = Uplink(UplinkConfig(port=port, outbox=str(work / f"{name}-{encoding}.sqlite"),
                             node=f"{name}-{encoding}", encoding=encoding)).start()
    while not up.stats()["connected"]:
        time.sleep(0.01)
    for payload, raw, _truth in results:
        up.publish("cam1", "results", payload, raw_bytes=raw)
    if not up.wait_sent(30):
        raise RuntimeError(f"uplink did not flush: {up.stats()}")
    return up.close()


def main() -> None:
    """Run both scenarios and print bytes per frame and ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inspection-frames", type=int, default=3)
    ap.add_argument("--retail-frames", type=int, default=150)
    args = ap.parse_args()
    scenarios = {"inspection (5 MP, defect-detector tiled)": inspection_results(
        args.inspection_frames), "retail (640x480, BlazeFace)": retail_results(args.retail_frames)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        broker, port = _start_broker(Path(tmp))
        try:
            for i, (name, results) in enumerate(scenarios.items()):
                dets = sum(len(p["d"]) for p, _, _ in results)
                truth = sum(t for _, _, t in results)
                for encoding in ("json", "cbor"):
                    st = send(port, Path(tmp), f"s{i}", encoding, results)
                    n = len(results)
                    rows.append((name, encoding, n, truth / n, dets / n, st["bytes_sent"] / n,
                                 st["raw_bytes"] / n, st["bytes_sent"] / st["raw_bytes"]))
        finally:
            broker.kill()
            broker.wait()
    print(f"\n{'scenario':42} {'enc':4} {'frames':>6} {'true/fr':>7} {'dets/fr':>7} "
          f"{'sent B/fr':>10} "
          f"{'JPEG90 B/fr':>12} {'ratio':>8}")
    for name, enc, n, t, d, sent, raw, ratio in rows:
        print(f"{name:42} {enc:4} {n:6d} {t:7.1f} {d:7.1f} {sent:10.0f} {raw:12.0f} "
              f"{ratio:8.3%}")
    worst = max(r[-1] for r in rows)
    print(f"\nworst ratio sent / JPEG {worst:.3%}; ratio to the 10% target {worst / TARGET:.3f} "
          f"({'met' if worst <= TARGET else 'MISSED'})")


if __name__ == "__main__":
    main()
