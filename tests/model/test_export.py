"""PyTorch -> ONNX export: opset, numerical match with torch, dynamic batch, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from edgeinfer import export  # noqa: E402
from edgeinfer.errors import EdgeInferError, UnsupportedOpsetError  # noqa: E402
from edgeinfer.model.formats import load_onnx, onnx_opset  # noqa: E402
from edgeinfer.model.onnx_graph import read_onnx_graph, value_dims  # noqa: E402


class TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.relu = torch.nn.ReLU()
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        x = self.pool(self.relu(self.bn(self.conv(x))))
        return self.fc(torch.flatten(x, 1))


class Broken(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(5, 2)

    def forward(self, x):
        return self.fc(x)  # example input's last dim is 16, not 5


def make_net() -> TinyNet:
    torch.manual_seed(0)
    net = TinyNet()
    # Non-trivial BatchNorm statistics so folding it is actually checked.
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
        net.bn.weight.uniform_(0.5, 1.5)
        net.bn.bias.uniform_(-0.5, 0.5)
    return net


def run_ort(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("opset", [13, 17])
def test_export_matches_torch(tmp_path: Path, opset: int) -> None:
    net = make_net()
    net.train()  # export must switch to eval and restore the mode afterwards
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    path = export(net, x, tmp_path / "sub" / "net.onnx", opset=opset)
    assert path == tmp_path / "sub" / "net.onnx"
    assert path.is_file()
    assert net.training
    model = load_onnx(path)
    assert onnx_opset(model) == opset
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["output"]
    net.eval()
    with torch.no_grad():
        expected = net(x).numpy()
    got = run_ort(path, x.numpy())
    assert got.shape == (1, 4)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_export_is_readable_with_static_shapes(tmp_path: Path) -> None:
    path = export(make_net(), torch.zeros(1, 3, 16, 16), tmp_path / "net.onnx")
    g = read_onnx_graph(path)
    conv = [op for op in g.ops if op.op_type == "Conv"]
    assert len(conv) == 1
    assert conv[0].macs == 8 * 16 * 16 * 3 * 9
    assert not any(op.op_type == "BatchNormalization" for op in g.ops)  # folded into the conv


def test_dynamic_batch(tmp_path: Path) -> None:
    net = make_net()
    path = export(net, torch.zeros(1, 3, 16, 16), tmp_path / "dyn.onnx", dynamic_batch=True,
                  input_names=("images",), output_names=("logits",))
    model = onnx.load(str(path))
    dims = value_dims(model.graph.input[0])
    assert isinstance(dims[0], str)
    assert dims[1:] == [3, 16, 16]
    assert isinstance(value_dims(model.graph.output[0])[0], str)
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    net.eval()
    with torch.no_grad():
        expected = net(x).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"images": x.numpy()})[0]
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_static_batch_by_default(tmp_path: Path) -> None:
    path = export(make_net(), torch.zeros(1, 3, 16, 16), tmp_path / "static.onnx")
    model = onnx.load(str(path))
    assert value_dims(model.graph.input[0]) == [1, 3, 16, 16]


@pytest.mark.parametrize("opset", [3, 99])
def test_bad_opset(tmp_path: Path, opset: int) -> None:
    path = tmp_path / "bad.onnx"
    with pytest.raises(UnsupportedOpsetError) as info:
        export(make_net(), torch.zeros(1, 3, 16, 16), path, opset=opset)
    assert f"opset {opset}" in str(info.value)
    assert "\n" not in str(info.value)
    assert not path.exists()


def test_forward_failure_is_one_line(tmp_path: Path) -> None:
    net = Broken()
    net.train()
    with pytest.raises(EdgeInferError) as info:
        export(net, torch.zeros(1, 16), tmp_path / "broken.onnx")
    msg = str(info.value)
    assert "\n" not in msg
    assert "Broken" in msg
    assert "example_input" in msg
    assert net.training  # mode restored even on failure
