"""A node process for the kill tests: publishes ``stream`` seq ``next_seq .. total-1`` through
the outbox at ``rate`` messages/s, then flushes and exits. Usage:
python uplink_node.py HOST PORT OUTBOX STREAM TOTAL RATE KEEPALIVE
"""

from __future__ import annotations

import sys
import time

from edgeinfer.serve.uplink import Uplink, UplinkConfig


def main() -> None:
    host, port, outbox, stream, total, rate, keepalive = sys.argv[1:8]
    up = Uplink(UplinkConfig(host=host, port=int(port), outbox=outbox, keepalive=int(keepalive),
                             reconnect_min=0.2, reconnect_max=1.0))
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
    up.close(timeout=30)
    print(f"done {up.stats()}", flush=True)


if __name__ == "__main__":
    main()
