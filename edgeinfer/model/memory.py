"""Activation memory of a graph: tensor lifetimes, bounds, and an arena planner.

Every non-weight tensor (graph inputs, activations, graph outputs) gets a *lifetime*: the
inclusive range of op steps during which it must be resident. From the lifetimes we derive

* the **naive** size: every tensor in its own buffer (the sum of all sizes);
* a **lower bound**: the largest sum of sizes of tensors alive at one step; no arena that
  keeps those tensors disjoint can be smaller;
* **arena plans**: a byte offset for every tensor inside one shared arena, such that two
  tensors alive at a common step never overlap.

This planner is edgeinfer's own code: no library plans ONNX activation memory in a form a user
can read, so we reimplement the published heuristics on :class:`~edgeinfer.model.graph.GraphInfo`.

* ``greedy_by_size`` follows TFLite's ``ArenaPlanner`` / ``SimpleMemoryArena`` (tensors by size
  descending, each placed in the smallest gap that fits among the time-overlapping tensors
  already placed) and the "Greedy by Size for offset calculation" of Pisarchyk & Lee.
* ``greedy_by_breadth`` is the "Greedy by Breadth" of Y. Pisarchyk and J. Lee, *Efficient
  Memory Management for Deep Neural Net Inference*, arXiv:2001.03288 (2020): operators by the
  total size of their live tensors, descending; each op's unplaced tensors by size descending.
* ``greedy_by_size_lifetime`` is a variant of greedy by size that breaks size ties (after
  rounding to the alignment) by the longer lifetime first.

Inputs and outputs of one op are alive together at its step: the planner never assumes
in-place reuse. All sizes are rounded up to ``alignment`` bytes everywhere (naive size, lower
bound, plans) so the numbers compare fairly, and every offset is a multiple of ``alignment``.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edgeinfer.errors import ShapeError
from edgeinfer.model.graph import GraphInfo

__all__ = [
    "PLANNERS",
    "ArenaPlan",
    "Lifetime",
    "MemoryReport",
    "check_plan",
    "lower_bound",
    "memory_report",
    "naive_bytes",
    "plan_arena",
    "register_planner",
    "tensor_lifetimes",
]


@dataclass(frozen=True)
class Lifetime:
    """One arena tensor: ``size`` bytes, resident from op step ``first`` to ``last`` inclusive."""

    name: str
    size: int
    first: int
    last: int

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"tensor {self.name!r}: negative size {self.size}")
        if self.first < 0 or self.last < self.first:
            raise ValueError(
                f"tensor {self.name!r}: bad lifetime [{self.first}, {self.last}] "
                "(need 0 <= first <= last)"
            )


@dataclass(frozen=True)
class ArenaPlan:
    """The output of one strategy: each tensor's byte offset and the arena size it needs."""

    strategy: str
    offsets: dict[str, int]
    arena_bytes: int


@dataclass(frozen=True)
class MemoryReport:
    """Activation memory of a graph: naive size, lower bound, and one plan per strategy."""

    naive_bytes: int
    lower_bound_bytes: int
    plans: tuple[ArenaPlan, ...]
    best: ArenaPlan
    peak_step: int
    num_tensors: int
    alignment: int


Planner = Callable[[list[Lifetime], int], ArenaPlan]

PLANNERS: dict[str, Planner] = {}
"""Registered strategies by name, in registration order (the tie-break order of ``"best"``)."""


def register_planner(name: str) -> Callable[[Planner], Planner]:
    """Decorator that registers ``fn(lifetimes, alignment) -> ArenaPlan`` under ``name``."""

    def deco(fn: Planner) -> Planner:
        if name in PLANNERS or name == "best":
            raise ValueError(f"planner {name!r} is already registered")
        PLANNERS[name] = fn
        return fn

    return deco


# --------------------------------------------------------------------------- lifetimes


def tensor_lifetimes(graph: GraphInfo) -> list[Lifetime]:
    """Lifetimes of the graph's arena tensors (non-weight, ``nbytes > 0``), in first-seen order.

    Steps are op indices ``0..n-1``. A graph input lives from step 0; a tensor produced by op
    ``i`` from step ``i``; each lives until its last consumer (or its producer / step 0 when
    never consumed); a graph output lives until step ``n-1``. Tensors no op touches and that are
    neither graph inputs nor outputs need no memory and are left out.
    """
    n = len(graph.ops)
    end = max(n - 1, 0)
    inputs = set(graph.inputs)
    outputs = set(graph.outputs)
    producer: dict[str, int] = {}
    last_use: dict[str, int] = {}
    order: dict[str, None] = {}  # insertion-ordered set of referenced names

    for name in graph.inputs:
        order[name] = None
    for i, op in enumerate(graph.ops):
        for name in op.inputs:
            if name:
                order[name] = None
                last_use[name] = i
        for name in op.outputs:
            if name:
                order[name] = None
                producer.setdefault(name, i)
    for name in graph.outputs:
        order[name] = None

    result: list[Lifetime] = []
    for name in order:
        info = graph.tensors.get(name)
        if info is None or info.kind == "weight":
            continue
        if any(d < 0 for d in info.shape):
            raise ShapeError(
                f"tensor {name!r} has unresolved shape {info.shape}; "
                "pass input shapes so every dimension is known"
            )
        size = info.nbytes
        if size <= 0:
            continue
        is_input = name in inputs or info.kind == "input"
        # Not a graph input and never produced: conservatively resident from the start.
        first = 0 if is_input or name not in producer else producer[name]
        last = max(first, last_use.get(name, first))
        if name in outputs or info.kind == "output":
            last = end
        result.append(Lifetime(name, size, first, last))
    return result


# --------------------------------------------------------------------------- bounds


def _align(size: int, alignment: int) -> int:
    return -(-size // alignment) * alignment


def _check_alignment(alignment: int) -> None:
    if not isinstance(alignment, int) or alignment < 1:
        raise ValueError(f"alignment must be a positive integer, got {alignment!r}")


def naive_bytes(lifetimes: Sequence[Lifetime], alignment: int = 64) -> int:
    """Memory with every tensor in its own buffer: the sum of the aligned sizes."""
    _check_alignment(alignment)
    return sum(_align(lt.size, alignment) for lt in lifetimes)


def lower_bound(lifetimes: Sequence[Lifetime], alignment: int = 64) -> tuple[int, int]:
    """``(bytes, step)``: the largest sum of aligned sizes alive at one step, and that step.

    The earliest such step wins ties; ``(0, 0)`` for no tensors.
    """
    _check_alignment(alignment)
    if not lifetimes:
        return 0, 0
    steps = max(lt.last for lt in lifetimes) + 2
    delta = [0] * steps
    for lt in lifetimes:
        s = _align(lt.size, alignment)
        delta[lt.first] += s
        delta[lt.last + 1] -= s
    best, best_step, live = 0, 0, 0
    for step in range(steps - 1):
        live += delta[step]
        if live > best:
            best, best_step = live, step
    return best, best_step


# --------------------------------------------------------------------------- planners


@dataclass(frozen=True)
class _Item:
    name: str
    size: int  # aligned
    first: int
    last: int


def _prepare(lifetimes: Sequence[Lifetime], alignment: int) -> list[_Item]:
    _check_alignment(alignment)
    seen: set[str] = set()
    items = []
    for lt in lifetimes:
        if lt.name in seen:
            raise ValueError(f"tensor {lt.name!r} appears twice in the lifetimes")
        seen.add(lt.name)
        items.append(_Item(lt.name, _align(lt.size, alignment), lt.first, lt.last))
    return items


class _Arena:
    """Placed tensors kept sorted by offset; best-fit placement among time-overlapping ones."""

    def __init__(self) -> None:
        # (offset, end, first, last, name); sorted by offset (then the rest).
        self.placed: list[tuple[int, int, int, int, str]] = []
        self.offsets: dict[str, int] = {}
        self.size = 0

    def place(self, item: _Item) -> None:
        first, last, size = item.first, item.last, item.size
        prev_end = 0
        best_offset = -1
        best_gap = -1
        for off, end, f, la, _ in self.placed:
            if f > last or la < first:
                continue  # not alive together: may share memory
            gap = off - prev_end
            if gap >= size and (best_offset < 0 or gap < best_gap):
                best_offset, best_gap = prev_end, gap
            if end > prev_end:
                prev_end = end
        offset = best_offset if best_offset >= 0 else prev_end
        insort(self.placed, (offset, offset + size, first, last, item.name))
        self.offsets[item.name] = offset
        self.size = max(self.size, offset + size)

    def plan(self, strategy: str) -> ArenaPlan:
        return ArenaPlan(strategy=strategy, offsets=dict(self.offsets), arena_bytes=self.size)


def _place_in_order(items: list[_Item], strategy: str) -> ArenaPlan:
    arena = _Arena()
    for item in items:
        arena.place(item)
    return arena.plan(strategy)


@register_planner("greedy_by_size")
def greedy_by_size(lifetimes: list[Lifetime], alignment: int) -> ArenaPlan:
    """TFLite / Pisarchyk & Lee greedy by size: largest first (ties: earlier, then name)."""
    items = _prepare(lifetimes, alignment)
    items.sort(key=lambda it: (-it.size, it.first, it.name))
    return _place_in_order(items, "greedy_by_size")


@register_planner("greedy_by_breadth")
def greedy_by_breadth(lifetimes: list[Lifetime], alignment: int) -> ArenaPlan:
    """Pisarchyk & Lee greedy by breadth: ops by live bytes descending, their tensors by size."""
    items = _prepare(lifetimes, alignment)
    arena = _Arena()
    if not items:
        return arena.plan("greedy_by_breadth")
    steps = max(it.last for it in items) + 1
    delta = [0] * (steps + 1)
    for it in items:
        delta[it.first] += it.size
        delta[it.last + 1] -= it.size
    breadth = []
    live = 0
    for step in range(steps):
        live += delta[step]
        breadth.append(live)
    step_order = sorted(range(steps), key=lambda s: (-breadth[s], s))
    remaining = sorted(items, key=lambda it: (-it.size, it.first, it.name))
    for step in step_order:
        if not remaining:
            break
        keep = []
        for it in remaining:
            if it.first <= step <= it.last:
                arena.place(it)
            else:
                keep.append(it)
        remaining = keep
    return arena.plan("greedy_by_breadth")


@register_planner("greedy_by_size_lifetime")
def greedy_by_size_lifetime(lifetimes: list[Lifetime], alignment: int) -> ArenaPlan:
    """Greedy by size with ties broken by the longer lifetime first (then earlier, then name)."""
    items = _prepare(lifetimes, alignment)
    items.sort(key=lambda it: (-it.size, it.first - it.last, it.first, it.name))
    return _place_in_order(items, "greedy_by_size_lifetime")


def plan_arena(
    lifetimes: Sequence[Lifetime], strategy: str = "best", alignment: int = 64
) -> ArenaPlan:
    """Plan the arena with one registered strategy, or ``"best"``: the smallest of them all.

    Ties under ``"best"`` go to the strategy registered first. Raises ``ValueError`` for an
    unknown strategy.
    """
    lts = list(lifetimes)
    if strategy == "best":
        best: ArenaPlan | None = None
        for fn in PLANNERS.values():
            plan = fn(lts, alignment)
            if best is None or plan.arena_bytes < best.arena_bytes:
                best = plan
        assert best is not None
        return best
    fn = PLANNERS.get(strategy)
    if fn is None:
        known = ", ".join(["best", *PLANNERS])
        raise ValueError(f"unknown arena strategy {strategy!r}; choose one of: {known}")
    return fn(lts, alignment)


def check_plan(lifetimes: Sequence[Lifetime], plan: ArenaPlan, alignment: int = 1) -> None:
    """Raise ``ValueError`` if ``plan`` is invalid for ``lifetimes``.

    Invalid means: a tensor has no offset or a negative one, extends past ``arena_bytes``, or
    overlaps in memory another tensor alive at a common step (the message names both). Sizes
    are rounded up to ``alignment`` first (1: check the raw byte sizes).
    """
    _check_alignment(alignment)
    spans: list[tuple[int, int, int, int, str]] = []
    for lt in lifetimes:
        if lt.name not in plan.offsets:
            raise ValueError(f"plan {plan.strategy!r} has no offset for tensor {lt.name!r}")
        off = plan.offsets[lt.name]
        end = off + _align(lt.size, alignment)
        if off < 0:
            raise ValueError(f"plan {plan.strategy!r}: tensor {lt.name!r} at negative offset")
        if end > plan.arena_bytes:
            raise ValueError(
                f"plan {plan.strategy!r}: tensor {lt.name!r} ends at byte {end}, "
                f"past the arena of {plan.arena_bytes} bytes"
            )
        spans.append((off, end, lt.first, lt.last, lt.name))
    spans.sort()
    for i, (_, end_i, first_i, last_i, name_i) in enumerate(spans):
        for off_j, _, first_j, last_j, name_j in spans[i + 1 :]:
            if off_j >= end_i:
                break  # sorted by offset: no later tensor overlaps tensor i in memory
            if first_j <= last_i and first_i <= last_j:
                raise ValueError(
                    f"plan {plan.strategy!r}: tensors {name_i!r} and {name_j!r} overlap in "
                    f"memory while both alive at step {max(first_i, first_j)}"
                )


# --------------------------------------------------------------------------- report


def memory_report(graph: GraphInfo, alignment: int = 64) -> MemoryReport:
    """Lifetimes, naive size, lower bound and every registered plan for ``graph``."""
    lifetimes = tensor_lifetimes(graph)
    lb, step = lower_bound(lifetimes, alignment)
    plans = tuple(fn(lifetimes, alignment) for fn in PLANNERS.values())
    best = plans[0]
    for plan in plans[1:]:
        if plan.arena_bytes < best.arena_bytes:
            best = plan
    return MemoryReport(
        naive_bytes=naive_bytes(lifetimes, alignment),
        lower_bound_bytes=lb,
        plans=plans,
        best=best,
        peak_step=step,
        num_tensors=len(lifetimes),
        alignment=alignment,
    )
