"""Tensor lifetimes, memory bounds and the arena planners of edgeinfer.model.memory."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeinfer.errors import ShapeError
from edgeinfer.model.graph import GraphInfo, OpInfo, TensorInfo
from edgeinfer.model.memory import (
    PLANNERS,
    ArenaPlan,
    Lifetime,
    MemoryReport,
    check_plan,
    lower_bound,
    memory_report,
    naive_bytes,
    plan_arena,
    register_planner,
    tensor_lifetimes,
)

STRATEGIES = list(PLANNERS)


def make_graph(
    sizes: dict[str, int],
    ops: Sequence[tuple[Sequence[str], Sequence[str]]],
    inputs: Sequence[str],
    outputs: Sequence[str],
    weights: Sequence[str] = (),
) -> GraphInfo:
    """A graph of uint8 tensors ``name -> size bytes``; ops given as (inputs, outputs)."""
    tensors = {}
    for name, size in sizes.items():
        if name in weights:
            kind = "weight"
        elif name in inputs:
            kind = "input"
        elif name in outputs:
            kind = "output"
        else:
            kind = "activation"
        tensors[name] = TensorInfo(name, (size,), "uint8", kind)
    op_infos = tuple(
        OpInfo(f"op{i}", "Op", tuple(ins), tuple(outs)) for i, (ins, outs) in enumerate(ops)
    )
    return GraphInfo("test", tuple(inputs), tuple(outputs), tensors, op_infos)


def by_name(lifetimes: list[Lifetime]) -> dict[str, tuple[int, int, int]]:
    return {lt.name: (lt.size, lt.first, lt.last) for lt in lifetimes}


def check_all(lts: list[Lifetime], alignment: int) -> None:
    """Every strategy: valid, aligned, between the lower bound and the naive size."""
    lb, _ = lower_bound(lts, alignment)
    naive = naive_bytes(lts, alignment)
    for name in STRATEGIES:
        plan = plan_arena(lts, name, alignment)
        assert plan.strategy == name
        assert set(plan.offsets) == {lt.name for lt in lts}
        check_plan(lts, plan, alignment=alignment)
        check_plan(lts, plan)
        assert lb <= plan.arena_bytes <= naive
        assert all(off % alignment == 0 for off in plan.offsets.values())
        assert plan.arena_bytes % alignment == 0


# --------------------------------------------------------------------------- hand-built graphs


def test_chain_reaches_max_adjacent_pair() -> None:
    # a -> b -> c -> d: a+b=40, b+c=50, c+d=25 -> optimum 50.
    g = make_graph(
        {"a": 10, "b": 30, "c": 20, "d": 5},
        [(["a"], ["b"]), (["b"], ["c"]), (["c"], ["d"])],
        inputs=["a"],
        outputs=["d"],
    )
    lts = tensor_lifetimes(g)
    assert by_name(lts) == {"a": (10, 0, 0), "b": (30, 0, 1), "c": (20, 1, 2), "d": (5, 2, 2)}
    assert naive_bytes(lts, 1) == 65
    assert lower_bound(lts, 1) == (50, 1)
    plan = plan_arena(lts, "greedy_by_size", 1)
    check_plan(lts, plan)
    assert plan.arena_bytes == 50
    assert plan_arena(lts, "best", 1).arena_bytes == 50


def test_long_chain_reuses_two_buffers() -> None:
    names = [f"t{i}" for i in range(20)]
    g = make_graph(
        dict.fromkeys(names, 100),
        [([names[i]], [names[i + 1]]) for i in range(19)],
        inputs=[names[0]],
        outputs=[names[-1]],
    )
    report = memory_report(g, alignment=4)
    assert report.naive_bytes == 2000
    assert report.lower_bound_bytes == 200
    assert report.best.arena_bytes == 200
    assert all(p.arena_bytes == 200 for p in report.plans)


def test_diamond_skip_connection() -> None:
    # op0: x -> y ; op1: x -> z ; op2: add(y, z) -> w.  x, y, z alive at step 1 -> 32;
    # w (step 2) reuses x's bytes.
    g = make_graph(
        {"x": 16, "y": 8, "z": 8, "w": 8},
        [(["x"], ["y"]), (["x"], ["z"]), (["y", "z"], ["w"])],
        inputs=["x"],
        outputs=["w"],
    )
    lts = tensor_lifetimes(g)
    assert by_name(lts) == {"x": (16, 0, 1), "y": (8, 0, 2), "z": (8, 1, 2), "w": (8, 2, 2)}
    assert naive_bytes(lts, 1) == 40
    assert lower_bound(lts, 1) == (32, 1)
    plan = plan_arena(lts, "greedy_by_size", 1)
    check_plan(lts, plan)
    assert plan.arena_bytes == 32
    assert plan.offsets["w"] == plan.offsets["x"] == 0
    check_all(lts, 1)


def test_residual_block_keeps_skip_alive() -> None:
    # x -> conv -> a -> conv -> b ; add(x, b) -> y: x stays alive until the add.
    g = make_graph(
        {"x": 64, "a": 64, "b": 64, "y": 64},
        [(["x"], ["a"]), (["a"], ["b"]), (["x", "b"], ["y"])],
        inputs=["x"],
        outputs=["y"],
    )
    lts = tensor_lifetimes(g)
    assert by_name(lts)["x"] == (64, 0, 2)
    assert lower_bound(lts, 64) == (192, 1)
    assert memory_report(g).best.arena_bytes == 192


def test_strategies_differ_size_wins() -> None:
    lts = [
        Lifetime("a", 1, 1, 1),
        Lifetime("b", 2, 0, 1),
        Lifetime("c", 2, 1, 3),
        Lifetime("d", 3, 2, 3),
    ]
    size = plan_arena(lts, "greedy_by_size", 1)
    breadth = plan_arena(lts, "greedy_by_breadth", 1)
    assert lower_bound(lts, 1)[0] == 5
    assert size.arena_bytes == 5
    assert breadth.arena_bytes == 7
    assert plan_arena(lts, "best", 1).arena_bytes == 5
    check_all(lts, 1)


def test_strategies_differ_breadth_wins() -> None:
    lts = [
        Lifetime("a", 3, 0, 3),
        Lifetime("b", 3, 1, 1),
        Lifetime("c", 4, 0, 0),
        Lifetime("d", 2, 1, 2),
    ]
    size = plan_arena(lts, "greedy_by_size", 1)
    breadth = plan_arena(lts, "greedy_by_breadth", 1)
    assert lower_bound(lts, 1)[0] == 8
    assert size.arena_bytes == 9
    assert breadth.arena_bytes == 8
    best = plan_arena(lts, "best", 1)
    assert best.strategy == "greedy_by_breadth"
    assert best.arena_bytes == 8
    check_all(lts, 1)


def test_unused_late_inputs_and_outputs() -> None:
    # inputs: x (used at op0), late (first used at op2), unused (never used).
    # "early_out" is produced at op0 and is a graph output: kept to the last step.
    # "dead" is produced at op1 and never consumed. "w" is a weight: not in the arena.
    g = make_graph(
        {"x": 8, "late": 4, "unused": 2, "early_out": 16, "h": 8, "dead": 32, "out": 8, "w": 99},
        [
            (["x", "w"], ["early_out", "h"]),
            (["h"], ["dead"]),
            (["h", "late"], ["out"]),
        ],
        inputs=["x", "late", "unused"],
        outputs=["early_out", "out"],
        weights=["w"],
    )
    lts = by_name(tensor_lifetimes(g))
    assert "w" not in lts
    assert lts == {
        "x": (8, 0, 0),
        "late": (4, 0, 2),
        "unused": (2, 0, 0),
        "early_out": (16, 0, 2),
        "h": (8, 0, 2),
        "dead": (32, 1, 1),
        "out": (8, 2, 2),
    }
    report = memory_report(g, alignment=1)
    assert report.num_tensors == 7
    assert report.naive_bytes == 78
    # step 0: x+late+unused+early_out+h = 38; step 1: late+early_out+h+dead = 60
    assert report.lower_bound_bytes == 60
    assert report.peak_step == 1
    assert report.best.arena_bytes >= 60


def test_output_that_is_an_input_and_empty_graph() -> None:
    g = make_graph({"x": 10}, [], inputs=["x"], outputs=["x"])
    assert by_name(tensor_lifetimes(g)) == {"x": (10, 0, 0)}
    report = memory_report(g, alignment=1)
    assert (report.naive_bytes, report.lower_bound_bytes, report.best.arena_bytes) == (10, 10, 10)


def test_zero_size_missing_and_unreferenced_tensors_are_skipped() -> None:
    g = make_graph(
        {"x": 8, "empty": 0, "y": 8, "stray": 100},
        [(["x", "", "empty"], ["y"])],
        inputs=["x"],
        outputs=["y"],
    )
    assert set(by_name(tensor_lifetimes(g))) == {"x", "y"}


def test_unresolved_dimension_is_a_shape_error() -> None:
    g = GraphInfo(
        "test",
        ("x",),
        ("x",),
        {"x": TensorInfo("x", (-1, 3), "float32", "input")},
        (),
    )
    with pytest.raises(ShapeError, match="'x'"):
        tensor_lifetimes(g)


def test_alignment_rounds_every_size() -> None:
    # Four 1-byte tensors in a chain: each occupies 64 bytes.
    g = make_graph(
        dict.fromkeys("abcd", 1),
        [(["a"], ["b"]), (["b"], ["c"]), (["c"], ["d"])],
        inputs=["a"],
        outputs=["d"],
    )
    report = memory_report(g, alignment=64)
    assert report.alignment == 64
    assert report.naive_bytes == 256
    assert report.lower_bound_bytes == 128
    for plan in report.plans:
        assert plan.arena_bytes == 128
        assert all(off % 64 == 0 for off in plan.offsets.values())
    unaligned = memory_report(g, alignment=1)
    assert (unaligned.naive_bytes, unaligned.lower_bound_bytes) == (4, 2)
    assert naive_bytes([Lifetime("a", 65, 0, 0)], 64) == 128


def test_empty_lifetimes() -> None:
    assert naive_bytes([]) == 0
    assert lower_bound([]) == (0, 0)
    for name in STRATEGIES:
        plan = plan_arena([], name)
        assert plan.arena_bytes == 0
        assert plan.offsets == {}
    assert plan_arena([]).arena_bytes == 0


def test_report_fields_and_best_is_smallest() -> None:
    g = make_graph(
        {"x": 16, "y": 8, "z": 8, "w": 8},
        [(["x"], ["y"]), (["x"], ["z"]), (["y", "z"], ["w"])],
        inputs=["x"],
        outputs=["w"],
    )
    report = memory_report(g, alignment=8)
    assert isinstance(report, MemoryReport)
    assert [p.strategy for p in report.plans] == STRATEGIES
    assert report.best.arena_bytes == min(p.arena_bytes for p in report.plans)
    assert report.best == plan_arena(tensor_lifetimes(g), "best", 8)


# --------------------------------------------------------------------------- errors


def test_check_plan_rejects_overlap() -> None:
    lts = [Lifetime("a", 10, 0, 2), Lifetime("b", 10, 2, 3), Lifetime("c", 10, 3, 3)]
    # a and c never live together: sharing bytes is fine.
    check_plan(lts, ArenaPlan("manual", {"a": 0, "b": 10, "c": 0}, 20))
    with pytest.raises(ValueError, match="'a' and 'b'"):
        check_plan(lts, ArenaPlan("manual", {"a": 0, "b": 5, "c": 20}, 30))


def test_check_plan_rejects_arena_overflow_and_missing_offset() -> None:
    lts = [Lifetime("a", 10, 0, 0)]
    with pytest.raises(ValueError, match="'a'.*past the arena"):
        check_plan(lts, ArenaPlan("manual", {"a": 4}, 10))
    with pytest.raises(ValueError, match="no offset for tensor 'a'"):
        check_plan(lts, ArenaPlan("manual", {}, 10))
    # Raw 10 bytes fit in 10; aligned to 64 they do not.
    check_plan(lts, ArenaPlan("manual", {"a": 0}, 10))
    with pytest.raises(ValueError, match="past the arena"):
        check_plan(lts, ArenaPlan("manual", {"a": 0}, 10), alignment=64)


def test_bad_arguments() -> None:
    lts = [Lifetime("a", 1, 0, 0)]
    with pytest.raises(ValueError, match="unknown arena strategy 'nope'"):
        plan_arena(lts, "nope")
    with pytest.raises(ValueError, match="alignment"):
        plan_arena(lts, "greedy_by_size", 0)
    with pytest.raises(ValueError, match="twice"):
        plan_arena([*lts, *lts])
    with pytest.raises(ValueError, match="lifetime"):
        Lifetime("a", 1, 3, 2)
    with pytest.raises(ValueError, match="negative size"):
        Lifetime("a", -1, 0, 0)
    with pytest.raises(ValueError, match="already registered"):
        register_planner("greedy_by_size")(PLANNERS["greedy_by_size"])


# --------------------------------------------------------------------------- properties


@st.composite
def lifetimes_lists(draw: st.DrawFn) -> list[Lifetime]:
    n = draw(st.integers(0, 40))
    result = []
    for i in range(n):
        first = draw(st.integers(0, 50))
        last = draw(st.integers(first, 50))
        size = draw(st.integers(1, 10**6))
        result.append(Lifetime(f"t{i}", size, first, last))
    return result


@settings(max_examples=200, deadline=None)
@given(lts=lifetimes_lists(), alignment=st.sampled_from([1, 16, 64]))
def test_property_plans_valid(lts: list[Lifetime], alignment: int) -> None:
    check_all(lts, alignment)
    best = plan_arena(lts, "best", alignment)
    assert best.arena_bytes == min(
        plan_arena(lts, name, alignment).arena_bytes for name in STRATEGIES
    )


@st.composite
def random_graphs(draw: st.DrawFn) -> GraphInfo:
    sizes: dict[str, int] = {}
    n_inputs = draw(st.integers(1, 3))
    inputs = [f"in{i}" for i in range(n_inputs)]
    for name in inputs:
        sizes[name] = draw(st.integers(0, 5000))
    weights = ["w0", "w1"]
    for name in weights:
        sizes[name] = draw(st.integers(1, 5000))
    available = list(inputs)
    ops = []
    for i in range(draw(st.integers(0, 25))):
        ins = draw(st.lists(st.sampled_from(available + weights), min_size=1, max_size=3))
        outs = [f"t{i}_{k}" for k in range(draw(st.integers(1, 2)))]
        for name in outs:
            sizes[name] = draw(st.integers(0, 5000))
        ops.append((ins, outs))
        available.extend(outs)
    outputs = draw(st.lists(st.sampled_from(available), min_size=1, max_size=3, unique=True))
    return make_graph(sizes, ops, inputs=inputs, outputs=outputs, weights=weights)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(g=random_graphs(), alignment=st.sampled_from([1, 64]))
def test_property_random_graphs(g: GraphInfo, alignment: int) -> None:
    lts = tensor_lifetimes(g)
    life = {lt.name: lt for lt in lts}
    n = len(g.ops)
    # Every non-weight, non-empty tensor an op touches is resident at that op's step.
    for i, op in enumerate(g.ops):
        for name in (*op.inputs, *op.outputs):
            t = g.tensors[name]
            if t.kind == "weight" or t.nbytes == 0:
                assert name not in life
            else:
                assert life[name].first <= i <= life[name].last
    # ... and not longer than needed.
    for name, lt in life.items():
        producers = [i for i, op in enumerate(g.ops) if name in op.outputs]
        consumers = [i for i, op in enumerate(g.ops) if name in op.inputs]
        first = 0 if name in g.inputs else producers[0]
        last = max([first, *consumers])
        if name in g.outputs:
            last = max(n - 1, 0)
        assert (lt.first, lt.last) == (first, last)
    for name in g.inputs:
        if g.tensors[name].nbytes:
            assert life[name].first == 0

    report = memory_report(g, alignment)
    assert report.num_tensors == len(lts)
    assert report.naive_bytes == naive_bytes(lts, alignment)
    assert (report.lower_bound_bytes, report.peak_step) == lower_bound(lts, alignment)
    assert report.best.arena_bytes == min(p.arena_bytes for p in report.plans)
    for plan in report.plans:
        check_plan(lts, plan, alignment=alignment)
        assert report.lower_bound_bytes <= plan.arena_bytes <= report.naive_bytes
        assert all(off % alignment == 0 for off in plan.offsets.values())
