"""A node process for the kill tests: publishes ``stream`` seq ``next_seq .. total-1`` through
the outbox at ``rate`` messages/s, then flushes (every message acknowledged) and exits, printing
its final stats as JSON. Usage:
python uplink_node.py HOST PORT OUTBOX STREAM TOTAL RATE KEEPALIVE [--linger] [--ack-timeout S]
    [--ack collector|broker]
"""

from __future__ import annotations

import json
import sys
import time

from edgeinfer.serve.uplink import Uplink, UplinkConfig


def _option(name: str, default: str) -> str:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def main() -> None:
    host, port, outbox, stream, total, rate, keepalive = sys.argv[1:8]
    timeout = float(_option("--ack-timeout", "30"))
    up = Uplink(UplinkConfig(host=host, port=int(port), outbox=outbox, keepalive=int(keepalive),
                             reconnect_min=0.2, reconnect_max=1.0, ack_timeout_s=timeout,
                             ack_timeout_max_s=max(timeout, 4.0), ack=_option("--ack",
                                                                             "collector")))
    up.start()
    start = up.outbox.next_seq(stream)
    print(f"start {start}", flush=True)
    t0 = time.monotonic()
    for k, seq in enumerate(range(start, int(total))):
        up.publish(stream, "results", {"i": seq, "boxes": [[1, 2, 3, 4, 0.9, 0]]})
        delay = t0 + (k + 1) / float(rate) - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    print("published", flush=True)
    if int(total) > 0 and "--linger" in sys.argv:
        time.sleep(3600)
    while not up.wait_sent(1.0):  # every message acknowledged, however long it takes
        pass
    print(f"done {json.dumps(up.close(timeout=5))}", flush=True)


if __name__ == "__main__":
    main()
