"""camloc.datasets: the four layouts built by hand in tmp_path, the csv writer, every validation
error, auto detection, and the shared ImageNet validation boxes."""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path

import pytest
from PIL import Image

from camloc.datasets import (
    CSV_COLUMNS,
    Dataset,
    DatasetError,
    LazySamples,
    Sample,
    open_dataset,
    read_class_table,
    voc,
    write_csv_dataset,
    write_cub_dataset,
)
from camloc.errors import InvalidArgument
from tests.helpers.data import VAL_BOXES


def _img(path: Path, size: tuple[int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 30, 200)).save(path)
    return path


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _raises(where: str, line: int | None, fn, *args, **kwargs) -> str:
    """Call fn, expect a one-line DatasetError naming ``where`` (a file name) and ``line``."""
    with pytest.raises(DatasetError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    assert where in msg
    if line is not None:
        assert f"{where}:{line}:" in msg, msg
        assert info.value.line == line
    else:
        assert info.value.line is None
    return msg


# --------------------------------------------------------------------------------------------
# csv

CLASSES_TXT = "0 n00000001 red fox\n1 n00000002 crane, bird\n2 n00000003 brain coral\n"
BOXES_CSV = (
    "image,width,height,label_index,label_name,x0,y0,x1,y1\n"
    'a.jpg,40,30,1,"crane, bird",0,0,39,29\n'
    'a.jpg,40,30,1,"crane, bird",5,6,10,12\n'
    "sub/b.png,20,50,0,red fox,3,4,19,49\n"
    "c.jpg,16,16,2,,,,,\n"
)


def _csv_set(root: Path, boxes: str = BOXES_CSV, classes: str | None = CLASSES_TXT) -> Path:
    _img(root / "images" / "a.jpg", (40, 30))
    _img(root / "images" / "sub" / "b.png", (20, 50))
    _write(root / "boxes.csv", boxes)
    if classes is not None:
        _write(root / "classes.txt", classes)
    return root


def test_csv_reads_rows_grouped_by_image(tmp_path):
    root = _csv_set(tmp_path / "mini")
    ds = open_dataset(root, "csv")
    assert (ds.name, ds.format, ds.root) == ("mini", "csv", root)
    assert ds.class_names == ["red fox", "crane, bird", "brain coral"]
    assert ds.class_wnids == ["n00000001", "n00000002", "n00000003"]
    assert len(ds) == 3 and ds.num_boxes == 3
    a, b, c = ds.samples
    assert a == Sample("a.jpg", root / "images" / "a.jpg", 1, ((0, 0, 39, 29), (5, 6, 10, 12)), (40, 30))
    assert b == Sample("sub/b.png", root / "images" / "sub" / "b.png", 0, ((3, 4, 19, 49),), (20, 50))
    assert c == Sample("c.jpg", root / "images" / "c.jpg", 2, (), (16, 16))  # image file absent: not an error
    assert list(ds) == ds.samples and ds[1] is b


def test_csv_without_classes_and_sizes(tmp_path):
    text = "image,width,height,label_index,label_name,x0,y0,x1,y1\nx.jpg,,,7,,1,2,3,4\ny.jpg,,,900,,,,,\n"
    ds = open_dataset(_csv_set(tmp_path / "d", text, classes=None), images=tmp_path / "elsewhere")
    assert ds.class_names is None and ds.class_wnids is None
    assert ds.samples == [
        Sample("x.jpg", tmp_path / "elsewhere" / "x.jpg", 7, ((1, 2, 3, 4),), None),
        Sample("y.jpg", tmp_path / "elsewhere" / "y.jpg", 900, (), None),
    ]


def test_csv_columns_in_another_order_and_boxes_csv_path(tmp_path):
    text = "label_index,image,x0,y0,x1,y1,width,height,label_name,extra\n2,q.jpg,1,1,2,2,8,9,brain coral,zzz\n"
    root = _csv_set(tmp_path / "d", text)
    ds = open_dataset(root / "boxes.csv")  # auto: the file itself
    assert ds.format == "csv"
    assert ds.samples == [Sample("q.jpg", root / "images" / "q.jpg", 2, ((1, 1, 2, 2),), (8, 9))]


def test_csv_writer_round_trip(tmp_path):
    src = open_dataset(_csv_set(tmp_path / "src"))
    out = tmp_path / "out"
    path = write_csv_dataset(src.samples, out, src.class_names, wnids=src.class_wnids)
    assert path == out / "boxes.csv"
    assert path.read_text().splitlines()[0] == ",".join(CSV_COLUMNS)
    back = open_dataset(out)
    assert back.class_names == src.class_names and back.class_wnids == src.class_wnids
    assert [s.image_id for s in back] == ["a.jpg", "sub/b.png", "c.jpg"]
    for s, t in zip(src, back, strict=True):
        assert t.path == out / "images" / s.image_id
        assert (t.label, t.boxes, t.size) == (s.label, s.boxes, s.size)


def test_csv_writer_synthetic_samples_names_only(tmp_path):
    names = ["zero", "one, two", "3 d"]
    samples = [
        Sample("s/0.png", Path("ignored"), 2, ((0, 0, 7, 7), (1, 2, 3, 4)), (8, 8)),
        Sample("s/1.png", Path("ignored"), 1, (), None),
        Sample("s/2.png", Path("ignored"), 0, ((2, 2, 2, 2),), None),
    ]
    write_csv_dataset(samples, tmp_path, names)
    assert (tmp_path / "classes.txt").read_text() == "0 zero\n1 one, two\n2 3 d\n"
    ds = open_dataset(tmp_path)
    assert ds.class_names == names and ds.class_wnids is None
    assert [(s.image_id, s.path, s.label, s.boxes, s.size) for s in ds] == [
        (s.image_id, tmp_path / "images" / s.image_id, s.label, s.boxes, s.size) for s in samples
    ]
    # no class names: no classes.txt, empty label_name column
    write_csv_dataset(samples, tmp_path / "bare")
    assert not (tmp_path / "bare" / "classes.txt").exists()
    assert [s.label for s in open_dataset(tmp_path / "bare")] == [2, 1, 0]


def test_csv_writer_rejects_what_cannot_round_trip(tmp_path):
    s = Sample("a.png", Path("a.png"), 0, (), (4, 4))
    with pytest.raises(ValueError, match="duplicate"):
        write_csv_dataset([s, s], tmp_path)
    with pytest.raises(ValueError, match="label 3"):
        write_csv_dataset([Sample("a.png", Path("a.png"), 3, (), None)], tmp_path, ["x"])
    with pytest.raises(ValueError, match="class name"):
        write_csv_dataset([s], tmp_path, [" padded"])
    with pytest.raises(ValueError, match="wnids"):
        write_csv_dataset([s], tmp_path, ["x"], wnids=["/m/0abc"])
    with pytest.raises(DatasetError, match="outside the 4x4 image"):
        write_csv_dataset([Sample("a.png", Path("a.png"), 0, ((0, 0, 4, 3),), (4, 4))], tmp_path)


HEADER = "image,width,height,label_index,label_name,x0,y0,x1,y1\n"


@pytest.mark.parametrize(
    "body, line, words",
    [
        ("a.jpg,40,30,1,crane,0,0,39\n", 2, "expected 9 fields, got 8"),
        ("a.jpg,40,30,one,x,0,0,1,1\n", 2, "label_index is not an integer"),
        ("a.jpg,40,30,1,,0,0,1,1\nb.jpg,40,30,1,,0,0,1.5,1\n", 3, "x1 is not an integer"),
        ("a.jpg,40,30,1,,0,0,40,29\n", 2, "outside the 40x30 image"),
        ("a.jpg,40,30,1,,0,5,39,30\n", 2, "outside the 40x30 image"),
        ("a.jpg,40,30,1,,9,0,8,29\n", 2, "x1 < x0"),
        ("a.jpg,40,30,1,,-1,0,8,29\n", 2, "negative"),
        ("a.jpg,40,30,3,,0,0,1,1\n", 2, "unknown class: label 3 is outside 0..2"),
        ("a.jpg,40,30,-1,,0,0,1,1\n", 2, "negative"),
        ("a.jpg,40,30,1,red fox,0,0,1,1\n", 2, "label_name 'red fox' is not class 1"),
        ("a.jpg,40,30,1,,0,0,1,1\na.jpg,40,31,1,,0,0,1,1\n", 3, "differs from (40, 30) on line 2"),
        ("a.jpg,40,30,1,,0,0,1,1\n\na.jpg,40,30,2,,0,0,1,1\n", 4, "label 2 differs from 1 on line 2"),
        ("a.jpg,40,30,1,,,,,\na.jpg,40,30,1,,,,,\n", 3, "duplicate image 'a.jpg' (line 2)"),
        ("a.jpg,40,30,1,,0,0,1,\n", 2, "all filled or all empty"),
        ("a.jpg,40,,1,,0,0,1,1\n", 2, "height is not an integer"),
        ("a.jpg,0,30,1,,,,,\n", 2, "not positive"),
        (",40,30,1,,,,,\n", 2, "empty image field"),
    ],
)
def test_csv_errors(tmp_path, body, line, words):
    root = _csv_set(tmp_path / "d", HEADER + body)
    msg = _raises("boxes.csv", line, open_dataset, root)
    assert words in msg


def test_csv_file_level_errors(tmp_path):
    root = _csv_set(tmp_path / "d", "image,width,height,label,x0,y0,x1,y1\n")
    assert "label_index, label_name" in _raises("boxes.csv", 1, open_dataset, root)
    _write(root / "boxes.csv", "")
    assert "empty file" in _raises("boxes.csv", 1, open_dataset, root)
    (root / "boxes.csv").unlink()
    assert "missing metadata file" in _raises("boxes.csv", None, open_dataset, root, "csv")
    _write(root / "boxes.csv", HEADER)
    _write(root / "classes.txt", "0 a\n0 b\n")
    assert "class index 0 appears twice" in _raises("classes.txt", 2, open_dataset, root)
    _write(root / "classes.txt", "0 a\n5 b\n")
    assert "outside 0..1" in _raises("classes.txt", 2, open_dataset, root)
    (root / "classes.txt").write_bytes(b"0 a\n1 \xff\n")
    assert "UTF-8" in _raises("classes.txt", 2, open_dataset, root)


def test_class_tables(tmp_path):
    assert read_class_table(_write(tmp_path / "a.txt", "0 n01440764 tench\n1 n01443537\n2 great white shark\n")) == (
        ["tench", "n01443537", "great white shark"],
        None,
    )
    assert read_class_table(_write(tmp_path / "b.txt", "n01440764 tench, Tinca tinca\n\nn01443537 goldfish\n")) == (
        ["tench, Tinca tinca", "goldfish"],
        ["n01440764", "n01443537"],
    )
    assert read_class_table(_write(tmp_path / "c.txt", "aeroplane\nbicycle\n2 cats\n")) == (
        ["aeroplane", "bicycle", "2 cats"],
        None,
    )


# --------------------------------------------------------------------------------------------
# wsol


def _wsol_set(meta: Path, **override: str) -> Path:
    files = {
        "image_ids.txt": "val/a.JPEG\nval/b.JPEG\nval/c.JPEG\n",
        "class_labels.txt": "val/a.JPEG,3\nval/b.JPEG,0\nval/c.JPEG,1\n",
        "image_sizes.txt": "val/a.JPEG,50,40\nval/b.JPEG,30,20\nval/c.JPEG,10,10\n",
        "localization.txt": "val/a.JPEG,1,2,49,39\nval/b.JPEG,0,0,5,5\nval/a.JPEG,10,10,20,20\nval/c.JPEG,0,0,9,9\n",
    }
    files.update(override)
    for name, text in files.items():
        if text is not None:
            _write(meta / name, text)
    return meta


def test_wsol_boxes(tmp_path):
    meta = _wsol_set(tmp_path / "metadata" / "ILSVRC" / "test")
    ds = open_dataset(meta, "wsol", images=tmp_path / "imgs")
    assert (ds.name, ds.format, ds.root, ds.class_names) == ("ILSVRC/test", "wsol", meta, None)
    assert ds.samples == [
        Sample("val/a.JPEG", tmp_path / "imgs" / "val/a.JPEG", 3, ((1, 2, 49, 39), (10, 10, 20, 20)), (50, 40)),
        Sample("val/b.JPEG", tmp_path / "imgs" / "val/b.JPEG", 0, ((0, 0, 5, 5),), (30, 20)),
        Sample("val/c.JPEG", tmp_path / "imgs" / "val/c.JPEG", 1, ((0, 0, 9, 9),), (10, 10)),
    ]
    # the parent folder plus split=, auto-detected; classes= gives names
    ds2 = open_dataset(meta.parent, images=tmp_path / "imgs", split="test", classes=["w", "x", "y", "z"])
    assert ds2.format == "wsol" and ds2.samples == ds.samples and ds2.class_names == ["w", "x", "y", "z"]


def test_wsol_openimages_masks(tmp_path):
    meta = _wsol_set(
        tmp_path / "OpenImages" / "test",
        **{
            "image_ids.txt": "test/k/1.jpg\ntest/k/2.jpg\n",
            "class_labels.txt": "test/k/1.jpg,5\ntest/k/2.jpg,2\n",
            "image_sizes.txt": None,
            "localization.txt": (
                "test/k/1.jpg,test/k/1_m1.png,test/k/1_ignore.png\n"
                "test/k/1.jpg,test/k/1_m2.png,\n"
                "test/k/2.jpg,test/k/2_m1.png,\n"
            ),
        },
    )
    ds = open_dataset(meta, images=tmp_path / "img", masks=tmp_path / "mask")
    m, img = tmp_path / "mask" / "test" / "k", tmp_path / "img" / "test" / "k"
    assert ds.samples == [
        Sample("test/k/1.jpg", img / "1.jpg", 5, (), None, (m / "1_m1.png", m / "1_m2.png"), m / "1_ignore.png"),
        Sample("test/k/2.jpg", img / "2.jpg", 2, (), None, (m / "2_m1.png",), None),
    ]
    # masks default to the image root
    assert open_dataset(meta, images=tmp_path / "img")[1].mask_paths == (tmp_path / "img/test/k/2_m1.png",)


def test_wsol_train_split_without_localization(tmp_path):
    meta = _wsol_set(tmp_path / "train", **{"localization.txt": None, "image_sizes.txt": None})
    ds = open_dataset(meta, "wsol", images=tmp_path)
    assert [(s.label, s.boxes, s.size) for s in ds] == [(3, (), None), (0, (), None), (1, (), None)]


@pytest.mark.parametrize(
    "name, text, line, words",
    [
        ("image_ids.txt", "val/a.JPEG\nval/b.JPEG\nval/a.JPEG\n", 3, "duplicate image id 'val/a.JPEG' (first"),
        ("class_labels.txt", "val/a.JPEG,3\nval/b.JPEG\nval/c.JPEG,1\n", 2, "expected 2 fields"),
        ("class_labels.txt", "val/a.JPEG,3\nval/b.JPEG,x\nval/c.JPEG,1\n", 2, "label is not an integer"),
        ("class_labels.txt", "val/a.JPEG,3\nval/b.JPEG,0\nval/c.JPEG,-2\n", 3, "negative"),
        ("class_labels.txt", "val/a.JPEG,3\nval/a.JPEG,3\nval/c.JPEG,1\n", 2, "duplicate image id"),
        ("class_labels.txt", "val/a.JPEG,3\nval/b.JPEG,0\nval/c.JPEG,1\nval/d.JPEG,1\n", 4, "not in image_ids.txt"),
        ("image_sizes.txt", "val/a.JPEG,50,40\nval/b.JPEG,30\nval/c.JPEG,10,10\n", 2, "expected 3 fields"),
        ("image_sizes.txt", "val/a.JPEG,50,40\nval/b.JPEG,30,2o\nval/c.JPEG,10,10\n", 2, "height is not an integer"),
        ("localization.txt", "val/a.JPEG,1,2,50,39\nval/b.JPEG,0,0,5,5\nval/c.JPEG,0,0,9,9\n", 1, "outside the 50x40"),
        ("localization.txt", "val/a.JPEG,1,2,49,39\nval/b.JPEG,0,0,5,20\nval/c.JPEG,0,0,9,9\n", 2, "outside the 30x20"),
        ("localization.txt", "val/a.JPEG,1,2,49,39\nval/b.JPEG,4,0,3,5\nval/c.JPEG,0,0,9,9\n", 2, "x1 < x0"),
        ("localization.txt", "val/a.JPEG,1,2,49,39\nval/b.JPEG,0,0,5\nval/c.JPEG,0,0,9,9\n", 2, "expected 5 fields"),
        ("localization.txt", "val/a.JPEG,1,2,49,39\nval/b.JPEG,0,0,5,y\nval/c.JPEG,0,0,9,9\n", 2, "y1 is not an int"),
        ("localization.txt", "val/a.JPEG,1,2,49,39\nval/z.JPEG,0,0,5,5\n", 2, "'val/z.JPEG' is not in image_ids.txt"),
    ],
)
def test_wsol_errors(tmp_path, name, text, line, words):
    meta = _wsol_set(tmp_path / "m", **{name: text})
    assert words in _raises(name, line, open_dataset, meta, "wsol", images=tmp_path)


@pytest.mark.parametrize(
    "name, text, line, missing",
    [
        ("class_labels.txt", "val/a.JPEG,3\nval/c.JPEG,1\n", 2, "class_labels.txt"),
        ("image_sizes.txt", "val/a.JPEG,50,40\nval/b.JPEG,30,20\n", 3, "image_sizes.txt"),
        ("localization.txt", "val/b.JPEG,0,0,5,5\nval/c.JPEG,0,0,9,9\n", 1, "localization.txt"),
    ],
)
def test_wsol_id_missing_from_a_file(tmp_path, name, text, line, missing):
    meta = _wsol_set(tmp_path / "m", **{name: text})
    msg = _raises("image_ids.txt", line, open_dataset, meta, "wsol", images=tmp_path)
    assert f"is missing from {missing}" in msg


def test_wsol_mask_and_file_errors(tmp_path):
    masks = "k/1.jpg,k/1_m1.png,k/1_ignore.png\nk/1.jpg,k/1_m2.png,k/1_ignore.png\n"
    meta = _wsol_set(
        tmp_path / "o",
        **{
            "image_ids.txt": "k/1.jpg\n",
            "class_labels.txt": "k/1.jpg,0\n",
            "image_sizes.txt": None,
            "localization.txt": masks,
        },
    )
    assert "second ignore mask" in _raises("localization.txt", 2, open_dataset, meta, images=tmp_path)
    _write(meta / "localization.txt", "k/1.jpg,k/1_m1.png\n")
    assert "expected 3 fields" in _raises("localization.txt", 1, open_dataset, meta, images=tmp_path)
    _write(meta / "localization.txt", "k/1.jpg,,\n")
    assert "empty mask path" in _raises("localization.txt", 1, open_dataset, meta, images=tmp_path)
    assert "needs images=" in _raises("o", None, open_dataset, meta)
    (meta / "class_labels.txt").unlink()
    assert "missing metadata file" in _raises("class_labels.txt", None, open_dataset, meta, images=tmp_path)
    meta2 = _wsol_set(tmp_path / "p", **{"class_labels.txt": "val/a.JPEG,3\nval/b.JPEG,0\nval/c.JPEG,4\n"})
    msg = _raises("class_labels.txt", 3, open_dataset, meta2, images=tmp_path, classes=["a", "b", "c", "d"])
    assert "unknown class: label 4 is outside 0..3" in msg


# --------------------------------------------------------------------------------------------
# cub


def _cub_set(root: Path, **override: str) -> Path:
    files = {
        "images.txt": "1 001.Albatross/A_1.jpg\n2 001.Albatross/A_2.jpg\n3 002.Auklet/B_1.jpg\n4 002.Auklet/B 2.jpg\n",
        "image_class_labels.txt": "1 1\n2 1\n3 2\n4 2\n",
        "train_test_split.txt": "1 0\n2 1\n3 0\n4 0\n",
        "bounding_boxes.txt": (
            "1 60.0 27.0 325.0 304.0\n2 1.0 2.0 3.0 4.0\n3 10.7 20.2 89.6 59.9\n4 0.0 0.0 50.0 40.0\n"
        ),
        "classes.txt": "1 001.Albatross\n2 002.Auklet\n",
    }
    files.update(override)
    for name, text in files.items():
        if text is not None:
            _write(root / name, text)
    return root


def test_cub_splits_labels_and_box_rule(tmp_path):
    root = _cub_set(tmp_path / "CUB_200_2011")
    _img(root / "images" / "002.Auklet" / "B_1.jpg", (100, 80))  # readable: its box gets clipped
    ds = open_dataset(root, "cub")  # split="test" by default
    assert (ds.name, ds.format, ds.class_names) == ("CUB_200_2011/test", "cub", ["001.Albatross", "002.Auklet"])
    img = root / "images"
    assert ds.samples == [
        # wsolevaluation's metadata/CUB/test/localization.txt: ...0046_18.jpg,60,27,385,331
        Sample("001.Albatross/A_1.jpg", img / "001.Albatross/A_1.jpg", 0, ((60, 27, 385, 331),), None),
        # int(10.7), int(20.2), int(10.7 + 89.6) = 100 -> clipped to 99, int(20.2 + 59.9) = 80 -> 79
        Sample("002.Auklet/B_1.jpg", img / "002.Auklet/B_1.jpg", 1, ((10, 20, 99, 79),), None),
        # no readable image: no clipping; a path with a space
        Sample("002.Auklet/B 2.jpg", img / "002.Auklet/B 2.jpg", 1, ((0, 0, 50, 40),), None),
    ]
    train = open_dataset(root, split="train")  # auto
    assert train.format == "cub"
    assert [(s.image_id, s.label, s.boxes) for s in train] == [("001.Albatross/A_2.jpg", 0, ((1, 2, 4, 6),))]
    every = open_dataset(root, "cub", split="all", images=tmp_path / "x")
    assert [s.image_id for s in every] == [
        "001.Albatross/A_1.jpg",
        "001.Albatross/A_2.jpg",
        "002.Auklet/B_1.jpg",
        "002.Auklet/B 2.jpg",
    ]
    assert every[0].path == tmp_path / "x" / "001.Albatross/A_1.jpg" and every.name == "CUB_200_2011"
    with pytest.raises(ValueError, match="split"):
        open_dataset(root, "cub", split="val")


def test_cub_small_image_clip_is_still_checked(tmp_path):
    root = _cub_set(tmp_path / "c", **{"bounding_boxes.txt": "1 60 27 325 304\n2 1 2 3 4\n3 120 0 5 5\n4 0 0 1 1\n"})
    _img(root / "images" / "002.Auklet" / "B_1.jpg", (100, 80))
    assert "outside the 100x80 image" in _raises("bounding_boxes.txt", 3, open_dataset, root)


T = "3 1 1 1 1\n4 0 0 1 1\n"  # the last two lines of a bounding_boxes.txt
L, BB = "image_class_labels.txt", "bounding_boxes.txt"


@pytest.mark.parametrize(
    "name, text, where, line, words",
    [
        ("images.txt", "1 a.jpg\n2 b.jpg\n1 c.jpg\n", "images.txt", 3, "duplicate image id 1 (first on line 1)"),
        ("images.txt", "1 a.jpg\n2\n", "images.txt", 2, "expected 2 fields"),
        (L, "1 1\n2 1\n3 2\n4 3\n", L, 4, "unknown class: label 2 is outside 0..1"),
        (L, "1 1\n2 0\n3 2\n4 2\n", L, 2, "start at 1"),
        (L, "1 1\n2 one\n3 2\n4 2\n", L, 2, "class is not an integer"),
        (L, "1 1\n2 1\n3 2\n3 2\n", L, 4, "duplicate image id 3"),
        (L, "1 1\n2 1\n3 2\n", "images.txt", 4, "image id 4 is missing from image_class_labels.txt"),
        (L, "1 1\n2 1\n3 2\n4 2\n9 1\n", L, 5, "image id 9 is not in images.txt"),
        ("train_test_split.txt", "1 0\n2 1\n3 2\n4 0\n", "train_test_split.txt", 3, "is_train must be 0 or 1"),
        (BB, "1 60 27 325 304\n2 1 2 3\n" + T, BB, 2, "expected 5 fields"),
        (BB, "1 60 27 325 304\n2 1 2 3 4 5\n" + T, BB, 2, "expected 5 fields"),
        (BB, "1 60 27 325 304\n2 1 2 x 4\n" + T, BB, 2, "width is not a number"),
        (BB, "1 60 27 -3 304\n2 1 2 3 4\n" + T, BB, 1, "negative box width"),
        (BB, "1 -1 27 3 304\n2 1 2 3 4\n" + T, BB, 1, "negative coordinate"),
        ("classes.txt", "1 001.Albatross\n3 003.Other\n", "classes.txt", 2, "expected 2, got 3"),
    ],
)
def test_cub_errors(tmp_path, name, text, where, line, words):
    root = _cub_set(tmp_path / "c", **{name: text})
    assert words in _raises(where, line, open_dataset, root, "cub", split="all")


def test_cub_missing_file(tmp_path):
    root = _cub_set(tmp_path / "c", **{"train_test_split.txt": None})
    assert open_dataset(root, "cub", split="all").samples  # not needed for "all"
    assert "missing metadata file" in _raises("train_test_split.txt", None, open_dataset, root, "cub")


def test_cub_writer_round_trip(tmp_path):
    root = tmp_path / "CUB"
    _img(root / "images" / "001.a" / "full.png", (40, 30))  # a readable image: its box is checked and clipped
    train = [
        Sample("001.a/full.png", Path("ignored"), 0, ((0, 0, 39, 29),), (40, 30)),
        Sample("002.b/dot.png", Path("ignored"), 1, ((7, 9, 7, 9),), None),  # a one-pixel box
    ]
    test = [Sample("002.b/with space.png", Path("ignored"), 1, ((3, 4, 250, 180),), (300, 200))]
    assert write_cub_dataset({"train": train, "test": test}, root, ["a bird", "b"]) == root
    boxes = "1 0.0 0.0 39.0 29.0\n2 7.0 9.0 0.0 0.0\n3 3.0 4.0 247.0 176.0\n"  # x y (x1 - x0) (y1 - y0)
    assert (root / "bounding_boxes.txt").read_text() == boxes
    assert (root / "images.txt").read_text() == "1 001.a/full.png\n2 002.b/dot.png\n3 002.b/with space.png\n"
    assert (root / "image_class_labels.txt").read_text() == "1 1\n2 2\n3 2\n"
    assert (root / "train_test_split.txt").read_text() == "1 1\n2 1\n3 0\n"
    assert (root / "classes.txt").read_text() == "1 a bird\n2 b\n"
    for split, samples in (("train", train), ("test", test), ("all", train + test)):
        back = open_dataset(root, split=split)  # auto-detected
        assert (back.format, back.class_names) == ("cub", ["a bird", "b"])
        assert [(t.image_id, t.path, t.label, t.boxes, t.size) for t in back] == [
            (s.image_id, root / "images" / s.image_id, s.label, s.boxes, None) for s in samples
        ]
    # no class names: no classes.txt; only a test split
    write_cub_dataset({"test": test}, tmp_path / "bare")
    assert not (tmp_path / "bare" / "classes.txt").exists()
    assert open_dataset(tmp_path / "bare", "cub")[0].boxes == test[0].boxes


def test_cub_writer_rejects_what_cannot_round_trip(tmp_path):
    one = Sample("a.png", Path("a.png"), 0, ((0, 0, 1, 1),), (4, 4))
    cases = [
        ({"train": [one], "test": [one]}, None, "duplicate image_id 'a.png'"),
        ({"val": [one]}, None, "split 'val'"),
        ({"train": [Sample("a.png", Path("a.png"), 0, (), None)]}, None, "one box per image, this sample has 0"),
        ({"train": [Sample("a.png", Path("a.png"), 0, ((0, 0, 1, 1),) * 2, None)]}, None, "has 2"),
        ({"train": [Sample("a.png", Path("a.png"), 2, ((0, 0, 1, 1),), None)]}, ["x", "y"], "label 2 outside"),
        ({"train": [Sample(" a.png", Path("a.png"), 0, ((0, 0, 1, 1),), None)]}, None, "cannot be written"),
        ({"train": [one]}, ["padded "], "class name 'padded '"),
    ]
    for by_split, names, words in cases:
        with pytest.raises(ValueError, match=words):
            write_cub_dataset(by_split, tmp_path / "c", names)
    with pytest.raises(DatasetError, match="outside the 4x4 image"):
        write_cub_dataset({"train": [Sample("a.png", Path("a.png"), 0, ((0, 0, 4, 1),), (4, 4))]}, tmp_path / "c")
    assert not (tmp_path / "c").exists()  # nothing written before the checks pass


# --------------------------------------------------------------------------------------------
# voc


def _xml(filename: str | None, size: tuple[int, int] | None, objects: list[tuple[str, tuple | None]]) -> str:
    parts = ["<annotation>", "  <folder>val</folder>"]
    if filename is not None:
        parts.append(f"  <filename>{filename}</filename>")
    if size is not None:
        parts += ["  <size>", f"    <width>{size[0]}</width>", f"    <height>{size[1]}</height>"]
        parts += ["    <depth>3</depth>", "  </size>"]
    for name, box in objects:
        parts += ["  <object>", f"    <name>{name}</name>", "    <difficult>0</difficult>"]
        if box is not None:
            parts += ["    <bndbox>"] + [
                f"      <{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True)
            ]
            parts += ["    </bndbox>"]
        parts.append("  </object>")
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


def _ilsvrc_set(tmp_path: Path) -> tuple[Path, Path]:
    ann = tmp_path / "val_xml"
    one = [("n00000002", (1, 2, 49, 39)), ("n00000002", (0, 0, 9, 9))]
    two = [("n00000003", (5, 5, 6, 6)), ("n00000001", (0, 0, 29, 29)), ("n00000003", None)]
    _write(ann / "ILSVRC2012_val_00000001.xml", _xml("ILSVRC2012_val_00000001", (50, 40), one))
    _write(ann / "ILSVRC2012_val_00000002.xml", _xml("ILSVRC2012_val_00000002", (30, 30), two))
    _write(ann / "ILSVRC2012_val_00000003.xml", _xml(None, None, [("n00000001", (0, 0, 500, 500))]))
    classes = _write(tmp_path / "meta" / "synsets.txt", CLASSES_TXT)
    return ann, classes


def test_voc_ilsvrc_xml(tmp_path):
    ann, classes = _ilsvrc_set(tmp_path)
    imgs = tmp_path / "val"
    _img(imgs / "ILSVRC2012_val_00000002.png", (30, 30))  # an extension-less <filename> is looked up
    ds = open_dataset(ann, "voc", images=imgs, classes=classes)
    stem = "ILSVRC2012_val_0000000"
    assert (ds.name, ds.format, ds.root) == ("val_xml", "voc", ann)
    assert ds.class_names == ["red fox", "crane, bird", "brain coral"] and ds.class_wnids[0] == "n00000001"
    assert ds.samples == [
        Sample("ILSVRC2012_val_00000001", imgs / f"{stem}1.JPEG", 1, ((1, 2, 49, 39), (0, 0, 9, 9)), (50, 40)),
        # one sample per class, in the order of their first object; a box-less object adds no box
        Sample("ILSVRC2012_val_00000002#2", imgs / "ILSVRC2012_val_00000002.png", 2, ((5, 5, 6, 6),), (30, 30)),
        Sample("ILSVRC2012_val_00000002#0", imgs / "ILSVRC2012_val_00000002.png", 0, ((0, 0, 29, 29),), (30, 30)),
        # no <filename>, no <size>: the XML stem, size unknown, box not checked against a size
        Sample("ILSVRC2012_val_00000003", imgs / "ILSVRC2012_val_00000003.JPEG", 0, ((0, 0, 500, 500),), None),
    ]
    # a names-only class list cannot map the XML's WNIDs
    names = ["red fox", "crane, bird", "brain coral"]
    msg = _raises("ILSVRC2012_val_00000001.xml", 10, open_dataset, ann, classes=names)
    assert "unknown class 'n00000002' (not in classes=)" in msg
    # the annotation folder is the default image root
    assert open_dataset(ann, classes=classes)[0].path == ann / "ILSVRC2012_val_00000001.JPEG"


def test_voc_pascal_one_based(tmp_path):
    root = tmp_path / "VOC2007"
    objects = [("dog", (1, 1, 20, 10)), ("person", (2, 2, 3, 3))]
    _write(root / "Annotations" / "000001.xml", _xml("000001.jpg", (20, 10), objects))
    _write(root / "Annotations" / "000002.xml", _xml("000002.jpg", (0, 0), [("person", (5.0, 2.5, 7.9, 4))]))
    _write(root / "classes.txt", "person\ndog\n")
    ds = open_dataset(root, one_based=True)  # auto: Annotations/*.xml; classes.txt beside; JPEGImages/
    assert (ds.name, ds.format, ds.class_names, ds.class_wnids) == ("VOC2007", "voc", ["person", "dog"], None)
    img = root / "JPEGImages"
    assert not img.exists()  # default then is the annotation folder itself
    assert [s.path.name for s in ds] == ["000001.jpg", "000001.jpg", "000002.jpg"]  # 000001: a dog and a person
    assert {s.path.parent for s in ds} == {root / "Annotations"}
    (img).mkdir()
    ds = open_dataset(root / "Annotations", "voc", one_based=True)
    assert ds.samples == [
        Sample("000001#1", img / "000001.jpg", 1, ((0, 0, 19, 9),), (20, 10)),
        Sample("000001#0", img / "000001.jpg", 0, ((1, 1, 2, 2),), (20, 10)),
        Sample("000002", img / "000002.jpg", 0, ((4, 1, 6, 3),), None),  # size 0x0 -> None; floats truncated
    ]
    # without one_based the 1-based box touches x = width: outside the image
    assert "outside the 20x10 image" in _raises("000001.xml", 12, open_dataset, root)


def test_voc_errors(tmp_path):
    ann, classes = _ilsvrc_set(tmp_path)
    bad = ann / "ILSVRC2012_val_00000002.xml"
    _write(bad, _xml("x", (30, 30), [("n00000009", (5, 5, 6, 6))]))
    assert "unknown class 'n00000009'" in _raises(bad.name, 10, open_dataset, ann, classes=classes)
    _write(bad, _xml("x", (30, 30), [("n00000003", (5, 5, 30, 6))]))
    assert "outside the 30x30 image" in _raises(bad.name, 12, open_dataset, ann, classes=classes)
    _write(bad, _xml("x", (30, 30), [("n00000003", (7, 5, 6, 6))]))
    assert "x1 < x0" in _raises(bad.name, 12, open_dataset, ann, classes=classes)
    _write(bad, _xml("x", (30, 30), [("n00000003", (5, "five", 6, 6))]))
    assert "<ymin> is not a number" in _raises(bad.name, 14, open_dataset, ann, classes=classes)
    _write(bad, _xml("x", (30, "wide"), [("n00000003", (5, 5, 6, 6))]))
    assert "<height> is not a number" in _raises(bad.name, 6, open_dataset, ann, classes=classes)
    _write(bad, _xml("x", (30, 30), []))  # an image without objects has no label: skipped
    assert [s.image_id for s in open_dataset(ann, classes=classes)] == [f"ILSVRC2012_val_0000000{i}" for i in (1, 3)]
    for xml in ann.glob("*.xml"):
        _write(xml, _xml("x", (30, 30), []))
    assert "no XML file has an <object>" in _raises("val_xml", None, open_dataset, ann, classes=classes)
    _write(bad, _xml("x", (30, 30), [("", (5, 5, 6, 6))]))
    assert "<object> has no <name>" in _raises(bad.name, 9, open_dataset, ann, classes=classes)
    _write(bad, _xml("x", (30, 30), [("n00000003", (5, 5, 6, 6))]).replace("<xmax>6</xmax>", ""))
    assert "<bndbox> has no <xmax>" in _raises(bad.name, 12, open_dataset, ann, classes=classes)
    _write(bad, "<annotation>\n  <object>\n</annotation>\n")
    assert "malformed XML" in _raises(bad.name, 3, open_dataset, ann, classes=classes)
    _write(bad, "<other/>\n")
    assert "expected <annotation>" in _raises(bad.name, 1, open_dataset, ann, classes=classes)
    # ambiguous names (ImageNet has two 'crane's): only WNIDs can tell them apart
    _write(bad, _xml("x", (30, 30), [("crane", (5, 5, 6, 6))]))
    two = _write(tmp_path / "two.txt", "0 n00000001 crane\n1 n00000002 crane\n")
    assert "ambiguous" in _raises(bad.name, 10, open_dataset, ann, classes=two)
    assert "needs classes=" in _raises("val_xml", None, open_dataset, ann)
    (tmp_path / "empty").mkdir()
    assert "no *.xml" in _raises("empty", None, open_dataset, tmp_path / "empty", "voc", classes=classes)


def test_voc_lazy_reads_each_file_when_its_sample_is_asked_for(tmp_path, monkeypatch, caplog):
    ann, classes = _ilsvrc_set(tmp_path)
    two = ann / "ILSVRC2012_val_00000002.xml"
    # read lazily, a file is one sample (the count is fixed when the files are listed): its first class, with a warning
    with caplog.at_level("WARNING", logger="camloc.datasets.voc"):
        first = open_dataset(ann, "voc", classes=classes, lazy=True)[1]
    assert first == dataclasses.replace(open_dataset(ann, "voc", classes=classes)[1], image_id=two.stem)
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [str(two)]
    assert "first class only" in caplog.records[0].getMessage()
    _write(two, _xml("ILSVRC2012_val_00000002", (30, 30), [("n00000003", (5, 5, 6, 6))]))  # one class, as ILSVRC's
    eager = open_dataset(ann, "voc", classes=classes)
    assert isinstance(eager.samples, list)  # below LAZY_FROM files: read at once
    lazy = open_dataset(ann, "voc", classes=classes, lazy=True)
    assert isinstance(lazy.samples, LazySamples) and len(lazy) == 3
    assert lazy.samples == eager.samples and eager.samples == lazy.samples and lazy == eager
    assert list(lazy) == eager.samples and [lazy[i] for i in (-1, 0)] == [eager[2], eager[0]]
    assert isinstance(lazy.samples[1::2], LazySamples) and lazy.samples[1::2] == eager.samples[1::2]
    assert lazy.samples[::-1][1:] == eager.samples[::-1][1:] and lazy.samples[5:] == []
    assert lazy.samples != eager.samples[:2] and lazy.samples[:2] != eager.samples[1:]
    assert repr(lazy.samples) == f"LazySamples(3 of the XML files of {ann})"
    assert pickle.loads(pickle.dumps(lazy.samples[1:])) == eager.samples[1:]  # for worker processes
    with pytest.raises(IndexError):
        lazy.samples[3]
    monkeypatch.setattr(voc, "LAZY_FROM", 3)
    assert isinstance(open_dataset(ann, classes=classes).samples, LazySamples)
    assert isinstance(open_dataset(ann, classes=classes, lazy=False).samples, list)

    # nothing is parsed at open: a broken file raises, naming file and line, only when its sample is read
    bad = ann / "ILSVRC2012_val_00000002.xml"
    _write(bad, _xml("x", (30, 30), [("n00000009", (5, 5, 6, 6))]))
    lazy = open_dataset(ann, classes=classes)
    assert lazy[0] == eager[0] and lazy[2] == eager[2]
    assert "unknown class 'n00000009'" in _raises(bad.name, 10, lambda: lazy[1])
    assert "unknown class" in _raises(bad.name, 10, list, lazy.samples[1:])  # iterating meets it in turn
    _write(bad, _xml("x", (30, 30), []))  # eager reading skips a background image; lazily, it is an error
    assert [s.image_id for s in open_dataset(ann, classes=classes, lazy=False)] == [
        eager[0].image_id,
        eager[2].image_id,
    ]
    assert "no <object>: no label" in _raises(bad.name, None, lambda: lazy[1])
    with pytest.raises(ValueError, match="voc and webdataset formats only"):
        open_dataset(tmp_path / "csv", "csv", lazy=True)


# --------------------------------------------------------------------------------------------
# folder (ImageFolder)


def _folder_set(root: Path) -> Path:
    for rel in ("cat/b.jpg", "cat/a.PNG", "dog/y.TIFF", "dog/x.webp", "dog/sub/nested.png", "dog/.hidden.png"):
        _img(root / rel, (8, 6))
    _write(root / "cat" / "notes.txt", "not an image")
    _img(root / ".cache" / "c.png", (4, 4))  # a hidden folder is no class
    (root / "empty").mkdir()  # a class without images is still a class (its label is kept)
    return root


def test_folder_reads_class_subfolders(tmp_path):
    root = _folder_set(tmp_path / "pets")
    ds = open_dataset(root, "folder")
    assert (ds.name, ds.format, ds.root) == ("pets", "folder", root)
    assert ds.class_names == ["cat", "dog", "empty"] and ds.class_wnids is None
    assert ds.samples == [
        Sample("cat/a.PNG", root / "cat" / "a.PNG", 0, (), None),
        Sample("cat/b.jpg", root / "cat" / "b.jpg", 0, (), None),
        Sample("dog/x.webp", root / "dog" / "x.webp", 1, (), None),
        Sample("dog/y.TIFF", root / "dog" / "y.TIFF", 1, (), None),
    ]
    assert open_dataset(root).samples == ds.samples  # auto: the last rule
    # classes= maps folder names (or WNIDs) to the table's indices
    table = _write(tmp_path / "table.txt", "0 n00000009 dog\n1 n00000007 cat\n2 n00000008 empty\n")
    mapped = open_dataset(root, "folder", classes=table)
    assert [s.label for s in mapped] == [1, 1, 0, 0] and mapped.class_names == ["dog", "cat", "empty"]
    assert mapped.class_wnids == ["n00000009", "n00000007", "n00000008"]
    msg = _raises("pets", None, open_dataset, root, classes=["cat", "dog"])
    assert "class folder 'empty' is not in classes=" in msg
    with pytest.raises(ValueError, match="images= does not apply"):
        open_dataset(root, "folder", images=tmp_path)


def test_folder_of_wnids(tmp_path):
    _img(tmp_path / "train" / "n01443537" / "1.JPEG", (5, 5))
    _img(tmp_path / "train" / "n01440764" / "2.jpeg", (5, 5))
    ds = open_dataset(tmp_path / "train")
    assert ds.format == "folder" and ds.class_names == ds.class_wnids == ["n01440764", "n01443537"]
    assert [(s.image_id, s.label) for s in ds] == [("n01440764/2.jpeg", 0), ("n01443537/1.JPEG", 1)]


def test_folder_errors_and_what_auto_detection_does_not_take_for_one(tmp_path):
    (tmp_path / "empty").mkdir()
    assert "no images in class subfolders" in _raises("empty", None, open_dataset, tmp_path / "empty", "folder")
    (tmp_path / "empty" / "a" / "deeper").mkdir(parents=True)
    _img(tmp_path / "empty" / "a" / "deeper" / "x.png", (4, 4))  # only nested images: none read
    assert "no images in class subfolders" in _raises("empty", None, open_dataset, tmp_path / "empty", "folder")
    msg = _raises("empty", None, open_dataset, tmp_path / "empty")
    assert "cannot tell the dataset format" in msg and "(folder)" in msg
    # a csv dataset whose boxes.csv is missing is no ImageFolder with one class 'images'
    half = _csv_set(tmp_path / "half", classes=None)
    (half / "boxes.csv").unlink()
    assert "cannot tell" in _raises("half", None, open_dataset, half)
    # nor is a folder with a class table beside it, unless asked for
    root = _folder_set(tmp_path / "pets")
    _write(root / "classes.txt", "cat\ndog\nempty\n")
    assert "cannot tell" in _raises("pets", None, open_dataset, root)
    assert len(open_dataset(root, "folder", classes=root / "classes.txt")) == 4
    # generate()'s csv layout, train/ and test/ beside each other, holds no images directly in them
    _csv_set(tmp_path / "gen" / "train")
    _csv_set(tmp_path / "gen" / "test")
    assert "cannot tell" in _raises("gen", None, open_dataset, tmp_path / "gen")


# --------------------------------------------------------------------------------------------
# auto detection and arguments


def test_auto_detection(tmp_path):
    assert open_dataset(_csv_set(tmp_path / "csv")).format == "csv"
    assert open_dataset(_wsol_set(tmp_path / "wsol"), images=tmp_path).format == "wsol"
    assert open_dataset(_wsol_set(tmp_path / "w2") / "image_ids.txt", images=tmp_path).format == "wsol"
    assert open_dataset(_cub_set(tmp_path / "cub")).format == "cub"
    ann, classes = _ilsvrc_set(tmp_path / "v")
    assert open_dataset(ann, classes=classes).format == "voc"
    (tmp_path / "nothing").mkdir()
    msg = _raises("nothing", None, open_dataset, tmp_path / "nothing")
    for looked_for in ("boxes.csv", "image_ids.txt", "images.txt + bounding_boxes.txt", "*.xml", "(folder)"):
        assert looked_for in msg
    assert "no such dataset folder" in _raises("absent", None, open_dataset, tmp_path / "absent")
    assert "format of this file" in _raises("synsets.txt", None, open_dataset, classes)
    with pytest.raises(ValueError, match=r"unknown dataset format 'kitti'; expected one of auto, csv"):
        open_dataset(tmp_path, "kitti")
    for typo, meant in (("webdatset", "webdataset"), ("VOC", "voc"), ("Auto", "auto")):
        with pytest.raises(InvalidArgument, match=rf"unknown dataset format '{typo}' \(did you mean '{meant}'\?\)"):
            open_dataset(tmp_path, typo)
    with pytest.raises(ValueError, match="voc format only"):
        open_dataset(tmp_path / "csv", one_based=True)


def test_dataset_error_is_a_value_error():
    e = DatasetError("bad\nthing", "x/y.txt", 3)
    assert isinstance(e, ValueError) and str(e) == "x/y.txt:3: bad thing"
    assert (e.path, e.line) == (Path("x/y.txt"), 3)
    assert str(DatasetError("plain")) == "plain"


# --------------------------------------------------------------------------------------------
# the shared ImageNet validation boxes


@pytest.fixture(scope="module")
def shared_csv() -> Dataset:
    if not (VAL_BOXES / "boxes.csv").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{VAL_BOXES} is missing: CI must have ../shared beside the repository")
        pytest.skip(f"{VAL_BOXES} not found (it lives in ../shared beside the repository)")
    return open_dataset(VAL_BOXES)


def test_shared_imagenet_val_boxes(shared_csv):
    ds = shared_csv
    assert (ds.format, ds.name) == ("csv", "imagenet-val-boxes")
    assert len(ds) == 725 and ds.num_boxes == 1118
    assert len(ds.class_names) == 1000 and ds.class_names[334] == "porcupine" and ds.class_names[999] == "toilet tissue"
    assert ds.class_wnids[0] == "n01440764" and ds.class_names[134] == ds.class_names[517] == "crane"
    by_id = {s.image_id: s for s in ds}
    assert len(by_id) == 725
    s = by_id["ILSVRC2012_val_00000007.JPEG"]
    assert s == Sample(s.image_id, VAL_BOXES / "images" / s.image_id, 334, ((89, 75, 495, 268),), (496, 328))
    s = by_id["ILSVRC2012_val_00000011.JPEG"]
    assert (s.label, s.boxes, s.size) == (109, ((151, 59, 478, 390),), (500, 400))
    s = by_id["ILSVRC2012_val_00008121.JPEG"]  # the image with the most boxes
    assert s.label == 440 and len(s.boxes) == 19 and s.boxes[:2] == ((162, 0, 188, 125), (9, 74, 43, 180))
    assert max(len(t.boxes) for t in ds) == 19
    assert ds.samples[-1].image_id == "ILSVRC2012_val_00048552.JPEG" and ds.samples[-1].boxes == ((8, 37, 95, 131),)
    assert all(p.path.is_file() for p in ds.samples[:20])


def test_shared_round_trips_through_the_writer(shared_csv, tmp_path):
    write_csv_dataset(shared_csv.samples, tmp_path, shared_csv.class_names, wnids=shared_csv.class_wnids)
    back = open_dataset(tmp_path)
    assert back.class_names == shared_csv.class_names and back.class_wnids == shared_csv.class_wnids
    assert [(s.image_id, s.label, s.boxes, s.size) for s in back] == [
        (s.image_id, s.label, s.boxes, s.size) for s in shared_csv
    ]
    assert (tmp_path / "boxes.csv").read_text() == (VAL_BOXES / "boxes.csv").read_text()
    assert (tmp_path / "classes.txt").read_text() == (VAL_BOXES / "classes.txt").read_text()
