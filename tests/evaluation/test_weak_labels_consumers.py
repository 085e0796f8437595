"""Weak labels read by the programs detectors are trained with, as written: torchvision's ``VOCDetection`` and
``CocoDetection``, ultralytics' ``check_det_dataset`` and a 1-epoch YOLO training; the val split; moved folders."""

import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

import camloc
from camloc.cli import main
from camloc.datasets import open_dataset
from camloc.datasets.coco import coco_bbox
from camloc.evaluation.weak_labels import BoxSettings, export_boxes
from camloc.evaluation.weak_labels.items import val_split
from camloc.models.info import ModelInfo
from tests.evaluation.test_weak_labels import PLAIN, _objects
from tests.helpers.data import ROOT
from tests.helpers.models import identity_cam

NAMES = ("object", "other")


def _export(root: Path, n: int = 12, **options) -> Path:
    """An export of ``n`` 96 x 64 images of one object each in every format; returns the output folder."""
    data = open_dataset(_objects(root / "d", n=n, size=(96, 64)))
    info = ModelInfo("identity", NAMES, PLAIN)
    out = root / "out"
    export_boxes(data, camloc.CAM(identity_cam()), info=info, out_dir=out, settings=BoxSettings(threshold=0.5),
                 formats=["coco", "voc", "yolo"], preprocess=PLAIN.with_mode("full"), **options)  # fmt: skip
    return out


def _boxes(out: Path) -> dict[str, tuple[int, tuple[int, int, int, int]]]:
    """{image stem: (class, box)} as the run's journal records them (one box an image here)."""
    records = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()[1:]]
    assert all(len(r["d"]) == 1 for r in records)
    return {Path(r["p"]).stem: (r["d"][0][0], tuple(r["d"][0][1:5])) for r in records}


def _tree(root: Path) -> dict[str, object]:
    """Every file and link under ``root``: a link's target, a file's size and modification time."""
    out: dict[str, object] = {}
    for p in root.rglob("*"):
        if p.is_symlink():
            out[str(p.relative_to(root))] = os.readlink(p)
        elif p.is_file():
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def test_torchvision_opens_the_voc_and_coco_folders_as_written(tmp_path):
    from torchvision.datasets import CocoDetection, VOCDetection

    out = _export(tmp_path, val_fraction=0.25)
    expected = _boxes(out)
    splits = {}
    for image_set in ("train", "val", "trainval"):
        voc = VOCDetection(str(out / "voc"), year="2012", image_set=image_set)
        splits[image_set] = set()
        for i in range(len(voc)):
            image, target = voc[i]
            ann = target["annotation"]
            stem = ann["filename"].removesuffix(".jpg")
            splits[image_set].add(stem)
            assert image.size == (int(ann["size"]["width"]), int(ann["size"]["height"])) == (96, 64)
            [obj] = ann["object"]
            box = tuple(int(obj["bndbox"][k]) - 1 for k in ("xmin", "ymin", "xmax", "ymax"))  # VOC is 1-based
            assert (NAMES.index(obj["name"]), box) == expected[stem]
    assert len(splits["val"]) == 3 and splits["train"] | splits["val"] == splits["trainval"] == set(expected)
    assert not splits["train"] & splits["val"]
    seen = {}
    for name in ("annotations", "train", "val"):
        coco = CocoDetection(str(out / "coco" / "images"), str(out / "coco" / f"{name}.json"))
        seen[name] = set()
        for i in range(len(coco)):
            image, [ann] = coco[i]
            stem = Path(coco.coco.imgs[coco.ids[i]]["file_name"]).stem
            seen[name].add(stem)
            assert image.size == (96, 64)
            label, box = expected[stem]
            assert (ann["category_id"] - 1, ann["bbox"]) == (label, coco_bbox(box))
    assert seen["val"] == splits["val"] and seen["train"] == splits["train"] and seen["annotations"] == set(expected)


def test_an_export_moved_with_its_data_keeps_every_link(tmp_path):
    from torchvision.datasets import CocoDetection, VOCDetection

    out = _export(tmp_path / "before", n=6)
    links = [p for p in out.rglob("*") if p.is_symlink()]
    assert len(links) == 3 * 6 and not any(os.path.isabs(os.readlink(p)) for p in links)
    moved = tmp_path / "after"
    (tmp_path / "before").rename(moved)  # the output and the data, together
    assert all(p.exists() for p in (moved / "out").rglob("*"))
    assert len(VOCDetection(str(moved / "out" / "voc"), year="2012", image_set="trainval")) == 6
    coco = CocoDetection(str(moved / "out" / "coco" / "images"), str(moved / "out" / "coco" / "annotations.json"))
    assert [coco[i][0].size for i in range(len(coco))] == [(96, 64)] * 6
    assert len(open_dataset(moved / "out" / "yolo", split="train")) == 5  # data.yaml has no absolute path


def test_copies_make_a_self_contained_dataset(tmp_path):
    out = _export(tmp_path, n=4, images="copy")
    shutil.rmtree(tmp_path / "d")  # the data gone: the copies remain
    assert not [p for p in out.rglob("*") if p.is_symlink()]
    for back in (open_dataset(out / "coco"), open_dataset(out / "voc", one_based=True)):
        assert len(back) == 4 and all(s.path.is_file() for s in back.samples)


def test_the_val_split_is_seeded_and_every_image_in_exactly_one():
    names = [f"img{i:03d}" for i in range(200)]
    split = val_split(names, 0.1, seed=3)
    assert split.count("val") == 20 and val_split(names, 0.1, seed=3) == split
    assert val_split(names, 0.1, seed=4) != split
    # by name, not position: shuffled names keep their split, and one image more moves no other
    order = np.random.default_rng(0).permutation(200)
    assert [val_split([names[i] for i in order], 0.1, seed=3)[j] for j in np.argsort(order)] == split
    grown = val_split([*names, "img200"], 0.1, seed=3)
    assert (
        sum(a != b for a, b in zip(grown[:200], split, strict=True)) <= 1
    )  # 20 val of 201: at most the new one's rank moves one
    assert val_split(names, 0.0) == ["train"] * 200
    assert val_split(["a", "b"], 0.1).count("val") == 1 and val_split(["a"], 0.5) == ["train"]
    with pytest.raises(ValueError, match="val_fraction must lie in \\[0, 1\\), not 1.0"):
        val_split(names, 1.0)


def test_cli_val_fraction_puts_every_image_in_one_split_of_every_format(tmp_path, capsys):
    data = _objects(tmp_path / "d", n=10)
    model = f"{ROOT / 'tests' / 'helpers' / 'models.py'}:identity_cam"
    plain = ["--model", model, "--size", "32", "--mean", "0,0,0", "--std", "1,1,1", "--format", "coco,voc,yolo"]
    for out, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        args = ["boxes", str(data), "--out", str(tmp_path / out), "--val-fraction", "0.3", "--seed", seed, *plain]
        assert main(args) == 0

    def splits(out: Path) -> dict[str, set[str]]:
        yolo = {s: {p.stem for p in (out / "yolo" / "images" / s).iterdir()} for s in ("train", "val")}
        lists = out / "voc" / "VOCdevkit" / "VOC2012" / "ImageSets" / "Main"
        voc = {s: set((lists / f"{s}.txt").read_text().split()) for s in ("train", "val")}
        coco = {s: {Path(im["file_name"]).stem for im in json.loads((out / "coco" / f"{s}.json").read_text())["images"]}
                for s in ("train", "val")}  # fmt: skip
        assert yolo == voc == coco
        labels = {s: {p.stem for p in (out / "yolo" / "labels" / s).iterdir()} for s in ("train", "val")}
        assert labels == yolo
        return yolo

    a = splits(tmp_path / "a")
    assert len(a["val"]) == 3 and not a["train"] & a["val"] and a["train"] | a["val"] == {f"{i:02d}" for i in range(10)}
    assert splits(tmp_path / "b") == a and splits(tmp_path / "c") != a
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert (summary["val_images"], summary["settings"]["val_fraction"], summary["settings"]["images"]) == (
        3,
        0.3,
        "link",
    )
    with pytest.raises(SystemExit):
        main(["boxes", str(data), "--out", str(tmp_path / "e"), "--val-fraction", "1", *plain])
    assert "expected a fraction in [0, 1), got '1'" in capsys.readouterr().err


def test_cli_honours_resize(tmp_path):
    """--resize squash boxes in the model's square, as evaluate (camloc 0.2 switched every run to full)."""
    data = _objects(tmp_path / "d", n=4, size=(64, 32))
    model = f"{ROOT / 'tests' / 'helpers' / 'models.py'}:identity_cam"
    plain = ["--model", model, "--size", "32", "--mean", "0,0,0", "--std", "1,1,1"]
    for mode in ("squash", "full"):
        assert main(["boxes", str(data), "--out", str(tmp_path / mode), *plain, "--resize", mode]) == 0
        assert json.loads((tmp_path / mode / "summary.json").read_text())["settings"]["resize"] == mode
    info = ModelInfo("identity", NAMES, PLAIN)
    python = export_boxes(open_dataset(data), camloc.CAM(identity_cam()), info=info, out_dir=tmp_path / "python",
                          preprocess=PLAIN)  # squash at 32 x 32  # fmt: skip
    assert python.summary["images"] == 4
    assert _boxes(tmp_path / "squash") == _boxes(tmp_path / "python") != _boxes(tmp_path / "full")


@pytest.fixture(scope="module")
def ultralytics(tmp_path_factory):
    """ultralytics, offline: its settings in a scratch folder, the fonts it would fetch there, no socket opened."""
    config = tmp_path_factory.mktemp("ultralytics-config")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("YOLO_CONFIG_DIR", str(config))  # read when ultralytics is first imported
        mp.setenv("YOLO_OFFLINE", "1")
        module = pytest.importorskip("ultralytics")
        from PIL import Image
        from ultralytics.utils import USER_CONFIG_DIR, patches

        # Importing ultralytics replaces PIL's Image.open for the whole process (a HEIF fallback that wants
        # pi-heif): put Pillow's own back, or every later test reading a bad image sees its ImportError.
        Image.open = patches._image_open

        for font in ("Arial.ttf", "Arial.Unicode.ttf"):  # check_det_dataset downloads a font it does not find
            (USER_CONFIG_DIR / font).touch()
        tried: list[str] = []

        def refuse(*args, **kwargs):
            tried.append(str(args[1] if len(args) > 1 else args[0]))
            raise OSError("no network in the tests")

        mp.setattr(socket, "getaddrinfo", refuse)
        mp.setattr(socket.socket, "connect", refuse)
        yield module
        assert tried == []  # nothing was fetched, or tried


@pytest.mark.slow
def test_ultralytics_checks_and_trains_on_the_yolo_folder_finding_every_label(tmp_path, ultralytics):
    from ultralytics.data.utils import check_det_dataset

    out = _export(tmp_path, val_fraction=0.25)
    yolo = out / "yolo"
    data = check_det_dataset(str(yolo / "data.yaml"))
    assert (data["train"], data["val"]) == (str(yolo / "images" / "train"), str(yolo / "images" / "val"))
    assert (data["nc"], data["names"]) == (2, dict(enumerate(NAMES)))
    before = _tree(tmp_path)
    model = ultralytics.YOLO("yolov8n.yaml")  # built from the yaml: no weights fetched
    model.train(data=str(yolo / "data.yaml"), imgsz=64, epochs=1, batch=4, plots=False, device="cpu", workers=0,
                amp=False, project=str(tmp_path / "runs"), verbose=False)  # fmt: skip
    expected = {}
    for split in ("train", "val"):
        for f in (yolo / "labels" / split).glob("*.txt"):
            [line] = f.read_text().split("\n")[:1]
            expected[f.stem] = (split, [float(v) for v in line.split()])
    for split, loader in (("train", model.trainer.train_loader), ("val", model.trainer.test_loader)):
        labels = loader.dataset.labels
        assert len(labels) == sum(s == split for s, _ in expected.values())  # every image, none a background
        for label in labels:
            stem = Path(label["im_file"]).stem
            assert Path(label["im_file"]).parent == yolo / "images" / split and expected[stem][0] == split
            assert label["cls"].ravel().tolist() == [expected[stem][1][0]]
            assert np.allclose(label["bboxes"][0], expected[stem][1][1:], atol=1e-5)
    # what ultralytics wrote is its run folder and its label caches, in the YOLO folder: nothing elsewhere
    after = {k: v for k, v in _tree(tmp_path).items() if not k.startswith("runs/")}
    changed = sorted(k for k in after.keys() | before.keys() if after.get(k) != before.get(k))
    assert changed == ["out/yolo/labels/train.cache", "out/yolo/labels/val.cache"]
