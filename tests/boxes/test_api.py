"""The box API (camloc.boxes.boxes) against the one-map functions it stands in front of."""

import numpy as np
import pytest
import torch

from camloc.boxes import boxes
from camloc.boxes.paper import minmax_box, paper_box, paper_boxes
from camloc.boxes.rules import rule_boxes, wsol_box
from camloc.errors import InvalidArgument
from camloc.images import Preprocess
from camloc.maps.frames import to_image_frame

RULES = ("paper", "minmax", "wsol", "authors")


def _maps(n: int = 3, k: int = 4, side: int = 14, seed: int = 0) -> torch.Tensor:
    """``Tensor[n, k, side, side]``: blobs of either sign on a noisy negative background (a CAM without ReLU)."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(
        torch.arange(side, dtype=torch.float32), torch.arange(side, dtype=torch.float32), indexing="ij"
    )
    out = torch.randn(n, k, side, side, generator=g) * 0.3 - 1.0
    for i in range(n):
        for j in range(k):
            for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
                cy, cx = (torch.rand(2, generator=g) * side).tolist()
                height = float(torch.rand(1, generator=g)) * 6.0 - 1.0
                spread = 1.0 + float(torch.rand(1, generator=g)) * 3.0
                out[i, j] += height * torch.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * spread**2))
    return out


def _old(rule: str, m: np.ndarray, threshold: float):
    """One map's box by the functions camloc had before the box API."""
    if rule == "paper":
        return paper_box(m, threshold)
    if rule == "minmax":
        return minmax_box(m, threshold)
    if rule == "wsol":
        return wsol_box(m, threshold)
    found = rule_boxes(m, "authors", threshold)
    return found[0] if found else None


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("threshold", [0.0, 0.2, 0.55])
def test_every_rule_gives_the_one_map_functions_boxes(rule, threshold):
    maps = _maps()
    expected = [[_old(rule, m, threshold) for m in per_image] for per_image in maps.numpy()]
    assert boxes(maps, rule, threshold) == expected
    assert boxes(maps.numpy(), rule, threshold) == expected  # numpy in, the same boxes
    assert sum(b is not None for row in expected for b in row) >= 6  # the maps do draw boxes


def test_the_paper_rule_is_paper_boxes():
    maps = _maps(seed=1)
    assert boxes(maps) == paper_boxes(maps, 0.2)
    assert boxes(maps, threshold=0.4) == paper_boxes(maps, 0.4)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("mode", ["crop", "squash", "full"])
def test_with_a_geometry_boxes_are_in_the_photos_pixels_as_explain_draws_them(rule, mode):
    maps = _maps(n=3, side=7, seed=2)
    preprocess = Preprocess(size=7, resize_size=8, mode=mode)
    geometries = [preprocess.geometry(w, h) for w, h in [(40, 30), (25, 33), (18, 18)]]
    # explain's recipe: each image's maps resampled onto its pixels, then the one-map rule
    expected = [
        [_old(rule, m, 0.2) for m in to_image_frame(maps[i].float(), geo).numpy()] for i, geo in enumerate(geometries)
    ]
    assert boxes(maps, rule, 0.2, geometries) == expected
    for (w, h), row in zip([(40, 30), (25, 33), (18, 18)], expected, strict=True):
        assert all(b is None or (0 <= b[0] <= b[2] < w and 0 <= b[1] <= b[3] < h) for b in row)
    if mode == "crop" and rule == "paper":
        assert any(b is not None and b[2] >= 8 for row in expected for b in row)  # beyond the 7 x 7 model frame
    # one geometry for the whole batch
    same = geometries[0]
    assert boxes(maps, rule, 0.2, same) == [
        [_old(rule, m, 0.2) for m in to_image_frame(per_image, same).numpy()] for per_image in maps
    ]


@pytest.mark.parametrize("rule", RULES)
def test_a_batch_gives_what_its_images_give_one_at_a_time(rule):
    maps = _maps(n=4, seed=3)
    geometries = [Preprocess(size=14, mode="crop").geometry(30 + 7 * i, 40) for i in range(4)]
    for geometry in (None, geometries):
        one_by_one = [
            boxes(maps[i : i + 1], rule, 0.3, None if geometry is None else [geometry[i]])[0] for i in range(len(maps))
        ]
        assert boxes(maps, rule, 0.3, geometry) == one_by_one


@pytest.mark.parametrize("rule", RULES)
def test_none_where_the_rule_keeps_no_pixel(rule):
    maps = torch.full((2, 2, 6, 6), -1.0)
    maps[0, 0] = torch.nan  # the model saw none of it
    maps[0, 1, 2:4, 2:4] = 3.0  # the one map that draws a box
    got = boxes(maps, rule, 0.2)
    assert got[0][0] is None
    assert got[0][1] is not None
    assert got[0][1] == _old(rule, maps[0, 1].numpy(), 0.2)
    if rule in ("paper", "wsol"):  # below zero everywhere (paper), constant (wsol): nothing kept
        assert got[1] == [None, None]


def test_shapes_and_empty_batches():
    assert boxes(torch.zeros(0, 3, 5, 5)) == []
    assert boxes(torch.zeros(2, 0, 5, 5)) == [[], []]
    assert boxes(torch.zeros(2, 0, 5, 5), geometry=Preprocess(size=5).geometry(9, 9)) == [[], []]
    half = _maps(n=1, k=2).half()
    assert boxes(half) == boxes(half.float())


def test_errors_name_the_parameter():
    maps = _maps(n=2)
    with pytest.raises(InvalidArgument, match=r"did you mean 'paper'") as err:
        boxes(maps, "papr")
    assert err.value.argument == "rule"
    with pytest.raises(InvalidArgument, match=r"rule_boxes") as err:
        boxes(maps, "all")
    assert err.value.argument == "rule"
    with pytest.raises(InvalidArgument, match=r"\[0, 1\]") as err:
        boxes(maps, "paper", 1.5)
    assert err.value.argument == "threshold"
    with pytest.raises(InvalidArgument, match=r"Tensor\[N, k, h, w\]") as err:
        boxes(maps[0])
    assert err.value.argument == "maps"
    with pytest.raises(InvalidArgument, match=r"one per image: 1 for 2") as err:
        boxes(maps, geometry=[Preprocess().geometry(10, 10)])
    assert err.value.argument == "geometry"
