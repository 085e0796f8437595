"""to_grid: every layout a model gives its features, read back as (N, C, h, w) against hand-made tensors."""

import pytest
import torch

from camloc.errors import HeadNotFound
from camloc.models.layout import Layout, grid_size, to_grid


def _grid(n: int, c: int, h: int, w: int) -> torch.Tensor:
    return torch.arange(n * c * h * w, dtype=torch.float32).reshape(n, c, h, w)


def test_nchw_is_returned_as_it_is():
    x = _grid(2, 8, 3, 5)
    assert to_grid(x, (96, 160), channels=8) is x


def test_channels_last_is_permuted():
    x = _grid(2, 8, 3, 5)
    assert torch.equal(to_grid(x.permute(0, 2, 3, 1), (96, 160), channels=8), x)


def test_tokens_after_a_class_token_lie_row_major_on_the_grid():
    x = _grid(2, 6, 4, 7)
    tokens = torch.cat([torch.full((2, 1, 6), -1.0), x.flatten(2).transpose(1, 2)], dim=1)  # (2, 1 + 28, 6)
    for prefix in (1, None):
        assert torch.equal(to_grid(tokens, (64, 112), channels=6, prefix=prefix), x)
    assert torch.equal(Layout(channels=6, prefix=1, patch=(16, 16)).to_grid(tokens, (64, 112)), x)


def test_register_tokens_are_found_from_the_count():
    x = _grid(1, 4, 14, 14)
    tokens = torch.cat([torch.zeros(1, 5, 4), x.flatten(2).transpose(1, 2)], dim=1)  # class + 4 registers
    assert torch.equal(to_grid(tokens, (224, 224)), x)


def test_grid_sizes():
    assert grid_size(49, (224, 224)) == (7, 7)
    assert grid_size(70, (224, 320)) == (7, 10)
    assert grid_size(70, (320, 224)) == (10, 7)
    assert grid_size(196, (224, 224), (16, 16)) == (14, 14)
    assert grid_size(197, (224, 224)) is None
    assert grid_size(195, (224, 224), (16, 16)) is None


def test_misfits_are_refused_in_one_line():
    with pytest.raises(HeadNotFound, match="neither"):
        to_grid(torch.zeros(2, 5, 6, 7), (224, 224), channels=8)
    with pytest.raises(HeadNotFound, match="no grid"):
        to_grid(torch.zeros(2, 197, 8), (224, 224), channels=8, prefix=0)
    with pytest.raises(HeadNotFound, match="neither"):
        to_grid(torch.zeros(2, 8), (224, 224), channels=8)
