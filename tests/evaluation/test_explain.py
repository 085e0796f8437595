"""explain on the sample photos: paper-rule boxes on the whole photo, settings on record, chosen classes, raw maps."""

import json

import numpy as np
import pytest
from PIL import Image
from skimage import data

import camloc
from camloc.cli import main
from camloc.evaluation.explain import explain
from camloc.reports.figures import save_image

pytestmark = pytest.mark.pretrained


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    return [save_image(data.chelsea(), folder / "chelsea.png"), save_image(data.coffee(), folder / "coffee.png")]


def test_boxes_follow_the_object_not_the_crop_and_differ_between_classes(mobilenet, photos):
    info = camloc.model_info(mobilenet)
    result = explain(photos, camloc.CAM(mobilenet), info, topk=5, preprocess=info.preprocess.with_mode("full"))
    for record in result.records:
        crop = info.preprocess.geometry(record["width"], record["height"])
        crop_rect = list(crop.box_to_original((0, 0, 223, 223)))  # chelsea: [94, 19, 356, 280]
        boxes = [p["box"] for p in record["predictions"]]
        assert crop_rect not in boxes
        assert len({tuple(b) for b in boxes}) == 5  # one box per class, no two alike
        assert "window" not in record  # the whole photo was seen
    espresso = result.records[1]["predictions"][0]
    assert espresso["name"] == "espresso"
    x0, _, x1, _ = espresso["box"]
    assert 0 < x0 and x1 < 599 and (x1 - x0) < 0.8 * 600  # around the cup and saucer, not the table


@pytest.mark.slow
def test_cli_records_its_settings_and_explains_chosen_classes(tmp_path, photos, capsys):
    out = tmp_path / "o"
    args = ["explain", str(photos[0]), "--out", str(out), "--class", "tabby", "--class", "285", "--save-maps"]
    assert main(args + ["--method", "gradcam", "--target-layer", "features.17"]) == 0
    result = json.loads((out / "results.json").read_text())
    settings = result["settings"]
    assert settings["method"] == "gradcam" and settings["target_layer"] == "features.17"
    assert (settings["threshold"], settings["resize"], settings["resize_size"]) == (0.2, "full", 256)
    assert settings["classes"] == [281, 285] and settings["versions"]["camloc"] == camloc.__version__
    record = result["images"][0]
    assert [p["index"] for p in record["predictions"]] == [281, 285]
    assert [p["name"] for p in record["predictions"]] == ["tabby", "Egyptian cat"]
    maps = np.load(record["maps"])
    assert maps.shape == (2, 300, 451) and maps.dtype == np.float32
    for m, p in zip(maps, record["predictions"], strict=True):
        assert list(camloc.paper_box(m, 0.2)) == p["box"]  # the JSON's box is the paper rule on the saved map
    with Image.open(record["grid"]) as grid:
        assert grid.format == "PNG"
    assert "gradcam" in capsys.readouterr().out


@pytest.mark.slow
def test_low_scores_are_kept_in_full_and_info_prints_short(tmp_path, photos, mobilenet):
    assert main(["explain", str(photos[1]), "--out", str(tmp_path / "o"), "--topk", "20", "--resize", "squash"]) == 0
    scores = [p["score"] for p in json.loads((tmp_path / "o" / "results.json").read_text())["images"][0]["predictions"]]
    assert 0 < min(scores) < 1e-3  # a low probability is kept, not rounded to 0
    batch = camloc.load_batch([photos[1]], camloc.model_info(mobilenet).preprocess.with_mode("squash"))
    assert scores == camloc.CAM(mobilenet)(batch.images, topk=20).scores[0].tolist()
    text = repr(camloc.model_info(mobilenet))
    assert "1000 classes" in text and "tench" not in text and len(text) < 300


@pytest.mark.parametrize(
    "args, message",
    [
        (["/no/such/folder"], "camloc: error: no such file or folder: /no/such/folder\n"),
        (["{empty}"], "camloc: error: no image files found in {empty}\n"),
        (["{photo}", "--class", "unicorn"], "camloc: error: --class 'unicorn' is not a class name of this model\n"),
        (["{photo}", "--class", "1000"], "camloc: error: --class 1000: index outside 0..999\n"),
    ],
)
def test_input_errors_are_one_line_with_exit_status_2(tmp_path, photos, capsys, args, message):
    (tmp_path / "empty").mkdir()
    fill = {"empty": str(tmp_path / "empty"), "photo": str(photos[0])}
    argv = ["explain", *(a.format(**fill) for a in args), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert capsys.readouterr().err == message.format(**fill)
