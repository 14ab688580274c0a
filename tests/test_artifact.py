"""Artifacts: create + load round trip, every manifest error, bare-model load, reports."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

import edgeinfer
from edgeinfer.artifact import (
    MANIFEST_NAME,
    Artifact,
    InputSpec,
    Preprocess,
    SourceInfo,
    load_artifact,
)
from edgeinfer.errors import ArtifactError, ModelLoadError


def make_artifact(directory: Path, model: Path, **overrides) -> Artifact:
    fields = {
        "name": "tiny",
        "task": "classification",
        "inputs": (InputSpec(name="x", shape=(1, 3, 8, 8), layout="NCHW"),),
        "outputs": ("y",),
        "preprocess": Preprocess(resize="letterbox", channel_order="BGR", scale=1 / 255),
        "labels": ["cat", "dog"],
        "decoder": "classification",
        "decoder_params": {"top_k": 2},
        "source": SourceInfo(name="tests", license="MIT"),
    }
    fields.update(overrides)
    return Artifact.create(directory, model, **fields)


def assert_one_line(exc: BaseException, path: Path) -> str:
    msg = str(exc)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg
    return msg


@pytest.fixture
def artifact_dir(tiny_onnx: Path, tmp_path: Path) -> Path:
    directory = tmp_path / "art"
    make_artifact(directory, tiny_onnx)
    return directory


def manifest_of(directory: Path) -> dict:
    return json.loads((directory / MANIFEST_NAME).read_text())


def write_manifest(directory: Path, raw: object) -> None:
    (directory / MANIFEST_NAME).write_text(json.dumps(raw))


# --- round trip ------------------------------------------------------------------------------


def test_create_and_load_round_trip(tiny_onnx: Path, tmp_path: Path) -> None:
    directory = tmp_path / "new" / "art"  # parents are created
    created = make_artifact(directory, tiny_onnx)
    assert (directory / "tiny.onnx").read_bytes() == tiny_onnx.read_bytes()
    assert (directory / "labels.txt").read_text() == "cat\ndog\n"
    # no temporary files left behind by the atomic writes
    assert sorted(p.name for p in directory.iterdir()) == ["edgeinfer.json", "labels.txt",
                                                           "tiny.onnx"]

    loaded = load_artifact(directory)
    m = loaded.manifest
    assert m == created.manifest
    assert m.version == 1
    assert m.name == "tiny"
    assert m.task == "classification"
    assert m.model.path == "tiny.onnx"
    assert m.model.format == "onnx"
    assert m.model.precision == "fp32"
    assert m.model.sha256 == hashlib.sha256(tiny_onnx.read_bytes()).hexdigest()
    assert m.model.bytes == tiny_onnx.stat().st_size
    assert m.inputs == (InputSpec(name="x", shape=(1, 3, 8, 8), dtype="float32", layout="NCHW"),)
    assert m.outputs == ("y",)
    assert m.preprocess.resize == "letterbox"
    assert m.preprocess.channel_order == "BGR"
    assert m.preprocess.scale == pytest.approx(1 / 255)
    assert m.decoder == "classification"
    assert m.decoder_params == {"top_k": 2}
    assert m.source.license == "MIT"
    assert m.labels_file == "labels.txt"
    assert "onnx" in m.tools
    assert loaded.labels() == ["cat", "dog"]
    assert loaded.model_path == directory / "tiny.onnx"


def test_derive_keeps_what_the_model_is_and_records_where_it_came_from(
    artifact_dir: Path, tiny_onnx: Path, tmp_path: Path
) -> None:
    parent = load_artifact(artifact_dir)
    child = parent.derive(tmp_path / "child", tiny_onnx, origin="optimized from tiny.onnx",
                          precision="int8", outputs=())
    m, p = child.manifest, parent.manifest
    assert (m.name, m.task, m.inputs, m.preprocess, m.decoder, m.decoder_params) == (
        p.name, p.task, p.inputs, p.preprocess, p.decoder, p.decoder_params)
    assert child.labels() == ["cat", "dog"] and m.outputs == () and m.model.precision == "int8"
    assert m.source.name == p.source.name and m.source.license == "MIT"
    assert m.source.sha256 == p.model.sha256 and m.source.origin == "optimized from tiny.onnx"
    assert load_artifact(tmp_path / "child").manifest == m


def test_create_without_labels(tiny_onnx: Path, tmp_path: Path) -> None:
    art = make_artifact(tmp_path / "a", tiny_onnx, labels=None)
    assert art.manifest.labels_file is None
    assert load_artifact(tmp_path / "a").labels() is None
    assert not (tmp_path / "a" / "labels.txt").exists()


def test_create_in_place(tiny_onnx: Path) -> None:
    # The model file is already inside the directory: no copy onto itself.
    art = make_artifact(tiny_onnx.parent, tiny_onnx)
    assert load_artifact(tiny_onnx.parent).manifest.model.sha256 == art.manifest.model.sha256


def test_manifest_is_frozen(artifact_dir: Path) -> None:
    art = load_artifact(artifact_dir)
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        art.manifest.name = "other"  # type: ignore[misc]


def test_with_report_stores_and_reloads(artifact_dir: Path) -> None:
    art = load_artifact(artifact_dir)
    updated = art.with_report("inspect", {"macs": 123, "fits": True})
    assert updated.manifest.reports == {"inspect": {"macs": 123, "fits": True}}
    assert art.manifest.reports == {}  # the original is unchanged
    again = load_artifact(artifact_dir).with_report("bench", {"p50_ms": 1.5})
    reloaded = load_artifact(artifact_dir)
    assert reloaded.manifest.reports == {"inspect": {"macs": 123, "fits": True},
                                         "bench": {"p50_ms": 1.5}}
    assert reloaded.manifest == again.manifest
    assert manifest_of(artifact_dir)["reports"]["inspect"]["macs"] == 123


# --- errors ----------------------------------------------------------------------------------


def test_not_a_directory(tmp_path: Path, tiny_onnx: Path) -> None:
    for path in (tmp_path / "missing", tiny_onnx):
        with pytest.raises(ArtifactError, match="no such artifact directory") as info:
            load_artifact(path)
        assert_one_line(info.value, path)


def test_no_manifest(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=f"has no {MANIFEST_NAME}") as info:
        load_artifact(tmp_path)
    assert_one_line(info.value, tmp_path)


def test_invalid_json(artifact_dir: Path) -> None:
    (artifact_dir / MANIFEST_NAME).write_text('{"version": 1, "name": ')
    with pytest.raises(ArtifactError, match="not valid JSON") as info:
        load_artifact(artifact_dir)
    assert_one_line(info.value, artifact_dir / MANIFEST_NAME)


@pytest.mark.parametrize("version", [99, 0, "1", None])
def test_unknown_version(artifact_dir: Path, version: object) -> None:
    raw = manifest_of(artifact_dir)
    raw["version"] = version
    write_manifest(artifact_dir, raw)
    with pytest.raises(ArtifactError) as info:
        load_artifact(artifact_dir)
    msg = assert_one_line(info.value, artifact_dir / MANIFEST_NAME)
    assert "upgrade edgeinfer" in msg
    assert repr(version) in msg


def test_manifest_not_an_object(artifact_dir: Path) -> None:
    write_manifest(artifact_dir, [1, 2, 3])
    with pytest.raises(ArtifactError, match="manifest version None"):
        load_artifact(artifact_dir)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda raw: raw.update(task="segmentation-of-everything"), "task"),
        (lambda raw: raw["model"].update(format="caffe"), "model.format"),
        (lambda raw: raw.pop("name"), "name"),
        (lambda raw: raw.update(surprise=1), "surprise"),
        (lambda raw: raw["inputs"][0].update(shape="big"), "inputs.0.shape"),
    ],
)
def test_invalid_field(artifact_dir: Path, change, field: str) -> None:
    raw = manifest_of(artifact_dir)
    change(raw)
    write_manifest(artifact_dir, raw)
    with pytest.raises(ArtifactError, match="invalid manifest field") as info:
        load_artifact(artifact_dir)
    msg = assert_one_line(info.value, artifact_dir / MANIFEST_NAME)
    assert f"'{field}" in msg


def test_missing_model_file(artifact_dir: Path) -> None:
    (artifact_dir / "tiny.onnx").unlink()
    with pytest.raises(ArtifactError, match="model file 'tiny.onnx'") as info:
        load_artifact(artifact_dir)
    assert "missing" in assert_one_line(info.value, artifact_dir)


def test_missing_labels_file(artifact_dir: Path) -> None:
    (artifact_dir / "labels.txt").unlink()
    with pytest.raises(ArtifactError, match="labels file 'labels.txt'") as info:
        load_artifact(artifact_dir)
    assert "missing" in assert_one_line(info.value, artifact_dir)


# --- edgeinfer.load --------------------------------------------------------------------------


def test_load_bare_onnx(tiny_onnx: Path) -> None:
    art = edgeinfer.load(tiny_onnx)
    m = art.manifest
    assert m.inputs == (InputSpec(name="x", shape=(1, 3, 8, 8), dtype="float32", layout="NCHW"),)
    assert m.outputs == ("y",)
    assert m.model.format == "onnx"
    assert m.model.sha256 == hashlib.sha256(tiny_onnx.read_bytes()).hexdigest()
    assert art.model_path == tiny_onnx
    assert art.labels() is None
    # in memory only: nothing written next to the model
    assert not (tiny_onnx.parent / MANIFEST_NAME).exists()


def test_load_bare_dynamic_onnx(dynamic_onnx: Path) -> None:
    spec = edgeinfer.load(dynamic_onnx).manifest.inputs[0]
    assert spec.name == "x"
    assert len(spec.shape) == 4
    assert spec.shape[1] == 3


def test_load_directory_is_validated(artifact_dir: Path) -> None:
    assert edgeinfer.load(artifact_dir).manifest.name == "tiny"
    (artifact_dir / "tiny.onnx").unlink()
    with pytest.raises(ArtifactError):
        edgeinfer.load(artifact_dir)


def test_load_torch_checkpoint_is_refused(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "w.pt"
    torch.save({"w": torch.zeros(1)}, str(path))
    with pytest.raises(ModelLoadError) as info:
        edgeinfer.load(path)
    assert_one_line(info.value, path)
