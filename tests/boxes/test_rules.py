"""The paper's rule is one thing: pixels >= tau x the map's max. The min-max reading has its own name."""

import numpy as np
import pytest

from camloc.boxes.paper import minmax_box, paper_box


def _negative_background():
    """A CAM without ReLU: background -2, a 3x4 object at 10, a 2x2 part at 1 (hand-checked below)."""
    m = np.full((8, 10), -2.0)
    m[1:4, 1:5] = 10.0  # rows 1..3, cols 1..4
    m[5:7, 7:9] = 1.0  # rows 5..6, cols 7..8: below 0.2 x 10 = 2
    return m


def test_paper_rule_is_a_fraction_of_the_max_not_of_the_range():
    m = _negative_background()
    # tau = 0.2: keep >= 0.2 * 10 = 2 -> the object only
    assert paper_box(m, 0.2) == (1, 1, 4, 3)
    # min-max: keep >= -2 + 0.2 * (10 - -2) = 0.4 -> the object and the part; the object is larger
    assert minmax_box(m, 0.2) == (1, 1, 4, 3)
    # tau = 0: keep >= 0 (max rule) -> object and part, object larger; min-max: >= the min -> everything
    assert paper_box(m, 0.0) == (1, 1, 4, 3)
    assert minmax_box(m, 0.0) == (0, 0, 9, 7)


def test_minmax_rule_keeps_the_whole_frame_where_the_paper_rule_does_not():
    # A broad weak positive response over a negative border: 20 % of the range keeps the response,
    # 20 % of the max keeps only the peak.
    m = np.full((9, 9), -4.0)
    m[1:8, 1:8] = 0.5
    m[4, 4] = 5.0
    assert paper_box(m, 0.2) == (4, 4, 4, 4)  # >= 1.0: the peak alone
    assert minmax_box(m, 0.2) == (1, 1, 7, 7)  # >= -4 + 0.2 * 9 = -2.2: the whole response


def test_a_map_below_zero_everywhere_keeps_nothing_by_the_paper_rule():
    m = -np.arange(12, dtype=float).reshape(3, 4) - 1.0
    assert paper_box(m, 0.2) is None  # >= 0.2 x (-1) = -0.2: no pixel
    assert minmax_box(m, 0.5) == (0, 0, 3, 1)  # >= -12 + 0.5 * 11 = -6.5: the first 6 pixels (two rows)


def test_minmax_of_a_constant_map_keeps_everything():
    assert minmax_box(np.full((3, 5), 7.0), 0.9) == (0, 0, 4, 2)
    with pytest.raises(ValueError, match="one \\(H, W\\) map"):
        minmax_box(np.zeros((2, 2, 2)), 0.2)


# --------------------------------------------------------------------------------------------
# the rules by name (camloc.boxes.rules), each against an independent implementation


def _random_maps(n, seed=0):
    """Smooth random maps with several blobs, negative background, some with a NaN border."""
    import cv2

    rng = np.random.default_rng(seed)
    maps = []
    for k in range(n):
        coarse = rng.normal(size=(7, 9))
        m = cv2.resize(coarse, (45, 35), interpolation=cv2.INTER_CUBIC)
        if k % 3 == 0:
            m[:, :4] = np.nan  # outside the crop the model saw
        maps.append(m)
    return maps


def test_wsol_box_is_the_v1_box_of_the_plain_opencv_loop():
    from camloc.boxes.rules import wsol_box
    from tests.helpers.wsol_oracle import boxes_at

    for m in _random_maps(40):
        filled = np.where(np.isnan(m), np.nanmin(m), m)  # NaN counts as the minimum
        gray = ((filled - filled.min()) / (filled.max() - filled.min()) * 255).astype(np.uint8)
        for tau in (0.0, 0.2, 0.37, 0.8):
            [expected], _ = boxes_at(gray, int(tau * gray.max()))
            got = wsol_box(m, tau)
            assert got == (None if expected == [0, 0, 0, 0] else tuple(expected))


def test_component_boxes_equal_scipy_labelling():
    from scipy import ndimage

    from camloc.boxes.rules import component_boxes

    for m in _random_maps(40, seed=1):
        for tau, min_area in ((0.2, 0.0), (0.5, 0.01), (0.1, 0.05)):
            mask = np.nan_to_num(m, nan=-np.inf) >= tau * np.nanmax(m)
            labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
            expected = []
            for i, where in enumerate(ndimage.find_objects(labels), 1):
                area = int((labels[where] == i).sum())
                if area >= min_area * m.size:
                    ys, xs = where
                    expected.append((area, (xs.start, ys.start, xs.stop - 1, ys.stop - 1)))
            got = component_boxes(m, tau, min_area)
            assert sorted(got) == sorted(b for _, b in expected)
            areas = [a for a, _ in sorted(expected, key=lambda t: -t[0])]
            assert [dict((b, a) for a, b in expected)[b] for b in got] == areas  # largest first


def test_rule_boxes_dispatch_and_the_paper_box_is_the_largest_component():
    from camloc.boxes.authors import authors_boxes, authors_heatmap
    from camloc.boxes.rules import rule_boxes, wsol_box

    for m in _random_maps(12, seed=2):
        assert rule_boxes(m, "paper", 0.3) == [paper_box(m, 0.3)]
        assert rule_boxes(m, "all", 0.3, 0.0)[0] == paper_box(m, 0.3)
        assert rule_boxes(m, "wsol", 0.3) == [wsol_box(m, 0.3)]
        assert rule_boxes(m, "authors") == authors_boxes(authors_heatmap(np.abs(m)))[:1]
    with pytest.raises(ValueError, match="rule must be one of paper, wsol, all, authors, not 'largest'"):
        rule_boxes(np.ones((3, 3)), "largest")
    with pytest.raises(ValueError, match="threshold must lie in"):
        rule_boxes(np.ones((3, 3)), "paper", 1.5)


def test_box_score_by_hand():
    from camloc.boxes.rules import box_score

    m = np.array([[8.0, 4.0, -2.0], [2.0, np.nan, -8.0]])
    assert box_score(m, (0, 0, 1, 1)) == pytest.approx((1 + 0.5 + 0.25) / 3)  # the NaN pixel left out
    assert box_score(m, (2, 0, 2, 1)) == 0.0  # negatives count as 0
    assert box_score(-np.ones((2, 2)), (0, 0, 1, 1)) == 0.0  # no positive value


def test_resizing_on_the_device_equals_opencvs_resize():
    """Exactly where the protocol's maps are (7 x 7 or 14 x 14 to 224: OpenCV's float coefficients are exact);
    within a few 1e-6 of the range at other ratios."""
    import torch

    from camloc.boxes.wsol import wsol_gray, wsol_minmax, wsol_resized, wsol_resized_batch

    for side, tolerance in ((7, 1e-12), (14, 1e-12), (9, 1e-5)):
        raw = torch.randn(16, side, side, dtype=torch.float64)
        batch = wsol_resized_batch(raw, (224, 224)).numpy()
        assert batch.shape == (16, 224, 224)
        for m, resized in zip(raw.numpy(), batch, strict=True):
            expected = wsol_resized(m, (224, 224))
            assert np.abs(resized - expected).max() <= tolerance * np.abs(expected).max()
            if tolerance < 1e-9:
                assert np.array_equal(wsol_gray(wsol_minmax(resized)), wsol_gray(wsol_minmax(expected)))
