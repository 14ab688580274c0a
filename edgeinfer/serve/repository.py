"""The model repository: a directory whose entries are artifact directories or bare .onnx files.

Each entry is validated on its own (manifest, model file present, model file's SHA-256 equal
to the manifest's): a corrupt entry is listed with state ``failed`` and its one-line reason,
and never stops the others. Model names come from the file system but are also accepted from
URLs, so every name is checked against ``[A-Za-z0-9._-]`` (no leading dot) and every path is
resolved and required to stay inside the repository: no traversal through ``..``, absolute
paths or symlinks pointing out.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from edgeinfer.artifact import Artifact, file_sha256, load_artifact
from edgeinfer.errors import EdgeInferError
from edgeinfer.loading import load

logger = logging.getLogger(__name__)

__all__ = ["NAME_PATTERN", "RepoEntry", "find_entry", "resolve_inside", "scan", "validate_name"]

#: a model name: letters, digits, dot, underscore, dash; no leading dot; at most 128 characters
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")


class InvalidNameError(EdgeInferError):
    """A model name that is not allowed (it could name a path outside the repository)."""


@dataclass(frozen=True)
class RepoEntry:
    """One repository entry: its name, path, and the artifact or the reason it failed."""

    name: str
    path: Path
    artifact: Artifact | None
    error: str | None = None


def validate_name(name: str) -> str:
    """``name`` if it is a valid model name, else InvalidNameError."""
    if not NAME_PATTERN.match(name):
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise InvalidNameError(
            f"invalid model name {shown!r}: use letters, digits, '.', '_' and '-' only "
            "(no leading dot, at most 128 characters)"
        )
    return name


def resolve_inside(root: Path, name: str) -> Path:
    """The resolved path of ``root/name``, refused unless it stays inside ``root``."""
    validate_name(name)
    root = root.resolve()
    path = (root / name).resolve()
    if path.parent != root:
        raise InvalidNameError(
            f"model name {name!r} resolves outside the repository: remove the link or rename it"
        )
    return path


def _entry_name(path: Path) -> str:
    return path.stem if path.is_file() else path.name


def _load_entry(root: Path, path: Path) -> RepoEntry:
    """Validate one entry; every problem becomes the entry's one-line error."""
    name = _entry_name(path)
    try:
        validate_name(name)
        resolved = resolve_inside(root, path.name)
        if resolved.is_dir():
            artifact = load_artifact(resolved)
            model = artifact.manifest.model
            if file_sha256(artifact.model_path) != model.sha256:
                raise EdgeInferError(
                    f"{resolved.name}: model file '{model.path}' does not match the SHA-256 in "
                    "its manifest (corrupt or replaced): restore it or re-create the artifact"
                )
        else:

            artifact = load(resolved)
        return RepoEntry(name, resolved, artifact)
    except EdgeInferError as exc:  # paths shown relative: the API does not reveal the disk
        line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        for prefix in {str(root.resolve()), str(root)}:
            line = line.replace(prefix + "/", "")
        return RepoEntry(name, path, None, line)
    except Exception as exc:  # a foreign parser error on a corrupt file: still one entry
        return RepoEntry(name, path, None, f"{path.name}: unreadable ({type(exc).__name__}: "
                                           f"{str(exc).splitlines()[0] if str(exc) else ''})")


def _is_candidate(path: Path) -> bool:
    if path.name.startswith("."):
        return False
    return path.is_dir() or path.suffix.lower() == ".onnx"


def scan(root: str | Path) -> dict[str, RepoEntry]:
    """Every entry of the repository by name, valid or failed (sorted by name)."""
    root = Path(root)
    if not root.is_dir():
        raise EdgeInferError(f"{root}: no such model repository directory: check the path")
    entries: dict[str, RepoEntry] = {}
    for path in sorted(root.iterdir()):
        if not _is_candidate(path):
            continue
        entry = _load_entry(root, path)
        if entry.name in entries:
            entry = RepoEntry(entry.name, path, None,
                              f"{path.name}: a second entry named '{entry.name}': rename one")
        if entry.error:
            logger.warning("repository: %s failed: %s", entry.name, entry.error)
        entries[entry.name] = entry
    return entries


def find_entry(root: str | Path, name: str) -> RepoEntry | None:
    """The entry called ``name`` (a directory ``name`` or a file ``name.onnx``), or None."""
    root = Path(root)
    validate_name(name)
    for candidate in (name, f"{name}.onnx"):
        path = resolve_inside(root, candidate)
        if path.exists() and _is_candidate(path):
            return _load_entry(root, path)
    return None
