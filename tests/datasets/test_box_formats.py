"""COCO / Pascal VOC / YOLO writers; camloc's readers read back the same boxes, pycocotools reads every COCO file."""

import json
import os
import shutil

import numpy as np
import pytest
import yaml
from PIL import Image

from camloc.datasets import open_dataset
from camloc.datasets.coco import box_of_bbox, coco_bbox
from camloc.datasets.labels import Detection, ImageBoxes
from camloc.datasets.registry import open_writers
from camloc.metrics.detection import coco_ap

NAMES = ["tabby cat", "crane, bird", "espresso", "n01440764"]


def _images(tmp_path):
    """Three images of odd sizes, two of them sharing a file stem; random boxes, one image with none."""
    rng = np.random.default_rng(0)
    sizes = [(37, 23), (640, 427), (101, 211)]
    paths = [tmp_path / "a" / "x.png", tmp_path / "b" / "x.jpg", tmp_path / "a" / "y.png"]
    out = []
    for i, (path, (w, h)) in enumerate(zip(paths, sizes, strict=True)):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (w, h), (i * 60, 90, 30)).save(path)
        dets = []
        for _ in range(0 if i == 2 else 3):
            x0, x1 = sorted(rng.integers(0, w, 2))
            y0, y1 = sorted(rng.integers(0, h, 2))
            dets.append(
                Detection(int(rng.integers(0, len(NAMES))), (int(x0), int(y0), int(x1), int(y1)), float(rng.random()))
            )
        out.append(ImageBoxes(i, path, w, h, dets))
    out[0].detections.append(Detection(1, (0, 0, 36, 22), 0.5))  # the whole image, last pixel included
    return out


def _write(tmp_path, images, formats=("coco", "voc", "yolo")):
    writers = open_writers(formats, tmp_path / "out", NAMES)
    for w in writers:
        with w:
            for im in images:
                w.write(im)
    return tmp_path / "out"


def _by_image(dataset):
    """{file name: {label: sorted boxes}} of a dataset read back."""
    out = {}
    for s in dataset.samples:
        out.setdefault(s.path.name, {})[s.label] = sorted(s.boxes)
    return out


def _expected(images, names):
    out = {}
    for im, name in zip(images, names, strict=True):
        for d in im.detections:
            out.setdefault(name, {}).setdefault(d.label, []).append(d.box)
    return {k: {c: sorted(b) for c, b in v.items()} for k, v in out.items()}


def test_bbox_conversions_round_trip():
    rng = np.random.default_rng(1)
    for _ in range(200):
        x0, y0 = rng.integers(0, 500, 2)
        box = (int(x0), int(y0), int(x0 + rng.integers(0, 300)), int(y0 + rng.integers(0, 300)))
        assert box_of_bbox(coco_bbox(box)) == box


def test_coco_files_load_in_pycocotools_and_read_back(tmp_path):
    from pycocotools.coco import COCO

    images = _images(tmp_path)
    out = _write(tmp_path, images, ["coco"])
    coco = COCO(str(out / "coco" / "annotations.json"))  # pycocotools itself, from the file
    assert sorted(coco.getImgIds()) == [1, 2, 3] and coco.dataset["info"]["contributor"] == "camloc"
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == NAMES
    assert [coco.imgs[i]["file_name"] for i in (1, 2, 3)] == ["x.png", "x_2.jpg", "y.png"]  # stems made unique
    ann = coco.loadAnns(coco.getAnnIds(imgIds=[1]))[-1]
    assert ann["bbox"] == [0, 0, 37, 23] and ann["area"] == 37 * 23 and ann["iscrowd"] == 0 and ann["score"] == 0.5
    assert (out / "coco" / "images" / "x_2.jpg").resolve() == images[1].path.resolve()
    results = json.loads((out / "coco" / "results.json").read_text())
    assert len(results) == sum(len(im.detections) for im in images)
    # the labels scored against themselves: every box is a true positive of score order -> AP 100
    as_gt = json.loads((out / "coco" / "annotations.json").read_text())
    assert coco_ap(as_gt, results) == pytest.approx({"ap": 100.0, "ap50": 100.0, "ap75": 100.0})
    # read back by camloc's COCO reader (the file, or its folder): the same boxes, images under images/
    back = open_dataset(out / "coco" / "annotations.json")
    assert back.format == "coco" and back.class_names == NAMES
    assert _by_image(back) == _expected(images, ["x.png", "x_2.jpg", "y.png"])
    assert all(s.path.is_file() for s in back.samples)
    assert _by_image(open_dataset(out / "coco")) == _by_image(back)


def test_voc_and_yolo_read_back_the_same_boxes(tmp_path):
    images = _images(tmp_path)
    out = _write(tmp_path, images, ["voc", "yolo"])
    voc_root = out / "voc" / "VOCdevkit" / "VOC2012"  # torchvision's VOCDetection(out / "voc") layout
    xml = (voc_root / "Annotations" / "x_2.xml").read_text()
    assert "<filename>x_2.jpg</filename>" in xml and "<difficult>0</difficult>" in xml
    assert "<width>640</width><height>427</height>" in xml
    assert "<filename>x.jpg</filename>" in (voc_root / "Annotations" / "x.xml").read_text()  # x.png, named .jpg
    lists = {
        n: (voc_root / "ImageSets" / "Main" / f"{n}.txt").read_text().split() for n in ("train", "val", "trainval")
    }
    assert lists == {"train": ["x", "x_2", "y"], "val": [], "trainval": ["x", "x_2", "y"]}  # all written as train
    # VOC: every class of every image (one sample per class), back to the pixel, from the folder or VOC2012 itself
    voc = open_dataset(out / "voc", one_based=True)
    expected = _expected(images, ["x.png", "x_2.jpg", "y.png"])
    assert _by_image(voc) == {k.rsplit(".", 1)[0] + ".jpg": v for k, v in expected.items()} and voc.class_names == NAMES
    assert _by_image(open_dataset(voc_root, one_based=True)) == _by_image(voc)
    assert sum(len(v) for v in expected.values()) == len(voc.samples) > len(expected)  # several classes per image
    # YOLO: ultralytics' layout, every class of every image, back to the pixel
    data = yaml.safe_load((out / "yolo" / "data.yaml").read_text())
    assert data["names"] == dict(enumerate(NAMES)) and data["nc"] == 4 and "path" not in data
    assert (data["train"], data["val"]) == ("images/train", "images/train")  # no val image: validate on train
    assert (out / "yolo" / "dataset.yaml").read_text() == (out / "yolo" / "data.yaml").read_text()  # FiftyOne's name
    line = (out / "yolo" / "labels" / "train" / "x.txt").read_text().splitlines()[-1]
    assert line == "1 0.500000 0.500000 1.000000 1.000000"  # the whole 37 x 23 image
    assert (out / "yolo" / "labels" / "train" / "y.txt").read_text() == ""  # an image without boxes: an empty file
    yolo = open_dataset(out / "yolo")
    assert yolo.format == "yolo" and yolo.class_names == NAMES
    assert _by_image(yolo) == expected


def test_every_format_holds_its_images_in_real_folders_of_relative_links(tmp_path):
    images = _images(tmp_path)
    writers = open_writers(["coco", "voc", "yolo"], tmp_path / "out", NAMES)
    for w in writers:
        with w:
            for im, split in zip(images, ["train", "val", "train"], strict=True):
                w.write(im, split=split)
    out = tmp_path / "out"
    folders = {
        "coco": (out / "coco" / "images", ["x.png", "x_2.jpg", "y.png"]),
        "voc": (out / "voc" / "VOCdevkit" / "VOC2012" / "JPEGImages", ["x.jpg", "x_2.jpg", "y.jpg"]),
        "yolo-train": (out / "yolo" / "images" / "train", ["x.png", "y.png"]),
        "yolo-val": (out / "yolo" / "images" / "val", ["x_2.jpg"]),
    }
    sources = {"x": images[0].path, "x_2": images[1].path, "y": images[2].path}
    for folder, names in folders.values():
        assert not folder.is_symlink() and sorted(p.name for p in folder.iterdir()) == names
        for name in names:
            link = folder / name
            target = os.readlink(link)
            assert not os.path.isabs(target) and link.resolve() == sources[name.rsplit(".", 1)[0]].resolve()
    assert sorted(p.name for p in (out / "yolo" / "labels" / "val").iterdir()) == ["x_2.txt"]
    assert json.loads((out / "coco" / "val.json").read_text())["images"][0]["file_name"] == "x_2.jpg"
    assert [im["id"] for im in json.loads((out / "coco" / "train.json").read_text())["images"]] == [1, 3]
    assert yaml.safe_load((out / "yolo" / "data.yaml").read_text())["val"] == "images/val"
    # the output and the data moved together (links kept as links): every format still finds its images
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    shutil.copytree(tmp_path, moved, symlinks=True)
    shutil.rmtree(tmp_path)
    for fmt in ("coco", "voc", "yolo"):
        back = open_dataset(moved / "out" / fmt, one_based=True) if fmt == "voc" else open_dataset(moved / "out" / fmt)
        assert back.samples and all(s.path.is_file() for s in back.samples), fmt
    broken = [p for p in (moved / "out").rglob("*") if p.is_symlink() and not p.exists()]
    assert broken == []


def test_links_across_filesystems_hold_absolute_paths(tmp_path, monkeypatch):
    from camloc.datasets import labels

    (tmp_path / "data").mkdir()
    (tmp_path / "out").mkdir()
    image = tmp_path / "data" / "a.png"
    Image.new("RGB", (4, 4)).save(image)
    assert labels.link_target(tmp_path / "out", image) == os.path.join("..", "data", "a.png")
    devices = {os.path.realpath(tmp_path / d): i for i, d in enumerate(("data", "out"))}  # as if on two disks
    monkeypatch.setattr(labels, "_device", lambda path: devices[str(path)])
    link = labels.place_image(tmp_path / "out", "b.png", image)
    assert link is not None and os.readlink(link) == os.path.realpath(image) and link.read_bytes() == image.read_bytes()


def test_images_copied_or_left_out(tmp_path):
    images = _images(tmp_path)
    for w in open_writers(["coco", "yolo"], tmp_path / "copy", NAMES, images="copy"):
        with w:
            for im in images:
                w.write(im)
    copied = tmp_path / "copy" / "yolo" / "images" / "train" / "x_2.jpg"
    assert not copied.is_symlink() and copied.read_bytes() == images[1].path.read_bytes()
    for w in open_writers(["coco", "voc", "yolo"], tmp_path / "none", NAMES, images="none"):
        with w:
            for im in images:
                w.write(im)
    assert not [p for p in (tmp_path / "none").rglob("*") if p.suffix in (".png", ".jpg")]
    assert (tmp_path / "none" / "coco" / "annotations.json").is_file()
    with pytest.raises(
        ValueError, match=r"images must be one of link, copy, none, not 'links' \(did you mean 'link'\?\)"
    ):
        open_writers(["coco"], tmp_path / "bad", NAMES, images="links")


def test_a_failed_run_leaves_no_whole_set_files(tmp_path):
    images = _images(tmp_path)
    with pytest.raises(RuntimeError):
        for w in open_writers(["coco", "voc", "yolo"], tmp_path / "out", NAMES):
            with w:
                w.write(images[0])
                raise RuntimeError("killed")
    assert not (tmp_path / "out" / "coco" / "annotations.json").exists()
    assert not list((tmp_path / "out" / "coco").glob(".spool*"))


def test_reader_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": []}')
    with pytest.raises(ValueError, match="bad.json: not a COCO instances file"):
        open_dataset(bad)
    bad.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}],
                "annotations": [{"id": 4, "image_id": 1, "category_id": 9, "bbox": [0, 0, 2, 2]}],
                "categories": [{"id": 1, "name": "a"}],
            }
        )  # fmt: skip
    )
    with pytest.raises(ValueError, match="annotation 4 names category 9, which is not in categories"):
        open_dataset(bad)
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    Image.new("RGB", (10, 10)).save(root / "images" / "a.png")
    (root / "data.yaml").write_text("names: [a, b]\n")
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.2 0.2\n")
    with pytest.raises(ValueError, match=r"a.txt:2: class 2 is not in data.yaml's names \(0..1\)"):
        open_dataset(root)
    with pytest.raises(ValueError, match="box formats are coco, voc, yolo; got 'kitti'$"):
        open_writers(["kitti"], tmp_path, NAMES)
    with pytest.raises(ValueError, match=r"got 'yolov' \(did you mean 'yolo'\?\)"):
        open_writers(["coco", "yolov"], tmp_path, NAMES)
