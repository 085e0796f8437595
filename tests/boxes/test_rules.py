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
