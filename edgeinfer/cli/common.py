"""What every verb module shares: the console, option parsers, model-name resolution and the
server access options."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from edgeinfer.errors import EdgeInferError
from edgeinfer.loading import resolve
from edgeinfer.model.shapes import parse_input_shapes as parse_input_shapes  # re-exported

console = Console()
#: messages that must not mix with a ``--json`` document on stdout (warnings, live lines)
err_console = Console(stderr=True)

#: ``--json``: one JSON document on stdout and nothing else there (progress goes to stderr)
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout (nothing else there).")
]
#: ``--force``: replace an existing output artifact (refused otherwise)
ForceOption = Annotated[bool, typer.Option("--force", help="Replace OUT if it exists.")]
#: ``-o/--out``: the artifact directory a verb writes
OutOption = Annotated[Path, typer.Option("-o", "--out", help="Artifact directory to write.")]
#: ``--input-shape``: fix dynamic dimensions
InputShapeOption = Annotated[
    list[str] | None,
    typer.Option("--input-shape", help="Fix dynamic dims: NAME=1x3x640x640 (repeatable)."),
]


def print_json(document: object) -> None:
    """Write ``document`` as the one JSON document of a ``--json`` run on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    sys.stdout.flush()


def parse_drop(max_drop: str) -> float:
    """``1%`` or ``0.01`` -> 0.01."""
    text = max_drop.strip().rstrip("%")
    try:
        return float(text) / (100 if max_drop.strip().endswith("%") else 1)
    except ValueError:
        raise EdgeInferError(f"bad --max-drop '{max_drop}': write it like 1% or 0.01") from None


def csv_list(value: str | None, cast: type = str) -> tuple:
    """``"a,b"`` -> ``("a", "b")`` (cast each); None or empty -> ()."""
    if not value:
        return ()
    try:
        return tuple(cast(v.strip()) for v in value.split(",") if v.strip())
    except ValueError:
        raise EdgeInferError(f"bad list '{value}': write it comma-separated, like 1,2") from None


def resolve_model(model: str) -> Path:
    """A path as given, or a zoo name built into the user cache directory."""

    return resolve(model)


def quiet_capture_logs() -> None:
    """Keep OpenCV's and FFmpeg's own warnings (connection refused...) off stderr: the
    stream source logs what happens and the CLI reports errors in one line."""
    import os

    import cv2

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


#: the access options every server verb shares (serve, split-node): edgeinfer.serve.auth
TokenOption = Annotated[str | None, typer.Option(
    help="API bearer token callers must send (visible in `ps`: prefer --token-file or "
    "$EDGEINFER_TOKEN).")]
TokenFileOption = Annotated[Path | None, typer.Option(
    "--token-file", help="File holding the API bearer token (default: $EDGEINFER_TOKEN).")]
PasswordFileOption = Annotated[Path | None, typer.Option(
    "--password-file", help="File holding the MQTT password.")]


def warn_secret_on_command_line(option: str, value: str | None, instead: str) -> None:
    """One line on stderr when a secret came as a command-line option (``ps`` shows it)."""
    if value:
        err_console.print(f"warning: {option} is visible to every user of this machine (ps): "
                          f"prefer {instead}", style="yellow", highlight=False, soft_wrap=True)
AnonymousOption = Annotated[
    bool, typer.Option("--allow-anonymous", help="No token; only on a loopback --host.")
]
#: the request-body limit of every server verb (serve, split-node): one name everywhere
MaxBodyOption = Annotated[float, typer.Option("--max-body-mb", help="Largest request body, MiB.")]
#: the models' (and split tails') memory budget of every server verb
MemoryBudgetOption = Annotated[float | None, typer.Option(
    "--memory-budget-mb", help="Loaded models (split tails too) stay under this many MiB, least "
    "recently used unloaded first (default: no limit).")]
