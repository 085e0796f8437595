"""camloc.maps.to_image_frame and normalize_maps against hand values and independent resamplers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from camloc.images import Geometry, Preprocess
from camloc.maps.frames import normalize_maps, to_image_frame


def _axis(n_out: int, resized: int, offset: int, size: int, n_raw: int):
    """Per original pixel along one axis: inside the window?, the two raw indices, and the weight of the second."""
    u = (np.arange(n_out) + 0.5) * resized / n_out - offset  # input-frame coordinate of the pixel centre
    inside = (u >= 0) & (u <= size)
    p = np.clip(u * n_raw / size - 0.5, 0.0, n_raw - 1.0)  # raw-map coordinate, half-pixel convention, clamped
    i0 = np.floor(p).astype(int)
    i1 = np.minimum(i0 + 1, n_raw - 1)
    return inside, i0, i1, p - i0


def _bilinear_oracle(raw: np.ndarray, geo: Geometry) -> np.ndarray:
    """Float64 numpy resampler: each original pixel centre -> input frame -> raw map coordinate,
    bilinear between the four neighbours, NaN where the centre is outside the window."""
    _, h, w = raw.shape
    in_y, y0, y1, fy = _axis(geo.height, geo.resized_height, geo.top, geo.size, h)
    in_x, x0, x1, fx = _axis(geo.width, geo.resized_width, geo.left, geo.size, w)
    fy, fx = fy[:, None], fx[None, :]
    top = raw[:, y0][:, :, x0] * (1 - fx) + raw[:, y0][:, :, x1] * fx
    bottom = raw[:, y1][:, :, x0] * (1 - fx) + raw[:, y1][:, :, x1] * fx
    out = top * (1 - fy) + bottom * fy
    out[:, ~(in_y[:, None] & in_x[None, :])] = np.nan
    return out


# --------------------------------------------------------------------------------------------
# squash: straight resize of the raw maps


@pytest.mark.parametrize(
    "raw_hw, image_wh",
    [
        ((7, 7), (500, 375)),
        ((7, 7), (5, 9)),
        ((7, 7), (224, 224)),
        ((14, 14), (33, 600)),
        ((7, 7), (3, 2)),
        ((5, 9), (64, 40)),
    ],
)
def test_squash_equals_interpolate(raw_hw, image_wh):
    g = torch.Generator().manual_seed(sum(raw_hw) * 1000 + sum(image_wh))
    raw = torch.randn(3, *raw_hw, generator=g)
    geo = Preprocess(mode="squash").geometry(*image_wh)
    out = to_image_frame(raw, geo)
    w, h = image_wh
    want = F.interpolate(raw[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    assert out.shape == (3, h, w)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, want, atol=1e-5, rtol=0)


def test_squash_equals_numpy_oracle():
    raw = torch.randn(2, 7, 7, generator=torch.Generator().manual_seed(1))
    geo = Preprocess(mode="squash").geometry(37, 23)
    out = to_image_frame(raw, geo).numpy()
    np.testing.assert_allclose(out, _bilinear_oracle(raw.double().numpy(), geo), atol=1e-5, rtol=0)


def test_squash_constant_map_stays_constant():
    raw = torch.full((1, 7, 7), 2.5)
    out = to_image_frame(raw, Preprocess(mode="squash").geometry(41, 19))
    torch.testing.assert_close(out, torch.full((1, 19, 41), 2.5), atol=1e-6, rtol=0)


def test_squash_same_size_is_identity():
    geo = Preprocess(mode="squash").geometry(224, 224)
    # White noise: a grid coordinate carries ~1e-5 px of float32 rounding, so < 1e-3 on unit noise.
    noise = torch.randn(2, 224, 224, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(to_image_frame(noise, geo), noise, atol=1e-3, rtol=0)
    # A smooth (CAM-like) map comes back to 1e-5.
    smooth = F.interpolate(
        torch.randn(1, 2, 7, 7, generator=torch.Generator().manual_seed(3)),
        size=(224, 224),
        mode="bilinear",
        align_corners=False,
    )[0]
    torch.testing.assert_close(to_image_frame(smooth, geo), smooth, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------------------------
# crop: NaN outside the window the model saw


@pytest.mark.parametrize("image_wh", [(500, 375), (375, 500), (333, 517), (300, 299), (100, 80)])
def test_crop_nan_exactly_outside_window(image_wh):
    raw = torch.randn(2, 7, 7, generator=torch.Generator().manual_seed(image_wh[0]))
    geo = Preprocess(mode="crop").geometry(*image_wh)
    out = to_image_frame(raw, geo)
    w, h = image_wh
    assert out.shape == (2, h, w)
    # Window in original coordinates, from the hand geometry: [left, left + size) of the resized image.
    x_lo, x_hi = geo.left * w / geo.resized_width, (geo.left + geo.size) * w / geo.resized_width
    y_lo, y_hi = geo.top * h / geo.resized_height, (geo.top + geo.size) * h / geo.resized_height
    cx = np.arange(w) + 0.5
    cy = np.arange(h) + 0.5
    in_x = (cx >= x_lo) & (cx <= x_hi)
    in_y = (cy >= y_lo) & (cy <= y_hi)
    # Leave out centres within 1e-4 pixel of the window edge: which side they fall on is float noise.
    sure_x = np.minimum(np.abs(cx - x_lo), np.abs(cx - x_hi)) > 1e-4
    sure_y = np.minimum(np.abs(cy - y_lo), np.abs(cy - y_hi)) > 1e-4
    inside = in_y[:, None] & in_x[None, :]
    sure = sure_y[:, None] & sure_x[None, :]
    finite = torch.isfinite(out).numpy()
    for c in range(2):
        assert np.array_equal(finite[c][sure], inside[sure])
    # The image is wider or taller than the window: some NaN must be there (for a non-square image).
    if w != h:
        assert not finite.all()
    assert finite.any()


@pytest.mark.parametrize("image_wh", [(500, 375), (61, 150), (333, 517)])
def test_crop_values_equal_numpy_oracle(image_wh):
    raw = torch.randn(2, 7, 7, generator=torch.Generator().manual_seed(3))
    geo = Preprocess(mode="crop").geometry(*image_wh)
    out = to_image_frame(raw, geo).numpy()
    want = _bilinear_oracle(raw.double().numpy(), geo)
    both = np.isfinite(out) & np.isfinite(want)
    # Same NaN pattern except, at most, the one row/column whose centre sits on the window edge.
    assert (np.isfinite(out) != np.isfinite(want)).sum() <= 2 * 2 * (image_wh[0] + image_wh[1])
    assert both.sum() > 0.5 * np.isfinite(want).sum()
    np.testing.assert_allclose(out[both], want[both], atol=1e-5, rtol=0)


def test_crop_unit_scale_equals_interpolate_at_offset():
    # 256x256 with Resize(256)/CenterCrop(224): resized 256x256 (scale 1), window at (16, 16).
    geo = Preprocess(mode="crop").geometry(256, 256)
    assert (geo.resized_width, geo.resized_height, geo.left, geo.top) == (256, 256, 16, 16)
    raw = torch.randn(3, 7, 7, generator=torch.Generator().manual_seed(4))
    out = to_image_frame(raw, geo)
    assert out.shape == (3, 256, 256)
    up = F.interpolate(raw[None], size=(224, 224), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(out[:, 16:240, 16:240], up, atol=1e-5, rtol=0)
    mask = torch.ones(256, 256, dtype=torch.bool)
    mask[16:240, 16:240] = False
    assert torch.isnan(out[:, mask]).all()


def test_crop_scale_two_equals_interpolate_of_window():
    # 512x512: resized 256x256 (scale 2), window (16, 16)..(240, 240) of the resized image,
    # i.e. (32, 32)..(480, 480) of the original; there the map equals the raw map resized to 448x448.
    geo = Preprocess(mode="crop").geometry(512, 512)
    raw = torch.randn(1, 7, 7, generator=torch.Generator().manual_seed(5))
    out = to_image_frame(raw, geo)
    up = F.interpolate(raw[None], size=(448, 448), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(out[:, 32:480, 32:480], up, atol=1e-5, rtol=0)
    assert torch.isnan(out[:, :32]).all() and torch.isnan(out[:, 480:]).all()
    assert torch.isnan(out[:, :, :32]).all() and torch.isnan(out[:, :, 480:]).all()


# --------------------------------------------------------------------------------------------
# normalize_maps


def test_minmax_by_hand():
    m = torch.tensor([[[1.0, 2.0], [3.0, 5.0]], [[-4.0, 0.0], [4.0, 0.0]]])
    out = normalize_maps(m, "minmax")
    want = torch.tensor([[[0.0, 0.25], [0.5, 1.0]], [[0.0, 0.5], [1.0, 0.5]]])
    torch.testing.assert_close(out, want, atol=1e-7, rtol=0)


def test_minmax_per_map_on_4d_batch():
    m = torch.randn(2, 3, 5, 6, generator=torch.Generator().manual_seed(6)) * 10 + 3
    out = normalize_maps(m, "minmax")
    assert out.shape == m.shape
    flat = out.flatten(-2)
    torch.testing.assert_close(flat.amin(-1), torch.zeros(2, 3), atol=1e-7, rtol=0)
    torch.testing.assert_close(flat.amax(-1), torch.ones(2, 3), atol=1e-6, rtol=0)
    mf = m.double().flatten(-2)
    want = (mf - mf.amin(-1, keepdim=True)) / (mf.amax(-1, keepdim=True) - mf.amin(-1, keepdim=True))
    torch.testing.assert_close(flat.double(), want, atol=1e-6, rtol=0)


def test_max_by_hand():
    m = torch.tensor([[[1.0, 2.0], [3.0, 5.0]], [[-2.0, 1.0], [4.0, 0.0]]])
    out = normalize_maps(m, "max")
    want = torch.tensor([[[0.2, 0.4], [0.6, 1.0]], [[-0.5, 0.25], [1.0, 0.0]]])
    torch.testing.assert_close(out, want, atol=1e-7, rtol=0)


def test_constant_maps():
    m = torch.stack([torch.full((3, 4), 7.0), torch.zeros(3, 4)])
    assert torch.equal(normalize_maps(m, "minmax"), torch.zeros(2, 3, 4))
    # max: 7/7 = 1 everywhere; an all-zero map stays zero (no 0/0)
    assert torch.equal(normalize_maps(m, "max"), torch.stack([torch.ones(3, 4), torch.zeros(3, 4)]))


def test_nans_ignored_and_kept():
    nan = float("nan")
    m = torch.tensor([[[nan, 1.0], [3.0, 5.0]]])
    mm = normalize_maps(m, "minmax")
    assert torch.isnan(mm[0, 0, 0])
    torch.testing.assert_close(mm[0].flatten()[1:], torch.tensor([0.0, 0.5, 1.0]), atol=1e-7, rtol=0)
    mx = normalize_maps(m, "max")
    assert torch.isnan(mx[0, 0, 0])
    torch.testing.assert_close(mx[0].flatten()[1:], torch.tensor([0.2, 0.6, 1.0]), atol=1e-7, rtol=0)


def test_all_nan_map_stays_nan_and_others_unaffected():
    m = torch.stack([torch.full((2, 2), float("nan")), torch.tensor([[0.0, 2.0], [4.0, 8.0]])])
    for how, want in (("minmax", [0.0, 0.25, 0.5, 1.0]), ("max", [0.0, 0.25, 0.5, 1.0])):
        out = normalize_maps(m, how)
        assert torch.isnan(out[0]).all()
        torch.testing.assert_close(out[1].flatten(), torch.tensor(want), atol=1e-7, rtol=0)


def test_crop_frame_then_minmax_ignores_outside():
    raw = torch.randn(1, 7, 7, generator=torch.Generator().manual_seed(8))
    framed = to_image_frame(raw, Preprocess(mode="crop").geometry(500, 375))
    out = normalize_maps(framed, "minmax")
    fin = torch.isfinite(out)
    assert torch.equal(fin, torch.isfinite(framed))
    assert out[fin].min().item() == 0.0 and out[fin].max().item() == pytest.approx(1.0, abs=1e-6)


def test_none_is_identity():
    m = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(9))
    m[0, 0, 0] = float("nan")
    out = normalize_maps(m, "none")
    assert torch.equal(torch.nan_to_num(out, 123.0), torch.nan_to_num(m, 123.0))


def test_invalid_normalization_raises():
    with pytest.raises(ValueError):
        normalize_maps(torch.zeros(1, 2, 2), "l2")
