"""The docs stay true to the code and to their own rules, without running mkdocs (`make docs`
builds the site strictly): the README's size and set-up commands, every CLI verb in the generated
CLI reference, the generated reference parts, no work-history words, every benchmark page headed
by its machine and CPU flags."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"


def _pages() -> list[Path]:
    """README, every Markdown page of the site, and the examples' READMEs."""
    site = [p for p in DOCS.rglob("*.md") if "hooks" not in p.parts]
    return [README, *sorted(site), *sorted(ROOT.glob("examples/*/README.md"))]


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks" / "generated.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------ README


def test_readme_is_short_and_shows_the_two_setup_commands():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < 200
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "README has no bash block"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert "make demo" in commands and "make test" in commands


def test_readme_figures_name_their_machine():
    text = README.read_text(encoding="utf-8")
    section = text.split("## Headline figures", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"AMD EPYC", section) and re.search(r"AVX-512 ?VNNI|VNNI", section)
    rows = [r for r in section.splitlines() if r.startswith("| ") and "---" not in r][1:]
    assert rows, "no figures table"
    for row in rows:
        machine = row.split("|")[3].strip()
        assert machine, f"figure without its machine: {row}"


def test_readme_links_point_at_files():
    text = README.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to missing {target}"


# ------------------------------------------------------------------------------ work history

#: phrases that speak of how the project was made, not of the product (precise, so "ONNX
#: Runtime session", "persistent session" or "onnxruntime#17011" do not count)
WORK_HISTORY = [
    r"\bthe brief\b", r"\bdesign brief\b", r"\bbrief's\b",
    r"\bissue \d", r"\bissue's\b", r"\bthis issue\b", r"\bthe issue\b",
    r"\bthis session\b", r"\bsessions? of this\b",
    r"\b(?:a|an|another|earlier) session (?:of|saw)\b",
    r"(?<![.\w])helpers?\b(?!\s+(?:function|class|module|method|script))",
    r"\b(?:was|were|is|machine) lent\b", r"\blent to\b",
]


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_speaks_of_work_history(page: Path):
    text = page.read_text(encoding="utf-8")
    for pattern in WORK_HISTORY:
        hit = re.search(pattern, text, re.I)
        assert not hit, f"{page.relative_to(ROOT)}: '{hit.group(0)}' speaks of work history"


def test_the_work_history_rule_catches_what_it_should():
    bad = ["as the brief says", "issue 8 part 5", "a session of this issue saw", "the helper ran"]
    good = ["an ONNX Runtime session", "a persistent session", "onnxruntime#17011",
            "a helper function", "built with `onnx.helper`"]
    def caught(s: str) -> bool:
        return any(re.search(p, s, re.I) for p in WORK_HISTORY)
    assert all(caught(s) for s in bad)
    assert not any(caught(s) for s in good)


# ------------------------------------------------------------------------------ benchmarks

CPU_FLAGS = re.compile(r"AVX2|AVX-?512|VNNI|NEON|SSE4|AMX|flags not recorded", re.I)


@pytest.mark.parametrize("page", sorted((DOCS / "benchmarks").glob("*.md")), ids=lambda p: p.name)
def test_every_benchmark_page_is_headed_by_machine_flags_and_date(page: Path):
    head = "\n".join(page.read_text(encoding="utf-8").splitlines()[:30])
    assert re.search(r"\bmachine\b", head, re.I), f"{page.name}: no machine in its heading"
    assert CPU_FLAGS.search(head), f"{page.name}: no CPU flags in its heading"
    assert re.search(r"\b20\d\d-\d\d-\d\d\b", head), f"{page.name}: no date in its heading"


def test_benchmark_pages_give_their_commands():
    for page in sorted((DOCS / "benchmarks").glob("*.md")):
        if page.name == "index.md":
            continue
        text = page.read_text(encoding="utf-8")
        command = r"```(?:bash|text)?\n[^`]*(?:benchmarks/|edgeinfer |make )"
        assert re.search(command, text), f"{page.name}: no command that reproduces its figures"


# ------------------------------------------------------------------------------ CLI reference


def _typer_names(typer_app) -> set[str]:
    from typer.main import get_command_name

    names = {get_command_name(c.name or c.callback.__name__) for c in typer_app.registered_commands}
    return names | {g.name for g in typer_app.registered_groups}


def test_click_command_has_every_registered_verb():
    from edgeinfer import cli

    command = cli.click_command
    assert set(command.commands) == _typer_names(cli.app)
    for group in cli.app.registered_groups:
        assert set(command.commands[group.name].commands) == _typer_names(group.typer_instance)


def test_cli_reference_renders_every_verb():
    markdown = pytest.importorskip("markdown")
    pytest.importorskip("mkdocs_click")
    from edgeinfer import cli

    page = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
    assert ":module: edgeinfer.cli" in page and ":command: click_command" in page
    # the extensions in the order mkdocs loads them (attr_list before mkdocs-click gives the
    # full-path anchors the site uses)
    extensions = ["toc", "attr_list", "fenced_code", "mkdocs-click"]
    html = markdown.Markdown(extensions=extensions).convert(page)
    command = cli.click_command
    paths = [(name,) for name in command.commands]
    paths += [(name, sub) for name, group in command.commands.items()
              for sub in getattr(group, "commands", {})]
    for path in paths:
        anchor = "edgeinfer-" + "-".join(path)
        assert f'id="{anchor}"' in html, f"`edgeinfer {' '.join(path)}` missing from the reference"


def _shell_commands(text: str) -> list[str]:
    """The `edgeinfer ...` command lines of a page's bash/text blocks (continuations joined)."""
    lines = []
    for block in re.findall(r"```(?:bash|text)\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #")[0]
            tokens = line.split()
            starts = [i for i, t in enumerate(tokens)
                      if t == "edgeinfer" or t.endswith("/edgeinfer")]
            if starts:
                lines.append(" ".join(tokens[starts[0] + 1:]))
    return lines


def test_documented_commands_use_real_verbs_and_options():
    from edgeinfer import cli

    root = cli.click_command
    global_opts = {o for p in root.params for o in (*p.opts, *p.secondary_opts)}
    checked = 0
    for page in _pages():
        for line in _shell_commands(page.read_text(encoding="utf-8")):
            command, words = root, line.split()
            while words and hasattr(command, "commands") and words[0] in command.commands:
                command = command.commands[words.pop(0)]
            if command is root:
                continue  # `edgeinfer --help` and the like
            known = global_opts | {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
            for option in re.findall(r"(?<![\w-])--[a-z0-9][a-z0-9-]*", " ".join(words)):
                assert option in known, (
                    f"{page.relative_to(ROOT)}: `edgeinfer {command.name} {option}` is not an "
                    f"option of that verb")
            checked += 1
    assert checked > 30


# ------------------------------------------------------------------------------ generated parts


def test_every_marker_names_a_known_generated_part():
    hooks = _hooks()
    for page in DOCS.rglob("*.md"):
        for name in hooks.MARKER.findall(page.read_text(encoding="utf-8")):
            assert name in hooks.RENDERERS, f"{page.name}: unknown generated part {name}"


def test_manifest_reference_lists_every_field():
    from edgeinfer.artifact import Manifest

    text = _hooks().render_manifest_schema()
    schema = Manifest.model_json_schema()
    models = {"Manifest": schema, **schema["$defs"]}
    for model, part in models.items():
        assert f"### {model}" in text
        for field in part["properties"]:
            assert f"| `{field}` |" in text, f"{model}.{field} missing"


def test_streams_reference_lists_every_key():
    from dataclasses import fields

    from edgeinfer.pipeline import streams_config as sc
    from edgeinfer.pipeline.sources import ReconnectPolicy

    text = _hooks().render_streams_yaml()
    keys = [f.name for cls in (sc.StreamSpec, sc.IdleSpec, ReconnectPolicy) for f in fields(cls)]
    for key in [*keys, *sc._SCHEDULER_KEYS]:
        assert f"| `{key}` |" in text, f"streams key {key} missing"


def test_errors_reference_lists_the_whole_tree():
    from edgeinfer import errors

    text = _hooks().render_errors()
    for name in errors.__all__:
        assert f"| `{name}` |" in text
    assert "| `RejectedError` | `edgeinfer.runtime.scheduler` |" in text


def test_http_reference_covers_every_route():
    pytest.importorskip("fastapi")
    hooks = _hooks()
    spec = hooks.node_openapi()
    text = hooks.render_http_api(spec)
    for path, ops in spec["paths"].items():
        for method in ops:
            assert f"### `{method.upper()} {path}`" in text
    assert "/v1/models/{name}/infer" in spec["paths"]
    assert any(p.startswith("/v1/offload") for p in spec["paths"])
