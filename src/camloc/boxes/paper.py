"""The paper's box rule: keep the pixels above a fraction of the map's maximum, box the largest component."""

from __future__ import annotations

import cv2
import numpy as np
from torch import Tensor

from ..errors import InvalidArgument
from .box import Box

__all__ = ["paper_box", "paper_boxes"]


def paper_box(cam: Tensor | np.ndarray, threshold: float = 0.2) -> Box | None:
    """The paper's rule: keep pixels >= ``threshold`` x the map's max, box the largest 8-connected component.

    Ties in component size go to the component met first in raster order. NaN pixels (outside
    the region the model saw) are never kept. Returns None when no pixel is kept.
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
    """``paper_box`` of every map in an (N, k, H, W) tensor."""
    arr = maps.detach().float().cpu().numpy()
    return [[paper_box(m, threshold) for m in per_image] for per_image in arr]
