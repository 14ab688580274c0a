"""Sustained QoS 1 throughput of the uplink through a local Mosquitto, against paho alone, with
the outbox emptied on the broker's PUBACK and on the collector's end-to-end acknowledgement.

    .venv/bin/python benchmarks/uplink_throughput.py [--messages 20000] [--rounds 3] [--json F]

Every contender publishes the same small results message (a JSON envelope of 124 bytes: one
box) as fast as it can to a Mosquitto started here on a free loopback port
(``/usr/sbin/mosquitto``, anonymous, no persistence), while ``edgeinfer collect`` runs in its own
process (SQLite store, WAL), so the broker forwards every message and the collector stores and
acknowledges each:

- ``ours, ack=broker``: :class:`~edgeinfer.serve.uplink.Uplink` with its SQLite outbox (WAL,
  synchronous NORMAL): every message committed to disk before ``publish`` returns, deleted on
  the broker's PUBACK; the clock stops at the last PUBACK;
- ``ours, ack=collector`` (the default since end-to-end acknowledgement): the same, but a
  message is deleted when the collector's acknowledgement comes back (stored in its database);
  the clock stops at the last of those;
- ``paho alone``: a bare paho-mqtt 2.x client (VERSION2 callbacks, QoS 1, the same 1,000-message
  in-flight window held with a semaphore released in ``on_publish``), nothing on disk: what a
  node without an outbox would do; the clock stops at the last PUBACK. (Handing paho all
  messages at once is slower: its queue past the in-flight window is rescanned on every PUBACK.)

Each round runs all three, the order rotating from round to round, in one process; medians and
the ratios between them and to 5,000 msg/s (the target) are printed.
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


def _collector(port: int, python: str, workdir: Path) -> subprocess.Popen:
    """``edgeinfer collect`` in its own process (so the broker forwards every message, and the
    collector's storing and acknowledging does not take the measured process's interpreter
    lock); returns once it has connected."""
    proc = subprocess.Popen([python, "-m", "edgeinfer.cli", "collect", "--port", str(port),
                             "--db", str(workdir / "collect.sqlite"), "--client-id", "bench"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(3.0)  # the CLI's imports, the connection and the subscription
    return proc


def run_ours(port: int, n: int, workdir: Path, round_no: int, ack: str) -> float:
    """Messages/s from the first publish to the last acknowledgement (the broker's or the
    collector's, per ``ack``), outbox on."""
    up = Uplink(UplinkConfig(port=port, outbox=str(workdir / f"outbox-{ack}{round_no}.sqlite"),
                             node=f"bench-{ack}{round_no}", ack=ack)).start()
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
    ap.add_argument("--python", default=sys.executable, help="interpreter for the collector")
    args = ap.parse_args()
    runs: dict[str, list[float]] = {"ours, ack=collector": [], "ours, ack=broker": [],
                                    "paho alone": []}
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker, port = _start_broker(work, args.mosquitto)
        collector = _collector(port, args.python, work)
        try:
            names = list(runs)
            for r in range(args.rounds):  # rotate who goes first
                for who in names[r % 3:] + names[:r % 3]:
                    if who == "paho alone":
                        runs[who].append(run_paho(port, args.messages, r))
                    else:
                        runs[who].append(run_ours(port, args.messages, work, r,
                                                  who.rsplit("=", 1)[1]))
                print(f"round {r}: " + ", ".join(f"{k} {v[-1]:,.0f} msg/s"
                                                 for k, v in runs.items()), flush=True)
        finally:
            collector.kill()
            collector.wait()
            broker.kill()
            broker.wait()
    med = {k: statistics.median(v) for k, v in runs.items()}
    body = len(encode(Envelope.make(0, PAYLOAD)))
    print(f"\n{os.cpu_count()} CPUs, load average {load0:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end; the collector (own process, SQLite) takes every "
          f"message; QoS 1, {args.messages} messages of {body} B per round, {args.rounds} "
          "rounds, Mosquitto on loopback")
    for k, v in med.items():
        print(f"{k:<22} median {v:,.0f} msg/s")
    ack, broker_ack, paho = (med["ours, ack=collector"], med["ours, ack=broker"],
                             med["paho alone"])
    print(f"ratio ack=collector / ack=broker  {ack / broker_ack:.2f}")
    print(f"ratio ack=broker / paho           {broker_ack / paho:.2f}")
    print(f"ratio ack=collector / target      {ack / TARGET:.2f}  (target {TARGET:,.0f} msg/s)")
    if args.json:
        args.json.write_text(json.dumps({**runs, "messages": args.messages, "body_bytes": body,
                                         "python": sys.version}, indent=1))


if __name__ == "__main__":
    main()
