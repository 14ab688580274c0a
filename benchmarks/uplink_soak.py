"""End-to-end delivery under faults: 1,000 messages per run, streamed at 50 messages/s by a node
process, through a real Mosquitto, into ``edgeinfer collect`` storing in SQLite and in a real
PostgreSQL, across each fault of ``tests/uplink/uplink_faults.py``:

- the broker SIGKILLed while the collector is away (Mosquitto's default 1800 s autosave: what it
  acknowledged since its last save is gone), restarted; the collector back later;
- the broker SIGKILLed and restarted with its persistence file deleted (the collector away);
- the node SIGKILLed and started again on its outbox;
- the collector SIGKILLed and started again.

Each fault also runs once with ``ack="broker"`` (the outbox emptied on the broker's PUBACK, the
contract before end-to-end acknowledgement), to show what the fault costs without it.

    .venv/bin/python benchmarks/uplink_soak.py [--messages 1000] [--rate 50] [--ack-timeout 2]
        [--json out.json]

Needs ``/usr/sbin/mosquitto`` and the PostgreSQL server binaries (Debian ``postgresql``); as
root the cluster runs as the ``postgres`` user. Exit status 1 when a run with end-to-end
acknowledgement misses or duplicates a message.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "uplink"))
from pg_cluster import PgCluster  # noqa: E402
from uplink_faults import SCENARIOS, postgres_store, run, sqlite_store  # noqa: E402


def main() -> int:
    """Every fault x store with end-to-end acknowledgement, then the broker-ack baseline."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--ack-timeout", type=float, default=2.0,
                    help="the node's resend timeout (seconds; the default config says 30)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    cluster = PgCluster(fsync=True).start()
    os.environ.update(cluster.env())
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="edgeinfer-soak-") as tmp:
            work = Path(tmp)
            plan = [(s, kind, "collector") for s in SCENARIOS for kind in ("sqlite", "postgres")]
            plan += [(s, "sqlite", "broker") for s in SCENARIOS]
            for k, (scenario, kind, ack) in enumerate(plan):
                store = (sqlite_store(work / f"c{k}.sqlite") if kind == "sqlite"
                         else postgres_store(cluster, f"soak{k}"))
                got = run(scenario, store, work / f"run{k}", total=args.messages, rate=args.rate,
                          ack_timeout=args.ack_timeout, ack=ack)
                got["ack"] = ack
                rows.append(got)
                print(f"{scenario:<31} {kind:<8} ack={ack:<9} stored {got['stored']:>5}/"
                      f"{got['messages']}  missing {got['missing']:>4}  duplicated "
                      f"{got['duplicated']}  late {got['out_of_order']:>4}  resent "
                      f"{got['resent']:>5}  {got['seconds']:>5.1f} s", flush=True)
    finally:
        cluster.stop()
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    failed = [r for r in rows if r["ack"] == "collector"
              and (r["missing"] or r["duplicated"] or not r["in_order_per_stream"])]
    for r in failed:
        print(f"FAIL {r}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
