"""Localization metrics over a stream of images: top-1 / top-5 / GT-known localization, MaxBoxAcc, MaxBoxAccV2.

``LocalizationMetrics`` is a streaming accumulator in the torchmetrics style: ``update`` with one
image's outcome at a time, ``compute`` at the end, ``merge`` to combine shards, ``sync`` to add up
the processes of a torchrun group. Its state is a few
counters and per-threshold counts, so memory stays flat in the number of images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .pxap import PxAP
from .state import Metric

__all__ = [
    "CURVES",
    "IOU_THRESHOLDS",
    "ImageOutcome",
    "LocalizationMetrics",
    "calibrated_accuracy",
    "calibrated_threshold",
]

IOU_THRESHOLDS = (30, 50, 70)  # percent, MaxBoxAccV2's
#: The accuracy-vs-threshold curves the wsol protocol gives: MaxBoxAcc's (V1 boxes, IoU 0.5) and MaxBoxAccV2's.
CURVES = ("v1_50",) + tuple(f"v2_{t}" for t in IOU_THRESHOLDS)


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


class LocalizationMetrics(Metric):
    """Classification and localization accuracies over a stream of images (percent in ``compute``).

    The state is counts only (declared with :meth:`~camloc.metrics.state.Metric.add_state`), so
    shards and processes add up exactly.
    """

    COUNTS = ("cls_top1", "cls_top5", "gt_known_loc", "top1_loc", "top5_loc")

    def __init__(self, cam_thresholds: Sequence[float] | np.ndarray) -> None:
        super().__init__()
        self.cam_thresholds = np.asarray(cam_thresholds, dtype=np.float64)
        self.images: np.ndarray
        self.loc_images: np.ndarray  # images whose protocol gives a single box
        self.counts: np.ndarray  # per COUNTS
        self.curve_images: np.ndarray  # images that gave curves (all of them, or none, per protocol)
        self.curve_hits: np.ndarray  # per CURVES and threshold: images localized
        self.add_state("images", 0)
        self.add_state("loc_images", 0)
        self.add_state("counts", np.zeros(len(self.COUNTS), dtype=np.int64))
        self.add_state("curve_images", 0)
        self.add_state("curve_hits", np.zeros((len(CURVES), len(self.cam_thresholds)), dtype=np.int64))
        self.pxap: PxAP
        self.pxap_images: np.ndarray
        self.add_metric("pxap", PxAP(self.cam_thresholds))
        self.add_state("pxap_images", 0)

    def update(self, outcome: ImageOutcome) -> None:
        """Add one image's outcome: its classification, localization, curves and PxAP histograms."""
        self.images += 1
        flags = [outcome.cls_top1, outcome.cls_top5]
        if outcome.located is not None:
            self.loc_images += 1
            flags += [outcome.located, bool(outcome.top1_located), bool(outcome.top5_located)]
        self.counts[: len(flags)] += np.asarray(flags, dtype=np.int64)
        if outcome.curves:
            self.curve_images += 1
            for i, name in enumerate(CURVES):
                self.curve_hits[i] += np.asarray(outcome.curves[name], dtype=bool)
        if outcome.pxap is not None:
            self.pxap_images += 1
            self.pxap.update_histograms(*outcome.pxap)

    def accuracy_curves(self) -> dict[str, list[float]]:
        """Percent of images localized at each CAM threshold, per curve."""
        if self.images == 0 or self.curve_images == 0:
            return {}
        return {
            name: (hits * 100.0 / int(self.images)).tolist() for name, hits in zip(CURVES, self.curve_hits, strict=True)
        }

    def compute(self) -> dict:
        """The summary, in percent; None where the data or the protocol does not define a metric."""
        n, counts = int(self.images), dict(zip(self.COUNTS, (int(c) for c in self.counts), strict=True))

        def pct(count: int, total: int) -> float | None:
            return 100.0 * count / total if total else None

        out: dict = {
            "images": n,
            "cls_top1": pct(counts["cls_top1"], n),
            "cls_top5": pct(counts["cls_top5"], n),
            "top1_loc": pct(counts["top1_loc"], int(self.loc_images)),
            "top5_loc": pct(counts["top5_loc"], int(self.loc_images)),
            "gt_known_loc": pct(counts["gt_known_loc"], int(self.loc_images)),
            "max_box_acc": None,
            "max_box_acc_v2": None,
            "max_box_acc_v2_per_iou": None,
            "best_threshold": None,
            "pxap": self.pxap.compute() if self.pxap_images else None,
        }
        curves = self.accuracy_curves()
        if curves:
            v1 = np.asarray(curves["v1_50"])
            out["max_box_acc"] = float(v1.max())
            out["best_threshold"] = float(self.cam_thresholds[int(np.argmax(v1))])
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
