"""The edge node's verbs: ``serve``, ``collect`` and ``uplink-send``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edgeinfer.cli.app import app
from edgeinfer.cli.common import (
    AnonymousOption,
    MaxBodyOption,
    MemoryBudgetOption,
    PasswordFileOption,
    TokenFileOption,
    TokenOption,
    console,
    err_console,
    warn_secret_on_command_line,
)
from edgeinfer.cli.progress import progress_bars

#: where the node side (serve, uplink-send) and the cloud side (collect) read the MQTT password
UPLINK_PASSWORD_ENV = "EDGEINFER_UPLINK_PASSWORD"
COLLECT_PASSWORD_ENV = "EDGEINFER_COLLECT_PASSWORD"


@app.command()
def serve(
    repository: Annotated[Path, typer.Argument(help="Model repository: a directory of artifacts.")],
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8080,
    token: TokenOption = None,
    token_file: TokenFileOption = None,
    allow_anonymous: AnonymousOption = False,
    streams: Annotated[
        Path | None, typer.Option(help="YAML file of camera streams to run.")
    ] = None,
    max_body_mb: MaxBodyOption = 16.0,
    max_upload_mb: Annotated[
        float | None, typer.Option(hidden=True, help="Deprecated name of --max-body-mb.")
    ] = None,
    queue_size: Annotated[
        int | None,
        typer.Option(help="Queued requests per model, then 429 (default: the streams file's, "
                          "else 64)."),
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Scheduler workers (0: the streams file's, else automatic).")
    ] = 0,
    memory_budget_mb: MemoryBudgetOption = None,
    body_timeout_s: Annotated[float, typer.Option(
        help="A request body not received within this many seconds gets 408.")] = 30.0,
    node_name: Annotated[str, typer.Option(help="This node's name.")] = "edge-node",
    spinning: Annotated[
        str | None,
        typer.Option(help="ONNX Runtime workers: run (spin inside runs), always, or never "
                          "(for cores shared with other work); default: the streams file's, "
                          "else run."),
    ] = None,
    uplink_host: Annotated[
        str | None, typer.Option(help="MQTT broker for stream results.")
    ] = None,
    uplink_port: Annotated[int, typer.Option(help="MQTT broker port.")] = 1883,
    site: Annotated[str, typer.Option(help="Site name in the uplink topics.")] = "site",
    uplink_encoding: Annotated[str, typer.Option(help="Uplink payloads: json or cbor.")] = "json",
    uplink_tls: Annotated[bool, typer.Option("--uplink-tls", help="MQTT over TLS.")] = False,
    uplink_ca: Annotated[
        str | None, typer.Option(help="CA bundle for --uplink-tls (default: the system's).")
    ] = None,
    uplink_username: Annotated[
        str | None, typer.Option(help=f"MQTT user (password: ${UPLINK_PASSWORD_ENV} or "
                                      "--uplink-password-file).")
    ] = None,
    uplink_password_file: Annotated[Path | None, typer.Option(
        "--uplink-password-file", help="File holding the MQTT password.")] = None,
) -> None:
    """Serve a model repository over HTTP: models, inference, metrics and a dashboard."""
    from edgeinfer.serve.config import NodeConfig, UplinkSettings, read_secret
    from edgeinfer.serve.server import run_server

    uplink = UplinkSettings(
        uplink_host, uplink_port, site, encoding=uplink_encoding, tls=uplink_tls,
        ca_certs=uplink_ca, username=uplink_username,
        password=read_secret("MQTT password", None, uplink_password_file, UPLINK_PASSWORD_ENV),
    ) if uplink_host else None
    config = NodeConfig(
        repository=repository, host=host, port=port, token=token, token_file=token_file,
        allow_anonymous=allow_anonymous, streams=streams,
        max_body_bytes=int((max_upload_mb or max_body_mb) * 2**20), queue_size=queue_size,
        workers=workers, body_timeout_s=body_timeout_s,
        memory_budget_bytes=memory_budget_mb and int(memory_budget_mb * 2**20),
        node_name=node_name, uplink=uplink, spinning=spinning,
    )

    def announce(line: str) -> None:  # once the configuration has passed every check
        warn_secret_on_command_line("--token", token, "--token-file or $EDGEINFER_TOKEN")
        console.print(line)

    run_server(config, announce)


@app.command()
def collect(
    host: Annotated[str, typer.Option(help="MQTT broker host.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="MQTT broker port.")] = 1883,
    db: Annotated[Path | None, typer.Option(help="SQLite file to store into.")] = None,
    url: Annotated[
        str | None, typer.Option(help="postgresql://user:pass@host/db instead of --db.")
    ] = None,
    client_id: Annotated[str, typer.Option(help="MQTT client id (keeps the session).")] = (
        "edgeinfer-collect"
    ),
    username: Annotated[str | None, typer.Option(help="MQTT username.")] = None,
    password: Annotated[str | None, typer.Option(help=(
        f"MQTT password (visible in `ps`: prefer --password-file or ${COLLECT_PASSWORD_ENV})."
    ))] = None,
    password_file: PasswordFileOption = None,
    tls: Annotated[bool, typer.Option("--tls", help="Connect with TLS.")] = False,
    ca_certs: Annotated[str | None, typer.Option(help="CA bundle (PEM) for --tls.")] = None,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: Ctrl-C).")
    ] = None,
) -> None:
    """Subscribe to every node's results, features and presence and store each message once."""
    from edgeinfer.serve.collect import CollectConfig, Collector, open_store
    from edgeinfer.serve.config import read_secret

    secret = read_secret("MQTT password", password, password_file, COLLECT_PASSWORD_ENV)
    cfg = CollectConfig(host=host, port=port, client_id=client_id, username=username,
                        password=secret, tls=tls, ca_certs=ca_certs)
    store = open_store(db, url)
    warn_secret_on_command_line("--password", password,
                                f"--password-file or ${COLLECT_PASSWORD_ENV}")
    collector = Collector(cfg, store)
    counts = _watch_collector(collector, duration)
    gaps = collector.gaps()
    console.print(f"stored {counts['stored']}, dropped {counts['duplicates']} duplicates, "
                  f"rejected {counts['rejected']}, {counts['acks_sent']} acknowledged to nodes, "
                  f"{sum(len(r) for r in gaps.values())} gaps open")
    for (site, node, stream), ranges in sorted(gaps.items()):
        shown = ", ".join(f"{lo}-{hi}" for lo, hi in ranges[:5])
        console.print(f"  {site}/{node}/{stream}: missing seq {shown}"
                      + (" ..." if len(ranges) > 5 else ""))


def _watch_collector(collector: Any, duration: float | None) -> dict[str, int]:
    """Run ``collector`` until Ctrl-C (or ``duration`` s) with a live line of its counts on
    stderr; its final counters."""
    import time

    from rich.live import Live

    end = None if duration is None else time.monotonic() + duration
    cfg = collector.config

    def line() -> str:
        c = collector.counts
        state = "connected" if collector.connected.is_set() else "connecting"
        gaps = sum(len(r) for r in collector.gaps().values())
        return (f"collect {cfg.host}:{cfg.port} ({state}): {c['stored']} stored, "
                f"{c['duplicates']} duplicates dropped, {c['rejected']} rejected, "
                f"{c['presence_changes']} presence changes, {gaps} gaps open")

    collector.start()
    try:
        with Live(line(), console=err_console, refresh_per_second=4, transient=False) as live:
            while end is None or time.monotonic() < end:
                time.sleep(0.25)
                live.update(line())
    except KeyboardInterrupt:
        pass
    finally:
        counts = collector.stop()
    return counts


@app.command("uplink-send")
def uplink_send(
    host: Annotated[str, typer.Option(help="MQTT broker host.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="MQTT broker port.")] = 1883,
    site: Annotated[str, typer.Option(help="Site name in the topics.")] = "site1",
    node: Annotated[str, typer.Option(help="Node name in the topics.")] = "node1",
    stream: Annotated[str, typer.Option(help="Stream name in the topics.")] = "test",
    count: Annotated[int, typer.Option(help="Messages to send.")] = 10,
    outbox: Annotated[Path, typer.Option(help="Outbox file.")] = Path("outbox.sqlite"),
    encoding: Annotated[str, typer.Option(help="json | cbor")] = "json",
    username: Annotated[str | None, typer.Option(help="MQTT username.")] = None,
    password: Annotated[str | None, typer.Option(help=(
        f"MQTT password (visible in `ps`: prefer --password-file or ${UPLINK_PASSWORD_ENV})."
    ))] = None,
    password_file: PasswordFileOption = None,
    tls: Annotated[bool, typer.Option("--tls", help="Connect with TLS.")] = False,
    ca_certs: Annotated[str | None, typer.Option(help="CA bundle (PEM) for --tls.")] = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for acknowledgements.")] = 10.0,
) -> None:
    """Send COUNT synthetic results through the uplink (a quick check of broker and outbox)."""
    from edgeinfer.serve.config import read_secret
    from edgeinfer.serve.uplink import UplinkConfig, send_test_messages

    secret = read_secret("MQTT password", password, password_file, UPLINK_PASSWORD_ENV)
    cfg = UplinkConfig(host=host, port=port, site=site, node=node, outbox=str(outbox),
                       encoding=encoding, username=username, password=secret, tls=tls,
                       ca_certs=ca_certs)
    warn_secret_on_command_line("--password", password,
                                f"--password-file or ${UPLINK_PASSWORD_ENV}")
    with progress_bars() as on_step:
        stats = send_test_messages(cfg, stream, count, wait, on_step)
    console.print(f"acknowledged {stats['messages_sent']}, {stats['bytes_sent']} bytes sent, "
                  f"{stats['backlog']} left in the outbox {outbox}")
    if stats["backlog"]:
        raise typer.Exit(1)
