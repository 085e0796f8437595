"""Localization metrics. Boxes are (x0, y0, x1, y1) with inclusive pixel coordinates."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["box_iou", "best_iou"]


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union with the ILSVRC devkit's pixel-inclusive (+1) convention."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / (area_a + area_b - inter)


def best_iou(box: Sequence[float] | None, truths: Iterable[Sequence[float]]) -> float:
    """The largest IoU of ``box`` with any ground-truth box; 0 when there is no box."""
    if box is None:
        return 0.0
    return max((box_iou(box, t) for t in truths), default=0.0)
