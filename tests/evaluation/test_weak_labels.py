"""Weak labels: boxes equal to explain's and evaluate's, calibration with a known answer, files that read back,
resume after a kill, unreadable files listed, and CorLoc = evaluate's GT-known on real images."""

import dataclasses
import filecmp
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import camloc
from camloc.cli import main
from camloc.datasets import Sample, open_dataset, write_csv_dataset
from camloc.datasets.labels import Detection, ImageBoxes
from camloc.datasets.registry import open_writers
from camloc.evaluation.evaluate import evaluate
from camloc.evaluation.explain import explain
from camloc.evaluation.weak_labels import (
    BoxSettings,
    box_input,
    boxes_for,
    calibrate_threshold,
    export_boxes,
    threshold_from,
)
from camloc.evaluation.weak_labels.boxing import ranked_boxes
from camloc.models.info import ModelInfo
from tests.helpers.data import ROOT, VAL_BOXES
from tests.helpers.models import identity_cam

PLAIN = camloc.Preprocess(size=32, resize_size=32, mode="squash", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
HALO = 77  # the halo's red value: 77 / 255 = 0.302 of the object's


def _objects(root: Path, n: int = 10, size=(40, 32)) -> Path:
    """Images whose red channel is the CAM of class 0: an object at 255 inside a halo at HALO; boxes of the objects."""
    rng = np.random.default_rng(5)
    (root / "images").mkdir(parents=True)
    samples = []
    for i in range(n):
        w, h = size
        a = np.zeros((h, w, 3), np.uint8)
        x0, y0 = int(rng.integers(2, w - 24)), int(rng.integers(2, h - 22))
        a[y0 : y0 + 20, x0 : x0 + 22, 0] = HALO
        a[y0 + 5 : y0 + 15, x0 + 6 : x0 + 16, 0] = 255
        Image.fromarray(a).save(root / "images" / f"{i:02d}.png")
        samples.append(
            Sample(f"{i:02d}.png", root / "images" / f"{i:02d}.png", 0, ((x0 + 6, y0 + 5, x0 + 15, y0 + 14),), size)
        )
    write_csv_dataset(samples, root, ["object", "other"])
    return root


def _written(out: Path) -> list:
    """The datasets an export wrote, as camloc reads them back: COCO, VOC, and YOLO's train and val splits as one."""
    yolo = [*open_dataset(out / "yolo", split="train").samples]
    val = yaml.safe_load((out / "yolo" / "data.yaml").read_text())["val"]
    if val != "images/train":
        yolo += open_dataset(out / "yolo").samples  # the test split: data.yaml's val
    coco, voc = open_dataset(out / "coco" / "annotations.json"), open_dataset(out / "voc", one_based=True)
    return [coco, voc, dataclasses.replace(coco, format="yolo", samples=yolo)]


@pytest.fixture
def identity():
    model = identity_cam()
    info = ModelInfo("identity", ("object", "other"), PLAIN)
    return camloc.CAM(model), info


def test_calibration_finds_the_threshold_above_the_halo(tmp_path, identity):
    method, info = identity
    data = open_dataset(_objects(tmp_path / "d", size=(32, 32)))
    taus = np.arange(0, 1, 0.01)
    first_above = float(taus[np.argmax(taus > HALO / 255)])  # 0.31: from here on the halo is dropped
    for rule in ("paper", "wsol", "all"):
        found = calibrate_threshold(data, method, info=info, settings=BoxSettings(rule=rule), workers=1)
        top = [t for t, c in zip(found.thresholds, found.curve, strict=True) if c == 100.0]
        assert top[0] == pytest.approx(first_above) and top == found.thresholds[len(found.thresholds) - len(top) :]
        # the flat top runs from 0.31 to the end: its middle is chosen, furthest from the halo
        assert found.threshold == top[len(top) // 2] and found.corloc == 100.0 and found.images == 10
        below = [c for t, c in zip(found.thresholds, found.curve, strict=True) if t < HALO / 255 - 1e-9]
        assert max(below) == 0.0  # the halo's box has IoU 100 / 440 with the object's
    with pytest.raises(ValueError, match="authors rule has fixed thresholds"):
        calibrate_threshold(data, method, info=info, settings=BoxSettings(rule="authors"))


def test_full_mode_boxes_are_explains_boxes(tmp_path, identity, mobilenet):
    """The same classes on the whole photo: the paper rule's boxes of explain, and its scores' classes."""
    method = camloc.CAM(mobilenet)
    info = camloc.model_info(mobilenet)
    photos = sorted((VAL_BOXES / "images").glob("*.JPEG"))[:6]
    got = boxes_for(
        photos, method, info=info, settings=BoxSettings(topk=3), preprocess=info.preprocess.with_mode("full")
    )
    ref = explain(photos, method, info=info, topk=3, preprocess=info.preprocess.with_mode("full"))
    for image, record in zip(got, ref.records, strict=True):
        assert (image.width, image.height) == (record["width"], record["height"])
        by_class = {d.label: d for d in image.detections}
        assert {p["index"]: tuple(p["box"]) for p in record["predictions"]} == {c: d.box for c, d in by_class.items()}
        probs = {p["index"]: p["score"] for p in record["predictions"]}
        assert all(0 < d.score <= probs[d.label] for d in image.detections)  # p(class) x a mean in (0, 1]
        assert [d.score for d in image.detections] == sorted((d.score for d in image.detections), reverse=True)


def test_export_writes_files_that_read_back(tmp_path, identity):
    method, info = identity
    data = open_dataset(_objects(tmp_path / "d"))
    settings = BoxSettings(threshold=0.5)
    full = PLAIN.with_mode("full")  # the images' own pixels (their shorter side is 32): boxes exact to the pixel
    result = export_boxes(
        data,
        method,
        info=info,
        out_dir=tmp_path / "out",
        settings=settings,
        formats=["coco", "voc", "yolo"],
        preprocess=full,
    )
    s = result.summary
    assert (s["images"], s["boxes"], s["corloc"]) == (10, 10, 100.0)
    assert s["ap50"] == pytest.approx(100.0) and s["ap"] == pytest.approx(100.0)  # the objects, to the pixel
    journal = [json.loads(line) for line in (tmp_path / "out" / "journal.jsonl").read_text().splitlines()[1:]]
    boxes = {Path(r["p"]).name: (r["d"][0][0], tuple(r["d"][0][1:5])) for r in journal}
    assert all(boxes[s.path.name] == (0, s.boxes[0]) for s in data.samples)
    expected = {Path(k).stem: (c, (b,)) for k, (c, b) in boxes.items()}
    for back in _written(tmp_path / "out"):  # VOC names its images <stem>.jpg
        assert {x.path.stem: (x.label, x.boxes) for x in back} == expected
    gt = json.loads((tmp_path / "out" / "coco" / "ground_truth.json").read_text())
    assert len(gt["annotations"]) == 10 and "info" in gt
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["settings"]["rule"] == "paper" and summary["settings"]["threshold"] == 0.5
    assert threshold_from(tmp_path / "out" / "summary.json") == (0.5, "paper")
    with pytest.raises(FileExistsError, match="journal.jsonl: exists; pass resume=True"):
        export_boxes(data, method, info=info, out_dir=tmp_path / "out", settings=settings, preprocess=full)
    with pytest.raises(TypeError, match="needs out_dir="):
        export_boxes(data, method, info=info)
    again = export_boxes(data, method, info, tmp_path / "again", settings, preprocess=full)  # camloc 0.2's order
    assert again.summary == s


def test_an_image_with_boxes_of_two_classes_is_one_image_of_the_run(tmp_path, identity):
    """A reader's samples of one file (one per class) give one set of files with both classes' boxes."""
    method, info = identity
    objects = open_dataset(_objects(tmp_path / "d", n=4))
    whole = (0, 0, 39, 31)
    for w in open_writers(["yolo"], tmp_path / "gt", ["object", "other"]):  # images 0 and 1: class 1 too
        with w:
            for i, sample in enumerate(objects.samples):
                more = [Detection(1, whole)] if i < 2 else []
                w.write(ImageBoxes(i, sample.path, 40, 32, [Detection(0, sample.boxes[0]), *more]))
    data = open_dataset(tmp_path / "gt" / "yolo")
    assert len(data.samples) == 6 and data.samples[0].image_id == "00.png#0"
    boxed = boxes_for(data, method, info=info, preprocess=PLAIN)
    assert [b.image_id for b in boxed] == ["00.png", "01.png", "02.png", "03.png"]
    assert [sorted(d.label for d in b.detections) for b in boxed] == [[0, 1], [0, 1], [0], [0]]
    assert [len(b.hits) for b in boxed] == [2, 2, 1, 1]  # one verdict per labelled class
    assert boxes_for(data, method.model, info=info, preprocess=PLAIN) == boxed  # a bare model: CAM of it
    assert boxes_for(data, method, info, preprocess=PLAIN) == boxed  # camloc 0.2's positional info
    with pytest.raises(TypeError, match="got info both by position and by name"):
        boxes_for(data, method, info, info=info)
    with pytest.raises(TypeError, match="boxes_for\\(\\) takes source and method positionally"):
        boxes_for(data, method, info, BoxSettings(), PLAIN)

    result = export_boxes(
        data, method, info=info, out_dir=tmp_path / "out", formats=["coco", "voc", "yolo"], preprocess=PLAIN
    )
    s = result.summary
    assert (s["images"], s["boxes"], s["gt_images"], s["corloc_verdicts"]) == (4, 6, 4, 6)
    # the verdicts are evaluate's, which judges each (image, class) sample
    reference = evaluate(data, method, PLAIN, protocol="paper", progress=False).summary
    assert reference["images"] == 6 and s["corloc"] == pytest.approx(reference["gt_known_loc"], abs=1e-9)
    hits = [h for b in boxed for h in b.hits]
    assert s["corloc"] == pytest.approx(100.0 * sum(hits) / 6)
    coco = json.loads((tmp_path / "out" / "coco" / "annotations.json").read_text())
    assert [im["file_name"] for im in coco["images"]] == ["00.png", "01.png", "02.png", "03.png"]
    expected = {b.image_id: sorted((d.label, d.box) for d in b.detections) for b in boxed}
    expected = {Path(k).stem: v for k, v in expected.items()}
    for written in _written(tmp_path / "out"):
        back: dict = {}
        for x in written:
            back.setdefault(x.path.stem, []).extend((x.label, b) for b in x.boxes)
        assert {k: sorted(v) for k, v in back.items()} == expected, written.format

    # --class-name: the same boxes, every one of the one class, in the files and in COCO AP's ground truth
    one = export_boxes(data, method, info=info, out_dir=tmp_path / "one", formats=["coco", "voc", "yolo"],
                       preprocess=PLAIN, class_name="thing")  # fmt: skip
    assert one.summary["corloc"] == s["corloc"] and one.summary["boxes"] == 6
    assert json.loads((tmp_path / "one" / "summary.json").read_text())["settings"]["class_name"] == "thing"
    as_one = {k: sorted((0, b) for _, b in v) for k, v in expected.items()}
    for written in _written(tmp_path / "one"):
        assert written.class_names == ["thing"], written.format
        back = {}
        for x in written:
            back.setdefault(x.path.stem, []).extend((x.label, b) for b in x.boxes)
        assert {k: sorted(v) for k, v in back.items()} == as_one, written.format
    assert yaml.safe_load((tmp_path / "one" / "yolo" / "data.yaml").read_text())["names"] == {0: "thing"}
    gt = json.loads((tmp_path / "one" / "coco" / "ground_truth.json").read_text())
    assert [(c["id"], c["name"]) for c in gt["categories"]] == [(1, "thing")]
    assert sorted(a["category_id"] for a in gt["annotations"]) == [1] * 6  # 4 objects + 2 whole images


def test_the_squash_frame_gives_the_same_boxes_from_maps_resized_as_on_a_gpu():
    """What a GPU resizes ahead (SquashFrame.gpu_resize) is placed as the raw map is: the boxes are equal."""
    from camloc.boxes.wsol import wsol_resized_batch
    from camloc.evaluation.weak_labels.boxing import PhotoFrame, SquashFrame, frame_for
    from camloc.images import Geometry

    assert isinstance(frame_for(PLAIN), SquashFrame) and isinstance(frame_for(PLAIN.with_mode("full")), PhotoFrame)
    rng = np.random.default_rng(2)
    raw = torch.from_numpy(rng.random((3, 2, 7, 7)).astype(np.float32))  # 3 images, 2 classes, 7 x 7
    raw[:, :, 2:5, 1:4] += 2.0
    frame = SquashFrame(224)
    assert frame.gpu_resize(raw) is raw and not frame.keeps_device  # on the CPU: no work ahead
    ahead = wsol_resized_batch(raw.flatten(0, 1), (224, 224)).view(3, 2, 224, 224)  # what the GPU branch does
    geo = Geometry(width=500, height=375, size=224, resized_width=224, resized_height=224, left=0, top=0)  # squashed
    settings = BoxSettings()
    for i in range(3):
        on_cpu, resized = frame.place(raw[i], geo), frame.place(ahead[i], geo)
        assert resized.size == on_cpu.size == (224, 224)
        boxes = [ranked_boxes(f, [0, 1], [0.6, 0.4], settings) for f in (on_cpu, resized)]
        assert [(c, b) for _, c, b in boxes[0]] == [(c, b) for _, c, b in boxes[1]] and len(boxes[0]) == 2
        assert [s for s, _, _ in boxes[1]] == pytest.approx([s for s, _, _ in boxes[0]], abs=1e-9)


def test_threshold_from_an_evaluate_results_file(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"protocol": "wsol", "best_threshold": 0.37}))
    assert threshold_from(path) == (0.37, "wsol")
    path.write_text(json.dumps({"protocol": "paper", "best_threshold": None}))
    with pytest.raises(ValueError, match="r.json: holds no threshold"):
        threshold_from(path)
    with pytest.raises(ValueError, match="nothing.json: no such file"):
        threshold_from(tmp_path / "nothing.json")


def _cli(out: Path, data: Path, *extra: str) -> list[str]:
    model = f"{ROOT / 'tests' / 'helpers' / 'models.py'}:slow_identity_cam"
    return [sys.executable, "-m", "camloc", "boxes", str(data), "--out", str(out), "--format", "coco,voc,yolo",
            "--model", model, "--size", "32", "--mean", "0,0,0", "--std", "1,1,1", "--resize", "squash",
            "--batch-size", "2", "--workers", "1", *extra]  # fmt: skip


def _files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file() or p.is_symlink()}


@pytest.mark.slow
def test_resume_after_a_kill_writes_the_same_files(tmp_path):
    data = _objects(tmp_path / "d", n=24)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT)}
    subprocess.run(_cli(out, data), check=True, capture_output=True, env=env, timeout=300)
    reference = tmp_path / "reference"
    out.rename(reference)
    run = subprocess.Popen(_cli(out, data), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    journal = out / "journal.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (not journal.exists() or journal.read_text().count("\n") < 7):
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)  # half-way: no chance to clean up
    run.wait()
    lines = journal.read_text().count("\n") - 1
    assert 6 <= lines < 24, lines
    assert not (out / "coco" / "annotations.json").exists()
    done = subprocess.run(_cli(out, data, "--resume"), capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    ours, theirs = _files(out), _files(reference)
    assert sorted(ours) == sorted(theirs)
    for name, path in ours.items():
        if path.is_symlink():
            assert os.readlink(path) == os.readlink(theirs[name])
        else:
            assert filecmp.cmp(path, theirs[name], shallow=False), name


def test_unreadable_files_are_listed_and_skipped(tmp_path, capsys):
    data = _objects(tmp_path / "d", n=4)
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in (data / "images").iterdir():
        (folder / p.name).symlink_to(p)
    (folder / "notes.jpg").write_text("not an image")
    (folder / "cut.png").write_bytes((data / "images" / "00.png").read_bytes()[:60])
    model = f"{ROOT / 'tests' / 'helpers' / 'models.py'}:identity_cam"
    args = ["boxes", str(folder), "--out", str(tmp_path / "out"), "--model", model, "--size", "32",
            "--format", "yolo", "--topk", "2"]  # fmt: skip
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "2 image(s) could not be read" in err and "notes.jpg" in err and "cut.png" in err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["images"] == 4 and sorted(Path(s["path"]).name for s in summary["skipped"]) == [
        "cut.png",
        "notes.jpg",
    ]
    labels = list((tmp_path / "out" / "yolo" / "labels").glob("*/*.txt"))  # train/ and val/
    assert len(labels) == 4 and all(len(f.read_text().splitlines()) == 2 for f in labels)


def test_cli_errors_are_one_line(tmp_path, capsys):
    data = _objects(tmp_path / "d", n=2)
    model = f"{ROOT / 'tests' / 'helpers' / 'models.py'}:identity_cam"
    base = ["boxes", str(data), "--out", str(tmp_path / "out"), "--model", model, "--size", "32"]
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"protocol": "wsol", "best_threshold": 0.4}))
    assert main([*base, "--threshold-from", str(results), "--rule", "paper"]) == 2
    assert "holds a threshold of the wsol rule, not of paper; drop --rule or use --rule wsol" in capsys.readouterr().err
    assert main([*base, "--threshold-from", str(tmp_path / "none.json")]) == 2
    assert "--threshold-from " in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--format", "kitti"])
    assert "expected formats among coco, voc, yolo" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--format", "coco,Yolo5"])
    assert "got 'coco,Yolo5' (did you mean 'yolo'?)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--threshold", "0.3", "--calibrate", str(data)])
    assert "not allowed with argument" in capsys.readouterr().err
    assert main([*base, "--threshold-from", str(results)]) == 0  # the wsol rule at 0.4
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["settings"]["rule"] == "wsol"
    assert main(base) == 2
    assert "journal.jsonl: exists; pass --resume to continue that run" in capsys.readouterr().err


@pytest.mark.slow
def test_corloc_equals_evaluates_gt_known_on_real_images(tmp_path, mobilenet, val_boxes):
    """The paper rule at 0.2 on squashed images: the same boxes as evaluate --protocol paper, judged alike."""
    data = open_dataset(VAL_BOXES)
    method, info = camloc.CAM(mobilenet), camloc.model_info(mobilenet)
    reference = evaluate(data, method, info.preprocess, protocol="paper", progress=False).summary
    squash = info.preprocess.with_mode("squash")
    result = export_boxes(data, method, info=info, out_dir=tmp_path / "out", preprocess=squash, formats=["coco"])
    assert result.summary["images"] == reference["images"] == 725
    assert result.summary["corloc"] == pytest.approx(reference["gt_known_loc"], abs=1e-9)
    # COCO AP50 counts every ground-truth box (1,118 on 725 images) with one box an image: below CorLoc
    assert 0 < result.summary["ap"] < result.summary["ap50"] < result.summary["corloc"]
    # an independent count of CorLoc from the exported files: each image's box vs its ground truth,
    # both in the 224 x 224 frame evaluate judges in (re-run on a slice: the boxes are mapped back exactly)
    part = dataclasses.replace(data, samples=data.samples[:40])
    boxed = boxes_for(part, method, info=info, preprocess=squash)
    from camloc.boxes.box import scale_box
    from camloc.boxes.paper import paper_box
    from camloc.boxes.wsol import wsol_resized
    from camloc.metrics.iou import best_iou

    batch = camloc.load_batch([s.path for s in part.samples], squash)
    out = method(batch.images, classes=[[s.label] for s in part.samples], upsample=False)
    for i, (sample, image) in enumerate(zip(part.samples, boxed, strict=True)):
        box = paper_box(wsol_resized(out.raw[i, 0].double().numpy(), (224, 224)), 0.2)
        assert image.detections[0].box == batch.geometries[i].box_to_original(box)
        truths = [scale_box(b, sample.size, (224, 224)) for b in sample.boxes]
        assert image.hits == [best_iou(box, truths) >= 0.5]


def test_cli_calibrates_then_its_output_is_a_dataset_evaluate_reads(tmp_path, capsys):
    data = _objects(tmp_path / "d", n=6, size=(32, 32))
    model = f"{ROOT / 'tests' / 'helpers' / 'models.py'}:identity_cam"
    plain = ["--model", model, "--size", "32", "--mean", "0,0,0", "--std", "1,1,1"]
    out = tmp_path / "out"
    assert main(["boxes", str(data), "--out", str(out), "--calibrate", str(data), "--format", "coco,yolo", *plain]) == 0
    printed = capsys.readouterr()
    # CorLoc 100 from 0.31 (the halo dropped) to 0.99: the middle of that flat top, 0.65
    assert "calibrated the paper rule on 6 images: threshold 0.65" in printed.err
    assert "CorLoc (top box, IoU 0.5)     100.00" in printed.out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["threshold"] == pytest.approx(0.65)
    assert summary["settings"]["threshold_source"].startswith(f"calibrated on {data}: CorLoc 100.00 over 6 images")
    for written in (out / "coco" / "annotations.json", out / "yolo"):
        results = tmp_path / f"{written.name}.json"
        args = ["evaluate", str(written), *plain, "--protocol", "paper", "--threshold", "0.5", "--json", str(results)]
        assert main(args) == 0
        assert json.loads(results.read_text())["gt_known_loc"] == 100.0  # the boxes are the objects


def test_cli_class_name_writes_one_class(tmp_path):
    data = _objects(tmp_path / "d", n=4, size=(32, 32))
    model = f"{ROOT / 'tests' / 'helpers' / 'models.py'}:identity_cam"
    out = tmp_path / "out"
    args = ["boxes", str(data), "--out", str(out), "--format", "yolo", "--class-name", "bird", "--model", model,
            "--size", "32", "--mean", "0,0,0", "--std", "1,1,1", "--threshold", "0.5"]  # fmt: skip
    assert main(args) == 0
    assert yaml.safe_load((out / "yolo" / "data.yaml").read_text())["names"] == {0: "bird"}
    back = open_dataset(out / "yolo", split="train").samples + open_dataset(out / "yolo").samples
    truth = {s.path.stem: s.boxes for s in open_dataset(data).samples}
    assert {s.path.stem: (s.label, s.boxes) for s in back} == {k: (0, b) for k, b in truth.items()}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["class_name"] == "bird" and summary["corloc"] == 100.0


def test_cli_default_input_is_the_measured_shorter_side(tmp_path):
    """No --size: the whole photo at shorter side 448 for a 224-pixel model (own 256), as --size 392 gives it."""
    data = _objects(tmp_path / "d", n=2, size=(32, 32))
    model = ["--model", f"{ROOT / 'tests' / 'helpers' / 'models.py'}:identity_cam", "--mean", "0,0,0", "--std", "1,1,1"]

    def settings(out: str, *extra: str) -> dict:
        assert main(["boxes", str(data), "--out", str(tmp_path / out), "--format", "yolo", *model, *extra]) == 0
        return json.loads((tmp_path / out / "summary.json").read_text())["settings"]

    assert (settings("default")["size"], settings("default2", "--resize", "full")["resize_size"]) == (392, 448)
    assert settings("given", "--size", "392")["resize_size"] == 448
    assert _files(tmp_path / "default" / "yolo").keys() == _files(tmp_path / "given" / "yolo").keys()
    for name in ("labels/train", "labels/val"):
        for f in (tmp_path / "default" / "yolo" / name).iterdir():
            assert f.read_bytes() == (tmp_path / "given" / "yolo" / name / f.name).read_bytes()
    squash = settings("squash", "--resize", "squash")  # the other frames keep the model's own input
    assert (squash["size"], squash["resize_size"]) == (224, 256)
    own = camloc.Preprocess(size=448, resize_size=448)  # a model trained at 448 keeps its own
    assert box_input(own) == dataclasses.replace(own, mode="full")
