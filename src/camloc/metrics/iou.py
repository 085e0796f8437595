"""Intersection over union with the ILSVRC devkit's pixel-inclusive (+1) convention."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["best_iou", "box_area", "box_iou", "intersection_area"]


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two inclusive boxes ``(x0, y0, x1, y1)``: a box covers ``x1 - x0 + 1`` pixel columns.

    Example:
        >>> box_iou((0, 0, 9, 9), (5, 0, 14, 9))   # 50 shared pixels of 150
        0.3333333333333333
        >>> box_iou((0, 0, 0, 0), (0, 0, 0, 0))    # one pixel is a box of area 1
        1.0
        >>> box_iou((0, 0, 4, 4), (5, 5, 9, 9))
        0.0
    """
    inter = intersection_area(a, b)
    if inter == 0:
        return 0.0
    union = box_area(a) + box_area(b) - inter
    return 0.0 if union <= 0 else inter / union


def box_area(box: Sequence[float]) -> float:
    """The pixels an inclusive box covers: ``(x1 - x0 + 1) * (y1 - y0 + 1)``.

    Example:
        >>> box_area((0, 0, 9, 4))
        50
    """
    return (box[2] - box[0] + 1) * (box[3] - box[1] + 1)


def intersection_area(a: Sequence[float], b: Sequence[float]) -> float:
    """The pixels two inclusive boxes share (0 when they do not meet).

    Example:
        >>> intersection_area((0, 0, 9, 9), (5, 0, 14, 9)), intersection_area((0, 0, 4, 4), (5, 5, 9, 9))
        (50, 0)
    """
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    return iw * ih if iw > 0 and ih > 0 else 0


def best_iou(box: Sequence[float] | None, truths: Iterable[Sequence[float]]) -> float:
    """The largest IoU of ``box`` with any ground-truth box; 0 when there is no box.

    Example:
        >>> best_iou((0, 0, 9, 9), [(50, 50, 60, 60), (0, 0, 9, 4)])
        0.5
        >>> best_iou(None, [(0, 0, 9, 9)])
        0.0
    """
    if box is None:
        return 0.0
    return max((box_iou(box, t) for t in truths), default=0.0)
