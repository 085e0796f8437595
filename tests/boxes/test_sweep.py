"""camloc.boxes.sweep against the per-level OpenCV loop of tests/helpers/wsol_oracle.py: equal value for value.

On real CAMs of pretrained MobileNetV2 (ImageNet validation images) and on several hundred random
maps built to contain the rule's traps, which are counted here with OpenCV (independently of
camloc.sweep) and required to occur: hole contours giving V2's best IoU, equal largest contour
areas in V1 with different boxes, a largest-area contour that is not the component with the
most pixels, levels with holes and several top-level components, maps whose maximum is below
255, tiny maps.
"""

from __future__ import annotations

from collections import Counter

import cv2
import numpy as np
import pytest
import torch

import camloc
from camloc.boxes.sweep import wsol_best_ious, wsol_best_ious_batch
from camloc.boxes.wsol import wsol_gray, wsol_levels, wsol_scoremap
from tests.helpers.wsol_oracle import best_ious, iou
from tests.helpers.wsol_oracle import levels as oracle_levels

# --------------------------------------------------------------------------------------------
# trap census, straight from OpenCV


def _box(c, w, h):
    x, y, bw, bh = cv2.boundingRect(c)
    return [x, y, min(x + bw, w - 1), min(y + bh, h - 1)]


def census(gray: np.ndarray, level_list, gt) -> Counter:
    """Counts, over the levels of one map, the situations the sweep must get right."""
    h, w = gray.shape
    out = Counter()
    for level in level_list:
        binary = (gray > level).astype(np.uint8) * 255
        contours, hierarchy = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
        if not contours:
            continue
        parent = hierarchy[0][:, 3]
        depth = [0] * len(contours)
        for i in range(len(contours)):
            p = parent[i]
            while p >= 0:
                depth[i] += 1
                p = parent[p]
        is_hole = [d % 2 == 1 for d in depth]
        best = [max(iou(_box(c, w, h), g) for g in gt) for c in contours]
        outer_best = max(b for b, hole in zip(best, is_hole, strict=True) if not hole)
        if any(hole for hole in is_hole):
            out["levels with holes"] += 1
            if max(b for b, hole in zip(best, is_hole, strict=True) if hole) > outer_best:
                out["hole wins V2"] += 1
            if sum(p < 0 for p in parent) > 1:
                out["holes and several top-level contours"] += 1
        areas = [cv2.contourArea(c) for c in contours]
        top = max(areas)
        tied = [i for i, a in enumerate(areas) if a == top]
        if len({tuple(_box(contours[i], w, h)) for i in tied}) > 1:
            out["V1 area tie, different boxes"] += 1
            if len({best[i] for i in tied}) > 1:
                out["V1 area tie, different IoU"] += 1
        _, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        winner = max(contours, key=cv2.contourArea)
        x, y = winner[0, 0]
        if stats[labels[y, x], cv2.CC_STAT_AREA] < stats[1:, cv2.CC_STAT_AREA].max():
            out["V1 not the most pixels"] += 1
    return out


def assert_same(gray, level_list, gt):
    expected = best_ious(gray, level_list, gt)
    got = wsol_best_ious(gray, np.asarray(level_list, dtype=np.int64), np.asarray(gt, dtype=np.int64))
    for name, e, g in zip(("V1", "V2"), expected, got, strict=True):
        if not np.array_equal(e, g):
            bad = np.flatnonzero(e != g)
            raise AssertionError(
                f"{name} differs at levels {np.asarray(level_list)[bad][:5]}: oracle {e[bad][:5]}, sweep {g[bad][:5]}"
            )


# --------------------------------------------------------------------------------------------
# random maps


def _scale(a: np.ndarray, top: int) -> np.ndarray:
    a = a - a.min()
    return (a / max(a.max(), 1e-12) * top).astype(np.uint8)


def smooth_map(rng, h, w):
    small = rng.random((rng.integers(2, 7), rng.integers(2, 7)))
    return _scale(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), rng.choice([255, 254, 200, 97]))


def peaks_map(rng, h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    a = np.zeros((h, w))
    for _ in range(rng.integers(2, 6)):
        cy, cx = rng.random() * h, rng.random() * w
        s = 1 + rng.random() * max(h, w) / 4
        a += rng.random() * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return _scale(a, rng.choice([255, 254, 180]))


def rings_map(rng, h, w):
    """Concentric rings (holes, islands inside holes, holes in islands), off-centre, with noise."""
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = h / 2 + rng.normal() * h / 8, w / 2 + rng.normal() * w / 8
    r = np.hypot((yy - cy) * rng.uniform(0.7, 1.3), xx - cx)
    period = rng.uniform(2.5, max(3.0, min(h, w) / 3))
    a = np.cos(r / period * np.pi) * np.exp(-r / max(h, w) * rng.uniform(0, 2))
    a += rng.normal(size=(h, w)) * rng.choice([0.0, 0.05, 0.2])
    return _scale(a, rng.choice([255, 254, 120]))


def blocks_map(rng, h, w):
    """Few values in blocks, often mirrored: plateaus and components of exactly equal area."""
    small = rng.integers(0, rng.integers(2, 5), (rng.integers(2, 6), rng.integers(2, 6))).astype(np.float64)
    if rng.random() < 0.5:
        small = np.concatenate([small, small[:, ::-1]], axis=1)
    if rng.random() < 0.3:
        small = np.concatenate([small, small[::-1]], axis=0)
    a = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    return _scale(a, rng.choice([255, 254, 3, 60]))


def shapes_map(rng, h, w):
    """Random rectangles, ellipses and outlines at a few levels: holes, nesting, equal shapes."""
    a = np.zeros((h, w), np.uint8)
    for _ in range(rng.integers(1, 7)):
        value = int(rng.choice([60, 120, 200, 255]))
        thickness = int(rng.choice([-1, 1, 1, 2]))
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        if rng.random() < 0.5:
            cv2.rectangle(
                a,
                (x0, y0),
                (x0 + int(rng.integers(0, w // 2 + 1)), y0 + int(rng.integers(0, h // 2 + 1))),
                value,
                thickness,
            )
        else:
            axes = (int(rng.integers(0, w // 3 + 1)), int(rng.integers(0, h // 3 + 1)))
            cv2.ellipse(a, (x0, y0), axes, float(rng.integers(0, 180)), 0, 360, value, thickness)
    if rng.random() < 0.5:
        a = np.maximum(a, a[:, ::-1])
    return a


def noise_map(rng, h, w):
    if rng.random() < 0.5:
        return rng.integers(0, 256, (h, w)).astype(np.uint8)
    return (rng.integers(0, int(rng.choice([2, 3, 4])), (h, w)) * int(rng.choice([1, 60]))).astype(np.uint8)


def random_gt(rng, h, w):
    boxes = []
    for _ in range(rng.integers(1, 4)):
        x0, x1 = sorted(rng.integers(0, w, 2))
        y0, y1 = sorted(rng.integers(0, h, 2))
        boxes.append([x0, y0, x1, y1])
    return np.array(boxes, dtype=np.int64)


def random_levels(rng, gray):
    if rng.random() < 0.8:
        return oracle_levels(gray)
    return np.sort(rng.integers(-3, 260, rng.integers(1, 40)))


MAKERS = (smooth_map, peaks_map, rings_map, blocks_map, shapes_map, noise_map)


def random_cases(seed=0, n=480):
    rng = np.random.default_rng(seed)
    for i in range(n):
        maker = MAKERS[i % len(MAKERS)]
        h, w = (int(v) for v in rng.integers(2, 60, 2))
        gray = maker(rng, h, w)
        yield maker.__name__, gray, random_levels(rng, gray), random_gt(rng, h, w)


@pytest.mark.slow
def test_random_maps_equal_the_opencv_loop_and_contain_the_traps():
    census_total = Counter()
    kinds = Counter()
    for name, gray, level_list, gt in random_cases():
        assert_same(gray, level_list, gt)
        census_total += census(gray, level_list, gt)
        kinds[name] += 1
        kinds["max < 255"] += int(gray.max() < 255)
    print(dict(kinds), dict(census_total))
    assert kinds["max < 255"] >= 100
    assert census_total["hole wins V2"] >= 10
    assert census_total["V1 area tie, different IoU"] >= 10
    assert census_total["V1 not the most pixels"] >= 10
    assert census_total["holes and several top-level contours"] >= 10


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (1, 9), (9, 1), (2, 2), (3, 3), (2, 7), (5, 1)])
def test_tiny_maps(shape):
    rng = np.random.default_rng(sum(shape))
    h, w = shape
    for _ in range(40):
        if rng.random() < 0.5:
            gray = rng.integers(0, 256, shape).astype(np.uint8)
        else:
            gray = (rng.integers(0, 3, shape) * int(rng.choice([1, 100]))).astype(np.uint8)
        assert_same(gray, oracle_levels(gray), random_gt(rng, h, w))
        assert_same(gray, np.arange(-2, 258, 7), random_gt(rng, h, w))


def test_hand_built_traps():
    # a one-pixel hole: its contour (1, 2), (2, 1), (3, 2), (2, 3) boxes [1, 1, 4, 4], the block [0, 0, 4, 4]
    block = np.full((5, 5), 200, np.uint8)
    block[2, 2] = 0
    assert_same(block, [0, 100], [[1, 1, 3, 3]])
    v1, v2 = wsol_best_ious(block, np.array([0]), np.array([[1, 1, 3, 3]]))
    assert v2[0] > v1[0]  # the hole's box [1, 1, 4, 4] beats the block's
    # two squares of equal area: OpenCV lists the one found last first, so V1 takes it
    twins = np.zeros((8, 12), np.uint8)
    twins[1:4, 1:4] = twins[4:7, 7:10] = 255
    for gt in ([[1, 1, 4, 4]], [[7, 4, 10, 7]]):
        assert_same(twins, [0], gt)
    v1, _ = wsol_best_ious(twins, np.array([0]), np.array([[7, 4, 10, 7]]))
    assert v1[0] == 1.0
    # contour area is the polygon's, not the pixel count: a 1 x 9 line (area 0) against a 3 x 3 block
    shapes = np.zeros((6, 14), np.uint8)
    shapes[1, 1:10] = 255
    shapes[3:6, 11:14] = 255
    v1, _ = wsol_best_ious(shapes, np.array([0]), np.array([[11, 3, 13, 5]]))
    assert v1[0] == 1.0
    assert_same(shapes, [0], [[1, 1, 9, 1]])
    # empty map and every level above the maximum: the [0, 0, 0, 0] box
    assert_same(np.zeros((4, 6), np.uint8), [0, 5], [[0, 0, 0, 0], [2, 1, 5, 3]])
    assert_same(np.full((4, 6), 254, np.uint8), oracle_levels(np.full((4, 6), 254, np.uint8)), [[0, 0, 1, 1]])


def test_batch_equals_single_images():
    cases = [c for c in random_cases(seed=1, n=60)]
    rng = np.random.default_rng(2)
    grays = np.stack([cv2.resize(g, (31, 23), interpolation=cv2.INTER_NEAREST) for _, g, _, _ in cases])
    levels = np.stack([wsol_levels(g) for g in grays])
    gts = [random_gt(rng, 23, 31) for _ in cases]
    expected = [wsol_best_ious(g, lv, gt) for g, lv, gt in zip(grays, levels, gts, strict=True)]
    for threads in (1, 2, None):
        v1, v2 = wsol_best_ious_batch(grays, levels, gts, threads=threads)
        assert v1.shape == v2.shape == levels.shape
        assert np.array_equal(v1, np.stack([e[0] for e in expected]))
        assert np.array_equal(v2, np.stack([e[1] for e in expected]))


def test_bad_inputs():
    with pytest.raises(ValueError):
        wsol_best_ious(np.zeros((3, 3), np.float32), np.arange(3), [[0, 0, 1, 1]])
    with pytest.raises(ValueError):
        wsol_best_ious(np.zeros((3, 3), np.uint8), np.arange(3), np.zeros((0, 4)))
    with pytest.raises(ValueError):
        wsol_best_ious_batch(np.zeros((2, 3, 3), np.uint8), np.zeros((3, 5)), [[[0, 0, 1, 1]]] * 2)


# --------------------------------------------------------------------------------------------
# real CAMs


@pytest.mark.slow
def test_real_cams_equal_the_opencv_loop(mobilenet, val_boxes):
    paths = list(val_boxes)[::11][:64]
    batch = camloc.load_batch(paths, camloc.Preprocess(mode="squash"))
    assert not batch.errors
    labels = torch.tensor([val_boxes[p][0] for p in paths])
    out = camloc.CAM(mobilenet)(batch.images, classes=labels, upsample=False)
    grays, gts = [], []
    for i, path in enumerate(paths):
        grays.append(wsol_gray(wsol_scoremap(out.raw[i, 0].double().numpy())))
        geo = batch.geometries[i]
        gts.append(
            np.array(
                [
                    [
                        int(x0 * 224 / geo.width),
                        int(y0 * 224 / geo.height),
                        int(x1 * 224 / geo.width),
                        int(y1 * 224 / geo.height),
                    ]
                    for x0, y0, x1, y1 in val_boxes[path][1]
                ],
                dtype=np.int64,
            )
        )
    grays = np.stack(grays)
    levels = np.stack([wsol_levels(g) for g in grays])
    v1, v2 = wsol_best_ious_batch(grays, levels, gts)
    census_total = Counter()
    for i in range(len(paths)):
        e1, e2 = best_ious(grays[i], levels[i], gts[i])
        assert np.array_equal(v1[i], e1), paths[i]
        assert np.array_equal(v2[i], e2), paths[i]
        census_total += census(grays[i], levels[i], gts[i])
    print(dict(census_total))
    assert census_total["levels with holes"] > 0
