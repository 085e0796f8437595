"""`camloc train` chooses the paper box rule's threshold on training images' boxes and records it in the
model file; `camloc boxes`, `camloc explain` and the viewer use it when given none."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from starlette.testclient import TestClient

import camloc
from camloc.cli import main
from camloc.datasets.synthetic import generate
from camloc.errors import ModelFileError
from camloc.evaluation.weak_labels import BoxSettings, box_input, boxes_for
from camloc.models.files import read_model_file, write_model_file
from camloc.training.train import TrainConfig, choose_box_threshold, train
from camloc.viewer import Explainer, create_app
from tests.evaluation.test_weak_labels import HALO, _objects
from tests.helpers.models import identity_cam

THRESHOLDS = np.arange(0, 1, 0.01)


def _config(**kw):
    return TrainConfig(**{"epochs": 2, "batch_size": 8, "size": 32, "seed": 11, "box_images": 10, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("box-threshold")
    train_set, _ = generate(root / "data", "shapes", train=24, test=8, seed=3)
    result = train(_config(), train_set, root / "m.pt", progress=False)
    return root, train_set, result


def _drawn(train_set, config):
    """The documented draw: ``box_images`` of the training images with boxes, by ``seed``, in image id order."""
    boxed = sorted((s for s in train_set.samples if s.boxes), key=lambda s: s.image_id)
    picked = np.random.default_rng(config.seed).choice(len(boxed), config.box_images, replace=False)
    return dataclasses.replace(train_set, samples=[boxed[i] for i in sorted(picked)])


def test_the_recorded_threshold_is_the_best_of_camloc_boxes_on_the_drawn_images(trained):
    root, train_set, result = trained
    record = result.boxes
    assert record["rule"] == "paper" and record["images"] == 10 and record["input"] == "whole photo, shorter side 64"
    # camloc boxes' own pipeline on the same images, from the model file, at every threshold
    model = camloc.load_model(str(root / "m.pt"))
    pre = box_input(camloc.model_info(model).preprocess)
    assert pre.resize_size == 64  # a 32-pixel model's whole photo, doubled
    images = _drawn(train_set, _config())
    curve = []
    for tau in THRESHOLDS:
        boxed = boxes_for(images, model, preprocess=pre, settings=BoxSettings(threshold=float(tau)))
        hits = [h for b in boxed for h in b.hits]
        assert len(hits) == 10
        curve.append(100.0 * sum(hits) / len(hits))
    best = max(curve)
    assert record["corloc"] == pytest.approx(best)
    assert curve[round(record["threshold"] * 100)] == pytest.approx(best)
    top = [t for t, c in zip(THRESHOLDS, curve, strict=True) if c == best]
    assert top[0] - 1e-9 <= record["threshold"] <= top[-1] + 1e-9
    # the model file holds it, and the JSON-free path gives the same record
    assert camloc.model_info(model).box_threshold == record["threshold"]
    assert read_model_file(root / "m.pt")["train"]["boxes"] == record
    assert choose_box_threshold(result.model, train_set, _config(), progress=False) == record


def test_the_threshold_of_a_map_built_by_hand(tmp_path):
    # The map is each image's red channel: 255 on the object (its box), HALO around it. The paper rule
    # boxes the halo (IoU 100 / 440 with the object's box: a miss) below HALO / 255 of the max, the
    # object from there to 0.99: CorLoc 0 then 100, and the middle of the top is chosen.
    data = camloc.open_dataset(_objects(tmp_path / "d", n=12))
    config = TrainConfig(size=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), box_images=8, seed=2)
    record = choose_box_threshold(identity_cam(), data, config, progress=False)
    assert (record["images"], record["corloc"]) == (8, 100.0)
    low = HALO / 255  # 0.302; the rule keeps pixels >= tau x max
    assert record["threshold"] == pytest.approx((low + 0.99) / 2, abs=0.015)
    nothing = dataclasses.replace(data, samples=[dataclasses.replace(s, boxes=()) for s in data.samples])
    assert choose_box_threshold(identity_cam(), nothing, config) is None  # no box: nothing to choose on


def test_no_box_images_no_threshold_and_resume_records_the_same(trained, tmp_path):
    _, train_set, result = trained
    plain = train(_config(box_images=0), train_set, tmp_path / "plain.pt", progress=False)
    info = camloc.model_info(camloc.load_model(str(tmp_path / "plain.pt")))
    assert plain.boxes is None and (info.box_threshold, info.paper_threshold) == (None, 0.2)
    # stopped after the first epoch: no threshold yet; resumed (box_images may change: it changes no weight)
    cut = train(_config(box_images=0), train_set, tmp_path / "cut.pt", progress=False, stop_after=1)
    assert cut.boxes is None
    resumed = train(_config(), train_set, tmp_path / "cut.pt", progress=False, resume=True)
    assert resumed.boxes == result.boxes
    assert all(torch.equal(v, result.model.state_dict()[k]) for k, v in resumed.model.state_dict().items())


def test_a_damaged_box_threshold_is_refused(trained, tmp_path):
    root, _, _ = trained
    record = read_model_file(root / "m.pt")
    for bad in (1.5, "0.3", -0.1):
        payload = {k: v for k, v in record.items() if k not in ("camloc", "version", "kind", "written_by")}
        write_model_file(tmp_path / "bad.pt", "network", {**payload, "box_threshold": bad})
        with pytest.raises(ModelFileError, match=r"bad\.pt: damaged camloc model file \(box_threshold"):
            camloc.load_model(str(tmp_path / "bad.pt"))


def test_boxes_explain_and_the_viewer_use_the_models_threshold(trained, tmp_path, capsys):
    root, train_set, result = trained
    tau, model = result.boxes["threshold"], str(root / "m.pt")
    data = str(root / "data" / "train")

    def boxes(name, *more):
        out = tmp_path / name
        main(["boxes", data, "--model", model, "--out", str(out), "--no-links", "--no-ap", *more])
        return json.loads((out / "summary.json").read_text())["settings"]

    own = boxes("own")
    assert (own["threshold"], own["threshold_source"], own["rule"]) == (tau, "the model's", "paper")
    # a run resumes with the same tau given by hand: where a setting came from is not a setting
    assert main(["boxes", data, "--model", model, "--out", str(tmp_path / "own"), "--no-links", "--no-ap",
                 "--threshold", str(tau), "--resume"]) == 0  # fmt: skip
    assert json.loads((tmp_path / "own" / "summary.json").read_text())["settings"]["threshold"] == tau
    given = boxes("given", "--threshold", "0.5")
    assert (given["threshold"], given["threshold_source"]) == (0.5, "given")
    other = boxes("wsol", "--rule", "wsol")  # the model's threshold is the paper rule's only
    assert (other["threshold"], other["threshold_source"]) == (0.2, "default")

    image = sorted((root / "data" / "train" / "images").glob("*.png"))[0]
    assert main(["explain", str(image), "--model", model, "--out", str(tmp_path / "explain"), "--topk", "1"]) == 0
    explained = json.loads((tmp_path / "explain" / "results.json").read_text())
    assert explained["settings"]["threshold"] == tau
    capsys.readouterr()

    loaded = camloc.load_model(model)
    explainer = Explainer(loaded, camloc.model_info(loaded))
    try:
        client = TestClient(create_app(explainer))
        assert client.get("/api/info").json()["threshold"] == tau
        answer = client.post("/api/explain", files={"image": ("a.png", image.read_bytes())}, data={"topk": "1"}).json()
        assert answer["settings"]["threshold"] == tau
        assert answer["predictions"][0]["box"] == explained["images"][0]["predictions"][0]["box"]
    finally:
        explainer.close()
