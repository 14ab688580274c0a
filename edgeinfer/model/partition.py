"""Cut an ONNX graph in two: the valid cut points, and head/tail sub-models that compose exactly.

A *cut* is a set of tensors that separates the graph inputs from the graph outputs: once those
tensors are known, every output can be computed without the inputs. Neurosurgeon only cuts
chains (one tensor); a residual block crossed by a skip connection needs two or more tensors.
We enumerate the *frontiers of a topological order*: after each node, the tensors already
computed that a later node (or the graph output) still needs. Every frontier is a valid cut,
and on a chain the frontiers are exactly the single-tensor cuts; the two extremes (the inputs:
all on the node; the outputs: all on the device) are included.

Tensors that do not depend on a graph input (initializers, ``Constant`` nodes and what is
computed from them only) are never part of a cut: each side recomputes them itself.

We extract sub-models with our own backward walk rather than ``onnx.utils.Extractor`` because
the Extractor runs full shape inference on every call, wants value infos it cannot always find
for the cut tensors (shapes known only at run time), and copies every initializer; here the
cut's shapes come once from :func:`read_onnx_graph`, which measures what inference leaves open.
This module knows no runtime (only onnx and the model layer).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from edgeinfer.errors import EdgeInferError
from edgeinfer.model.formats import load_onnx
from edgeinfer.model.graph import GraphInfo, TensorInfo

__all__ = [
    "Cut",
    "Partition",
    "PartitionError",
    "cut_points",
    "load_partition",
    "sample_cuts",
]


class PartitionError(EdgeInferError):
    """A cut that does not separate the graph inputs from its outputs, or names unknown tensors."""


@dataclass(frozen=True)
class Cut:
    """One cut: the tensors that cross it, in a stable order, and where it sits.

    ``position`` is the number of nodes (in topological order) on the head side; 0 is "send the
    input" (all on the node), ``len(nodes)`` is "all on the device".
    """

    tensors: tuple[str, ...]
    position: int
    nbytes: int

    @property
    def key(self) -> str:
        """A stable text key for the cut (the tensor names joined with '|')."""
        return "|".join(self.tensors)


def _subgraph_inputs(node: onnx.NodeProto) -> set[str]:
    """Names a node's subgraphs (If/Loop/Scan bodies) read, over-approximated."""
    names: set[str] = set()
    for attr in node.attribute:
        graphs = list(attr.graphs) + ([attr.g] if attr.HasField("g") else [])
        for g in graphs:
            for n in g.node:
                names.update(i for i in n.input if i)
                names |= _subgraph_inputs(n)
    return names


def _node_inputs(node: onnx.NodeProto) -> list[str]:
    return [i for i in node.input if i] + sorted(_subgraph_inputs(node))


class Partition:
    """An ONNX model prepared for cutting: its nodes in topological order, which tensors depend
    on the inputs, and every tensor's shape and dtype (from :func:`read_onnx_graph`)."""

    def __init__(self, model: onnx.ModelProto, graph: GraphInfo) -> None:
        self.model = model
        self.graph = graph
        g = model.graph
        self.initializers = {t.name for t in g.initializer}
        self.inputs = [i.name for i in g.input if i.name not in self.initializers]
        self.outputs = [o.name for o in g.output]
        self.nodes = list(g.node)
        self.producer: dict[str, int] = {}
        for k, node in enumerate(self.nodes):
            for out in node.output:
                if out:
                    self.producer[out] = k
        dynamic = set(self.inputs)
        for node in self.nodes:
            if any(i in dynamic for i in _node_inputs(node)):
                dynamic.update(o for o in node.output if o)
        self.dynamic = dynamic

    def nbytes(self, tensors: Iterable[str]) -> int:
        """Bytes of the tensors uncompressed (shapes as measured on the example inputs)."""
        return sum(self._info(t).nbytes for t in tensors)

    def _info(self, name: str) -> TensorInfo:
        info = self.graph.tensors.get(name)
        if info is None:
            raise PartitionError(
                f"tensor '{name}' has no known shape: run `edgeinfer inspect` on the model"
            )
        return info

    def cuts(self) -> list[Cut]:
        """Every frontier of the topological order, deduplicated, extremes included."""
        last_use: dict[str, int] = {}
        for k, node in enumerate(self.nodes):
            for i in _node_inputs(node):
                last_use[i] = k
        n = len(self.nodes)
        for o in self.outputs:
            last_use[o] = n
        live = {t for t in self.inputs if t in last_use}
        found: dict[tuple[str, ...], Cut] = {}

        def add(position: int) -> None:
            tensors = tuple(sorted(t for t in live if t in self.dynamic))
            if tensors and tensors not in found:
                found[tensors] = Cut(tensors, position, self.nbytes(tensors))

        add(0)
        for k, node in enumerate(self.nodes):
            live.update(o for o in node.output if o and last_use.get(o, -1) > k)
            live.difference_update([t for t in live if last_use.get(t, -1) <= k])
            add(k + 1)
        return list(found.values())

    def check(self, tensors: Sequence[str]) -> tuple[str, ...]:
        """The cut's tensors, checked: they exist, depend on the inputs, and separate the
        inputs from every output. Raises PartitionError naming the fault otherwise."""
        if not tensors:
            raise PartitionError("an empty cut separates nothing: name at least one tensor")
        for t in tensors:
            if t not in self.producer and t not in self.inputs:
                raise PartitionError(
                    f"cut tensor '{t}' is not in the model: choose tensors from `cut_points()`"
                )
            if t not in self.dynamic:
                raise PartitionError(
                    f"cut tensor '{t}' is a constant (no graph input feeds it): "
                    "constants are recomputed on each side, leave it out"
                )
        cut = set(tensors)
        leak = self._reaches_input(self.outputs, cut)
        if leak is not None:
            raise PartitionError(
                f"tensors {sorted(cut)} do not separate the inputs from the outputs: graph "
                f"input '{leak}' still reaches an output around the cut; add the tensor that "
                "bypasses it (a skip connection) or pick a cut from `cut_points()`"
            )
        return tuple(sorted(cut))

    def _reaches_input(self, targets: Iterable[str], stop: set[str]) -> str | None:
        seen: set[str] = set()
        stack = [t for t in targets]
        while stack:
            t = stack.pop()
            if t in seen or t in stop:
                continue
            seen.add(t)
            if t in self.inputs:
                return t
            k = self.producer.get(t)
            if k is not None:
                stack.extend(_node_inputs(self.nodes[k]))
        return None

    def _needed_nodes(self, targets: Iterable[str], stop: set[str]) -> list[int]:
        seen: set[str] = set()
        keep: set[int] = set()
        stack = list(targets)
        while stack:
            t = stack.pop()
            if t in seen or t in stop:
                continue
            seen.add(t)
            k = self.producer.get(t)
            if k is not None and k not in keep:
                keep.add(k)
                stack.extend(_node_inputs(self.nodes[k]))
        return sorted(keep)

    def _value_info(self, name: str) -> onnx.ValueInfoProto:
        info = self._info(name)
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(info.dtype))
        return helper.make_tensor_value_info(name, elem, list(info.shape))

    def _submodel(
        self, inputs: Sequence[str], outputs: Sequence[str], name: str
    ) -> onnx.ModelProto:
        stop = set(inputs)
        idx = self._needed_nodes(outputs, stop)
        nodes = [self.nodes[k] for k in idx]
        used = {i for n in nodes for i in _node_inputs(n)} | set(outputs)
        g = self.model.graph
        graph_inputs = {i.name: i for i in g.input}
        in_vis = [
            copy.deepcopy(graph_inputs[t]) if t in graph_inputs else self._value_info(t)
            for t in inputs
        ]
        graph_outputs = {o.name: o for o in g.output}
        out_vis = [
            copy.deepcopy(graph_outputs[t]) if t in graph_outputs else self._value_info(t)
            for t in outputs
        ]
        inits = [t for t in g.initializer if t.name in used and t.name not in stop]
        graph = helper.make_graph(nodes, name, in_vis, out_vis, inits)
        sub = helper.make_model(
            graph, opset_imports=list(self.model.opset_import), ir_version=self.model.ir_version
        )
        sub.functions.extend(self.model.functions)
        return sub

    def head(self, tensors: Sequence[str]) -> onnx.ModelProto | None:
        """The device side: graph inputs -> cut tensors (None when the cut is the inputs)."""
        cut = self.check(tensors)
        if set(cut) <= set(self.inputs):
            return None
        outs = [t for t in cut if t not in self.inputs]
        reached = self._inputs_reached(outs)
        return self._submodel([t for t in self.inputs if t in reached], outs, "head")

    def _inputs_reached(self, targets: Iterable[str]) -> set[str]:
        seen: set[str] = set()
        stack = list(targets)
        while stack:
            t = stack.pop()
            if t in seen:
                continue
            seen.add(t)
            k = self.producer.get(t)
            if k is not None:
                stack.extend(_node_inputs(self.nodes[k]))
        return seen & set(self.inputs)

    def tail(self, tensors: Sequence[str]) -> onnx.ModelProto | None:
        """The node side: cut tensors -> graph outputs (None when the cut is the outputs)."""
        cut = self.check(tensors)
        rest = [o for o in self.outputs if o not in cut]
        if not rest:
            return None
        needed = set(self._needed_nodes(rest, set(cut)))
        used = {i for k in needed for i in _node_inputs(self.nodes[k])} | set(rest)
        return self._submodel([t for t in cut if t in used], rest, "tail")

    def tail_inputs(self, tensors: Sequence[str]) -> tuple[str, ...]:
        """The cut tensors the tail actually reads (graph outputs in the cut pass straight
        through to the answer)."""
        model = self.tail(tensors)
        return tuple(i.name for i in model.graph.input) if model is not None else ()


def load_partition(
    path: str | Path | onnx.ModelProto,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
) -> Partition:
    """Read an ONNX model (path or proto) and resolve its shapes for partitioning."""
    from edgeinfer.model.onnx_graph import read_onnx_graph

    model = path if isinstance(path, onnx.ModelProto) else load_onnx(path)
    graph = read_onnx_graph(model, input_shapes)
    return Partition(model, graph)


def cut_points(
    path: str | Path | onnx.ModelProto, input_shapes: dict[str, tuple[int, ...]] | None = None
) -> list[Cut]:
    """The valid cut points of a model, from "send the input" to "all on the device"."""
    return load_partition(path, input_shapes).cuts()


def sample_cuts(cuts: Sequence[Cut], limit: int = 30) -> list[Cut]:
    """At most ``limit`` cuts: both extremes, the smallest-bytes cuts (the ones a planner picks
    at low bandwidth), and the rest evenly spaced through the graph."""
    if len(cuts) <= limit:
        return list(cuts)
    keep = {0, len(cuts) - 1}
    by_bytes = sorted(range(1, len(cuts) - 1), key=lambda k: cuts[k].nbytes)
    keep.update(by_bytes[: max(1, (limit - 2) // 3)])
    spaced = np.linspace(0, len(cuts) - 1, num=limit).round().astype(int)
    for k in spaced:
        if len(keep) >= limit:
            break
        keep.add(int(k))
    return [cuts[k] for k in sorted(keep)]
