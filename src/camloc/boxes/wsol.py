"""wsolevaluation's score maps and threshold levels (Choe et al., CVPR 2020), exactly as its code makes them.

The boxes of every level come from :func:`camloc.boxes.sweep.wsol_best_ious`, which answers all
levels of one map in one pass.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["wsol_gray", "wsol_levels", "wsol_minmax", "wsol_resized", "wsol_resized_batch", "wsol_scoremap"]


def wsol_scoremap(raw: np.ndarray, size: tuple[int, int] = (224, 224)) -> np.ndarray:
    """Wsolevaluation's score map: the raw CAM resized bicubically to ``size`` (w, h), then min-max normalized.

    The raw CAM is taken as float64 (its ``t2n``) and resized by OpenCV; a constant or NaN map becomes zeros.
    """
    return wsol_minmax(wsol_resized(raw, size))


def wsol_resized(raw: np.ndarray, size: tuple[int, int] = (224, 224)) -> np.ndarray:
    """``float64[h, w]``: the raw CAM as float64, resized bicubically by OpenCV to ``size`` (w, h)."""
    return cv2.resize(np.asarray(raw, dtype=np.float64), size, interpolation=cv2.INTER_CUBIC)


def wsol_resized_batch(raw: torch.Tensor, size: tuple[int, int] = (224, 224)) -> torch.Tensor:
    """``Tensor[N, h, w]`` maps resized as :func:`wsol_resized` resizes one, on their own device (a GPU's).

    Bicubic (a = -0.75) in float64 on pixel centres, as OpenCV's ``INTER_CUBIC``. Where the size is a
    whole multiple of the map's (7 x 7 or 14 x 14 to 224 x 224) the two agree to about 1e-15 of the
    map's range and give the same uint8 score maps (tested on the CPU); at other ratios OpenCV's
    float32 interpolation coefficients put them a few 1e-6 apart.

    Returns:
        ``Tensor[N, H, W]`` float64 with ``size`` = (W, H).
    """
    return F.interpolate(raw.double()[:, None], size=(size[1], size[0]), mode="bicubic", align_corners=False)[:, 0]


def wsol_minmax(cam: np.ndarray) -> np.ndarray:
    """A resized map min-max normalized as wsolevaluation does; a constant or NaN map becomes zeros."""
    if np.isnan(cam).any() or cam.min() == cam.max():
        return np.zeros_like(cam)
    cam = cam - cam.min()
    return cam / cam.max()


def wsol_gray(scoremap: np.ndarray) -> np.ndarray:
    """The uint8 image wsolevaluation thresholds: ``uint8(map * 255)``, truncating."""
    return (np.asarray(scoremap) * 255).astype(np.uint8)


def wsol_levels(gray: np.ndarray, thresholds: np.ndarray | None = None) -> np.ndarray:
    """Threshold levels ``int(tau * max(gray))`` for tau in ``thresholds``.

    ``thresholds`` defaults to ``np.arange(0, 1, 0.01)``; a pixel is kept at a level when it is strictly greater.
    """
    taus = np.arange(0, 1, 0.01) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    top = float(np.max(gray))
    return np.array([int(t * top) for t in taus], dtype=np.int64)
