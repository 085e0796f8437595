"""PC1 (Yasuki & Taki, "CAM Back Again", CVPR 2024): the first principal component of the class-weighted features.

CAM sums the class-weighted feature maps ``w_k^c f_k``; PC1 reads the same ``C`` maps differently. Each
map is min-max normalized over its ``h·w`` cells, the ``C`` normalized maps are the rows of a
``(C, h·w)`` matrix, and the map is that matrix's first principal direction over the cells: the first
right-singular vector once each column (cell) is centred over the rows (channels). This is
scikit-learn's ``PCA().fit(X).components_[0]`` with the channels as samples, as the authors compute it.

A principal direction has no sign of its own, so it is set from the image's border: an object is
seldom on every edge, so when most border cells lie above the map's mean the map is negated.
:func:`border_sign` holds that rule; Eigen-CAM (:class:`~camloc.maps.EigenCAM`) uses it too.
Last, the map is min-max normalized to [0, 1], as the authors save it: centred over the channels,
not over the cells, the component often has one sign on every cell, and a map whose maximum is
negative would defeat every rule that reads a fraction of the maximum.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .cam import CAM
from .frames import normalize_maps

__all__ = ["PC1", "border_sign", "first_component", "pc1_maps"]


def first_component(rows: Tensor) -> Tensor:
    """First principal direction of each matrix's columns, its sign as the SVD gives it.

    Args:
        rows: ``Tensor[B, C, L]``: ``C`` samples (rows) of ``L`` variables each.

    Returns:
        ``Tensor[B, L]``: the unit first right-singular vector of ``rows`` centred over its rows
        (each column minus its mean over the ``C`` rows).
    """
    centred = rows - rows.mean(dim=-2, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return vh[:, 0]


def border_sign(maps: Tensor) -> Tensor:
    """Maps signed so that the object is high: negate those whose border lies mostly above their mean.

    First the sign is made canonical (the largest-magnitude cell positive, as scikit-learn's
    ``svd_flip`` does), so that a map with exactly half its border above the mean keeps the same
    sign whatever the SVD returned; then a map is negated when more than half of its border cells
    (the first and last row and column) are strictly above the map's mean.

    Args:
        maps: ``Tensor[..., h, w]``.

    Returns:
        ``Tensor[..., h, w]``: each map or its negation.

    Example:
        >>> import torch
        >>> border_sign(torch.tensor([[1.0, 1.0, 1.0], [1.0, -8.0, 1.0], [1.0, 1.0, 1.0]]))
        tensor([[-1., -1., -1.],
                [-1.,  8., -1.],
                [-1., -1., -1.]])
    """
    h, w = maps.shape[-2:]
    flat = maps.flatten(-2)
    largest = flat.gather(-1, flat.abs().argmax(-1, keepdim=True))
    flat = torch.where(largest < 0, -flat, flat)
    border = torch.ones(h, w, dtype=torch.bool, device=maps.device)
    border[1:-1, 1:-1] = False  # a map of one or two rows or columns is all border
    border = border.flatten()
    above = (flat > flat.mean(-1, keepdim=True)) & border
    flip = above.sum(-1, keepdim=True) * 2 > border.sum()
    return torch.where(flip, -flat, flat).view_as(maps)


def pc1_maps(features: Tensor, weights: Tensor) -> Tensor:
    """PC1 maps of the features weighted by each of ``k`` channel-weight vectors, all in one batched SVD.

    Args:
        features: ``Tensor[N, C, h, w]`` the feature map ``f``.
        weights: ``Tensor[N, k, C]`` channel weights ``w^c`` (a classifier's rows).

    Returns:
        ``Tensor[N, k, h, w]``: for each image and weight vector, the first principal direction over the
        ``h·w`` cells of the ``C`` maps ``w_k^c f_k``, each min-max normalized over the cells (a constant
        map becomes zeros), signed by :func:`border_sign`, then min-max normalized to [0, 1].
    """
    n, c, h, w = features.shape
    k = weights.shape[1]
    with torch.no_grad():
        weighted = weights.to(features.dtype)[..., None] * features.reshape(n, 1, c, h * w)  # (N, k, C, hw)
        lo = weighted.amin(-1, keepdim=True)
        span = weighted.amax(-1, keepdim=True) - lo
        # a constant map has weighted == lo everywhere: dividing by 1 leaves it zeros
        scaled = (weighted - lo) / torch.where(span > 0, span, torch.ones_like(span))
        component = first_component(scaled.reshape(n * k, c, h * w))
        return normalize_maps(border_sign(component.view(n, k, h, w)), "minmax")


class PC1(CAM):
    """The first principal component of the class-weighted feature maps (Yasuki & Taki, "CAM Back Again", CVPR 2024).

    For each image and class ``c``, the ``C`` maps ``w_k^c f_k`` of CAM's sum are each min-max normalized
    over the cells; the map is their first principal direction over the cells (:func:`pc1_maps`), its
    sign set by the border (:func:`border_sign`), min-max normalized to [0, 1]. It runs as
    :class:`~camloc.maps.CAM` does: the feature map and head found statically, one forward pass for the
    top-k classes, more classes' maps from the same features (``reuses_forward``), every step on the
    model's device. A target that is a weighted sum of classes gives the PC1 of the features weighted by
    the same sum of the classes' weights (PC1 is not linear: not the sum of the classes' PC1 maps).

    Args:
        model: the classifier (see :func:`camloc.models.adapt` for what it may be).
        **options: as :class:`~camloc.maps.CAM`: ``relu`` (no effect: the maps are >= 0), ``normalize``,
            ``upsample_mode``, ``channels_last``, ``fuse_batchnorm``, ``amp``.

    Example::

        pc1 = camloc.PC1(model)
        out = pc1(images, topk=5)   # out.raw: Tensor[N, 5, 7, 7]; out.maps: Tensor[N, 5, 224, 224]
    """

    name = "pc1"

    @staticmethod
    def _weighted_maps(features: Tensor, weights: Tensor) -> Tensor:
        """``Tensor[N, k, h, w]`` PC1 maps of weights ``Tensor[N, k, C]`` on ``features`` ``Tensor[N, C, h, w]``."""
        return pc1_maps(features, weights)
