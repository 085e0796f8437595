"""The training-side commands end to end: synth, train, evaluate/explain --model FILE.pt, features,
probe, finegrained."""

import json

import numpy as np
import pytest
import torch

import camloc
from camloc.boxes.paper import paper_box
from camloc.cli import main
from camloc.datasets import open_dataset
from camloc.maps.frames import to_image_frame
from camloc.metrics.iou import best_iou
from camloc.training.finegrained import cam_boxes, gt_boxes


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    assert main(["synth", str(root / "data"), "--train", "32", "--test", "12", "--seed", "4"]) == 0
    return root


@pytest.mark.slow
def test_synth_train_then_every_command_loads_the_model_file(synth, capsys):
    data, model = synth / "data", synth / "m.pt"
    assert main(["train", str(data), "--out", str(model), "--epochs", "1", "--size", "32", "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "best fixed centred box" in out
    report = json.loads(model.with_suffix(".json").read_text())
    assert report["train_images"] == 32 and len(report["history"]) == 1 and report["cam"]["images"] == 12
    assert report["center"]["cls_top1"] == report["cam"]["cls_top1"]  # same model, same classes
    side = 1.0 - report["center"]["best_threshold"]  # threshold t keeps the centred box of (1 - t) of the sides
    assert f"best box side (of the image){side:>8.2f}" in out

    ev = synth / "ev.json"
    assert main(["evaluate", str(data / "test"), "--model", str(model), "--baseline", "center", "--json", str(ev)]) == 0
    assert "center baseline" in capsys.readouterr().out
    result = json.loads(ev.read_text())
    assert result["baseline"] == "center" and result["max_box_acc"] == report["center"]["max_box_acc"]

    exp = synth / "explain"
    image = open_dataset(data / "test").samples[0].path
    assert main(["explain", str(image), "--model", str(model), "--topk", "2", "--out", str(exp)]) == 0
    names = {p["name"] for p in json.loads((exp / "results.json").read_text())["images"][0]["predictions"]}
    assert names <= set(open_dataset(data / "test").class_names)

    assert main(["evaluate", str(data / "test"), "--model", str(synth / "none.pt")]) == 2
    assert "none.pt: model file not found" in capsys.readouterr().err


@pytest.mark.slow
def test_features_probe_and_the_probe_as_a_model(synth, mobilenet, capsys, tmp_path):
    data = synth / "data"
    for split in ("train", "test"):
        assert main(["features", str(data / split), "--out", str(tmp_path / f"{split}.npz"), "--size", "64"]) == 0
    probe_file = tmp_path / "probe.pt"
    assert (
        main(
            [
                "probe",
                str(tmp_path / "train.npz"),
                "--test",
                str(tmp_path / "test.npz"),
                "--out",
                str(probe_file),
                "--kind",
                "logistic",
                "--json",
                str(tmp_path / "p.json"),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["train_accuracy"] == 100.0  # 32 points in 1280 dimensions are separable
    assert 0.0 <= report["test_accuracy"] <= 100.0

    model = camloc.load_model(str(probe_file))
    info = camloc.model_info(model)
    assert info.class_names == tuple(open_dataset(data / "train").class_names)
    assert info.preprocess.size == 64
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feats = mobilenet.features(x)
        gap = feats.mean((2, 3))
        head = model.classifier[1]
        assert torch.allclose(model(x), gap @ head.weight.T + head.bias, atol=1e-4)
        out = camloc.CAM(model)(x, classes=[[2]], upsample=False)
    assert torch.allclose(out.raw[0, 0], torch.einsum("k,khw->hw", head.weight[2], feats[0]), atol=1e-4)
    assert main(["evaluate", str(data / "test"), "--model", str(probe_file), "--json", str(tmp_path / "e.json")]) == 0


@pytest.mark.slow
def test_finegrained_reports_three_accuracies_and_its_boxes(synth, tmp_path, capsys):
    data = synth / "data"
    out = tmp_path / "fg.json"
    status = main(["finegrained", str(data), "--size", "64", "--kind", "logistic", "--json", str(out)])
    assert status == 0
    printed = capsys.readouterr().out
    assert "crop to the CAM box" in printed and "crop to the GT box" in printed
    result = json.loads(out.read_text())
    assert result["train_images"] == 32 and result["test_images"] == 12
    for key in ("full", "cam_crop", "gt_crop"):
        assert 0.0 <= result[key] <= 100.0
    test = open_dataset(data / "test")
    hits = [best_iou(result["test_boxes"][s.image_id], list(s.boxes)) > 0.5 for s in test]
    assert result["localized"] == pytest.approx(100.0 * np.mean(hits))


def test_cam_boxes_are_the_paper_box_of_the_upsampled_map(synth, mobilenet):
    test = open_dataset(synth / "data" / "test")
    pre = camloc.Preprocess(size=64, mode="squash")
    wanted = {s.image_id: i % 3 for i, s in enumerate(test)}
    boxes = cam_boxes(mobilenet, test, pre, wanted, 0.3, progress=False)
    sample = test.samples[5]
    batch = camloc.load_batch([sample.path], pre)
    with torch.no_grad():
        raw = camloc.CAM(mobilenet)(batch.images, classes=[[wanted[sample.image_id]]], upsample=False).raw[0].float()
    heat = to_image_frame(raw, batch.geometries[0])[0].numpy()  # the paper's rule: no min subtraction
    assert boxes[sample.image_id] == paper_box(heat, 0.3)
    assert any(b is not None for b in boxes.values())
    assert gt_boxes(test)[sample.image_id] == sample.boxes[0]


@pytest.mark.slow
def test_finegrained_train_mode_crops_to_the_boxes_it_reports(synth, tmp_path):
    data, work, out = synth / "data", tmp_path / "work", tmp_path / "fg.json"
    args = [
        "finegrained",
        str(data),
        "--mode",
        "train",
        "--epochs",
        "1",
        "--size",
        "32",
        "--work",
        str(work),
        "--json",
        str(out),
    ]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert {p.name for p in work.glob("*.pt")} == {"full.pt", "cam-crop.pt", "gt-crop.pt"}
    test = open_dataset(data / "test")
    gt_crops = open_dataset(work / "gt-crops" / "test")
    cam_crops = open_dataset(work / "cam-crops" / "test")
    for i, s in enumerate(test):
        x0, y0, x1, y1 = s.boxes[0]
        assert gt_crops.samples[i].size == (x1 - x0 + 1, y1 - y0 + 1) and gt_crops.samples[i].label == s.label
        box = result["test_boxes"][s.image_id]
        want = s.size if box is None else (box[2] - box[0] + 1, box[3] - box[1] + 1)
        assert cam_crops.samples[i].size == tuple(want)
    # A rerun resumes from the finished models instead of training again.
    before = (work / "full.pt").stat().st_mtime_ns
    assert main(args) == 0
    assert json.loads(out.read_text())["full"] == result["full"]
    assert (work / "full.pt").stat().st_mtime_ns == before


@pytest.mark.slow
def test_finegrained_boxes_use_the_probe_rows_when_a_class_has_no_training_images(synth, mobilenet):
    """The probe scores only the classes it saw; its CAM rows must be looked up by class, not by label."""
    import dataclasses

    from camloc.models.probes import attach_probe
    from camloc.training.features import extract_features
    from camloc.training.finegrained import finegrained
    from camloc.training.probes import fit_probe

    train = open_dataset(synth / "data" / "train")
    train = dataclasses.replace(train, samples=[s for s in train if s.label != 1])
    test = open_dataset(synth / "data" / "test")
    pre = camloc.Preprocess(size=64, mode="squash")
    result = finegrained(mobilenet, train, test, pre, kind="logistic", progress=False)

    probe = fit_probe(extract_features(mobilenet, train, pre, progress=False), kind="logistic")
    assert 1 not in probe.labels and len(probe.labels) == 7
    f_test = extract_features(mobilenet, test, pre, progress=False)
    rows = dict(zip(f_test.image_ids, probe.decision(f_test.values).argmax(axis=1).tolist(), strict=True))
    want = cam_boxes(attach_probe(mobilenet, probe), test, pre, rows, 0.2, progress=False)
    assert result.test_boxes == want


@pytest.mark.slow
def test_train_and_finegrained_read_cub_and_class_folders(tmp_path):
    """CUB-200-2011 as distributed (its train/test split file) and an ImageFolder tree of class subfolders."""
    import shutil

    cub = tmp_path / "cub"
    assert (
        main(
            [
                "synth",
                str(cub),
                "--kind",
                "finegrained",
                "--layout",
                "cub",
                "--train",
                "12",
                "--test",
                "6",
                "--size",
                "64",
            ]
        )
        == 0
    )
    model, fg = tmp_path / "cub.pt", tmp_path / "fg.json"
    assert main(["train", str(cub), "--out", str(model), "--epochs", "1", "--size", "32", "--batch-size", "4"]) == 0
    report = json.loads(model.with_suffix(".json").read_text())
    assert report["train_images"] == 12 and report["cam"]["images"] == 6  # the split file's halves
    assert main(["finegrained", str(cub), "--size", "64", "--kind", "logistic", "--json", str(fg)]) == 0
    result = json.loads(fg.read_text())
    assert (result["train_images"], result["test_images"]) == (12, 6)

    folder = tmp_path / "folder"
    train = open_dataset(cub, "cub", split="train")
    for s in train:
        target = folder / train.class_names[s.label] / s.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(s.path, target)
    out = tmp_path / "folder.pt"
    assert (
        main(
            [
                "train",
                str(folder),
                "--format",
                "folder",
                "--out",
                str(out),
                "--epochs",
                "1",
                "--size",
                "32",
                "--batch-size",
                "4",
            ]
        )
        == 0
    )
    loaded = camloc.model_info(camloc.load_model(str(out)))
    assert set(loaded.class_names) == {train.class_names[s.label] for s in train}
    assert json.loads(out.with_suffix(".json").read_text())["train_images"] == 12
