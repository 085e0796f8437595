"""From maps to boxes. Boxes are (x0, y0, x1, y1) with inclusive pixel coordinates."""

from __future__ import annotations

import cv2
import numpy as np
from torch import Tensor

__all__ = ["Box", "paper_box", "paper_boxes", "wsol_gray", "wsol_levels", "wsol_scoremap"]

Box = tuple[int, int, int, int]


def paper_box(cam: Tensor | np.ndarray, threshold: float = 0.2) -> Box | None:
    """The paper's rule: keep pixels >= ``threshold`` x the map's max, box the largest 8-connected component.

    Ties in component size go to the component met first in raster order. NaN pixels (outside
    the region the model saw) are never kept. Returns None when no pixel is kept.
    """
    a = cam.detach().float().cpu().numpy() if isinstance(cam, Tensor) else np.asarray(cam, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"paper_box takes one (H, W) map, got shape {a.shape}")
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


def wsol_scoremap(raw: np.ndarray, size: tuple[int, int] = (224, 224)) -> np.ndarray:
    """wsolevaluation's score map: the raw CAM as float64 (its ``t2n``), resized bicubically by OpenCV
    to ``size`` (w, h), then min-max normalized; a constant or NaN map becomes zeros."""
    cam = cv2.resize(np.asarray(raw, dtype=np.float64), size, interpolation=cv2.INTER_CUBIC)
    if np.isnan(cam).any() or cam.min() == cam.max():
        return np.zeros_like(cam)
    cam -= cam.min()
    cam /= cam.max()
    return cam


def wsol_gray(scoremap: np.ndarray) -> np.ndarray:
    """The uint8 image wsolevaluation thresholds: ``uint8(map * 255)``, truncating."""
    return (np.asarray(scoremap) * 255).astype(np.uint8)


def wsol_levels(gray: np.ndarray, thresholds: np.ndarray | None = None) -> np.ndarray:
    """Threshold levels ``int(tau * max(gray))`` for tau in ``thresholds`` (default
    ``np.arange(0, 1, 0.01)``); a pixel is kept at a level when it is strictly greater."""
    taus = np.arange(0, 1, 0.01) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    top = float(np.max(gray))
    return np.array([int(t * top) for t in taus], dtype=np.int64)
