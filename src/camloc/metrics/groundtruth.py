"""Maps judged against ground-truth boxes or masks: pointing game, energy pointing game, relevance mass and rank.

Every function takes ``maps: Tensor[N, H, W]`` and the ground truth of each image as either a list
of N ``Tensor[n_i, 4]`` boxes (``x0, y0, x1, y1``, inclusive 0-based pixels of the map, as
:mod:`camloc.box` and the dataset readers give them; a box reaching outside the map is cut at its
edge) or a mask ``Tensor[N, H, W]`` (nonzero = object). Each returns one value per image,
``Tensor[N]`` (float64), and NaN for an image without any ground-truth pixel, which the published
evaluations leave out of their means. Everything is batched torch on the maps' device.

Pointing game (Zhang et al., "Top-down neural attention by excitation backprop", ECCV 2016)
    A hit (1.0) when the map's maximum falls on the object, else a miss (0.0); as TorchRay's
    ``PointingGame`` (``torchray/benchmark/pointing_game.py``): the point is the *first* maximum in
    row-major order (``torch.argmax`` of the flattened map, TorchRay's ``_saliency_to_point``), and
    with ``tolerance`` t > 0 it hits when any object pixel lies at a Euclidean distance ``< t``
    (strictly) from it; TorchRay's benchmark uses t = 15. ``tolerance=0`` asks whether the point
    itself is on the object (TorchRay's strict ``<`` would accept nothing there). NaN pixels never
    count as the maximum. TorchRay skips (image, class) pairs whose boxes are all PASCAL
    "difficult", and its "difficult" subset keeps only the pairs flagged in the EBP lists: here the
    caller passes the boxes to count, and an image without any is NaN (skipped). TorchRay's dataset
    score is the mean of per-class accuracies; the per-image values here average to the plain mean.

Energy-based pointing game (Wang et al., "Score-CAM", CVPR Workshops 2020)
    The share of the map's positive energy inside the object: ``sum(relu(m) * gt) / sum(relu(m))``.
    The paper binarizes the image with the boxes and multiplies it with the (non-negative, ReLU'd)
    map; negative values are set to 0 here so that any map reads as the paper's. A map with no
    positive value is NaN.

Relevance mass accuracy and relevance rank accuracy (Arras et al., "CLEVR-XAI", Information Fusion 2022)
    As Quantus 0.6 (``RelevanceMassAccuracy`` / ``RelevanceRankAccuracy`` with their defaults,
    ``abs=False``, ``normalise=True`` by the batch's largest absolute value, which changes neither
    the ratio nor the order). Mass: ``sum(m * gt) / sum(m)`` over the raw map, signs kept (0 / 0 is
    NaN, as Quantus). Rank: with K the number of object pixels, the fraction of the K highest map
    values that lie on the object. Equal values are taken in row-major order (a stable sort;
    Quantus' ``np.argsort`` is not stable, so on ties the two may differ) and NaN ranks last.

Checked against: Quantus 0.6's ``RelevanceMassAccuracy`` / ``RelevanceRankAccuracy`` (equal on random
maps and real boxes) and its unweighted ``PointingGame`` where the definitions meet (maps without
tied maxima, non-empty masks: Quantus counts a hit when *any* tied maximum is on the object, and an
empty mask becomes a hit, as NaN is written into a bool array; ``weighted=True`` fails under numpy 2).
Quantus has no tolerance and no energy-based game, so those are tested against hand computations of
the definitions above.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import InvalidArgument

__all__ = ["boxes_to_masks", "energy_pointing_game", "pointing_game", "relevance_mass", "relevance_rank"]

GroundTruth = Tensor | Sequence[Tensor | Sequence[Sequence[int]]]


def _check_maps(maps: Tensor) -> None:
    if maps.ndim != 3:
        raise InvalidArgument("maps", f"maps must be (N, H, W), got shape {tuple(maps.shape)}")


def boxes_to_masks(boxes: Sequence[Tensor | Sequence[Sequence[int]]], size: tuple[int, int], device=None) -> Tensor:
    """Bool masks ``Tensor[N, H, W]`` of the union of each image's boxes.

    Args:
        boxes: N items, each ``Tensor[n_i, 4]`` (or a list of 4-tuples) of inclusive pixel boxes
            ``x0, y0, x1, y1``; ``n_i`` may be 0.
        size: ``(H, W)`` of the masks.
        device: where the masks are made (default: the first tensor's, else the CPU).

    Example:
        >>> boxes_to_masks([[(1, 0, 2, 1)], []], (2, 4)).int().tolist()
        [[[0, 1, 1, 0], [0, 1, 1, 0]], [[0, 0, 0, 0], [0, 0, 0, 0]]]
    """
    items = [torch.as_tensor(b, dtype=torch.long).reshape(-1, 4) for b in boxes]
    if device is None:
        device = next((b.device for b in boxes if isinstance(b, Tensor)), torch.device("cpu"))
    most = max((len(b) for b in items), default=0)
    # Pad with empty boxes (x0 > x1) so that every image has as many, then test all pixels at once.
    padded = torch.tensor([1, 1, 0, 0], dtype=torch.long).repeat(len(items), max(most, 1), 1)
    for i, b in enumerate(items):
        padded[i, : len(b)] = b
    padded = padded.to(device)[..., None, None]  # (N, B, 4, 1, 1)
    h, w = size
    ys = torch.arange(h, device=device)[:, None]
    xs = torch.arange(w, device=device)[None, :]
    inside = (xs >= padded[:, :, 0]) & (xs <= padded[:, :, 2]) & (ys >= padded[:, :, 1]) & (ys <= padded[:, :, 3])
    return inside.any(dim=1)


def _masks(maps: Tensor, truth: GroundTruth) -> Tensor:
    """The ground truth as bool masks the shape of ``maps``."""
    _check_maps(maps)
    n, h, w = maps.shape
    if isinstance(truth, Tensor) and truth.ndim == 3:
        if truth.shape != maps.shape:
            raise InvalidArgument(
                "boxes", f"boxes given as masks must have the maps' shape {tuple(maps.shape)}, got {tuple(truth.shape)}"
            )
        return truth.to(maps.device) != 0
    if isinstance(truth, Tensor) or len(truth) != n:
        raise InvalidArgument(
            "boxes", f"expected masks (N, H, W) or the boxes of {n} images (one Tensor[n_i, 4] each), got {len(truth)}"
        )
    return boxes_to_masks(truth, (h, w), maps.device)


def _with_empty_as_nan(values: Tensor, masks: Tensor) -> Tensor:
    return torch.where(masks.flatten(1).any(dim=1), values, torch.full_like(values, torch.nan))


def pointing_game(maps: Tensor, boxes: GroundTruth, tolerance: float = 0) -> Tensor:
    """Whether each map's first maximum hits the object (1.0) or not (0.0); NaN without ground truth.

    Args:
        maps: ``Tensor[N, H, W]``.
        boxes: N ``Tensor[n_i, 4]`` inclusive pixel boxes, or masks ``Tensor[N, H, W]``.
        tolerance: a hit also when an object pixel is closer than this many pixels (TorchRay: 15).

    Returns:
        ``Tensor[N]`` float64 of 1.0 / 0.0 / NaN.

    Example:
        >>> maps = torch.zeros(2, 5, 5)
        >>> maps[0, 1, 1] = maps[1, 4, 4] = 1.0
        >>> pointing_game(maps, [torch.tensor([[1, 1, 2, 2]]), torch.tensor([[0, 0, 1, 1]])]).tolist()
        [1.0, 0.0]
        >>> pointing_game(maps, [torch.tensor([[3, 3, 3, 3]]), torch.tensor([[0, 0, 2, 2]])], tolerance=3).tolist()
        [1.0, 1.0]
    """
    if tolerance < 0:
        raise InvalidArgument("tolerance", f"tolerance must be at least 0 pixels, got {tolerance}")
    masks = _masks(maps, boxes)
    n, h, w = maps.shape
    flat = maps.flatten(1)
    point = torch.where(flat.isnan(), torch.full_like(flat, -torch.inf), flat).argmax(dim=1)  # first maximum
    py, px = (point // w).double(), (point % w).double()
    ys = torch.arange(h, device=maps.device, dtype=torch.float64)
    xs = torch.arange(w, device=maps.device, dtype=torch.float64)
    dist2 = (ys[None, :, None] - py[:, None, None]) ** 2 + (xs[None, None, :] - px[:, None, None]) ** 2
    accept = dist2 < tolerance**2 if tolerance > 0 else dist2 == 0
    hit = (masks & accept).flatten(1).any(dim=1).double()
    return _with_empty_as_nan(hit, masks)


def energy_pointing_game(maps: Tensor, boxes: GroundTruth) -> Tensor:
    """The share of each map's positive energy inside the object, ``Tensor[N]`` float64 in [0, 1].

    Args:
        maps: ``Tensor[N, H, W]``; negative values count as 0, NaN pixels as 0.
        boxes: N ``Tensor[n_i, 4]`` inclusive pixel boxes, or masks ``Tensor[N, H, W]``.

    Returns:
        ``Tensor[N]``: ``sum(relu(m) * gt) / sum(relu(m))``; NaN without ground truth or positive energy.

    Example:
        >>> maps = torch.tensor([[[1.0, 3.0], [-2.0, 0.0]]])
        >>> energy_pointing_game(maps, [torch.tensor([[1, 0, 1, 1]])]).tolist()
        [0.75]
    """
    masks = _masks(maps, boxes)
    energy = maps.double().nan_to_num(0.0).clamp(min=0).flatten(1)
    inside = (energy * masks.flatten(1)).sum(dim=1)
    return _with_empty_as_nan(inside / energy.sum(dim=1), masks)


def relevance_mass(maps: Tensor, boxes: GroundTruth) -> Tensor:
    """Relevance mass accuracy (Quantus' ``RelevanceMassAccuracy``): ``sum(m * gt) / sum(m)``, signs kept.

    Args:
        maps: ``Tensor[N, H, W]``.
        boxes: N ``Tensor[n_i, 4]`` inclusive pixel boxes, or masks ``Tensor[N, H, W]``.

    Returns:
        ``Tensor[N]`` float64; NaN without ground truth, and for a map that sums to 0 (0 / 0).

    Example:
        >>> maps = torch.tensor([[[1.0, 3.0], [-2.0, 2.0]]])
        >>> relevance_mass(maps, [torch.tensor([[1, 0, 1, 1]])]).tolist()
        [1.25]
    """
    masks = _masks(maps, boxes)
    values = maps.double().flatten(1)
    inside = (values * masks.flatten(1)).sum(dim=1)
    return _with_empty_as_nan(inside / values.sum(dim=1), masks)


def relevance_rank(maps: Tensor, boxes: GroundTruth) -> Tensor:
    """Relevance rank accuracy (Quantus' ``RelevanceRankAccuracy``): the share of the top-K pixels on the object.

    K is each image's number of object pixels; ties are taken in row-major order, NaN last.

    Args:
        maps: ``Tensor[N, H, W]``.
        boxes: N ``Tensor[n_i, 4]`` inclusive pixel boxes, or masks ``Tensor[N, H, W]``.

    Returns:
        ``Tensor[N]`` float64 in [0, 1]; NaN without ground truth.

    Example:
        >>> maps = torch.tensor([[[4.0, 3.0], [2.0, 1.0]]])
        >>> relevance_rank(maps, [torch.tensor([[1, 0, 1, 1]])]).tolist()
        [0.5]
    """
    masks = _masks(maps, boxes).flatten(1)
    flat = maps.flatten(1)
    flat = torch.where(flat.isnan(), torch.full_like(flat, -torch.inf), flat)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    k = masks.sum(dim=1)
    top = torch.arange(flat.shape[1], device=flat.device)[None, :] < k[:, None]  # the first K ranks
    hits = (masks.gather(1, order) & top).sum(dim=1).double()
    return _with_empty_as_nan(hits / k.clamp(min=1), masks.view(len(k), 1, -1))
