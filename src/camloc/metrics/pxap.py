"""Pixel average precision (PxAP), as wsolevaluation's MaskEvaluator computes it."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .state import Metric

__all__ = ["PxAP", "mask_histograms"]


class PxAP(Metric):
    """Pixel average precision (wsolevaluation's MaskEvaluator), accumulated over images.

    Histograms of map values on ground-truth foreground and background pixels, then the area
    under precision-recall.

    Args:
        cam_thresholds: the ascending map thresholds in [0, 1), the left edges of the histogram bins.
    """

    def __init__(self, cam_thresholds: Sequence[float] | np.ndarray) -> None:
        super().__init__()
        # Bins [t0, t1), ..., [t_last, 1), [1, 2), [2, 3): the thresholds and three right edges.
        self.edges = np.append(np.asarray(cam_thresholds, dtype=np.float64), [1.0, 2.0, 3.0])
        self.foreground: np.ndarray
        self.background: np.ndarray
        self.add_state("foreground", np.zeros(len(self.edges) - 1, dtype=np.int64))
        self.add_state("background", np.zeros(len(self.edges) - 1, dtype=np.int64))

    def histograms(self, scoremap: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``mask``: 1 foreground, 0 background, anything else (255) ignored."""
        fg, _ = np.histogram(scoremap[mask == 1], bins=self.edges)
        bg, _ = np.histogram(scoremap[mask == 0], bins=self.edges)
        return fg.astype(np.int64), bg.astype(np.int64)

    def update_histograms(self, foreground: np.ndarray, background: np.ndarray) -> None:
        """Add one image's foreground and background histograms (as :meth:`histograms` gives them)."""
        self.foreground += foreground
        self.background += background

    def compute(self) -> float | None:
        """PxAP in percent: the area under the precision-recall curve over the thresholds.

        None when no foreground pixel (or no pixel at all) has been counted.
        """
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
    """``pxap``'s foreground and background histograms of one score map, by wsolevaluation's mask rule.

    Masks are resized (nearest) to the score map, foreground = any
    instance > 0.5; the ignore box minus the foreground is excluded.
    """
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
