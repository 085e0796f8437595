"""Honest thresholds: CAM thresholds chosen on validation images, test accuracy read at them.

The maps are constructed: a model whose CAM is the image's red channel, on images that hold a
bright square (the ground-truth box) inside a dimmer halo. Below the halo's grey level a box takes
the halo (IoU 0.33 with the square), above it the square alone, so the thresholds that localize,
and hence the calibrated threshold, are known by hand.
"""

import json

import numpy as np
import pytest
from PIL import Image

import camloc
from camloc.cli import main
from camloc.datasets import Sample, open_dataset, write_csv_dataset
from camloc.evaluation.evaluate import calibrate, evaluate
from camloc.metrics.localization import calibrated_accuracy, calibrated_threshold

SQUARE = (16, 16, 47, 47)  # the ground truth; the halo spans (4, 4, 59, 59): IoU 32² / 56² = 0.33


# A GAP classifier (one class) whose CAM is the red channel of its input, as a model file for --model.
RED_CHANNEL_NET = """
import torch
from torch import nn


def build():
    conv, fc = nn.Conv2d(3, 1, 1), nn.Linear(1, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
        conv.bias.zero_()
        fc.weight.fill_(1.0)
        fc.bias.zero_()
    return nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc)
"""


@pytest.fixture
def red_net(tmp_path):
    factory = tmp_path / "red_net.py"
    factory.write_text(RED_CHANNEL_NET)
    return f"{factory}:build"


def halo_images(root, halos):
    """One 64² image per halo grey level: black, the halo square at that level, the GT square at 255."""
    (root / "images").mkdir(parents=True)
    samples = []
    for i, level in enumerate(halos):
        a = np.zeros((64, 64, 3), np.uint8)
        a[4:60, 4:60, 0] = level
        a[16:48, 16:48, 0] = 255
        Image.fromarray(a).save(root / "images" / f"{i}.png")
        samples.append(Sample(f"{i}.png", None, 0, (SQUARE,), (64, 64)))
    write_csv_dataset(samples, root, ["thing"])
    return open_dataset(root)


def test_threshold_is_the_middle_of_the_best_range():
    t = np.arange(0, 1, 0.1)
    assert calibrated_threshold([0, 0, 5, 9, 9, 9, 9, 1, 0, 0], t) == pytest.approx(0.5)  # 0.3..0.6: the upper middle
    assert calibrated_threshold([7, 0, 0, 0, 0, 0, 0, 0, 0, 0], t) == 0.0
    val = {"v1_50": [0, 100, 0], "v2_30": [100, 100, 100], "v2_50": [0, 100, 0], "v2_70": [0, 0, 100]}
    test = {"v1_50": [10, 20, 30], "v2_30": [40, 50, 60], "v2_50": [70, 80, 90], "v2_70": [11, 12, 13]}
    out = calibrated_accuracy(val, test, [0.0, 0.4, 0.8])
    assert out["thresholds"] == {"v1_50": 0.4, "v2_30": 0.4, "v2_50": 0.4, "v2_70": 0.8}
    assert out["box_acc"] == 20 and out["box_acc_v2_per_iou"] == {"30": 50, "50": 80, "70": 13}
    assert out["box_acc_v2"] == pytest.approx((50 + 80 + 13) / 3)


def test_constructed_maps_give_the_hand_computed_threshold_and_accuracies(tmp_path, red_net):
    # Grey 128 is kept below tau = 0.51 (int(tau * 255) < 128), grey 220 below tau = 0.87.
    val = halo_images(tmp_path / "val", [128, 128, 128])
    test = halo_images(tmp_path / "test", [128, 220])
    cam, pre = camloc.CAM(camloc.load_model(red_net)), camloc.Preprocess(size=64)
    on_val = evaluate(val, cam, pre, progress=False)
    on_test = evaluate(test, cam, pre, progress=False)
    assert on_test.summary["max_box_acc"] == 100.0  # at tau >= 0.87, a threshold picked on the test images
    honest = calibrate(on_test, on_val)
    # Validation: tau 0.51 .. 0.99 all localize; the middle of those 49 is 0.75.
    assert honest["thresholds"]["v1_50"] == pytest.approx(0.75)
    assert honest["thresholds"]["v2_30"] == pytest.approx(0.50)  # the halo passes IoU 0.3: every tau does
    assert honest["images"] == 3
    assert honest["box_acc"] == 50.0  # at 0.75 the grey-220 halo still joins the box
    assert honest["box_acc_v2_per_iou"] == {"30": 100.0, "50": 50.0, "70": 50.0}
    assert honest["box_acc_v2"] == pytest.approx(200 / 3)
    with pytest.raises(ValueError, match="step="):
        calibrate(evaluate(test, cam, pre, step=0.05, progress=False), on_val)


def test_evaluate_calibrate_flag_reports_both(tmp_path, red_net, capsys):
    val = halo_images(tmp_path / "val", [128, 128])
    halo_images(tmp_path / "test", [128, 220])
    out = tmp_path / "r.json"
    args = ["evaluate", str(tmp_path / "test"), "--model", red_net, "--size", "64", "--resize", "squash"]
    assert main([*args, "--calibrate", str(val.root), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["max_box_acc"] == 100.0
    assert result["calibrated"]["box_acc"] == 50.0 and result["calibrated"]["images"] == 2
    printed = capsys.readouterr().out
    assert "thresholds chosen on 2 validation images:" in printed and "50.00   (threshold 0.75)" in printed
