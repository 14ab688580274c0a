"""Zoo artifacts: built offline from PyPI packages, right preprocessing, honest inspect figures."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from edgeinfer import zoo
from edgeinfer.errors import MissingDependencyError, ZooError
from edgeinfer.loading import load
from edgeinfer.model.inspect import inspect_model
from edgeinfer.pipeline.predict import Predictor
from edgeinfer.runtime.engine import Engine


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    for name in zoo.ZOO:
        zoo.get(name, root / name)
    return root


def test_efficientnet_classifies_coffee_as_espresso(zoo_dir):
    skimage_data = pytest.importorskip("skimage.data")
    rgb = skimage_data.coffee()  # scikit-image's own sample, not our re-encoded copy
    artifact = load(zoo_dir / "efficientnet-lite0")
    pred = Predictor(Engine(artifact)).predict(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    top = pred.result[0]
    assert top["class_id"] == 967
    assert top["label"] == "espresso"
    assert top["score"] > 0.5


def test_manifests_describe_inputs_and_decoders(zoo_dir):
    eff = load(zoo_dir / "efficientnet-lite0").manifest
    assert eff.inputs[0].shape == (1, 3, 224, 224)
    assert eff.preprocess.mean == (127.0, 127.0, 127.0) and eff.preprocess.std == (128.0,) * 3
    assert len(load(zoo_dir / "efficientnet-lite0").labels()) == 1000
    assert load(zoo_dir / "ppocrv4-det").manifest.decoder == "db"
    face = load(zoo_dir / "blazeface-short").manifest
    assert face.model.format == "tflite" and face.inputs[0].layout == "NHWC"


@pytest.mark.parametrize("name", sorted(zoo.ZOO))
def test_zoo_models_run_in_their_backend(zoo_dir, name):
    artifact = load(zoo_dir / name)
    engine = Engine(artifact)
    spec = artifact.manifest.inputs[0]
    outputs = engine.run({spec.name: np.zeros(spec.shape, np.float32)})
    assert outputs and all(np.isfinite(o).all() for o in outputs)


@pytest.mark.parametrize("name", sorted(zoo.ZOO))
def test_arena_plan_is_between_bound_and_naive(zoo_dir, name):
    mem = inspect_model(zoo_dir / name)["memory"]
    best = mem["best"]["arena_bytes"]
    assert mem["lower_bound_bytes"] <= best <= mem["naive_bytes"]
    assert best <= 1.10 * mem["lower_bound_bytes"]
    assert all(mem["lower_bound_bytes"] <= v <= mem["naive_bytes"] for v in mem["plans"].values())


def test_unknown_zoo_name(tmp_path):
    with pytest.raises(ZooError, match="unknown zoo model 'nope'"):
        zoo.get("nope", tmp_path)


def test_missing_package_names_package_and_install(tmp_path, monkeypatch):
    entry = zoo.ZOO["ppocrv4-det"]
    monkeypatch.setitem(zoo.ZOO, "ppocrv4-det",
                        dataclasses.replace(entry, module="edgeinfer_no_such_package"))
    with pytest.raises(MissingDependencyError) as err:
        zoo.get("ppocrv4-det", tmp_path / "x")
    msg = str(err.value)
    assert "rapidocr-onnxruntime" in msg and "pip install" in msg
    assert "\n" not in msg
