"""Localization metrics over a stream of images: top-1 / top-5 / GT-known localization, MaxBoxAcc, MaxBoxAccV2.

``LocalizationMetrics`` is a streaming accumulator in the torchmetrics style: ``update`` with one
image's outcome at a time, ``compute`` at the end, ``merge`` to combine shards. Its state is a few
counters and per-threshold counts, so memory stays flat in the number of images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .pxap import PxAP

__all__ = ["IOU_THRESHOLDS", "ImageOutcome", "LocalizationMetrics", "calibrated_accuracy", "calibrated_threshold"]

IOU_THRESHOLDS = (30, 50, 70)  # percent, MaxBoxAccV2's


@dataclass
class ImageOutcome:
    """What one image contributes to the metrics.

    ``curves`` maps a curve name ("v1_50", "v2_30", "v2_50", "v2_70") to a boolean array over the
    CAM thresholds: whether the image is localized at that threshold. ``pxap`` holds the image's
    foreground and background score histograms when the dataset has masks.
    """

    cls_top1: bool
    cls_top5: bool
    located: bool | None = None  # the protocol's single box, GT class: IoU >= 0.5
    top1_located: bool | None = None  # class right and located
    top5_located: bool | None = None
    curves: dict[str, np.ndarray] = field(default_factory=dict)
    pxap: tuple[np.ndarray, np.ndarray] | None = None


class LocalizationMetrics:
    """Classification and localization accuracies over a stream of images (percent in ``compute``)."""

    def __init__(self, cam_thresholds: Sequence[float] | np.ndarray) -> None:
        self.cam_thresholds = np.asarray(cam_thresholds, dtype=np.float64)
        self.reset()

    def reset(self) -> None:
        """Forget every image seen so far."""
        self.images = 0
        self.counts = {"cls_top1": 0, "cls_top5": 0, "gt_known_loc": 0, "top1_loc": 0, "top5_loc": 0}
        self.loc_images = 0  # images whose protocol gives a single box
        self.curves: dict[str, np.ndarray] = {}
        self.pxap: PxAP | None = None

    def update(self, outcome: ImageOutcome) -> None:
        """Add one image's outcome: its classification, localization, curves and PxAP histograms."""
        self.images += 1
        self.counts["cls_top1"] += int(outcome.cls_top1)
        self.counts["cls_top5"] += int(outcome.cls_top5)
        if outcome.located is not None:
            self.loc_images += 1
            self.counts["gt_known_loc"] += int(outcome.located)
            self.counts["top1_loc"] += int(bool(outcome.top1_located))
            self.counts["top5_loc"] += int(bool(outcome.top5_located))
        for name, hits in outcome.curves.items():
            if name not in self.curves:
                self.curves[name] = np.zeros(len(self.cam_thresholds), dtype=np.int64)
            self.curves[name] += np.asarray(hits, dtype=bool)
        if outcome.pxap is not None:
            if self.pxap is None:
                self.pxap = PxAP(self.cam_thresholds)
            self.pxap.update_histograms(*outcome.pxap)

    def merge(self, other: LocalizationMetrics) -> None:
        """Add another accumulator's state (e.g. from another process or shard)."""
        self.images += other.images
        self.loc_images += other.loc_images
        for k, v in other.counts.items():
            self.counts[k] += v
        for name, counts in other.curves.items():
            self.curves[name] = self.curves.get(name, np.zeros_like(counts)) + counts
        if other.pxap is not None:
            if self.pxap is None:
                self.pxap = PxAP(self.cam_thresholds)
            self.pxap.update_histograms(other.pxap.foreground, other.pxap.background)

    def accuracy_curves(self) -> dict[str, list[float]]:
        """Percent of images localized at each CAM threshold, per curve."""
        if self.images == 0:
            return {}
        return {name: (counts * 100.0 / self.images).tolist() for name, counts in self.curves.items()}

    def compute(self) -> dict:
        """The summary, in percent; None where the data or the protocol does not define a metric."""
        n = self.images

        def pct(count: int, total: int) -> float | None:
            return 100.0 * count / total if total else None

        out: dict = {
            "images": n,
            "cls_top1": pct(self.counts["cls_top1"], n),
            "cls_top5": pct(self.counts["cls_top5"], n),
            "top1_loc": pct(self.counts["top1_loc"], self.loc_images),
            "top5_loc": pct(self.counts["top5_loc"], self.loc_images),
            "gt_known_loc": pct(self.counts["gt_known_loc"], self.loc_images),
            "max_box_acc": None,
            "max_box_acc_v2": None,
            "max_box_acc_v2_per_iou": None,
            "best_threshold": None,
            "pxap": self.pxap.compute() if self.pxap is not None else None,
        }
        curves = self.accuracy_curves()
        if "v1_50" in curves:
            v1 = np.asarray(curves["v1_50"])
            out["max_box_acc"] = float(v1.max())
            out["best_threshold"] = float(self.cam_thresholds[int(np.argmax(v1))])
        if all(f"v2_{t}" in curves for t in IOU_THRESHOLDS):
            per_iou = {str(t): float(max(curves[f"v2_{t}"])) for t in IOU_THRESHOLDS}
            out["max_box_acc_v2_per_iou"] = per_iou
            out["max_box_acc_v2"] = float(np.mean(list(per_iou.values())))
        return out


def calibrated_threshold(curve: Sequence[float] | np.ndarray, cam_thresholds: Sequence[float] | np.ndarray) -> float:
    """The CAM threshold at which a validation accuracy curve peaks.

    Where several thresholds reach the peak (a small validation set gives flat tops), the middle
    one of them, which sits furthest inside the best range.

    Example:
        >>> calibrated_threshold([10.0, 50.0, 50.0, 50.0, 20.0], [0.0, 0.1, 0.2, 0.3, 0.4])
        0.2
    """
    curve = np.asarray(curve, dtype=np.float64)
    best = np.flatnonzero(curve == curve.max())
    return float(np.asarray(cam_thresholds, dtype=np.float64)[best[len(best) // 2]])


def calibrated_accuracy(
    val_curves: Mapping[str, Sequence[float]],
    test_curves: Mapping[str, Sequence[float]],
    cam_thresholds: Sequence[float] | np.ndarray,
) -> dict:
    """Test accuracy at CAM thresholds chosen on a validation set, not on the test set itself.

    MaxBoxAcc picks its threshold on the images it scores. Choe et al. (CVPR 2020) ask for the
    operating threshold to come from a small labelled validation set instead; this reads each test
    curve at the threshold where the same curve of the validation set peaks.

    Args:
        val_curves: ``accuracy_curves()`` of the validation set (percent per CAM threshold).
        test_curves: ``accuracy_curves()`` of the test set, over the same thresholds.
        cam_thresholds: the thresholds of both.

    Returns:
        ``{"box_acc": test accuracy at IoU 0.5 (MaxBoxAcc's boxes), "box_acc_v2": mean of
        "box_acc_v2_per_iou" (MaxBoxAccV2's boxes), "box_acc_v2_per_iou": {"30": ..., "50": ...,
        "70": ...}, "thresholds": {curve name: threshold}}``, in percent; None where a curve is missing.

    Example:
        >>> t = [0.0, 0.5]
        >>> val = {"v1_50": [20.0, 80.0]}
        >>> calibrated_accuracy(val, {"v1_50": [70.0, 60.0]}, t)["box_acc"]  # not 70: that is the test's own pick
        60.0
    """
    thresholds = np.asarray(cam_thresholds, dtype=np.float64)
    chosen = {name: calibrated_threshold(val_curves[name], thresholds) for name in test_curves if name in val_curves}

    def at(name: str) -> float | None:
        if name not in chosen:
            return None
        return float(test_curves[name][int(np.flatnonzero(thresholds == chosen[name])[0])])

    per_iou = {str(t): at(f"v2_{t}") for t in IOU_THRESHOLDS}
    values = [v for v in per_iou.values() if v is not None]
    return {
        "box_acc": at("v1_50"),
        "box_acc_v2": float(np.mean(values)) if len(values) == len(per_iou) else None,
        "box_acc_v2_per_iou": per_iou if len(values) == len(per_iou) else None,
        "thresholds": chosen,
    }
