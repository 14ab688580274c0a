"""A compact anchor-free YOLO-style defect detector in plain PyTorch (no torchvision).

Backbone: strided 3x3 convolutions and CSP blocks down to stride 16; neck: a small PAN that
mixes strides 8 and 16; heads: one per stride, decoupled (a box branch regressing the distances
from the cell centre to the four box sides, FCOS/YOLOv8 style, and a class branch). Activations
are ReLU, which quantizes well and fuses into Conv on every runtime.

``forward`` in training mode returns the raw per-cell predictions; in eval mode (and in the
exported ONNX) it returns ONE tensor ``[B, 4 + C, N]`` - rows ``cx, cy, w, h`` in input pixels,
then the C sigmoid class scores - over ``N = (H/8)(W/8) + (H/16)(W/16)`` cells: the YOLOv8
export layout that edgeinfer's ``yolo`` decoder reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)
from torch import nn

from edgeinfer.errors import ModelLoadError

STRIDES: tuple[int, ...] = (8, 16)


class ConvBN(nn.Module):
    """Conv (no bias) -> BatchNorm -> ReLU."""

    def __init__(self, cin: int, cout: int, k: int = 3, s: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """Two 3x3 convolutions with a residual connection."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.a = ConvBN(c, c, 3)
        self.b = ConvBN(c, c, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(self.a(x))


class SplitConv(nn.Module):
    """A CSP's split as two convolutions, one per half: the same function as the one
    ``ConvBN`` whose output is chunked, in a form structured pruning can follow (the halves of
    a chunk cannot lose channels independently). See :func:`make_prunable`."""

    def __init__(self, conv: ConvBN) -> None:
        super().__init__()
        cin, half = conv.conv.in_channels, conv.conv.out_channels // 2
        self.a, self.b = ConvBN(cin, half, 1), ConvBN(cin, half, 1)
        with torch.no_grad():
            for part, rows in ((self.a, slice(0, half)), (self.b, slice(half, 2 * half))):
                part.conv.weight.copy_(conv.conv.weight[rows])
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(part.bn, name).copy_(getattr(conv.bn, name)[rows])
        self.train(conv.training)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.a(x), self.b(x)


class CSP(nn.Module):
    """Cross-stage partial block (YOLOv8's C2f, simplified): split, ``n`` bottlenecks on one
    half keeping every intermediate, concatenate, fuse with a 1x1 convolution."""

    def __init__(self, cin: int, cout: int, n: int = 1) -> None:
        super().__init__()
        h = cout // 2
        self.split = ConvBN(cin, 2 * h, 1)
        self.blocks = nn.ModuleList(Bottleneck(h) for _ in range(n))
        self.fuse = ConvBN((2 + n) * h, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.split(x)
        parts = list(y) if isinstance(y, tuple) else list(y.chunk(2, 1))
        for block in self.blocks:
            parts.append(block(parts[-1]))
        return self.fuse(torch.cat(parts, 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained 5x5 max-pools, concatenated."""

    def __init__(self, c: int) -> None:
        super().__init__()
        h = c // 2
        self.reduce = ConvBN(c, h, 1)
        self.fuse = ConvBN(4 * h, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.reduce(x)]
        for _ in range(3):
            y.append(F.max_pool2d(y[-1], 5, 1, 2))
        return self.fuse(torch.cat(y, 1))


class Head(nn.Module):
    """Decoupled head for one stride: a shared 1x1 stem, then a box branch (4 distances) and a
    class branch (C logits), each two 3x3 convolutions deep."""

    def __init__(self, cin: int, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.stem = ConvBN(cin, hidden, 1)
        self.box = nn.Sequential(ConvBN(hidden, hidden, 3), ConvBN(hidden, hidden, 3),
                                 nn.Conv2d(hidden, 4, 1))
        self.cls = nn.Sequential(ConvBN(hidden, hidden, 3), ConvBN(hidden, hidden, 3),
                                 nn.Conv2d(hidden, num_classes, 1))
        # softplus(0.55) ~ 1: boxes start about two strides across; class scores start at 1%.
        nn.init.constant_(self.box[-1].bias, 0.55)
        nn.init.constant_(self.cls[-1].bias, -4.6)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(x)
        return self.box(x), self.cls(x)


class DefectDetector(nn.Module):
    """Anchor-free detector with stride-8 and stride-16 heads; see the module docstring."""

    def __init__(self, num_classes: int = 4, width: int = 16, head: int = 48) -> None:
        super().__init__()
        w = width
        self.num_classes = num_classes
        self.stem = nn.Sequential(ConvBN(3, w, 3, 2), ConvBN(w, 2 * w, 3, 2), CSP(2 * w, 2 * w))
        self.stage3 = nn.Sequential(ConvBN(2 * w, 4 * w, 3, 2), CSP(4 * w, 4 * w, 2))
        self.stage4 = nn.Sequential(ConvBN(4 * w, 8 * w, 3, 2), CSP(8 * w, 8 * w, 1), SPPF(8 * w))
        self.lateral = ConvBN(8 * w, 4 * w, 1)
        self.top_down = CSP(8 * w, 4 * w)
        self.down = ConvBN(4 * w, 4 * w, 3, 2)
        self.bottom_up = CSP(8 * w, 8 * w)
        self.heads = nn.ModuleList(
            [Head(4 * w, head, num_classes), Head(8 * w, head, num_classes)]
        )

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The stride-8 and stride-16 feature maps after the neck."""
        c3 = self.stage3(self.stem(x))
        c4 = self.stage4(c3)
        lat = self.lateral(c4)
        p3 = self.top_down(torch.cat([c3, F.interpolate(lat, scale_factor=2.0)], 1))
        p4 = self.bottom_up(torch.cat([self.down(p3), lat], 1))
        return [p3, p4]

    def raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training outputs over all cells: box distances ``[B, N, 4]`` (l, t, r, b in input
        pixels), class logits ``[B, N, C]`` and the cell centres ``[N, 3]`` (x, y, stride)."""
        return self.raw_from_features(self.features(x))

    def raw_from_features(
        self, feats: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`raw` from the neck's feature maps (a distillation loss reads both)."""
        dists, logits, points = [], [], []
        for feat, head, stride in zip(feats, self.heads, STRIDES, strict=True):
            box, cls = head(feat)
            h, w = box.shape[2:]
            dists.append((F.softplus(box) * stride).flatten(2).transpose(1, 2))
            logits.append(cls.flatten(2).transpose(1, 2))
            points.append(_grid(h, w, stride, box.device))
        return torch.cat(dists, 1), torch.cat(logits, 1), torch.cat(points, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if self.training:
            return self.raw(x)
        outs = []
        for feat, head, stride in zip(self.features(x), self.heads, STRIDES, strict=True):
            box, cls = head(feat)
            outs.append(torch.cat([_decode_boxes(box, stride), cls.sigmoid()], 1).flatten(2))
        return torch.cat(outs, 2)


def _decode_boxes(box: torch.Tensor, stride: int) -> torch.Tensor:
    """Box distances ``[B, 4, H, W]`` -> ``cx, cy, w, h`` in input pixels ``[B, 4, H, W]``.

    The cell centres come from the feature map itself (``ones_like`` + ``cumsum`` along each
    axis), never from Python integers: an ONNX export then computes the grid at run time, so
    one file runs at any input size that is a multiple of 16 (320, 480, 640, ...). A grid built
    from ``box.shape`` gets frozen into a constant of the export resolution once the graph is
    simplified, and the file then fails at any other size (a broadcast error in an Add).
    """
    ones = torch.ones_like(box[:, :1])  # [B, 1, H, W]
    xs = (ones.cumsum(3) - 0.5) * stride  # cell centre x, per cell
    ys = (ones.cumsum(2) - 0.5) * stride
    d = F.softplus(box) * stride
    left, top, right, bottom = d[:, 0:1], d[:, 1:2], d[:, 2:3], d[:, 3:4]
    cx = xs + (right - left) / 2
    cy = ys + (bottom - top) / 2
    return torch.cat([cx, cy, left + right, top + bottom], 1)


def _grid(h: int, w: int, stride: int, device: torch.device) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device),
                            indexing="ij")
    pts = torch.stack([xs.flatten(), ys.flatten()], 1).float().add(0.5).mul(stride)
    return torch.cat([pts, torch.full((h * w, 1), float(stride), device=device)], 1)


def onnx_module_name(node_name: str) -> str:
    """The module path of a node named by the TorchScript exporter: ``/heads.1/box/box.2/Conv``
    -> ``heads.1.box.2`` (a child of a container repeats its parent's name with an index)."""
    parts: list[str] = []
    for comp in node_name.strip("/").split("/")[:-1]:
        if parts and comp.startswith(parts[-1] + "."):
            parts[-1] = comp
        else:
            parts.append(comp)
    return ".".join(parts)


def _onnx_convs(path: str | Path) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(module name, weight, bias) of every Conv node of an exported detector, in graph order."""
    import onnx
    from onnx import numpy_helper

    try:
        graph = onnx.load(str(path)).graph
    except Exception as exc:
        raise ModelLoadError(f"{path} is not a readable ONNX file ({exc}): check the path") from exc
    inits = {t.name: t for t in graph.initializer}
    out = []
    for node in graph.node:
        if node.op_type != "Conv" or len(node.input) < 3 or node.input[1] not in inits:
            continue
        weight = torch.from_numpy(numpy_helper.to_array(inits[node.input[1]]).copy())
        bias = torch.from_numpy(numpy_helper.to_array(inits[node.input[2]]).copy())
        out.append((onnx_module_name(node.name), weight, bias))
    return out


def detector_from_onnx(path: str | Path) -> DefectDetector:
    """A :class:`DefectDetector` rebuilt from its exported ONNX file (the shipped
    ``defect-detector.onnx``, one written by ``train detector`` or a pruned one written by
    ``compress``): its layer widths read from the convolutions' shapes, its weights from the
    initializers (see :func:`load_onnx_weights`)."""
    shapes = {name: w.shape for name, w, _ in _onnx_convs(path)}
    try:
        width = shapes["stem.0.conv"][0]
        head = shapes["heads.0.stem.conv"][0]
        classes = shapes["heads.0.cls.2"][0]
    except KeyError:
        raise ModelLoadError(
            f"{path} is not a DefectDetector export (no stem/head convolutions by name): start "
            "from 'defect-detector', an artifact made by `edgeinfer train detector`, or scratch"
        ) from None
    model = DefectDetector(classes, width, head)
    if any(".split.a." in name for name in shapes):
        make_prunable(model)
    _match_widths(model, shapes)
    return load_onnx_weights(model, path)


def _match_widths(model: nn.Module, shapes: dict[str, torch.Size]) -> None:
    """Give every convolution named in ``shapes`` that shape (and its ConvBN's BatchNorm the
    width): a pruned network is the same architecture with fewer channels."""
    modules = dict(model.named_modules())
    for name, shape in shapes.items():
        conv = modules.get(name)
        if not isinstance(conv, nn.Conv2d) or conv.weight.shape == shape:
            continue
        new = nn.Conv2d(shape[1] * conv.groups, shape[0], conv.kernel_size, conv.stride,
                        conv.padding, groups=conv.groups, bias=conv.bias is not None)
        parent_name, _, child = name.rpartition(".")
        parent = modules[parent_name]
        setattr(parent, child, new)
        if isinstance(parent, ConvBN):
            parent.bn = nn.BatchNorm2d(shape[0])


def load_onnx_weights(model: DefectDetector, path: str | Path) -> DefectDetector:
    """Fill ``model`` with the weights of an exported ``defect-detector.onnx``; returns it.

    The export folded every BatchNorm into its convolution, so each ``ConvBN`` gets the fused
    kernel and an identity BatchNorm carrying the fused bias: eval mode reproduces the file
    exactly. Before training from here, :func:`calibrate_batchnorm` gives the BatchNorms real
    statistics. Every Conv of the file must find its module with the same shape, and every
    convolution of the model must be filled.
    """
    modules = dict(model.named_modules())
    filled = set()
    for name, weight, bias in _onnx_convs(path):
        conv = modules.get(name)
        if not isinstance(conv, nn.Conv2d) or conv.weight.shape != weight.shape:
            raise ModelLoadError(
                f"{path}: Conv {name} {list(weight.shape)} matches no convolution of the model: "
                "it was exported from another architecture"
            )
        with torch.no_grad():
            conv.weight.copy_(weight)
            parent = modules[name.rpartition(".")[0]] if "." in name else None
            if isinstance(parent, ConvBN):
                bn = parent.bn
                bn.weight.fill_(1.0)
                bn.bias.copy_(bias)
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
            else:
                conv.bias.copy_(bias)
        filled.add(name)
    missing = {n for n, m in modules.items() if isinstance(m, nn.Conv2d)} - filled
    if missing:
        raise ModelLoadError(f"{path} holds no weights for {sorted(missing)[:3]}...: another "
                             "architecture")
    return model.eval()


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """Give every BatchNorm of ``model`` the statistics of its input on ``batches``, keeping
    the eval-mode function (to float rounding).

    Eval mode maps x to ``s * x + t`` (s = weight / sqrt(var + eps), t = bias - s * mean).
    With the measured mean m and variance v, weight = s * sqrt(v + eps) and bias = t + s * m
    give the same map, and training-mode normalisation (batch statistics close to m, v) then
    starts where eval mode is. Used after :func:`load_onnx_weights`, whose BatchNorms are
    identities over the folded convolutions.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    sums: dict[nn.BatchNorm2d, list] = {bn: [0.0, 0.0, 0] for bn in bns}

    def hook(bn: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0].double()
        acc = sums[bn]  # type: ignore[index]
        acc[0] = acc[0] + x.sum((0, 2, 3))
        acc[1] = acc[1] + (x * x).sum((0, 2, 3))
        acc[2] += x.numel() // x.shape[1]

    was_training = model.training
    model.eval()
    handles = [bn.register_forward_pre_hook(hook) for bn in bns]
    try:
        for x in batches:
            model(x)
    finally:
        for h in handles:
            h.remove()
    for bn, (s1, s2, n) in sums.items():
        if not n:
            continue
        m = s1 / n
        v = (s2 / n - m * m).clamp(min=0)
        old_scale = bn.weight.double() / (bn.running_var.double() + bn.eps).sqrt()
        old_shift = bn.bias.double() - old_scale * bn.running_mean.double()
        # eval: y = old_scale * x + old_shift; keep it with mean m and var v
        new_std = (v + bn.eps).sqrt()
        bn.running_mean.copy_(m)
        bn.running_var.copy_(v)
        bn.weight.copy_(old_scale * new_std)
        bn.bias.copy_(old_shift + old_scale * m)
    model.train(was_training)
    return model


def make_prunable(model: nn.Module) -> nn.Module:
    """Give every CSP of ``model`` a :class:`SplitConv` in place of its chunked split (the
    same outputs, to float rounding); returns ``model``. Structured pruning needs it."""
    for module in model.modules():
        if isinstance(module, CSP) and isinstance(module.split, ConvBN):
            module.split = SplitConv(module.split)
    return model


def replace_class_head(
    model: DefectDetector, names: Sequence[str], old_names: Sequence[str]
) -> list[str]:
    """Give ``model`` a class layer for ``names`` (one per head, the last 1x1 convolution of
    the class branch), keeping the weights of the classes it already knew (by name, from
    ``old_names``); returns the names carried over. Box branches and features are kept."""
    carried = [n for n in names if n in old_names]
    for head in model.heads:
        old = head.cls[-1]
        new = nn.Conv2d(old.in_channels, len(names), 1)
        nn.init.normal_(new.weight, std=0.01)
        nn.init.constant_(new.bias, -4.6)
        with torch.no_grad():
            for i, n in enumerate(names):
                if n in old_names:
                    j = list(old_names).index(n)
                    new.weight[i] = old.weight[j]
                    new.bias[i] = old.bias[j]
        head.cls[-1] = new
    model.num_classes = len(names)
    return carried


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


#: input and output names and dynamic axes of an exported detector (the YOLOv8 export layout)
DETECTOR_AXES = {"images": {0: "batch", 2: "height", 3: "width"},
                 "output0": {0: "batch", 2: "cells"}}


def export_detector(model: DefectDetector, path: str | Path, size: int = 640) -> Path:
    """Export ``model`` to ONNX (opset 17, simplified) with dynamic batch, height and width:
    input ``images`` ``[batch, 3, H, W]`` (RGB / 255, sides multiples of 16), output
    ``output0`` ``[batch, 4 + C, cells]``. ``size`` is the side of the example input."""
    from edgeinfer.model.export import export

    was_training = model.training
    path = export(model.eval(), torch.zeros(1, 3, size, size), path, input_names=("images",),
                  output_names=("output0",), dynamic_axes=DETECTOR_AXES)
    model.train(was_training)
    return path
