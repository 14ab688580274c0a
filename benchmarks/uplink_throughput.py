"""Sustained QoS 1 throughput of the uplink through a local Mosquitto, against paho alone.

    .venv/bin/python benchmarks/uplink_throughput.py [--messages 20000] [--rounds 3] [--json F]

Both sides publish the same small results message (a JSON envelope of 124 bytes: one box) as
fast as they can to a Mosquitto started here on a free loopback port (``/usr/sbin/mosquitto``,
anonymous, no persistence; with ``--subscriber`` also a paho subscriber in its own process
taking every message, so the broker forwards too), and the clock stops when the broker has
acknowledged (PUBACK) the last one:

- ours: :class:`~edgeinfer.serve.uplink.Uplink` with its SQLite outbox (WAL, synchronous NORMAL):
  every message committed to disk before ``publish`` returns, deleted when acknowledged;
- peer: a bare paho-mqtt 2.x client (VERSION2 callbacks, QoS 1, the same 1,000-message in-flight
  window held with a semaphore released in ``on_publish``), nothing on disk: what a node without
  an outbox would do. (Handing paho all messages at once is slower: its queue past the in-flight
  window is rescanned on every PUBACK.)

Each round runs both, the order alternating from round to round, in one process; medians and
the ratios ours / peer and ours / 5,000 msg/s (the target) are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from edgeinfer.serve.messages import Envelope, encode, topic
from edgeinfer.serve.uplink import Uplink, UplinkConfig

TARGET = 5000.0
PAYLOAD = {"boxes": [[412, 233, 61, 40, 0.91, 2]], "ms": 12.5}


def _start_broker(workdir: Path, mosquitto: str = "/usr/sbin/mosquitto"
                  ) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
                    "max_inflight_messages 0\nset_tcp_nodelay true\n")
    proc = subprocess.Popen([mosquitto, "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("mosquitto did not start")


_DRAIN = """
import sys, paho.mqtt.client as mqtt
sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-drain")
sub.on_connect = lambda c, *a: c.subscribe("edgeinfer/#", qos=1)
sub.connect("127.0.0.1", int(sys.argv[1]))
sub.loop_forever()
"""


def _drain(port: int, python: str) -> subprocess.Popen:
    """A subscriber in its own process that takes every message (so the broker forwards, as in
    production, without taking the measured process's interpreter lock)."""
    proc = subprocess.Popen([python, "-c", _DRAIN, str(port)])
    time.sleep(0.5)
    return proc


def run_ours(port: int, n: int, workdir: Path, round_no: int) -> float:
    """Messages/s from the first publish to the last acknowledgement, outbox on."""
    up = Uplink(UplinkConfig(port=port, outbox=str(workdir / f"outbox{round_no}.sqlite"),
                             node=f"bench{round_no}")).start()
    while not up.stats()["connected"]:
        time.sleep(0.01)
    t0 = time.perf_counter()
    for _ in range(n):
        up.publish("cam1", "results", PAYLOAD)
    if not up.wait_sent(120):
        raise RuntimeError(f"uplink did not flush: {up.stats()}")
    rate = n / (time.perf_counter() - t0)
    up.close()
    return rate


def run_paho(port: int, n: int, round_no: int) -> float:
    """Messages/s of bare paho with the same window and the same encoded messages."""
    import paho.mqtt.client as mqtt

    done = threading.Event()
    window = threading.Semaphore(1000)
    acked = [0]

    def on_publish(client: object, userdata: object, mid: int, rc: object, props: object) -> None:
        acked[0] += 1
        window.release()
        if acked[0] == n:
            done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-paho{round_no}")
    client.on_publish = on_publish
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    name = topic("site1", f"paho{round_no}", "cam1", "results")
    t0 = time.perf_counter()
    for seq in range(n):  # our own window: paho's queue beyond it rescans per PUBACK
        window.acquire()
        client.publish(name, encode(Envelope.make(seq, PAYLOAD)), qos=1)
    if not done.wait(120):
        raise RuntimeError("paho did not flush")
    rate = n / (time.perf_counter() - t0)
    client.disconnect()
    client.loop_stop()
    return rate


def main() -> None:
    """Run the rounds and print medians and ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--mosquitto", default="/usr/sbin/mosquitto", help="broker executable")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the subscriber")
    ap.add_argument("--subscriber", action="store_true",
                    help="also run a subscriber (paho, own process) that takes every message")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker, port = _start_broker(work, args.mosquitto)
        drain = _drain(port, args.python) if args.subscriber else None
        try:
            ours, peer = [], []
            for r in range(args.rounds):  # alternate who goes first
                for who in (("ours", "paho") if r % 2 == 0 else ("paho", "ours")):
                    if who == "ours":
                        ours.append(run_ours(port, args.messages, work, r))
                    else:
                        peer.append(run_paho(port, args.messages, r))
                print(f"round {r}: ours {ours[-1]:,.0f} msg/s, paho alone {peer[-1]:,.0f} msg/s",
                      flush=True)
        finally:
            if drain is not None:
                drain.kill()
                drain.wait()
            broker.kill()
            broker.wait()
    mo, mp_ = statistics.median(ours), statistics.median(peer)
    body = len(encode(Envelope.make(0, PAYLOAD)))
    sub = "one subscriber taking every message" if args.subscriber else "no subscriber"
    print(f"\n{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end; {sub}; "
          f"QoS 1, {args.messages} messages of {body} B per round, {args.rounds} rounds, "
          "Mosquitto on loopback")
    print(f"ours (outbox on)     median {mo:,.0f} msg/s")
    print(f"paho alone (no disk) median {mp_:,.0f} msg/s")
    print(f"ratio ours / paho    {mo / mp_:.2f}")
    print(f"ratio ours / target  {mo / TARGET:.2f}  (target {TARGET:,.0f} msg/s)")
    if args.json:
        args.json.write_text(json.dumps({"ours": ours, "paho": peer, "messages": args.messages,
                                         "body_bytes": body, "python": sys.version}, indent=1))


if __name__ == "__main__":
    main()
