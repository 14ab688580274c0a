"""Reference pages generated from the code at build time (a mkdocs hook; mkdocs.yml `hooks:`).

A page asks for a generated part with a marker line, e.g. ``<!-- generated: manifest-schema -->``;
:func:`on_page_markdown` replaces it with Markdown rendered from the code itself:

- ``manifest-schema``: the artifact manifest, from ``Manifest.model_json_schema()`` (pydantic);
- ``http-api``: the edge node's HTTP API, from the OpenAPI document of ``create_app`` (a node
  over a one-model repository, so the split-computing routes it mounts are included);
- ``streams-yaml``: the keys of the streams config, from the dataclasses that validate it;
- ``errors``: every ``EdgeInferError`` subclass in the package, found in the source (AST).

Field meanings that the code does not carry yet live in the maps below; a field the code has and
the map lacks fails the build with the name to describe, so the reference cannot fall behind.
The module imports no mkdocs: ``tests/test_docs.py`` calls the renderers directly.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import tempfile
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _document_this_checkout() -> None:
    """Put this checkout first on sys.path, so the references describe its code and not some
    installed copy (mkdocs restores sys.path after loading a hook: done again in on_config)."""
    if sys.path[:1] != [str(ROOT)]:
        sys.path.insert(0, str(ROOT))


_document_this_checkout()

MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)


class DocsError(Exception):
    """A generated page cannot be rendered truthfully (say what to fix)."""


# ------------------------------------------------------------------------------ manifest

#: meanings of manifest fields, keyed "Model.field"; a field's own schema description wins
MANIFEST_NOTES = {
    "Manifest.version": "Manifest format version; this edgeinfer reads 1 only.",
    "Manifest.name": "Model name (shown in reports, the node's model list, uplink messages).",
    "Manifest.task": "What the model does; selects how results are scored and drawn.",
    "Manifest.model": "The primary model file (see ModelFile).",
    "Manifest.inputs": "Every input with a static shape (dynamic dimensions fixed).",
    "Manifest.outputs": "Output names, in the model's order.",
    "Manifest.preprocess": "How an image becomes the input tensor (see Preprocess).",
    "Manifest.labels_file": "Class names, one per line, a file inside the artifact.",
    "Manifest.decoder": "Decoder of the raw outputs: classification, yolo, blazeface, db, ...",
    "Manifest.decoder_params": "The decoder's parameters (thresholds, anchors, class count).",
    "Manifest.source": "Where the model came from (see SourceInfo).",
    "Manifest.tools": "Versions of edgeinfer and the runtimes that wrote the artifact.",
    "Manifest.runtime": "Backend and options chosen by `tune`; Engine uses them by default.",
    "Manifest.reports": "Measured reports by verb: `optimize`, `convert`, `tune`, ...",
    "InputSpec.name": "Input tensor name.",
    "InputSpec.shape": "Static shape, e.g. [1, 3, 224, 224].",
    "InputSpec.dtype": "Element type (numpy name).",
    "InputSpec.layout": "Memory layout of an image input.",
    "ModelFile.path": "File name inside the artifact directory.",
    "ModelFile.format": "Model format, decides which backends can run it.",
    "ModelFile.precision": "Numeric precision of the weights and arithmetic.",
    "ModelFile.sha256": "SHA-256 of the file; the node refuses an entry whose file differs.",
    "ModelFile.bytes": "File size in bytes.",
    "ModelFile.companions": "Files the model needs beside it (OpenVINO's .bin).",
    "Preprocess.resize": "How the image is brought to the input size.",
    "Preprocess.interpolation": "OpenCV interpolation used by the resize.",
    "Preprocess.channel_order": "Channel order the model expects.",
    "Preprocess.scale": "Pixel values are multiplied by this first (1/255 for 0..1 inputs).",
    "Preprocess.mean": "Per-channel mean subtracted after scaling.",
    "Preprocess.std": "Per-channel divisor applied after the mean.",
    "Preprocess.pad_value": "Grey level of the letterbox padding.",
    "SourceInfo.name": "Source model name (zoo name, file name or module).",
    "SourceInfo.sha256": "SHA-256 of the parent model file (derived artifacts).",
    "SourceInfo.license": "Licence of the weights, where known.",
    "SourceInfo.origin": "How this artifact was made from its parent (optimize, convert, ...).",
    "RuntimeConfig.backend": "Backend name: ort, litert, openvino.",
    "RuntimeConfig.threads": "Intra-op threads (0: the backend's default).",
    "RuntimeConfig.device": "cpu, gpu (accelerator providers/plugins) or auto.",
    "RuntimeConfig.hint": "OpenVINO performance hint.",
    "RuntimeConfig.streams": "OpenVINO streams (0: from the hint).",
    "RuntimeConfig.compute_precision": "OpenVINO inference precision (bf16/f16 need CPU units).",
    "RuntimeConfig.spinning": "ONNX Runtime worker spinning: run, always or never.",
    "RuntimeConfig.chosen_by": "What picked this configuration.",
}


def _schema_type(prop: dict[str, Any]) -> str:
    """A JSON-schema property as a short readable type."""
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if "anyOf" in prop:
        return " or ".join(_schema_type(p) for p in prop["anyOf"])
    kind = prop.get("type")
    if kind == "array":
        if "prefixItems" in prop:
            return "[" + ", ".join(_schema_type(p) for p in prop["prefixItems"]) + "]"
        return f"list of {_schema_type(prop.get('items', {}))}"
    if kind == "object":
        extra = prop.get("additionalProperties")
        return "object" if not isinstance(extra, dict) else f"object of {_schema_type(extra)}"
    return {"string": "string", "integer": "integer", "number": "number",
            "boolean": "boolean", "null": "null"}.get(kind, "any")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _schema_table(title: str, schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", ()))
    out = [f"### {title}", "", _cell(schema.get("description", "")), "",
           "| field | type | required | default | meaning |", "|---|---|---|---|---|"]
    for name, prop in schema.get("properties", {}).items():
        note = prop.get("description") or MANIFEST_NOTES.get(f"{title}.{name}")
        if not note:
            raise DocsError(f"describe manifest field {title}.{name} in docs/hooks/generated.py "
                            "MANIFEST_NOTES (or give the field a description)")
        if name in required:
            default = ""
        elif "default" in prop:
            default = f"`{json.dumps(prop['default'])}`"
        else:  # a default_factory: an empty container
            default = "`{}`" if prop.get("type") == "object" else "`[]`"
        out.append(f"| `{name}` | {_schema_type(prop)} | {'yes' if name in required else ''} "
                   f"| {default} | {_cell(note)} |")
    return [*out, ""]


def render_manifest_schema() -> str:
    """The manifest's models as tables, from the pydantic JSON schema."""
    from edgeinfer.artifact import MANIFEST_NAME, Manifest

    schema = Manifest.model_json_schema()
    defs = schema.pop("$defs", {})
    lines = [f"The manifest is `{MANIFEST_NAME}`, generated from `edgeinfer.artifact.Manifest` "
             "(unknown fields are refused).", ""]
    lines += _schema_table("Manifest", schema)
    for name in sorted(defs):
        lines += _schema_table(name, defs[name])
    lines += ["??? note \"The JSON schema itself\"", "", "    ```json"]
    full = Manifest.model_json_schema()
    lines += ["    " + line for line in json.dumps(full, indent=2).splitlines()]
    lines += ["    ```", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ HTTP API


def node_openapi() -> dict[str, Any]:
    """The OpenAPI document of a node serving one packaged model (nothing is loaded)."""
    from edgeinfer import zoo
    from edgeinfer.serve.app import create_app
    from edgeinfer.serve.config import NodeConfig

    with tempfile.TemporaryDirectory(prefix="edgeinfer-docs-") as repo:
        zoo.get("defect-detector", Path(repo) / "defect-detector")
        config = NodeConfig(repository=Path(repo), allow_anonymous=True, load_on_start=False)
        return create_app(config).openapi()


#: what a status means on this API, where the document says only "error"
STATUS_NOTES = {
    "200": "the answer",
    "400": "bad body, bad model name, undecodable image or one whose header declares over "
           "50 MP (refused before decoding)",
    "401": "no or wrong bearer token",
    "404": "unknown model or stream",
    "413": "body over the node's body limit",
    "415": "unsupported content type",
    "422": "bad query, header or path value",
    "429": "the model's queue is full (`Retry-After: 1`)",
    "503": "node not ready or shutting down, model not loaded, or deadline cannot be met",
}
#: what a parameter means, where the document does not say
PARAM_NOTES = {
    "name": "model name (stream name for `/v1/streams`)",
    "priority": "scheduler priority, higher first (default 0)",
    "deadline_ms": "answer within this many ms, else 503 (admission) or skipped",
    "x-priority": "as `priority`, from a header",
    "x-deadline-ms": "as `deadline_ms`, from a header",
}
_GENERIC = {"error", "Successful Response", "Validation Error"}


def _param_rows(op: dict[str, Any]) -> list[str]:
    rows = []
    for p in op.get("parameters", ()):
        kind = _schema_type(p.get("schema", {}))
        note = p.get("description") or PARAM_NOTES.get(p["name"].lower(), "")
        rows.append(f"| `{p['name']}` | {p['in']} | {kind} | "
                    f"{'yes' if p.get('required') else ''} | {_cell(note)} |")
    if not rows:
        return []
    return ["| parameter | in | type | required | meaning |", "|---|---|---|---|---|", *rows, ""]


def _operation(method: str, path: str, op: dict[str, Any]) -> list[str]:
    out = [f"### `{method.upper()} {path}`", ""]
    if op.get("description") or op.get("summary"):
        out += [op.get("description") or op["summary"], ""]
    out += _param_rows(op)
    body = op.get("requestBody")
    if body:
        types = ", ".join(f"`{t}`" for t in body.get("content", {}))
        out += [f"Request body: {types}" + (f". {body['description']}" if body.get(
            "description") else "."), ""]
    out += ["| status | meaning |", "|---|---|"]
    for status, answer in sorted(op.get("responses", {}).items()):
        text = answer.get("description", "")
        if text in _GENERIC:
            text = STATUS_NOTES.get(status, text)
        out.append(f"| {status} | {_cell(text)} |")
    return [*out, ""]


def render_http_api(spec: dict[str, Any] | None = None) -> str:
    """Every path and method of the node's OpenAPI document, as Markdown tables."""
    spec = spec or node_openapi()
    info = spec.get("info", {})
    lines = [f"Generated from the OpenAPI document ({info.get('title', '')}, version "
             f"{info.get('version', '')}, OpenAPI {spec.get('openapi', '')}) that the node also "
             "serves at `GET /openapi.json`.", ""]
    groups: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, ops in spec.get("paths", {}).items():
        group = "Split computing (`/v1/offload`)" if path.startswith("/v1/offload") else (
            "Models and inference" if path.startswith("/v1/models") else "Node")
        for method, op in ops.items():
            groups.setdefault(group, []).append((method, path, op))
    for group in ("Node", "Models and inference", "Split computing (`/v1/offload`)"):
        if group in groups:
            lines += [f"## {group}", ""]
            for method, path, op in groups[group]:
                lines += _operation(method, path, op)
    return "\n".join(lines)


# ------------------------------------------------------------------------------ streams YAML

#: meanings of the streams config keys, keyed "section.key"
STREAMS_NOTES = {
    "stream.name": "Unique stream name (tables, metrics, sinks, uplink topics).",
    "stream.source": "File, folder of images, camera index (`0`) or rtsp:// / http(s):// URL; "
                     "relative paths are taken from the config's folder.",
    "stream.model": "A name defined under `models:`.",
    "stream.priority": "Scheduler priority (higher runs first; waiting raises it by aging).",
    "stream.deadline_ms": "Frames that cannot finish within this are rejected or skipped "
                          "(counted as drops).",
    "stream.live": "Pace a file at its fps through the drop-oldest queue, as a camera does.",
    "stream.fps": "With `live`: frames per second (default: the video's own).",
    "stream.queue": "Frames waiting at most; the oldest is dropped when full.",
    "stream.loop": "Replay a file forever.",
    "stream.idle": "Idle mode (keys below): fewer frames while nothing is detected.",
    "stream.sink": "Where results go: `.jsonl`, `.mp4`/`.avi`, or a folder of annotated images.",
    "stream.reconnect": "Reconnect policy of a camera or URL (keys below).",
    "idle.after_s": "Seconds without a detection before the stream goes idle.",
    "idle.idle_fps": "Frames per second run while idle.",
    "idle.full_fps": "Frames per second run while active.",
    "idle.motion": "Motion gate: while idle, skip the model on frames whose 64x36 grey "
                   "thumbnail moved less than this many grey levels (None: off).",
    "reconnect.initial_s": "First wait after a failure, seconds.",
    "reconnect.max_backoff_s": "Longest wait between attempts, seconds.",
    "reconnect.factor": "Each consecutive failure multiplies the wait by this.",
    "reconnect.max_retries": "Consecutive failures before the stream gives up (null: never).",
    "reconnect.open_timeout_s": "Longest wait for a network stream to open.",
    "reconnect.read_timeout_s": "Longest wait for one frame of a network stream.",
    "scheduler.workers": "Worker threads (0: one worker).",
    "scheduler.threads": "Intra-op threads per engine (0: cores / workers).",
    "scheduler.queue_size": "Queued requests per model.",
    "scheduler.spinning": "ONNX Runtime worker spinning: `run`, `always` or `never` (never: "
                          "for cores shared with other work).",
    "scheduler.preempt": "A higher-priority frame aborts a lower-priority run in progress "
                         "(ONNX Runtime, OpenVINO), which runs again later.",
}


def _dataclass_rows(section: str, cls: type, skip: tuple[str, ...] = ()) -> list[str]:
    out = ["| key | default | meaning |", "|---|---|---|"]
    for f in fields(cls):
        if f.name in skip:
            continue
        note = STREAMS_NOTES.get(f"{section}.{f.name}")
        if not note:
            raise DocsError(f"describe streams key {section}.{f.name} in docs/hooks/generated.py "
                            "STREAMS_NOTES")
        if f.default is not MISSING:
            default = f"`{json.dumps(f.default)}`"
        elif f.default_factory is not MISSING:
            default = "`{}`"
        else:
            default = "required"
        out.append(f"| `{f.name}` | {default} | {_cell(note)} |")
    return [*out, ""]


def render_streams_yaml() -> str:
    """The keys of every section of the streams config, from the validating dataclasses."""
    from edgeinfer.pipeline import streams_config as sc
    from edgeinfer.pipeline.sources import ReconnectPolicy
    from edgeinfer.runtime.backends import BackendOptions
    from edgeinfer.runtime.scheduler import SchedulerConfig

    sched_defaults = {f.name: f.default for f in fields(SchedulerConfig)}
    sched_defaults["spinning"] = BackendOptions().spinning
    lines = ["Top-level keys: " + ", ".join(f"`{k}`" for k in sorted(sc._TOP_KEYS)) +
             " (`models`: name -> zoo name, artifact directory or model file).", "",
             "### `streams[]`", "", *_dataclass_rows("stream", sc.StreamSpec),
             "### `streams[].idle`", "", *_dataclass_rows("idle", sc.IdleSpec),
             "### `streams[].reconnect`", "", *_dataclass_rows("reconnect", ReconnectPolicy),
             "### `scheduler`", "", "| key | default | meaning |", "|---|---|---|"]
    for key in sorted(sc._SCHEDULER_KEYS):
        note = STREAMS_NOTES.get(f"scheduler.{key}")
        if not note or key not in sched_defaults:
            raise DocsError(f"describe streams key scheduler.{key} in docs/hooks/generated.py")
        lines.append(f"| `{key}` | `{json.dumps(sched_defaults[key])}` | {_cell(note)} |")
    return "\n".join([*lines, ""])


# ------------------------------------------------------------------------------ errors


def error_classes(package: Path | None = None) -> list[tuple[str, str, str, str]]:
    """(class, base, module, docstring) of every EdgeInferError subclass in the package source,
    parents before children."""
    package = package or ROOT / "edgeinfer"
    found: dict[str, tuple[str, str, str]] = {}
    for path in sorted(package.rglob("*.py")):
        module = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.bases:
                base = node.bases[0]
                name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
                found[node.name] = (name, module.removesuffix(".__init__"),
                                    ast.get_docstring(node) or "")
    tree: list[tuple[str, str, str, str]] = []

    def add(parent: str) -> None:
        for cls, (base, module, doc) in sorted(found.items()):
            if base == parent:
                tree.append((cls, base, module, doc))
                add(cls)

    add("EdgeInferError")
    return [("EdgeInferError", "Exception", "edgeinfer.errors",
             found.get("EdgeInferError", ("", "", ""))[2]), *tree]


def render_errors() -> str:
    """The exception tree as a nested list and a table."""
    classes = error_classes()
    depth = {"EdgeInferError": 0}
    lines = []
    for cls, base, _module, _doc in classes:
        depth[cls] = depth.get(base, -1) + 1
        lines.append("    " * depth[cls] + f"- `{cls}`")
    lines += ["", "| exception | defined in | derives from | what it means |", "|---|---|---|---|"]
    for cls, base, module, doc in classes:
        first = doc.split("\n\n")[0]
        lines.append(f"| `{cls}` | `{module}` | `{base}` | {_cell(first)} |")
    return "\n".join([*lines, ""])


# ------------------------------------------------------------------------------ the hook

RENDERERS = {
    "manifest-schema": render_manifest_schema,
    "http-api": render_http_api,
    "streams-yaml": render_streams_yaml,
    "errors": render_errors,
}


def render_markers(markdown: str) -> str:
    """Replace every marker line with its generated Markdown; unknown markers are errors."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in RENDERERS:
            raise DocsError(f"unknown generated part '{name}': use one of {sorted(RENDERERS)}")
        return RENDERERS[name]()

    return MARKER.sub(replace, markdown)


def on_config(config: Any) -> Any:
    """mkdocs event: import edgeinfer from this checkout, and say so if another copy is loaded."""
    _document_this_checkout()
    import edgeinfer

    where = Path(edgeinfer.__file__).resolve().parent
    if where != ROOT / "edgeinfer":
        raise DocsError(f"the docs would describe {where}, not {ROOT / 'edgeinfer'}: build from "
                        "a fresh process, or install this checkout (pip install -e .)")
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """mkdocs event: fill the generated parts of a page."""
    return render_markers(markdown)


#: a Sphinx role left in a docstring, as Markdown renders it: :class:<code>~a.b.C</code>
_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):<code>(~?)([^<]+)</code>")


def _role(match: re.Match[str]) -> str:
    name = match.group(2).rsplit(".", 1)[-1] if match.group(1) else match.group(2)
    return f"<code>{name}</code>"


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    """mkdocs event: docstrings' Sphinx roles (``:class:`~a.B```) read as code (``B``); the CLI
    reference shows click's help text, where Typer escaped ``[`` for rich (``\\[default: 2]``):
    show it as the terminal does."""
    html = _ROLE.sub(_role, html)
    if page.file.src_uri == "reference/cli.md":
        html = html.replace("\\[", "[")
    return html
