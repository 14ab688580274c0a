"""Run EfficientNet-Lite0 split between this process (the device) and a node.

    EDGEINFER_TOKEN=... edgeinfer split-node efficientnet-lite0 --host 0.0.0.0 --port 8600
    EDGEINFER_TOKEN=... python examples/split/split_client.py http://NODE:8600/v1/offload

The device is simulated 10x slower than one core here (1 thread). Plans the cut for the link
on a real photo, runs a few requests and prints where each one ran; stop the node
while it runs and the requests finish on the device.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from edgeinfer.collab.compress import Compression
from edgeinfer.collab.link import Link, parse_rate
from edgeinfer.collab.offload import SplitClient
from edgeinfer.collab.profile import DeviceSim, image_feeds

PHOTO = Path(__file__).resolve().parents[2] / "edgeinfer" / "data" / "coffee.jpg"


def main() -> None:
    """Plan, then run requests once a second and print the breakdown of each."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("node")
    ap.add_argument("--bandwidth", default="20mbit")
    ap.add_argument("--rtt-ms", type=float, default=5.0)
    ap.add_argument("--requests", type=int, default=10)
    args = ap.parse_args()
    bps = parse_rate(args.bandwidth)
    client = SplitClient(
        "efficientnet-lite0", args.node, "efficientnet-lite0",
        link=Link(bps, bps, args.rtt_ms / 1000), bandwidth_bps=bps,
        device=DeviceSim(threads=1, slowdown=10.0), compression=Compression("int8", "lz4"),
    )
    try:
        feeds = image_feeds("efficientnet-lite0", PHOTO)
        plan = client.prepare(feeds)
        print("plan:", "all on the device" if plan is None else
              f"{plan.where} at {plan.cut.key} (predicted {plan.total_s * 1000:.1f} ms)")
        for _ in range(args.requests):
            r = client.infer(feeds)
            print(f"{r.where:7s} head {r.head_s * 1000:6.1f} ms  transfer "
                  f"{r.transfer_s * 1000:6.1f} ms  tail {r.tail_s * 1000:6.1f} ms  "
                  f"total {r.total_s * 1000:6.1f} ms" + (f"  ({r.fallback})" if r.fallback else ""))
            time.sleep(1.0)
    finally:
        client.close()


if __name__ == "__main__":
    main()
