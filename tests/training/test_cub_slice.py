"""Real birds on a CUB-200-2011 slice: the recipe's train -> evaluate --calibrate -> finegrained --localizer."""

import json

import pytest

import camloc
from camloc.cli import main
from tests.conftest import require_shared
from tests.helpers.data import CUB_50, cub_slice

pytestmark = [pytest.mark.slow, pytest.mark.shared_data, pytest.mark.pretrained]


def test_recipe_on_a_cub_slice_trains_localizes_and_crops(tmp_path, capsys):
    require_shared(CUB_50 / "images.txt")
    data = cub_slice(tmp_path / "cub", classes=5, train=8, test=4)  # 40 train / 20 test images, chance 20 %
    model = tmp_path / "m.pt"
    # The recipe's defaults (freeze features.13, frozen output kept, crops of it, BGC's loss, maps
    # read at 10/7 of the input, 2 images a class held out), shrunk: 224 px, 3 epochs, batches of 10 -- where the fresh
    # classifier's 10x learning rate diverges (loss 2.1 -> 18.8), so it learns at 1x here.
    args = ["train", str(data), "--arch", "mobilenet_v2", "--pretrained", "--out", str(model), "--size", "224"]
    assert main([*args, "--epochs", "3", "--batch-size", "10", "--new-lr-scale", "1"]) == 0
    out = capsys.readouterr().out
    report = json.loads(model.with_suffix(".json").read_text())
    assert report["train_images"] == 40 and report["config"]["freeze"] == "features.13"
    assert (report["config"]["wsol_loss"], report["config"]["hide"], report["config"]["map_size"]) == ("bgc", 0.0, 320)
    info = camloc.model_info(camloc.load_model(str(model)))
    assert info.map_size == 320
    # the box threshold, chosen on the 30 training images (all of them: fewer than 400 have boxes)
    assert report["boxes"]["images"] == 30 and info.box_threshold == report["boxes"]["threshold"]
    assert f"camloc: box threshold {info.box_threshold:g} (paper rule" in out
    assert sum(h["images"] for h in report["history"]) == 3 * 30  # 2 of each class's 8 held out
    cam, center = report["cam"], report["center"]
    assert cam["images"] == center["images"] == 20
    assert cam["cls_top1"] >= 50.0  # chance: 20 %
    assert cam["calibrated"]["images"] == 10 and set(cam["calibrated"]["thresholds"]) == {
        "v1_50", "v2_30", "v2_50", "v2_70",
    }  # fmt: skip
    assert 0.0 <= cam["calibrated"]["box_acc"] <= cam["max_box_acc"]  # the test's own best threshold is an upper bound
    assert "thresholds chosen on 10 validation images" in out

    fg = tmp_path / "fg.json"
    assert main(["finegrained", str(data), "--localizer", str(model), "--json", str(fg), "--size", "128"]) == 0
    result = json.loads(fg.read_text())
    assert (result["train_images"], result["test_images"]) == (40, 20) and result["skipped"] == []
    assert len(result["test_boxes"]) == 20 and all(b is not None for b in result["test_boxes"].values())
    for key in ("full", "cam_crop", "full_and_cam_crop", "gt_crop", "full_and_gt_crop"):
        assert 20.0 < result[key] <= 100.0, key  # every probe beats chance
    assert "full image + CAM crop" in capsys.readouterr().out
