"""Pointing game, energy pointing game, relevance mass / rank: hand-computed cases and Quantus 0.6.

Quantus is the reference of relevance mass and rank (Arras et al.) and, where the definitions meet
(no tied maxima, non-empty masks, no tolerance), of the pointing game; the tolerance, the ties and
the energy-based game are checked against hand computations of TorchRay's and Score-CAM's definitions.
"""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from camloc.box import scale_box
from camloc.errors import InvalidArgument
from camloc.metrics import energy_pointing_game, pointing_game, relevance_mass, relevance_rank
from camloc.metrics.groundtruth import boxes_to_masks

NAN = float("nan")


def boxes(*per_image):
    return [torch.tensor(b, dtype=torch.long).reshape(-1, 4) for b in per_image]


def peak(h, w, y, x, value=1.0):
    m = torch.zeros(h, w)
    m[y, x] = value
    return m


def same(actual, expected):
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=torch.float64), equal_nan=True)


# --------------------------------------------------------------------------------------------
# boxes to masks


def test_boxes_to_masks_inclusive_corners_union_and_clipping():
    masks = boxes_to_masks(boxes([(1, 0, 2, 1), (2, 1, 9, 9)], [], [(0, 0, 0, 0)]), (3, 4))
    assert masks.dtype == torch.bool and masks.shape == (3, 3, 4)
    assert masks[0].int().tolist() == [[0, 1, 1, 0], [0, 1, 1, 1], [0, 0, 1, 1]]
    assert not masks[1].any()
    assert masks[2].int().tolist() == [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]


# --------------------------------------------------------------------------------------------
# pointing game


def test_pointing_game_peak_on_the_box_edges_hits_and_one_pixel_out_misses():
    # box x 2..5, y 1..3 inclusive: its corners hit, the pixels beside them miss.
    maps = torch.stack([peak(6, 8, y, x) for y, x in ((1, 2), (3, 5), (1, 5), (3, 2), (0, 2), (3, 6), (4, 5))])
    got = pointing_game(maps, boxes(*[[(2, 1, 5, 3)]] * 7))
    same(got, [1, 1, 1, 1, 0, 0, 0])


def test_pointing_game_tolerance_is_a_strict_disc():
    # the peak at (y, x) = (0, 0); the box's nearest pixel at (4, 3): distance exactly 5.
    maps = peak(10, 10, 0, 0)[None].repeat(4, 1, 1)
    gt = boxes(*[[(3, 4, 6, 6)]] * 4)
    same(torch.cat([pointing_game(maps[:1], gt[:1], tolerance=t) for t in (0, 4.99, 5, 5.01)]), [0, 0, 0, 1])
    # TorchRay's default of 15 pixels, and an integer tolerance one past the distance.
    same(pointing_game(maps[:1], gt[:1], tolerance=15), [1])
    same(pointing_game(maps[:1], gt[:1], tolerance=6), [1])


def test_pointing_game_takes_the_first_maximum_in_row_major_order():
    # Two equal maxima: the first (row 0) is outside the box, the second inside; TorchRay points at the first.
    m = torch.zeros(5, 5)
    m[0, 4] = m[3, 1] = 2.0
    same(pointing_game(torch.stack([m, m.flip(0)]), boxes([(0, 2, 2, 4)], [(0, 1, 2, 1)])), [0, 1])
    # All zeros: the first pixel (0, 0) is the point.
    zeros = torch.zeros(2, 5, 5)
    same(pointing_game(zeros, boxes([(0, 0, 1, 1)], [(1, 0, 4, 4)])), [1, 0])


def test_pointing_game_several_boxes_empty_boxes_nan_pixels_and_masks():
    m = peak(6, 6, 4, 4)
    nan_peak = m.clone()
    nan_peak[0, 0] = NAN  # NaN never counts as the maximum
    maps = torch.stack([m, m, nan_peak])
    gt = boxes([(0, 0, 1, 1), (4, 3, 5, 5)], [], [(3, 3, 4, 4)])
    same(pointing_game(maps, gt), [1, NAN, 1])
    same(pointing_game(maps, boxes_to_masks(gt, (6, 6)).float()), [1, NAN, 1])


def test_pointing_game_equals_quantus_without_ties(val_boxes):
    quantus = pytest.importorskip("quantus")
    maps, masks = _random_maps_and_real_masks(val_boxes, 24)
    ours = pointing_game(maps, masks)
    theirs = _quantus(quantus.PointingGame, maps, masks)
    assert ours.tolist() == [float(v) for v in theirs]
    assert 0 < ours.sum() < len(ours)  # both outcomes occur


# --------------------------------------------------------------------------------------------
# energy pointing game


def test_energy_pointing_game_by_hand():
    maps = torch.tensor(
        [
            [[1.0, 3.0, 0.0], [-5.0, 2.0, 4.0]],  # positive energy 10, inside x 1..2: 3 + 2 + 4 + 0 = 9
            [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]],  # two overlapping boxes count once: 3 of 6
            [[0.0, 0.0, 0.0], [-1.0, 0.0, 0.0]],  # no positive energy
            [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]],  # no ground truth
        ]
    )
    gt = boxes([(1, 0, 2, 1)], [(0, 0, 1, 0), (1, 0, 2, 0)], [(0, 0, 2, 1)], [])
    same(energy_pointing_game(maps, gt), [0.9, 0.5, NAN, NAN])


# --------------------------------------------------------------------------------------------
# relevance mass and rank


def test_relevance_mass_and_rank_by_hand():
    maps = torch.tensor(
        [
            [[4.0, 3.0, -1.0], [2.0, 1.0, 1.0]],  # sum 10; box column 0: 4 + 2 = 6; top-2 are (0,0), (0,1): 1 of 2
            [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],  # 0 / 0; ties in row-major order: top-1 is (0, 0), inside
            [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]],  # no ground truth
            [[1.0, -2.0, 0.5], [0.5, 0.0, 3.0]],  # two boxes: (0,0) and (1,2): mass 4 / 3; top-2 = both
        ]
    )
    gt = boxes([(0, 0, 0, 1)], [(0, 0, 0, 0)], [], [(0, 0, 0, 0), (2, 1, 2, 1)])
    same(relevance_mass(maps, gt), [0.6, NAN, NAN, 4 / 3])
    same(relevance_rank(maps, gt), [0.5, 1.0, NAN, 1.0])


def test_relevance_rank_ties_break_in_row_major_order_and_nan_ranks_last():
    m = torch.tensor([[[1.0, 1.0], [1.0, NAN]]])
    same(relevance_rank(m, boxes([(1, 0, 1, 1)])), [0.5])  # K = 2: the top-2 are (0,0), (0,1); (1,1) is NaN
    same(relevance_rank(m, boxes([(0, 1, 1, 1)])), [0.0])


def test_relevance_mass_and_rank_equal_quantus(val_boxes):
    quantus = pytest.importorskip("quantus")
    maps, masks = _random_maps_and_real_masks(val_boxes, 24, signed=True)
    maps[3] = 0.0  # all zeros: NaN mass on both sides
    masks[5] = False  # no ground truth: NaN on both sides
    mass = relevance_mass(maps, masks)
    assert mass.isnan().tolist() == [i in (3, 5) for i in range(len(maps))]
    torch.testing.assert_close(
        mass, torch.tensor(_quantus(quantus.RelevanceMassAccuracy, maps, masks), dtype=torch.float64),
        rtol=1e-5, atol=1e-5, equal_nan=True,
    )  # fmt: skip
    keep = [
        i for i in range(len(maps)) if i != 3
    ]  # an all-zero map is one big tie, which numpy's argsort orders its way
    rank = relevance_rank(maps[keep], masks[keep])
    theirs = torch.tensor(_quantus(quantus.RelevanceRankAccuracy, maps[keep], masks[keep]), dtype=torch.float64)
    torch.testing.assert_close(rank, theirs, rtol=0, atol=1e-12, equal_nan=True)
    assert len(set(rank[~rank.isnan()].tolist())) > 5  # real, varied values


def _random_maps_and_real_masks(val_boxes, n, size=56, signed=False):
    """Random (smooth) maps and the masks of the first ``n`` shared ImageNet images' boxes scaled to ``size``."""
    gt = []
    for path, (_, image_boxes) in list(val_boxes.items())[:n]:
        with Image.open(path) as im:
            gt.append(torch.tensor([scale_box(b, im.size, (size, size)) for b in image_boxes]))
    noise = torch.randn(n, 1, size // 4, size // 4)
    maps = torch.nn.functional.interpolate(noise, size=(size, size), mode="bilinear")[:, 0]
    maps = maps + 1e-3 * torch.rand_like(maps)  # bilinear upsampling repeats the border values: no ties
    maps = maps if signed else maps.exp()
    return maps, boxes_to_masks(gt, (size, size))


def _quantus(metric, maps, masks):
    a = maps[:, None].double().numpy()
    s = masks[:, None].numpy().astype(np.float32)
    x = np.zeros((len(a), 3, *a.shape[-2:]), dtype=np.float32)
    y = np.zeros(len(a), dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return metric(disable_warnings=True)(model=None, x_batch=x, y_batch=y, a_batch=a, s_batch=s)


# --------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize("fn", [pointing_game, energy_pointing_game, relevance_mass, relevance_rank])
def test_bad_shapes_are_one_line_errors_naming_the_argument(fn):
    with pytest.raises(InvalidArgument, match="maps"):
        fn(torch.zeros(4, 4), boxes([(0, 0, 1, 1)]))
    with pytest.raises(InvalidArgument, match="boxes"):
        fn(torch.zeros(2, 4, 4), boxes([(0, 0, 1, 1)]))
    with pytest.raises(InvalidArgument, match="boxes"):
        fn(torch.zeros(2, 4, 4), torch.zeros(2, 4, 5))


def test_negative_tolerance_is_refused():
    with pytest.raises(InvalidArgument, match="tolerance"):
        pointing_game(torch.zeros(1, 4, 4), boxes([(0, 0, 1, 1)]), tolerance=-1)
