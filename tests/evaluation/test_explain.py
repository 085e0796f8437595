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
    again = ["explain", str(photos[0]), "--out", str(tmp_path / "m"), "--resize", "squash", "--map-size", "320"]
    assert main(again + ["--method", "pc1", "--topk", "2"]) == 0
    settings = json.loads((tmp_path / "m" / "results.json").read_text())["settings"]
    assert (settings["size"], settings["map_size"], settings["method"]) == (224, 320, "pc1")
    capsys.readouterr()


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


@pytest.mark.parametrize("mode", ["squash", "crop"])
def test_map_size_takes_classes_from_one_size_and_maps_from_another(tmp_path, mobilenet, photos, mode):
    """Classes and scores equal a run at the model's size; maps and boxes equal a run at the map size."""
    info = camloc.model_info(mobilenet)
    small = info.preprocess.with_mode(mode)
    large = camloc.Preprocess(**{**small.to_dict(), "size": 320, "resize_size": 366})
    cam = camloc.CAM(mobilenet)
    both = explain(photos, cam, info=info, preprocess=small, topk=3, map_size=320, maps_dir=tmp_path / "both")
    alone = explain(photos, cam, info=info, preprocess=small, topk=3, maps_dir=tmp_path / "alone")
    assert both.settings["map_size"] == 320 and "map_size" not in alone.settings
    for k, (record, reference) in enumerate(zip(both.records, alone.records, strict=True)):
        ranked = [(p["index"], p["score"]) for p in record["predictions"]]
        assert ranked == [(p["index"], p["score"]) for p in reference["predictions"]]
        at_320 = explain([photos[k]], cam, info=info, preprocess=large, classes=[i for i, _ in ranked],
                         maps_dir=tmp_path / f"large{k}")  # fmt: skip
        assert [p["box"] for p in record["predictions"]] == [p["box"] for p in at_320.records[0]["predictions"]]
        assert record.get("window") == at_320.records[0].get("window")
        assert np.array_equal(np.load(record["maps"]), np.load(at_320.records[0]["maps"]), equal_nan=True)
    finer, coarser = (np.load(r.records[0]["maps"]) for r in (both, alone))
    assert finer.shape == coarser.shape and not np.allclose(finer, coarser, equal_nan=True)
