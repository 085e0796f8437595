"""camloc.images: decoding files to upright RGB, preprocessing as torchvision does, and geometry."""

from __future__ import annotations

import io
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

import camloc
from camloc.images import IMAGENET_MEAN, IMAGENET_STD, BadImage, Geometry, Preprocess, load_batch, open_image, to_rgb

ORIENTATION = 0x0112
RED, BLUE = (255, 0, 0), (0, 0, 255)


def _marked(width: int = 40, height: int = 20) -> Image.Image:
    """A blue image with a red 10x10 block in its stored top-left corner."""
    im = Image.new("RGB", (width, height), BLUE)
    im.paste(RED, (0, 0, 10, 10))
    return im


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8), "RGB")


# --------------------------------------------------------------------------------------------
# open_image / to_rgb


@pytest.mark.parametrize("ext", ["png", "jpg"])
@pytest.mark.parametrize(
    "orientation, corner",
    [
        # 6: stored image must be turned 90 degrees clockwise: stored top-left -> displayed top-right.
        (6, "top_right"),
        # 8: turned 90 degrees counter-clockwise: stored top-left -> displayed bottom-left.
        (8, "bottom_left"),
        # 3: turned 180 degrees: stored top-left -> displayed bottom-right (size unchanged).
        (3, "bottom_right"),
    ],
)
def test_open_image_applies_exif_orientation(tmp_path, ext, orientation, corner):
    path = tmp_path / f"oriented.{ext}"
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    _marked(40, 20).save(path, exif=exif, **({"quality": 95} if ext == "jpg" else {}))

    im = open_image(path)
    assert im.mode == "RGB"
    assert im.size == ((40, 20) if orientation == 3 else (20, 40))
    a = np.asarray(im).astype(int)
    h, w = a.shape[:2]
    # Sample the middle of each 10x10 corner block (away from JPEG ringing at the block edge).
    corners = {
        "top_left": a[5, 5],
        "top_right": a[5, w - 6],
        "bottom_left": a[h - 6, 5],
        "bottom_right": a[h - 6, w - 6],
    }
    tol = 0 if ext == "png" else 12
    for name, px in corners.items():
        want = RED if name == corner else BLUE
        assert np.abs(px - np.array(want)).max() <= tol, (name, px.tolist())


def test_open_image_without_orientation_keeps_layout(tmp_path):
    path = tmp_path / "plain.png"
    _marked(40, 20).save(path)
    a = np.asarray(open_image(path))
    assert a.shape == (20, 40, 3)
    assert a[0, 0].tolist() == list(RED) and a[0, -1].tolist() == list(BLUE)


def test_open_image_grayscale_gives_equal_channels(tmp_path):
    g = np.arange(0, 240, dtype=np.uint8).reshape(12, 20)
    path = tmp_path / "gray.png"
    Image.fromarray(g, "L").save(path)
    im = open_image(path)
    assert im.mode == "RGB" and im.size == (20, 12)
    a = np.asarray(im)
    for c in range(3):
        np.testing.assert_array_equal(a[..., c], g)


def test_open_image_composites_rgba_on_white(tmp_path):
    im = Image.new("RGBA", (3, 1))
    im.putdata([(200, 100, 0, 0), (200, 100, 0, 255), (200, 100, 0, 128)])
    path = tmp_path / "alpha.png"
    im.save(path)
    a = np.asarray(open_image(path)).astype(int)
    assert a[0, 0].tolist() == [255, 255, 255]  # fully transparent -> white
    assert a[0, 1].tolist() == [200, 100, 0]  # opaque -> unchanged
    # Half alpha: c * 128/255 + 255 * (1 - 128/255) = (227.39, 177.20, 127.0)
    blend = [c * 128 / 255 + 255 * (1 - 128 / 255) for c in (200, 100, 0)]
    assert np.abs(a[0, 2] - np.array(blend)).max() <= 1.0, a[0, 2].tolist()


def test_open_image_la_mode_composited(tmp_path):
    im = Image.new("LA", (2, 1))
    im.putdata([(40, 0), (40, 255)])
    path = tmp_path / "la.png"
    im.save(path)
    a = np.asarray(open_image(path))
    assert a[0, 0].tolist() == [255, 255, 255]
    assert a[0, 1].tolist() == [40, 40, 40]


def test_open_image_palette_without_transparency(tmp_path):
    im = Image.new("P", (3, 1))
    palette = [10, 20, 30, 200, 0, 50, 0, 255, 0] + [0] * (256 * 3 - 9)
    im.putpalette(palette)
    im.putdata([0, 1, 2])
    path = tmp_path / "pal.png"
    im.save(path)
    assert Image.open(path).mode == "P"
    a = np.asarray(open_image(path))
    assert a.reshape(-1, 3).tolist() == [[10, 20, 30], [200, 0, 50], [0, 255, 0]]


def test_open_image_palette_with_transparency(tmp_path):
    im = Image.new("P", (3, 1))
    palette = [10, 20, 30, 200, 0, 50, 0, 255, 0] + [0] * (256 * 3 - 9)
    im.putpalette(palette)
    im.putdata([0, 1, 2])
    path = tmp_path / "pal_t.png"
    im.save(path, transparency=1)  # palette entry 1 is fully transparent
    reread = Image.open(path)
    assert reread.mode == "P" and "transparency" in reread.info
    a = np.asarray(open_image(path))
    assert a.reshape(-1, 3).tolist() == [[10, 20, 30], [255, 255, 255], [0, 255, 0]]


def test_open_image_cmyk(tmp_path):
    im = Image.new("CMYK", (4, 1))
    # pure cyan, pure black, no ink, magenta + yellow
    im.putdata([(255, 0, 0, 0), (0, 0, 0, 255), (0, 0, 0, 0), (0, 255, 255, 0)])
    path = tmp_path / "cmyk.tif"
    im.save(path)
    assert Image.open(path).mode == "CMYK"
    a = np.asarray(open_image(path))
    assert a.reshape(-1, 3).tolist() == [[0, 255, 255], [0, 0, 0], [255, 255, 255], [255, 0, 0]]


def test_open_image_16bit_gray_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 32768, 65535, 257]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    a = np.asarray(open_image(path))
    # v / 65535 * 255: 0 -> 0, 32768 -> 127.50 -> 128, 65535 -> 255, 257 -> 1
    assert a[0, :, 0].tolist() == [0, 128, 255, 1]
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()


def test_to_rgb_float_image_in_unit_range():
    f = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    a = np.asarray(to_rgb(Image.fromarray(f, "F")))
    assert a[0, :, 0].tolist() == [0, 128, 255]  # 0.5 * 255 = 127.5 -> 128 (numpy rounds half to even)


def test_to_rgb_rgb_passthrough():
    im = _noise(5, 4)
    assert np.array_equal(np.asarray(to_rgb(im)), np.asarray(im))


def _truncated_jpeg(tmp_path: Path) -> Path:
    full = tmp_path / "full.jpg"
    _noise(64, 64, seed=3).save(full, quality=90)
    data = full.read_bytes()
    with Image.open(full) as im:
        im.load()  # the complete file is a valid image
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    return cut


@pytest.mark.parametrize("kind", ["missing", "directory", "text", "truncated", "empty"])
@pytest.mark.parametrize("as_path", [False, True])
def test_open_image_errors_name_the_file(tmp_path, kind, as_path):
    if kind == "missing":
        p = tmp_path / "nope.jpg"
    elif kind == "directory":
        p = tmp_path / "folder.jpg"
        p.mkdir()
    elif kind == "text":
        p = tmp_path / "notes.jpg"
        p.write_text("this is not a picture\n")
    elif kind == "empty":
        p = tmp_path / "empty.png"
        p.write_bytes(b"")
    else:
        p = _truncated_jpeg(tmp_path)
    arg = p if as_path else str(p)
    with pytest.raises(BadImage) as info:
        open_image(arg)
    assert str(p) in str(info.value)
    assert info.value.path == str(p)
    assert info.value.reason and info.value.reason in str(info.value)
    assert isinstance(info.value, ValueError)
    assert camloc.BadImage is BadImage


def test_complete_jpeg_opens_while_half_does_not(tmp_path):
    full = tmp_path / "full.jpg"
    _noise(64, 64, seed=3).save(full, quality=90)
    assert open_image(full).size == (64, 64)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(BadImage):
        open_image(cut)


# --------------------------------------------------------------------------------------------
# Preprocess against torchvision's own transforms

SIZES = [
    (500, 375),
    (375, 500),
    (333, 517),
    (517, 333),
    (256, 256),
    (224, 224),
    (100, 80),
    (61, 150),
    (257, 256),
    (1, 1),
    (300, 299),
]


def _tv_crop(interp=transforms.InterpolationMode.BILINEAR):
    return transforms.Compose(
        [
            transforms.Resize(256, interpolation=interp),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


@pytest.mark.parametrize("size", SIZES)
def test_preprocess_crop_equals_torchvision_eval_transform(size):
    im = _noise(*size, seed=size[0] * 1000 + size[1])
    x, geo = Preprocess(mode="crop")(im)
    want = _tv_crop()(im)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    torch.testing.assert_close(x, want, atol=1e-6, rtol=0)
    assert (geo.width, geo.height, geo.size) == (size[0], size[1], 224)
    # The resized size is what torchvision's Resize(256) itself produces.
    assert (geo.resized_width, geo.resized_height) == transforms.Resize(256)(im).size


@pytest.mark.parametrize("size", [(500, 375), (61, 150)])
def test_preprocess_crop_bicubic_equals_torchvision(size):
    im = _noise(*size, seed=7)
    x, _ = Preprocess(mode="crop", interpolation="bicubic")(im)
    torch.testing.assert_close(x, _tv_crop(transforms.InterpolationMode.BICUBIC)(im), atol=1e-6, rtol=0)


@pytest.mark.parametrize("size", SIZES)
def test_preprocess_squash_equals_torchvision(size):
    im = _noise(*size, seed=size[0] + 17 * size[1])
    x, geo = Preprocess(mode="squash")(im)
    want = transforms.Compose(
        [transforms.Resize((224, 224)), transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )(im)
    torch.testing.assert_close(x, want, atol=1e-6, rtol=0)
    assert geo == Geometry(size[0], size[1], 224, 224, 224, 0, 0)


def test_preprocess_other_sizes_equal_torchvision():
    im = _noise(400, 300, seed=11)
    x, geo = Preprocess(size=112, resize_size=128, mode="crop")(im)
    want = transforms.Compose(
        [
            transforms.Resize(128),
            transforms.CenterCrop(112),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )(im)
    torch.testing.assert_close(x, want, atol=1e-6, rtol=0)
    # 400x300: long side int(128 * 400 / 300) = int(170.67) = 170; left round(58 / 2) = 29; top round(16 / 2) = 8
    assert (geo.resized_width, geo.resized_height, geo.left, geo.top) == (170, 128, 29, 8)


@pytest.mark.parametrize(
    "size, want",
    [
        # long side int(256 * 500 / 375) = int(341.33) = 341; left round((341 - 224) / 2) = round(58.5) = 58
        # (half to even); top round(32 / 2) = 16
        ((500, 375), (341, 256, 58, 16)),
        ((375, 500), (256, 341, 16, 58)),
        # int(256 * 517 / 333) = int(397.45) = 397; round(173 / 2) = round(86.5) = 86 (half to even)
        ((517, 333), (397, 256, 86, 16)),
        # int(256 * 640 / 480) = int(341.33) = 341 again
        ((640, 480), (341, 256, 58, 16)),
        # int(256 * 257 / 256) = 257; round(33 / 2) = round(16.5) = 16
        ((257, 256), (257, 256, 16, 16)),
        # int(256 * 300 / 299) = int(256.86) = 256
        ((300, 299), (256, 256, 16, 16)),
        # upsampling: int(256 * 150 / 61) = int(629.5) = 629; round(405 / 2) = round(202.5) = 202
        ((61, 150), (256, 629, 16, 202)),
        # int(256 * 1000 / 300) = int(853.33) = 853; round(629 / 2) = round(314.5) = 314
        ((1000, 300), (853, 256, 314, 16)),
    ],
)
def test_crop_geometry_by_hand(size, want):
    geo = Preprocess(mode="crop").geometry(*size)
    assert (geo.resized_width, geo.resized_height, geo.left, geo.top) == want
    assert geo.scale_x == pytest.approx(size[0] / want[0]) and geo.scale_y == pytest.approx(size[1] / want[1])


def test_preprocess_rejects_bad_options():
    with pytest.raises(ValueError):
        Preprocess(mode="stretch")
    with pytest.raises(ValueError):
        Preprocess(interpolation="lanczos5")


# --------------------------------------------------------------------------------------------
# Geometry.box_to_original


def test_box_to_original_squash_by_hand():
    geo = Preprocess(mode="squash").geometry(448, 224)  # x scale 2, y scale 1
    assert geo.box_to_original((0, 0, 223, 223)) == (0, 0, 447, 223)
    assert geo.box_to_original((10, 20, 19, 29)) == (20, 20, 39, 29)
    # 112x448 image: x scale 0.5, y scale 2. x: [10, 20) -> [5, 10) -> 5..9; y: [20, 30) -> [40, 60) -> 40..59
    geo = Preprocess(mode="squash").geometry(112, 448)
    assert geo.box_to_original((10, 20, 19, 29)) == (5, 40, 9, 59)
    # a single input pixel 11 -> [5.5, 6) -> original pixel 5 only
    assert geo.box_to_original((11, 0, 11, 0)) == (5, 0, 5, 1)


def test_box_to_original_crop_by_hand():
    # 512x512 -> resized 256x256 (scale 2), window at (16, 16)
    geo = Preprocess(mode="crop").geometry(512, 512)
    assert (geo.resized_width, geo.left, geo.top) == (256, 16, 16)
    assert geo.box_to_original((0, 0, 223, 223)) == (32, 32, 479, 479)
    # x: [10+16, 20+16) * 2 = [52, 72) -> 52..71; y: [36, 46) * 2 = [72, 92) -> 72..91
    assert geo.box_to_original((10, 20, 19, 29)) == (52, 72, 71, 91)
    # 500x375 -> 341x256, window at (58, 16); scale_x = 500/341, scale_y = 375/256
    geo = Preprocess(mode="crop").geometry(500, 375)
    # x0 = floor(58 * 500/341) = floor(85.04) = 85; y0 = floor(16 * 375/256) = floor(23.44) = 23
    # x1 = ceil(282 * 500/341) - 1 = ceil(413.49) - 1 = 413; y1 = ceil(240 * 375/256) - 1 = ceil(351.56) - 1 = 351
    assert geo.box_to_original((0, 0, 223, 223)) == (85, 23, 413, 351)


def test_box_to_original_clamps_to_image():
    geo = Geometry(width=100, height=50, size=10, resized_width=10, resized_height=10, left=0, top=0)
    assert geo.box_to_original((-3, -3, 12, 12)) == (0, 0, 99, 49)


def _exact_box(geo: Geometry, box) -> tuple[int, int, int, int]:
    """Original pixels touched by input pixels x0..x1, y0..y1, in exact rational arithmetic."""
    x0, y0, x1, y1 = box
    sx, sy = Fraction(geo.width, geo.resized_width), Fraction(geo.height, geo.resized_height)
    ox0 = math.floor((x0 + geo.left) * sx)
    oy0 = math.floor((y0 + geo.top) * sy)
    ox1 = math.ceil((x1 + 1 + geo.left) * sx) - 1
    oy1 = math.ceil((y1 + 1 + geo.top) * sy) - 1
    return max(0, ox0), max(0, oy0), min(geo.width - 1, ox1), min(geo.height - 1, oy1)


@pytest.mark.parametrize("mode", ["squash", "crop"])
def test_box_to_original_matches_exact_arithmetic(mode):
    """Boxes whose edges land exactly on an original pixel edge must not be moved by float rounding."""
    rng = np.random.default_rng(5)
    pre = Preprocess(mode=mode)
    sizes = [(300, 300), (500, 375), (375, 500), (640, 427), (333, 517), (1000, 300), (96, 160), (448, 224)]
    mismatches = []
    for w, h in sizes:
        geo = pre.geometry(w, h)
        boxes = [(a, a, b, b) for a in range(0, 224, 1) for b in (a, 223)]
        for _ in range(300):
            x0, x1 = sorted(rng.integers(0, 224, 2).tolist())
            y0, y1 = sorted(rng.integers(0, 224, 2).tolist())
            boxes.append((x0, y0, x1, y1))
        for box in boxes:
            got, want = geo.box_to_original(box), _exact_box(geo, box)
            if got != want:
                mismatches.append(((w, h), box, got, want))
    assert not mismatches, f"{len(mismatches)} boxes differ, e.g. {mismatches[:3]}"


# --------------------------------------------------------------------------------------------
# load_batch


def test_load_batch_keeps_good_files_in_order_and_names_bad_ones(tmp_path):
    pre = Preprocess()
    a, b, c = tmp_path / "a.png", tmp_path / "b.jpg", tmp_path / "c.png"
    _noise(300, 200, seed=1).save(a)
    _noise(120, 160, seed=2).save(b, quality=95)
    _noise(256, 256, seed=3).save(c)
    text = tmp_path / "t.jpg"
    text.write_text("hello")
    missing = tmp_path / "missing.png"
    cut = _truncated_jpeg(tmp_path)

    paths = [text, a, missing, b, cut, str(c)]
    batch = load_batch(paths, pre)
    assert batch.paths == [str(a), str(b), str(c)]
    assert batch.images.shape == (3, 3, 224, 224)
    assert [e.path for e in batch.errors] == [str(text), str(missing), str(cut)]
    assert all(isinstance(e, BadImage) for e in batch.errors)
    assert batch.originals is None
    for i, p in enumerate([a, b, c]):
        x, geo = pre(open_image(p))
        assert torch.equal(batch.images[i], x)
        assert batch.geometries[i] == geo
    assert [(g.width, g.height) for g in batch.geometries] == [(300, 200), (120, 160), (256, 256)]


def test_load_batch_keep_originals(tmp_path):
    paths = []
    for i, size in enumerate([(50, 40), (40, 70)]):
        p = tmp_path / f"{i}.png"
        _noise(*size, seed=i).save(p)
        paths.append(p)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    batch = load_batch([paths[0], bad, paths[1]], Preprocess(mode="squash"), keep_originals=True)
    assert batch.originals is not None and len(batch.originals) == 2
    for im, p in zip(batch.originals, paths, strict=True):
        assert im.mode == "RGB"
        assert np.array_equal(np.asarray(im), np.asarray(Image.open(p).convert("RGB")))
    assert [e.path for e in batch.errors] == [str(bad)]


def test_load_batch_all_bad_gives_empty_batch(tmp_path):
    batch = load_batch([tmp_path / "x.jpg", tmp_path / "y.jpg"], Preprocess(size=96))
    assert batch.images.shape == (0, 3, 96, 96)
    assert batch.paths == [] and batch.geometries == []
    assert [e.path for e in batch.errors] == [str(tmp_path / "x.jpg"), str(tmp_path / "y.jpg")]


def test_box_to_original_pixel_edge_landing_exactly_on_original_edge():
    # 300x300 squashed to 224: scale 300/224 = 75/56. Input pixel 168 spans [168, 169) * 75/56 = [225, 226.34),
    # i.e. original pixels 225 and 226; pixel 167 spans [223.66, 225) -> 223 and 224.
    geo = Preprocess(mode="squash").geometry(300, 300)
    assert geo.box_to_original((168, 168, 168, 168)) == (225, 225, 226, 226)
    assert geo.box_to_original((167, 167, 167, 167)) == (223, 223, 224, 224)


# --------------------------------------------------------------------------------------------
# load_batch crops


def test_load_batch_crops_cut_before_preprocessing(tmp_path):
    pre = Preprocess(size=64, resize_size=72)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    _noise(90, 70, seed=4).save(a)
    _noise(50, 80, seed=5).save(b)
    box = (10, 5, 59, 44)  # inclusive: 50 x 40 pixels
    batch = load_batch([a, b, a], pre, keep_originals=True, crops=[box, None, (0, 0, 0, 0)])
    by_hand = Image.open(a).convert("RGB").crop((10, 5, 60, 45))
    assert batch.originals[0].size == (50, 40)
    assert np.array_equal(np.asarray(batch.originals[0]), np.asarray(by_hand))
    assert torch.equal(batch.images[0], pre(by_hand)[0])
    assert (batch.geometries[0].width, batch.geometries[0].height) == (50, 40)
    assert torch.equal(batch.images[1], pre(open_image(b))[0])  # None: the whole image
    assert batch.originals[2].size == (1, 1)  # a one-pixel box is one pixel, not empty
    assert np.asarray(batch.originals[2])[0, 0].tolist() == list(Image.open(a).convert("RGB").getpixel((0, 0)))


def test_load_batch_crop_is_clipped_to_the_image(tmp_path):
    p = tmp_path / "a.png"
    _noise(40, 30, seed=6).save(p)
    batch = load_batch([p], Preprocess(mode="squash", size=32), keep_originals=True, crops=[(-10, 20, 100, 99)])
    want = np.asarray(Image.open(p).convert("RGB"))[20:30, 0:40]
    assert np.array_equal(np.asarray(batch.originals[0]), want)


@pytest.mark.parametrize("box", [(50, 0, 60, 10), (0, 30, 10, 40), (10, 10, 5, 20), (-9, -9, -1, -1)])
def test_load_batch_empty_crop_is_an_error_for_that_file(tmp_path, box):
    p, q = tmp_path / "a.png", tmp_path / "b.png"
    _noise(40, 30, seed=7).save(p)
    _noise(40, 30, seed=8).save(q)
    batch = load_batch([p, q], Preprocess(size=32, resize_size=36), crops=[box, (0, 0, 39, 29)])
    assert batch.paths == [str(q)]
    assert len(batch.errors) == 1 and isinstance(batch.errors[0], BadImage)
    assert batch.errors[0].path == str(p) and "crop box" in batch.errors[0].reason and "40x30" in batch.errors[0].reason


def test_load_batch_crops_must_match_paths(tmp_path):
    with pytest.raises(ValueError, match="one box or None per path"):
        load_batch([tmp_path / "a.png", tmp_path / "b.png"], Preprocess(), crops=[None])


# --------------------------------------------------------------------------------------------
# full mode: the whole photo at crop's scale


@pytest.mark.parametrize(
    "size, want",
    [((400, 300), (341, 256)), ((300, 400), (256, 341)), ((256, 256), (256, 256)), ((1000, 10), (25600, 256))],
)
def test_full_geometry_keeps_the_whole_image(size, want):
    geo = Preprocess(mode="full").geometry(*size)
    assert (geo.resized_width, geo.resized_height) == want  # torchvision's Resize(256): longer side truncated
    assert (geo.input_width, geo.input_height) == want and (geo.left, geo.top) == (0, 0) and geo.covers_image
    w, h = size
    assert geo.box_to_original((0, 0, want[0] - 1, want[1] - 1)) == (0, 0, w - 1, h - 1)
    crop = Preprocess().geometry(*size)
    assert (crop.input_width, crop.input_height) == (224, 224) and crop.covers_image == (size == (224, 224))


def test_full_mode_batches_one_shape_and_names_the_problem(tmp_path):
    a, b, c = (tmp_path / n for n in ("a.png", "b.png", "c.png"))
    Image.new("RGB", (400, 300), (200, 10, 10)).save(a)
    Image.new("RGB", (400, 300), (10, 200, 10)).save(b)
    Image.new("RGB", (300, 400), (10, 10, 200)).save(c)
    pre = Preprocess().with_mode("full")
    batch = load_batch([a, b], pre)
    assert batch.images.shape == (2, 3, 256, 341) and pre.mode == "full" and Preprocess().mode == "crop"
    with pytest.raises(camloc.InvalidArgument, match="2 different shapes"):
        load_batch([a, c], pre)


def test_full_mode_maps_cover_the_photo():
    geo = Preprocess(mode="full").geometry(400, 300)
    raw = torch.arange(12.0).view(1, 3, 4)  # a 3x4 map over the 341x256 input
    frame = camloc.to_image_frame(raw, geo)
    assert frame.shape == (1, 300, 400) and torch.isfinite(frame).all()
    direct = torch.nn.functional.interpolate(raw[None], size=(300, 400), mode="bilinear", align_corners=False)[0]
    assert torch.allclose(frame, direct, atol=1e-5)


def test_open_image_checks_pixels_from_the_header_and_names_file_objects(tmp_path):
    from camloc.errors import InputTooLarge
    from tests.helpers.images import bomb_png

    big = tmp_path / "big.png"
    big.write_bytes(bomb_png(9000, 9000))  # 81 million pixels in a few hundred bytes
    with pytest.raises(InputTooLarge, match=r"big.png: 9000x9000 pixels is over the limit of 1,000,000 pixels"):
        open_image(big, max_pixels=1_000_000)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png(30000, 30000))
    with pytest.raises(InputTooLarge, match=r"bomb.png: over PIL's limit against decompression bombs"):
        open_image(bomb)  # PIL's own check (2 x 89.5 million pixels) comes first
    photo = io.BytesIO()
    _noise(40, 30, seed=1).save(photo, format="JPEG")
    photo.name = "upload.jpg"
    assert open_image(photo, max_pixels=1200, formats={"JPEG"}).size == (40, 30)
    photo.seek(0)
    with pytest.raises(
        BadImage, match=r"^upload.jpg: not a readable image: its content is in no image format PIL reads \(PNG\)$"
    ):
        open_image(photo, formats={"PNG"})


def test_load_batch_also_gives_a_second_size_from_the_same_decode(tmp_path):
    rng = np.random.default_rng(3)
    paths = []
    for k, size in enumerate([(50, 40), (33, 61)]):
        paths.append(tmp_path / f"{k}.png")
        Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(paths[-1])
    (tmp_path / "bad.png").write_bytes(b"not an image")
    small, large = (
        Preprocess(size=24, resize_size=24, mode="squash"),
        Preprocess(size=40, resize_size=40, mode="squash"),
    )
    both = load_batch([paths[0], tmp_path / "bad.png", paths[1]], small, also=large)
    assert torch.equal(both.images, load_batch(paths, small).images)
    assert torch.equal(both.also, load_batch(paths, large).images) and len(both.errors) == 1
    assert load_batch(paths, small).also is None
    assert load_batch([tmp_path / "bad.png"], small, also=large).also.shape == (0, 3, 40, 40)
