"""Tile grids (property tests over frame sizes) and the merge of tile detections."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeinfer.vision.boxes import Detections
from edgeinfer.vision.tiling import (
    Tile,
    TileMerger,
    axis_starts,
    merge_detections,
    tile_grid,
    tile_stride,
)

# --- grid ------------------------------------------------------------------------------------


def test_five_megapixel_frame_at_640() -> None:
    tiles = tile_grid(1944, 2592, 640, 0.2)
    assert tile_stride(640, 0.2) == 512
    assert axis_starts(2592, 640, 0.2) == [0, 512, 1024, 1536, 1952]
    assert axis_starts(1944, 640, 0.2) == [0, 512, 1024, 1304]
    assert len(tiles) == 20
    assert tiles[0] == Tile(0, 0, 640, 640)
    assert tiles[-1] == Tile(1952, 1304, 2592, 1944)


def test_frame_smaller_than_a_tile_is_one_tile() -> None:
    assert tile_grid(300, 500, 640, 0.2) == [Tile(0, 0, 500, 300)]
    assert tile_grid(640, 640, 640, 0.2) == [Tile(0, 0, 640, 640)]
    # one side shorter: one row of tiles that are that side's length
    assert {(t.height, t.width) for t in tile_grid(100, 1000, 640, 0.25)} == {(100, 640)}


@pytest.mark.parametrize("tile, overlap", [(0, 0.2), (640, -0.1), (640, 1.0)])
def test_bad_arguments(tile: int, overlap: float) -> None:
    with pytest.raises(ValueError):
        tile_grid(100, 100, tile, overlap)


def test_tile_crop_is_a_view() -> None:
    frame = np.zeros((50, 60, 3), np.uint8)
    crop = Tile(10, 5, 30, 25).crop(frame)
    assert crop.shape == (20, 20, 3)
    assert np.shares_memory(crop, frame)


@st.composite
def frames(draw: st.DrawFn, max_side: int = 3000) -> tuple[int, int, int, float]:
    """A frame (height, width) and a tile/overlap; at most ~40 tiles a side (keeps it fast)."""
    tile = draw(st.integers(1, 700))
    overlap = draw(st.floats(0.0, 0.9))
    limit = min(max_side, max(1, tile_stride(tile, overlap) * 40))
    return draw(st.integers(1, limit)), draw(st.integers(1, limit)), tile, overlap


@settings(max_examples=300, deadline=None)
@given(frame=frames())
def test_grid_properties(frame: tuple[int, int, int, float]) -> None:
    height, width, tile, overlap = frame
    tiles = tile_grid(height, width, tile, overlap)
    stride = tile_stride(tile, overlap)
    shared = tile - stride
    assert shared >= tile * overlap - 1e-6 or stride == 1  # at least the overlap asked for
    assert len(set(tiles)) == len(tiles)
    for t in tiles:  # inside the frame, exactly tile px (or the whole side when shorter)
        assert 0 <= t.x0 < t.x1 <= width and 0 <= t.y0 < t.y1 <= height
        assert t.width == min(tile, width) and t.height == min(tile, height)
    for length, starts in ((width, sorted({t.x0 for t in tiles})),
                           (height, sorted({t.y0 for t in tiles}))):
        side = min(tile, length)
        assert starts[0] == 0 and starts[-1] + side == length  # covers the first/last pixel
        for a, b in itertools.pairwise(starts):
            assert b - a <= stride  # neighbours share at least `shared` px: no gap
            assert a + side - b >= shared
        for a, b in itertools.pairwise(starts[:-1]):
            assert b - a == stride  # exactly the asked overlap except for the edge-aligned last
        if length > tile:  # no more tiles than needed
            assert len(starts) == math.ceil((length - tile) / stride) + 1
    assert len(tiles) == len({t.x0 for t in tiles}) * len({t.y0 for t in tiles})


@settings(max_examples=60, deadline=None)
@given(frame=frames(max_side=200))
def test_grid_covers_every_pixel(frame: tuple[int, int, int, float]) -> None:
    height, width, tile, overlap = frame
    covered = np.zeros((height, width), np.int32)
    for t in tile_grid(height, width, tile, overlap):
        covered[t.y0 : t.y1, t.x0 : t.x1] += 1
    assert covered.min() >= 1


# --- merge -----------------------------------------------------------------------------------


def dets(boxes: list[list[float]], scores: list[float] | None = None,
         classes: list[int] | None = None) -> Detections:
    n = len(boxes)
    return Detections(
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(scores if scores is not None else [0.9] * n, np.float32),
        np.asarray(classes if classes is not None else [0] * n, np.int64),
        ("defect", "other"),
    )


def boxes_of(d: Detections) -> list[list[float]]:
    return sorted(d.boxes.round(3).tolist())


def test_box_cut_by_a_border_without_overlap_is_fused() -> None:
    tiles = [Tile(0, 0, 64, 64), Tile(64, 0, 128, 64)]
    parts = [dets([[50, 10, 64, 30]], [0.6]), dets([[64, 10, 80, 30]], [0.8])]
    merged = merge_detections(parts, 0.45, tiles=tiles)
    assert boxes_of(merged) == [[50, 10, 80, 30]]
    assert merged.scores.tolist() == pytest.approx([0.8])
    assert merged.labels == ("defect", "other")


def test_box_cut_in_one_tile_and_whole_in_the_overlap_is_fused() -> None:
    # tile A sees 56..64 of an object 56..72 (cut at its right edge); B (48..112) sees it whole.
    # IoU(piece, whole) = 0.5: NMS alone would drop the whole box if the piece scored higher.
    tiles = [Tile(0, 0, 64, 64), Tile(48, 0, 112, 64)]
    parts = [dets([[56, 20, 64, 36]], [0.95]), dets([[56, 20, 72, 36]], [0.7])]
    merged = merge_detections(parts, 0.45, tiles=tiles)
    assert boxes_of(merged) == [[56, 20, 72, 36]]
    assert merged.scores.tolist() == pytest.approx([0.95])
    plain = merge_detections(parts, 0.45, tiles=tiles, border_merge=False)
    assert boxes_of(plain) == [[56, 20, 64, 36]]  # what plain NMS does: keeps the piece


def test_object_wider_than_a_tile_is_fused_across_three_tiles() -> None:
    tiles = tile_grid(64, 160, 64, 0.25)  # x: 0, 48, 96
    assert [t.x0 for t in tiles] == [0, 48, 96]
    obj = [10, 5, 150, 40]
    parts = [dets([[max(obj[0], t.x0), 5, min(obj[2], t.x1), 40]]) for t in tiles]
    merged = merge_detections(parts, 0.45, tiles=tiles)
    assert boxes_of(merged) == [obj]


def test_object_on_a_tile_corner_is_fused_from_four_pieces_in_any_order() -> None:
    tiles = tile_grid(128, 128, 64, 0.0)
    obj = np.array([50, 55, 80, 70], np.float32)
    pieces = []
    for t in tiles:
        p = [max(obj[0], t.x0), max(obj[1], t.y0), min(obj[2], t.x1), min(obj[3], t.y1)]
        pieces.append(dets([p], [0.5 + 0.1 * len(pieces)]))
    for order in itertools.permutations(range(4)):
        merged = merge_detections([pieces[i] for i in order], 0.45,
                                  tiles=[tiles[i] for i in order])
        assert boxes_of(merged) == [obj.tolist()]
        assert merged.scores[0] == pytest.approx(0.8)


def test_duplicates_in_overlap_zones_are_removed() -> None:
    # an object wholly inside the overlap of four tiles: four near-identical boxes
    tiles = tile_grid(112, 112, 64, 0.25)  # starts 0, 48
    parts = [
        dets([[50 + d, 50, 60 + d, 61]], [s]) for d, s in zip((0, 0.5, -0.5, 0.2),
                                                                (0.7, 0.9, 0.8, 0.6), strict=True)
    ]
    merged = merge_detections(parts, 0.45, tiles=tiles)
    assert len(merged) == 1
    assert merged.scores[0] == pytest.approx(0.9)
    assert boxes_of(merged) == [[50.5, 50, 60.5, 61]]


def test_what_is_not_fused() -> None:
    tiles = [Tile(0, 0, 64, 64), Tile(64, 0, 128, 64)]
    # another class across the border
    merged = merge_detections([dets([[50, 10, 64, 30]]), dets([[64, 10, 80, 30]], classes=[1])],
                              tiles=tiles)
    assert len(merged) == 2
    # not lined up across the cut (y extents share 2 px of 10)
    merged = merge_detections([dets([[50, 10, 64, 20]]), dets([[64, 18, 80, 40]])], tiles=tiles)
    assert len(merged) == 2
    # the neighbour does not touch the cut piece
    merged = merge_detections([dets([[50, 10, 64, 30]]), dets([[70, 10, 80, 30]])], tiles=tiles)
    assert len(merged) == 2
    # an object that ends before the tile edge is not cut, so not fused with one just after it
    merged = merge_detections([dets([[40, 10, 60, 30]]), dets([[64, 10, 80, 30]])], tiles=tiles)
    assert len(merged) == 2


def test_frame_edges_cut_nothing() -> None:
    merger = TileMerger(128, 64)
    boxes = np.array([[0, 0, 10, 10], [120, 50, 128, 64], [60, 10, 64, 20]], np.float32)
    cuts = merger.cut_lines(boxes, Tile(0, 0, 64, 64))
    assert np.isnan(cuts[0]).all()  # top-left corner of the frame
    assert cuts[2, 2] == 64 and np.isnan(cuts[2, [0, 1, 3]]).all()
    cuts = merger.cut_lines(boxes, Tile(64, 0, 128, 64))
    assert np.isnan(cuts[1]).all()  # bottom-right corner of the frame
    assert np.isnan(merger.cut_lines(boxes, None)).all()  # a full-frame pass cuts nothing


def test_nested_objects_away_from_borders_stay_apart() -> None:
    # SAHI's NMM/GREEDYNMM (IOS >= 0.5) would fuse these: the small one lies inside the big one
    tiles = [Tile(0, 0, 64, 64)]
    merged = merge_detections([dets([[10, 10, 40, 40], [15, 15, 30, 30]], [0.9, 0.8])],
                              tiles=tiles)
    assert len(merged) == 2


def test_contained_boxes_are_dropped_only_when_asked() -> None:
    parts = [dets([[10, 10, 40, 40], [15, 15, 28, 30], [20, 5, 60, 30], [14, 14, 20, 20]],
                  [0.9, 0.8, 0.7, 0.95], [0, 0, 0, 1])]
    tiles = [Tile(0, 0, 64, 64)]
    assert len(merge_detections(parts, 0.45, tiles=tiles)) == 4
    merged = merge_detections(parts, 0.45, tiles=tiles, contain_threshold=0.5)
    # the box 15..28 x 15..30 lies inside the better 10..40 box: dropped; 20..60 x 5..30 is
    # mostly outside it (40% of its area inside): kept; another class inside: kept
    assert boxes_of(merged) == [[10, 10, 40, 40], [14, 14, 20, 20], [20, 5, 60, 30]]
    # a better box inside a worse one does not remove the worse one
    merged = merge_detections([dets([[10, 10, 40, 40], [15, 15, 30, 30]], [0.5, 0.9])],
                              tiles=tiles, contain_threshold=0.5)
    assert len(merged) == 2


def test_full_frame_pass_merges_with_tile_pieces() -> None:
    tiles = [Tile(0, 0, 64, 64), Tile(64, 0, 128, 64), None]
    parts = [dets([[50, 10, 64, 30]], [0.6]), dets([[64, 10, 80, 30]], [0.7]),
             dets([[49, 9, 81, 31]], [0.5])]  # the full-frame pass sees it whole, coarser
    merged = merge_detections(parts, 0.45, tiles=tiles)
    # the pieces fuse first; the full-frame box is then a duplicate of the fused one (NMS)
    assert boxes_of(merged) == [[50, 10, 80, 30]]
    assert merged.scores[0] == pytest.approx(0.7)
    # a piece the neighbour tile missed is completed by the full-frame box
    merged = merge_detections([parts[0], dets([]), parts[2]], 0.45, tiles=tiles)
    assert boxes_of(merged) == [[49, 9, 81, 31]]
    assert merged.scores[0] == pytest.approx(0.6)


def test_merge_without_tiles_is_nms() -> None:
    merged = merge_detections([dets([[0, 0, 10, 10]], [0.5]), dets([[0, 0, 10, 11]], [0.6]),
                               dets([[30, 0, 40, 10]], [0.4])])
    assert boxes_of(merged) == [[0, 0, 10, 11], [30, 0, 40, 10]]
    assert merged.scores.tolist() == pytest.approx([0.6, 0.4])  # score-descending
    assert len(merge_detections([])) == 0


def test_incremental_merger_keeps_only_merged_boxes() -> None:
    tiles = tile_grid(640, 640, 64, 0.0)
    merger = TileMerger(640, 640)
    for t in tiles:  # the same object, whole, reported by every tile's neighbour: nothing grows
        merger.add(dets([[t.x0 + 10, t.y0 + 10, t.x0 + 20, t.y0 + 20]] * 3), t)
    assert len(merger) == len(tiles)
    assert len(merger.result()) == len(tiles)


@st.composite
def scenes(draw: st.DrawFn) -> tuple[int, int, int, float, list[list[int]]]:
    height, width = draw(st.integers(40, 300)), draw(st.integers(40, 400))
    tile = draw(st.integers(24, 128))
    overlap = draw(st.sampled_from([0.0, 0.1, 0.25, 0.5]))
    objects: list[list[int]] = []
    for _ in range(draw(st.integers(1, 6))):
        w, h = draw(st.integers(3, 150)), draw(st.integers(3, 150))
        x, y = draw(st.integers(0, max(0, width - w))), draw(st.integers(0, max(0, height - h)))
        box = [x, y, min(width, x + w), min(height, y + h)]
        gap = 8  # distinct objects never touch: each stays its own
        if all(box[0] >= o[2] + gap or o[0] >= box[2] + gap or box[1] >= o[3] + gap
               or o[1] >= box[3] + gap for o in objects):
            objects.append(box)
    return height, width, tile, overlap, objects


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scene=scenes(), seed=st.integers(0, 2**16))
def test_ideal_tile_detections_merge_back_to_the_objects(scene, seed: int) -> None:
    """A perfect detector reports, in each tile, the visible part of every object; the merge
    gives back each object once, to within the edge tolerance (a part sticking out of a tile by
    2 px or less is indistinguishable from a real edge there)."""
    height, width, tile, overlap, objects = scene
    rng = np.random.default_rng(seed)
    tiles = tile_grid(height, width, tile, overlap)
    parts = []
    for t in tiles:
        visible = []
        for o in objects:
            p = [max(o[0], t.x0), max(o[1], t.y0), min(o[2], t.x1), min(o[3], t.y1)]
            if p[2] > p[0] and p[3] > p[1]:
                visible.append(p)
        parts.append(dets(visible, rng.uniform(0.3, 1.0, len(visible)).tolist()))
    merged = merge_detections(parts, 0.45, tiles=tiles)
    assert len(merged) == len(objects)
    for o in objects:
        err = np.abs(merged.boxes - np.asarray(o, np.float32)).max(axis=1)
        assert err.min() <= 2.0 + 1e-4, (o, merged.boxes)
