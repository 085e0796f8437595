"""``--model hf:PATH`` through explain, evaluate and faithfulness; the runners take a transformers model as it comes."""

import json

import pytest
import torch
from skimage import data

import camloc
from camloc.cli import main
from camloc.datasets import open_dataset
from camloc.evaluation.explain import explain
from camloc.evaluation.faithfulness import evaluate_faithfulness
from camloc.metrics.faithfulness import faithfulness_scores
from camloc.reports.figures import save_image
from tests.evaluation.test_weak_labels import _objects
from tests.models.test_hf import LABELS, save_model

T = pytest.importorskip("transformers")


@pytest.fixture
def saved(tmp_path):
    """A tiny Swin saved with save_pretrained and a processor (64 x 64, mean 0.5, std 0.25), and the model loaded."""
    folder = tmp_path / "swin"
    save_model(folder, "swin")
    return folder, T.AutoModelForImageClassification.from_pretrained(folder, local_files_only=True).eval()


def test_explain_names_classes_from_id2label_and_matches_the_model_given_as_it_comes(tmp_path, saved, capsys):
    folder, model = saved
    photos = [
        save_image(data.chelsea(), tmp_path / "in" / "chelsea.png"),
        save_image(data.coffee(), tmp_path / "in" / "c.jpg"),
    ]
    out = tmp_path / "out"
    assert main(["explain", *map(str, photos), "--model", f"hf:{folder}", "--topk", "3", "--out", str(out)]) == 0
    result = json.loads((out / "results.json").read_text())
    assert result["model"] == f"hf:{folder}"
    pre = camloc.model_info(model).preprocess.with_mode("full")  # found beside the model; explain's default mode
    same = explain(photos, model, preprocess=pre, topk=3, progress=False)  # the transformers model as it comes
    assert len(result["images"]) == 2
    for record, twin in zip(result["images"], same.records, strict=True):
        predictions = record["predictions"]
        assert [p["name"] for p in predictions] == [LABELS[p["index"]] for p in predictions]
        scores = [p["score"] for p in predictions]
        assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1
        assert [p["index"] for p in predictions] == [p["index"] for p in twin["predictions"]]
        assert scores == pytest.approx([p["score"] for p in twin["predictions"]], abs=1e-6)
        for p in predictions:
            x0, y0, x1, y1 = p["box"]
            assert 0 <= x0 <= x1 < record["width"] and 0 <= y0 <= y1 < record["height"]
    capsys.readouterr()


def test_evaluate_and_faithfulness_run_the_folder_and_the_model_alike(tmp_path, saved, capsys):
    folder, model = saved
    dataset_dir = _objects(tmp_path / "d", n=4, size=(48, 40))
    out = tmp_path / "eval"
    assert main(["evaluate", str(dataset_dir), "--model", f"hf:{folder}", "--out", str(out), "--batch-size", "3"]) == 0
    written = json.loads((out / "results.json").read_text())
    same = camloc.evaluate(open_dataset(dataset_dir), model, batch_size=3, progress=False).summary
    assert written["model"] == f"hf:{folder}" and written["images"] == same["images"] == 4
    for key, value in same.items():
        if isinstance(value, float):
            assert written[key] == pytest.approx(value, abs=1e-6), key
    assert 0 <= written["max_box_acc"] <= 100

    dataset = open_dataset(dataset_dir)
    pre = camloc.model_info(model).preprocess
    scores = evaluate_faithfulness(dataset.samples, model, {"cam": camloc.CAM(model)}, pre, steps=4, progress=False)
    cam = scores.summary["cam"]
    assert cam["images"] == 4 and all(0 <= cam[k] <= 1 for k in ("deletion_auc", "insertion_auc"))
    out = tmp_path / "faith"
    assert (
        main(
            ["faithfulness", str(dataset_dir), "--model", f"hf:{folder}", "--methods", "cam", "--steps", "4"]
            + ["--out", str(out)]
        )
        == 0
    )
    written = json.loads((out / "results.json").read_text())
    assert written["methods"]["cam"]["deletion_auc"] == pytest.approx(cam["deletion_auc"], abs=1e-6)
    capsys.readouterr()


def test_a_missing_folder_is_one_line_naming_it(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    save_image(data.coffee(), tmp_path / "c.png")
    assert main(["explain", str(tmp_path / "c.png"), "--model", f"hf:{missing}", "--out", str(tmp_path / "o")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"hf:{missing}: no such folder" in err[0]


def test_the_runners_read_logits_of_a_model_given_as_it_comes(saved):
    _, model = saved
    x = torch.randn(3, 3, 64, 64)
    maps = torch.rand(3, 64, 64)
    scores = faithfulness_scores(model, x, maps, [0, 1, 2], steps=4)
    with torch.no_grad():
        logits = model(x).logits
    assert all(s.shape == (3,) for s in scores.values())
    probs = logits.softmax(1)[torch.arange(3), torch.tensor([0, 1, 2])]  # nothing masked: the model's own probability
    assert (scores["average_drop"] >= 0).all() and probs.min() > 0


def test_boxes_names_its_categories_from_id2label(tmp_path, saved, capsys):
    folder, _ = saved
    photo = save_image(data.chelsea(), tmp_path / "chelsea.png")
    out = tmp_path / "boxes"
    assert main(["boxes", str(photo), "--model", f"hf:{folder}", "--out", str(out), "--topk", "2"]) == 0
    coco = json.loads((out / "coco" / "annotations.json").read_text())
    assert [c["name"] for c in coco["categories"]] == list(LABELS.values())
    assert len(coco["annotations"]) == 2
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 451 and y + h <= 300 and 0 < a["score"] < 1
    capsys.readouterr()
