"""camloc.dtbox: the CAM authors' dt_box generator, checked on maps whose boxes are worked out by hand.

Hand rules used below (see the module docstring): a pixel is foreground at threshold t when
gray > t; its distance d to the nearest background pixel (the image edge is not background) is kept
when int(d * 255 / d_max + 0.5) > 10; every contour (holes too) of every layer gives a rectangle,
clamped with W-5 / H-5; sort by area; the suppression loop skips the box after an erased one.
For an axis-aligned rectangle of foreground, d = min of the four axis distances to the outside row/column.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from camloc.boxes import authors as dtbox
from camloc.boxes.authors import (
    authors_boxes,
    authors_heatmap,
    authors_layers,
    authors_rects,
    authors_top5,
    rect_to_box,
)
from tests.helpers.dt_reference import dt_squared


def _blank(h: int, w: int) -> np.ndarray:
    return np.zeros((h, w), dtype=np.uint8)


# --------------------------------------------------------------------------------------------
# distance transform (dt.c) against scipy


@pytest.mark.parametrize("shape", [(37, 53), (1, 40), (40, 1), (64, 64), (5, 120)])
@pytest.mark.parametrize("p", [0.3, 0.9, 0.995])
def test_dt_is_exact_squared_edt(shape, p):
    rng = np.random.default_rng(hash((shape, p)) % 2**32)
    fg = rng.random(shape) < p
    fg.flat[rng.integers(fg.size)] = False  # at least one background pixel
    got = dt_squared(np.where(fg, 1e20, 0.0))
    want = ndimage.distance_transform_edt(fg) ** 2  # distance to the nearest zero, edge not background
    assert np.array_equal(got, np.round(want))


def test_dt_without_background_stays_inf():
    # every pixel is its own nearest parabola: exactly 1e20 everywhere (dt.c's arithmetic)
    assert np.all(dt_squared(np.full((75, 400), 1e20)) == 1e20)


def test_dt_binary_equals_the_port_of_dt_c():
    rng = np.random.default_rng(11)
    for shape, p in [((37, 53), 0.6), ((64, 64), 0.97), ((1, 40), 0.5), ((80, 30), 0.995)]:
        b = np.where(rng.random(shape) < p, 255, 0).astype(np.uint8)
        b.flat[rng.integers(b.size)] = 0
        d = np.sqrt(dt_squared(np.where(b > 0, 1e20, 0.0)))
        expected = np.clip(np.trunc(d * (255.0 / (d.max() - d.min())) + 0.5), 0, 255).astype(np.uint8)
        assert np.array_equal(dtbox._dt_binary(b), expected)


def test_layers_match_scipy_formula_on_random_maps():
    rng = np.random.default_rng(7)
    for _ in range(5):
        noise = ndimage.gaussian_filter(rng.random((70, 90)), 6)
        g = authors_heatmap(noise - noise.min())
        for t, layer in zip((20, 100, 110), authors_layers(g), strict=True):
            fg = g > t
            d = ndimage.distance_transform_edt(fg)
            keep = np.floor(d * (255.0 / d.max()) + 0.5) > 10 if (~fg).any() else fg
            assert np.array_equal(layer > 0, keep)


# --------------------------------------------------------------------------------------------
# erosion level (dt_binary + threshold 10)


def test_uniform_rectangle_without_erosion_gives_two_identical_boxes():
    g = _blank(60, 80)
    g[20:40, 30:70] = 200  # rows 20..39, cols 30..69: d_max = 10 -> nothing eroded
    layers = authors_layers(g)
    for layer in layers:
        assert np.array_equal(layer > 0, g > 0)
    # the same rectangle at 20, 100 and 110; mergeBBox erases #2, its ++j skips #3
    assert authors_rects(g) == [(30, 20, 40, 20), (30, 20, 40, 20)]
    assert authors_boxes(g) == [(30, 20, 70, 40)] * 2  # MATLAB's [x y x+w y+h]
    assert authors_boxes(g, convention="pixels") == [(30, 20, 69, 39)] * 2


@pytest.mark.parametrize(
    "rows, shrink",
    [
        (48, 0),  # d_max 24: d=1 -> int(255/24 + .5) = 11 > 10, kept
        (50, 1),  # d_max 25: d=1 -> int(10.2 + .5) = 10, removed; d=2 -> 20 kept
        (60, 1),  # d_max 30: d=1 -> 9 removed, d=2 -> 17 kept
        (100, 2),  # d_max 50: d=1 -> 5, d=2 -> int(10.2 + .5) = 10 removed; d=3 -> 15 kept
    ],
)
def test_erosion_is_relative_to_the_deepest_pixel(rows, shrink):
    h, w = rows + 40, 240
    g = _blank(h, w)
    g[20 : 20 + rows, 20:220] = 255  # 200 columns wide, so d_max = rows / 2
    want = np.zeros_like(g, dtype=bool)
    want[20 + shrink : 20 + rows - shrink, 20 + shrink : 220 - shrink] = True
    for layer in authors_layers(g):
        assert np.array_equal(layer > 0, want)
    rect = (20 + shrink, 20 + shrink, 200 - 2 * shrink, rows - 2 * shrink)
    assert authors_rects(g) == [rect, rect]


def test_two_blobs_share_one_d_max():
    g = _blank(100, 150)
    g[20:80, 25:125] = 255  # 60 x 100, d_max 30 for the whole layer: d = 1 is removed everywhere
    g[88:92, 5:9] = 255  # 4 x 4: d = 1 ring removed, its 2 x 2 core (d = 2) kept
    big, small = (26, 21, 98, 58), (6, 89, 2, 2)
    # sorted: big x3, small x3; each triple loses its 2nd box only (skip after erase)
    assert authors_rects(g) == [big, big, small, small]
    assert authors_boxes(g) == [(26, 21, 124, 79)] * 2 + [(6, 89, 8, 91)] * 2


# --------------------------------------------------------------------------------------------
# thresholds, nesting, holes, clamping


def test_threshold_is_strictly_greater():
    g = _blank(50, 50)
    g[5:15, 5:15] = 100  # only in the layer of 20 (100 > 100 is false)
    g[25:33, 25:33] = 101  # layers 20 and 100, not 110
    l20, l100, l110 = authors_layers(g)
    assert np.array_equal(l20 > 0, g > 0)
    assert np.array_equal(l100 > 0, g == 101)
    assert not l110.any()
    a, b = (5, 5, 10, 10), (25, 25, 8, 8)
    assert authors_rects(g) == [a, b]  # [a, b, b]: b's duplicate is erased by b


def test_small_core_inside_a_low_region():
    g = _blank(80, 100)
    g[10:50, 10:90] = 60  # layer 20 only: 40 x 80 = 3200, d_max 20
    g[20:30, 30:50] = 200  # all layers: 10 x 20 = 200
    low, core = (10, 10, 80, 40), (30, 20, 20, 10)
    # core vs low: overlap 200 <= 1600 kept; core vs core: 200 > 100 erased
    assert authors_rects(g) == [low, core]


def test_big_core_survives_by_the_skip_after_erase():
    g = _blank(80, 100)
    g[10:50, 10:90] = 60
    g[12:48, 12:88] = 200  # 36 x 76 = 2736 > 3200 / 2, d_max 18
    low, core = (10, 10, 80, 40), (12, 12, 76, 36)
    # [low, core, core]: the first core is erased by low, the loop then skips the second one
    assert authors_rects(g) == [low, core]


def test_hole_contours_count():
    g = _blank(40, 40)
    g[5:25, 5:25] = 255
    g[12:18, 10:16] = 0  # 6 x 6 hole; RETR_CCOMP returns its contour: the hole grown by 1 pixel
    outer, hole = (5, 5, 20, 20), (9, 11, 8, 8)
    assert authors_rects(g) == [outer, outer, hole, hole]


def test_clamping_and_old_opencv_border():
    g = _blank(40, 50)
    g[0:10, 10:20] = 255  # touches the top edge
    # OpenCV <= 3.1 clears the 1-pixel frame: the blob starts at row 1
    assert authors_rects(g) == [(10, 1, 10, 9)] * 2
    assert authors_rects(g, zero_border=False) == [(10, 0, 10, 10)] * 2

    g = _blank(40, 50)
    g[10:20, 40:50] = 255  # touches the right edge: frame cleared -> bx 40, bw 9; w = LIMIT(9, 0, 50-40-5)
    assert authors_rects(g) == [(40, 10, 5, 10)] * 2


def test_negative_width_after_clamping():
    g = _blank(40, 50)
    g[10:20, 47:50] = 255  # frame cleared -> bx 47, bw 2; x = LIMIT(47, 0, 45) = 45, w = LIMIT(2, 0, -2) = -2
    rect = (45, 10, -2, 10)
    # identical boxes of area -20: overlap 0 > int(-10) -> erased as duplicates, skip keeps one more
    assert authors_rects(g) == [rect, rect]
    assert rect_to_box(rect) == (43, 10, 45, 20)  # ILSVRC_evaluate_bbox.m's min/max repair
    assert rect_to_box(rect, "pixels") == (43, 10, 44, 19)


def test_empty_and_full_maps():
    assert authors_rects(_blank(30, 40)) == []
    # no background: dt.c leaves the layer at 255 (max == min); the cleared frame leaves (1, 1, W-2, H-2)
    full = np.full((30, 40), 200, dtype=np.uint8)
    assert authors_rects(full) == [(1, 1, 34, 24)] * 2  # w = LIMIT(38, 0, 40-1-5)


def test_rejected_thresholds_fall_back_to_dt_box_defaults():
    g = _blank(30, 30)
    g[5:15, 5:15] = 80  # above 30 only among (30, 90, 150)
    with pytest.warns(UserWarning):
        layers = authors_layers(g, (100, 20, 110))
    assert [bool(x.any()) for x in layers] == [True, False, False]
    with pytest.raises(ValueError):
        authors_layers(g.astype(np.float32))


# --------------------------------------------------------------------------------------------
# suppression rule on synthetic lists


def test_big_overlap_rule():
    a = (0, 0, 10, 10)  # area 100, limit int(50)
    assert not dtbox._big_overlap(a, (5, 0, 10, 10))  # overlap 50: not > 50
    assert dtbox._big_overlap(a, (4, 0, 10, 10))  # 60
    assert not dtbox._big_overlap(a, (0, 0, 7, 7))  # 49
    assert dtbox._big_overlap(a, (0, 0, 8, 8))  # 64
    assert not dtbox._big_overlap(a, (10, 0, 10, 10))  # touching half-open rectangles: 0
    assert dtbox._big_overlap((0, 0, 8, 8), a)  # symmetric: the larger area sets the limit


def test_rank_and_merge_order_and_skip():
    a, b, c, d = (0, 0, 10, 10), (0, 0, 9, 9), (1, 1, 8, 8), (0, 0, 10, 6)  # areas 100, 81, 64, 60
    m, far = (20, 0, 8, 8), (50, 50, 3, 3)
    assert dtbox._rank_and_merge([far, m, a]) == [a, m, far]  # largest first, nothing overlaps
    # b erased by a, the loop's ++j then skips c; d erased by a; c survives without being compared with a
    assert dtbox._rank_and_merge([d, c, b, a]) == [a, c]
    assert dtbox._rank_and_merge([a, a, a]) == [a, a]
    assert dtbox._rank_and_merge([a, a, a, a]) == [a, a]  # [a,a,a] after 1st erase, then [a,a]
    assert dtbox._rank_and_merge([]) == []


# --------------------------------------------------------------------------------------------
# heat map and top-5


def test_heatmap_max_only_clip_and_round():
    cam = np.array([[0.0, 1.0, 2.0], [-0.6, np.nan, 2.0 / 255 * 0.4999]], dtype=np.float32)
    assert authors_heatmap(cam).tolist() == [[0, 128, 255], [0, 0, 0]]  # 127.5 -> 128; negatives, NaN -> 0
    shifted = np.array([[10.0, 20.0]])  # no min subtraction
    assert authors_heatmap(shifted).tolist() == [[128, 255]]
    assert not authors_heatmap(-np.ones((2, 2))).any()


def test_heatmap_jpeg_round_trip_is_close():
    yy, xx = np.mgrid[:64, :80]
    cam = np.exp(-((yy - 30) ** 2 + (xx - 40) ** 2) / 300.0)
    plain = authors_heatmap(cam)
    jpeg = authors_heatmap(cam, jpeg_quality=75)
    assert jpeg.dtype == np.uint8 and jpeg.shape == plain.shape
    assert np.abs(jpeg.astype(int) - plain).max() <= 6


def test_top5_heuristics():
    k = [[(i, j, i + 1, j + 1) for j in range(3)] for i in range(5)]
    assert authors_top5(k) == [(0, k[0][0]), (0, k[0][1]), (1, k[1][0]), (1, k[1][1]), (2, k[2][0])]


def test_top5_short_lists():
    one = [(1, 1, 5, 5)]
    two = [(0, 0, 9, 9), (2, 2, 4, 4)]
    assert authors_top5([one, two, two]) == [(0, one[0]), (0, one[0]), (1, two[0]), (1, two[1]), (2, two[0])]
    with pytest.raises(ValueError):
        authors_top5([two, [], two])
    miss = (0, 0, 0, 0)
    assert authors_top5([two, [], two], missing=miss)[2:4] == [(1, miss), (1, miss)]
    with pytest.raises(ValueError):
        authors_top5([two, two])


def test_end_to_end_on_a_gaussian():
    h, w = 120, 160
    yy, xx = np.mgrid[:h, :w]
    cam = np.exp(-((yy - 60) ** 2 / 800.0 + (xx - 70) ** 2 / 1500.0))
    g = authors_heatmap(cam)
    boxes = authors_boxes(g)
    assert len(boxes) >= 2
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
    assert areas == sorted(areas, reverse=True)
    for x0, y0, x1, y1 in boxes:  # every box holds the peak and respects the W-5/H-5 clamp
        assert x0 <= 70 <= x1 and y0 <= 60 <= y1 and x1 <= w - 5 and y1 <= h - 5
