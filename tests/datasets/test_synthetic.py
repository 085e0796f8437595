"""camloc.datasets.synthetic: exact boxes, determinism, balance, and the written layouts read back."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camloc.datasets import open_dataset
from camloc.datasets.synthetic import KINDS, MARKS, SHAPES, class_names, draw, generate


def _mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _replay(kind: str, seed: int, split: str, count: int, size: int) -> list[tuple]:
    """What generate draws for one split, redrawn in memory: its stream is the split's child of the seed."""
    seq = np.random.SeedSequence(seed).spawn(2)[("train", "test").index(split)]
    rng = np.random.default_rng(seq)
    labels = rng.permutation(np.arange(count) % len(class_names(kind)))
    return [draw(kind, rng, size, int(k)) for k in labels]


@pytest.mark.parametrize("kind", KINDS)
def test_draw_box_is_the_tight_box_of_the_drawn_mask(kind):
    rng = np.random.default_rng(7)
    n_classes = len(class_names(kind))
    for size in (64, 128):
        for label in range(n_classes):
            for _ in range(3):
                image, got_label, box, mask = draw(kind, rng, size, label)
                assert image.shape == (size, size, 3) and image.dtype == np.uint8
                assert mask.shape == (size, size) and mask.dtype == bool
                assert got_label == label and all(isinstance(c, int) for c in box)
                assert box == _mask_box(mask)
                # wholly inside the image: the object touches no border
                assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
                x0, y0, x1, y1 = box
                assert 0 < x0 <= x1 < size - 1 and 0 < y0 <= y1 < size - 1


@pytest.mark.parametrize("kind, low, high", [("shapes", 0.15, 0.40), ("finegrained", 0.30, 0.50)])
def test_draw_object_size_and_contrast(kind, low, high):
    rng = np.random.default_rng(3)
    size = 128
    extents, contrasts = [], []
    for _ in range(40):
        image, _, (x0, y0, x1, y1), mask = draw(kind, rng, size)
        extents.append(max(x1 - x0 + 1, y1 - y0 + 1) / size)
        # the object against the background just around it
        around = np.zeros_like(mask)
        around[max(y0 - 3, 0) : y1 + 4, max(x0 - 3, 0) : x1 + 4] = True
        around &= ~mask
        inside, outside = image[mask].astype(float).mean(0), image[around].astype(float).mean(0)
        contrasts.append(np.linalg.norm(inside - outside))
    assert low - 0.02 <= min(extents) and max(extents) <= high + 0.02
    assert max(extents) - min(extents) > (high - low) / 2  # sizes do vary
    assert np.mean(np.array(contrasts) > 30) >= 0.9


def test_draw_repeats_from_the_same_rng_state_and_checks_its_arguments():
    a = draw("shapes", np.random.default_rng(5))
    b = draw("shapes", np.random.default_rng(5))
    assert np.array_equal(a[0], b[0]) and a[1:3] == b[1:3] and np.array_equal(a[3], b[3])
    assert a[0].shape == (128, 128, 3) and draw("finegrained", np.random.default_rng(5))[0].shape == (192, 192, 3)
    with pytest.raises(ValueError, match="label 8 is outside 0..7"):
        draw("shapes", np.random.default_rng(0), 64, 8)
    with pytest.raises(ValueError, match="unknown kind 'dogs'"):
        draw("dogs", np.random.default_rng(0))
    with pytest.raises(ValueError, match="size must be an integer from 32"):
        draw("shapes", np.random.default_rng(0), 16)


def test_finegrained_classes_differ_only_in_a_small_marking():
    size = 192
    for seed in range(6):
        drawn = [draw("finegrained", np.random.default_rng(seed), size, k) for k in range(len(MARKS))]
        image0, _, box0, mask0 = drawn[0]
        width = max(box0[2] - box0[0], box0[3] - box0[1]) + 1
        for image, _, box, mask in drawn[1:]:
            assert box == box0 and np.array_equal(mask, mask0)  # the same bird
            changed = (image != image0).any(axis=2)
            assert changed.any() and not (changed & ~mask).any()  # only pixels on the bird change
            x0, y0, x1, y1 = _mask_box(changed)
            assert max(x1 - x0, y1 - y0) + 1 <= 0.35 * width  # within a patch ~30 % of the bird


def test_shapes_classes_are_different_shapes():
    masks = [draw("shapes", np.random.default_rng(11), 128, k)[3] for k in range(len(SHAPES))]
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            assert not np.array_equal(masks[i], masks[j]), (SHAPES[i], SHAPES[j])


def test_generate_csv_round_trip_against_a_replay(tmp_path):
    train, test = generate(tmp_path / "s", "shapes", train=20, test=9, seed=4, size=64)
    for split, ds, count in (("train", train, 20), ("test", test, 9)):
        assert (ds.format, ds.root, ds.class_names) == ("csv", tmp_path / "s" / split, list(SHAPES))
        assert [s.image_id for s in ds] == [f"{i:05d}.png" for i in range(count)]
        assert (tmp_path / "s" / split / "classes.txt").read_text().splitlines()[1] == "1 ring"
        for s, (image, label, box, _) in zip(ds, _replay("shapes", 4, split, count, 64), strict=True):
            assert s.path == tmp_path / "s" / split / "images" / s.image_id
            assert (s.label, s.boxes, s.size) == (label, (box,), (64, 64))
            assert np.array_equal(np.asarray(Image.open(s.path)), image)  # lossless PNG of the drawn image
    counts = Counter(s.label for s in train)
    assert set(counts) == set(range(len(SHAPES))) and max(counts.values()) - min(counts.values()) <= 1
    assert open_dataset(tmp_path / "s" / "test").samples == test.samples  # auto-detected as csv


def test_generate_is_deterministic_and_splits_are_independent(tmp_path):
    generate(tmp_path / "a", "finegrained", train=6, test=6, seed=1, size=64)
    generate(tmp_path / "b", "finegrained", train=6, test=6, seed=1, size=64)
    generate(tmp_path / "c", "finegrained", train=6, test=6, seed=2, size=64)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert len(a) == 2 * (6 + 2) and a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a if k.endswith(".png"))
    assert a["train/images/00000.png"] != a["test/images/00000.png"]
    assert a["train/boxes.csv"] != a["test/boxes.csv"]


def test_generate_cub_layout_round_trip(tmp_path):
    csv_train, csv_test = generate(tmp_path / "csv", "finegrained", train=12, test=7, seed=3, size=96)
    train, test = generate(tmp_path / "cub", "finegrained", train=12, test=7, seed=3, size=96, layout="cub")
    root = tmp_path / "cub"
    names = class_names("finegrained")
    for ds, twin, split in ((train, csv_train, "train"), (test, csv_test, "test")):
        assert (ds.format, ds.class_names, len(ds)) == ("cub", names, len(twin))
        for s, t in zip(ds, twin, strict=True):
            assert s.image_id.startswith(f"{s.label + 1:03d}.{names[s.label]}/{split}_")
            assert s.path == root / "images" / s.image_id
            assert (s.label, s.boxes) == (t.label, t.boxes)  # the same draws as the csv layout
            assert s.path.read_bytes() == t.path.read_bytes()
    first = (root / "bounding_boxes.txt").read_text().splitlines()[0]
    x0, y0, x1, y1 = train[0].boxes[0]
    assert first == f"1 {x0}.0 {y0}.0 {x1 - x0}.0 {y1 - y0}.0"
    assert (root / "classes.txt").read_text().splitlines()[0] == "1 bird_dot"
    assert (root / "train_test_split.txt").read_text().splitlines()[11:13] == ["12 1", "13 0"]
    assert open_dataset(root, split="all").format == "cub" and len(open_dataset(root, split="all")) == 19


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"kind": "dogs"}, "unknown kind 'dogs'"),
        ({"train": 0}, "train must be a positive number"),
        ({"test": -3}, "test must be a positive number"),
        ({"train": 2.5}, "train must be a positive number"),
        ({"size": 31}, "size must be an integer from 32 to 2048"),
        ({"size": 64.0}, "size must be an integer"),
        ({"layout": "voc"}, "unknown layout 'voc'"),
    ],
)
def test_generate_rejects_bad_arguments(tmp_path, kwargs, words):
    with pytest.raises(ValueError) as info:
        generate(tmp_path / "x", **{"train": 2, "test": 2, **kwargs})
    assert words in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "x").exists()


def test_generate_refuses_a_folder_that_holds_something(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        generate(tmp_path / "full", train=1, test=1, size=32)
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
    (tmp_path / "empty").mkdir()
    train, test = generate(tmp_path / "empty", train=1, test=1, size=32)
    assert (len(train), len(test)) == (1, 1)
