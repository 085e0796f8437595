"""Localization metrics. Boxes are (x0, y0, x1, y1) with inclusive pixel coordinates.

``LocalizationMetrics`` is a streaming accumulator in the torchmetrics style: ``update`` with one
image's outcome at a time, ``compute`` at the end, ``merge`` to combine shards. Its state is a few
counters and per-threshold counts, so memory stays flat in the number of images.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = [
    "IOU_THRESHOLDS",
    "ImageOutcome",
    "LocalizationMetrics",
    "PxAP",
    "best_iou",
    "box_iou",
    "mask_histograms",
    "scale_box",
]

IOU_THRESHOLDS = (30, 50, 70)  # percent, MaxBoxAccV2's


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union with the ILSVRC devkit's pixel-inclusive (+1) convention."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter
    return 0.0 if union <= 0 else inter / union


def best_iou(box: Sequence[float] | None, truths: Iterable[Sequence[float]]) -> float:
    """The largest IoU of ``box`` with any ground-truth box; 0 when there is no box."""
    if box is None:
        return 0.0
    return max((box_iou(box, t) for t in truths), default=0.0)


def scale_box(box: Sequence[float], size: tuple[int, int], to: tuple[int, int]) -> tuple[int, int, int, int]:
    """A box from an image of ``size`` (w, h) into a ``to`` (w, h) frame, truncating as wsolevaluation does."""
    (w, h), (tw, th) = size, to
    x0, y0, x1, y1 = (float(v) for v in box)
    return int(x0 * tw / w), int(y0 * th / h), int(x1 * tw / w), int(y1 * th / h)


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

    def __init__(self, cam_thresholds: Sequence[float]) -> None:
        self.cam_thresholds = np.asarray(cam_thresholds, dtype=np.float64)
        self.reset()

    def reset(self) -> None:
        self.images = 0
        self.counts = {"cls_top1": 0, "cls_top5": 0, "gt_known_loc": 0, "top1_loc": 0, "top5_loc": 0}
        self.loc_images = 0  # images whose protocol gives a single box
        self.curves: dict[str, np.ndarray] = {}
        self.pxap: PxAP | None = None

    def update(self, outcome: ImageOutcome) -> None:
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


class PxAP:
    """Pixel average precision (wsolevaluation's MaskEvaluator): histograms of map values on
    ground-truth foreground and background pixels, then the area under precision-recall."""

    def __init__(self, cam_thresholds: Sequence[float]) -> None:
        # Bins [t0, t1), ..., [t_last, 1), [1, 2), [2, 3): the thresholds and three right edges.
        self.edges = np.append(np.asarray(cam_thresholds, dtype=np.float64), [1.0, 2.0, 3.0])
        self.foreground = np.zeros(len(self.edges) - 1, dtype=np.int64)
        self.background = np.zeros(len(self.edges) - 1, dtype=np.int64)

    def histograms(self, scoremap: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``mask``: 1 foreground, 0 background, anything else (255) ignored."""
        fg, _ = np.histogram(scoremap[mask == 1], bins=self.edges)
        bg, _ = np.histogram(scoremap[mask == 0], bins=self.edges)
        return fg.astype(np.int64), bg.astype(np.int64)

    def update_histograms(self, foreground: np.ndarray, background: np.ndarray) -> None:
        self.foreground += foreground
        self.background += background

    def compute(self) -> float | None:
        tp = self.foreground[::-1].cumsum()
        fn = self.foreground.sum() - tp
        fp = self.background[::-1].cumsum()
        if (tp + fn <= 0).all() or (tp + fp <= 0).all():
            return None
        nonzero = (tp + fp) != 0
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = tp / (tp + fp)
            recall = tp / (tp + fn)
        return float((precision[1:] * np.diff(recall))[nonzero[1:]].sum() * 100.0)


def mask_histograms(
    pxap: PxAP, scoremap: np.ndarray, mask_paths: Sequence[str], ignore_path: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """wsolevaluation's mask rule: masks resized (nearest) to the score map, foreground = any
    instance > 0.5; the ignore box minus the foreground is excluded."""
    h, w = scoremap.shape
    foreground = np.zeros((h, w), dtype=bool)
    for path in mask_paths:
        foreground |= _read_mask(path, (w, h)) > 0.5
    ignore = np.zeros((h, w), dtype=bool)
    if ignore_path:
        ignore = (_read_mask(ignore_path, (w, h)) > 0.5) & ~foreground
    mask = foreground.astype(np.uint8) + 255 * ignore.astype(np.uint8)
    return pxap.histograms(scoremap, mask)


def _read_mask(path: str, size: tuple[int, int]) -> np.ndarray:
    raw = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if raw is None:
        raise FileNotFoundError(f"{path}: mask not found or unreadable")
    return cv2.resize(raw.astype(np.float32), size, interpolation=cv2.INTER_NEAREST)
