"""Localization metrics against hand-computed values and an independent PxAP computation."""

import numpy as np
import pytest

from camloc.boxes.box import scale_box
from camloc.metrics import ImageOutcome, LocalizationMetrics, PxAP, best_iou, box_iou


def test_box_iou_pixel_inclusive():
    assert box_iou((0, 0, 9, 9), (0, 0, 9, 9)) == 1.0
    assert box_iou((0, 0, 9, 9), (5, 5, 14, 14)) == pytest.approx(25 / 175)
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 1.0  # a single pixel is a box of area 1
    assert box_iou((0, 0, 4, 4), (5, 0, 9, 4)) == 0.0  # touching edges do not overlap
    assert box_iou((0, 0, 4, 4), (4, 0, 9, 4)) == pytest.approx(5 / (25 + 30 - 5))
    assert best_iou(None, [(0, 0, 1, 1)]) == 0.0
    assert best_iou((0, 0, 9, 9), [(50, 50, 60, 60), (0, 0, 4, 9)]) == pytest.approx(0.5)


def test_scale_box_truncates_like_wsolevaluation():
    # 500 x 375 image into 224 x 224: x * 224 / 500, y * 224 / 375, truncated.
    assert scale_box((89, 75, 495, 268), (500, 375), (224, 224)) == (39, 44, 221, 160)
    assert scale_box((0, 0, 499, 374), (500, 375), (224, 224)) == (0, 0, 223, 223)


def _outcome(top1, top5, located, v1, v2_30=None, v2_50=None, v2_70=None):
    curves = {"v1_50": np.array(v1, bool)}
    if v2_30 is not None:
        curves.update(v2_30=np.array(v2_30, bool), v2_50=np.array(v2_50, bool), v2_70=np.array(v2_70, bool))
    return ImageOutcome(top1, top5, located, located and top1, located and top5, curves)


def test_accuracies_by_hand():
    m = LocalizationMetrics([0.0, 0.25, 0.5, 0.75])
    m.update(_outcome(True, True, True, [0, 1, 1, 0], [1, 1, 1, 1], [0, 1, 1, 0], [0, 0, 1, 0]))
    m.update(_outcome(False, True, True, [0, 0, 1, 1], [1, 1, 1, 0], [0, 0, 1, 1], [0, 0, 0, 0]))
    m.update(_outcome(True, True, False, [0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]))
    m.update(_outcome(False, False, False, [0, 1, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]))
    s = m.compute()
    assert s["images"] == 4
    assert s["cls_top1"] == 50.0 and s["cls_top5"] == 75.0
    assert s["gt_known_loc"] == 50.0 and s["top1_loc"] == 25.0 and s["top5_loc"] == 50.0
    # V1 curve: [0, 2, 2, 1] of 4 -> max 50 % first reached at threshold 0.25.
    assert s["max_box_acc"] == 50.0 and s["best_threshold"] == 0.25
    # V2: IoU 30 curve [3, 3, 2, 1] -> 75; IoU 50 [0, 2, 2, 1] -> 50; IoU 70 [0, 0, 1, 0] -> 25; mean 50.
    assert s["max_box_acc_v2_per_iou"] == {"30": 75.0, "50": 50.0, "70": 25.0}
    assert s["max_box_acc_v2"] == 50.0
    assert s["pxap"] is None
    assert m.accuracy_curves()["v1_50"] == [0.0, 50.0, 50.0, 25.0]


def test_undefined_metrics_are_none_and_merge_equals_one_stream():
    empty = LocalizationMetrics([0.0, 0.5]).compute()
    assert empty["images"] == 0 and empty["cls_top1"] is None and empty["max_box_acc"] is None

    rng = np.random.default_rng(0)
    outcomes = [_outcome(*(rng.random(3) < 0.6), rng.random(5) < 0.5, *(rng.random((3, 5)) < 0.5)) for _ in range(40)]
    whole, a, b = (LocalizationMetrics(np.linspace(0, 0.8, 5)) for _ in range(3))
    for i, o in enumerate(outcomes):
        whole.update(o)
        (a if i % 3 else b).update(o)
    a.merge(b)
    assert a.compute() == whole.compute()


def _pxap_by_brute_force(scores, labels, thresholds):
    """AP from raw pixel scores: at each threshold (descending) precision and recall of score >= t."""
    edges = sorted(set(thresholds) | {1.0, 2.0}, reverse=True)
    positives = labels.sum()
    precision, recall = [], []
    for t in edges:
        predicted = scores >= t
        tp = (predicted & labels).sum()
        fp = (predicted & ~labels).sum()
        if tp + fp == 0:
            precision.append(None)
        else:
            precision.append(tp / (tp + fp))
        recall.append(tp / positives)
    ap = 0.0
    for i in range(1, len(edges)):
        if precision[i] is not None:
            ap += precision[i] * (recall[i] - recall[i - 1])
    return 100 * ap


def test_pxap_equals_a_brute_force_precision_recall_sum():
    rng = np.random.default_rng(3)
    thresholds = np.arange(0, 1, 0.01)
    pxap = PxAP(thresholds)
    all_scores, all_labels = [], []
    for _ in range(5):
        mask = np.zeros((32, 32), np.uint8)
        mask[8:20, 10:26] = 1
        mask[0:3, 0:3] = 255  # ignored
        scores = np.clip(rng.normal(0.3, 0.2, (32, 32)) + 0.4 * (mask == 1), 0, 1)
        pxap.update_histograms(*pxap.histograms(scores, mask))
        keep = mask != 255
        all_scores.append(scores[keep])
        all_labels.append(mask[keep] == 1)
    expected = _pxap_by_brute_force(np.concatenate(all_scores), np.concatenate(all_labels), thresholds.tolist())
    assert pxap.compute() == pytest.approx(expected, rel=1e-9)
    assert 50 < pxap.compute() < 100
