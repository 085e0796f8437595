"""`camloc evaluate`: wsolevaluation's numbers on real data, resume, unreadable images, PxAP, the CLI."""

import dataclasses
import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import camloc
from camloc.cli import main
from camloc.datasets import open_dataset, write_csv_dataset
from camloc.evaluation.evaluate import evaluate
from camloc.models.info import ModelInfo, with_info
from tests.evaluation.test_weak_labels import PLAIN, _objects
from tests.helpers.data import ROOT, VAL_BOXES
from tests.helpers.models import identity_cam
from tests.helpers.wsol_oracle import best_ious, levels


@pytest.fixture(scope="module")
def val(val_boxes):
    return open_dataset(VAL_BOXES)


def _subset(dataset, n, start=0):
    return dataclasses.replace(dataset, samples=dataset.samples[start : start + n])


@pytest.mark.slow
def test_wsol_protocol_reproduces_wsolevaluation_on_real_data(mobilenet, val):
    """Reference: wsolevaluation's own code on the same 725 images and model (../shared/notes)."""
    result = evaluate(
        val, camloc.CAM(mobilenet), camloc.model_info(mobilenet).preprocess, protocol="wsol", progress=False
    )
    s = result.summary
    assert s["images"] == 725 and result.skipped == []
    assert s["max_box_acc"] == pytest.approx(65.66, abs=0.15)
    assert s["max_box_acc_v2"] == pytest.approx(62.48, abs=0.15)
    for iou, ref in (("30", 87.72), ("50", 65.66), ("70", 34.07)):
        assert s["max_box_acc_v2_per_iou"][iou] == pytest.approx(ref, abs=0.15)
    assert s["cls_top1"] == pytest.approx(78.34, abs=0.01) and s["cls_top5"] == pytest.approx(93.10, abs=0.01)
    assert s["gt_known_loc"] == pytest.approx(56.83, abs=0.15) and s["top1_loc"] == pytest.approx(45.93, abs=0.15)
    assert s["pxap"] is None
    assert len(result.curves["v1_50"]) == 100 and max(result.curves["v1_50"]) == s["max_box_acc"]


@pytest.mark.slow
def test_curves_equal_the_plain_opencv_loop(mobilenet, val):
    """Per-threshold accuracies on a slice, against wsolevaluation's rule written out with OpenCV."""
    part = _subset(val, 48, start=300)
    result = evaluate(part, camloc.CAM(mobilenet), camloc.model_info(mobilenet).preprocess, step=0.05, progress=False)
    batch = camloc.load_batch([s.path for s in part.samples], camloc.Preprocess(mode="squash"))
    with torch.no_grad():
        out = camloc.CAM(mobilenet)(batch.images, classes=[[s.label] for s in part.samples], upsample=False)
    v1_hits, v2_hits = np.zeros(20), {t: np.zeros(20) for t in (30, 50, 70)}
    for i, sample in enumerate(part.samples):
        cam = cv2.resize(out.raw[i, 0].double().numpy(), (224, 224), interpolation=cv2.INTER_CUBIC)
        cam = (cam - cam.min()) / (cam.max() - cam.min())
        gray = (cam * 255).astype(np.uint8)
        w, h = sample.size
        truths = [
            (int(x0 * 224 / w), int(y0 * 224 / h), int(x1 * 224 / w), int(y1 * 224 / h))
            for x0, y0, x1, y1 in sample.boxes
        ]
        v1, v2 = best_ious(gray, levels(gray, 0.05), truths)
        v1_hits += v1 >= 0.5
        for t in v2_hits:
            v2_hits[t] += v2 >= t / 100
    assert np.allclose(result.curves["v1_50"], v1_hits * 100 / 48)
    for t in v2_hits:
        assert np.allclose(result.curves[f"v2_{t}"], v2_hits[t] * 100 / 48)


def _with_bad_files(tmp_path, val, n=12):
    """A CSV dataset of n real images (linked, not copied) plus a missing and a truncated file."""
    images = tmp_path / "data" / "images"
    images.mkdir(parents=True)
    samples = []
    for s in val.samples[:n]:
        (images / s.path.name).symlink_to(s.path)
        samples.append(dataclasses.replace(s, path=images / s.path.name))
    whole = val.samples[n].path.read_bytes()
    (images / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    extra = [
        dataclasses.replace(val.samples[n], image_id="truncated.jpg", path=images / "truncated.jpg"),
        dataclasses.replace(val.samples[n + 1], image_id="missing.jpg", path=images / "missing.jpg"),
    ]
    write_csv_dataset(samples[:5] + extra + samples[5:], tmp_path / "data", val.class_names)
    return tmp_path / "data"


@pytest.mark.slow
def test_resume_after_an_interruption_gives_the_same_json(tmp_path, mobilenet, val):
    data = open_dataset(_with_bad_files(tmp_path, val))
    cam, pre = camloc.CAM(mobilenet), camloc.model_info(mobilenet).preprocess
    whole = evaluate(data, cam, pre, batch_size=4, per_image=tmp_path / "whole.csv", progress=False)
    assert whole.summary["images"] == 12
    assert sorted(s["image_id"] for s in whole.skipped) == ["missing.jpg", "truncated.jpg"]

    rows = tmp_path / "rows.csv"
    evaluate(_subset(data, 7), cam, pre, batch_size=4, per_image=rows, progress=False)  # "killed" after 7 images
    lines = rows.read_text().splitlines(keepends=True)
    rows.write_text("".join(lines[:-1]) + lines[-1][:25])  # and the last row half-written
    with pytest.raises(FileExistsError, match="rows.csv: exists; pass resume=True"):
        evaluate(data, cam, pre, per_image=rows, progress=False)
    resumed = evaluate(data, cam, pre, batch_size=4, per_image=rows, resume=True, progress=False)
    assert resumed.to_json() == whole.to_json()
    body = rows.read_text().splitlines()[1:]
    assert len(body) == 14 and len({line.split(",")[0] for line in body}) == 14
    assert rows.read_bytes() == (tmp_path / "whole.csv").read_bytes()

    # a per-image file of camloc 0.2 (settings on line 1, CRLF rows) resumes, and is rewritten in the plain form
    settings = json.loads((tmp_path / "whole.csv.json").read_text())["settings"]
    header, *plain = (tmp_path / "whole.csv").read_text().splitlines()
    old = tmp_path / "old.csv"
    old.write_bytes(f"# camloc evaluate {json.dumps(settings, sort_keys=True)}\n".encode()
                    + "".join(line + "\r\n" for line in [header, *plain[:6]]).encode())  # fmt: skip
    again = evaluate(data, cam, pre, batch_size=4, per_image=old, resume=True, progress=False)
    assert again.to_json() == whole.to_json()
    assert old.read_bytes() == (tmp_path / "whole.csv").read_bytes()
    assert json.loads((tmp_path / "old.csv.json").read_text()) == {"camloc": "evaluate", "settings": settings}

    with pytest.raises(ValueError, match="other settings"):
        evaluate(data, cam, pre, per_image=rows, resume=True, protocol="paper", progress=False)


@pytest.mark.slow
def test_cli_evaluate_lists_unreadable_images_and_exits_1(tmp_path, val, capsys):
    data = _with_bad_files(tmp_path, val, n=6)
    json_path = tmp_path / "r.json"
    status = main(
        [
            "evaluate",
            str(data),
            "--json",
            str(json_path),
            "--per-image",
            str(tmp_path / "rows.csv"),
            "--batch-size",
            "4",
        ]
    )
    captured = capsys.readouterr()
    assert status == 1
    assert "2 image(s) could not be read and are not counted" in captured.err
    assert "missing.jpg" in captured.err and "truncated.jpg" in captured.err
    result = json.loads(json_path.read_text())
    expected_keys = {"images", "cls_top1", "cls_top5", "top1_loc", "top5_loc", "gt_known_loc", "max_box_acc",
                     "max_box_acc_v2", "max_box_acc_v2_per_iou", "best_threshold", "pxap"}  # fmt: skip
    assert expected_keys <= set(result)
    assert result["images"] == 6 and len(result["skipped"]) == 2 and result["pxap"] is None
    assert set(result["max_box_acc_v2_per_iou"]) == {"30", "50", "70"}
    assert "MaxBoxAccV2" in captured.out
    with Image.open(json_path.with_suffix(".png")) as plot:
        assert plot.format == "PNG"
    assert (
        main(["evaluate", str(data), "--json", str(json_path), "--per-image", str(tmp_path / "rows.csv"), "--resume"])
        == 1
    )


def _wsol_openimages(tmp_path, n=6):
    """A wsolevaluation-style OpenImages split: images with a bright square, its mask and an ignore box."""
    rng = np.random.default_rng(5)
    root = tmp_path / "oi"
    (root / "meta").mkdir(parents=True)
    (root / "images").mkdir()
    ids, labels, loc = [], [], []
    for i in range(n):
        img = (rng.random((160, 200, 3)) * 80).astype(np.uint8)
        y, x = rng.integers(10, 90), rng.integers(10, 120)
        img[y : y + 50, x : x + 60] = (230, 200, 40)
        mask = np.zeros((160, 200), np.uint8)
        mask[y : y + 50, x : x + 60] = 255
        ignore = np.zeros((160, 200), np.uint8)
        ignore[max(0, y - 8) : y + 58, max(0, x - 8) : x + 68] = 255
        Image.fromarray(img).save(root / "images" / f"{i}.png")
        Image.fromarray(mask).save(root / "images" / f"{i}_mask.png")
        Image.fromarray(ignore).save(root / "images" / f"{i}_ignore.png")
        ids.append(f"{i}.png")
        labels.append(f"{i}.png,{i % 3}")
        loc.append(f"{i}.png,{i}_mask.png,{i}_ignore.png")
    (root / "meta" / "image_ids.txt").write_text("\n".join(ids) + "\n")
    (root / "meta" / "class_labels.txt").write_text("\n".join(labels) + "\n")
    (root / "meta" / "localization.txt").write_text("\n".join(loc) + "\n")
    return root


def test_pxap_on_a_mask_dataset_equals_an_independent_computation(tmp_path):
    root = _wsol_openimages(tmp_path)
    data = open_dataset(root / "meta", "wsol", images=root / "images")
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 5, stride=4),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    ).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(4, 3, 5, 5))
    cam, pre = camloc.CAM(model), camloc.Preprocess()
    result = evaluate(data, cam, pre, progress=False)
    assert result.summary["images"] == 6 and result.summary["max_box_acc"] is None

    scores, truth = [], []
    batch = camloc.load_batch([s.path for s in data.samples], camloc.Preprocess(mode="squash"))
    out = cam(batch.images, classes=[[s.label] for s in data.samples], upsample=False)
    for i, s in enumerate(data.samples):
        m = cv2.resize(out.raw[i, 0].double().numpy(), (224, 224), interpolation=cv2.INTER_CUBIC)
        m = (m - m.min()) / (m.max() - m.min())
        fg = cv2.resize(cv2.imread(str(s.mask_paths[0]), 0), (224, 224), interpolation=cv2.INTER_NEAREST) > 127
        ignore = (
            cv2.resize(cv2.imread(str(s.ignore_path), 0), (224, 224), interpolation=cv2.INTER_NEAREST) > 127
        ) & ~fg
        scores.append(m[~ignore])
        truth.append(fg[~ignore])
    scores, truth = np.concatenate(scores), np.concatenate(truth)
    ap, previous_recall = 0.0, 0.0
    for t in [2.0, 1.0, *np.arange(0, 1, 0.01)[::-1]]:
        kept = scores >= t
        recall = (kept & truth).sum() / truth.sum()
        if kept.any():
            ap += (kept & truth).sum() / kept.sum() * (recall - previous_recall)
        previous_recall = recall
    assert result.summary["pxap"] == pytest.approx(100 * ap, rel=1e-9)


MODELS = ROOT / "tests" / "helpers" / "models.py"
IDENTITY = ["--model", f"{MODELS}:identity_cam", "--size", "32", "--mean", "0,0,0", "--std", "1,1,1"]


def test_cli_out_is_the_runs_folder_and_the_0_2_flags_still_work(tmp_path, capsys):
    data = _objects(tmp_path / "d", n=7, size=(32, 32))
    out = tmp_path / "run"
    assert main(["evaluate", str(data), "--out", str(out), "--batch-size", "3", *IDENTITY]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "results.png", "rows.csv", "rows.csv.json"]
    assert main(["evaluate", str(data), "--out", str(out), *IDENTITY]) != 0
    assert f"camloc: error: {out / 'rows.csv'}: exists; pass --resume to continue that run" in capsys.readouterr().err
    rows = out / "rows.csv"
    whole = rows.read_bytes()
    rows.write_bytes(b"".join(whole.splitlines(keepends=True)[:4]))  # "killed" after 3 images
    assert main(["evaluate", str(data), "--out", str(out), "--resume", "--batch-size", "3", *IDENTITY]) == 0
    assert rows.read_bytes() == whole
    # camloc 0.2's flags: --json FILE and --per-image FILE, the same files
    old = tmp_path / "old"
    args = ["--json", str(old / "r.json"), "--per-image", str(old / "rows.csv"), "--batch-size", "3", *IDENTITY]
    assert main(["evaluate", str(data), *args]) == 0
    assert (old / "rows.csv").read_bytes() == whole
    new, was = (json.loads(p.read_text()) for p in (out / "results.json", old / "r.json"))
    assert {k: v for k, v in new.items() if k != "per_image"} == {k: v for k, v in was.items() if k != "per_image"}
    capsys.readouterr()


def test_evaluate_takes_a_bare_model_and_the_old_positional_preprocess(tmp_path):
    data = open_dataset(_objects(tmp_path / "d", n=5, size=(32, 32)))
    model = with_info(identity_cam(), ModelInfo("identity", ("object", "other"), PLAIN))
    new = evaluate(data, model, batch_size=2, progress=False)
    old = evaluate(data, camloc.CAM(model), PLAIN, batch_size=2, progress=False)
    assert new.to_json() == old.to_json() and new.summary["images"] == 5
    with pytest.raises(TypeError, match=r"evaluate\(\) got preprocess both by position and by name"):
        evaluate(data, model, PLAIN, preprocess=PLAIN)
    with pytest.raises(TypeError, match=r"evaluate\(\) takes source and method positionally; pass preprocess, ..."):
        evaluate(data, model, PLAIN, PLAIN)


def _rows(path):
    import csv

    with open(path, newline="") as f:
        return {row["image_id"]: row for row in csv.DictReader(f)}


def test_map_size_classifies_at_one_size_and_reads_the_maps_at_another(tmp_path, mobilenet, val):
    """Classification equals a run at --size, boxes a run at the map size; top-1 loc is the two combined."""
    part = _subset(val, 24, start=100)
    small = dataclasses.replace(camloc.model_info(mobilenet).preprocess, size=224, resize_size=256)
    large = dataclasses.replace(small, size=320, resize_size=366)
    cam = camloc.CAM(mobilenet)
    runs = {}
    for name, preprocess, map_size in (("both", small, 320), ("small", small, None), ("large", large, None)):
        rows = tmp_path / f"{name}.csv"
        result = evaluate(
            part, cam, preprocess=preprocess, map_size=map_size, per_image=rows, batch_size=10, progress=False
        )
        runs[name] = result.summary, _rows(rows)
    both, small_run, large_run = (runs[k][0] for k in ("both", "small", "large"))
    for key in ("cls_top1", "cls_top5"):
        assert both[key] == small_run[key]
    for key in ("max_box_acc", "max_box_acc_v2", "gt_known_loc", "best_threshold"):
        assert both[key] == large_run[key]
    assert small_run["cls_top1"] != large_run["cls_top1"] or small_run["max_box_acc"] != large_run["max_box_acc"]
    rows, small_rows, large_rows = runs["both"][1], runs["small"][1], runs["large"][1]
    for image_id, row in rows.items():
        assert row["top5"] == small_rows[image_id]["top5"] and row["box"] == large_rows[image_id]["box"]
        located = large_rows[image_id]["located"] == "1"
        assert row["top1_located"] == str(int(located and small_rows[image_id]["cls_top1"] == "1"))
    top1_loc = 100 * sum(r["top1_located"] == "1" for r in rows.values()) / len(rows)
    assert both["top1_loc"] == pytest.approx(top1_loc)
    with pytest.raises(camloc.InvalidArgument, match="map_size= must be at least 16 pixels, got 8"):
        evaluate(part, cam, preprocess=small, map_size=8, progress=False)


def test_cli_map_size_and_the_models_own(tmp_path, capsys):
    data = _objects(tmp_path / "d", n=5, size=(40, 40))
    dataset = open_dataset(data)
    at_48 = evaluate(dataset, with_info(identity_cam(), ModelInfo("identity", ("object", "other"), PLAIN)),
                     map_size=48, progress=False)  # fmt: skip
    own = evaluate(dataset, with_info(identity_cam(), ModelInfo("identity", ("object", "other"), PLAIN, 48)),
                   progress=False)  # fmt: skip
    assert own.to_json() == at_48.to_json()
    plain = evaluate(
        dataset, with_info(identity_cam(), ModelInfo("identity", ("object", "other"), PLAIN)), progress=False
    )
    assert plain.curves != at_48.curves
    out = tmp_path / "run"
    assert main(["evaluate", str(data), "--out", str(out), *IDENTITY, "--map-size", "48"]) == 0
    written = json.loads((out / "results.json").read_text())
    assert written["map_size"] == 48 and written["curves"] == at_48.curves
    assert written["max_box_acc_v2"] == at_48.summary["max_box_acc_v2"]
    capsys.readouterr()
