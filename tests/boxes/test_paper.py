"""camloc.boxes.paper_box: hand-built maps and an independent scipy implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from camloc.boxes.paper import paper_box, paper_boxes

NAN = float("nan")


# --------------------------------------------------------------------------------------------
# hand-built maps


def test_larger_of_two_blobs_inclusive_coords():
    m = np.zeros((10, 12), dtype=np.float32)
    m[1:3, 1:3] = 1.0  # 2x2 blob with the map's max
    m[5:9, 4:11] = 0.5  # 4x7 blob, weaker but larger: rows 5..8, cols 4..10
    assert paper_box(m) == (4, 5, 10, 8)
    assert paper_box(torch.from_numpy(m)) == (4, 5, 10, 8)


def test_single_pixel_and_full_map():
    m = np.zeros((5, 6), dtype=np.float32)
    m[3, 4] = 2.0
    assert paper_box(m) == (4, 3, 4, 3)
    assert paper_box(np.ones((5, 6), dtype=np.float32)) == (0, 0, 5, 4)


def test_diagonal_pixels_are_one_component():
    m = np.zeros((6, 6), dtype=np.float32)
    m[0, 0] = m[1, 1] = m[2, 2] = 1.0  # 8-connected: one component of 3
    m[4, 4] = m[4, 5] = 1.0  # a separate component of 2
    assert paper_box(m) == (0, 0, 2, 2)


def test_anti_diagonal_chain():
    m = np.zeros((5, 5), dtype=np.float32)
    for i in range(4):
        m[i, 3 - i] = 1.0  # (x=3,y=0) (2,1) (1,2) (0,3)
    m[4, 4] = 1.0  # touches nothing: (3,3) is zero
    assert paper_box(m) == (0, 0, 3, 3)


def test_threshold_is_inclusive():
    m = np.zeros((3, 7), dtype=np.float32)
    m[1, 0] = 5.0  # max; 20% of it is exactly 1.0
    m[1, 1:6] = 1.0  # exactly at the threshold: kept, joining the max into a 1x6 run
    assert paper_box(m) == (0, 1, 5, 1)
    m[1, 1:6] = 0.999  # just below: dropped, only the max pixel remains
    assert paper_box(m) == (0, 1, 0, 1)


def test_threshold_argument():
    m = np.array([[8.0, 2.0, 2.0, 0.0, 7.0]], dtype=np.float32)
    assert paper_box(m, threshold=0.25) == (0, 0, 2, 0)  # 2 >= 0.25 * 8 is kept
    assert paper_box(m, threshold=0.5) == (0, 0, 0, 0)  # tie 1 vs 1: the first in raster order
    assert paper_box(m, threshold=0.9) == (0, 0, 0, 0)  # only 8 >= 7.2
    assert paper_box(m, threshold=0.0) == (0, 0, 4, 0)  # everything (0 >= 0)


def test_nan_pixels_never_kept():
    m = np.full((4, 8), NAN, dtype=np.float32)
    m[1, 1] = 1.0
    m[2, 4:7] = 0.5
    # the NaNs in between would join everything if they were kept
    assert paper_box(m) == (4, 2, 6, 2)
    assert paper_box(torch.from_numpy(m)) == (4, 2, 6, 2)


def test_nan_max_is_ignored():
    m = np.array([[NAN, 0.1, 0.0, 1.0, 1.0]], dtype=np.float32)
    # max over non-NaN is 1.0 so 0.1 is dropped: if NaN poisoned the max nothing would be kept.
    assert paper_box(m) == (3, 0, 4, 0)


def test_all_nan_is_none():
    assert paper_box(np.full((4, 4), NAN, dtype=np.float32)) is None
    assert paper_box(torch.full((3, 5), NAN)) is None


def test_tie_goes_to_first_in_raster_order():
    m = np.zeros((8, 8), dtype=np.float32)
    # Component B: an L of 4 pixels whose first pixel in raster order is (row 1, col 6).
    m[1, 6] = m[2, 6] = m[3, 6] = m[3, 5] = 1.0
    # Component A: 4 pixels, its first pixel at (row 2, col 0); it extends to the bottom-left.
    m[2, 0] = m[3, 0] = m[4, 0] = m[5, 0] = 1.0
    assert paper_box(m) == (5, 1, 6, 3)
    # Move B below A's first pixel: now A comes first.
    m[:] = 0
    m[2, 0] = m[3, 0] = m[4, 0] = m[5, 0] = 1.0
    m[5, 6] = m[6, 6] = m[7, 6] = m[7, 5] = 1.0
    assert paper_box(m) == (0, 2, 0, 5)


def test_tie_raster_order_not_label_order():
    # A vertical bar at the far right starting on row 0, and a diagonal chain starting on row 1 at the
    # left edge; both 5 pixels. The first pixel in raster order is (row 0, col 9): the bar wins.
    m = np.zeros((6, 10), dtype=np.float32)
    m[0, 9] = m[1, 9] = m[2, 9] = m[3, 9] = m[4, 9] = 1.0
    m[1, 0] = m[1, 1] = m[1, 2] = m[2, 3] = m[3, 4] = 1.0
    assert paper_box(m) == (9, 0, 9, 4)


def test_bad_shape_raises():
    with pytest.raises(ValueError):
        paper_box(np.zeros((2, 3, 3), dtype=np.float32))
    with pytest.raises(ValueError):
        paper_box(np.zeros(5, dtype=np.float32))


# --------------------------------------------------------------------------------------------
# independent implementation


def _oracle(m: np.ndarray, threshold: float = 0.2):
    a = np.asarray(m, dtype=np.float64)
    finite = ~np.isnan(a)
    if not finite.any():
        return None
    keep = np.zeros(a.shape, dtype=bool)
    keep[finite] = a[finite] >= threshold * a[finite].max()
    labels, n = ndimage.label(keep, structure=np.ones((3, 3), dtype=int))
    if n == 0:
        return None
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    # scipy numbers components by their first pixel in raster order: the smallest winning label.
    best = int(np.flatnonzero(areas == areas.max())[0]) + 1
    ys, xs = ndimage.find_objects(labels)[best - 1]
    return xs.start, ys.start, xs.stop - 1, ys.stop - 1


def _random_maps(rng: np.random.Generator):
    """Smooth maps (small random grids upsampled, as CAMs are), raw noise, NaN borders, blocky maps."""
    maps = []
    for i in range(160):
        gh, gw = rng.integers(2, 9, size=2)
        h, w = rng.integers(5, 70, size=2)
        grid = torch.from_numpy(rng.standard_normal((1, 1, gh, gw)))
        m = F.interpolate(grid, size=(int(h), int(w)), mode="bilinear", align_corners=False)[0, 0].numpy()
        if i % 3 == 0:
            m = (m - m.min()) / (m.max() - m.min())  # normalized, like the paper's maps
        if i % 5 == 1:
            # a crop-mode frame: NaN outside a window
            t, left = rng.integers(0, max(1, h // 3)), rng.integers(0, max(1, w // 3))
            m[:t] = np.nan
            m[:, :left] = np.nan
        maps.append(m.astype(np.float32))
    for _ in range(50):  # raw noise: many small components
        h, w = rng.integers(3, 40, size=2)
        maps.append(rng.random((int(h), int(w))).astype(np.float32))
    for i in range(40):  # sparse binary maps: small components, many exact ties in area
        h, w = rng.integers(4, 16, size=2)
        density = 0.1 if i % 2 else 0.25
        maps.append((rng.random((int(h), int(w))) < density).astype(np.float32) * rng.choice([1.0, 3.0]))
    return maps


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.8])
def test_equals_scipy_oracle_on_random_maps(threshold):
    maps = _random_maps(np.random.default_rng(int(threshold * 10)))
    assert len(maps) >= 200
    # The oracle must not be trivial on these inputs: several components per map and some exact ties.
    n_components = []
    ties = 0
    mismatches = []
    for m in maps:
        got, want = paper_box(m, threshold), _oracle(m, threshold)
        if got != want:
            mismatches.append((m.shape, got, want))
        a = np.nan_to_num(m.astype(np.float64), nan=-np.inf)
        labels, n = ndimage.label(a >= threshold * np.nanmax(m), structure=np.ones((3, 3)))
        n_components.append(n)
        if n > 1:
            areas = np.bincount(labels.ravel())[1:]
            ties += int((areas == areas.max()).sum() > 1)
    assert not mismatches, f"{len(mismatches)} of {len(maps)} maps differ, e.g. {mismatches[:3]}"
    assert sum(c > 1 for c in n_components) > 40
    assert ties >= 10, ties


def test_paper_boxes_shape_and_values():
    rng = np.random.default_rng(11)
    maps = torch.from_numpy(rng.random((2, 3, 9, 11)).astype(np.float32)) ** 4
    maps[1, 2] = float("nan")
    out = paper_boxes(maps)
    assert len(out) == 2 and all(len(row) == 3 for row in out)
    for i in range(2):
        for j in range(3):
            assert out[i][j] == _oracle(maps[i, j].numpy())
    assert out[1][2] is None
