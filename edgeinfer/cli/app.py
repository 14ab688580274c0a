"""The Typer application every verb module registers on, and the global options."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="edgeinfer: take a vision model from import to the edge device.",
)
zoo_app = typer.Typer(no_args_is_help=True, help="Pretrained models carried by PyPI packages.")
app.add_typer(zoo_app, name="zoo")
train_app = typer.Typer(
    no_args_is_help=True,
    help="Train on your own data: anomaly models from good images, detectors from labels.",
)
app.add_typer(train_app, name="train")

#: process-wide CLI state set by the global options
state = {"debug": False}


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False,
) -> None:
    state["debug"] = debug
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
