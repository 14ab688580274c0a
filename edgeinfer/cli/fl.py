"""``edgeinfer fl server|client``: run a federation with Flower's deployment engine.

Imports nothing heavy at module level (no flwr, no torch): the processes it starts do that.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from edgeinfer.cli.app import app

fl_app = typer.Typer(no_args_is_help=True,
                     help="Federated learning with Flower: data never leaves the site.")
app.add_typer(fl_app, name="fl")
console = Console()


@fl_app.command("server")
def server(
    rounds: Annotated[int, typer.Option(help="Federated rounds.")] = 8,
    strategy: Annotated[str, typer.Option(help="fedavg | fedprox | fedadam.")] = "fedavg",
    sites: Annotated[int, typer.Option(help="Sites expected before round 1.")] = 3,
    quorum: Annotated[int, typer.Option(help="Replies that close a round.")] = 2,
    round_timeout: Annotated[float, typer.Option(help="Round deadline, seconds.")] = 60.0,
    join_timeout: Annotated[float, typer.Option(help="Wait this long for the sites.")] = 120.0,
    server_lr: Annotated[float, typer.Option(help="FedAdam's server learning rate.")] = 0.01,
    compress: Annotated[bool, typer.Option("--compress/--no-compress",
                                           help="Sites send int8 deltas.")] = False,
    fleet: Annotated[str, typer.Option(help="HOST:PORT where sites connect.")] = "127.0.0.1:9092",
    local_sites: Annotated[int, typer.Option(
        help="Also start this many sites here (one-machine demo).")] = 0,
    out: Annotated[Path, typer.Option("-o", "--out", help="Run directory.")] = Path("fl-out"),
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 1800.0,
) -> None:
    """Start a SuperLink, submit the Flower App with `flwr run`, wait for R rounds, write the
    aggregated model as a new INT8 artifact version under OUT/artifacts."""
    from edgeinfer.collab.fl.deploy import Federation, LinkAddresses
    from edgeinfer.collab.fl.strategy import STRATEGIES
    from edgeinfer.errors import EdgeInferError

    if strategy not in STRATEGIES:
        raise EdgeInferError(f"unknown --strategy '{strategy}': use one of {', '.join(STRATEGIES)}")
    if not 1 <= quorum <= sites or rounds < 1:
        raise EdgeInferError(f"--quorum {quorum} must be 1..--sites ({sites}) and --rounds >= 1")
    out = out.resolve()
    config: dict[str, Any] = {
        "num-server-rounds": rounds, "strategy": strategy, "quorum": quorum,
        "round-timeout": round_timeout, "join-timeout": join_timeout, "compress": compress,
        "server-lr": server_lr,
        "out-dir": str(out / "run"), "artifact-dir": str(out / "artifacts"),
    }
    fed_ = Federation(out, sites=local_sites, expected=sites, addrs=LinkAddresses.free(fleet))
    with fed_ as fed:
        console.print(f"SuperLink Fleet API on {fed.addrs.fleet}; sites join with "
                      f"`edgeinfer fl client --server {fed.addrs.fleet} --site K`")
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task(f"{strategy}: waiting for {sites} sites", total=rounds)

            def on_progress(p: dict[str, Any]) -> None:
                last = p["history"][-1]
                bar.update(task, completed=last["round"],
                           description=f"{strategy}: round {last['round']}/{rounds}, "
                                       f"accuracy {last['accuracy']:.3f}")

            result = fed.run(config, timeout=timeout, on_progress=on_progress)
    _print_result(result)


def _print_result(result: dict[str, Any]) -> None:
    table = Table("round", "replies", "failures", "down bytes", "up bytes", "accuracy")
    acc = {h["round"]: h["accuracy"] for h in result["history"]}
    for e in result["ledger"]:
        table.add_row(str(e["round"]), str(e["replies"]), str(e["failures"]),
                      str(e["down_bytes"]), str(e["up_bytes"]), f"{acc.get(e['round'], 0):.3f}")
    console.print(table)
    art = result.get("artifact")
    if art:
        int8 = art["accuracy_int8"]
        console.print(f"artifact v{art['version']} (round {art['round']}, {art['precision']}) at "
                      f"{art['path']}: accuracy fp32 {art['accuracy_fp32']:.3f}, int8 "
                      f"{'-' if int8 is None else f'{int8:.3f}'}"
                      + "".join(f"; {p}" for p in art["optimize_problems"]))


@fl_app.command("client")
def client(
    server_address: Annotated[str, typer.Option("--server", help="SuperLink Fleet HOST:PORT.")],
    site: Annotated[int, typer.Option(help="This site's id (0..2): picks its local data.")],
    workdir: Annotated[Path | None, typer.Option(help="Logs and Flower state.")] = None,
) -> None:
    """Join a federation as one site: a Flower SuperNode that trains on this site's data and
    sends weights only. Fails within seconds when the server cannot be reached."""
    from edgeinfer.collab.fl.data import NUM_SITES
    from edgeinfer.collab.fl.deploy import check_grpc, start_supernode, stop
    from edgeinfer.errors import EdgeInferError

    if not 0 <= site < NUM_SITES:
        raise EdgeInferError(f"--site {site} does not exist: give 0..{NUM_SITES - 1}")
    check_grpc(server_address)
    work = workdir or Path(tempfile.mkdtemp(prefix=f"edgeinfer-fl-site{site}-"))
    log = work / f"site{site}.log"
    proc = start_supernode(server_address, site, work / "flwr-home", log)
    console.print(f"site {site} joined {server_address} (log: {log}); Ctrl-C to leave")
    try:
        code = proc.wait()
    finally:
        stop(proc)
    if code not in (0, None):
        raise EdgeInferError(f"the site's SuperNode exited with code {code}: see {log}")
    console.print(f"site {site} left: the server finished or went away (see {log})")
