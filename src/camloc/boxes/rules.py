"""Box rules by name, for turning one map into the boxes of one class, and the score of each box.

``paper``: the paper's rule (:func:`~camloc.boxes.paper.paper_box`): pixels >= tau x the map's
maximum, the box of the largest 8-connected component. ``wsol``: wsolevaluation's single box
(:func:`wsol_box`): the map min-max normalized to uint8, pixels > int(tau x max), the contour of
largest area, boxed as ``[x, y, x + w, y + h]`` clipped to the map. ``all``: every 8-connected
component of the paper rule's pixels covering at least ``min_area`` of the map, largest first (an
object that occurs twice gets two boxes). ``authors``: the CAM authors' generator on ``|map|``
(:mod:`camloc.boxes.authors`; its thresholds are fixed, ``tau`` is not used), its first box.

A box's score (:func:`box_score`) is the mean, over the box's pixels, of the map over its maximum
with negatives at 0, ``max(M, 0) / max(M)``: 1 for a box filled with the peak, near 0 for a box of
background. Multiplied by the class probability it ranks the boxes of a run (see
:mod:`camloc.evaluation.weak_labels`).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import InvalidArgument
from .authors import authors_boxes, authors_heatmap
from .box import Box
from .paper import paper_box
from .wsol import wsol_gray

__all__ = ["BOX_RULES", "box_score", "check_rule", "component_boxes", "rule_boxes", "wsol_box"]

#: The rules :func:`rule_boxes` knows, in the order the command line lists them.
BOX_RULES = ("paper", "wsol", "all", "authors")


def check_rule(rule: str, threshold: float, min_area: float = 0.0) -> None:
    """Raise :class:`~camloc.errors.InvalidArgument` for an unknown rule or an out-of-range parameter."""
    if rule not in BOX_RULES:
        raise InvalidArgument("rule", f"rule must be one of {', '.join(BOX_RULES)}, not {rule!r}")
    if not 0.0 <= threshold <= 1.0:
        raise InvalidArgument("threshold", f"threshold must lie in [0, 1], not {threshold}")
    if not 0.0 <= min_area < 1.0:
        raise InvalidArgument("min_area", f"min_area must lie in [0, 1), not {min_area}")


def rule_boxes(cam: np.ndarray, rule: str, threshold: float = 0.2, min_area: float = 0.01) -> list[Box]:
    """The boxes ``rule`` draws on one map, best first (empty when it keeps no pixel).

    For one box per map of a batch, by rule name and in the photo's pixels, see :func:`camloc.boxes.boxes`;
    this is the form that also knows ``all`` (several boxes per map).

    Args:
        cam: ``float[H, W]`` map (not normalized; NaN pixels, outside what the model saw, are never kept).
        rule: one of :data:`BOX_RULES`.
        threshold: tau, the fraction of the map's maximum (``paper``, ``all``) or of its min-max
            range (``wsol``).
        min_area: ``all`` only: the smallest component kept, as a fraction of the map's pixels.

    Example:
        >>> import numpy as np
        >>> m = np.full((8, 10), -1.0)
        >>> m[1:4, 1:4] = 1.0   # two objects of the same class
        >>> m[5:7, 6:9] = 0.8
        >>> rule_boxes(m, "paper"), rule_boxes(m, "all")
        ([(1, 1, 3, 3)], [(1, 1, 3, 3), (6, 5, 8, 6)])
    """
    check_rule(rule, threshold, min_area)
    a = np.asarray(cam, dtype=np.float64)
    if a.ndim != 2:
        raise InvalidArgument("cam", f"rule_boxes takes one (H, W) map, got shape {a.shape}")
    if rule == "paper":
        box = paper_box(a, threshold)
        return [] if box is None else [box]
    if rule == "wsol":
        box = wsol_box(a, threshold)
        return [] if box is None else [box]
    if rule == "all":
        return component_boxes(a, threshold, min_area)
    boxes = authors_boxes(authors_heatmap(np.abs(a)))
    return boxes[:1]


def wsol_box(cam: np.ndarray, threshold: float) -> Box | None:
    """Wsolevaluation's single box at one threshold (its V1), on a map of any range.

    The map is min-max normalized (NaN pixels count as its minimum), scaled to uint8 as
    wsolevaluation does, thresholded strictly above ``int(threshold x max)``; of the contours
    (``RETR_TREE``) the one of largest ``contourArea`` is boxed as ``[x, y, x + w, y + h]``,
    clipped to the map: one pixel wider and taller than its bounding rectangle, as wsolevaluation
    boxes. None when no pixel is kept. The one-map form of :func:`camloc.boxes.boxes` (``rule="wsol"``).

    Example:
        >>> import numpy as np
        >>> m = np.zeros((6, 8))
        >>> m[1:3, 2:5] = 1.0
        >>> wsol_box(m, 0.5)
        (2, 1, 5, 3)
    """
    a = np.asarray(cam, dtype=np.float64)
    finite = np.isfinite(a)
    if not finite.any():
        return None
    lo, hi = a[finite].min(), a[finite].max()
    if hi == lo:
        return None
    gray = wsol_gray(np.where(finite, (a - lo) / (hi - lo), 0.0))
    _, binary = cv2.threshold(gray, int(threshold * gray.max()), 255, cv2.THRESH_BINARY)
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    if not contours:
        return None
    x, y, w, h = cv2.boundingRect(max(contours, key=cv2.contourArea))
    height, width = a.shape
    return int(x), int(y), int(min(x + w, width - 1)), int(min(y + h, height - 1))


def component_boxes(cam: np.ndarray, threshold: float, min_area: float = 0.01) -> list[Box]:
    """The box of every 8-connected component of pixels >= ``threshold`` x max, largest first.

    Components smaller than ``min_area`` x the map's pixel count are dropped.
    """
    a = np.asarray(cam, dtype=np.float64)
    if not np.isfinite(a).any():
        return []
    mask = (a >= threshold * np.nanmax(a)).astype(np.uint8)  # NaN compares False: never kept
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    areas = stats[1:count, cv2.CC_STAT_AREA]
    keep = [i for i in np.argsort(-areas, kind="stable") if areas[i] >= min_area * a.size]
    return [(int(x), int(y), int(x + w - 1), int(y + h - 1)) for x, y, w, h in (stats[i + 1, :4] for i in keep)]


def box_score(cam: np.ndarray, box: Box) -> float:
    """Mean over the box's pixels of ``max(cam, 0) / max(cam)``, NaN pixels left out (0 without a positive value).

    Example:
        >>> import numpy as np
        >>> m = np.array([[4.0, 2.0, -1.0], [0.0, 2.0, -3.0]])
        >>> box_score(m, (0, 0, 1, 1))   # (1 + 0.5 + 0 + 0.5) / 4
        0.5
    """
    a = np.asarray(cam, dtype=np.float64)
    top = np.nanmax(a) if np.isfinite(a).any() else 0.0
    if not top > 0:
        return 0.0
    x0, y0, x1, y1 = box
    inside = a[y0 : y1 + 1, x0 : x1 + 1]
    inside = inside[np.isfinite(inside)]
    return float(np.clip(inside / top, 0.0, None).mean()) if inside.size else 0.0
