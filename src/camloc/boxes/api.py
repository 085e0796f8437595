"""The box API: one box per map, for a batch of maps, by rule name, in the model's or the photo's pixels.

:func:`boxes` is the front door. The one-map functions it calls stay public as its one-map forms:
:func:`~camloc.boxes.paper.paper_box` (``rule="paper"``), :func:`~camloc.boxes.paper.minmax_box`
(``"minmax"``), :func:`~camloc.boxes.rules.wsol_box` (``"wsol"``) and the CAM authors' generator
(``"authors"``, :mod:`camloc.boxes.authors`). The rule ``all``, which draws several boxes per map,
is :func:`~camloc.boxes.rules.rule_boxes`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import InvalidArgument, did_you_mean
from ..images import Geometry
from ..maps.frames import to_image_frame
from .authors import authors_boxes, authors_heatmap
from .box import Box
from .paper import minmax_box, paper_box
from .rules import BOX_RULES, wsol_box

__all__ = ["ONE_BOX_RULES", "boxes"]


def _authors_box(cam: np.ndarray, threshold: float) -> Box | None:
    """The first box of the CAM authors' generator on ``|cam|`` (``threshold`` is not used: its levels are fixed)."""
    found = authors_boxes(authors_heatmap(np.abs(np.asarray(cam, dtype=np.float64))))
    return found[0] if found else None


#: The rules :func:`boxes` knows by name, each as its one-map form ``(cam, threshold) -> Box | None``.
ONE_BOX_RULES: dict[str, Callable[[np.ndarray, float], Box | None]] = {
    "paper": paper_box,
    "minmax": minmax_box,
    "wsol": wsol_box,
    "authors": _authors_box,
}


def boxes(
    maps: Tensor | np.ndarray,
    rule: str = "paper",
    threshold: float = 0.2,
    geometry: Geometry | Sequence[Geometry] | None = None,
) -> list[list[Box | None]]:
    """One box per map of a batch, by the rule of that name; in the photo's pixels when given its geometry.

    Rules: ``paper``, pixels >= ``threshold`` x the map's maximum, the box of the largest 8-connected
    component (:func:`~camloc.boxes.paper.paper_box`); ``minmax``, the same on the min-max normalized
    map (:func:`~camloc.boxes.paper.minmax_box`, ``evaluate --protocol wsol``'s single box);
    ``wsol``, wsolevaluation's box at one threshold (:func:`~camloc.boxes.rules.wsol_box`);
    ``authors``, the first box of the CAM authors' generator on ``|map|`` (its levels are fixed:
    ``threshold`` is not used). NaN pixels (outside what the model saw) are never kept.

    Args:
        maps: ``Tensor[N, k, h, w]`` (or a numpy array of that shape): k maps for each of N images,
            over the model's input (``CamOutput.raw``) or any frame of their own. One image's maps
            are ``maps[None]``, one map ``m[None, None]``.
        rule: one of :data:`ONE_BOX_RULES`.
        threshold: the fraction in [0, 1] of each map's maximum (``paper``) or range (``minmax``, ``wsol``).
        geometry: where the model's input lies in each photo: one :class:`~camloc.images.Geometry`
            for the whole batch or a list of N. The maps are first resampled onto the photo's pixels
            with :func:`~camloc.maps.frames.to_image_frame` (as ``camloc explain`` does); without it,
            boxes are in the maps' own pixels.

    Returns:
        ``boxes[i][j]``: the box ``(x0, y0, x1, y1)`` (inclusive pixels) of map j of image i, or None
        when the rule keeps no pixel; N lists of k.

    Raises:
        InvalidArgument: an unknown rule (with the closest name), a threshold outside [0, 1], maps
            that are not 4-D, or a list of geometries of another length than the batch.

    Example:
        >>> import torch
        >>> m = torch.full((1, 2, 6, 8), -1.0)  # one image, two classes
        >>> m[0, 0, 1:3, 1:4] = 1.0
        >>> m[0, 1, 2:5, 5:7] = 1.0
        >>> boxes(m)
        [[(1, 1, 3, 2), (5, 2, 6, 4)]]
        >>> from camloc.images import Geometry
        >>> boxes(m, geometry=Geometry(16, 12, 8, 8, 8, 0, 0))  # a 16 x 12 photo squashed to 8 x 8
        [[(2, 2, 7, 5), (10, 4, 13, 9)]]
    """
    draw = _one_box_rule(rule, threshold)
    batch = torch.from_numpy(maps) if isinstance(maps, np.ndarray) else maps
    if batch.ndim != 4:
        raise InvalidArgument(
            "maps", f"maps must be Tensor[N, k, h, w], got shape {tuple(batch.shape)} (one map m: m[None, None])"
        )
    geometries = _per_image(geometry, len(batch))
    return [
        [draw(m, threshold) for m in _framed(per_image, geo)] for per_image, geo in zip(batch, geometries, strict=True)
    ]


def _one_box_rule(rule: str, threshold: float) -> Callable[[np.ndarray, float], Box | None]:
    if rule not in ONE_BOX_RULES:
        if rule in BOX_RULES:  # "all": several boxes per map
            raise InvalidArgument(
                "rule", f"rule {rule!r} draws several boxes per map: use camloc.boxes.rule_boxes(map, {rule!r})"
            )
        known = ", ".join(ONE_BOX_RULES)
        raise InvalidArgument("rule", f"rule must be one of {known}, not {rule!r}{did_you_mean(rule, ONE_BOX_RULES)}")
    if not 0.0 <= threshold <= 1.0:
        raise InvalidArgument("threshold", f"threshold must lie in [0, 1], not {threshold}")
    return ONE_BOX_RULES[rule]


def _per_image(geometry: Geometry | Sequence[Geometry] | None, n: int) -> Sequence[Geometry | None]:
    if geometry is None or isinstance(geometry, Geometry):
        return [geometry] * n
    if len(geometry) != n:
        raise InvalidArgument("geometry", f"geometry must be one Geometry or one per image: {len(geometry)} for {n}")
    return geometry


def _framed(maps: Tensor, geometry: Geometry | None) -> np.ndarray:
    """``float[k, H, W]``: one image's maps, in the photo's pixels when given its geometry (float64 stays float64)."""
    maps = maps.detach()
    if maps.dtype != torch.float64:
        maps = maps.float()
    if geometry is not None and len(maps):
        maps = to_image_frame(maps, geometry)
    return maps.cpu().numpy()
