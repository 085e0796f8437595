"""The paper's box rule: keep the pixels above a fraction of the map's maximum, box the largest component."""

from __future__ import annotations

import cv2
import numpy as np
from torch import Tensor

from ..errors import InvalidArgument
from .box import Box

__all__ = ["minmax_box", "paper_box", "paper_boxes"]


def paper_box(cam: Tensor | np.ndarray, threshold: float = 0.2) -> Box | None:
    """The paper's rule: keep pixels >= ``threshold`` x the map's max, box the largest 8-connected component.

    Ties in component size go to the component met first in raster order. NaN pixels (outside
    the region the model saw) are never kept. Returns None when no pixel is kept. The one-map form
    of :func:`camloc.boxes.boxes` (``rule="paper"``).

    Args:
        cam: one map, ``Tensor[H, W]`` or ``float[H, W]``.
        threshold: the fraction of the map's maximum a pixel must reach to be kept.

    Returns:
        ``(x0, y0, x1, y1)``, inclusive 0-based pixel coordinates of the map, or None.

    Example:
        The larger component wins, even where the other one holds the maximum:

        >>> import numpy as np
        >>> cam = np.full((6, 8), -1.0)  # background: below 0.2 x max
        >>> cam[1:3, 1:3] = 1.0  # a small bright blob, 2 x 2 pixels: the map's maximum
        >>> cam[2:5, 4:7] = 0.5  # a larger, dimmer blob, 3 x 3 pixels
        >>> paper_box(cam, threshold=0.2)
        (4, 2, 6, 4)
    """
    a = cam.detach().float().cpu().numpy() if isinstance(cam, Tensor) else np.asarray(cam, dtype=np.float32)
    if a.ndim != 2:
        raise InvalidArgument("cam", f"paper_box takes one (H, W) map, got shape {a.shape}")
    if np.isnan(a).all():
        return None
    mask = (a >= threshold * np.nanmax(a)).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    winners = np.flatnonzero(areas == areas.max()) + 1
    label = winners[0]
    if len(winners) > 1:  # rare: decide by the first pixel in raster order, not by cv2's label order
        first = [np.argmax(labels.ravel() == w) for w in winners]
        label = winners[int(np.argmin(first))]
    x, y, w, h = stats[label, :4]
    return int(x), int(y), int(x + w - 1), int(y + h - 1)


def paper_boxes(maps: Tensor, threshold: float = 0.2) -> list[list[Box | None]]:
    """``paper_box`` of every map in an (N, k, H, W) tensor: :func:`camloc.boxes.boxes` with ``rule="paper"``."""
    arr = maps.detach().float().cpu().numpy()
    return [[paper_box(m, threshold) for m in per_image] for per_image in arr]


def minmax_box(cam: Tensor | np.ndarray, threshold: float = 0.2) -> Box | None:
    """The box rule on the min-max normalized map: pixels >= ``min + threshold x (max - min)``.

    This is how wsolevaluation reads the paper's rule (it thresholds maps it has min-max normalized),
    and what ``camloc evaluate --protocol wsol`` uses for its single box. On a CAM without ReLU,
    whose background is negative, it keeps far more than :func:`paper_box` (the paper's text), down
    to the whole frame at ``threshold=0``. A constant map keeps every pixel. The one-map form of
    :func:`camloc.boxes.boxes` (``rule="minmax"``).

    Args:
        cam: ``[H, W]`` map, numpy or torch; NaN pixels are never kept.
        threshold: the fraction of the map's range.

    Example:
        >>> import numpy as np
        >>> m = np.full((4, 5), -3.0)
        >>> m[1:3, 1:3] = 2.0
        >>> paper_box(m, 0.2), minmax_box(m, 0.2)   # >= 0.4 vs >= -3 + 0.2 x 5 = -2: the same blob
        ((1, 1, 2, 2), (1, 1, 2, 2))
        >>> paper_box(m, 0.0), minmax_box(m, 0.0)   # >= 0 vs >= the min: the whole frame
        ((1, 1, 2, 2), (0, 0, 4, 3))
    """
    a = cam.detach().double().cpu().numpy() if isinstance(cam, Tensor) else np.asarray(cam, dtype=np.float64)
    if a.ndim != 2:
        raise InvalidArgument("cam", f"minmax_box takes one (H, W) map, got shape {a.shape}")
    if np.isnan(a).all():
        return None
    lo, hi = np.nanmin(a), np.nanmax(a)
    if hi == lo:
        return paper_box(np.where(np.isnan(a), np.nan, 1.0), 1.0)
    return paper_box((a - lo) / (hi - lo), threshold)
