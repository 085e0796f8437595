"""Pictures: the one-call overlay, score text, grids and curves that really open."""

import numpy as np
import pytest
import torch
from PIL import Image

import camloc
from camloc.reports.figures import draw_box, overlay, plot_curves, score_text, topk_grid


def test_overlay_takes_any_map_size_and_normalizes_by_the_max():
    photo = np.zeros((20, 30, 3), np.uint8)
    cam = torch.tensor([[-3.0, 0.0], [1.0, 2.0]])
    out = overlay(photo, cam, alpha=1.0)
    assert out.size == (30, 20) and out.mode == "RGB"
    a = np.asarray(out)
    jet = np.asarray(camloc.reports.figures.matplotlib.colormaps["jet"]([0.0, 1.0])[:, :3] * 255).round()
    assert np.array_equal(a[0, 0], jet[0])  # negative -> 0 -> the colour map's bottom
    assert np.array_equal(a[-1, -1], jet[1])  # the max -> 1
    assert camloc.overlay is overlay


def test_overlay_leaves_nan_pixels_alone_and_checks_its_arguments():
    photo = np.full((4, 4, 3), 90, np.uint8)
    heat = np.ones((4, 4))
    heat[0] = np.nan
    a = np.asarray(overlay(photo, heat, alpha=1.0, normalize="none"))
    assert (a[0] == 90).all() and not (a[1:] == 90).all()
    with pytest.raises(camloc.InvalidArgument, match="alpha"):
        overlay(photo, heat, alpha=2.0)
    with pytest.raises(camloc.InvalidArgument, match="normalize"):
        overlay(photo, heat, normalize="z")


def test_scores_never_print_as_zero():
    assert [score_text(p) for p in (0.5, 0.0043, 1.2e-7)] == ["50 %", "0.43 %", "1.2e-05 %"]


def test_grid_with_a_window_and_curves_open_as_png(tmp_path):
    photo = Image.new("RGB", (60, 40), (120, 100, 80))
    heats = [np.linspace(0, 1, 60 * 40).reshape(40, 60)] * 2
    path = topk_grid(photo, heats, ["a\n1 %", "b\n2 %"], [(5, 5, 20, 20), None], tmp_path / "g.png",
                     title="cam · boxes ≥ 0.2 × max", window=(10, 0, 49, 39))  # fmt: skip
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 2 * im.height
    curves = {"v1_50": [10, 50, 30], "v2_30": [20, 70, 40], "v2_50": [10, 50, 30], "v2_70": [0, 20, 5]}
    with Image.open(plot_curves([0.0, 0.4, 0.8], curves, tmp_path / "c.png")) as im:
        assert im.format == "PNG"
    dashed = np.asarray(draw_box(photo, (2, 2, 50, 30), dashed=True))
    solid = np.asarray(draw_box(photo, (2, 2, 50, 30)))
    top = slice(2, 51)
    assert (solid[2, top] != [120, 100, 80]).any(axis=-1).all() and not (dashed[2, top] != [120, 100, 80]).any(
        axis=-1
    ).all()
