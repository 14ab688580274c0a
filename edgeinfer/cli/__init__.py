"""The ``edgeinfer`` command line: verbs that follow the flow (import, zoo, inspect, optimize,
convert, bench, tune, run, demo, streams, serve, split, fl).

One module per verb family registers its commands on :data:`edgeinfer.cli.app.app`; all terminal
rendering lives on this side. Every user error is one line on stderr naming the thing and the
fix, exit code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import importlib
import sys
import traceback

from edgeinfer.cli.app import app, state
from edgeinfer.errors import EdgeInferError

#: the verb modules, in the order ``edgeinfer --help`` lists their verbs (the flow's order)
VERB_MODULES = ("importing", "model", "compress", "train_anomaly", "measure", "run", "node",
                "split", "fl", "train_detector")
for _name in VERB_MODULES:
    importlib.import_module(f"edgeinfer.cli.{_name}")

__all__ = ["app", "click_command", "main"]


def __getattr__(name: str) -> object:
    """``click_command``: the click command behind the Typer app, built on first access (the
    docs' CLI reference renders it with mkdocs-click)."""
    if name == "click_command":
        import typer.main

        return typer.main.get_command(app)
    raise AttributeError(f"module 'edgeinfer.cli' has no attribute {name!r}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning EdgeInferError into one line and exit code 2."""
    try:
        app(args=argv, prog_name="edgeinfer")
    except SystemExit as exc:  # typer/click exit normally through SystemExit
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except EdgeInferError as exc:
        if state["debug"]:
            traceback.print_exc()
        print(f"edgeinfer: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("edgeinfer: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if state["debug"]:
            traceback.print_exc()
        where = f"{exc.filename}: " if exc.filename else ""
        print(
            f"edgeinfer: error: {where}{exc.strerror or exc}: check the path, permissions and "
            "free disk space",
            file=sys.stderr,
        )
        return 2
    return 0
